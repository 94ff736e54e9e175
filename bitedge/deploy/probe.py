"""What a board is: OS, architecture, CPU features — and what a binary was built for."""

from __future__ import annotations

import struct
from pathlib import Path

from fabric import Connection

from bitedge.board import PROBE_SCRIPT, BoardInfo, parse_probe
from bitedge.deploy.ssh import run
from bitedge.errors import BitedgeError

# /proc/cpuinfo flag (x86 "flags", aarch64 "Features") -> bitedge ISA feature name
def probe(conn: Connection, timeout: float = 60) -> BoardInfo:
    return parse_probe(run(conn, PROBE_SCRIPT, timeout=timeout).stdout)


def binary_platform(path: str | Path) -> tuple[str, str]:
    """(os, arch) a binary was built for, from its ELF or Mach-O header."""
    head = Path(path).read_bytes()[:64]
    if head[:4] == b"\x7fELF":
        endian = "<" if head[5] == 1 else ">"
        machine = struct.unpack_from(endian + "H", head, 18)[0]
        arch = {0xB7: "aarch64", 0x3E: "x86_64", 0x28: "arm", 0x03: "x86"}.get(machine, f"elf-machine-{machine}")
        return "linux", arch
    magic = struct.unpack_from("<I", head, 0)[0] if len(head) >= 8 else 0
    if magic == 0xFEEDFACF:
        cputype = struct.unpack_from("<I", head, 4)[0]
        return "macos", {0x0100000C: "aarch64", 0x01000007: "x86_64"}.get(cputype, f"macho-cpu-{cputype:#x}")
    raise BitedgeError(f"{path}: not an ELF or Mach-O executable")


def check_binary_runs_on(binary: str | Path, board: BoardInfo, runner: list[str] | None = None) -> None:
    """Refuse a binary built for another OS/arch, unless the profile runs it under an emulator the board has."""
    os_name, arch = binary_platform(binary)
    if runner:
        if Path(runner[0]).name not in board.runners and not runner[0].startswith("/"):
            raise BitedgeError(f"board has no {runner[0]} to run the {arch} binary (install qemu-user on it)")
        return
    if (os_name, arch) != (board.os, board.arch):
        raise BitedgeError(
            f"{Path(binary).name} is built for {os_name}/{arch} but the board is {board.os}/{board.arch}: "
            f"build for the right target (bitedge probe --host HOST suggests one)"
        )
