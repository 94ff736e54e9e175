"""Compile bitedge-run for a target: every kernels/runtime/*.c plus the TL1 / TL2 kernels rendered for the target
(bitedge.render: a generic path for any shape, specialised paths for a model's shapes when one is given) into one
static binary with a manifest JSON next to it, through the build cache. One runtime runs every packing.

Each source is compiled to an object with the profile's CPU flags, then linked (zig links against the baseline
libc of the architecture, see toolchains.py). Outputs are written under temporary names and renamed when
complete; a failing compile raises BitedgeError with the first error line and the path of the full log.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from bitedge._shipped import KERNELS_DIR, RUNTIME_DIR
from bitedge.builder.cache import BuildCache, cache_key, copy_atomic, file_sha256
from bitedge.targets import Target, get_target
from bitedge.builder.toolchains import Toolchain, select_toolchain
from bitedge.errors import BitedgeError
from bitedge.output import write_text_atomic

# manifest labels are relative to the folder holding kernels/: the checkout, or bitedge/_shipped in a wheel
REPO = KERNELS_DIR.parent
BINARY_NAME = "bitedge-run"
MANIFEST_NAME = f"{BINARY_NAME}.manifest.json"
LOG_NAME = "build.log"
BUILDER_VERSION = 2  # bump when the way flags are made changes: invalidates every cached build
# the runtime's flags (the one place they are written); -g0: no debug info (no paths in the binary); -ffp-contract=off: float rounding as the reference
BASE_CFLAGS = ("-std=c11", "-Wall", "-Wextra", "-ffp-contract=off", "-D_POSIX_C_SOURCE=200809L", "-pthread", "-g0")
LINK_LIBS = ("-pthread", "-lm")
# compiled for the architecture's baseline CPU, not the profile's: the check that runs before main() and refuses a
# CPU without the build's instruction sets (exit 3, never SIGILL) must not use them itself (cpu_isa_table.h)
BASELINE_SOURCES = ("cpu_features.c",)


@dataclass(frozen=True)
class BuildResult:
    binary: Path
    manifest: Path
    cached: bool  # True: no compiler ran
    toolchain: Toolchain
    key: str

    def manifest_data(self) -> dict:
        return json.loads(self.manifest.read_text())


def runtime_sources() -> list[Path]:
    return sorted(RUNTIME_DIR.glob("*.c"))


def _label(path: Path) -> str:
    """How a file or folder is named in the manifest and inside the binary: relative to the repository."""
    try:
        return path.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def _define(d: str) -> str:
    return d if d.startswith("-D") else f"-D{d}"


def _inputs(sources: list[Path], include_dirs: list[Path]) -> list[dict]:
    """Every file the build reads: sources, and the headers of every include folder."""
    headers = sorted({h.resolve() for d in include_dirs for h in d.glob("*.h")})
    return [{"path": _label(p), "sha256": file_sha256(p)} for p in [*sources, *headers]]


def _prefix_maps(dirs: Iterable[Path]) -> list[str]:
    # __FILE__ (assert) and any debug info name files by repository-relative path, not by where the checkout is
    return [f"-ffile-prefix-map={d.resolve()}={_label(d)}" for d in sorted({d.resolve() for d in dirs})]


def _first_error(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:  # "file.c:3:5: error: ...", "clang: error: ...", "ld: ... undefined reference to ..."
        if "error:" in ln or "undefined reference" in ln or "undefined symbol" in ln:
            return ln
    return lines[0] if lines else "the compiler failed without a message"


def render_tl_kernels(target: Target, shapes: Iterable[tuple[int, int]], kernels_dir: str | os.PathLike,
                      tuning_cache: str | os.PathLike | None = None, say: Callable[[str], None] | None = None
                      ) -> list[Path]:
    """Render tl1 and tl2 for target into kernels_dir (generic, plus shapes); returns the .c files to compile.
    Shapes that `bitedge tune` measured for this target (here or on a board) get the winning tiles (or
    `bitedge tune --estimate`'s), the others the defaults (profiles carry no tiles)."""
    from bitedge.render import TL_METHODS, c_sources, render_kernels  # jinja2 only when kernels are rendered
    from bitedge.render.tune import tuned_tiles

    shapes = sorted(set(tuple(s) for s in shapes))
    paths: list[Path] = []
    for method in TL_METHODS:
        tiles = tuned_tiles(target, method, shapes, tuning_cache) if shapes else None
        if tiles and say:
            say(f"{target.id}: {method} tiles from the tuning cache for {len(tiles)} of {len(shapes)} shapes")
        paths += render_kernels(target, shapes, method, tiles, kernels_dir)
    return sorted(set(c_sources(paths)))


def build_runtime(
    target: str | Target,
    *,
    model: str | os.PathLike | None = None,
    shapes: Iterable[tuple[int, int]] = (),
    tuning_cache: str | os.PathLike | None = None,
    out_dir: str | Path | None = None,
    toolchain: str | None = None,
    cc: str | None = None,
    sources: Iterable[str | Path] | None = None,
    extra_sources: Iterable[str | Path] = (),
    extra_include_dirs: Iterable[str | Path] = (),
    defines: Iterable[str] = (),
    clean: bool = False,
    progress: Callable[[str], None] | None = None,
    cache_dir: str | Path | None = None,
    targets_dirs: Iterable[str | Path] = (),
    extra_cflags: Iterable[str] = (),
) -> BuildResult:
    """Build bitedge-run for target into out_dir (default build/<target>), or copy it from the cache.

    The TL1 / TL2 kernels are rendered into out_dir/kernels: generic, and specialised to the (N, K) shapes of
    model (a GGUF path) and of shapes; tuning_cache is `bitedge tune`'s (default ~/.cache/bitedge/tuning.json).
    sources replaces kernels/runtime/*.c and the rendered kernels (tests build their own programs);
    extra_sources and extra_include_dirs add more; defines are extra -D flags; extra_cflags more compiler flags
    (tests: -Werror); clean ignores every cached build.
    """
    target = get_target(target, targets_dirs)
    say = progress or (lambda msg: None)
    tc = select_toolchain(target, toolchain, cc)
    out = Path(out_dir if out_dir is not None else Path("build") / target.id).resolve()
    cache = BuildCache(cache_dir)
    # one build into a folder at a time: threads of one fleet and other processes building the same target
    # share the first one's result (a cache hit) instead of racing on its files
    with cache.build_lock(out, waiting=lambda: say(f"{target.id}: waiting for another build into {out}")):
        if sources is None:
            shapes = list(shapes)
            if model is not None:
                from bitedge.render import model_shapes

                shapes += model_shapes(model)
            kernels_dir = out / "kernels"
            srcs = [*runtime_sources(), *render_tl_kernels(target, shapes, kernels_dir, tuning_cache, progress)]
            extra_include_dirs = [kernels_dir, *extra_include_dirs]
        else:
            srcs = [Path(s).resolve() for s in sources]
        srcs += [Path(s).resolve() for s in extra_sources]
        if not srcs:
            raise BitedgeError("nothing to build: no C sources given")
        for s in srcs:
            if not s.is_file():
                raise BitedgeError(f"{s}: source file not found")
        include_dirs = [RUNTIME_DIR.resolve(), *(Path(d).resolve() for d in extra_include_dirs)]
        include_dirs += sorted({s.parent for s in srcs} - set(include_dirs))
        for d in include_dirs:
            if not d.is_dir():
                raise BitedgeError(f"{d}: include folder not found")

        # _POSIX_C_SOURCE hides BSD parts of the macOS headers (struct rusage's ru_maxrss); _DARWIN_C_SOURCE
        # restores them
        os_flags = ["-D_DARWIN_C_SOURCE"] if target.os == "macos" else []
        common_flags = [target.optimize, *BASE_CFLAGS, *os_flags, *_prefix_maps(include_dirs),
                        *target.feature_defines(), *(_define(d) for d in defines), *extra_cflags,
                        *(f"-I{d}" for d in include_dirs)]
        compile_flags = [*tc.compile_flags(target), *common_flags]
        baseline_flags = [*tc.baseline_compile_flags(target), *common_flags]
        link_flags = [*tc.link_flags(target), *LINK_LIBS]  # the libraries go after the objects
        inputs = _inputs(srcs, include_dirs)
        key = cache_key({"builder": BUILDER_VERSION, "inputs": inputs, "profile": target.as_dict(),
                         "toolchain": tc.describe(), "compile_flags": compile_flags, "baseline_flags": baseline_flags,
                         "link_flags": link_flags})
        binary, manifest_path = out / BINARY_NAME, out / MANIFEST_NAME

        if not clean:
            hit = _out_dir_hit(binary, manifest_path, key)
            if hit:
                say(f"{target.id}: up to date ({binary})")
                return BuildResult(binary, manifest_path, True, tc, key)
            stored = cache.get(key, BINARY_NAME)
            if stored:
                out.mkdir(parents=True, exist_ok=True)
                copy_atomic(stored[0], binary)
                write_text_atomic(manifest_path, json.dumps(stored[1], indent=2) + "\n")
                say(f"{target.id}: from the build cache ({binary})")
                return BuildResult(binary, manifest_path, True, tc, key)

        out.mkdir(parents=True, exist_ok=True)
        _compile_and_link(target, tc, srcs, compile_flags, baseline_flags, link_flags, out, say)
        manifest = {
            "bitedge_build": BUILDER_VERSION,
            "target": target.id,
            "profile": target.as_dict(),
            "profile_sha256": target.content_sha256(),
            "toolchain": {**tc.describe(), "static": target.os == "linux" and tc.static_linux,
                          "reproducible": tc.reproducible},
            "compile_flags": compile_flags,
            "baseline_flags": {"files": [s.name for s in srcs if s.name in BASELINE_SOURCES], "flags": baseline_flags},
            "link_flags": link_flags,
            "inputs": inputs,
            "cache_key": key,
            "output": {"file": BINARY_NAME, "sha256": file_sha256(binary), "size": binary.stat().st_size},
        }
        write_text_atomic(manifest_path, json.dumps(manifest, indent=2) + "\n")
        cache.put(key, binary, manifest_path)
        say(f"{target.id}: built {binary} with {tc.id} {tc.version}")
        return BuildResult(binary, manifest_path, False, tc, key)


def _out_dir_hit(binary: Path, manifest_path: Path, key: str) -> bool:
    try:
        manifest = json.loads(manifest_path.read_text())
        return manifest.get("cache_key") == key and file_sha256(binary) == manifest["output"]["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False





def _run_logged(cmd: list[str], env: dict, log: list[str]) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    except OSError as e:
        raise BitedgeError(f"cannot run {cmd[0]}: {e.strerror}") from None
    log.append("$ " + shlex.join(cmd) + "\n" + proc.stdout + proc.stderr)
    return proc


def _compile_and_link(target: Target, tc: Toolchain, srcs: list[Path], compile_flags: list[str],
                      baseline_flags: list[str], link_flags: list[str], out: Path, say: Callable[[str], None]) -> None:
    env = {**os.environ, **tc.env()}
    work = Path(tempfile.mkdtemp(dir=out, prefix=".work-"))
    log: list[str] = [f"# bitedge build {target.id} with {tc.id} {tc.version}\n"]
    log_path = out / LOG_NAME
    try:
        objects = [work / f"{i:03d}-{s.stem}.o" for i, s in enumerate(srcs)]

        def compile_one(i: int) -> tuple[int, subprocess.CompletedProcess, str]:
            say(f"{target.id}: compile {srcs[i].name}")
            entry: list[str] = []
            flags = baseline_flags if srcs[i].name in BASELINE_SOURCES else compile_flags
            proc = _run_logged([*tc.command, *flags, "-c", "-o", str(objects[i]), str(srcs[i])], env, entry)
            return i, proc, entry[0]

        with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
            results = list(pool.map(compile_one, range(len(srcs))))
        failed = None
        for i, proc, text in results:
            log.append(text)
            if proc.returncode != 0 and failed is None:
                failed = (srcs[i], proc)
        if failed is None:
            # zig compiles the target's libc into its cache on first use: say so, or the cold link looks hung
            first_time = " (zig builds the target's libc once per architecture: 1-2 min the first time)" \
                if tc.id == "zig" else ""
            say(f"{target.id}: link {BINARY_NAME}{first_time}")
            # link into a folder under the final name: the Mach-O code signature records the file name
            linked = work / BINARY_NAME
            n_libs = len(LINK_LIBS)
            proc = _run_logged([*tc.command, *link_flags[:-n_libs], "-o", str(linked), *map(str, objects),
                                *link_flags[-n_libs:]], env, log)
            if proc.returncode != 0:
                failed = (None, proc)
        write_text_atomic(log_path, "\n".join(log))
        if failed is not None:
            src, proc = failed
            where = f"compiling {src.name}" if src else "linking"
            raise BitedgeError(f"build of {target.id} with {tc.id} failed {where}: "
                               f"{_first_error(proc.stderr + proc.stdout)} (full log: {log_path})")
        os.replace(linked, out / BINARY_NAME)
    finally:
        shutil.rmtree(work, ignore_errors=True)
