"""Board profiles: one TOML file per board in targets/, loaded into a validated, frozen `Target`.

A profile is data only (PlatformIO style): what the board's CPU can execute (compiler flags and ISA features),
how much of it there is (cores, memory), which kernel method to use by default, which toolchains to try, and
how to run a binary for it here (a qemu runner for the emulated profiles). The schema is in docs/targets.md;
every validation error names the file, the key and the problem.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from bitedge._shipped import TARGETS_DIR
from bitedge.errors import BitedgeError

SHIPPED_DIR = TARGETS_DIR
# extra profile folders, os.pathsep-separated, searched after the shipped ones (as --targets-dir does)
TARGETS_PATH_ENV = "BITEDGE_TARGETS_PATH"

OSES = ("linux", "macos")
ARCHES = ("aarch64", "x86_64")
LIBCS = ("glibc", "musl", "macos")
METHODS = ("i2_s", "tl1", "tl2")
OPTIMIZE = ("-O2", "-O3", "-Os")
# ISA feature names (the same names bitedge.deploy.probe reports), per architecture
ISA_FEATURES = {
    "aarch64": ("neon", "fp16", "dotprod", "i8mm", "bf16", "sve", "sve2"),
    "x86_64": ("sse3", "ssse3", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vnni", "avxvnni"),
}
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass(frozen=True)
class KernelDefaults:
    method: str  # i2_s | tl1 | tl2
    measured: bool  # False: chosen from the ISA, never measured on this board
    # what an unmeasured default rests on: the llvm-mca static estimate that chose it (`bitedge tune --estimate`)
    estimate: str = ""

    def as_dict(self) -> dict:
        d = {"method": self.method, "measured": self.measured}
        if self.estimate:  # only when set: profiles without one keep their content hash (and build cache keys)
            d["estimate"] = self.estimate
        return d


@dataclass(frozen=True)
class Target:
    id: str
    name: str
    os: str  # linux | macos
    arch: str  # aarch64 | x86_64
    libc: str  # glibc | musl | macos: what the board's OS runs (Linux builds are static, so it rarely matters)
    cpu_flags: tuple[str, ...]  # gcc/clang spelling: -mcpu=cortex-a76, -march=x86-64-v3 (zig's is derived)
    isa: tuple[str, ...]  # features the binary may use and checks for at start
    cores: int
    memory_mb: int
    kernel: KernelDefaults
    toolchains: tuple[str, ...]  # preference order
    aliases: tuple[str, ...] = ()
    optimize: str = "-O2"
    runner: tuple[str, ...] | None = None  # emulated profiles: argv prefix that runs the binary here
    match: tuple[str, ...] = ()  # substrings of a probed board/cpu name that identify this board
    notes: str = ""
    path: Path | None = field(default=None, compare=False)

    @property
    def emulated(self) -> bool:
        return self.runner is not None

    def as_dict(self) -> dict:
        """The profile's content (not where it was read from): what the build cache hashes."""
        return {
            "id": self.id, "name": self.name, "aliases": list(self.aliases), "os": self.os, "arch": self.arch,
            "libc": self.libc, "cpu_flags": list(self.cpu_flags), "isa": list(self.isa), "cores": self.cores,
            "memory_mb": self.memory_mb, "kernel": self.kernel.as_dict(), "toolchains": list(self.toolchains),
            "optimize": self.optimize, "runner": list(self.runner) if self.runner is not None else None,
            "match": list(self.match), "notes": self.notes,
        }

    def content_sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()

    def feature_defines(self) -> tuple[str, ...]:
        """-D flags that tell the runtime which ISA features this build requires (docs/targets.md)."""
        return (f"-DBITEDGE_TARGET=\"{self.id}\"",
                *(f"-DBITEDGE_REQUIRE_{f.upper()}=1" for f in self.isa),
                f"-DBITEDGE_REQUIRED_FEATURES=\"{','.join(self.isa)}\"")


# ---------------------------------------------------------------------------------------------------------
# validation


def _fail(path: Path, key: str, problem: str):
    raise BitedgeError(f"{path}: key '{key}': {problem}")


