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
from tfbench.errors import UserError

POOL_SHAPES = ["(1, 112, 112, 64)", "(1, 56, 56, 128)", "(1, 28, 28, 256)", "(1, 14, 14, 512)", "(1, 7, 7, 512)"]


def run_main_job(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tfbench.vgg_graph", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=Path(__file__).parent.parent)


@pytest.fixture(scope="module")
def main_job(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("logs")
    result = run_main_job("--no-bench", "--logdir", str(logdir))
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (logdir / "vgg19").iterdir()
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
    import tensorflow as tf

    _, _, run_dir = main_job
    acc = _graph_def(run_dir / "graph")
    assert acc.SummaryMetadata("vgg19_forward").plugin_data.plugin_name == "graph_run_metadata_graph"
    run_metadata = tf.compat.v1.RunMetadata.FromString(acc.Tensors("vgg19_forward")[0].tensor_proto.string_val[0])
    graph = max((g.pre_optimization_graph for g in run_metadata.function_graphs), key=lambda g: len(g.node))
    ops = [node.op for node in graph.node]
    assert ops.count("ReadVariableOp") == 38
    assert max(node.attr["value"].tensor.ByteSize() for node in graph.node if node.op == "Const") < 10_000


def test_optimized_graph_shows_grappler_fusion(main_job):
    _, _, run_dir = main_job
    graph = _graph_def(run_dir / "optimized").Graph()
    ops = [node.op for node in graph.node]
    assert "Conv2D" not in ops and ops.count("_FusedConv2D") == 16, sorted(set(ops))


def test_images_before_and_after_preprocessing(main_job):
    _, _, run_dir = main_job
    acc = event_accumulator.EventAccumulator(str(run_dir / "images"))
    acc.Reload()
    tags = acc.Tags()["tensors"]
    assert any("input_as_loaded" in t for t in tags) and any("after_crop" in t for t in tags)


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
        assert "vgg19_forward" in info[trace_run]["tags"], info[trace_run]
        query = urllib.parse.urlencode({"run": run, "limit_attr_size": 1024, "large_attrs_key": "_too_large"})
        with urllib.request.urlopen(f"{base}/graph?{query}", timeout=60) as response:
            pbtxt = response.read().decode()
        assert 'name: "vgg19/conv1_1' in pbtxt and 'name: "vgg19/conv5_4' in pbtxt
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
    assert not (tmp_path / "vgg19").exists()


def test_weight_file_is_used(tmp_path):
    """--weights with a real file: its input spec is printed and random-weight warning disappears."""
    from tfbench.models import vgg19
    from tfbench.data import weights

    path = weights.save(tmp_path / "w.npz", vgg19.random_weights(seed=3))
    result = run_main_job("--weights", str(path), "--no-bench", "--no-xla", "--logdir", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "tfbench npz" in result.stdout and "weights are random" not in result.stdout
    assert "eager vs tf.function+XLA" not in result.stdout
