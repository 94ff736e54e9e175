"""Kernels rendered per target: C sources from the jinja2 templates in kernels/templates/ (docs/kernels.md).

    paths = render_kernels(get_target("x86-64-avx2"), model_shapes(config), "tl1", None, "build/kernels")

writes bitedge_layouts.h, bitedge_tl1_kernels.h, bitedge_tl1_dispatch.c and one bitedge_tl1_<isa>.c per ISA the
target can run (scalar always), each with gemv entry points specialised to every distinct K of the model.
Generated code goes to a build folder, never into git; files are written under temporary names and renamed,
and a file whose text did not change is left alone (its mtime too, so make does not rebuild).
I2_S is not rendered: the runtime's hand-written kernels/runtime/kernels_*.c are its one implementation (a rendered
variant with tiles and constant K was slower on every ARM scheduling model llvm-mca has and on Zen 3, issue 14).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import jinja2

from bitedge.targets import Target
from bitedge.formats import gguf_keys
from bitedge.formats.packing import c_layouts, get_packing, layout_constants
from bitedge.errors import BitedgeError
from bitedge.output import replaced_atomically
from bitedge.model import ModelConfig, is_ternary

from bitedge._shipped import TEMPLATES_DIR  # noqa: E402
METHODS = ("i2_s", "tl1", "tl2")  # what tune / estimates rank; i2_s is the runtime's hand-written kernel
TL_METHODS = ("tl1", "tl2")  # what render_kernels renders
LAYOUTS_HEADER = "bitedge_layouts.h"
GGUF_KEYS_HEADER = "bitedge_gguf_keys.h"
DRIVER_SOURCE = "bitedge_kernel_driver.c"

# Rendered ISA variants (C suffix) -> the be_kernels table names (kernels.h) whose CPUs may run them; the last
# name is the variant's own. TL1/TL2 have no dotprod variant (they multiply nothing: see docs/kernels.md), so NEON
# serves neon-dotprod and neon-i8mm, and AVX2 serves the avx512-vnni and avx-vnni tables (no VNNI or AVX-512 TL
# kernels are rendered).
ISA_ALIASES = {"avx2": ("avx512-vnni", "avx-vnni", "avx2"), "neon_dotprod": ("neon-dotprod",),
               "neon": ("neon-i8mm", "neon-dotprod", "neon"),
               "scalar": ("scalar",)}

# Per method: weights per group, largest |table entry| (q in [-128, 127]) and the tile defaults.
#   bm: rows per register block (a multiple of the 32-row tile: blocks share each table load)
#   bk: K columns per chunk: summed in int16 before widening to int32 (bounded by overflow, see check_tiles),
#       and the slice of the tables that stays in L1 while bn rows use it
#   bn: rows per sweep over K (a multiple of bm): every table chunk serves bn / 32 tiles
GROUP_K = {"tl1": 2, "tl2": 3}
MAX_ENTRY = {"tl1": 256, "tl2": 384}
TILE_DEFAULTS = {"tl1": {"bm": 32, "bk": 128, "bn": 256}, "tl2": {"bm": 32, "bk": 96, "bn": 256}}
BM_CHOICES = (32, 64, 96, 128)  # the kernels keep at most 4 tiles of accumulators
BN_MAX = 2048  # rows of int32 partial sums on the stack (8 KiB)
# TL gemm (prompt processing, docs/kernels.md "TL gemm"): tokens per block, each weight chunk loaded into L1 serves
# GEMM_TOKENS tokens before the next chunk. A documented constant, not a tile: the tuner times gemv only. The gemm
# sweeps min(bn, GEMM_SUMS_MAX / GEMM_TOKENS) rows at a time so its sums[tokens][rows] stay within gemv's 8 KiB.
GEMM_TOKENS = 4
GEMM_SUMS_MAX = BN_MAX
TILE_KEYS = ("bm", "bk", "bn")


def environment() -> jinja2.Environment:
    return _environment(str(TEMPLATES_DIR))


@functools.lru_cache(maxsize=4)
def _environment(folder: str) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render_template(name: str, **context) -> str:
    try:
        return environment().get_template(name).render(**context)
    except jinja2.TemplateNotFound:
        raise BitedgeError(f"kernel template {name} not found in {TEMPLATES_DIR}") from None


def write_if_changed(path: Path, text: str) -> Path:
    """Write text to path atomically (bitedge.output.replaced_atomically); untouched if identical."""
    path = Path(path)
    try:
        if path.read_text() == text:
            return path
    except (OSError, UnicodeDecodeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced_atomically(path) as tmp:
        tmp.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------------------
# what to render


def model_shapes(model) -> list[tuple[int, int]]:
    """Every distinct (N, K) of the model's ternary matrices, sorted; model is a ModelConfig, a ModelSource or a
    GGUF path (read with bitedge.gguf_read.read_model)."""
    return sorted(model_shape_counts(model))


def _model_config(model) -> ModelConfig:
    config = model
    if isinstance(model, (str, os.PathLike)):
        from bitedge.gguf_read import read_model

        config = read_model(model).config
    elif hasattr(model, "config") and not isinstance(model, ModelConfig):
        config = model.config
    if not isinstance(config, ModelConfig):
        raise BitedgeError(f"cannot take matrix shapes from {type(model).__name__} (need a ModelConfig or a GGUF path)")
    return config


def model_shape_counts(model) -> dict[tuple[int, int], int]:
    """How many ternary matrices of the model have each (N, K) (model as for model_shapes): the weights of a
    per-token cost summed over shapes."""
    config = _model_config(model)
    counts: dict[tuple[int, int], int] = {}
    for name, shape in config.tensor_shapes().items():
        if is_ternary(name):
            counts[tuple(shape)] = counts.get(tuple(shape), 0) + 1
    return dict(sorted(counts.items()))


def target_isas(target: Target, method: str = "tl1") -> list[str]:
    """The ISA variants rendered for a target, best first, scalar last (TL methods have no dotprod variant; for
    i2_s: the runtime's tables the target's CPU picks, as C suffixes)."""
    isas = []
    if target.arch == "x86_64" and "avx2" in target.isa:
        isas.append("avx2")
    if target.arch == "aarch64" and "neon" in target.isa:
        if method == "i2_s" and "dotprod" in target.isa:
            isas.append("neon_dotprod")
        isas.append("neon")
    return isas + ["scalar"]


def check_method(method: str) -> str:
    method = str(method).lower()
    if method not in METHODS:
        raise BitedgeError(f"unknown kernel method {method!r} (choose from {', '.join(METHODS)})")
    return method


def check_render_method(method: str) -> str:
    """A method render_kernels renders (tl1, tl2), or BitedgeError (i2_s: the runtime's hand-written kernels)."""
    method = check_method(method)
    if method not in TL_METHODS:
        raise BitedgeError(f"{method} is not rendered: bitedge-run's hand-written kernels are its one implementation "
                           f"(render {' or '.join(TL_METHODS)})")
    return method


def check_tiles(method: str, tiles: Mapping[str, int]) -> dict[str, int]:
    """Tile parameters for a method, defaults filled in, or BitedgeError naming the bad one.

    bk bound: an int16 lane adds at most bk / group_k table entries of |e| <= MAX_ENTRY before being widened, so
    (bk / group_k) * MAX_ENTRY <= 32767; AVX2 takes groups two at a time, so bk / group_k must be even."""
    method = check_render_method(method)
    tiles = {**TILE_DEFAULTS[method], **{k: v for k, v in dict(tiles or {}).items() if k in TILE_KEYS}}
    bm, bk, bn = tiles["bm"], tiles["bk"], tiles["bn"]
    if bm not in BM_CHOICES:
        raise BitedgeError(f"{method}: tile bm = {bm} rows is not supported (one of {', '.join(map(str, BM_CHOICES))})")
    if not isinstance(bn, int) or bn <= 0 or bn % bm or bn > BN_MAX:
        raise BitedgeError(f"{method}: tile bn = {bn} rows must be a multiple of bm = {bm}, at most {BN_MAX}")
    g = GROUP_K[method]
    if not isinstance(bk, int) or bk <= 0 or bk % (2 * g):
        raise BitedgeError(f"{method}: tile bk = {bk} columns must be a positive multiple of {2 * g}")
    if bk // g * MAX_ENTRY[method] > 32767:
        most = 32767 // MAX_ENTRY[method] // 2 * 2 * g
        raise BitedgeError(f"{method}: tile bk = {bk} columns could overflow the int16 partial sums (at most {most})")
    return {"bm": bm, "bk": bk, "bn": bn}


def resolve_tiles(method: str, shapes: Iterable[tuple[int, int]], tiles=None
                  ) -> dict[tuple[int, int], dict[str, int]]:
    """Tiles per shape: tiles may be None (the defaults), one dict for every shape, or a mapping (N, K) -> dict
    (missing shapes get the defaults). Target profiles hold no tiles (the tuning cache does)."""
    shapes = list(shapes)
    if tiles is None:
        return {s: check_tiles(method, {}) for s in shapes}
    if tiles and all(isinstance(k, tuple) for k in tiles):
        return {s: check_tiles(method, tiles.get(s, {})) for s in shapes}
    return {s: check_tiles(method, tiles) for s in shapes}


def generic_tiles(method: str, tiles=None) -> dict[str, int]:
    """Tiles of the generic (any kp) path: one dict given for all shapes, else the defaults."""
    if tiles and not all(isinstance(k, tuple) for k in tiles):
        return check_tiles(method, tiles)
    return check_tiles(method, {})


def gemv_specs(method: str, isa: str, shapes_tiles: Mapping[tuple[int, int], dict[str, int]],
               generic: Mapping[str, int] | None = None) -> list[dict]:
    """One specialised gemv per distinct padded K (the tiles of the shape with the most rows win), then the
    generic path (any kp) with the generic tiles (default: TILE_DEFAULTS)."""
    packing = get_packing(method)
    by_kp: dict[int, tuple[int, dict]] = {}
    for (n, k), tiles in shapes_tiles.items():
        kp = packing.padded(n, k)[1]
        if kp not in by_kp or n > by_kp[kp][0]:
            by_kp[kp] = (n, tiles)
    specs = []
    for kp, (_, tiles) in sorted(by_kp.items()):
        specs.append(_spec(method, isa, kp, tiles))
    specs.append(_spec(method, isa, None, check_tiles(method, generic or {})))
    return specs


def _spec(method: str, isa: str, kp: int | None, tiles: dict[str, int]) -> dict:
    shape = f"k{kp}" if kp is not None else "generic"
    bm, bk, bn = tiles["bm"], tiles["bk"], tiles["bn"]
    gemm_bn = max(bm, min(bn, GEMM_SUMS_MAX // GEMM_TOKENS) // bm * bm)  # rows per gemm sweep, a multiple of bm
    return {"kp": kp, "bm": bm, "bk": bk, "bn": bn, "tiles": bm // 32, "chunk": bk // GROUP_K[method],
            "fn": f"be_{method}_gemv_{isa}_{shape}_bm{bm}_bk{bk}_bn{bn}",
            "tb": GEMM_TOKENS, "gemm_bn": gemm_bn,
            "gemm_fn": f"be_{method}_gemm_{isa}_{shape}_bm{bm}_bk{bk}_bn{gemm_bn}_tb{GEMM_TOKENS}"}


# ---------------------------------------------------------------------------------------------------------
# rendering


def render_layouts_header(out_dir: str | os.PathLike) -> Path:
    """Write bitedge_layouts.h (layout constants with _Static_asserts on block sizes, the packing enum and each
    packing's byte size) and bitedge_gguf_keys.h (bitedge.formats.gguf_keys) into out_dir; returns the first."""
    constants = sorted(layout_constants().items())
    text = render_template("bitedge_layouts.h.j2", constants=constants, layouts=c_layouts())
    render_gguf_keys_header(out_dir)
    return write_if_changed(Path(out_dir) / LAYOUTS_HEADER, text)


def render_gguf_keys_header(out_dir: str | os.PathLike) -> Path:
    """Write bitedge_gguf_keys.h: bitedge's GGUF metadata keys as C string literals (the runtime's model loader)."""
    text = render_template("bitedge_gguf_keys.h.j2", defines=list(gguf_keys.c_defines().items()))
    return write_if_changed(Path(out_dir) / GGUF_KEYS_HEADER, text)


def render_kernels(target: Target, shapes: Iterable[tuple[int, int]], method: str, tiles=None,
                   out_dir: str | os.PathLike = "build/kernels") -> list[Path]:
    """Render method's kernels for target, specialised to shapes ((N, K) pairs), into out_dir.

    Returns the written paths: the layouts header, the method header, one .c per ISA variant, the dispatch .c
    (compile every .c; include out_dir). tiles: see resolve_tiles."""
    method = check_render_method(method)
    shapes = sorted({(int(n), int(k)) for n, k in shapes})
    for n, k in shapes:
        if n <= 0 or k <= 0:
            raise BitedgeError(f"bad matrix shape ({n}, {k}): rows and columns must be positive")
    out = Path(out_dir)
    paths = [render_layouts_header(out)]
    per_shape = resolve_tiles(method, shapes, tiles)
    isas = target_isas(target, method)
    alias_map = []  # (be_kernels name, index of the table it gets): the first (best) table claiming a name wins
    for i, isa in enumerate(isas):
        alias_map += [(alias, i) for alias in ISA_ALIASES[isa] if alias not in dict(alias_map)]
    common = {"method": method, "target_id": target.id, "isas": isas}
    generic = generic_tiles(method, tiles)
    all_specs = {isa: gemv_specs(method, isa, per_shape, generic) for isa in isas}
    paths.append(write_if_changed(out / f"bitedge_{method}_kernels.h",
                                  render_template("tl_kernels.h.j2", specs=all_specs["scalar"], **common)))
    for isa in isas:
        text = render_template(f"{method}_{isa}.c.j2", specs=all_specs[isa], isa=isa, **common)
        paths.append(write_if_changed(out / f"bitedge_{method}_{isa}.c", text))
    paths.append(write_if_changed(out / f"bitedge_{method}_dispatch.c",
                                  render_template("tl_dispatch.c.j2", alias_map=alias_map,
                                                  isa_names={i: ISA_ALIASES[i][-1] for i in isas}, **common)))
    return paths


def render_driver(methods: Iterable[str], out_dir: str | os.PathLike, isa_names: Iterable[str] = (),
                  runtime_i2s: bool = False) -> Path:
    """Write the test / timing driver (kernel_driver.c.j2) for rendered (TL) methods; runtime_i2s adds method
    "i2_s-runtime" (the runtime's hand-written I2_S: link bitedge.builder.tuner.I2S_SOURCES)."""
    methods = [check_render_method(m) for m in methods]
    names = list(isa_names) or ["avx2", "neon-i8mm", "neon-dotprod", "neon", "scalar"]
    return write_if_changed(Path(out_dir) / DRIVER_SOURCE,
                            render_template("kernel_driver.c.j2", methods=methods, isa_names=names,
                                            runtime_i2s=runtime_i2s))


def c_sources(paths: Iterable[Path]) -> list[Path]:
    return [p for p in paths if p.suffix == ".c"]



__all__ = [
    "GEMM_TOKENS", "ISA_ALIASES", "METHODS", "TEMPLATES_DIR", "TILE_DEFAULTS", "TL_METHODS", "c_sources",
    "check_render_method", "check_tiles", "environment", "model_shapes", "render_driver", "render_gguf_keys_header",
    "render_kernels", "render_layouts_header", "render_template",
    "resolve_tiles", "target_isas", "tune",
]
