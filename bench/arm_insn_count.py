#!/usr/bin/env python3
"""Where bitedge-run's instructions go on ARM: executed guest instructions per generated token under qemu-aarch64,
split by function, next to what the llvm-mca-modelled loops predict (bench/arm_estimate.py).

    python3 bench/arm_insn_count.py                        # bundled tiny model (i2_s), rpi5-qemu, clang-22
    python3 bench/arm_insn_count.py --preset 125M          # a bitedge dummy model of realistic shape

A TCG plugin (bench/qemu_insn_plugin.c, built here with gcc) counts every executed translation block; block
addresses are mapped to functions with llvm-nm (the binary is static, not PIE). Two runs generating n1 and n2 tokens
from the same prompt give per-token counts as (count(n2) - count(n1)) / (n2 - n1): loading, the prompt and start-up
cancel out. Instruction counts are exact and repeatable (they do not depend on the machine's load); they are
qemu's counts of the real binary, not timings: emulation says nothing about speed.

The cross-check: for the ternary gemv and the output-matrix gemv, the static prediction is (hot-loop instructions
per block-row, from the same clang and flags) x (block-rows per token, from the model's shapes); the dynamic count
of the function should be slightly above it (prologues, row bookkeeping), never far off.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bitedge.builder.compile import build_runtime  # noqa: E402
from bitedge.targets import get_target  # noqa: E402
from bitedge.gguf_read import open_gguf, read_model  # noqa: E402
from bitedge.model import is_ternary  # noqa: E402
from bitedge.render import mca  # noqa: E402
from bitedge.render.estimate import estimate_kernel, runtime_kernels  # noqa: E402

# function -> what it is (the rest is "other": attention, norms, sampling, libc)
KERNELS = {"i2s_gemv_dotprod": "ternary gemv (I2_S, dotprod)", "i2s_gemv_neon": "ternary gemv (I2_S, NEON)",
           "float_gemv_neon": "output matrix gemv (float activations)",
           "be_quantize_row_i8_scalar": "activation quantisation", "be_quantize_row_i8": "activation quantisation"}


def symbols(binary: Path) -> tuple[list[int], list[str]]:
    nm = mca.tools()["mca"].replace("llvm-mca", "llvm-nm")
    out = subprocess.run([nm, "-n", "--defined-only", str(binary)], capture_output=True, text=True, check=True).stdout
    addrs, names = [], []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTwW":
            addrs.append(int(parts[0], 16))
            names.append(parts[2])
    return addrs, names


def run_counts(qemu: list[str], plugin: Path, binary: Path, model: Path, n: int, out: Path) -> dict[int, int]:
    argv = [*qemu, "-plugin", f"{plugin},out={out}", str(binary), "generate", "-m", str(model),
            "-p", "In the beginning", "-n", str(n), "-t", "1", "--temp", "0"]
    subprocess.run(argv, capture_output=True, check=True)
    counts: dict[int, int] = collections.Counter()
    for line in out.read_text().splitlines():
        vaddr, n_insns, execs = line.split()
        counts[int(vaddr, 16)] += int(n_insns) * int(execs)
    return counts


def by_function(counts: dict[int, int], addrs: list[int], names: list[str]) -> dict[str, int]:
    per: dict[str, int] = collections.Counter()
    for vaddr, n in counts.items():
        i = bisect.bisect_right(addrs, vaddr) - 1
        per[names[i] if i >= 0 else "?"] += n
    return per


def static_prediction(target, model: Path, work: Path) -> dict[str, float]:
    """Instructions per token the modelled hot loops alone would execute (loop instructions x iterations)."""
    source = read_model(model)
    config = source.config
    kp = config.hidden_size  # the runtime kernels take kp at run time: the loop body does not depend on it
    loops = {}
    for case in runtime_kernels(target, kp):
        if "gemm" in case.name:
            continue
        e = estimate_kernel(target, case, work)
        loops[case.name] = e.loop.instructions / e.loop.work_per_iter  # instructions per block-row
    blocks = sum(s[0] * -(-s[1] // 128) for name, s in config.tensor_shapes().items() if is_ternary(name))
    gemv = "i2_s runtime dotprod gemv" if "dotprod" in target.isa else "i2_s runtime neon gemv"
    g = open_gguf(model)
    out_name = "output.weight" if "output.weight" in g.by_name else "token_embd.weight"
    out_kind = "output f16" if g.by_name[out_name].ggml_type.name == "F16" else "output q8_0"
    output = next(v for k, v in loops.items() if k.startswith(out_kind))
    return {"ternary gemv": loops[gemv] * blocks,
            "output": output * config.vocab_size * config.hidden_size / 128}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", default="rpi5-qemu")
    ap.add_argument("--model", type=Path, help="an I2_S GGUF (default: the bundled tiny model, converted)")
    ap.add_argument("--preset", help="write a bitedge dummy model of this preset instead (e.g. 125M)")
    ap.add_argument("--cc", default=None, help="compiler (default: the clang of bench/arm_estimate.py, cross)")
    ap.add_argument("--n1", type=int, default=4)
    ap.add_argument("--n2", type=int, default=12)
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "arm-insn")
    args = ap.parse_args(argv)
    target = get_target(args.target)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    model = args.model
    if model is None:
        model = work / (f"dummy-{args.preset}-i2s.gguf" if args.preset else "tiny-kjv-i2s.gguf")
        if not model.exists():
            src = ["dummy", "--preset", args.preset] if args.preset else ["convert", str(ROOT / "bitedge/data/tiny-kjv"), "--type", "i2_s"]
            subprocess.run([sys.executable, "-m", "bitedge.cli", *src, "-o", str(model)], check=True, capture_output=True)
    cc = args.cc or f"{mca.tools()['clang']} --target=aarch64-linux-gnu"
    binary = build_runtime(target, out_dir=work / target.id, cc=cc).binary
    plugin = work / "qemu_insn_plugin.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", str(ROOT / "bench/qemu_insn_plugin.c"), "-o", str(plugin)],
                   check=True)
    qemu = list(target.runner or ["qemu-aarch64"])
    addrs, names = symbols(binary)
    runs = [by_function(run_counts(qemu, plugin, binary, model, n, work / f"counts-{n}.txt"), addrs, names)
            for n in (args.n1, args.n2)]
    per_token = {f: (runs[1].get(f, 0) - runs[0].get(f, 0)) / (args.n2 - args.n1) for f in set(runs[0]) | set(runs[1])}
    total = sum(per_token.values())
    groups: dict[str, float] = collections.Counter()
    for f, n in per_token.items():
        groups[KERNELS.get(f, "other")] += n
    print(f"bitedge-run ({target.id}, {cc}) under {' '.join(qemu)}, {model.name}: executed guest instructions per "
          f"generated token (tokens {args.n1}..{args.n2}; qemu TCG plugin counts, not timings)\n")
    print("| part | instructions / token | share |\n|---|---:|---:|")
    for g, n in sorted(groups.items(), key=lambda x: -x[1]):
        print(f"| {g} | {n:,.0f} | {n / total:.1%} |")
    print(f"| total | {total:,.0f} | 100% |\n\nTop functions:\n")
    for f, n in sorted(per_token.items(), key=lambda x: -x[1])[:8]:
        print(f"- {f}: {n:,.0f} ({n / total:.1%})")
    static = static_prediction(get_target(target.id.removesuffix("-qemu")), model, work / "mca")
    gemv_fn = "i2s_gemv_dotprod" if "dotprod" in target.isa else "i2s_gemv_neon"
    print("\n| kernel | dynamic (qemu) | static: modelled loop x block-rows | loop share |\n|---|---:|---:|---:|")
    for label, fn, key in (("ternary gemv", gemv_fn, "ternary gemv"), ("output gemv", "float_gemv_neon", "output")):
        dyn = per_token.get(fn, 0.0)
        print(f"| {label} ({fn}) | {dyn:,.0f} | {static[key]:,.0f} | {static[key] / dyn:.0%} |" if dyn else
              f"| {label} ({fn}) | 0 | {static[key]:,.0f} | - |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
