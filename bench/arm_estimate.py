#!/usr/bin/env python3
"""ARM speed without a board: llvm-mca estimates of every NEON kernel, bitedge's and the peers', per board.

    python3 bench/arm_estimate.py                       # every ARM profile; 2B-4T and 700M shapes
    python3 bench/arm_estimate.py --boards rpi5 --json build/arm-estimate/rpi5.json
    python3 bench/arm_estimate.py --peers build/arm-peers   # also the peers' kernels (bench/arm_peers.py's sources,
                                                            # prepared into that folder first when missing)

Each kernel is compiled for aarch64 by clang at the board profile's -mcpu (the newest LLVM installed: apt-get install
clang-22 llvm-22), its steady-state loop is taken from the assembly and llvm-mca simulates it at the scheduling model
that stands in for the board's core (bitedge.render.mca.BOARDS says which and why). Out come cycles per block-row
(128 weights of one row, one token), weight GB/s per core at the board's clock, how many cores would saturate the
board's peak DRAM bandwidth, and predicted generation tokens/s for whole models (the ternary matrices, the TL table
building and the output matrix; attention and norms left out: an upper bound).

These are STATIC ESTIMATES: every load is assumed to hit L1, nothing is measured. Never call them measured.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bitedge.targets import get_target  # noqa: E402
from bitedge.convert.dummy import preset_config  # noqa: E402
from bitedge.render import mca  # noqa: E402
from bitedge.render.estimate import BYTES_PER_BLOCK, bitedge_cases, board, estimate_kernel, token_rate  # noqa: E402

BOARDS = ("rpi3", "rpi4", "rpi5", "jetson-orin", "apple-m1", "apple-m2", "apple-m3", "generic-aarch64")
MODELS = {"2B-4T": "2.4B", "700M": "700M"}
K_TABLE = 2560  # the K of the per-kernel table (the 2B-4T hidden size)
BITEDGE_ROWS = ("bitedge i2_s", "bitedge tl1", "bitedge tl2")


def model_work(preset: str) -> dict:
    """Per token: {(N, K): count} of ternary matrices, the K of each table-building input, the output matrix."""
    c = preset_config(preset)
    h, f = c.hidden_size, c.intermediate_size
    shapes = {}
    for n, k in ((c.q_dim, h), (c.kv_dim, h), (c.kv_dim, h), (h, c.q_dim), (f, h), (f, h), (h, f)):
        shapes[(n, k)] = shapes.get((n, k), 0) + c.num_layers
    # one table per distinct input vector: q/k/v share one, gate/up another (forward.c)
    prepares = {}
    for k in (h, c.q_dim, h, f):
        prepares[k] = prepares.get(k, 0) + c.num_layers
    return {"shapes": shapes, "prepares": prepares, "output": (c.vocab_size, h)}


def estimate_all(target_id: str, ks: list[int], work: Path, peers: Path | None) -> dict[tuple[str, int], dict]:
    """{(kernel name, K): {...estimate...}} for every kernel of this board at every K."""
    target = get_target(target_id)
    info = board(target)
    out = {}
    for k in ks:
        cases = bitedge_cases(target, k, work / "kernels")
        if peers is not None:
            from arm_peers import peer_cases  # noqa: E402  (bench/arm_peers.py, same folder)

            cases += peer_cases(target, k, peers)
        # an i8mm core's prompt kernels also at LLVM's Neoverse V1 model (Apple's model is the 2013 Cyclone one)
        runs = [(case, None, case.name) for case in cases]
        if "i8mm" in target.isa:
            runs += [(case, mca.I8MM_MCA_CPU, f"{case.name} @{mca.I8MM_MCA_CPU}") for case in cases
                     if case.kind == "gemm" and case.name.startswith(("i2_s runtime i8mm", "i2_s runtime dotprod"))]
        for case, mca_cpu, name in runs:
            # the peers' C++ assembly is cached by content in one folder per board, so a K-independent harness
            # (bitnet.cpp's lut_ctor: 3 minutes of clang) compiles once per board, not once per K
            folder = f"{target.id}-peers" if case.lang == "c++" else f"{target.id}-k{k}"
            try:
                e = estimate_kernel(target, case, work / "mca" / folder, mca_cpu=mca_cpu)
            except Exception as err:  # one kernel failing to compile must not hide the others
                print(f"  {target.id} k={k} {name}: {err}", file=sys.stderr)
                continue
            out[(name, k)] = {"kernel": name, "k": k, "method": case.method, "kind": case.kind,
                              "cycles_per_block": e.cycles_per_block, "gbps_core": e.gbps(info["clock_ghz"]),
                              "loop_instructions": e.loop.instructions, "ipc": e.loop.ipc, "mca_cpu": e.loop.mca_cpu,
                              "peer": getattr(case, "peer", None)}
    return out


def choices(est: dict, target_id: str) -> dict[str, dict]:
    """The gemv kernel (by name prefix) each generation path uses, plus its table building: one entry per method
    row of the token table."""
    dot = "dotprod" in get_target(target_id).isa
    rows = {BITEDGE_ROWS[0]: ("i2_s runtime dotprod gemv" if dot else "i2_s runtime neon gemv", None),
            BITEDGE_ROWS[1]: ("tl1 gemv", "tl1 prepare"), BITEDGE_ROWS[2]: ("tl2 gemv", "tl2 prepare")}
    peers = {e["peer"]: e for e in est.values() if e.get("peer")}
    prepares = {e["peer"] for e in est.values() if e.get("peer") and e["kind"] == "prepare"}
    for label in peers:
        rows.setdefault(label, ("peer:" + label, "peer-prepare:" + label if label in prepares else None))
    return rows


def pick(est: dict, prefix: str, k: int) -> dict | None:
    """The estimate at K of the kernel whose name starts with prefix; "peer:<label>" / "peer-prepare:<label>": the
    peer kernel so labelled (whose name may carry its shape), its gemv / its table building."""
    for (name, kk), e in est.items():
        if kk != k:
            continue
        if prefix.startswith(("peer:", "peer-prepare:")):
            kind, label = prefix.split(":", 1)
            if e.get("peer") == label and e["kind"] == ("gemv" if kind == "peer" else "prepare"):
                return e
        elif name.startswith(prefix):
            return e
    return None


def predict(est: dict, target_id: str, work: dict, gemv: str, prepare: str | None,
            output_kernel: str = "output q8_0") -> dict | None:
    info, cores = board(target_id), get_target(target_id).cores
    ternary = bytes_ = 0.0
    for (n, k), count in work["shapes"].items():
        e = pick(est, gemv, k)
        if e is None:
            return None
        ternary += count * n * k / 128 * e["cycles_per_block"]
        bytes_ += count * n * k / 128 * BYTES_PER_BLOCK[e["method"]]
    if prepare:
        for k, count in work["prepares"].items():
            p = pick(est, prepare, k)
            ternary += count * k / 128 * (p["cycles_per_block"] if p else 0.0)
    vocab, h = work["output"]
    o = pick(est, output_kernel, h) or pick(est, "output q8_0", h)
    output = vocab * h / 128 * o["cycles_per_block"]
    bytes_ += vocab * h / 128 * BYTES_PER_BLOCK["q8_0"]
    one = token_rate(ternary, output, bytes_, info, 1)
    many = token_rate(ternary, output, bytes_, info, cores)
    return {"tg_1t": one["tokens_per_s"], "tg_all": many["tokens_per_s"], "bound_all": many["bound"],
            "output_share": output / (ternary + output), "cores": cores}


def markdown(results: dict) -> str:
    lines = ["Static estimates (llvm-mca), not measurements: cycles per block-row = 128 weights of one row, one token, "
             f"steady-state loop, L1-resident; K = {K_TABLE}.", ""]
    for tid, r in results.items():
        info = board(tid)
        lines += [f"### {get_target(tid).name}: llvm-mca -mcpu={info['mca_cpu']}, {info['clock_ghz']} GHz, "
                  f"{info['dram_gbps']} GB/s peak DRAM", "", f"Model: {info['model']}. Source: {info['source']}.", "",
                  "| kernel | cycles / block-row | weight GB/s per core | cores to fill DRAM bw |", "|---|---:|---:|---:|"]
        for (name, k), e in r["kernels"].items():
            if k == K_TABLE and e["kind"] != "prepare":
                lines.append(f"| {name} | {e['cycles_per_block']:.1f} | {e['gbps_core']:.1f} | "
                             f"{info['dram_gbps'] / e['gbps_core']:.1f} |")
        lines += ["", "| method | " + " | ".join(f"{m} tg, 1 thread / {r['cores']} threads (t/s)" for m in MODELS)
                  + " | output matrix share (1 thread) |", "|---|" + "---:|" * (len(MODELS) + 1)]
        for method, per in r["tokens"].items():
            cells = [f"{p['tg_1t']:.1f} / {p['tg_all']:.1f}{' (mem)' if p['bound_all'] == 'memory' else ''}"
                     if p else "-" for p in per.values()]
            share = next((p["output_share"] for p in per.values() if p), None)
            lines.append(f"| {method} | " + " | ".join(cells) + (f" | {share:.0%} |" if share is not None else " | - |"))
        lines.append("")
    return "\n".join(lines)


SUMMARY_KERNELS = [("bitedge I2_S (bitedge-run)", ("i2_s runtime dotprod gemv", "i2_s runtime neon gemv")),
                   ("bitedge TL1", ("tl1 gemv",)), ("bitedge TL2", ("tl2 gemv",)),
                   ("bitnet.cpp I2_S", ("peer:bitnet.cpp I2_S",)),
                   ("bitnet.cpp TL1", ("peer:bitnet.cpp TL1",)),
                   ("ik_llama.cpp IQ2_BN", ("peer:ik_llama.cpp IQ2_BN",)),
                   ("ik_llama.cpp IQ2_BN_R4", ("peer:ik_llama.cpp IQ2_BN_R4",)),
                   ("llama.cpp TQ2_0", ("peer:llama.cpp TQ2_0",)),
                   ("bitedge I2_S gemm, prompts (per token; i8mm 8 tokens, else 4 tokens)",
                    ("i2_s runtime i8mm gemm (8 tokens)", "i2_s runtime dotprod gemm", "i2_s runtime neon gemm")),
                   ("output: bitedge Q8_0, float activations", ("output q8_0",)),
                   ("output: llama.cpp Q8_0 x Q8_0 (8-bit activations)", ("llama.cpp output",))]


def summary(results: dict) -> str:
    """The two compact tables of docs/performance.md "ARM, estimated": cycles per block-row per board, and
    predicted generation tokens/s per board and method."""
    tids = list(results)
    lines = [f"Cycles per block-row (128 weights x 1 row x 1 token), K = {K_TABLE}, gemv (one token):", "",
             "| kernel | " + " | ".join(tids) + " |", "|---|" + "---:|" * len(tids)]
    for label, prefixes in SUMMARY_KERNELS:
        cells = []
        for tid in tids:
            e = next((x for p in prefixes if (x := pick(results[tid]["kernels"], p, K_TABLE))), None)
            cells.append(f"{e['cycles_per_block']:.1f}" if e else "n/a")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Predicted generation tokens/s, 1 thread / all cores (mem: capped by the peak DRAM bandwidth):", "",
              "| method | " + " | ".join(f"{tid} {m}" for tid in tids for m in MODELS) + " |",
              "|---|" + "---:|" * (len(tids) * len(MODELS))]
    methods = list(dict.fromkeys(m for tid in tids for m in results[tid]["tokens"]))
    for method in methods:
        cells = []
        for tid in tids:
            for m in MODELS:
                p = results[tid]["tokens"].get(method, {}).get(m)
                cells.append(f"{p['tg_1t']:.1f} / {p['tg_all']:.1f}{' mem' if p['bound_all'] == 'memory' else ''}"
                             if p else "n/a")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def board_table(results: dict) -> str:
    """One row per board and generation method (bitedge's, then each peer's): the gemv's cycles per block-row at
    K_TABLE and the predicted generation tokens/s of both model shapes (docs/performance.md "ARM, estimated")."""
    lines = [f"Per board: each generation method's gemv (cycles per block-row, K = {K_TABLE}) and predicted generation "
             "tokens/s, 1 thread / all cores (mem: capped by the peak DRAM bandwidth); static estimates:", "",
             "| board | method (gemv) | cycles / block-row | " + " | ".join(f"{m} t/s" for m in MODELS)
             + " | output matrix share of a token (2B-4T, 1 thread) |", "|---|---|---:|" + "---:|" * (len(MODELS) + 1)]
    for tid, r in results.items():
        for method, per in r["tokens"].items():
            label = next((lbl for lbl, prefixes in SUMMARY_KERNELS if lbl.lower().startswith(method.lower())), None)
            prefixes = dict(SUMMARY_KERNELS).get(label, ()) if label else ()
            if not prefixes:  # a peer: its gemv is its "peer:<label>" entry
                prefixes = ("peer:" + method,)
            e = next((x for p in prefixes if (x := pick(r["kernels"], p, K_TABLE))), None)
            cells = [f"{p['tg_1t']:.1f} / {p['tg_all']:.1f}{' mem' if p['bound_all'] == 'memory' else ''}"
                     if p else "n/a" for p in (per.get(m) for m in MODELS)]
            share = (per.get("2B-4T") or {}).get("output_share")
            lines.append(f"| {tid} | {method} | {e['cycles_per_block']:.1f} | " if e else f"| {tid} | {method} | n/a | ")
            lines[-1] += " | ".join(cells) + (f" | {share:.0%} |" if share is not None else " | n/a |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--boards", default=",".join(BOARDS))
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "arm-estimate")
    ap.add_argument("--peers", type=Path, help="folder bench/arm_peers.py prepared (the peers' sources)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--from-json", type=Path, help="print the tables of an earlier --json run (no compiling)")
    args = ap.parse_args(argv)
    if args.from_json:
        data = json.loads(args.from_json.read_text())["boards"]
        results = {tid: {**r, "kernels": {(e["kernel"], e["k"]): e for e in r["kernels"]}} for tid, r in data.items()}
        print(markdown(results))
        print(summary(results))
        print()
        print(board_table(results))
        return 0
    if args.peers is not None and not all((args.peers / d).is_dir() for d in ("bitnet", "ik", "llama.cpp")):
        import arm_peers  # noqa: E402  (bench/arm_peers.py: the sources, once, from its default places)

        arm_peers.main(["--dest", str(args.peers)])
    tools = mca.tools()
    print(f"clang {tools['clang']}, llvm-mca {tools['mca']} (LLVM {tools['version']})", file=sys.stderr)
    works = {m: model_work(p) for m, p in MODELS.items()}
    ks = sorted({k for w in works.values() for (_, k) in w["shapes"]} | {K_TABLE})
    results = {}
    for tid in args.boards.split(","):
        print(f"{tid}: estimating ...", file=sys.stderr)
        est = estimate_all(tid, ks, args.work, args.peers)
        # the peers' rows take the peers' output matrix (8-bit activations), bitedge's its float-activation gemv
        tokens = {method: {m: predict(est, tid, works[m], g, p, "output" if method in BITEDGE_ROWS else "llama.cpp output")
                           for m in MODELS}
                  for method, (g, p) in choices(est, tid).items()}
        results[tid] = {"kernels": est, "tokens": tokens, "cores": get_target(tid).cores, "board": board(tid)}
    print(markdown(results))
    print(summary(results))
    print()
    print(board_table(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        data = {tid: {**r, "kernels": list(r["kernels"].values())} for tid, r in results.items()}
        args.json.write_text(json.dumps({"llvm": tools, "static_estimate": True, "boards": data}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
