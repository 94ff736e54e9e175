"""Static cycle estimates of aarch64 kernel loops with llvm-mca: no board needed, and repeatable (noise-free).

Pipeline for one kernel on one CPU: a small harness C file #includes the kernel source and calls the one function
to model; clang compiles it for aarch64 at the board's -mcpu (-S); the steady-state loop is taken out of the
assembly (an innermost loop, as LLVM's own "This Inner Loop Header" comments mark it, holding the most of the
kernel's signature instruction, e.g. sdot); llvm-mca simulates that loop body at the scheduling model standing in
for the board's core. The signature instructions also say how much work one iteration does (sdot covers 16
weights of one row, ...), which turns cycles per iteration into cycles per 128-column block of one row.

What llvm-mca does not see: cache misses (every load hits L1), the loop's prologue / epilogue (int16 widening,
stores, the table building of TL methods, which is modelled as a kernel of its own) and frequency changes. The
numbers are compute-side estimates and are never called measurements anywhere.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bitedge.errors import BitedgeError

# Per board profile: the llvm-mca scheduling model that stands in for its core, why, and the clock and memory
# bandwidth the GB/s and tokens/s predictions use (vendor figures, source named; peak DRAM bandwidth is the bus
# width times the transfer rate: one core reaches only part of it).
BOARDS = {
    "rpi3": {
        "mca_cpu": "cortex-a53", "model": "Cortex-A53 model (LLVM's own, in-order dual issue)",
        "clock_ghz": 1.4, "dram_gbps": 4.0,
        "source": "Raspberry Pi 3 Model B+ product brief: BCM2837B0, 4x Cortex-A53 at 1.4 GHz (1.2 GHz on the 3B), "
                  "1 GB LPDDR2; 32-bit bus x 1000 MT/s (config.txt sdram_freq 500 MHz) = 4.0 GB/s peak",
    },
    "rpi4": {
        "mca_cpu": "cortex-a72", "model": "Cortex-A57 model (LLVM maps -mcpu=cortex-a72 to it; A72 is an A57 derivative)",
        "clock_ghz": 1.8, "dram_gbps": 12.8,
        "source": "Raspberry Pi 4 Model B product brief: BCM2711, 4x Cortex-A72 at 1.8 GHz (1.5 GHz on boards before "
                  "2020), LPDDR4-3200; 32-bit bus x 3200 MT/s = 12.8 GB/s peak",
    },
    "rpi5": {
        "mca_cpu": "neoverse-n1", "model": "Neoverse N1 model (LLVM maps -mcpu=cortex-a76 to its Cortex-A57 model; "
                                           "the N1 is the server twin of the A76 core, so its model is used)",
        "clock_ghz": 2.4, "dram_gbps": 17.1,
        "source": "Raspberry Pi 5 product brief: BCM2712, 4x Cortex-A76 at 2.4 GHz, LPDDR4X-4267; 32-bit bus x "
                  "4267 MT/s = 17.1 GB/s peak (also threedots.ovh 2023-09 'Gathering Raspberry Pi 5 details')",
    },
    "jetson-orin": {
        "mca_cpu": "neoverse-n1", "model": "Neoverse N1 model as a proxy (LLVM 22 has no Cortex-A78 model: "
                                           "-mcpu=cortex-a78ae maps to its Cortex-A57 model; A78, like A76/N1, has "
                                           "two 128-bit SIMD pipes)",
        "clock_ghz": 1.5, "dram_gbps": 68.0,
        "source": "NVIDIA Jetson Orin Nano 8GB datasheet: 6x Cortex-A78AE at 1.5 GHz, 128-bit LPDDR5, 68 GB/s "
                  "(the 'Super' JetPack 6.1 mode: 1.7 GHz, 102 GB/s)",
    },
    "apple-m1": {
        "mca_cpu": "apple-m1", "model": "LLVM's Apple model (its Cyclone (A7, 2013) description, used for every "
                                        "Apple core: narrower than M1 Firestorm, so M1 figures are pessimistic)",
        "clock_ghz": 3.2, "dram_gbps": 68.25,
        "source": "Apple M1: Firestorm P-cores at 3.2 GHz, LPDDR4X-4266 on a 128-bit bus = 68.25 GB/s "
                  "(Apple M1 Pro/Max announcement 2021-10-18, M1 comparison)",
    },
    "apple-m2": {
        "mca_cpu": "apple-m2", "model": "LLVM's Apple model again (-mcpu=apple-m2 maps to the same Cyclone "
                                        "description; it has i8mm's smmla): pessimistic for Avalanche cores",
        "clock_ghz": 3.49, "dram_gbps": 100.0,
        "source": "Apple M2 announcement 2022-06-06: LPDDR5, 100 GB/s unified memory bandwidth; Avalanche P-cores "
                  "at 3.49 GHz",
    },
    "apple-m3": {
        "mca_cpu": "apple-m3", "model": "LLVM's Apple model again (-mcpu=apple-m3 maps to the Cyclone description)",
        "clock_ghz": 4.05, "dram_gbps": 100.0,
        "source": "Apple M3 announcement 2023-10-30: 100 GB/s unified memory bandwidth; P-cores at 4.05 GHz",
    },
    "generic-aarch64": {
        "mca_cpu": "generic", "model": "LLVM's generic AArch64 model (-march=armv8-a tunes for it; LLVM 22 "
                                       "describes it with its Cortex-A510 model)",
        "clock_ghz": 1.8, "dram_gbps": 12.8,
        "source": "no board: nominal figures of a Raspberry Pi 4-class board (1.8 GHz, 32-bit LPDDR4-3200 = "
                  "12.8 GB/s), so the row is comparable with rpi4's",
    },
}
# the scheduling model an i8mm (Armv8.6) gemm is also estimated at: Neoverse V1 has LLVM's newest i8mm-capable
# description of a big core (Apple's is the 2013 Cyclone one)
I8MM_MCA_CPU = "neoverse-v1"

# Signature instructions: how a loop's work is counted. For each, how many appear per 128 weights of one row
# and one token (a "block-row"): sdot multiplies 16 int8 pairs; smull/smlal(2) 8; a one-register tbl looks up
# 16 rows of one byte (TL1: a pair of weights, low and high byte: 2 tbl per 16 rows x 2 columns = 8 per
# block-row); a two-register tbl the same for a triple (TL2: 128 / 3 triples x 2 / 16 = 16/3); scvtf / fcvtl
# convert 4 weights (Q8_0 / F16 output matrix).
SIGNATURES = {
    "sdot": (r"^sdot\b", 8.0),
    "smmla": (r"^smmla\b", 4.0),  # a 2x8 by 8x2 int8 product: 32 multiplies, 2 rows x 2 tokens x 8 columns
    "mlal": (r"^smull2?\b|^smlal2?\b", 16.0),
    "tbl1": (r"^tbl\s+v\d+\.16b,\s*\{\s*v\d+\.16b\s*\}", 8.0),
    "tbl2": (r"^tbl\s+v\d+\.16b,\s*\{\s*v\d+\.16b,\s*v\d+\.16b\s*\}", 16.0 / 3.0),
    "scvtf": (r"^scvtf\s+v", 32.0),
    "fcvtl": (r"^fcvtl2?\b", 32.0),
    "ld2": (r"^ld2\s", 16.0),  # bitnet.cpp's TL1 table building: one ld2 of 8 floats per 8 activations
    "ldrsb": (r"^ldu?rsb\b", 128.0),  # TL1 table building: one signed byte load per activation (128 per block)
    # TL2 table building: clang keeps the loop over a triple's 14 entries, one entry per iteration, so the loop's
    # one conditional branch counts entries (14 per 3 activations)
    "entry": (r"^b\.[a-z]{2}\s", 14 * 128 / 3),
}


@dataclass(frozen=True)
class LoopEstimate:
    cycles_per_iter: float
    work_per_iter: float  # block-rows (128 weights x 1 row x 1 token) per loop iteration
    instructions: int
    ipc: float
    mca_cpu: str

    @property
    def cycles_per_block(self) -> float:
        return self.cycles_per_iter / self.work_per_iter


def _newest(prefix: str) -> str | None:
    """The newest versioned LLVM tool on PATH (llvm-mca-22 over llvm-mca-14), else the unversioned one."""
    found = []
    for folder in {"/usr/bin", "/usr/local/bin", *[p for p in (os.environ.get("PATH") or "").split(":") if p]}:
        try:
            names = [p.name for p in Path(folder).iterdir()]
        except OSError:
            continue
        for name in names:
            m = re.fullmatch(re.escape(prefix) + r"-(\d+)", name)
            if m:
                found.append((int(m.group(1)), str(Path(folder) / name)))
    if found:
        return max(found)[1]
    return shutil.which(prefix)


@functools.lru_cache(maxsize=1)
def tools() -> dict[str, str]:
    """{"clang", "mca", "version"} of the newest LLVM installed, or BitedgeError saying what to install."""
    mca = _newest("llvm-mca")
    if not mca:
        raise BitedgeError("llvm-mca is not installed: apt-get install llvm-22 clang-22 (or the newest llvm-N Debian offers)")
    suffix = re.search(r"-(\d+)$", mca)
    clang = shutil.which(f"clang-{suffix.group(1)}") if suffix else None
    clang = clang or _newest("clang")
    if not clang:
        raise BitedgeError("clang is not installed: apt-get install clang")
    out = subprocess.run([mca, "--version"], capture_output=True, text=True).stdout
    version = re.search(r"LLVM version (\S+)", out)
    return {"clang": clang, "mca": mca, "version": version.group(1) if version else "?"}


def compile_asm(source: Path, cpu_flags: list[str], include_dirs: list[Path], out: Path,
                optimize: str = "-O2", defines: tuple[str, ...] = (), lang: str = "c") -> str:
    """aarch64 assembly of source as the runtime would compile it (clang, the profile's flags); lang c++ for the
    peers' C++ sources (clang++ of the same LLVM, -std=c++17)."""
    clang = tools()["clang"]
    if lang == "c++":
        clang = re.sub(r"clang(-\d+)?$", lambda m: "clang++" + (m.group(1) or ""), clang)
    argv = [clang, "--target=aarch64-linux-gnu", *cpu_flags, optimize, "-std=c++17" if lang == "c++" else "-std=c11", "-S",
            *defines, *(f"-I{d}" for d in include_dirs), str(source), "-o", str(out)]
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BitedgeError(f"clang failed on {source.name}: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return out.read_text()


def _functions(asm: str) -> dict[str, list[str]]:
    """Function name -> its lines, from clang's -S output (a function runs from 'name:' to '.Lfunc_endN')."""
    funcs: dict[str, list[str]] = {}
    current = None
    for line in asm.splitlines():
        m = re.match(r"^([A-Za-z_][\w.$]*):", line)
        if m and not m.group(1).startswith(".L"):
            current = m.group(1)
            funcs[current] = []
            continue
        if current is not None:
            if line.startswith(".Lfunc_end"):
                current = None
            else:
                funcs[current].append(line)
    return funcs


def _reachable(funcs: dict[str, list[str]], entry: str) -> list[str]:
    """entry and every function of the file it calls, directly or not (static kernels may stay out of line)."""
    seen, todo = [], [entry]
    while todo:
        name = todo.pop()
        if name in seen or name not in funcs:
            continue
        seen.append(name)
        for line in funcs[name]:
            m = re.match(r"\s+bl?\s+([A-Za-z_][\w.$]*)\s*$", line)
            if m:
                todo.append(m.group(1))
    return seen


def _instruction(line: str) -> str | None:
    text = line.split("//")[0].strip()
    if not text or text.startswith(".") or text.endswith(":"):
        return None
    return text


def inner_loops(lines: list[str]) -> list[list[str]]:
    """Innermost loops (header label to the last branch back to it) as lists of instructions, label first."""
    loops = []
    for i, line in enumerate(lines):
        if "This Inner Loop Header" not in line:
            continue
        # the marker is a comment on the label's line or on a comment-only line after it
        at = i
        while at > 0 and not re.match(r"^\.L\w+:", lines[at]) and lines[at].lstrip().startswith("//"):
            at -= 1
        if not re.match(r"^\.L\w+:", lines[at]):
            continue
        label = lines[at].split(":")[0].strip()
        end = max((j for j in range(i + 1, len(lines)) if re.search(rf"[\s,]{re.escape(label)}\s*$", lines[j].split("//")[0])
                   and _instruction(lines[j])), default=None)
        if end is None:
            continue
        body = [t for t in (_instruction(x) for x in lines[i + 1:end + 1]) if t]
        loops.append([label + ":"] + body)
    return loops


def hot_loop(asm: str, entry: str, signature: str, require: str | None = None) -> tuple[list[str], int]:
    """The innermost loop reachable from entry with the most signature instructions (and one matching require):
    (loop lines, signature count), or BitedgeError when none has any."""
    funcs = _functions(asm)
    if entry not in funcs:
        raise BitedgeError(f"function {entry} not found in the assembly")
    sig = re.compile(SIGNATURES[signature][0])
    best, best_n = None, 0
    for name in _reachable(funcs, entry):
        for loop in inner_loops(funcs[name]):
            if require and not any(re.search(require, x) for x in loop[1:]):
                continue
            n = sum(1 for x in loop[1:] if sig.search(x))
            if n > best_n:
                best, best_n = loop, n
    if best is None:
        # fully unrolled code (bitnet.cpp's generated TL1 kernels unroll every loop with #pragma unroll): the
        # function with the most signature instructions, as one straight-line region, repeated call after call
        for name in _reachable(funcs, entry):
            body = [t for t in (_instruction(x) for x in funcs[name]) if t]
            n = sum(1 for x in body if sig.search(x))
            if n > best_n:
                best, best_n = [".Lbe_straight_line:"] + body, n
    if best is None:
        raise BitedgeError(f"{entry}: no inner loop with {signature} instructions (was the kernel compiled out?)")
    return best, best_n


def mca_input(loop: list[str]) -> str:
    """The loop as llvm-mca input: labels it jumps to outside itself are defined at the end, so it assembles."""
    defined = {loop[0].rstrip(":")}
    referenced = set()
    for x in loop[1:]:
        referenced.update(re.findall(r"(\.L[\w$]+)", x))
    tail = [f"{name}:" for name in sorted(referenced - defined)]
    return "\n".join(loop + tail) + "\n"


def run_mca(text: str, mca_cpu: str, iterations: int = 200) -> dict[str, float]:
    """Total cycles, iterations, instructions and IPC of llvm-mca on one loop body."""
    proc = subprocess.run([tools()["mca"], "-mtriple=aarch64", f"-mcpu={mca_cpu}", f"-iterations={iterations}",
                           "-resource-pressure=0", "-instruction-info=0"],
                          input=text, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BitedgeError(f"llvm-mca failed: {(proc.stderr.strip().splitlines() or ['?'])[0]}")
    return parse_mca(proc.stdout)


def parse_mca(out: str) -> dict[str, float]:
    """The summary lines of llvm-mca's report (one code region)."""
    values = {}
    for key, name in (("Iterations", "iterations"), ("Instructions", "instructions"), ("Total Cycles", "cycles"),
                      ("IPC", "ipc"), ("Block RThroughput", "rthroughput")):
        m = re.search(rf"^{key}:\s+([\d.]+)", out, re.M)
        if not m:
            raise BitedgeError(f"llvm-mca output has no '{key}:' line")
        values[name] = float(m.group(1))
    return values


def estimate_loop(asm: str, entry: str, signature: str, mca_cpu: str, require: str | None = None,
                  save: Path | None = None) -> LoopEstimate:
    """Cycles per block-row of the hot loop of entry on one scheduling model."""
    loop, n_sig = hot_loop(asm, entry, signature, require)
    text = mca_input(loop)
    if save is not None:
        save.write_text(text)
    r = run_mca(text, mca_cpu, iterations=max(5, min(200, 40000 // len(loop))))  # big straight-line bodies: fewer
    return LoopEstimate(cycles_per_iter=r["cycles"] / r["iterations"], work_per_iter=n_sig / SIGNATURES[signature][1],
                        instructions=len(loop) - 1, ipc=r["ipc"], mca_cpu=mca_cpu)
