#!/usr/bin/env python3
"""The peers' NEON kernels for bench/arm_estimate.py: their sources into a build folder (never into git), and
harnesses that call the one function to model, compiled with the same clang and flags as bitedge's kernels.

    python3 bench/arm_peers.py --dest build/arm-peers        # prepare the sources (once)
    python3 bench/arm_estimate.py --peers build/arm-peers    # estimate them next to bitedge's

Sources (peers.md): bitnet.cpp = github:ygqdan/BitNet-linux (microsoft/BitNet + vendored llama.cpp fork),
ik_llama.cpp = github:ikawrakow/ik_llama.cpp, both as git repositories (a bare mirror made by the `fetch` tool under
/work/.mirror/<owner>+<name>/repo, or a clone: --bitnet / --ik); llama.cpp = the copy vendored in the
llama-cpp-python 0.3.36 sdist (pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36). Only the files
the kernels need are copied, and the harnesses #include them: no peer code is copied into this repository.

Needs, besides clang-22 / llvm-22 (scripts/setup.sh --test): libstdc++-12-dev-arm64-cross (apt-get install it), the
aarch64 C++ headers bitnet.cpp's and ik_llama.cpp's C++ include. No test needs it, so setup.sh does not install it.
Cost: bitnet.cpp's table builder (lut_ctor<128>, fully unrolled by its #pragma unroll) takes about 3 minutes of clang
per board; the rest a few seconds each. Its assembly is cached by content (build/arm-estimate/mca), so a re-run is
quick.

Kernels (each the function the peer's generation path calls for one token):
  bitnet.cpp I2_S    ggml_vec_dot_i2_i8_s_1x1 (src/ggml-bitnet-mad.cpp), one row per call
  bitnet.cpp TL1     qgemm_lut_<M>_<K> from its own codegen (utils/codegen_tl1.py, run here for our K with the
                     BM / BK / bm setup_env.py passes for bitnet_b1_58-large), and its table building lut_ctor<K>
  ik_llama.cpp IQ2_BN, IQ2_BN_R4   mul_mat_iq2bn_q8_K64<1>, mul_mat_iq2_bn_r4_q8_k16<1> (ggml/src/iqk/iqk_gemm_1bit.cpp)
  llama.cpp TQ2_0    ggml_vec_dot_tq2_0_q8_K (ggml/src/ggml-cpu/arch/arm/quants.c)
  llama.cpp Q8_0     ggml_vec_dot_q8_0_q8_0: the output matrix with 8-bit activations (not lossless; the peers' way)
"""

from __future__ import annotations

import argparse
import runpy
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bitedge.targets import Target  # noqa: E402
from bitedge.render.estimate import KernelCase  # noqa: E402

MIRRORS = Path("/work/.mirror")
BITNET_FILES = ["src/ggml-bitnet-mad.cpp", "include/ggml-bitnet.h", "include/gemm-config.h", "utils/codegen_tl1.py",
                *(f"3rdparty/llama.cpp/ggml/src/{f}" for f in ("ggml-quants.h", "ggml-cpu-impl.h", "ggml-impl.h",
                                                               "ggml-common.h")),
                *(f"3rdparty/llama.cpp/ggml/include/{f}" for f in ("ggml.h", "ggml-backend.h", "ggml-alloc.h"))]
IK_FILES = ["ggml/src/ggml-impl.h", "ggml/src/ggml-common.h", "ggml/src/ggml-quants.h"]
IK_DIRS = ["ggml/src/iqk", "ggml/include"]
LLAMA_SDIST = "llama_cpp_python-0.3.36.tar.gz"
# setup_env.py's TL1 codegen for bitnet_b1_58-large, by kind of matrix: (BM, BK, bm)
TL1_SQUARE, TL1_OTHER = (128, 64, 64), (256, 128, 32)


