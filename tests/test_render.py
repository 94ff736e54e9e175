"""bitedge.render: the jinja2 environment, bitedge_layouts.h, rendering per target / method / shape / tiles (files,
names, warnings-free compiles with gcc and clang, dispatch), tile checks and the tuner's cache."""

from __future__ import annotations

import json
import os
import subprocess

import jinja2
import numpy as np
import pytest

from bitedge.targets import get_target, load_targets
from bitedge.formats.packing import get_packing, layout_constants
from bitedge.errors import BitedgeError
from bitedge.render import (TEMPLATES_DIR, TILE_DEFAULTS, c_sources, check_tiles, environment, model_shapes,
                            render_driver, render_kernels, render_layouts_header, render_template, target_isas)
from bitedge.builder.tuner import planned_steps, tune
from bitedge.render.tune import load_cache, tuned_tiles
from tests._c_build import AARCH64_CC, CBuildError, compile_c, have_tool, run_binary
from conftest import ODD

SHAPES_2B4T = [(2560, 2560), (640, 2560), (6912, 2560), (2560, 6912)]


def test_environment_is_strict():
    env = environment()
    assert env.undefined is jinja2.StrictUndefined
    assert env.trim_blocks and env.lstrip_blocks and env.keep_trailing_newline
    with pytest.raises(jinja2.UndefinedError):
        render_template("tl_kernels.h.j2", method="tl1")  # no specs / isas / target_id


def test_layouts_header_matches_packers(tmp_path):
    header = render_layouts_header(tmp_path)
    text = header.read_text()
    for name, value in layout_constants().items():
        assert f"#define BE_{name} {value}\n" in text
    assert text.count("_Static_assert") >= 8
    shapes = [(1, 1), (37, 71), (32, 128), (100, 259), (2560, 6912)]
    prog = tmp_path / "sizes.c"
    prog.write_text('#include <stdio.h>\n#include "bitedge_layouts.h"\nint main(void) {\n' + "".join(
        f'    printf("%zu %zu %zu\\n", be_i2s_packed_bytes({n}, {k}), be_tl1_packed_bytes({n}, {k}), '
        f'be_tl2_packed_bytes({n}, {k}));\n' for n, k in shapes) + "    return 0;\n}\n")
    exe = compile_c([prog], tmp_path / "sizes", include_dirs=[tmp_path])
    lines = run_binary(exe).stdout.split("\n")
    for (n, k), line in zip(shapes, lines):
        assert [int(x) for x in line.split()] == [get_packing(m).nbytes(n, k) for m in ("i2_s", "tl1", "tl2")]


def test_layouts_static_asserts_catch_a_changed_layout(tmp_path, monkeypatch):
    import bitedge.render as render

    monkeypatch.setattr(render, "layout_constants", lambda: {**layout_constants(), "TL2_SIGN_BYTES": 8})
    render.render_layouts_header(tmp_path)
    prog = tmp_path / "use.c"
    prog.write_text('#include "bitedge_layouts.h"\nint main(void) { return 0; }\n')
    with pytest.raises(CBuildError, match="tl2: one sign bit per row"):
        compile_c([prog], tmp_path / "use", include_dirs=[tmp_path])


def test_model_shapes_from_config_and_gguf(tiny_model, tmp_path):
    from bitedge.convert.gguf_writer import write_gguf

    shapes = model_shapes(ODD)
    # q: 96x96, k/v: 32x96, o: 96x96, gate/up: 200x96, down: 96x200
    assert shapes == [(32, 96), (96, 96), (96, 200), (200, 96)]
    path = tmp_path / "odd.gguf"
    write_gguf(tiny_model(ODD), path, packing="tl2")
    assert model_shapes(path) == shapes
    assert model_shapes(tiny_model(ODD)) == shapes
    with pytest.raises(BitedgeError, match="cannot take matrix shapes"):
        model_shapes(42)


def test_target_isas():
    assert target_isas(get_target("x86-64-avx2")) == ["avx2", "scalar"]
    assert target_isas(get_target("rpi4-qemu")) == ["neon", "scalar"]
    assert target_isas(get_target("rpi5")) == ["neon", "scalar"]  # TL: no dotprod variant
    assert target_isas(get_target("rpi5"), "i2_s") == ["neon_dotprod", "neon", "scalar"]
    assert target_isas(get_target("rpi4"), "i2_s") == ["neon", "scalar"]


