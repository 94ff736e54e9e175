"""Static ARM estimates (bitedge.render.mca / estimate, bench/arm_estimate.py, `bitedge tune --estimate`).

The llvm-mca runs are skipped with a reason when llvm-mca or clang is missing; the parsing and the cache ranking
are tested without them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bitedge.targets import get_target, parse_target
from bitedge.errors import BitedgeError
from bitedge.render import mca
from bitedge.render.tune import cache_key, load_cache, save_cache, tuned_tiles

MCA_REPORT = """Iterations:        200
Instructions:      9400
Total Cycles:      5823
Total uOps:        9400

Dispatch Width:    4
uOps Per Cycle:    1.61
IPC:               1.61
Block RThroughput: 23.5
"""

ASM = """\
be_mca_entry:
// %bb.0:
\tmov\tx8, xzr
\t.p2align\t5, , 16
.LBB0_2:                                //   Parent Loop BB0_1 Depth=1
                                        // =>  This Inner Loop Header: Depth=2
\tldp\tq0, q1, [x1], #32
\tsdot\tv2.4s, v0.16b, v1.16b
\tsdot\tv3.4s, v0.16b, v1.16b
\tb.eq\t.LBB0_9
\tsubs\tx8, x8, #1
\tb.ne\t.LBB0_2
// %bb.3:
\tret
.Lfunc_end0:
"""


def _tools_or_skip():
    try:
        return mca.tools()
    except BitedgeError as e:
        pytest.skip(f"no LLVM toolchain for estimates: {e}")


def test_parse_mca_report():
    r = mca.parse_mca(MCA_REPORT)
    assert r == {"iterations": 200, "instructions": 9400, "cycles": 5823, "ipc": 1.61, "rthroughput": 23.5}
    with pytest.raises(BitedgeError, match="Total Cycles"):
        mca.parse_mca(MCA_REPORT.replace("Total Cycles", "Cycles"))


def test_hot_loop_extraction_and_mca_input():
    loop, n = mca.hot_loop(ASM, "be_mca_entry", "sdot")
    assert loop[0] == ".LBB0_2:" and loop[-1].startswith("b.ne") and n == 2
    text = mca.mca_input(loop)
    assert text.rstrip().endswith(".LBB0_9:")  # a label the loop leaves to is defined, so it assembles
    with pytest.raises(BitedgeError, match="no inner loop with tbl1"):
        mca.hot_loop(ASM, "be_mca_entry", "tbl1")


def test_estimate_one_kernel_on_one_cpu(tmp_path):
    _tools_or_skip()
    from bitedge.render.estimate import board, estimate_kernel, runtime_kernels

    target = get_target("rpi5")
    case = next(c for c in runtime_kernels(target, 2560) if c.name == "i2_s runtime dotprod gemv")
    est = estimate_kernel(target, case, tmp_path)
    # 8 sdot + the 2-bit unpack per block-row on two 128-bit pipes: a handful of cycles, not hundreds
    assert 4 < est.cycles_per_block < 60
    assert est.loop.work_per_iter == 4  # the runtime's dotprod gemv takes four rows per iteration
    assert est.loop.mca_cpu == "neoverse-n1"
    assert 0 < est.gbps(board(target)["clock_ghz"]) < 50
    assert list(tmp_path.glob("*.loop.s"))  # the modelled loop is kept for inspection


def test_estimate_i8mm_gemm(tmp_path):
    """An i8mm profile (Apple M2) models the neon-i8mm table's smmla gemm: 4 smmla per block-row, and fewer cycles
    per token than the dotprod gemm of the same build at LLVM's Neoverse V1 model."""
    _tools_or_skip()
    from bitedge.render.estimate import estimate_kernel, runtime_kernels

    target = get_target("apple-m2")
    cases = {c.name: c for c in runtime_kernels(target, 2560)}
    i8mm = estimate_kernel(target, cases["i2_s runtime i8mm gemm (8 tokens)"], tmp_path, mca_cpu=mca.I8MM_MCA_CPU)
    dot = estimate_kernel(target, cases["i2_s runtime dotprod gemm (4 tokens)"], tmp_path, mca_cpu=mca.I8MM_MCA_CPU)
    assert i8mm.loop.work_per_iter >= 16 and i8mm.loop.mca_cpu == "neoverse-v1"
    assert 0 < i8mm.cycles_per_block < dot.cycles_per_block


def test_tune_estimate_marks_estimated_and_measured_wins(tmp_path):
    _tools_or_skip()
    from bitedge.render.estimate import estimate_tune

    cache = tmp_path / "tuning.json"
    cands = {"tl1": [{"bm": 32, "bk": 128, "bn": 256}, {"bm": 64, "bk": 128, "bn": 256}]}
    shapes = [(64, 256)]
    results = estimate_tune(get_target("rpi5"), shapes, ["tl1"], candidates=cands, cache_path=cache)
    entry = results["tl1/64x256"]
    assert entry["estimated"] is True and not entry["emulated"] and "not a measurement" in entry["where"]
    assert entry["mean_ns"] > 0 and len(entry["candidates"]) == 2
    stored = load_cache(cache)["entries"]
    assert all(e["estimated"] for e in stored.values())
    assert tuned_tiles(get_target("rpi5"), "tl1", shapes, cache_path=cache)[(64, 256)] == entry["tiles"]

    # a board's measurement, older than the estimate, still wins
    other = {"bm": 96, "bk": 252, "bn": 768}
    data = load_cache(cache)
    data["entries"][cache_key("Cortex-A76", get_target("rpi5"), "tl1", (64, 256))] = {
        "tiles": other, "mean_ns": 1e6, "sd_ns": 0.0, "emulated": False, "cpu": "Cortex-A76",
        "measured_at": "2000-01-01T00:00:00Z"}
    save_cache(data, cache)
    assert tuned_tiles(get_target("rpi5"), "tl1", shapes, cache_path=cache)[(64, 256)] == other
    json.loads(Path(cache).read_text())  # still a valid cache