def _read(repo: Path, path: str) -> bytes:
    """A file of a checkout, or of HEAD of a (bare) git repository."""
    if (repo / path).is_file():
        return (repo / path).read_bytes()
    return subprocess.run(["git", "-C", str(repo), "show", f"HEAD:{path}"], capture_output=True, check=True).stdout


def _export(repo: Path, files: list[str], dirs: list[str], dest: Path) -> None:
    for d in dirs:
        listing = subprocess.run(["git", "-C", str(repo), "ls-tree", "-r", "--name-only", "HEAD", d],
                                 capture_output=True, text=True, check=True).stdout.split()
        files = files + [f for f in listing if f.endswith((".h", ".cpp", ".c"))]
    for f in files:
        out = dest / f
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(_read(repo, f))


def prepare(dest: Path, bitnet: Path, ik: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    _export(bitnet, BITNET_FILES, [], dest / "bitnet")
    _export(ik, IK_FILES, IK_DIRS, dest / "ik")
    sdist = dest / LLAMA_SDIST
    if not sdist.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                        "llama-cpp-python==0.3.36", "-d", str(dest)], check=True)
    with tarfile.open(sdist) as tar:
        prefix = "llama_cpp_python-0.3.36/vendor/llama.cpp/"
        members = [m for m in tar.getmembers() if m.name.startswith(prefix + "ggml/")]
        for m in members:
            m.name = "llama.cpp/" + m.name[len(prefix):]
        tar.extractall(dest, members=members, filter="data")


def _bitnet_tl1_header(dest: Path, m: int, k: int) -> tuple[Path, str]:
    """bitnet.cpp's own TL1 kernel for an (M, K) shape, generated by its codegen into the build folder."""
    bm_, bk, bmm = TL1_SQUARE if m == k else TL1_OTHER
    name = f"{m}_{k}"
    out = dest / "bitnet" / f"tl1_{name}.h"
    if not out.exists():
        gen = runpy.run_path(str(dest / "bitnet" / "utils" / "codegen_tl1.py"), run_name="bitedge_estimate")
        out.write_text("".join(gen["gen_tbl_impl"](name, bm_, bk, bmm, k)))
    return out, name


def _bitnet_ctor_header(dest: Path) -> Path:
    """bitnet.cpp's TL1 table builder (lut_ctor) as its codegen writes it (its doubled braces are nested blocks)."""
    out = dest / "bitnet" / "tl1_ctor.h"
    if not out.exists():
        gen = runpy.run_path(str(dest / "bitnet" / "utils" / "codegen_tl1.py"), run_name="bitedge_estimate")
        out.write_text("".join(gen["gen_ctor_code"]()))
    return out


