"""The runtime's start-up CPU check (kernels/runtime/cpu_isa_table.h, cpu_features.c): a build for an instruction
set this CPU lacks exits 3 naming it, never SIGILL (issue #17).

Real builds through bitedge/builder/compile.py (cpu_features.c at the baseline, the rest with the profile's flags),
run natively or under qemu-user as an older CPU: qemu-x86_64 -cpu Haswell (AVX2, no AVX-VNNI, no AVX-512) on any
x86 host, qemu-aarch64 -cpu cortex-a72 (no dotprod, fp16, LSE) and cortex-a76 (no i8mm, SVE). The table's
completeness is checked against what this machine's compilers define for a range of -march/-mcpu values.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from _c_build import host_cpu_flags
from bitedge.builder.compile import build_runtime
from bitedge.builder.toolchains import detect_toolchain, host_arch, zig_cpu_flags

REPO = Path(__file__).resolve().parents[1]
TABLE = REPO / "kernels" / "runtime" / "cpu_isa_table.h"

# the macros cpu_isa_table.h lists as not checked (only their intrinsics emit them, or they are no instructions)
UNCHECKED_X86 = {
    "__AES__", "__PCLMUL__", "__VAES__", "__VPCLMULQDQ__", "__SHA__", "__SHA512__", "__SM3__", "__SM4__", "__ADX__",
    "__CRC32__", "__SSE4A__", "__RDRND__", "__RDSEED__", "__RDPID__", "__PREFETCHI__", "__CLFLUSHOPT__", "__CLWB__",
    "__CLZERO__", "__CLDEMOTE__", "__WBNOINVD__", "__XSAVE__", "__XSAVEOPT__", "__XSAVEC__", "__XSAVES__",
    "__FSGSBASE__", "__RTM__", "__HLE__", "__SGX__", "__PKU__", "__SHSTK__", "__WAITPKG__", "__MOVDIRI__",
    "__MOVDIR64B__", "__ENQCMD__", "__KL__", "__WIDEKL__", "__UINTR__", "__SERIALIZE__", "__TSXLDTRK__", "__PCONFIG__",
    "__PTWRITE__", "__HRESET__", "__CMPCCXADD__", "__RAOINT__", "__USER_MSR__", "__LWP__", "__MWAITX__",
    "__AVX512VP2INTERSECT__", "__PRFCHW__", "__PREFETCHWT1__", "__RDPRU__", "__INVPCID__", "__MOVRS__",
    "__AMX_AVX512__", "__AMX_FP8__", "__AMX_MOVRS__", "__AMX_TF32__",
}
UNCHECKED_ARM = {
    "__ARM_FEATURE_AES", "__ARM_FEATURE_SHA2", "__ARM_FEATURE_SHA3", "__ARM_FEATURE_SHA512", "__ARM_FEATURE_SM3",
    "__ARM_FEATURE_SM4", "__ARM_FEATURE_CRYPTO", "__ARM_FEATURE_CRC32", "__ARM_FEATURE_JCVT", "__ARM_FEATURE_RNG",
    "__ARM_FEATURE_MEMORY_TAGGING", "__ARM_FEATURE_LS64", "__ARM_FEATURE_SME", "__ARM_FEATURE_SME2",
    "__ARM_FEATURE_SVE_MATMUL_INT8", "__ARM_FEATURE_SVE_MATMUL_FP32", "__ARM_FEATURE_SVE_MATMUL_FP64",
    "__ARM_FEATURE_SVE_BF16", "__ARM_FEATURE_SVE2_AES", "__ARM_FEATURE_SVE2_BITPERM", "__ARM_FEATURE_SVE2_SHA3",
    "__ARM_FEATURE_SVE2_SM4", "__ARM_FEATURE_SVE_BITS", "__ARM_FEATURE_SVE_VECTOR_OPERATORS",
    "__ARM_FEATURE_SVE_PREDICATE_OPERATORS", "__ARM_NEON_SVE_BRIDGE", "__ARM_FEATURE_BTI", "__ARM_FEATURE_BTI_DEFAULT",
    "__ARM_FEATURE_PAC_DEFAULT", "__ARM_FEATURE_PAUTH", "__ARM_FEATURE_FP8", "__ARM_FEATURE_LOCALLY_STREAMING",
}
X86_MARCHES = ["x86-64-v2", "x86-64-v3", "x86-64-v4", "haswell", "skylake-avx512", "icelake-server", "tigerlake",
               "alderlake", "sapphirerapids", "cooperlake", "knl", "znver1", "znver3", "bdver4", "btver2",
               "graniterapids", "znver4", "znver5", "arrowlake-s", "diamondrapids"]  # the last ones: zig's clang
ARM_CPUS = ["-mcpu=cortex-a53", "-mcpu=cortex-a72", "-mcpu=cortex-a76", "-mcpu=neoverse-n1", "-mcpu=neoverse-v1",
            "-mcpu=neoverse-n2", "-mcpu=cortex-a710", "-mcpu=a64fx", "-march=armv8.2-a+fp16+dotprod+i8mm+sve",
            "-march=armv8.6-a+sve2+bf16+i8mm+f64mm+f32mm", "-march=armv8.8-a+sve2-aes+sve2-sha3+sve2-sm4+sve2-bitperm",
            "-march=armv8.5-a+memtag+rng+crypto+sha3+sm4+fp16fml", "-mcpu=neoverse-v2", "-mcpu=cortex-x4",
            "-mcpu=apple-m4", "-march=armv9.4-a+sme2+mops+cssc+sve2p1+fp8"]


def table_macros() -> set[str]:
    return set(re.findall(r'X\("[^"]+", (__\w+)', TABLE.read_text()))


def compilers_for(arch: str) -> list[list[str]]:
    """gcc and clang for arch (the host's own or the Debian cross ones), and zig's clang (newer: more macros)."""
    found = [["gcc"], ["clang"]] if arch == host_arch() else []
    if arch == "aarch64":
        found += [["aarch64-linux-gnu-gcc"], ["clang", "--target=aarch64-linux-gnu"]]
    found = [cc for cc in found if shutil.which(cc[0])]
    if importlib.util.find_spec("ziglang"):
        found.append([sys.executable, "-m", "ziglang", "cc", "-target", f"{arch}-linux-musl"])
    return found


def predefined(cc: list[str], flags: list[str]) -> set[str] | None:
    if "ziglang" in cc:
        flags = zig_cpu_flags(flags, "aarch64" if "aarch64" in cc[-1] else "x86_64")
    proc = subprocess.run([*cc, *flags, "-dM", "-E", "-x", "c", "/dev/null"], capture_output=True, text=True)
    if proc.returncode != 0:
        return None  # this compiler does not know that CPU
    return {line.split()[1] for line in proc.stdout.splitlines() if line.startswith("#define ")}


def isa_macros(macros: set[str], arch: str) -> set[str]:
    if arch == "x86_64":  # __AVX2__, __SSE4_1__, ...: not CPU names (__znver3__, __tune_*), __FP_FAST_FMA, __FLT16_*
        return {m for m in macros if re.fullmatch(r"__[A-Z][A-Z0-9_]*__", m) and not m.startswith(("__FP_", "__FLT16_"))
                } | ({"__GCC_HAVE_SYNC_COMPARE_AND_SWAP_16"} & macros)
    return {m for m in macros if m.startswith("__ARM_FEATURE_") or m == "__ARM_NEON_SVE_BRIDGE"}


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_every_instruction_set_the_compilers_define_is_checked_or_named_unchecked(arch):
    """What GCC and clang define for real -march/-mcpu values, beyond the architecture's baseline, is in the one
    table or in its list of unchecked macros: a newer compiler's new macro fails here until it is placed."""
    compilers = compilers_for(arch)
    if arch == "x86_64":
        variants, baseline = [[f"-march={m}"] for m in X86_MARCHES], ["-march=x86-64"]
        unchecked = UNCHECKED_X86
    else:
        variants, baseline = [[f] for f in ARM_CPUS], ["-march=armv8-a"]
        unchecked = UNCHECKED_ARM
    if not compilers:
        pytest.skip(f"no {arch} compiler")
    known = table_macros() | unchecked
    unplaced: dict[str, list[str]] = {}
    seen = 0
    for cc in compilers:
        base = predefined(cc, baseline) or set()
        for flags in variants:
            defined = predefined(cc, flags)
            if defined is None:
                continue
            seen += 1
            for m in sorted(isa_macros(defined - base, arch) - known):
                unplaced.setdefault(m, []).append(f"{cc[0]} {flags[0]}")
    assert seen >= len(variants)  # most -march values known to at least one compiler
    assert not unplaced, f"not in cpu_isa_table.h (check or list as unchecked): {unplaced}"


def test_table_entries_are_well_formed():
    text = TABLE.read_text()
    x86 = re.findall(r'X\("([^"]+)", (__\w+), (0x[0-9a-f]+u?|\d+), (\d), BE_E([A-D])X, (\d+), BE_XCR0_(\w+)\)', text)
    arm = re.findall(r'X\("([^"]+)", (__ARM_\w+), ([12]), ', text)
    assert len(x86) + len(arm) == len(re.findall(r'X\("', text))  # every entry parsed: none malformed
    assert len({m for _, m, *_ in x86}) == len(x86) and len({m for _, m, *_ in arm}) == len(arm)
    assert not (table_macros() & (UNCHECKED_X86 | UNCHECKED_ARM))  # checked or unchecked, not both


# ------------------------------------------------------------------------------------------------------------
# real runtime builds refused on CPUs without their instruction sets


def profile(targets_dir: Path, tid: str, arch: str, cpu_flags: str) -> str:
    """A board profile for CPU flags no shipped profile uses."""
    targets_dir.mkdir(parents=True, exist_ok=True)
    (targets_dir / f"{tid}.toml").write_text(
        f'id = "{tid}"\nname = "test {cpu_flags}"\nos = "linux"\narch = "{arch}"\nlibc = "glibc"\n'
        f'cpu_flags = ["{cpu_flags}"]\nisa = []\ncores = 2\nmemory_mb = 1024\n'
        f'toolchains = ["gcc", "gcc-cross"]\n\n[kernel]\nmethod = "i2_s"\nmeasured = false\n')
    return tid


@pytest.fixture(scope="module")
def x86_builds(tmp_path_factory):
    if host_arch() != "x86_64" or detect_toolchain("gcc") is None:
        pytest.skip("needs an x86-64 host with gcc")
    tmp = tmp_path_factory.mktemp("x86")
    out = {}
    for tid, march in [("test-alderlake", "-march=alderlake"), ("test-sapphirerapids", "-march=sapphirerapids"),
                       ("test-v3", "-march=x86-64-v3")]:
        profile(tmp / "targets", tid, "x86_64", march)
        out[tid] = build_runtime(tid, toolchain="gcc", out_dir=tmp / tid, cache_dir=tmp / "cache",
                                 targets_dirs=[tmp / "targets"]).binary
    return out


def run(argv, timeout=120):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout)