def test_tune_estimate_ranks_the_hand_written_i2s(tmp_path):
    """i2_s is estimated as the hand-written gemv bitedge-run links (nothing to tile), the one its CPU picks."""
    _tools_or_skip()
    from bitedge.render.estimate import estimate_kernel, estimate_tune, runtime_kernels

    results = estimate_tune(get_target("rpi4"), [(64, 256)], ["i2_s"], cache_path=tmp_path / "tuning.json")
    entry = results["i2_s/64x256"]
    assert entry["tiles"] == {} and len(entry["candidates"]) == 1 and entry["estimated"] is True
    case = next(c for c in runtime_kernels(get_target("rpi4"), 256) if c.name == "i2_s runtime neon gemv")
    assert entry["cycles_per_block"] == pytest.approx(estimate_kernel(get_target("rpi4"), case, tmp_path).cycles_per_block)


def test_cli_estimate_refuses_host(tmp_path):
    from click.testing import CliRunner

    from bitedge.cli import cli

    model = tmp_path / "m.gguf"
    model.write_bytes(b"not read: the option clash is refused first")
    r = CliRunner().invoke(cli, ["tune", str(model), "--estimate", "--host", "pi5", "--target", "rpi5"])
    assert r.exit_code != 0 and "--estimate" in (r.output + str(r.exception))


def test_profile_estimate_key():
    base = {"id": "b", "name": "B", "os": "linux", "arch": "aarch64", "libc": "glibc", "cpu_flags": [],
            "isa": ["neon"], "cores": 1, "memory_mb": 1, "toolchains": ["gcc"]}
    t = parse_target({**base, "kernel": {"method": "i2_s", "measured": False, "estimate": "llvm-mca: ..."}}, Path("b.toml"))
    assert t.kernel.estimate == "llvm-mca: ..." and t.kernel.as_dict()["estimate"] == "llvm-mca: ..."
    with pytest.raises(BitedgeError, match="kernel.estimate"):
        parse_target({**base, "kernel": {"method": "i2_s", "measured": True, "estimate": "x"}}, Path("b.toml"))
    for tid in mca.BOARDS:  # every ARM profile: its default says "estimated", with the figure, never "measured"
        kernel = get_target(tid).kernel
        assert not kernel.measured and "static estimate, not measured" in kernel.estimate and " ms" in kernel.estimate


def test_tl_default_profiles_take_the_default_tiles(tmp_path):
    # rpi3 defaults to tl1 and profiles carry no tiles: rendering its TL kernels (the estimate, the build) takes the
    # defaults instead of reading a [kernel.tiles] that no longer exists
    from bitedge.render import TILE_DEFAULTS, check_tiles, generic_tiles, render_kernels, resolve_tiles

    target = get_target("rpi3")
    assert target.kernel.method == "tl1"
    assert generic_tiles("tl1") == check_tiles("tl1", {}) == TILE_DEFAULTS["tl1"]
    assert resolve_tiles("tl1", [(256, 2560)]) == {(256, 2560): check_tiles("tl1", {})}
    paths = render_kernels(target, [(256, 2560)], "tl1", None, tmp_path)
    bm = TILE_DEFAULTS["tl1"]["bm"]
    assert any(f"_bm{bm}_" in p.read_text() for p in paths if p.suffix == ".c")


def test_estimate_tables_from_json(tmp_path, capsys):
    """bench/arm_estimate.py's tables, from a saved run (no compiling): labelled as estimates, peers in their rows."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("arm_estimate", Path(__file__).resolve().parent.parent / "bench" / "arm_estimate.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    kernels = [{"kernel": "i2_s runtime dotprod gemv", "k": 2560, "method": "i2_s", "kind": "gemv", "cycles_per_block": 14.0,
                "gbps_core": 5.5, "peer": None},
               {"kernel": "bitnet.cpp TL1 qgemm_lut_2560_2560 (codegen)", "k": 2560, "method": "tl1", "kind": "gemv",
                "cycles_per_block": 15.0, "gbps_core": 5.1, "peer": "bitnet.cpp TL1"}]
    tokens = {"bitedge i2_s": {"2B-4T": {"tg_1t": 4.3, "tg_all": 17.3, "bound_all": "compute",
                                                             "output_share": 0.57, "cores": 4}, "700M": None}}
    data = {"static_estimate": True, "boards": {"rpi5": {"kernels": kernels, "tokens": tokens, "cores": 4}}}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data))
    assert script.main(["--from-json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "not measurements" in out and "| bitedge I2_S (bitedge-run) | 14.0 |" in out
    assert "| rpi5 | bitedge i2_s | 14.0 | 4.3 / 17.3 | n/a | 57% |" in out  # the per-board table
    assert "| bitnet.cpp TL1 | 15.0 |" in out and "4.3 / 17.3" in out and "measured" not in out.replace("not measurements", "")


def test_insn_count_maps_blocks_to_functions():
    import importlib.util

    spec = importlib.util.spec_from_file_location("arm_insn_count", Path(__file__).resolve().parent.parent / "bench" / "arm_insn_count.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    per = script.by_function({0x1000: 10, 0x1010: 5, 0x2004: 7}, [0x1000, 0x2000], ["f", "g"])
    assert per == {"f": 15, "g": 7}