def peer_cases(target: Target, k: int, dest: Path) -> list[KernelCase]:
    """KernelCases of every peer kernel for this board at this K (those the board's ISA can run)."""
    dest = Path(dest)
    dot = "dotprod" in target.isa
    sig = "sdot" if dot else "mlal"
    cases = []
    if (dest / "bitnet").is_dir():
        bn = dest / "bitnet"
        inc = [bn / "include", bn / "3rdparty/llama.cpp/ggml/include", bn / "3rdparty/llama.cpp/ggml/src"]
        cases.append(KernelCase(
            "bitnet.cpp I2_S vec_dot (1 row)", "i2_s",
            '#include "../src/ggml-bitnet-mad.cpp"\nextern "C" void be_mca_entry(int n, float *s, const void *x, '
            'const void *y) { ggml_vec_dot_i2_i8_s_1x1(n, s, 0, x, n, y, 0, 1); }\n', sig, inc, lang="c++",
            peer="bitnet.cpp I2_S"))
        m = k if k in (1536, 2560) else 2560 if k == 6912 else 1536
        header, name = _bitnet_tl1_header(dest, m, k)
        cases.append(KernelCase(
            f"bitnet.cpp TL1 qgemm_lut_{name} (codegen)", "tl1",
            f'#include <string.h>\ntypedef float bitnet_float_type;\n#include "{header.name}"\nextern "C" void '
            f'be_mca_entry(void *a, void *lut, void *s, void *ls, void *c) {{ qgemm_lut_{name}(a, lut, s, ls, c); }}\n',
            "tbl1", [bn], lang="c++", peer="bitnet.cpp TL1"))
        # its per-token table building (lut_ctor, from the same codegen; the activation max is left out), modelled
        # at act_k = 128: its #pragma unroll makes clang unroll all K/16 iterations (minutes to compile at K = 2560),
        # and every 16 activations cost the same whatever K is
        cases.append(KernelCase(
            "bitnet.cpp TL1 table building (lut_ctor)", "tl1",
            f'#include <stdlib.h>\n#include "{_bitnet_ctor_header(dest).name}"\nextern "C" void be_mca_entry(int8_t *qlut, '
            'float *b, float *s) { lut_ctor<128>(qlut, b, s); }\n', "ld2", inc + [bn], lang="c++",
            kind="prepare", peer="bitnet.cpp TL1"))
    if (dest / "ik").is_dir() and dot:  # iqk_gemm_1bit.cpp's ARM kernels need dotprod (compiled out without it)
        inc = [dest / "ik/ggml/src", dest / "ik/ggml/src/iqk", dest / "ik/ggml/include"]
        head = '#define IQK_IMPLEMENT\n#include "iqk_gemm_1bit.cpp"\n'
        proto = "int n, const void *x, size_t bx, const DataInfo *info, int nrc_x"
        cases.append(KernelCase("ik_llama.cpp IQ2_BN mul_mat (1 token)", "iq2_bn",
                                head + f'extern "C" void be_mca_entry({proto}) '
                                       "{ mul_mat_iq2bn_q8_K64<1>(n, x, bx, *info, nrc_x); }\n",
                                sig, inc, lang="c++", peer="ik_llama.cpp IQ2_BN"))
        cases.append(KernelCase("ik_llama.cpp IQ2_BN_R4 mul_mat (1 token)", "iq2_bn",
                                head + f'extern "C" void be_mca_entry({proto}) '
                                       "{ mul_mat_iq2_bn_r4_q8_k16<1>(n, x, bx, *info, nrc_x); }\n",
                                sig, inc, lang="c++", peer="ik_llama.cpp IQ2_BN_R4"))
    if (dest / "llama.cpp").is_dir():
        g = dest / "llama.cpp/ggml"
        inc = [g / "src", g / "src/ggml-cpu", g / "include"]
        head = '#include "ggml-cpu/arch/arm/quants.c"\n'
        cases.append(KernelCase("llama.cpp TQ2_0 vec_dot", "tq2_0",
                                head + "void be_mca_entry(int n, float *s, const void *x, const void *y) "
                                       "{ ggml_vec_dot_tq2_0_q8_K(n, s, 0, x, 0, y, 0, 1); }\n",
                                sig, inc, peer="llama.cpp TQ2_0"))
        cases.append(KernelCase("llama.cpp output q8_0 x q8_0 vec_dot (8-bit activations)", "q8_0",
                                head + "void be_mca_entry(int n, float *s, const void *x, const void *y) "
                                       "{ ggml_vec_dot_q8_0_q8_0(n, s, 0, x, 0, y, 0, 1); }\n",
                                sig, inc, kind="output"))
    return cases


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Prepare the peers' kernel sources for bench/arm_estimate.py")
    ap.add_argument("--dest", type=Path, default=ROOT / "build" / "arm-peers")
    ap.add_argument("--bitnet", type=Path, default=MIRRORS / "ygqdan+BitNet-linux" / "repo")
    ap.add_argument("--ik", type=Path, default=MIRRORS / "ikawrakow+ik_llama.cpp" / "repo")
    args = ap.parse_args(argv)
    prepare(args.dest, args.bitnet, args.ik)
    print(f"peers' sources in {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