def assert_refused(proc, *names):
    assert proc.returncode == 3, (proc.returncode, proc.stderr)
    error = [ln for ln in proc.stderr.splitlines() if ln.startswith("bitedge-run: error:")]
    assert len(error) == 1 and "does not have" in error[0], proc.stderr
    listed = error[0].split("compiled to use ", 1)[1].split(", which this CPU")[0].split(", ")
    for name in names:
        assert name in listed, (name, error[0])
    assert proc.stdout == ""


def test_the_check_itself_is_compiled_for_the_baseline(x86_builds):
    manifest = (x86_builds["test-sapphirerapids"].parent / "bitedge-run.manifest.json").read_text()
    import json

    m = json.loads(manifest)
    assert "-march=sapphirerapids" in m["compile_flags"]
    assert m["baseline_flags"]["files"] == ["cpu_features.c"] and "-march=x86-64" in m["baseline_flags"]["flags"]
    assert "-march=sapphirerapids" not in m["baseline_flags"]["flags"]


@pytest.mark.skipif(not shutil.which("qemu-x86_64"), reason="qemu-x86_64 is not installed")
def test_x86_builds_on_an_emulated_haswell(x86_builds):
    """Any x86 host: qemu-x86_64 -cpu Haswell has AVX2/FMA/BMI2, no AVX-VNNI, GFNI or AVX-512."""
    haswell = ["qemu-x86_64", "-cpu", "Haswell"]
    assert_refused(run([*haswell, x86_builds["test-alderlake"], "--help"]), "AVXVNNI", "GFNI")
    assert_refused(run([*haswell, x86_builds["test-sapphirerapids"], "--help"]),
                   "AVX512F", "AVX512VNNI", "AVX512FP16", "AVX512BF16", "AMX-TILE", "AVXVNNI")
    ok = run([*haswell, x86_builds["test-v3"], "--help"])  # what the CPU has is not refused
    assert ok.returncode == 0 and "usage: bitedge-run" in ok.stdout, ok.stderr


