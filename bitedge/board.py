"""This machine and the boards as bitedge sees them: the probe script (run here or, by bitedge.deploy.probe, on a
board over SSH), its parsed facts, and the shipped profile that fits this machine. Above bitedge.targets, below
build and deploy."""

from __future__ import annotations

from dataclasses import dataclass, field

from bitedge.errors import BitedgeError
from bitedge.targets import get_target, suggest_targets

_LINUX_FLAGS = {
    "pni": "sse3", "ssse3": "ssse3", "sse4_1": "sse4.1", "sse4_2": "sse4.2", "avx": "avx", "bmi2": "bmi2",
    "avx2": "avx2", "fma": "fma", "f16c": "f16c", "avx512f": "avx512f", "avx512_vnni": "avx512vnni",
    "avx512bw": "avx512bw", "avx_vnni": "avxvnni",
    "asimd": "neon", "asimddp": "dotprod", "i8mm": "i8mm", "sve": "sve", "sve2": "sve2", "asimdhp": "fp16",
}
# macOS sysctl hw.optional.* -> feature
_MACOS_FLAGS = {
    "hw.optional.neon": "neon", "hw.optional.arm.FEAT_DotProd": "dotprod", "hw.optional.arm.FEAT_I8MM": "i8mm",
    "hw.optional.arm.FEAT_FP16": "fp16", "hw.optional.avx2_0": "avx2", "hw.optional.fma": "fma",
    "hw.optional.sse3": "sse3", "hw.optional.supplementalsse3": "ssse3", "hw.optional.avx1_0": "avx",
    "hw.optional.avx512f": "avx512f",
}

PROBE_SCRIPT = r"""
echo "os=$(uname -s)"; echo "arch=$(uname -m)"
if [ -r /proc/cpuinfo ]; then
  grep -m1 -iE '^(flags|Features)' /proc/cpuinfo | sed 's/^[^:]*: */features=/'
  m=$(grep -m1 '^model name' /proc/cpuinfo || grep -m1 '^Model' /proc/cpuinfo || grep -m1 '^Hardware' /proc/cpuinfo)
  echo "cpu=$(echo "$m" | sed 's/^[^:]*: *//')"
  echo "cores=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc)"
  echo "mem_kb=$(awk '/MemTotal/ {print $2}' /proc/meminfo)"
  p=$(cat /proc/device-tree/model 2>/dev/null | tr -d '\0'); [ -n "$p" ] && echo "board=$p"
else
  echo "cpu=$(sysctl -n machdep.cpu.brand_string 2>/dev/null)"
  echo "cores=$(sysctl -n hw.ncpu)"; echo "mem_kb=$(( $(sysctl -n hw.memsize) / 1024 ))"
  sysctl hw.optional 2>/dev/null | sed 's/^/sysctl=/'
fi
for q in qemu-aarch64 qemu-x86_64; do command -v $q >/dev/null 2>&1 && echo "runner=$q"; done
true
"""


@dataclass
class BoardInfo:
    os: str  # "linux" | "macos"
    arch: str  # "aarch64" | "x86_64"
    cpu: str = ""
    features: set[str] = field(default_factory=set)
    cores: int = 0
    mem_mb: int = 0
    board: str = ""
    runners: set[str] = field(default_factory=set)

    def as_dict(self) -> dict:
        return {"os": self.os, "arch": self.arch, "cpu": self.cpu, "features": sorted(self.features),
                "cores": self.cores, "mem_mb": self.mem_mb, "board": self.board, "runners": sorted(self.runners)}


def parse_probe(text: str) -> BoardInfo:
    values: dict[str, str] = {}
    features: set[str] = set()
    runners: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "features":
            features |= {_LINUX_FLAGS[f] for f in value.split() if f in _LINUX_FLAGS}
        elif key == "sysctl":
            name, _, v = value.partition(":")
            if name.strip() in _MACOS_FLAGS and v.strip() == "1":
                features.add(_MACOS_FLAGS[name.strip()])
        elif key == "runner":
            runners.add(value.strip())
        elif key:
            values[key] = value.strip()
    os_name = {"Linux": "linux", "Darwin": "macos"}.get(values.get("os", ""), values.get("os", "").lower())
    arch = {"arm64": "aarch64", "amd64": "x86_64"}.get(values.get("arch", ""), values.get("arch", ""))
    if arch == "aarch64" and os_name == "macos":
        features.add("neon")
    if not os_name or not arch:
        raise BitedgeError("probe: the board did not report its OS and architecture (uname failed?)")
    mem_kb = int(values["mem_kb"]) if values.get("mem_kb", "").isdigit() else 0
    cores = int(values["cores"]) if values.get("cores", "").isdigit() else 0
    return BoardInfo(os_name, arch, values.get("cpu", ""), features, cores, mem_kb // 1024, values.get("board", ""), runners)


def probe_local() -> BoardInfo:
    """The same probe, run on this machine."""
    import subprocess

    return parse_probe(subprocess.run(["sh", "-c", PROBE_SCRIPT], capture_output=True, text=True, check=True).stdout)



def host_target_id() -> str:
    """The shipped profile that fits this machine (a real one, not an emulated one)."""
    for tid in suggest_targets(probe_local().as_dict()):
        if not get_target(tid).emulated:
            return tid
    raise BitedgeError("no shipped target profile fits this machine: pass --target or add one (docs/targets.md)")
