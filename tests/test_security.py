"""Untrusted model files and the local cluster's ports: hostile files this test writes, refused by name.

- SavedModels whose function writes a file, reads a file, lists a folder, prints, or holds a
  dataset reader: each refused by ``python -m tfbench.inspect`` in one line naming the op and the
  function, with nothing written or read on disk (a FIFO as the file to read: opening it would
  block, so the command finishing proves nothing opened it); each accepted with ``--allow-code``,
  where the disk shows the effect.
- ``.keras`` with a Python lambda: refused naming ``--allow-code``; accepted with it.
- ``.keras`` declaring a Dense layer of 10^12 weights: refused with its size, peak memory measured.
- ``--scan``: every op with counts, the refused ones marked.
- The loading child: a ``.keras`` whose code (allowed with ``--allow-code``) aborts or segfaults ends as one line.
- The tf.data service cluster: its ports listen in a network namespace of its own, never on an
  address of this machine's own namespace (read from ``/proc/net/tcp*``; no traffic is sent).
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfbench.models import keras_check, load, scan
from tfbench.plumbing.errors import UserError

REPO = Path(__file__).resolve().parent.parent
SPEC = [tf.TensorSpec([None, 6], tf.float32)]


def run_inspect(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "tfbench.inspect", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=env)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    return lines[0]


def hostile_modules(target: Path, secret: Path, folder: Path) -> dict[str, tuple[tf.Module, str]]:
    """A tf.Module per hostile behaviour, and the op the scan must name."""

    class Writer(tf.Module):
        @tf.function(input_signature=SPEC)
        def __call__(self, x):
            tf.io.write_file(str(target), "written by a model")
            return x * 2.0

    class Reader(tf.Module):
        @tf.function(input_signature=SPEC)
        def __call__(self, x):
            return x * tf.cast(tf.strings.length(tf.io.read_file(str(secret))), tf.float32)

    class Lister(tf.Module):
        @tf.function(input_signature=SPEC)
        def __call__(self, x):
            return x * tf.cast(tf.size(tf.io.matching_files(str(folder / "*"))), tf.float32)

    class Printer(tf.Module):
        @tf.function(input_signature=SPEC)
        def __call__(self, x):
            tf.print("MODEL-PRINTED", tf.reduce_sum(x), output_stream=sys.stderr)
            return x + 1.0

    class DataReader(tf.Module):
        @tf.function(input_signature=SPEC)
        def __call__(self, x):
            lines = tf.data.TextLineDataset(str(secret)).reduce(0.0, lambda n, _: n + 1.0)
            return x * lines

    return {"write": (Writer(), "WriteFile"), "read": (Reader(), "ReadFile"), "list": (Lister(), "MatchingFiles"),
            "print": (Printer(), "PrintV2"), "dataset": (DataReader(), "TextLineDataset")}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    target, secret, folder = root / "written.txt", root / "secret.txt", root / "private"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    (folder / "b.txt").write_text("b")
    models = {}
    for name, (module, op) in hostile_modules(target, secret, folder).items():
        tf.saved_model.save(module, str(root / name))
        models[name] = (root / name, op)
    return root, target, secret, folder, models


def fifo(path: Path) -> Path:
    """``path`` as a named pipe: a process that opens it for reading blocks (no writer), so a finished
    command proves nobody opened it."""
    if path.exists():
        path.unlink()
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("name", ["write", "read", "list", "print", "dataset"])
def test_hostile_savedmodel_is_refused_by_name_and_nothing_happens(hostile, name, capfd):
    from tfbench import inspect

    root, target, secret, folder, models = hostile
    path, op = models[name]
    fifo(secret)
    fifo(folder / "c.txt")  # MatchingFiles does not open files; the listing itself is refused by the scan
    before = sorted(p.name for p in root.iterdir())
    with pytest.raises(UserError) as err:  # the command's own code, in this process (one run below as a process)
        inspect.main([str(path), "--quick", "--no-progress", "--verbose", "--logdir", str(root / "logs")])
    line = str(err.value)
    assert line.startswith(f"{path}: refused before anything of it runs") and op in line, line
    assert re.search(rf"{op} \([^)]*; in __inference___call___\d+", line) or (
        name == "dataset" and "__inference_Dataset_flat_map" in line), line
    assert "--allow-code" in line
    out = capfd.readouterr()
    assert not target.exists() and "MODEL-PRINTED" not in out.err + out.out
    assert stat.S_ISFIFO(secret.stat().st_mode)  # still the pipe nobody opened
    assert sorted(p.name for p in root.iterdir()) == before  # no run folder, no file


def test_the_command_refuses_in_one_line(hostile):
    root, target, _, _, models = hostile
    proc = run_inspect(str(models["write"][0]), "--quick", "--no-progress", "--logdir", str(root / "logs"), cwd=root)
    assert one_error_line(proc).startswith(f"error: {models['write'][0]}: refused before anything of it runs")
    assert not target.exists()


def test_hostile_savedmodels_run_with_allow_code(hostile, capfd):
    root, target, secret, folder, models = hostile
    secret.unlink(missing_ok=True)  # the refusal tests leave FIFOs here and below
    secret.write_text("line 1\nline 2\nline 3\n")
    (folder / "c.txt").unlink(missing_ok=True)
    x = tf.ones((1, 6))
    for name, (path, op) in models.items():
        with pytest.raises(UserError, match=op):
            load.load(str(path), isolate=False)
        loaded = load.load(str(path), allow_code=True, isolate=False)
        y = loaded.call(x).numpy()
        expected = {"write": 2.0, "read": len(secret.read_text()), "list": 2.0, "print": 2.0, "dataset": 3.0}[name]
        np.testing.assert_allclose(y, np.full((1, 6), expected))
    assert target.read_text() == "written by a model"
    assert "MODEL-PRINTED" in capfd.readouterr().err


def test_allow_code_through_the_loading_child_writes_the_file(hostile, capsys):
    from tfbench import inspect

    root, target, _, _, models = hostile
    if target.exists():
        target.unlink()
    assert inspect.main([str(models["write"][0]), "--quick", "--allow-code", "--no-progress", "--verbose", "--json",
                         "--logdir", str(root / "logs")]) == 0
    assert json.loads(capsys.readouterr().out)["source"] == "savedmodel"
    assert target.read_text() == "written by a model"


def test_scan_reports_every_op_and_the_refused_ones(hostile, tmp_path):
    _, _, _, _, models = hostile
    result = scan.scan_savedmodel(models["write"][0])
    assert result.refused.keys() == {"WriteFile"} and result.counts["WriteFile"] == 1
    assert result.counts["SaveV2"] == 1 and len(result.saver_functions) == 2  # the checkpoint functions pass
    report = scan.scan_report(result)
    assert "| WriteFile | 1 | REFUSED: file I/O |" in report and "| SaveV2 | 1 | allowed in the checkpoint" in report

    class Clean(tf.Module):
        def __init__(self):
            self.w = tf.Variable(tf.ones((6, 2)))

        @tf.function(input_signature=SPEC)
        def __call__(self, x):
            return tf.nn.softmax(tf.matmul(x, self.w))

    tf.saved_model.save(Clean(), str(tmp_path / "clean"))
    clean = scan.scan_savedmodel(tmp_path / "clean")
    assert clean.ok and clean.counts["MatMul"] == 1 and clean.counts["Softmax"] == 1
    keras.Sequential([keras.Input((5,)), keras.layers.Dense(3), keras.layers.Dense(2)]).export(
        str(tmp_path / "exported"), verbose=False)
    assert scan.scan_savedmodel(tmp_path / "exported").ok


def test_checkpoint_ops_in_a_serving_function_are_refused(tmp_path):
    class Saver(tf.Module):
        def __init__(self):
            self.v = tf.Variable(tf.zeros(6))

        @tf.function(input_signature=SPEC)
        def __call__(self, x):
            tf.raw_ops.SaveV2(prefix=str(tmp_path / "stolen"), tensor_names=["v"], shape_and_slices=[""],
                              tensors=[self.v.read_value()])
            return x

    tf.saved_model.save(Saver(), str(tmp_path / "saver"))
    result = scan.scan_savedmodel(tmp_path / "saver")
    assert "SaveV2" in result.refused and all("call" in f for f in result.refused["SaveV2"]), result.refused


def test_scan_command_prints_the_table(hostile, capsys):
    from tfbench import inspect

    _, _, _, _, models = hostile
    with pytest.raises(UserError, match="refused before anything of it runs"):
        inspect.main(["--scan", str(models["print"][0])])
    assert "| PrintV2 | 1 | REFUSED: printing/debug output |" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------- Keras


def lambda_model() -> keras.Model:
    i = keras.Input((4,), name="x")
    return keras.Model(i, keras.layers.Lambda(lambda t: t * 3.0, name="times3")(keras.layers.Dense(2)(i)))


def test_keras_lambda_is_refused_naming_allow_code(tmp_path):
    path = tmp_path / "lambda.keras"
    lambda_model().save(path)
    with pytest.raises(UserError) as err:
        load.load(str(path), isolate=False)
    assert "--allow-code" in str(err.value) and "safe_mode" not in str(err.value) and str(path) in str(err.value)
    loaded = load.load(str(path), allow_code=True, isolate=False)
    assert loaded.call(tf.ones((1, 4))).shape == (1, 2)
    text, refusal = scan.scan_file(path)
    assert "| Lambda | 1 | REFUSED: Python code |" in text and "--allow-code" in refusal


def test_keras_lambda_through_the_command(tmp_path):
    from tfbench import inspect

    for suffix in (".keras", ".h5"):  # .keras: refused from its config; .h5: in the loading child (h5py reads it)
        path = tmp_path / f"lambda{suffix}"
        lambda_model().save(path)
        with pytest.raises(UserError) as err:
            inspect.main([str(path), "--quick", "--no-progress", "--verbose"])
        assert str(err.value) == keras_check.code_refusal(path)


def edit_keras_config(source: Path, path: Path, edit) -> Path:
    """``path``: the .keras archive ``source`` with ``edit(config)`` applied to its config.json, zipped again."""
    with zipfile.ZipFile(source) as src:
        members = {n: src.read(n) for n in src.namelist()}
    config = json.loads(members["config.json"])
    edit(config)
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as out:
        for member, data in members.items():
            out.writestr(member, data)
    return path


def declare_huge_dense(path: Path, features: int = 10**6, units: int = 10**6) -> Path:
    """A valid .keras archive whose config declares Dense(units) on ``features`` inputs: 10^12 weights."""
    i = keras.Input((4,), name="x")
    small = keras.Model(i, keras.layers.Dense(2, name="huge")(i))
    small.save(path.with_name("small.keras"))

    def patch(node):
        if isinstance(node, dict):
            if node.get("class_name") == "InputLayer":
                node["config"]["batch_shape"] = [None, features]
            if node.get("class_name") == "Dense":
                node["config"]["units"] = units
                node["build_config"] = {"input_shape": [None, features]}
            for value in node.values():
                patch(value)
        elif isinstance(node, list):
            for value in node:
                patch(value)

    return edit_keras_config(path.with_name("small.keras"), path, patch)


def test_huge_declared_layer_is_refused_with_its_size(tmp_path):
    path = declare_huge_dense(tmp_path / "huge.keras")
    with pytest.raises(UserError, match=r"declares 1,000,001,000,000 weights \(3,725\.3 GiB\), 1,000,001,000,000 of "
                                        r"them in layer huge \(Dense\)"):
        load.load(str(path), isolate=False)


@pytest.mark.slow
def test_huge_declared_layer_through_the_command_stays_small(tmp_path):
    path = declare_huge_dense(tmp_path / "huge.keras")
    probe = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
             "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
             "time.perf_counter() - t); sys.stderr.write(p.stderr)")
    proc = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "tfbench.inspect", str(path), "--quick",
                           "--no-progress"], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    code, peak_kb, seconds = proc.stdout.split()
    line = one_error_line(subprocess.CompletedProcess([], int(code), "", proc.stderr))
    assert "1,000,001,000,000 weights" in line and "refused before building any weight" in line
    print(f"\n10^12-weight .keras refused in {float(seconds):.1f} s, peak RSS {int(peak_kb) / 1024:.0f} MB")
    assert int(peak_kb) < 1536 * 1024  # 4 TB declared; TensorFlow itself takes most of this


# ----------------------------------------------------------------------------------------- cluster


def listening_ports(path: str) -> set[int]:
    """Ports in LISTEN state in a ``/proc/.../net/tcp`` or ``tcp6`` table."""
    ports = set()
    with open(path) as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def namespace_available() -> bool:
    code = "from tfbench.parallel import netns; print(netns.enter_private_network() is None)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    return out.stdout.strip() == "True"


def test_private_network_has_only_loopback_and_hides_its_ports():
    code = ("import json, os, socket; from tfbench.parallel import netns; why = netns.enter_private_network(); "
            "s = socket.socket(socket.AF_INET6); s.bind(('::', 0)); s.listen(); "
            "c = socket.create_connection(('127.0.0.1', s.getsockname()[1]), timeout=5); "
            "print(json.dumps({'why': why, 'port': s.getsockname()[1], 'ifaces': netns.interfaces(), "
            "'ns': os.readlink('/proc/self/ns/net')}), flush=True); input()")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        info = json.loads(child.stdout.readline())
        if info["why"] is not None:  # this machine forbids namespaces: the command says so with the ports instead
            from tfbench.parallel import netns

            assert "listen on every network interface" in netns.exposure_line([info["port"]], info["why"])
            return
        assert info["ifaces"] == ["lo"] and info["ns"] != os.readlink("/proc/self/ns/net")
        assert info["port"] in listening_ports(f"/proc/{child.pid}/net/tcp6")  # [::]:port, inside
        mine = listening_ports("/proc/self/net/tcp") | listening_ports("/proc/self/net/tcp6")
        assert info["port"] not in mine  # no socket of this machine's own network listens there
    finally:
        child.communicate("\n", timeout=30)


@pytest.mark.slow
def test_data_service_ports_are_unreachable_from_this_machines_network(tmp_path):
    from test_distributed import Launched  # the cluster tests' launcher: output lines read with timeouts

    from tfbench.data import imagenet_val

    src = imagenet_val.embedded_sample(tmp_path / "sample-val")
    imagenet_val.convert(src, tmp_path / "shards", num_shards=2, workers=1, progress=False)
    job = Launched(["data-service", "--data", str(tmp_path / "shards"), "--data-workers", "1",
                    "--consumers", "1", "--model", "none", "--image-size", "32", "--batch-size", "1",
                    "--logdir", str(tmp_path), "--timeout", "300"])
    try:
        port = int(job.wait_for(r"^dispatcher grpc://127\.0\.0\.1:(\d+)").group(1))
        mine = listening_ports("/proc/self/net/tcp") | listening_ports("/proc/self/net/tcp6")
        theirs = listening_ports(f"/proc/{job.proc.pid}/net/tcp") | listening_ports(f"/proc/{job.proc.pid}/net/tcp6")
        private = any(line.startswith("network: the cluster runs in a network namespace") for line in job.lines)
        if private:
            assert port in theirs and port not in mine
            with open(f"/proc/{job.proc.pid}/net/dev") as f:
                assert [row.split(":")[0].strip() for row in f.readlines()[2:]] == ["lo"]
        else:
            assert any(line.startswith("warning: TCP ports ") and str(port) in line for line in job.lines)
            assert not namespace_available()
        assert job.finish() == 0, "\n".join(job.lines[-30:])
    finally:
        job.kill()


# ----------------------------------------------------------------------------------------- the loading child


def with_code(path: Path, body: str) -> Path:
    """A .keras whose Lambda runs ``body`` when called: saved harmless, then its marshalled code replaced (the
    hostile function is compiled here, never called)."""
    from keras.src.utils.python_utils import func_dump

    i = keras.Input((4,), name="x")
    keras.Model(i, keras.layers.Lambda(lambda t: t, output_shape=(4,), name="hostile")(i)).save(path)

    def replace_code(config):
        layer = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Lambda")
        layer["config"]["function"]["config"]["code"] = func_dump(eval(f"lambda t: ({body}, t)[1]"))[0]  # noqa: S307

    return edit_keras_config(path, path, replace_code)


def test_a_crash_inside_the_loading_child_is_one_line(tmp_path):
    """A .keras whose code (allowed with --allow-code) aborts or segfaults: the child dies, the command says so."""
    from tfbench import inspect

    crashes = {"abort": ('__import__("os").abort()', "SIGABRT"),
               "segfault": ('__import__("ctypes").string_at(0)', "SIGSEGV")}
    for name, (body, signal_name) in crashes.items():
        path = with_code(tmp_path / f"{name}.keras", body)
        with pytest.raises(UserError) as err:
            inspect.main([str(path), "--quick", "--allow-code", "--no-progress", "--verbose"])
        line = str(err.value)
        assert line.startswith(f"{path}: TensorFlow crashed while loading this file, in a separate process: "
                               f"{signal_name}") and "\n" not in line, line


def test_a_vocabulary_file_outside_the_archive_is_refused(tmp_path):
    """A StringLookup whose config names a file of the user's: Keras' safe mode refuses it, tfbench says which."""
    secret = tmp_path / "secret_words.txt"
    secret.write_text("alpha\nbeta\n")
    i = keras.Input((1,), dtype="string", name="words")
    keras.Model(i, keras.layers.StringLookup(vocabulary=["a", "b"], name="lookup")(i)).save(tmp_path / "ok.keras")

    def point_at_secret(config):
        next(layer for layer in config["config"]["layers"] if layer["class_name"] == "StringLookup")["config"][
            "vocabulary"] = str(secret)

    path = edit_keras_config(tmp_path / "ok.keras", tmp_path / "vocabulary.keras", point_at_secret)
    with pytest.raises(UserError, match=rf"vocabulary file outside of the model archive \(Vocabulary file: "
                                        rf"'{re.escape(str(secret))}'\).*--allow-code"):
        load.load(str(path), isolate=False)
