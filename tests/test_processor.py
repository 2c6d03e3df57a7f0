"""The course's processor, language and simulator: shipped 7.7-7.12 programs against hand calculations,
overlap before a sync and serialisation after it, and a line-numbered error for every bad program."""

from __future__ import annotations

import importlib.resources

import pytest

from tfbench.plumbing.errors import UserError
from tfbench.processor import language, simulator, spec


def run(text: str, processor: str | spec.Processor = "course_7_7") -> simulator.Result:
    p = spec.load(processor) if isinstance(processor, str) else processor
    program = language.parse(text, "test.dlp")
    language.check(program, p, "test.dlp")
    return simulator.simulate(program, p)


def shipped(name: str) -> str:
    return (importlib.resources.files("tfbench.processor") / "programs" / f"{name}.dlp").read_text()


def test_the_shipped_processors_load_and_say_what_the_exercises_say() -> None:
    assert {"course_7_7", "course_7_11", "dlp_6_8", "scalar_mac_6_9", "systolic_32x32_os", "alu_6_3_1ghz",
            "alu_6_3_100mhz"} <= set(spec.shipped_names())
    core = spec.load("course_7_7")
    assert (core.memories["WRAM"].size, core.memories["NRAM"].size) == (256 * 1024, 128 * 1024)
    assert core.units["matrix"].ops["MAC_32"] == 256 and core.clock == 1e9 and core.cores == 1
    assert core.bytes_per_cycle(core.links["offchip"]) == 64  # 64 GB/s at 1 GHz
    cluster = spec.load("course_7_11")
    assert cluster.cores == 4 and cluster.memories["SRAM"].size == 2 << 20
    assert cluster.bytes_per_cycle(cluster.links["offchip"]) == 128
    assert cluster.bytes_per_cycle(cluster.links["shared_to_core"]) == 1000  # 1 TB/s
    assert spec.load("dlp_6_8").links["feed"].bandwidth == 12.8e9
    assert spec.load("systolic_32x32_os").units["array"].array == (32, 32)


