"""bitedge's NEON kernels as llvm-mca sees them: harnesses, cycles per block-row, predicted GB/s and tokens/s.

    est = estimate_kernel(get_target("rpi5"), bitedge_kernels(get_target("rpi5"), 2560)[0], work_dir)
    est.cycles_per_block          # cycles per 128 weights of one row (one token), steady-state loop only

Every kernel is the code bitedge-run (or a TL build) runs: the runtime's hand-written kernels/runtime/kernels_neon*.c
(I2_S, the output matrix) and the TL kernels rendered from kernels/templates for the target, tiles and padded K. A harness file includes the
source and calls the one function; bitedge.render.mca finds its hot loop and runs llvm-mca on it. The figures are
static estimates (docs/performance.md "ARM, estimated"), never measurements.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from bitedge._shipped import RUNTIME_DIR
from bitedge.targets import Target, get_target
from bitedge.errors import BitedgeError
from bitedge.render import mca

# weight bytes per block-row (128 weights of one row), per method, for GB/s and the memory bound
BYTES_PER_BLOCK = {"i2_s": 32.0, "tl1": 32.0, "tl2": 128 / 3 * 20 / 32, "q8_0": 136.0, "f16": 256.0,
                   "tq2_0": 66 / 2, "iq2_bn": 32.0}


@dataclass
class KernelCase:
    name: str  # e.g. "i2_s runtime dotprod gemv"
    method: str  # i2_s | tl1 | tl2 | q8_0 | f16 (what BYTES_PER_BLOCK and the token model know it by)
    harness: str  # C text: includes the kernel source, defines be_mca_entry calling the function to model
    signature: str  # bitedge.render.mca.SIGNATURES key
    include_dirs: list[Path] = field(default_factory=list)
    require: str | None = None  # a regex one instruction of the loop must match (picks the Q8_0 loop over F16's)
    tiles: dict | None = None
    kind: str = "gemv"  # gemv | gemm | prepare | output
    cpu_flags: list[str] | None = None  # None: the profile's
    defines: tuple[str, ...] = ()
    lang: str = "c"  # c | c++ (the peers' kernels are C++)
    entry: str = "be_mca_entry"
    peer: str | None = None  # another engine's kernel (bench/arm_peers.py): its label in the tables


@dataclass
class Estimate:
    case: KernelCase
    target: str
    loop: mca.LoopEstimate

    @property
    def cycles_per_block(self) -> float:
        return self.loop.cycles_per_block

    def gbps(self, clock_ghz: float) -> float:
        """Weight bytes per second one core streams at this rate (GB/s), L1-resident compute only."""
        return BYTES_PER_BLOCK[self.case.method] * clock_ghz / self.cycles_per_block


def _entry(proto: str, call: str) -> str:
    return f"void be_mca_entry({proto}) {{ {call}; }}\n"


def _function_text(path: Path, start: str) -> str:
    """The text of one C function definition (from start to its closing brace at column 0)."""
    text = path.read_text()
    i = text.index(start)
    return text[i:text.index("\n}\n", i) + 3]


def runtime_kernels(target: Target, kp: int, nb: int = 4) -> list[KernelCase]:
    """The hand-written I2_S kernels bitedge-run links today and its float gemv (the output matrix)."""
    inc = [RUNTIME_DIR]
    head = '#include "kernels_neon.c"\n'
    gemv = "const uint8_t *w, const int8_t *q, int32_t *acc, int n0, int n1"
    cases = [KernelCase("i2_s runtime neon gemv", "i2_s", head + _entry(gemv, f"i2s_gemv_neon(w, q, acc, n0, n1, {kp})"),
                        "mlal", inc),
             KernelCase(f"i2_s runtime neon gemm ({nb} tokens)", "i2_s",
                        head + _entry(gemv, f"i2s_gemm_neon(w, q, acc, n1, n0, n1, {kp}, {nb})"), "mlal", inc,
                        kind="gemm")]
    if "dotprod" in target.isa:
        cases += [KernelCase("i2_s runtime dotprod gemv", "i2_s",
                             head + _entry(gemv, f"i2s_gemv_dotprod(w, q, acc, n0, n1, {kp})"), "sdot", inc),
                  KernelCase(f"i2_s runtime dotprod gemm ({nb} tokens)", "i2_s",
                             head + _entry(gemv, f"i2s_gemm_dotprod(w, q, acc, n1, n0, n1, {kp}, {nb})"), "sdot", inc,
                             kind="gemm")]
    if "i8mm" in target.isa:  # Armv8.6 (Apple M2+): the smmla gemm of the neon-i8mm table, 2 rows x 8 tokens
        cases.append(KernelCase("i2_s runtime i8mm gemm (8 tokens)", "i2_s",
                                '#include "kernels_neon_i8mm.c"\n'
                                + _entry(gemv, f"be_i2s_gemm_neon_i8mm(w, q, acc, n1, n0, n1, {kp}, 8)"), "smmla", inc,
                                kind="gemm"))
    # The float gemv's F16 tail calls be_f16_to_f32 (kernels.c) out of line: llvm-mca cannot model a call (it assumes
    # 100 cycles), so the harness gives that function's own body to inline. The Q8_0 loop converts its block scale
    # inline (fcvtl) and calls nothing.
    fhead = f"#define be_f16_to_f32 be_mca_f16_to_f32\nstatic inline {_function_text(RUNTIME_DIR / 'kernels.c', 'float be_f16_to_f32(')}\n"
    fproto = "const void *w, const float *x, float *y, int n0, int n1"
    cases += [KernelCase("output q8_0 gemv (float activations)", "q8_0",
                         fhead + head + _entry(fproto, f"float_gemv_neon(w, BE_Q8_0, x, y, n0, n1, {kp})"), "scvtf",
                         inc, kind="output"),
              KernelCase("output f16 gemv (float activations)", "f16",
                         fhead + head + _entry(fproto, f"float_gemv_neon(w, BE_F16, x, y, n0, n1, {kp})"), "fcvtl",
                         inc, kind="output")]
    return cases


def runtime_gemv_name(target: Target) -> str:
    """The runtime_kernels case of the I2_S gemv bitedge-run picks on this profile's CPU (generation)."""
    return "i2_s runtime dotprod gemv" if "dotprod" in target.isa else "i2_s runtime neon gemv"


