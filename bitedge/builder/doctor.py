"""`bitedge doctor`: per target profile, which toolchains can build it here, which one a build picks, whether its
emulator is installed, and what to install for what is missing."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import Iterable

from bitedge.builder import toolchains  # through the module: tests replace its detect_toolchain
from bitedge.errors import BitedgeError
from bitedge.targets import TOOLCHAIN_IDS, Target, load_targets


@dataclass(frozen=True)
class DoctorRow:
    target: str
    os: str
    arch: str
    toolchain: str | None  # what `bitedge build --target TARGET` would use, None if nothing fits
    version: str
    usable: tuple[str, ...]  # every toolchain here that can build it
    static: bool | None
    runner: str | None  # the emulator the profile runs under, if any
    runner_ok: bool | None
    fix: str  # what to install, "" if nothing is missing

    def as_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def doctor(targets: Iterable["Target"] | None = None, cc: str | None = None) -> list[DoctorRow]:
    """One row per target: which toolchains can build it here, which one a build would pick, whether its
    emulator is installed, and what to install for what is missing."""
    targets = list(load_targets().values()) if targets is None else list(targets)
    rows = []
    for target in targets:
        usable, hints = [], []
        for tid in TOOLCHAIN_IDS:
            if tid == "cc" and not (cc or os.environ.get("CC")):
                continue
            try:
                tc = toolchains.UserCC.from_command(cc or os.environ["CC"]) if tid == "cc" else toolchains.detect_toolchain(tid, target.arch)
            except BitedgeError:
                tc = None
            if tc is not None and tc.unsupported(target) is None:
                usable.append(tid)
            elif tid in target.toolchains:
                hints.append(toolchains.install_hint(tid, target) if tc is None else tc.unsupported(target))
        try:
            chosen = toolchains.select_toolchain(target, cc=cc)
        except BitedgeError:
            chosen = None
        runner = target.runner[0] if target.runner else None
        runner_ok = None if runner is None else shutil.which(runner) is not None
        fix = []
        if chosen is None:
            fix.append(hints[0] if hints else "no known toolchain builds this target")
        if runner_ok is False:
            fix.append("apt install qemu-user")
        rows.append(DoctorRow(
            target=target.id, os=target.os, arch=target.arch, toolchain=chosen.id if chosen else None,
            version=chosen.version if chosen else "", usable=tuple(usable),
            static=None if chosen is None else (target.os == "linux" and chosen.static_linux),
            runner=runner, runner_ok=runner_ok, fix="; ".join(fix)))
    return rows