# hand calculations, one per exercise: cycles at 1 GHz (so cycles = nanoseconds)
HAND = {
    # 1 KB + 1 KB at 64 B/cycle on one link, 256 MACs on 256 lanes, 4 bytes out: transfer-bound
    "ex7_7": ("course_7_7", 1024 // 64 + 1024 // 64 + 256 // 256 + 1),
    # x + W quarter (32 KB + 32 KB), then 4 quarters of 262144 MACs (1024 cycles) hiding the rest, 4 KB out
    "ex7_8": ("course_7_7", (32768 + 32768) // 64 + 4 * (32 * 256 * 32 // 256) + 4096 // 64),
    # W 128 KB + first tile 32 KB, 32 tiles of 1048576 MACs (4096 cycles) hiding 512 + 256, last tile out
    "ex7_9": ("course_7_7", (131072 + 32768) // 64 + 32 * (32 * 256 * 128 // 256) + 16384 // 64),
    # the same with W 32 KB and tiles of 16 KB: compute-bound, only the ends shrink
    "ex7_10": ("course_7_7", (32768 + 16384) // 64 + 32 * 4096 + 16384 // 64),
    # 160 KB at 128 B/cycle, 64 KB per core at 1000 B/cycle (33 + 33), 1024 cycles, 4 KB per core, 16 KB out
    "ex7_11": ("course_7_11", 163840 // 128 + 33 + 33 + 32 * 256 * 32 // 256 + 5 + 16384 // 128),
    # x 1 MB + W block 512 KB; 4 blocks of (165 + 32 x 4096 + 512)
    "ex7_12": ("course_7_11", (1048576 + 524288) // 128 + 4 * (132 + 33 + 32 * 4096 + 4 * 16384 // 128)),
}


@pytest.mark.parametrize("name", sorted(HAND))
def test_each_shipped_program_takes_its_hand_calculated_time(name: str) -> None:
    processor, cycles = HAND[name]
    result = run(shipped(name), processor)
    assert result.cycles == cycles
    assert result.seconds == pytest.approx(cycles * 1e-9)
    events, truncated = simulator.timeline(language.parse(shipped(name)), spec.load(processor), limit=10**6)
    assert not truncated and max(e.end for e in events) == cycles  # unrolled, the closed form agrees


def test_the_shipped_programs_are_transfer_bound_and_compute_bound_as_the_comments_say() -> None:
    busy = {name: run(shipped(name), HAND[name][0]).busy_fraction() for name in HAND}
    assert busy["ex7_7"]["link:offchip"] > 0.9 > 0.1 > busy["ex7_7"]["unit:matrix"]
    assert busy["ex7_9"]["unit:matrix"] > 0.97 and busy["ex7_12"]["unit:matrix"] > 0.97
    assert busy["ex7_11"]["link:offchip"] > busy["ex7_11"]["unit:matrix"]
    r = run(shipped("ex7_12"), "course_7_11")
    assert r.ops["MAC_32"] == 1024 * 256 * 2048  # all four cores together: the whole product
    assert r.bytes["DRAM->SRAM"] == (1024 * 256 + 256 * 2048) * 4  # x once, W once
    assert r.bytes["NRAM->DRAM"] == 1024 * 2048 * 4  # y once


def test_a_transfer_and_a_computation_overlap_until_a_sync() -> None:
    # 6400 bytes at 64 B/cycle = 100 cycles; 256 x 60 MACs = 60 cycles: together max(100, 60)
    assert run("move NRAM DRAM 6400\ncompute MAC_32 256*60\nsync").cycles == 100
    assert run("compute MAC_32 256*160\nmove NRAM DRAM 6400").cycles == 160  # the end of the program is a sync


def test_a_sync_serialises_the_two() -> None:
    assert run("move NRAM DRAM 6400\nsync\ncompute MAC_32 256*60\nsync").cycles == 160
    # two transfers on one link take turns even without a sync; two different units overlap
    assert run("move NRAM DRAM 6400\nmove WRAM DRAM 6400").cycles == 200
    assert run("compute MAC_32 2560\ncompute ADD_32 640").cycles == 10


def test_loops_in_closed_form_equal_the_loop_unrolled() -> None:
    body = "move NRAM DRAM 640\ncompute MAC_32 256*7\nsync\ncompute ADD_32 64*3\n"
    looped = "loop 5\n" + body + "endloop\nmove DRAM NRAM 64\n"
    unrolled = body * 5 + "move DRAM NRAM 64\n"
    assert run(looped).cycles == run(unrolled).cycles
    nested = "loop 3\nloop 4\n" + body + "endloop\nsync\nendloop\n"
    assert run(nested).cycles == run(("loop 4\n" + body + "endloop\nsync\n") * 3).cycles
    assert run("loop 1000000\ncompute MAC_32 256\nendloop").cycles == 1000000


def test_the_cluster_copies_per_core_moves_and_shares_the_offchip_link() -> None:
    # NRAM is per core: each of the 4 cores moves 12800 bytes over the one 128 B/cycle link: 400 cycles
    r = run("move NRAM DRAM 12800", "course_7_11")
    assert r.cycles == 400 and r.bytes["DRAM->NRAM"] == 4 * 12800
    assert run("move SRAM DRAM 12800", "course_7_11").cycles == 100  # the SharedRAM: once
    assert run("move NRAM SRAM 10000", "course_7_11").cycles == 10  # each core's own 1000 B/cycle link


BAD = [
    ("move NRAM DRAM 1024\nmove XRAM DRAM 16\n", 2, "unknown ram type 'XRAM'"),
    ("sync\nmove NRAM DRAM 129KB\n", 2, "does not fit in NRAM"),
    ("move WRAM DRAM 300*1024\n", 1, "does not fit in WRAM"),
    ("sync\nloop 4\n  compute MAC_32 256\n", 2, "never closed"),
    ("compute MAC_32 256\nendloop\n", 2, "'endloop' without a 'loop'"),
    ("compute MAC_64 256\n", 1, "unknown compute type 'MAC_64'"),
    ("\n\nfetch NRAM DRAM 16\n", 3, "unknown instruction 'fetch'"),
    ("move NRAM DRAM\n", 1, "expected 'move DST SRC SIZE'"),
    ("move NRAM DRAM 12.5\n", 1, "SIZE must be a whole number"),
    ("loop -2\nendloop\n", 1, "loop count"),
    ("move NRAM WRAM 64\n", 1, "no path between WRAM and NRAM"),
    ("sync now\n", 1, "'sync' takes nothing"),
]


@pytest.mark.parametrize("text,line,message", BAD)
def test_every_bad_program_gets_one_error_naming_its_line(text: str, line: int, message: str) -> None:
    with pytest.raises(UserError) as err:
        run(text)
    assert str(err.value).startswith(f"test.dlp:{line}: ") and message in str(err.value)


def test_a_bad_processor_file_is_named_with_its_key(tmp_path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('clock_ghz = 1\n[memories]\nDRAM = "off-chip"\nNRAM = "12 parsecs"\n[links]\n[units]\n')
    with pytest.raises(UserError, match=r"mine.toml: memories.NRAM: expected a size"):
        spec.load(str(path))
    path.write_text('clock_ghz = 1\n[memories]\nDRAM = "off-chip"\n[links.a]\nbandwidth="1GB/s"\npaths=["DRAM-X"]\n'
                    '[units]\n')
    with pytest.raises(UserError, match=r"links.a.paths: 'DRAM-X'"):
        spec.load(str(path))
    path.write_text("clock_ghz = \n")
    with pytest.raises(UserError, match="not valid TOML"):
        spec.load(str(path))


def test_a_systolic_array_costs_its_folds() -> None:
    array = spec.load("systolic_32x32_os")
    # 64 x 100 by 100 x 40 on 32x32 output stationary: 2 x 2 folds of 100 + 62 cycles
    assert run("compute MAC_32 64 100 40", array).cycles == 4 * (100 + 32 + 32 - 2)
    # on a plain 256-lane unit the shape changes nothing
    assert run("compute MAC_32 64 100 40").cycles == 64 * 100 * 40 // 256


def test_a_processor_file_the_user_writes(tmp_path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\nclock_ghz = 0.5\ncores = 2\n[memories]\nDRAM = "off-chip"\n'
                    'NRAM = { size = "16KB", scope = "core" }\n'
                    '[links.bus]\nbandwidth = "8GB/s"\npaths = ["DRAM-NRAM"]\nshared = false\n'
                    '[units.mac]\nMAC_16 = 64\n')
    p = spec.load(str(path))
    # 16 bytes per cycle at 0.5 GHz; each core its own bus: 1600 bytes in 100 cycles; 6400 MACs in 100 cycles
    r = run("move NRAM DRAM 1600\ncompute MAC_16 6400\nsync\nmove NRAM DRAM 1600", p)
    assert r.cycles == 200 and r.seconds == pytest.approx(200 / 0.5e9)
    assert r.ops["MAC_16"] == 2 * 6400 and r.bytes["DRAM->NRAM"] == 2 * 3200
    with pytest.raises(UserError, match="test.dlp:1: mine has no unit for MAC_32"):
        run("compute MAC_32 64", p)
