"""Build bitedge-run with rendered TL1 / TL2 kernels linked in, specialised to one model's matrix shapes.

The plain runtime (build_runtime) runs I2_S only. This renders tl1 and tl2 kernels for the target and every
(N, K) of the model (bitedge.render), then compiles them with the runtime under -DBITEDGE_HAVE_TL: the result
runs i2_s, tl1 and tl2 files (other shapes take the kernels' generic path, so it still runs any model).

    result = build_runtime_for_model("x86-64-avx2", "model-tl2.gguf")
    result.binary  # build/x86-64-avx2-tl/bitedge-run
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

from bitedge.build.compile import BuildResult, build_runtime
from bitedge.build.targets import Target, get_target

TL_METHODS = ("tl1", "tl2")
TL_DEFINE = "BITEDGE_HAVE_TL=1"


def render_tl_kernels(target: Target | str, shapes: Iterable[tuple[int, int]], kernels_dir: str | os.PathLike,
                      tuning_cache: str | os.PathLike | None = None, say: Callable[[str], None] | None = None
                      ) -> list[Path]:
    """Render tl1 and tl2 for target and shapes into kernels_dir; returns the .c files to compile. Shapes that
    `bitedge tune` measured for this target (here or on a board) get the winning tiles, the others the profile's."""
    from bitedge.render import c_sources, render_kernels  # jinja2 only when kernels are rendered
    from bitedge.render.tune import tuned_tiles

    target = get_target(target)
    shapes = list(shapes)
    paths: list[Path] = []
    for method in TL_METHODS:
        tiles = tuned_tiles(target, method, shapes, tuning_cache)
        if tiles and say:
            say(f"{target.id}: {method} tiles from the tuning cache for {len(tiles)} of {len(shapes)} shapes")
        paths += render_kernels(target, shapes, method, tiles, kernels_dir)
    return sorted(set(c_sources(paths)))


def build_runtime_for_model(target: Target | str, model_path: str | os.PathLike | None = None,
                            out_dir: str | os.PathLike | None = None, *, shapes: Iterable[tuple[int, int]] = (),
                            clean: bool = False, progress: Callable[[str], None] | None = None,
                            tuning_cache: str | os.PathLike | None = None, **build_kw) -> BuildResult:
    """Build bitedge-run for target with TL1 / TL2 kernels specialised to model_path's shapes (and shapes).

    out_dir defaults to build/<target>-tl; the rendered sources go to out_dir/kernels. Other keyword arguments
    go to build_runtime (toolchain, cc, cache_dir, ...); tuning_cache is bitedge tune's (default
    ~/.cache/bitedge/tuning.json). Raises BitedgeError for an unreadable model or a
    failing compile."""
    from bitedge.render import model_shapes

    target = get_target(target)
    out = Path(out_dir if out_dir is not None else Path("build") / f"{target.id}-tl")
    all_shapes = set(tuple(s) for s in shapes)
    if model_path is not None:
        all_shapes |= set(model_shapes(model_path))
    sources = render_tl_kernels(target, sorted(all_shapes), out / "kernels", tuning_cache, progress)
    return build_runtime(target, out_dir=out, extra_sources=sources, extra_include_dirs=[out / "kernels"],
                         defines=[TL_DEFINE], clean=clean, progress=progress, **build_kw)


def model_packing(model_path: str | os.PathLike) -> str:
    """bitedge.weight_packing of a GGUF file ("i2_s", "tl1", ...; "unknown" when absent)."""
    from bitedge.gguf_read import read_metadata

    return str(read_metadata(model_path).get("kv", {}).get("bitedge.weight_packing", "unknown"))


def build_runtime_for(target: Target | str, model_path: str | os.PathLike | None = None, **kw) -> BuildResult:
    """The runtime that runs model_path: build_runtime_for_model for a tl1 / tl2 file, else the plain
    build_runtime (I2_S; also when no model is given). Keyword arguments as build_runtime's."""
    if model_path is not None and model_packing(model_path) in TL_METHODS:
        return build_runtime_for_model(target, model_path, **kw)
    return build_runtime(target, **kw)


__all__ = ["TL_DEFINE", "TL_METHODS", "build_runtime_for", "build_runtime_for_model", "model_packing",
           "render_tl_kernels"]
