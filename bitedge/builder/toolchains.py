"""C toolchains that can build bitedge-run for a target: detection (with versions), which targets each one
serves, the flags it needs, which one builds a target (`select_toolchain`); bitedge.builder.doctor says what is
usable here and what to install for the rest.

Toolchain knowledge lives here, in code, not in toolchains/*.toml: what a toolchain is is behaviour (how to
probe it, how to spell a CPU for it, whether it links statically), and a user's own compiler is given with
CC=... or --cc, which needs no file. Five kinds:

  zig          `python -m ziglang cc` from the ziglang pip package: static musl for Linux, Mach-O for macOS
  gcc-cross    <arch>-linux-gnu-gcc (Debian gcc-aarch64-linux-gnu): static glibc
  clang-cross  clang --target=<arch>-linux-gnu with the Debian cross sysroot (/usr/<arch>-linux-gnu)
  gcc, clang   the host's own compiler, for targets of the host's OS and architecture
  cc           the user's compiler (--cc or $CC), e.g. a vendor SDK's aarch64-ostl-linux-gcc
"""

from __future__ import annotations

import dataclasses
import functools
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from bitedge.errors import BitedgeError
from bitedge.targets import TOOLCHAIN_IDS, Target

ZIG_CACHE_ENV = "BITEDGE_ZIG_CACHE"
# what every CPU of an architecture runs (zig spells them -mcpu=x86_64 / -mcpu=generic)
BASELINE_CPU_FLAGS = {"x86_64": ("-march=x86-64",), "aarch64": ("-march=armv8-a",)}
ZIG_LOCAL_CACHE_ENV = "BITEDGE_ZIG_LOCAL_CACHE"  # tests: a fresh one forces zig to really compile


def host_os() -> str:
    return {"Linux": "linux", "Darwin": "macos"}.get(platform.system(), platform.system().lower())