def rendered_kernels(target: Target, kp: int, method: str, tiles: dict | None, out_dir: Path) -> list[KernelCase]:
    """The TL kernels rendered for target and one padded K (gemv, table building, gemm) with the given tiles."""
    from bitedge.render import check_tiles, gemv_specs, render_kernels, target_isas

    tiles = check_tiles(method, tiles or {})
    k = kp  # padded already: TL1 kp is even, TL2 a multiple of 3
    render_kernels(target, [(256, k)], method, {(256, k): tiles}, out_dir)
    stem = method.replace("_", "")
    cases = []
    for isa in target_isas(target, method)[:-1]:  # not scalar
        spec = gemv_specs(method, isa, {(256, k): tiles})[0]
        head = f'#include "bitedge_{stem}_{isa}.c"\n'
        label = ", ".join(f"{a}={b}" for a, b in tiles.items())
        sig = "tbl1" if method == "tl1" else "tbl2"
        cases.append(KernelCase(f"{method} gemv ({label})", method,
                                head + _entry("const uint8_t *w, const void *t, int32_t *acc, int n0, int n1",
                                              f"{spec['fn']}(w, t, acc, n0, n1)"), sig, [out_dir], tiles=tiles))
        if isa == "neon":
            cases.append(KernelCase(f"{method} prepare (tables of one token)", method,
                                    head + _entry("const int8_t *q, void *t", f"be_{method}_prepare_neon(q, {kp}, t)"),
                                    "ldrsb" if method == "tl1" else "entry", [out_dir], tiles=tiles, kind="prepare"))
        cases.append(KernelCase(f"{method} gemm ({spec['tb']} tokens, {label})", method,
                                head + _entry("const uint8_t *w, const uint8_t *t, size_t s, int32_t *acc, int n",
                                              f"{spec['gemm_fn']}(w, t, s, acc, n, 0, n, {spec['tb']})"),
                                sig, [out_dir], tiles=tiles, kind="gemm"))
    return cases