def test_x86_builds_natively_name_what_this_cpu_lacks(x86_builds):
    """On this machine, for every instruction set it lacks: exit 3 naming it; what it has is never named."""
    flags = host_cpu_flags()
    wanted = {"AVXVNNI": "avx_vnni", "AVX512F": "avx512f", "AVX512VNNI": "avx512_vnni", "AVX512FP16": "avx512_fp16",
              "AMX-TILE": "amx_tile", "AVX512BW": "avx512bw", "GFNI": "gfni"}
    for tid in ("test-alderlake", "test-sapphirerapids"):
        proc = run([x86_builds[tid], "--help"])
        names = proc.stderr.split("compiled to use ", 1)[1].split(", which")[0].split(", ") if proc.returncode == 3 \
            else []
        lacking = {name for name, flag in wanted.items() if flag not in flags}
        expected = lacking & ({"AVXVNNI", "GFNI"} if tid == "test-alderlake" else set(wanted))
        if not expected:
            continue  # this CPU has all of them (a Sapphire Rapids): nothing to refuse
        assert_refused(proc, *sorted(expected))
        assert not [n for n in names if n in wanted and wanted[n] in flags], names


@pytest.fixture(scope="module")
def arm_build(tmp_path_factory):
    if detect_toolchain("gcc-cross", "aarch64") is None or not shutil.which("qemu-aarch64"):
        pytest.skip("needs aarch64-linux-gnu-gcc and qemu-aarch64")
    tmp = tmp_path_factory.mktemp("arm")
    # the aarch64-max-qemu profile's flags: dotprod, fp16, i8mm, SVE, and ARMv8.2's LSE atomics and RDM
    return build_runtime("aarch64-max-qemu", toolchain="gcc-cross", out_dir=tmp / "out", cache_dir=tmp / "cache").binary


def test_arm_build_refused_by_older_cores_and_run_by_one_that_has_it_all(arm_build):
    assert_refused(run(["qemu-aarch64", "-cpu", "cortex-a72", arm_build, "--help"]),
                   "DOTPROD", "I8MM", "FP16", "SVE", "LSE atomics", "RDM")
    proc = run(["qemu-aarch64", "-cpu", "cortex-a76", arm_build, "--help"])
    assert_refused(proc, "I8MM", "SVE")
    assert "DOTPROD" not in proc.stderr and "LSE" not in proc.stderr  # the A76 has those
    ok = run(["qemu-aarch64", "-cpu", "max", arm_build, "--help"])
    assert ok.returncode == 0 and "usage: bitedge-run" in ok.stdout, ok.stderr
