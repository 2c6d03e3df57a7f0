"""Exercises 6.2, 6.8/6.9, 6.10/6.13 on the simulated processor, and ``python -m tfbench.dlp`` end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tfbench.processor import amdahl, compiler, roofline, spec, sweep, workload


@pytest.fixture(scope="module")
def small():
    import keras
    from keras import layers as L

    keras.utils.set_random_seed(0)
    x = inputs = keras.Input((32, 32, 3))
    x = L.Conv2D(32, 3, activation="relu", name="conv1")(x)
    x = L.MaxPooling2D(2, name="pool")(x)
    x = L.Conv2D(64, 3, activation="relu", name="conv2")(x)
    x = L.Flatten(name="flat")(x)
    x = L.Dense(64, name="fc1")(x)
    x = L.Dense(10, name="fc2")(x)
    model = keras.Model(inputs, x, name="small")
    return model, workload.model_work(model, "small")


def test_amdahl_by_hand() -> None:
    # 6.2 with 90% of the time in convolutions (10x) and 10% in fc layers (2x): 1 / (0.9/10 + 0.1/2)
    assert amdahl.speedup({"conv": 0.9, "fc": 0.1, "other": 0.0}, {"conv": 10, "fc": 2}) == pytest.approx(1 / 0.14)
    assert amdahl.speedup({"conv": 0.5, "fc": 0.2, "other": 0.3}, {"conv": 10}) == pytest.approx(1 / 0.55)
    assert amdahl.parse_faster("conv=10,fc=2") == {"conv": 10.0, "fc": 2.0}
    from tfbench.plumbing.errors import UserError

    with pytest.raises(UserError, match="TYPE=FACTOR"):
        amdahl.parse_faster("pool=3")


def test_amdahl_mac_shares_are_the_counted_macs(small) -> None:
    _, (work, counts) = small
    shares = amdahl.group({c.name: (c.kind, c.macs) for c in counts.layers})
    fc = sum(c.macs for c in counts.layers if c.kind == "Dense")
    assert shares["fc"] == pytest.approx(fc / counts.total("macs")) and shares["other"] == 0
    assert shares["conv"] + shares["fc"] == pytest.approx(1)


@pytest.mark.parametrize("processor", ["course_7_7", "dlp_6_8", "systolic_32x32_os"])
def test_no_simulated_point_is_above_the_roof(small, processor) -> None:
    _, (work, _) = small
    p = spec.load(processor)
    limits = roofline.roof(p)
    points = roofline.points("small", compiler.compile_work(work, p))
    for point in points:
        if point["bytes"] and point["flops"]:
            attainable = min(limits["peak_flops"], point["intensity"] * limits["bandwidth"])
            assert point["flops_per_s"] <= attainable * 1.000001, point
    whole = points[-1]
    assert whole["kind"] == "model" and whole["flops"] == sum(p["flops"] for p in points[:-1])


def test_the_sweep_saturates_at_the_bandwidth(small) -> None:
    _, (work, _) = small
    sizes = (16, 64, 256, 1024)
    rows = sweep.sweep(work, spec.load("dlp_6_8"), sizes)
    times = [r["cycles"] for r in rows]
    assert all(b <= a * 1.01 for a, b in zip(times, times[1:]))  # a bigger unit is never slower
    assert rows[-1]["utilisation"] < rows[0]["utilisation"]  # but it is busy less and less of the time
    # scalar MACs reuse nothing: 8 bytes per MAC at 12.8 bytes per cycle is 1.6 MACs per cycle, whatever the size
    scalar = sweep.sweep(work, spec.load("scalar_mac_6_9"), sizes)
    for row in scalar:
        assert row["utilisation"] * row["macs_per_cycle"] == pytest.approx(1.6, rel=0.05)


def test_fully_connected_speedup_at_12_8_gbps_is_the_hand_calculation() -> None:
    """6.3: N ALUs over one on a batch-1 fully connected network, memory at 12.8 Gb/s: each MAC needs a new 4-byte
    weight, so at most 1.6e9 / 4 = 4e8 MACs/s; the ideal speed-up is min(N f, 4e8) / min(f, 4e8)."""
    from tfbench import models

    mlp = models.get("mlp")  # 784-512-256-10 on 28x28x1 digits: three Dense layers (a Keras model, built)
    work, counts = workload.model_work(mlp, "mlp")
    assert all(w.kind == "Dense" for w in work if w.macs)
    sizes = (1, 2, 4, 8, 16)
    for name, clock in (("alu_6_3_1ghz", 1e9), ("alu_6_3_100mhz", 1e8)):
        processor = spec.load(name)
        assert processor.clock == clock
        rows = sweep.sweep(work, processor, sizes)
        seconds = [r["cycles"] / clock for r in rows]
        for n, t in zip(sizes, seconds):
            ideal = min(n * clock, 4e8) / min(clock, 4e8)
            assert seconds[0] / t == pytest.approx(ideal, rel=0.01), (name, n)
        # the memory-bound time is the weights over the link: 4 bytes per MAC at 1.6 GB/s
        assert seconds[-1] == pytest.approx(4 * counts.total("macs") / 1.6e9, rel=0.01)


def dlp(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tfbench.dlp", *args], capture_output=True, text=True, timeout=600)


def test_a_bad_program_is_one_error_line(tmp_path) -> None:
    bad = tmp_path / "bad.dlp"
    bad.write_text("move NRAM DRAM 1024\nloop 3\n  compute MAC_32 256\n")
    # --verbose: without the stderr filter (tfbench.plumbing.cli.filter_stderr), tested on its own elsewhere
    done = dlp("run", str(bad), "--logdir", str(tmp_path / "logs"), "--verbose")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [f"error: {bad}:2: 'loop 3' is never closed (no 'endloop')"]
    assert not (tmp_path / "logs").exists()


def test_run_model_and_roofline_commands(small, tmp_path, capsys) -> None:
    from tfbench import dlp as command

    assert command.main(["run", "ex7_7", "--logdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ex7_7.dlp: 34 cycles = 0.034 us" in out
    assert list((tmp_path / "dlp").glob("*/timeline.png"))
    model, _ = small
    path = tmp_path / "small.keras"
    model.save(path)
    assert command.main(["model", str(path), "--logdir", str(tmp_path), "--sparsity", "0.25,0.5"]) == 0
    out = capsys.readouterr().out
    assert "small on course 7.7" in out and "weights moved at 0.25, inputs at 0.5" in out
    report = json.loads(sorted((tmp_path / "bench").glob("dlp-model-*.json"))[-1].read_text())
    assert report["macs"] == report["counted_macs"] > 0
    assert (tmp_path / "dlp").is_dir() and list((tmp_path / "dlp").glob("*/program.dlp"))
    assert command.main(["roofline", str(path), "--logdir", str(tmp_path)]) == 0
    assert list((tmp_path / "dlp").glob("*/roofline.png"))