def _typed(path: Path, data: dict, key: str, kind: type | tuple, what: str, default: Any = ...,
           table: str = "") -> Any:
    label = f"{table}.{key}" if table else key
    if key not in data:
        if default is ...:
            _fail(path, label, f"missing (expected {what})")
        return default
    value = data[key]
    # bool is an int in Python; a profile saying cores = true is a mistake
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        _fail(path, label, f"expected {what}, got {type(value).__name__} {value!r}")
    return value


def _str_list(path: Path, data: dict, key: str, default: Any = ...) -> tuple[str, ...] | None:
    value = _typed(path, data, key, list, "a list of strings", default)
    if value is None or value is default:
        return value
    for item in value:
        if not isinstance(item, str):
            _fail(path, key, f"expected a list of strings, got an item {item!r}")
    return tuple(value)


def _enum(path: Path, key: str, value: str, allowed: Iterable[str]) -> str:
    allowed = tuple(allowed)
    if value not in allowed:
        _fail(path, key, f"bad value {value!r} (one of: {', '.join(allowed)})")
    return value


_TOP_KEYS = {"id", "name", "aliases", "os", "arch", "libc", "cpu_flags", "isa", "cores", "memory_mb", "kernel",
             "toolchains", "optimize", "runner", "match", "notes"}
# the toolchain ids a profile may name (bitedge.builder.toolchains implements them)
TOOLCHAIN_IDS = ("zig", "gcc-cross", "clang-cross", "gcc", "clang", "cc")
_KERNEL_KEYS = {"method", "measured", "estimate"}  # no "tiles": kernel tiles come from `bitedge tune`'s cache


def parse_target(data: dict, path: Path) -> Target:
    """A Target from a parsed TOML table, or BitedgeError naming file, key and problem."""
    for key in data:
        if key not in _TOP_KEYS:
            _fail(path, key, f"unknown key (known: {', '.join(sorted(_TOP_KEYS))})")
    tid = _typed(path, data, "id", str, "a string")
    if not _ID_RE.match(tid):
        _fail(path, "id", f"bad value {tid!r} (lower-case letters, digits, '.', '_', '-')")
    aliases = _str_list(path, data, "aliases", ())
    for alias in aliases:
        if not _ID_RE.match(alias):
            _fail(path, "aliases", f"bad alias {alias!r} (lower-case letters, digits, '.', '_', '-')")
    os_name = _enum(path, "os", _typed(path, data, "os", str, "a string"), OSES)
    arch = _enum(path, "arch", _typed(path, data, "arch", str, "a string"), ARCHES)
    libc = _enum(path, "libc", _typed(path, data, "libc", str, "a string"), LIBCS)
    if (os_name == "macos") != (libc == "macos"):
        _fail(path, "libc", f"{libc!r} does not go with os = {os_name!r}")
    isa = _str_list(path, data, "isa")
    for feature in isa:
        if feature not in ISA_FEATURES[arch]:
            other = next((a for a, fs in ISA_FEATURES.items() if feature in fs), None)
            hint = f"an {other} feature, not {arch}" if other else f"known for {arch}: {', '.join(ISA_FEATURES[arch])}"
            _fail(path, "isa", f"unknown ISA feature {feature!r} ({hint})")
    if len(set(isa)) != len(isa):
        _fail(path, "isa", "a feature is listed twice")
    toolchains = _str_list(path, data, "toolchains")
    if not toolchains:
        _fail(path, "toolchains", "empty (list at least one toolchain)")
    for tc in toolchains:
        if tc not in TOOLCHAIN_IDS:
            _fail(path, "toolchains", f"unknown toolchain {tc!r} (known: {', '.join(TOOLCHAIN_IDS)})")
    cores = _typed(path, data, "cores", int, "an integer")
    memory_mb = _typed(path, data, "memory_mb", int, "an integer")
    for key, value in (("cores", cores), ("memory_mb", memory_mb)):
        if value <= 0:
            _fail(path, key, f"must be positive, got {value}")
    runner = _str_list(path, data, "runner", None)
    if runner is not None and not runner:
        _fail(path, "runner", "empty (leave the key out for a real board)")
    return Target(
        id=tid, name=_typed(path, data, "name", str, "a string"), os=os_name, arch=arch, libc=libc,
        cpu_flags=_str_list(path, data, "cpu_flags"), isa=isa, cores=cores, memory_mb=memory_mb,
        kernel=_parse_kernel(path, _typed(path, data, "kernel", dict, "a table")), toolchains=toolchains,
        aliases=aliases, optimize=_enum(path, "optimize", _typed(path, data, "optimize", str, "a string", "-O2"), OPTIMIZE),
        runner=runner, match=_str_list(path, data, "match", ()), notes=_typed(path, data, "notes", str, "a string", ""),
        path=path,
    )


