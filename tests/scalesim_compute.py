"""Run by tests/test_processor_scalesim.py with the SCALE-Sim venv's Python (``.venv-scalesim``), not by pytest.

``python scalesim_compute.py CONFIG TOPOLOGY OUT.json [--full]``: for every layer of the topology, SCALE-Sim's
own compute model (``scalesim.compute.systolic_compute_*``: operand matrices, folds, skewed demand matrices)
gives the compute cycles as the rows of its demand matrix.  ``--full`` also runs the whole simulator
(``scalesim.run_scale``, with its memory system) and reads ``COMPUTE_REPORT.csv``, so the test can check that
the demand rows are what SCALE-Sim reports as its total cycles minus stalls.
"""

import csv
import json
import sys
import tempfile
from pathlib import Path

from scalesim.scale_sim import scalesim
from scalesim.single_layer_sim import single_layer_sim


def compute_cycles(config, topology):
    sim = scalesim(save_disk_space=True, verbose=False, config=config, topology=topology, layout=topology)
    cycles = []
    for i in range(sim.topo.get_num_layers()):
        layer = single_layer_sim()
        layer.set_params(layer_id=i, config_obj=sim.config, topology_obj=sim.topo, layout_obj=sim.layout,
                         verbose=False)
        _, ifmap = layer.op_mat_obj.get_ifmap_matrix()
        _, filters = layer.op_mat_obj.get_filter_matrix()
        _, ofmap = layer.op_mat_obj.get_ofmap_matrix()
        layer.compute_system.set_params(config_obj=sim.config, ifmap_op_mat=ifmap, filter_op_mat=filters,
                                        ofmap_op_mat=ofmap)
        demand, _, _ = layer.compute_system.get_demand_matrices()
        cycles.append(int(demand.shape[0]))
    return cycles


def full_run(config, topology):
    with tempfile.TemporaryDirectory() as top:
        sim = scalesim(save_disk_space=True, verbose=False, config=config, topology=topology, layout=topology)
        sim.run_scale(top_path=top)
        report = next(Path(top).glob("*/COMPUTE_REPORT.csv"))
        rows = list(csv.reader(report.open()))
    head = [h.strip() for h in rows[0]]
    return [{h: float(v) for h, v in zip(head, row) if h} for row in rows[1:] if row]


if __name__ == "__main__":
    config, topology, out = sys.argv[1:4]
    result = {"compute_cycles": compute_cycles(config, topology)}
    if "--full" in sys.argv:
        result["report"] = full_run(config, topology)
    Path(out).write_text(json.dumps(result))