def test_render_files_and_names(tmp_path):
    paths = render_kernels(get_target("x86-64-avx2"), SHAPES_2B4T, "tl1", {"bm": 64, "bk": 128}, tmp_path)
    names = [p.name for p in paths]
    assert names == ["bitedge_layouts.h", "bitedge_tl1_kernels.h", "bitedge_tl1_avx2.c", "bitedge_tl1_scalar.c",
                     "bitedge_tl1_dispatch.c"]
    avx2 = (tmp_path / "bitedge_tl1_avx2.c").read_text()
    for kp in (2560, 6912):  # one specialisation per distinct K, plus the generic path
        assert f"be_tl1_gemv_avx2_k{kp}_bm64_bk128_bn256(" in avx2
        assert f"case {kp}: be_tl1_gemv_avx2_k{kp}_bm64_bk128_bn256" in avx2
    assert "be_tl1_gemv_avx2_generic_bm64_bk128_bn256(w, tables, acc, n0, n1, kp)" in avx2  # one dict: all paths
    assert "Overflow bound" in avx2 and "< 32767" in avx2  # the overflow bound is stated
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary files left behind
    tl2 = render_kernels(get_target("rpi5"), [(100, 70)], "tl2", None, tmp_path / "arm")
    assert [p.name for p in tl2][2:] == ["bitedge_tl2_neon.c", "bitedge_tl2_scalar.c", "bitedge_tl2_dispatch.c"]
    assert "be_tl2_gemv_neon_k72_bm32_bk96_bn256" in (tmp_path / "arm" / "bitedge_tl2_neon.c").read_text()  # K 70 -> 72


def test_i2s_is_not_rendered(tmp_path):
    """I2_S has one implementation, bitedge-run's hand-written kernels (the rendered one lost on every ARM model and
    on Zen 3): render_kernels and the driver refuse it with one line, nothing written."""
    for call in (lambda: render_kernels(get_target("rpi5"), [(100, 70)], "i2_s", None, tmp_path / "arm"),
                 lambda: render_driver(["i2_s"], tmp_path / "drv")):
        with pytest.raises(BitedgeError, match="i2_s is not rendered: bitedge-run's hand-written kernels"):
            call()
    assert not (tmp_path / "arm").exists() and not (tmp_path / "drv").exists()
    assert not list(TEMPLATES_DIR.glob("*i2s*"))


def test_rerender_leaves_unchanged_files_alone(tmp_path):
    first = render_kernels(get_target("x86-64-avx2"), [(64, 64)], "tl2", None, tmp_path)
    stamps = {p: p.stat().st_mtime_ns for p in first}
    os.utime(first[2], ns=(1, 1))
    second = render_kernels(get_target("x86-64-avx2"), [(64, 64)], "tl2", None, tmp_path)
    assert second == first and first[2].stat().st_mtime_ns == 1 and first[0].stat().st_mtime_ns == stamps[first[0]]
    render_kernels(get_target("x86-64-avx2"), [(64, 96)], "tl2", None, tmp_path)  # another shape: the sources change
    assert first[2].stat().st_mtime_ns != 1


def test_tile_checks():
    assert check_tiles("tl1", {}) == TILE_DEFAULTS["tl1"]
    assert check_tiles("tl2", {"bm": 64, "bk": 252, "unrelated": 3}) == {"bm": 64, "bk": 252, "bn": 256}
    with pytest.raises(BitedgeError, match="bn = 96 rows must be a multiple of bm = 64"):
        check_tiles("tl1", {"bm": 64, "bn": 96})
    with pytest.raises(BitedgeError, match="at most 2048"):
        check_tiles("tl1", {"bn": 4096})
    with pytest.raises(BitedgeError, match="bm = 48"):
        check_tiles("tl1", {"bm": 48})
    with pytest.raises(BitedgeError, match="overflow.*at most 252"):
        check_tiles("tl1", {"bk": 256})
    with pytest.raises(BitedgeError, match="overflow.*at most 252"):
        check_tiles("tl2", {"bk": 258})
    with pytest.raises(BitedgeError, match="multiple of 6"):
        check_tiles("tl2", {"bk": 128})  # the I2_S-style profile value does not fit TL2
    with pytest.raises(BitedgeError, match="i2_s is not rendered"):
        check_tiles("i2_s", {"bm": 256, "bk": 128})
    with pytest.raises(BitedgeError, match="unknown kernel method"):
        render_kernels(get_target("x86-64-avx2"), [(32, 32)], "tl3", None, "/nonexistent")
    with pytest.raises(BitedgeError, match="bad matrix shape"):
        render_kernels(get_target("x86-64-avx2"), [(0, 32)], "tl1", None, "/nonexistent")


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_every_shipped_target_renders_warning_free(tmp_path, cc):
    """Every profile x method renders and compiles under -Wall -Wextra -Werror (-c: no linking needed); aarch64
    profiles with the cross gcc (or clang --target) and their own -mcpu/-march."""
    compiled, seen = 0, set()
    for target in load_targets().values():
        if target.os != "linux":
            continue  # macOS profiles: same aarch64 sources as the linux boards
        # profiles with the same ISA features render the same code: compile each (arch, isa) once
        flavour = (target.arch, target.isa)
        if flavour in seen:
            continue
        seen.add(flavour)
        for method in ("tl1", "tl2"):
            out = tmp_path / target.id / method
            paths = render_kernels(target, [(2560, 6912), (37, 71)], method, None, out)
            if target.arch == "aarch64":
                if cc == "gcc" and not have_tool(AARCH64_CC):
                    continue
                compiler, extra = (AARCH64_CC, [*target.cpu_flags]) if cc == "gcc" else (
                    # clang 14 does not know every -mcpu of the profiles: the architecture level is what matters
                    "clang", ["--target=aarch64-linux-gnu",
                              "-march=armv8.2-a+dotprod" if "dotprod" in target.isa else "-march=armv8-a"])
            else:
                compiler, extra = cc, [*target.cpu_flags]
            if not have_tool(compiler):
                pytest.skip(f"{compiler} not installed")
            for src in c_sources(paths):
                cmd = [compiler, "-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", *extra,
                       f"-I{out}", "-c", str(src), "-o", str(src.with_suffix(".o"))]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if cc == "clang" and target.arch == "aarch64" and "stdint.h" in proc.stderr:
                    pytest.skip("clang has no aarch64 sysroot here")
                assert proc.returncode == 0 and not proc.stderr.strip(), f"{' '.join(cmd)}\n{proc.stderr}"
                compiled += 1
    assert compiled >= 12


