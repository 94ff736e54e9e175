"""Helpers for the bitedge-run tests: build the program (native, scalar-forced, aarch64 static), and check a run against the numpy reference with the exact lossless check."""

from __future__ import annotations

import hashlib
from pathlib import Path

from _c_build import compile_c, require_tool
from bitedge.builder.compile import BASE_CFLAGS
from bitedge.lossless import check_lossless
from bitedge.native import read_activations, run_generate

REPO = Path(__file__).resolve().parents[1]
RUNTIME = REPO / "kernels" / "runtime"
TEMPLATES = REPO / "kernels" / "templates"
# the product's flags, written once (bitedge.builder.compile.BASE_CFLAGS); _c_build adds -Werror
EXTRA_FLAGS = BASE_CFLAGS


def runtime_c_sources(kernels_dir: Path, target: str = "native", runtime_dir: Path = RUNTIME) -> list[Path]:
    """The C sources of bitedge-run as the product builds it (bitedge.builder.compile): kernels/runtime/*.c (or the
    same files in runtime_dir, a patched copy) plus the TL kernels rendered (generic) into kernels_dir for the
    host's target profile, or generic-aarch64's for target="aarch64"."""
    from bitedge.builder.compile import render_tl_kernels, runtime_sources
    from bitedge.board import host_target_id
    from bitedge.targets import get_target

    profile = get_target("generic-aarch64" if target == "aarch64" else host_target_id())
    rendered = render_tl_kernels(profile, [], kernels_dir)
    return [runtime_dir / p.name for p in runtime_sources()] + rendered


def build_runtime(out: Path, *, cc: str = "gcc", target: str = "native", extra: tuple[str, ...] = (),
                    sanitize: bool = False, runtime_dir: Path = RUNTIME, opt: str = "-O2") -> Path:
    """Compile bitedge-run from the product's sources (runtime_c_sources) with -Werror, sanitizers on request; skips
    if the compiler (or, for aarch64, qemu) is missing."""
    if target == "aarch64" and cc == "gcc":
        require_tool("aarch64-linux-gnu-gcc")
        require_tool("qemu-aarch64")
    else:
        require_tool(cc)
    kernels_dir = out.parent / f"{out.name}-kernels"
    return compile_c(runtime_c_sources(kernels_dir, target, runtime_dir), out, cc=cc, flags=(*EXTRA_FLAGS, *extra),
                     target=target, sanitize=sanitize, opt=opt, include_dirs=(runtime_dir, kernels_dir))


def session_runtime(tmp_path_factory, **kw) -> Path:
    """build_runtime once per test session and set of options (both runtime test modules share the binaries)."""
    digest = hashlib.sha256(repr(sorted(kw.items())).encode())
    for path in sorted([*RUNTIME.glob("*.[ch]"), *TEMPLATES.glob("*")]):
        digest.update(path.name.encode() + path.read_bytes())
    out = tmp_path_factory.getbasetemp() / f"bitedge-run-{digest.hexdigest()[:16]}"
    return out if out.exists() else build_runtime(out, **kw)


def qemu_runner(cpu: str) -> list[str]:
    return ["qemu-aarch64", "-cpu", cpu]


def generate_checked(binary, model, reference, prompt: list[int], workdir: Path, tag: str, n: int = 8, **kw):
    """A greedy run of bitedge-run with its logits and activation dump, checked against the reference by the exact
    lossless check (bitedge.lossless). Returns (tokens, logits [n, vocab], bitedge-run's JSON, LosslessReport)."""
    logits_file, acts_file = workdir / f"{tag}.f32", workdir / f"{tag}.acts"
    result = run_generate(binary, model, tokens=prompt, n=n, dump_logits=logits_file, dump_activations=acts_file, **kw)
    assert result["prompt_tokens"] == list(prompt)
    n_layers, records = read_activations(acts_file)
    report = check_lossless(reference, prompt, result["tokens"], result["logits"], n_layers, records)
    print(f"{tag}: {report.summary()}")
    return result["tokens"], result["logits"], result, report
