"""The compiler from a model to the course's language: the right MACs (tfbench's own count), nothing moved that
does not fit, a tiling never slower than the untiled program, and a user's .keras file compiled the same way."""

from __future__ import annotations

import pytest

from tfbench.processor import compiler, language, simulator, spec, workload
from tfbench.processor.language import Loop, Move


@pytest.fixture(scope="module")
def small_model():
    """One of each layer kind the compiler lowers, small enough to compile in a second."""
    import keras
    from keras import layers as L

    keras.utils.set_random_seed(0)
    x = inputs = keras.Input((34, 34, 3))
    x = L.Conv2D(16, 3, strides=1, name="conv")(x)  # 32x32x16
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(name="relu")(x)
    y = L.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    x = L.Add(name="add")([x, y])
    x = L.MaxPooling2D(2, name="pool")(x)  # 16x16x16
    x = L.SeparableConv2D(24, 3, name="separable")(x)  # 14x14x24
    x = L.Conv2D(32, 3, strides=2, groups=2, name="grouped")(x)  # 6x6x32
    x = L.AveragePooling2D(2, name="avg")(x)
    x = L.Flatten(name="flat")(x)
    x = L.Dense(10, name="dense")(x)
    return keras.Model(inputs, x, name="small")


def moves(program: list) -> list[Move]:
    out = []
    for ins in program:
        out += moves(ins.body) if isinstance(ins, Loop) else [ins] if isinstance(ins, Move) else []
    return out


@pytest.mark.parametrize("processor", ["course_7_7", "dlp_6_8", "course_7_11", "systolic_32x32_os"])
def test_each_layer_computes_the_macs_tfbench_counts_and_moves_only_what_fits(small_model, processor) -> None:
    p = spec.load(processor)
    work, counts = workload.model_work(small_model, "small")
    compiled = compiler.compile_work(work, p)
    by_layer: dict[str, int] = {}
    for lowered in compiled.layers:
        layer = lowered.work.name.split("/")[0]
        by_layer[layer] = by_layer.get(layer, 0) + lowered.result.ops.get("MAC_32", 0)
        language.check(lowered.program, p, lowered.work.name)  # every move fits its memory, every path exists
        for memory, need in lowered.footprint.items():  # and what the tiling holds at once fits too
            assert need <= p.memories[memory].size, (lowered.work.name, memory, need)
        for move in moves(lowered.program):
            assert move.size <= min(m.size for m in p.memories.values() if m.size and m.name in (move.src, move.dst))
    expected = {c.name: c.macs for c in counts.layers if c.macs}
    assert by_layer == {**{k: 0 for k in by_layer if k not in expected}, **expected}
    assert compiled.macs == counts.total("macs") > 0
    assert {w.name for w in compiled.skipped} == {"relu", "flat"}


def untiled(w: workload.Work) -> str:
    """The layer written by hand in one piece: everything in, one matrix product, everything out."""
    e = 4
    return (f"move NRAM DRAM {w.hin * w.win * w.cin * e}\nmove WRAM DRAM {w.kh * w.kw * w.cin * w.cout * e}\nsync\n"
            f"compute MAC_32 {w.ho * w.wo} {w.kh * w.kw * w.cin} {w.cout}\nsync\n"
            f"move DRAM NRAM {w.ho * w.wo * w.cout * e}\nsync\n")


@pytest.mark.parametrize("processor", ["course_7_7", "systolic_32x32_os"])
def test_the_chosen_tiling_is_never_slower_than_the_untiled_program(small_model, processor) -> None:
    p = spec.load(processor)
    work, _ = workload.model_work(small_model, "small")
    convs = [w for w in work if w.lowering == "conv"]
    for w in convs:
        lowered = compiler.lower(w, p)
        assert lowered.result.cycles <= lowered.baseline.cycles, lowered.explanation
        if w.groups == 1:  # the hand-written untiled program fits these small layers: simulate it
            text = untiled(w)
            program = language.parse(text, w.name)
            language.check(program, p, w.name)
            assert lowered.result.cycles <= simulator.simulate(program, p).cycles, lowered.explanation
    # a big layer: VGG19's conv3 shape (56x56, 256 -> 256) does not fit untiled; the baseline has the largest
    # tiles that fit, one buffer, and double buffering beats it
    big = workload.Work("c", "Conv2D", "conv", 56 * 56 * 256 * 256 * 9, 1, 58, 58, 256, 56, 56, 256, 3, 3, 1)
    lowered = compiler.lower(big, spec.load("course_7_7"))
    assert lowered.result.ops["MAC_32"] == big.macs
    assert lowered.result.cycles < lowered.baseline.cycles and lowered.tiling.buffers == 2
    assert lowered.result.cycles >= big.macs // 256  # never faster than the matrix unit


def test_compression_ratios_shrink_the_dram_bytes_not_the_macs(small_model) -> None:
    p = spec.load("course_7_7")
    dense = [w for w in workload.model_work(small_model, "small")[0] if w.name == "dense"][0]
    plain, packed = compiler.lower(dense, p), compiler.lower(dense, p, ratios=(0.25, 0.5))
    assert packed.result.ops == plain.result.ops
    assert packed.result.bytes["DRAM->WRAM"] == pytest.approx(plain.result.bytes["DRAM->WRAM"] / 4, abs=8)
    assert packed.result.bytes["DRAM->NRAM"] == pytest.approx(plain.result.bytes["DRAM->NRAM"] / 2, abs=8)


def test_scalar_macs_stream_eight_bytes_per_mac(small_model) -> None:
    p = spec.load("scalar_mac_6_9")
    w = [w for w in workload.model_work(small_model, "small")[0] if w.name == "conv"][0]
    r = compiler.lower(w, p).result
    assert r.ops["MAC_32"] == w.macs
    assert r.bytes["DRAM->NRAM"] + r.bytes["DRAM->WRAM"] == 8 * w.macs
    assert r.cycles >= 8 * w.macs / 12.8  # 12.8 bytes per cycle


def test_a_keras_file_the_user_brings_compiles_like_the_model(small_model, tmp_path) -> None:
    from tfbench.models import load

    path = tmp_path / "mine.keras"
    small_model.save(path)
    loaded = load.load(str(path))
    p = spec.load("course_7_7")
    from_file = compiler.compile_work(workload.model_work(loaded.keras_model, loaded.name)[0], p)
    in_memory = compiler.compile_work(workload.model_work(small_model, "small")[0], p)
    assert from_file.cycles == in_memory.cycles and from_file.macs == in_memory.macs


def test_four_cores_share_a_layer_whatever_divides() -> None:
    p = spec.load("course_7_11")
    # LeNet-5's first convolution: 6 channels from 1 do not divide among 4 cores; its 28 rows do
    lenet_c1 = workload.Work("c1", "Conv2D", "conv", 28 * 28 * 6 * 25, 1, 32, 32, 1, 28, 28, 6, 5, 5, 1)
    # 10 outputs from 288 inputs: 8 channels by output channel, the last 2 by input channel
    dense = workload.Work("fc", "Dense", "conv", 288 * 10, 1, 1, 1, 288, 1, 1, 10)
    for w in (lenet_c1, dense):
        lowered = compiler.lower(w, p)
        assert lowered.result.ops["MAC_32"] == w.macs
        assert lowered.result.cycles <= lowered.baseline.cycles
        language.check(lowered.program, p, w.name)