def test_dispatch_by_kernel_table_name(tmp_path):
    paths = render_kernels(get_target("x86-64-avx2"), [(32, 32)], "tl1", None, tmp_path)
    prog = tmp_path / "which.c"
    prog.write_text('#include <stdio.h>\n#include "bitedge_tl1_kernels.h"\nint main(void) {\n'
                    '    const char *names[] = {"avx2", "scalar", "neon", "nonsense", "avx-vnni", "avx512-vnni"};\n'
                    '    for (int i = 0; i < 6; i++) printf("%s ", be_tl1_kernels_for(names[i])->name);\n'
                    '    printf("%zu\\n", be_tl1_tables_bytes(6));\n    return 0;\n}\n')
    exe = compile_c([*c_sources(paths), prog], tmp_path / "which", include_dirs=[tmp_path])
    # the VNNI tables run the AVX2 TL kernels (ISA_ALIASES); 3 pairs -> 4 * 32 table bytes
    assert run_binary(exe).stdout.split() == ["avx2", "scalar", "scalar", "scalar", "avx2", "avx2", "128"]


def test_tune_keeps_winner_in_cache(tmp_path):
    cache = tmp_path / "tuning.json"
    cands = {"tl1": [{"bm": 32, "bk": 128}, {"bm": 64, "bk": 64}], "tl2": [{"bm": 32, "bk": 96}]}
    steps = []
    results = tune(get_target("x86-64-avx2"), [(96, 200), (64, 96)], ["tl1", "tl2", "i2_s"], cands, cache, reps=3, rounds=2,
                   work_dir=tmp_path / "work", advance=steps.append)
    # the progress bar's length: 4 candidates built (i2_s: the runtime's hand-written kernel, one build without
    # tiles), each timed on 2 shapes in 2 rounds
    assert len(steps) == planned_steps(["tl1", "tl2", "i2_s"], 2, 2, cands) == 4 + 4 * 2 * 2
    assert set(results) == {f"{m}/{s}" for m in ("tl1", "tl2", "i2_s") for s in ("96x200", "64x96")}
    assert all(results[f"i2_s/{s}"]["tiles"] == {} for s in ("96x200", "64x96"))
    for key, r in results.items():
        assert len(r["candidates"]) == len(cands.get(key.split("/")[0], [{}]))
        assert r["tiles"] == min(r["candidates"], key=lambda c: c["mean_ns"])["tiles"]
        assert r["mean_ns"] > 0 and not r["emulated"]
    entries = load_cache(cache)["entries"]
    assert len(entries) == 6 and all("|x86-64-avx2|" in k for k in entries)
    tiles = tuned_tiles(get_target("x86-64-avx2"), "tl1", [(96, 200), (64, 96), (5, 5)], cache)
    assert set(tiles) == {(96, 200), (64, 96)}
    # the tuned tiles feed render_kernels: the specialisation carries the winner's tiles
    render_kernels(get_target("x86-64-avx2"), [(96, 200)], "tl1", tiles, tmp_path / "r")
    win = results["tl1/96x200"]["tiles"]
    assert f"_k200_bm{win['bm']}_bk{win['bk']}_bn{win['bn']}" in (tmp_path / "r" / "bitedge_tl1_avx2.c").read_text()
    assert json.loads(cache.read_text())["version"] == 1


def test_tune_refuses_what_cannot_run_here(tmp_path):
    with pytest.raises(BitedgeError, match="cannot run on this"):
        tune(get_target("rpi5"), [(32, 32)], ["tl1"], cache_path=tmp_path / "t.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(BitedgeError, match="unreadable tuning cache"):
        load_cache(bad)


def test_driver_renders_for_all_methods(tmp_path):
    text = render_driver(["tl1", "tl2"], tmp_path, runtime_i2s=True).read_text()
    assert '#include "kernels.h"' in text and '#include "bitedge_tl2_kernels.h"' in text
    assert "bitedge_i2s_kernels.h" not in text
    assert np.all([m in text for m in ('"tl1"', '"tl2"', '"i2_s-runtime"')])
    assert '#include "kernels.h"' not in render_driver(["tl1"], tmp_path / "plain").read_text()