def estimate_kernel(target: Target, case: KernelCase, work_dir: Path, mca_cpu: str | None = None) -> Estimate:
    """Compile case's harness for target (clang, the profile's -mcpu and -O level) and model its hot loop."""
    mca_cpu = mca_cpu or board(target)["mca_cpu"]
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    stem = "".join(c if c.isalnum() else "_" for c in case.name)
    src = work_dir / f"mca_{stem}.{'cpp' if case.lang == 'c++' else 'c'}"
    text = "#include <stddef.h>\n#include <stdint.h>\n#include <string.h>\n" + case.harness
    flags = list(case.cpu_flags or target.cpu_flags)
    # the assembly is reused while harness, flags and included folders are unchanged (the peers' big C++ files)
    key = hashlib.sha256(repr((text, flags, target.optimize, case.defines, [str(d) for d in case.include_dirs],
                               mca.tools()["clang"])).encode()).hexdigest()[:16]
    out = work_dir / f"mca_{stem}.{key}.s"
    if out.exists() and case.lang == "c++":
        asm = out.read_text()
    else:
        src.write_text(text)
        asm = mca.compile_asm(src, flags, case.include_dirs, out, target.optimize, case.defines, case.lang)
    loop = mca.estimate_loop(asm, case.entry, case.signature, mca_cpu, case.require,
                             save=work_dir / f"mca_{stem}.{mca_cpu}.loop.s")
    return Estimate(case, target.id, loop)


def board(target: Target | str) -> dict:
    # a name too: bench/arm_estimate.py looks boards up by id
    target = get_target(target)
    if target.id not in mca.BOARDS:
        raise BitedgeError(f"no clock / bandwidth / scheduling model known for {target.id} "
                           f"(estimates exist for {', '.join(mca.BOARDS)})")
    return mca.BOARDS[target.id]


# ---------------------------------------------------------------------------------------------------------
# per-token prediction


def matrix_cycles(shape_counts: dict, cycles_per_block: dict[tuple[int, int], float]) -> float:
    """Cycles of one token's ternary matrices: sum over shapes of count x N x K/128 x cycles per block-row."""
    return sum(count * n * (k / 128) * cycles_per_block[(n, k)] for (n, k), count in shape_counts.items())


def token_rate(ternary_cycles: float, output_cycles: float, weight_bytes: float, board_info: dict,
               threads: int) -> dict[str, float]:
    """Predicted generation tokens/s: compute cycles split over threads at the board's clock, against the time the
    weights take to stream at the board's peak DRAM bandwidth; the slower of the two bounds the rate. Attention,
    norms, activation quantisation and cache misses are left out, so this is an upper bound."""
    clock = board_info["clock_ghz"] * 1e9
    compute_s = (ternary_cycles + output_cycles) / clock / threads
    memory_s = weight_bytes / (board_info["dram_gbps"] * 1e9)
    return {"compute_s": compute_s, "memory_s": memory_s, "tokens_per_s": 1.0 / max(compute_s, memory_s),
            "bound": "compute" if compute_s >= memory_s else "memory"}


def method_kp(method: str, k: int) -> int:
    """K as the method's layout pads it (what the rendered kernel is specialised for)."""
    from bitedge.formats.packing import get_packing

    packing = get_packing(method)
    return packing.padded_k(k) if method == "i2_s" else packing.padded(32, k)[1]


def bitedge_cases(target: Target, k: int, out_dir: Path, tiles: dict | None = None) -> list[KernelCase]:
    """Every bitedge NEON kernel for one K: the runtime's I2_S and float gemv, rendered TL1 and TL2 (default tiles
    unless tiles = {method: tiles})."""
    tiles = tiles or {}
    cases = runtime_kernels(target, method_kp("i2_s", k))
    for method in ("tl1", "tl2"):
        cases += rendered_kernels(target, method_kp(method, k), method, tiles.get(method),
                                  Path(out_dir) / f"{target.id}-{method}-k{k}")
    return cases