def _parse_kernel(path: Path, table: dict) -> KernelDefaults:
    for key in table:
        if key not in _KERNEL_KEYS:
            _fail(path, f"kernel.{key}", f"unknown key (known: {', '.join(sorted(_KERNEL_KEYS))})")
    method = _enum(path, "kernel.method", _typed(path, table, "method", str, "a string", table="kernel"), METHODS)
    measured = _typed(path, table, "measured", bool, "true or false", table="kernel")
    estimate = _typed(path, table, "estimate", str, "a string", "", table="kernel")
    if estimate and measured:
        _fail(path, "kernel.estimate", "a measured default rests on its measurement, not on an estimate")
    return KernelDefaults(method, measured, estimate)


def load_target_file(path: str | Path) -> Target:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise BitedgeError(f"{path}: cannot read target profile: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise BitedgeError(f"{path}: not valid TOML: {e}") from None
    return parse_target(data, path)


# ---------------------------------------------------------------------------------------------------------
# the set of profiles


def target_dirs(extra_dirs: Iterable[str | Path] = ()) -> list[Path]:
    dirs = [SHIPPED_DIR]
    dirs += [Path(p) for p in os.environ.get(TARGETS_PATH_ENV, "").split(os.pathsep) if p]
    dirs += [Path(p) for p in extra_dirs]
    return dirs


def load_targets(extra_dirs: Iterable[str | Path] = ()) -> dict[str, Target]:
    """Every profile (shipped, $BITEDGE_TARGETS_PATH, extra_dirs) by id; ids and aliases are unique across all."""
    targets: dict[str, Target] = {}
    names: dict[str, Path] = {}  # id or alias -> file that claimed it
    for i, folder in enumerate(target_dirs(extra_dirs)):
        if not folder.is_dir():
            if i == 0:
                continue  # a wheel install without the shipped folder: user folders still work
            raise BitedgeError(f"{folder}: targets folder does not exist")
        for path in sorted(folder.glob("*.toml")):
            target = load_target_file(path)
            for name in (target.id, *target.aliases):
                if name in names:
                    key = "id" if name == target.id else "aliases"
                    _fail(path, key, f"{name!r} is already used by {names[name]}")
                names[name] = path
            targets[target.id] = target
    return targets


def get_target(name: str | Target, extra_dirs: Iterable[str | Path] = ()) -> Target:
    """A profile by id or alias (a Target passes through), or BitedgeError listing the known ids."""
    if isinstance(name, Target):
        return name
    targets = load_targets(extra_dirs)
    if name in targets:
        return targets[name]
    for target in targets.values():
        if name in target.aliases:
            return target
    raise BitedgeError(f"unknown target {name!r} (known: {', '.join(sorted(targets))}; "
                       "add a board with a targets/*.toml file or --targets-dir)")


def suggest_targets(info: Mapping, extra_dirs: Iterable[str | Path] = ()) -> list[str]:
    """Profile ids that fit a probed board (bitedge.deploy.probe BoardInfo.as_dict()), best first.

    A profile fits if OS and architecture match and the board has every ISA feature it requires; real
    boards before emulated profiles, a name match ("Raspberry Pi 5" in the board string) first, then the
    profile that uses the most features."""
    features = set(info.get("features") or ())
    label = f"{info.get('board', '')} {info.get('cpu', '')}".lower()
    ranked = []
    for target in load_targets(extra_dirs).values():
        if target.emulated:
            # runs under an emulator the board has (qemu-aarch64 on an x86 host): the board's ISA does not matter
            if target.os != info.get("os") or Path(target.runner[0]).name not in set(info.get("runners") or ()):
                continue
        elif target.os != info.get("os") or target.arch != info.get("arch") or not set(target.isa) <= features:
            continue
        named = any(m.lower() in label for m in target.match)
        ranked.append(((target.emulated, not named, -len(target.isa), target.id), target.id))
    return [tid for _, tid in sorted(ranked)]
