"""Compile small C test programs from kernels/ and run them, natively or as static aarch64 binaries under qemu-user.

    exe = compile_c([*glob("kernels/runtime/gguf*.c"), "kernels/tests/fuzz_gguf.c"], tmp_path / "fuzz",
                    include_dirs=["kernels/runtime"], sanitize=True)
    proc = run_binary(exe, ["a.gguf"])

Relative source / include paths are taken from the repository root. Every build also includes the headers the
product renders from Python into its build folder (bitedge_layouts.h, bitedge_gguf_keys.h: format_headers_dir). Every build uses -std=c11 -Wall -Wextra
-Werror (warnings are bugs here) plus -D_POSIX_C_SOURCE=200809L; extra flags come last so they can override.
A compiler or emulator that is not installed raises CToolMissing, which tests turn into pytest.skip via
require_tool().
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KERNELS = REPO / "kernels"
RUNTIME = KERNELS / "runtime"

BASE_FLAGS = ("-std=c11", "-Wall", "-Wextra", "-Werror", "-D_POSIX_C_SOURCE=200809L")
SANITIZE_FLAGS = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g")
AARCH64_CC = "aarch64-linux-gnu-gcc"
# ASan must not ask for ptrace (LeakSanitizer does not work under some sandboxes) and must fail loudly
SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=86:allocator_may_return_null=1",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:exitcode=87",
}


class CToolMissing(RuntimeError):
    """A compiler or emulator this build needs is not installed."""


class CBuildError(RuntimeError):
    """The compiler refused the sources; the message carries the command and its stderr."""


def host_cpu_flags() -> set[str]:
    """The x86 feature flags of this machine's CPU (Linux /proc/cpuinfo; empty elsewhere or on ARM)."""
    try:
        line = next(ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags"))
    except (OSError, StopIteration):
        return set()
    return set(line.split(":", 1)[1].split())


def host_has_avx2() -> bool:
    """What the runtime's avx2 kernel table needs."""
    return {"avx2", "fma", "f16c"} <= host_cpu_flags()


def host_has_avx512_vnni() -> bool:
    """What the runtime's avx512-vnni kernel table needs (the kernel's flags also need the OS to save the ZMM
    state, which Linux lists a flag only when it does)."""
    return host_has_avx2() and {"avx512f", "avx512bw", "avx512vl", "avx512_vnni"} <= host_cpu_flags()


def host_has_avx_vnni() -> bool:
    """What the runtime's avx-vnni kernel table needs: the VEX vpdpbusd (Linux flag avx_vnni) and the avx2 table's
    features (its float and quantize kernels)."""
    return host_has_avx2() and "avx_vnni" in host_cpu_flags()


def have_tool(name: str) -> bool:
    return shutil.which(name) is not None


def require_tool(name: str) -> None:
    """pytest.skip when name is not on PATH (import pytest lazily: this module is also usable outside tests)."""
    if not have_tool(name):
        import pytest

        pytest.skip(f"{name} is not installed")


_FORMAT_HEADERS: Path | None = None


def format_headers_dir() -> Path:
    """A folder holding bitedge_layouts.h and bitedge_gguf_keys.h rendered now (bitedge.render), as the product
    build renders them into its build folder; one per process."""
    global _FORMAT_HEADERS
    if _FORMAT_HEADERS is None:
        import tempfile

        from bitedge.render import render_layouts_header

        _FORMAT_HEADERS = Path(tempfile.mkdtemp(prefix="bitedge-format-headers-"))
        atexit.register(shutil.rmtree, _FORMAT_HEADERS, True)
        render_layouts_header(_FORMAT_HEADERS)
    return _FORMAT_HEADERS


def _abs(p: str | os.PathLike) -> str:
    path = Path(p)
    return str(path if path.is_absolute() else REPO / path)


def compile_c(sources: Iterable[str | os.PathLike], out: str | os.PathLike, cc: str = "gcc",
              flags: Sequence[str] = (), defines: Sequence[str] = (), sanitize: bool = False,
              target: str = "native", include_dirs: Sequence[str | os.PathLike] = (RUNTIME,),
              libs: Sequence[str] = ("-lm", "-pthread"), opt: str = "-O1") -> Path:
    """Compile and link sources into the executable out; returns its Path.

    cc: "gcc", "clang", ... (for target="aarch64" the default gcc becomes aarch64-linux-gnu-gcc, linked -static).
    defines: "NAME" or "NAME=VALUE" (passed as -D). sanitize: ASan + UBSan, no recovery (native only).
    """
    if target not in ("native", "aarch64"):
        raise ValueError(f"unknown target {target!r} (native or aarch64)")
    if target == "aarch64":
        if cc in ("gcc", "cc"):
            cc = AARCH64_CC
        if sanitize:
            raise ValueError("sanitizers are for native builds only (static aarch64 binaries cannot use them)")
    if not have_tool(cc):
        raise CToolMissing(f"{cc} is not installed")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [cc, *BASE_FLAGS, opt]
    if sanitize:
        cmd += SANITIZE_FLAGS
    cmd += [f"-I{_abs(d)}" for d in (*include_dirs, format_headers_dir())]
    cmd += [f"-D{d}" for d in defines]
    cmd += list(flags)
    cmd += ["-o", str(out), *(_abs(s) for s in sources)]
    if target == "aarch64":
        cmd.append("-static")
    cmd += list(libs)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CBuildError(f"build failed: {' '.join(cmd)}\n{proc.stderr}")
    if proc.stderr.strip():  # -Werror makes this rare; a linker warning still counts as a failure here
        raise CBuildError(f"build printed diagnostics: {' '.join(cmd)}\n{proc.stderr}")
    return out


def run_binary(path: str | os.PathLike, args: Sequence[str | os.PathLike] = (), target: str = "native",
               qemu_cpu: str = "cortex-a72", timeout: float = 120.0, input: bytes | str | None = None,
               env: dict | None = None, text: bool = True) -> subprocess.CompletedProcess:
    """Run a binary built by compile_c (aarch64: under qemu-aarch64 -cpu qemu_cpu). Never raises on exit status;
    raises subprocess.TimeoutExpired past timeout. Sanitizer options of SANITIZER_ENV are always set."""
    cmd = [str(path), *map(str, args)]
    if target == "aarch64":
        if not have_tool("qemu-aarch64"):
            raise CToolMissing("qemu-aarch64 is not installed")
        cmd = ["qemu-aarch64", "-cpu", qemu_cpu, *cmd]
    full_env = dict(os.environ)
    full_env.update(SANITIZER_ENV)
    if env:
        full_env.update(env)
    if isinstance(input, str) and not text:
        input = input.encode()
    return subprocess.run(cmd, capture_output=True, text=text, input=input, env=full_env, timeout=timeout,
                          errors="replace" if text else None)


def sanitizer_report(proc: subprocess.CompletedProcess) -> str | None:
    """The first line of an ASan / UBSan report in proc's stderr, or None."""
    err = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode(errors="replace")
    for line in err.splitlines():
        if "ERROR: AddressSanitizer" in line or "runtime error:" in line or "ERROR: LeakSanitizer" in line:
            return line.strip()
    return None