def host_arch() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def zig_cache_dir() -> Path:
    """zig's cache (its musl libc and compiler-rt, built once per architecture and optimisation mode, ~1 min
    each): shared by every build and test session so that cost is paid once per machine."""
    if os.environ.get(ZIG_CACHE_ENV):
        return Path(os.environ[ZIG_CACHE_ENV])
    if os.environ.get("ZIG_GLOBAL_CACHE_DIR"):
        return Path(os.environ["ZIG_GLOBAL_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "bitedge" / "zig"


@functools.lru_cache(maxsize=None)
def _run(argv: tuple[str, ...]) -> str | None:
    """stdout of a quick probe command, or None if it cannot run."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _first_line(text: str | None) -> str:
    return text.splitlines()[0].strip() if text else ""


@dataclass(frozen=True)
class Toolchain:
    """One usable compiler driver. `command` is the argv prefix; flags come from the methods below."""

    id: str
    command: tuple[str, ...]
    version: str

    static_linux = True  # links Linux binaries with -static
    reproducible = True  # same inputs and flags -> same bytes (tested for zig and gcc in tests/test_build.py)

    def unsupported(self, target: "Target") -> str | None:
        """Why this toolchain cannot build for target, or None if it can."""
        raise NotImplementedError

    def compile_flags(self, target: "Target") -> list[str]:
        """Target selection and CPU flags for compiling one source file."""
        return list(target.cpu_flags)

    def baseline_compile_flags(self, target: "Target") -> list[str]:
        """compile_flags for the architecture's baseline CPU instead of the profile's: for the code that checks the
        CPU before anything else runs (cpu_features.c), which must not itself use what it checks for."""
        return self.compile_flags(dataclasses.replace(target, cpu_flags=BASELINE_CPU_FLAGS.get(target.arch, target.cpu_flags)))

    def link_flags(self, target: "Target") -> list[str]:
        return ["-static"] if target.os == "linux" and self.static_linux else []

    def env(self) -> dict[str, str]:
        """Extra environment for the compiler processes."""
        return {}

    def describe(self) -> dict:
        return {"id": self.id, "command": list(self.command), "version": self.version}


# ---------------------------------------------------------------------------------------------------------
# zig cc


_ZIG_ARM_FEATURES = {"fp16": "fullfp16"}  # gcc spelling -> zig's, where they differ


def zig_cpu_flags(cpu_flags: Iterable[str], arch: str) -> list[str]:
    """gcc/clang CPU flags in zig cc's spelling: zig parses -mcpu/-march itself and wants its own CPU names
    (-mcpu=cortex-a76 -> cortex_a76, -march=x86-64-v3 -> -mcpu=x86_64_v3, -march=armv8.2-a+dotprod ->
    -mcpu=generic+v8_2a+dotprod)."""
    out = []
    for flag in cpu_flags:
        name, _, value = flag.partition("=")
        if name not in ("-mcpu", "-march") or not value:
            if name != "-mtune":  # zig has no separate tuning; drop it
                out.append(flag)
            continue
        base, *features = value.split("+")
        features = [_ZIG_ARM_FEATURES.get(f, f) for f in features]
        arm_arch = re.fullmatch(r"armv(\d)(?:\.(\d))?-a", base)
        if name == "-march" and arch == "aarch64" and arm_arch:
            major, minor = arm_arch.groups()
            version = [] if (major, minor) == ("8", None) else [f"v{major}_{minor or 0}a"]
            base, features = "generic", version + features
        else:
            base = base.replace("-", "_").replace(".", "_")
        out.append("-mcpu=" + "+".join([base, *features]))
    return out


class ZigCC(Toolchain):
    def triple(self, target: "Target") -> str:
        return f"{target.arch}-linux-musl" if target.os == "linux" else f"{target.arch}-macos"

    def unsupported(self, target):
        return None  # zig ships libc for every os/arch bitedge knows

    def compile_flags(self, target):
        return ["-target", self.triple(target), *zig_cpu_flags(target.cpu_flags, target.arch)]

    def link_flags(self, target):
        # no -mcpu here: zig builds libc per CPU model (a minute each), so link against the baseline libc of the
        # architecture, built once; our own objects carry the CPU-specific code
        return ["-target", self.triple(target), target.optimize, *super().link_flags(target)]

    def env(self):
        # the local cache holds compiled objects (zig cc reuses them when nothing changed), the global one libc
        cache = str(zig_cache_dir())
        return {"ZIG_GLOBAL_CACHE_DIR": cache, "ZIG_LOCAL_CACHE_DIR": os.environ.get(ZIG_LOCAL_CACHE_ENV) or cache}

    @classmethod
    def detect(cls) -> "ZigCC | None":
        import importlib.util

        if importlib.util.find_spec("ziglang") is None:
            return None
        version = _run((sys.executable, "-m", "ziglang", "version"))
        return cls("zig", (sys.executable, "-m", "ziglang", "cc"), version) if version else None


# ---------------------------------------------------------------------------------------------------------
# gcc / clang


def _accepts_cpu_flags(command: tuple[str, ...], flags: tuple[str, ...]) -> bool:
    """Whether the compiler knows these -mcpu/-march values (clang 14 has no cortex-a78ae, say)."""
    return not flags or _run((*command, *flags, "-E", "-x", "c", os.devnull)) is not None


def _cpu_flags_problem(command: tuple[str, ...], target: "Target") -> str | None:
    if _accepts_cpu_flags(command, tuple(target.cpu_flags)):
        return None
    return f"{shlex.join(command)} does not know {' '.join(target.cpu_flags)} (too old for this CPU?)"


def _gcc_has_static_libc(command: tuple[str, ...]) -> bool:
    found = _run((*command, "-print-file-name=libc.a"))
    return bool(found) and os.path.isabs(found) and os.path.exists(found)


class GccCross(Toolchain):
    arch = ""

    def unsupported(self, target):
        if target.os != "linux" or target.arch != self.arch:
            return f"{self.command[0]} builds {self.arch} Linux only"
        if not _gcc_has_static_libc(self.command):
            return f"{self.command[0]} has no static libc (apt install {_apt_arch_pkg('libc6-dev', self.arch)})"
        return _cpu_flags_problem(self.command, target)

    @classmethod
    def detect_for(cls, arch: str) -> "GccCross | None":
        cc = f"{arch}-linux-gnu-gcc"
        if shutil.which(cc) is None:
            return None
        version = _run((cc, "-dumpfullversion")) or _run((cc, "-dumpversion"))
        if not version:
            return None
        tc = cls("gcc-cross", (cc,), version)
        object.__setattr__(tc, "arch", arch)
        return tc


class ClangCross(Toolchain):
    arch = ""

    def unsupported(self, target):
        if target.os != "linux" or target.arch != self.arch:
            return f"clang --target={self.arch}-linux-gnu builds {self.arch} Linux only"
        sysroot = Path(f"/usr/{self.arch}-linux-gnu")
        if self.arch != host_arch() and not (sysroot / "lib" / "libc.a").exists():
            return f"no {self.arch} sysroot with a static libc in {sysroot} (apt install {_apt_cross_gcc(self.arch)})"
        if self.arch != host_arch() and shutil.which(f"{self.arch}-linux-gnu-ld") is None and shutil.which("ld.lld") is None:
            return f"no linker for {self.arch} (apt install binutils-{self.arch.replace('_', '-')}-linux-gnu or lld)"
        return _cpu_flags_problem(self.command, target)

    @classmethod
    def detect_for(cls, arch: str) -> "ClangCross | None":
        if shutil.which("clang") is None:
            return None
        version = _first_line(_run(("clang", "--version")))
        if not version:
            return None
        tc = cls("clang-cross", ("clang", f"--target={arch}-linux-gnu"), version)
        object.__setattr__(tc, "arch", arch)
        return tc


class NativeCC(Toolchain):
    """The host's gcc or clang: builds for the host's own OS and architecture."""

    def unsupported(self, target):
        if (target.os, target.arch) != (host_os(), host_arch()):
            return f"{self.id} builds for this machine ({host_os()}/{host_arch()}) only"
        if target.os == "linux" and not _gcc_has_static_libc(self.command):
            return f"{self.id} has no static libc (apt install libc6-dev)"
        return _cpu_flags_problem(self.command, target)

    @classmethod
    def detect(cls, name: str) -> "NativeCC | None":
        if shutil.which(name) is None:
            return None
        version = _first_line(_run((name, "--version")))
        return cls(name, (name,), version) if version else None


class UserCC(Toolchain):
    """A compiler the user names (--cc or $CC), e.g. a vendor cross-gcc. It says what it targets with
    -dumpmachine; bitedge passes the profile's CPU flags as written (gcc spelling)."""

    machine = ""

    def unsupported(self, target):
        if not self.machine:
            return f"{shlex.join(self.command)} does not say what it builds for (-dumpmachine failed)"
        arch = self.machine.split("-")[0]
        arch = {"arm64": "aarch64", "amd64": "x86_64"}.get(arch, arch)
        os_name = "macos" if ("darwin" in self.machine or "apple" in self.machine) else "linux"
        if (os_name, arch) != (target.os, target.arch):
            return f"{shlex.join(self.command)} builds for {self.machine}, not {target.os}/{target.arch}"
        return _cpu_flags_problem(self.command, target)

    @classmethod
    def from_command(cls, cc: str) -> "UserCC":
        command = tuple(shlex.split(cc))
        if not command or shutil.which(command[0]) is None:
            raise BitedgeError(f"compiler {cc!r} not found")
        version = _first_line(_run((*command, "--version"))) or "unknown"
        tc = cls("cc", command, version)
        object.__setattr__(tc, "machine", _run((*command, "-dumpmachine")) or "")
        return tc


# ---------------------------------------------------------------------------------------------------------
# detection, selection (doctor: bitedge/builder/doctor.py)


def _apt_arch_pkg(base: str, arch: str) -> str:
    return f"{base}-{'arm64' if arch == 'aarch64' else 'amd64'}-cross"


def _apt_cross_gcc(arch: str) -> str:
    return f"gcc-{arch.replace('_', '-')}-linux-gnu"


def install_hint(toolchain_id: str, target: "Target") -> str:
    """What to install so toolchain_id can build for target."""
    if toolchain_id == "zig":
        return "pip install ziglang"
    if toolchain_id == "gcc-cross":
        return f"apt install {_apt_cross_gcc(target.arch)}"
    if toolchain_id == "clang-cross":
        return f"apt install clang {_apt_cross_gcc(target.arch)}"
    if toolchain_id in ("gcc", "clang"):
        return f"apt install {toolchain_id} libc6-dev (on a {target.os}/{target.arch} machine)"
    return "set CC or --cc to a compiler for this target"


def detect_toolchain(toolchain_id: str, arch: str | None = None) -> Toolchain | None:
    """One toolchain kind, or None if not installed. arch picks the cross compiler's architecture."""
    arch = arch or host_arch()
    if toolchain_id == "zig":
        return ZigCC.detect()
    if toolchain_id == "gcc-cross":
        return GccCross.detect_for(arch)
    if toolchain_id == "clang-cross":
        return ClangCross.detect_for(arch)
    if toolchain_id in ("gcc", "clang"):
        return NativeCC.detect(toolchain_id)
    if toolchain_id == "cc":
        return UserCC.from_command(os.environ["CC"]) if os.environ.get("CC") else None
    raise BitedgeError(f"unknown toolchain {toolchain_id!r} (known: {', '.join(TOOLCHAIN_IDS)})")


def detect_toolchains() -> list[Toolchain]:
    """Every toolchain installed here (cross compilers once per architecture)."""
    found = []
    for tid in TOOLCHAIN_IDS:
        arches = ("aarch64", "x86_64") if tid in ("gcc-cross", "clang-cross") else (None,)
        for arch in arches:
            try:
                tc = detect_toolchain(tid, arch)
            except BitedgeError:
                tc = None  # a $CC that does not exist: doctor reports it per target
            if tc is not None and tc not in found:
                found.append(tc)
    return found


def select_toolchain(target: "Target", toolchain: str | None = None, cc: str | None = None) -> Toolchain:
    """The toolchain to build target with: --cc wins, then an explicit toolchain id, then $CC if it builds for
    this target, then the profile's preference list. BitedgeError says what to install if none fits."""
    if cc:
        tc = UserCC.from_command(cc)
        if (why := tc.unsupported(target)) is not None:
            raise BitedgeError(f"--cc: {why}")
        return tc
    if toolchain:
        tc = detect_toolchain(toolchain, target.arch)
        if tc is None:
            raise BitedgeError(f"toolchain {toolchain!r} not found ({install_hint(toolchain, target)})")
        if (why := tc.unsupported(target)) is not None:
            raise BitedgeError(f"toolchain {toolchain!r} cannot build {target.id}: {why}")
        return tc
    if os.environ.get("CC"):
        try:
            tc = UserCC.from_command(os.environ["CC"])
        except BitedgeError:
            tc = None
        if tc is not None and tc.unsupported(target) is None:
            return tc
    reasons = []
    for tid in target.toolchains:
        tc = detect_toolchain(tid, target.arch)
        if tc is None:
            reasons.append(f"{tid}: not installed ({install_hint(tid, target)})")
        elif (why := tc.unsupported(target)) is not None:
            reasons.append(f"{tid}: {why}")
        else:
            return tc
    raise BitedgeError(f"no toolchain here can build {target.id}: " + "; ".join(reasons))
