"""tfbench's systolic-array timing against SCALE-Sim (an independent cycle-level simulator), layer by layer.

SCALE-Sim 3 needs ``numpy<2.3`` and lives in its own virtualenv, ``.venv-scalesim`` at the top of the
repository, which ``scripts/test.sh`` makes (``pip install scalesim "numpy<2.3"``).  This test runs SCALE-Sim's
own compute model there, as a subprocess (``tests/scalesim_compute.py``), on every convolution of ResNet-18
(the 20 of tfbench's ``resnet18``), for a 32x32 output-stationary array: the processor file
``systolic_32x32_os.toml``; and on the three 1x1 ones for weight- and input-stationary arrays.  Without that
virtualenv the test fails and says how to make it.

SCALE-Sim rounds a strided convolution's output size up ((230 - 7) / 2 + 1 = 112.5 -> 113 rows, one more than the
convolution has), so each layer is given to it as the input rows the convolution reads:
``(out - 1) x stride + kernel``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tfbench.processor import compiler, simulator, spec, workload
from tfbench.processor.language import Compute

REPO = Path(__file__).resolve().parent.parent
VENV_PYTHON = REPO / ".venv-scalesim" / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
SCRIPT = Path(__file__).with_name("scalesim_compute.py")
TOLERANCE = 0.10

CONFIG = """[general]
run_name = tfbench_check

[architecture_presets]
ArrayHeight: {rows}
ArrayWidth: {cols}
IfmapSramSzkB: 512
FilterSramSzkB: 512
OfmapSramSzkB: 256
IfmapOffset: 0
FilterOffset: 10000000
OfmapOffset: 20000000
Dataflow: {dataflow}
Bandwidth: 10
ReadRequestBuffer: 32
WriteRequestBuffer: 32
MemoryBanks: 1

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport: false
SparseRep: ellpack_block
OptimizedMapping: false
BlockSize: 8
RandomNumberGeneratorSeed: 40

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""


def run_scalesim(tmp_path: Path, convs: list[workload.Work], unit, full: bool = False) -> dict:
    if not VENV_PYTHON.exists():
        pytest.fail(f"SCALE-Sim's virtualenv {VENV_PYTHON.parent.parent} is missing: run scripts/test.sh (it makes "
                    "it with `python3 -m venv .venv-scalesim && .venv-scalesim/bin/pip install scalesim 'numpy<2.3'`)")
    config = tmp_path / "array.cfg"
    config.write_text(CONFIG.format(rows=unit.array[0], cols=unit.array[1], dataflow=unit.dataflow))
    topology = tmp_path / "topology.csv"
    lines = ["Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,"]
    lines += [f"{w.name}, {(w.ho - 1) * w.sh + w.kh}, {(w.wo - 1) * w.sh + w.kw}, {w.kh}, {w.kw}, {w.cin}, {w.cout}, "
              f"{w.sh}," for w in convs]
    topology.write_text("\n".join(lines) + "\n")
    out = tmp_path / "scalesim.json"
    done = subprocess.run([str(VENV_PYTHON), str(SCRIPT), str(config), str(topology), str(out)]
                          + (["--full"] if full else []), capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def resnet18_convs() -> list[workload.Work]:
    from tfbench.models import load

    model = load.load("resnet18").keras_model
    work, _ = workload.model_work(model, "resnet18")
    convs = [w for w in work if w.lowering == "conv" and w.kind == "Conv2D"]
    assert len(convs) == 20 and all(w.groups == 1 and w.kw == w.kh for w in convs)
    return convs


def product_cycles(processor: spec.Processor, w: workload.Work) -> int:
    """tfbench's cycles for the layer as one matrix product (output pixels x kernel x input channels x filters)."""
    return simulator.compute_cycles(processor, Compute("MAC_32", w.macs, 0, (w.ho * w.wo, w.kh * w.kw * w.cin,
                                                                            w.cout)))


def test_resnet18_conv_cycles_are_within_10_percent_of_scalesim(tmp_path, resnet18_convs) -> None:
    processor = spec.load("systolic_32x32_os")
    unit = processor.units["array"]
    theirs = run_scalesim(tmp_path, resnet18_convs, unit)["compute_cycles"]
    table = []
    for w, reference in zip(resnet18_convs, theirs, strict=True):
        ours = product_cycles(processor, w)
        compiled = compiler.lower(w, processor).result.busy["unit:array"]
        table.append((w.name, ours, reference, ours / reference - 1, compiled))
        # the compiled program's tiles never compute in fewer cycles than the untiled product
        assert compiled >= ours
    print("\n".join(f"{name:22s} tfbench {ours:7d}  SCALE-Sim {ref:7d}  {diff:+.1%}  compiled program {comp}"
                    for name, ours, ref, diff, comp in table))
    off = [(name, f"{diff:+.1%}") for name, _, _, diff, _ in table if abs(diff) > TOLERANCE]
    assert not off, f"layers off by more than {TOLERANCE:.0%}: {off}"


@pytest.mark.parametrize("dataflow", ["ws", "is"])
def test_weight_and_input_stationary_agree_with_scalesim_too(tmp_path, resnet18_convs, dataflow) -> None:
    """The other two dataflows, on ResNet-18's three 1x1 downsampling convolutions (the small ones)."""
    from dataclasses import replace

    processor = spec.load("systolic_32x32_os")
    unit = replace(processor.units["array"], dataflow=dataflow)
    processor = replace(processor, units={**processor.units, "array": unit})
    convs = [w for w in resnet18_convs if w.kh == 1]
    theirs = run_scalesim(tmp_path, convs, unit)["compute_cycles"]
    for w, reference in zip(convs, theirs, strict=True):
        assert abs(product_cycles(processor, w) / reference - 1) <= TOLERANCE, (w.name, reference)


def test_scalesims_demand_rows_are_what_it_reports(tmp_path, resnet18_convs) -> None:
    """The compute cycles taken above (rows of SCALE-Sim's demand matrix) are its report's cycles, checked on the
    smallest layer with the whole simulator (memory system included) run."""
    smallest = min(resnet18_convs, key=lambda w: w.macs)
    result = run_scalesim(tmp_path, [smallest], spec.load("systolic_32x32_os").units["array"], full=True)
    report = result["report"][0]
    assert abs(result["compute_cycles"][0] - (report["Total Cycles"] - report["Stall Cycles"])) <= 1