# ---------------------------------------------------------------------------------------------------------
# bitedge tune --estimate


def estimate_cpu(target: Target) -> str:
    """The tuning cache's "cpu" of an estimate: which llvm-mca and scheduling model produced it."""
    return f"estimate:llvm-mca-{mca.tools()['version']}:{board(target)['mca_cpu']}"


def estimate_tune(target: Target, shapes, methods=("i2_s", "tl1", "tl2"), candidates=None, cache_path=None,
                  work_dir: Path | None = None, progress=None) -> dict[str, dict]:
    """tune() without a board: every candidate tile's gemv (and, for TL methods, its table building) is modelled
    with llvm-mca at each shape's K, the cheapest per (method, shape) is stored in the tuning cache marked
    "estimated": True. mean_ns is the predicted time of one token's prepare + gemv on one core at the board's clock
    (compute only). tuned_tiles() ranks any measured entry above these. Loop-invariant tiles (bk, bn change cache
    behaviour, which llvm-mca does not model) tie: the first candidate listed wins a tie."""
    import tempfile
    import time

    from bitedge.render import check_method, check_tiles
    from bitedge.render.tune import DEFAULT_CANDIDATES, cache_key, load_cache, save_cache

    info = board(target)
    say = progress or (lambda msg: None)
    shapes = sorted({(int(n), int(k)) for n, k in shapes})
    cache = load_cache(cache_path)
    cpu = estimate_cpu(target)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bitedge-estimate-") as tmp:
        work = Path(work_dir or tmp)
        for method in (check_method(m) for m in methods):
            # i2_s: the hand-written gemv bitedge-run links (no tiles to choose); TL methods: every candidate tile
            cands = [{}] if method == "i2_s" else [check_tiles(method, c)
                                                   for c in (candidates or DEFAULT_CANDIDATES)[method]]
            per_k: dict[tuple[int, int], dict] = {}  # (candidate, kp) -> {"gemv": cycles, "prepare": cycles}
            for i, tiles in enumerate(cands):
                say(f"{method}: estimating candidate {i + 1}/{len(cands)} for {target.id}")
                for kp in sorted({method_kp(method, k) for _, k in shapes}):
                    if method == "i2_s":
                        cases = [c for c in runtime_kernels(target, kp) if c.name == runtime_gemv_name(target)]
                    else:
                        cases = rendered_kernels(target, kp, method, tiles, work / method / f"cand{i}-k{kp}")
                    found = {}
                    for case in cases:
                        if case.kind in ("gemv", "prepare") and case.kind not in found:
                            found[case.kind] = estimate_kernel(target, case, work / "mca").cycles_per_block
                    per_k[(i, kp)] = found
            for n, k in shapes:
                kp = method_kp(method, k)
                summary = []
                for i, tiles in enumerate(cands):
                    c = per_k[(i, kp)]
                    cycles = n * kp / 128 * c["gemv"] + kp / 128 * c.get("prepare", 0.0)
                    summary.append({"tiles": tiles, "mean_ns": cycles / info["clock_ghz"], "sd_ns": 0.0,
                                    "cycles_per_block": c["gemv"]})
                best = min(summary, key=lambda s: s["mean_ns"])  # min keeps the first of equals
                entry = {"tiles": best["tiles"], "mean_ns": best["mean_ns"], "sd_ns": 0.0, "estimated": True,
                         "emulated": False, "cpu": cpu, "cycles_per_block": best["cycles_per_block"],
                         "where": f"static estimate: llvm-mca -mcpu={info['mca_cpu']} at {info['clock_ghz']} GHz "
                                  "(not a measurement)",
                         "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                cache["entries"][cache_key(cpu, target, method, (n, k))] = entry
                results[f"{method}/{n}x{k}"] = {**entry, "candidates": summary}
    save_cache(cache, cache_path)
    return results
