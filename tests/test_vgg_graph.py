"""The main job, run as a user runs it, and its logs read back by a real TensorBoard server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from tensorboard.backend.event_processing import event_accumulator

from tfbench import vgg_graph
from tfbench.inspection import main_job as job
from tfbench.plumbing.errors import UserError
from tfbench.reporting import graph_views

POOL_SHAPES = ["(1, 112, 112, 64)", "(1, 56, 56, 128)", "(1, 28, 28, 256)", "(1, 14, 14, 512)", "(1, 7, 7, 512)"]


def run_main_job(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tfbench.vgg_graph", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=Path(__file__).parent.parent)


@pytest.fixture(scope="module")
def main_job(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("logs")
    result = run_main_job("--no-bench", "--logdir", str(logdir))
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (logdir / job.RUN_FOLDER).iterdir()
    return result.stdout, logdir, run_dir


def test_prints_pool_shapes_params_and_top5(main_job):
    stdout, _, _ = main_job
    lines = {line.split()[0]: line for line in stdout.splitlines() if line.strip()}
    for i, shape in enumerate(POOL_SHAPES, start=1):
        assert shape in lines[f"pool{i}"], lines.get(f"pool{i}")
    assert "143,667,240" in lines["total"]
    assert "weights are random" in stdout
    assert "tensorboard --logdir" in stdout.splitlines()[-1]


def test_eager_graph_and_xla_outputs_agree(main_job):
    stdout, _, _ = main_job
    diffs = {line.split(":")[0].strip(): float(line.split(":")[1]) for line in stdout.splitlines()
             if line.strip().startswith("eager vs")}
    assert set(diffs) == {"eager vs tf.function", "eager vs tf.function+XLA"}
    assert max(diffs.values()) < 1e-4


def _graph_def(run_path: Path):
    acc = event_accumulator.EventAccumulator(str(run_path), size_guidance={event_accumulator.GRAPH: 1})
    acc.Reload()
    return acc


def test_op_graph_keeps_weights_as_variables(main_job):
    """The traced graph reads 38 variables (19 kernels, 19 biases); no weight is baked in as a constant."""
    _, _, run_dir = main_job
    graph = _graph_def(run_dir / "graph").Graph()
    ops = [node.op for node in graph.node]
    assert ops.count("ReadVariableOp") == 38
    assert max(node.attr["value"].tensor.ByteSize() for node in graph.node if node.op == "Const") < 10_000


@pytest.mark.parametrize("run", ["graph", "optimized", "partition"])
def test_graph_reads_like_the_diagram(main_job, run):
    """Top level: images -> vgg19 -> logits; inside vgg19: block1..block5 then classifier, weights in their layer."""
    _, _, run_dir = main_job
    graph = _graph_def(run_dir / run).Graph()
    names = [node.name for node in graph.node]
    assert set(graph_views.top_level(graph)) == {"images", "vgg19", "logits"}, graph_views.top_level(graph)
    scopes = {name.split("/")[1] for name in names if name.startswith("vgg19/")}
    assert {"block1", "block2", "block3", "block4", "block5", "classifier"} <= scopes, scopes
    assert not {s for s in scopes if s.startswith("block") and "_" in s}, scopes  # no block1_1 re-entered scopes
    blocks_in_order = [int(n.split("/")[2][len("conv"):].split("_")[0]) for n in names
                       if n.startswith("vgg19/block") and "/conv" in n]
    first_seen = list(dict.fromkeys(blocks_in_order))
    assert sorted(first_seen) == [1, 2, 3, 4, 5]
    assert "vgg19/block1/conv1_1/weights/resource" in names and "vgg19/block1/conv1_1/weights/read" in names
    assert "vgg19/block5/pool5" in names and "vgg19/classifier/fc8/biases/resource" in names
    # every input edge of the pool in block 2 comes from block 2: the blocks connect in a chain
    pool2 = next(node for node in graph.node if node.name == "vgg19/block2/pool2")
    assert pool2.input[0].startswith("vgg19/block2/conv2_2/")


def test_optimized_graph_shows_grappler_fusion_by_name(main_job):
    _, _, run_dir = main_job
    graph = _graph_def(run_dir / "optimized").Graph()
    ops = [node.op for node in graph.node]
    assert "Conv2D" not in ops and ops.count("_FusedConv2D") == 16, sorted(set(ops))
    fused = [node.name for node in graph.node if "Fused" in node.name]
    assert len(fused) >= 16
    assert "vgg19/block1/conv1_1/FusedConv2D+BiasAdd+Relu" in fused
    assert "vgg19/classifier/fc6/FusedMatMul+BiasAdd+Relu" in fused
    partition = _graph_def(run_dir / "partition").Graph()
    assert sum("FusedConv2D+BiasAdd+Relu" in node.name for node in partition.node) == 16


def _texts(run_path: Path) -> dict[str, str]:
    import tensorflow as tf

    acc = event_accumulator.EventAccumulator(str(run_path))
    acc.Reload()
    return {tag: tf.make_ndarray(acc.Tensors(tag)[0].tensor_proto).item().decode()
            for tag in acc.Tags()["tensors"] if acc.SummaryMetadata(tag).plugin_data.plugin_name == "text"}


def test_text_cards_hold_every_printed_table(main_job):
    _, _, run_dir = main_job
    texts = _texts(run_dir / "results")
    layers = texts["1_layers/vgg19_layer_table"]
    for shape in POOL_SHAPES:
        assert shape in layers
    assert "143,667,240" in layers and "| conv1_1 | block1_conv1 |" in layers
    modes = texts["2_modes/latency_and_difference"]
    assert "tf.function+XLA" in modes and "not timed" in modes
    assert "weights are random" in texts["3_top5/classes"]
    assert "where to click" in texts["0_guide/what_each_run_shows"]
    grappler = _texts(run_dir / "optimized")
    assert "| Conv2D | 16 | 0 | -16 |" in grappler["grappler/op_counts"]
    assert "remapping" in grappler["grappler/passes"] and "+Conv2D 16" in grappler["grappler/passes"]


def test_hparams_one_run_per_mode(main_job):
    from tensorboard.plugins.hparams import plugin_data_pb2

    _, _, run_dir = main_job
    modes = {}
    for sub in (run_dir / "hparams").iterdir():
        if not sub.is_dir():
            continue
        acc = event_accumulator.EventAccumulator(str(sub))
        acc.Reload()
        content = acc.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
        info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
        modes[info.hparams["mode"].string_value] = acc.Tags()["tensors"]
    assert set(modes) == {"eager", "tf.function", "tf.function+XLA"}
    assert all("max_abs_diff_vs_eager" in tags for tags in modes.values())


def test_images_every_stage_with_descriptions(main_job):
    _, _, run_dir = main_job
    acc = event_accumulator.EventAccumulator(str(run_dir / "images"))
    acc.Reload()
    tags = acc.Tags()["tensors"]
    assert [t.split("_", 1)[0] for t in sorted(tags)] == ["1", "2", "3", "4", "5"], tags
    assert any("crop_box" in t for t in tags) and any("256" in t for t in tags) and any("BGR" in t for t in tags)
    for tag in tags:
        assert len(acc.SummaryMetadata(tag).summary_description) > 40, tag
    resized = acc.Tensors(next(t for t in tags if "256" in t))[0].tensor_proto.string_val
    assert min(int(resized[0]), int(resized[1])) == 256  # width, height of the encoded image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def test_real_tensorboard_server_serves_the_graph(main_job):
    _, logdir, run_dir = main_job
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir),
                               "--host", "127.0.0.1", "--port", str(port), "--reload_interval", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "CI": "true"})
    base = f"http://127.0.0.1:{port}/data/plugin/graphs"
    run = str(run_dir.relative_to(logdir) / "optimized")
    trace_run = str(run_dir.relative_to(logdir) / "graph")
    try:
        deadline, info = time.time() + 180, {}
        while time.time() < deadline:
            try:
                info = get_json(f"{base}/info")
                if run in info and trace_run in info:
                    break
            except OSError:
                pass
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            time.sleep(1)
        assert run in info and info[run]["run_graph"], info
        assert info[trace_run]["run_graph"], info[trace_run]
        query = urllib.parse.urlencode({"run": run, "limit_attr_size": 1024, "large_attrs_key": "_too_large"})
        with urllib.request.urlopen(f"{base}/graph?{query}", timeout=60) as response:
            pbtxt = response.read().decode()
        assert 'name: "vgg19/block1/conv1_1/FusedConv2D+BiasAdd+Relu"' in pbtxt
        assert 'name: "vgg19/block5/conv5_4/FusedConv2D+BiasAdd+Relu"' in pbtxt
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.parametrize("argv,message", [
    (["--weights", "/nonexistent/vgg19.h5"], "no such file"),
    (["--image", "/nonexistent/cat.jpg"], "no such file"),
])
def test_bad_arguments_are_user_errors(argv, message):  # --batch-size 0: argparse, see test_cli_edges
    with pytest.raises(UserError, match=message):
        vgg_graph.parse_args(argv)


def test_bad_input_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    result = run_main_job("--image", str(bad), "--no-bench", "--logdir", str(tmp_path))
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "broken.jpg" in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / job.RUN_FOLDER).exists()


def test_weight_file_is_used(tmp_path):
    """--weights with a real file: its input spec is printed and random-weight warning disappears."""
    from tfbench.data import weights
    from tfbench.models import vgg19

    path = weights.save(tmp_path / "w.npz", vgg19.random_weights(seed=3))
    result = run_main_job("--weights", str(path), "--no-bench", "--no-xla", "--logdir", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "tfbench npz" in result.stdout and "weights are random" not in result.stdout
    assert "eager vs tf.function+XLA" not in result.stdout
