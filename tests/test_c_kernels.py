"""The C kernels of the runtime (kernels/runtime/kernels*.c, cpu_features.c, threadpool.c).

kernels/tests/test_kernels.c checks every kernel table the CPU can run against its own naive product; here it
is built natively (gcc, clang, sanitizers) and for aarch64 under qemu-user with three CPUs (Cortex-A72: no
dotprod; Cortex-A76: dotprod; max), and its file modes are checked against the Python sources of truth:
the I2_S packer of bitedge.formats.packing, quantize_activations of bitedge.formats.ternary, numpy's float16
and gguf-py's Q8_0, Q4_0 and Q6_K (be_dequantize_row bit-identical to gguf.quants.dequantize).
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bitedge.formats import float_quants
from bitedge.formats.packing import get_packing
from bitedge.formats.ternary import quantize_activations
from tests._c_build import (BASE_FLAGS, REPO, RUNTIME, compile_c, host_has_avx2, host_has_avx512_vnni,
                             host_has_avx_vnni, require_tool, run_binary)

# vnni_emulated.c: the VNNI tables' I2_S source once more, vpdpbusd in AVX2, so the self-test runs it on any AVX2 CPU
SOURCES = ("kernels/runtime/kernels.c", "kernels/runtime/kernels_avx2.c", "kernels/runtime/kernels_avxvnni.c",
           "kernels/runtime/kernels_avx512vnni.c", "kernels/runtime/kernels_neon.c",
           "kernels/runtime/kernels_neon_i8mm.c", "kernels/runtime/cpu_features.c", "kernels/runtime/threadpool.c",
           "kernels/tests/vnni_emulated.c", "kernels/tests/test_kernels.c", "kernels/tests/test_kernels_io.c",
           "kernels/tests/test_kernels_float.c", "kernels/runtime/greedy_bound.c")
FLAGS = ("-ffp-contract=off", "-pthread")
# float kernels are compared with float64: |y - exact| <= FLOAT_RTOL * sum_k |w_k x_k|
FLOAT_RTOL = 1e-5
QEMU_CPUS = {  # qemu -cpu: (tables the CPU can run, best first; the one be_kernels_select picks)
    "cortex-a72": ["neon", "scalar"],
    "cortex-a76": ["neon-dotprod", "neon", "scalar"],
    "max": ["neon-i8mm", "neon-dotprod", "neon", "scalar"],
}


def parse_selftest(stdout: str) -> dict[str, str]:
    out = {}
    for line in stdout.splitlines():
        key, sep, value = line.partition(": ")
        if sep and key in ("cpu", "system_info", "tables", "selected", "build_check", "emulated"):
            out[key] = value
    return out


@pytest.fixture(scope="module")
def native_exe(tmp_path_factory) -> Path:
    require_tool("gcc")
    return compile_c(SOURCES, tmp_path_factory.mktemp("kern") / "test_kernels", flags=FLAGS, opt="-O2")


@pytest.fixture(scope="module")
def aarch64_exe(tmp_path_factory) -> Path:
    require_tool("aarch64-linux-gnu-gcc")
    require_tool("qemu-aarch64")
    return compile_c(SOURCES, tmp_path_factory.mktemp("kern64") / "test_kernels", flags=FLAGS, opt="-O2",
                     target="aarch64")


def native_tables() -> list[str]:
    """The tables test_kernels should offer on this CPU, best first."""
    return (["avx512-vnni"] * host_has_avx512_vnni() + ["avx-vnni"] * host_has_avx_vnni()
            + ["avx2"] * host_has_avx2() + ["scalar"])


# ------------------------------------------------------------------------------------------------------------
# self-tests


def check_selftest(proc, tables: list[str]) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "checks passed" in proc.stdout
    info = parse_selftest(proc.stdout)
    assert info["tables"].split() == tables
    assert info["selected"] == tables[0]
    assert info["build_check"] == "ok"
    # the VNNI tables' I2_S source, emulated, checked by the same self-test wherever AVX2 runs (x86 builds)
    assert info.get("emulated") == ("vnni-emulated" if "avx2" in tables else None), info


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="needs Linux /proc/cpuinfo")
def test_native_selftest_gcc(native_exe):
    proc = run_binary(native_exe)
    check_selftest(proc, native_tables())
    info = parse_selftest(proc.stdout)
    assert f"AVX2 = {int(host_has_avx2())}" in info["system_info"]
    assert "NEON = 0" in info["system_info"] and "DOTPROD = 0" in info["system_info"]


@pytest.mark.parametrize("zmm", [0, 1], ids=["ymm", "zmm"])
def test_avx512_vnni_selftest_both_widths(tmp_path, zmm):
    """kernels_avx512vnni.c in both vector widths (BE_VNNI_ZMM, docs/kernels.md): exact against the naive product
    and chosen first; gcc and clang."""
    if not host_has_avx512_vnni():
        pytest.skip("needs a CPU with AVX-512 F/BW/VL and AVX512-VNNI (this one has AVX2 at most)")
    for cc in ("gcc", "clang"):
        require_tool(cc)
        exe = compile_c(SOURCES, tmp_path / f"test_kernels_{cc}", cc=cc, flags=(*FLAGS, f"-DBE_VNNI_ZMM={zmm}"),
                        opt="-O2")
        proc = run_binary(exe)
        check_selftest(proc, native_tables())
        assert "AVX512_VNNI = 1" in parse_selftest(proc.stdout)["system_info"]


def test_avx512_vnni_not_offered_without_it(native_exe):
    """On an AVX2-only CPU (Zen 3) the build still holds the avx512-vnni table but never offers it."""
    if host_has_avx512_vnni():
        pytest.skip("this CPU has AVX512-VNNI: the table is offered, as test_native_selftest_gcc checks")
    info = parse_selftest(run_binary(native_exe).stdout)
    assert "avx512-vnni" not in info["tables"].split()
    assert "AVX512_VNNI = 0" in info["system_info"]


def test_native_selftest_clang(tmp_path):
    require_tool("clang")
    exe = compile_c(SOURCES, tmp_path / "test_kernels", cc="clang", flags=FLAGS, opt="-O2")
    check_selftest(run_binary(exe), native_tables())


def test_threadpool_and_kernels_under_thread_sanitizer(tmp_path):
    """TSan: the pool's hand-off (generation counter, pending count, condition variables) has no data race."""
    require_tool("gcc")
    exe = compile_c(SOURCES, tmp_path / "test_kernels", flags=(*FLAGS, "-fsanitize=thread", "-g"), opt="-O1")
    proc = run_binary(exe, timeout=300)
    if "FATAL: ThreadSanitizer" in proc.stderr:
        pytest.skip("ThreadSanitizer cannot run here: " + proc.stderr.strip().splitlines()[0])
    assert "WARNING: ThreadSanitizer" not in proc.stderr, proc.stderr[:3000]
    check_selftest(proc, native_tables())


def test_native_selftest_sanitized(tmp_path):
    """ASan + UBSan: no out-of-bounds read of the packed rows or activations, no signed overflow."""
    require_tool("gcc")
    exe = compile_c(SOURCES, tmp_path / "test_kernels", flags=FLAGS, opt="-O1", sanitize=True)
    check_selftest(run_binary(exe, timeout=300), native_tables())


@pytest.mark.parametrize("cpu", sorted(QEMU_CPUS))
def test_aarch64_selftest(aarch64_exe, cpu):
    proc = run_binary(aarch64_exe, target="aarch64", qemu_cpu=cpu, timeout=300)
    check_selftest(proc, QEMU_CPUS[cpu])
    info = parse_selftest(proc.stdout)["system_info"]
    assert "NEON = 1" in info and "AVX2 = 0" in info
    assert f"DOTPROD = {int('neon-dotprod' in QEMU_CPUS[cpu])}" in info
    assert f"MATMUL_INT8 = {int('neon-i8mm' in QEMU_CPUS[cpu])}" in info


def test_aarch64_clang_compiles_neon_without_warnings(tmp_path):
    """clang cannot link a static aarch64 binary here (no sysroot), but the NEON files must compile cleanly."""
    require_tool("clang")
    for march in ((), ("-march=armv8.2-a+dotprod",), ("-march=armv8.6-a+i8mm",)):
        for name in ("kernels_neon.c", "kernels_neon_i8mm.c"):
            cmd = ["clang", "--target=aarch64-linux-gnu", *BASE_FLAGS, "-O2", *march, f"-I{RUNTIME}", "-c",
                   str(REPO / "kernels/runtime" / name), "-o", str(tmp_path / "neon.o")]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0 and "stdint.h" in proc.stderr:
                pytest.skip("no aarch64 C headers for clang")
            assert proc.returncode == 0 and not proc.stderr.strip(), (march, name, proc.stderr)


# ------------------------------------------------------------------------------------------------------------
# a build for an instruction set the CPU lacks refuses to run, with a message (microsoft/BitNet#600: SIGILL)


def test_dotprod_build_refused_on_cortex_a72(tmp_path):
    require_tool("aarch64-linux-gnu-gcc")
    require_tool("qemu-aarch64")
    exe = compile_c(SOURCES, tmp_path / "test_kernels", flags=(*FLAGS, "-march=armv8.2-a+dotprod"), opt="-O0",
                    target="aarch64")
    refused = run_binary(exe, ["check"], target="aarch64", qemu_cpu="cortex-a72")
    assert refused.returncode == 3, refused.stdout + refused.stderr
    # refused before main() (cpu_features.c's constructor), on stderr
    assert "DOTPROD" in refused.stderr and "does not have" in refused.stderr
    accepted = run_binary(exe, ["check"], target="aarch64", qemu_cpu="cortex-a76")
    assert accepted.returncode == 0 and accepted.stdout.strip() == "ok"


def test_avx512_build_refused_without_avx512(tmp_path):
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if "avx512f" in flags or "flags" not in flags:
        pytest.skip("needs an x86 CPU without AVX-512")
    require_tool("gcc")
    exe = compile_c(SOURCES, tmp_path / "test_kernels", flags=(*FLAGS, "-mavx512f"), opt="-O0")
    proc = run_binary(exe, ["check"])
    assert proc.returncode == 3 and "AVX512F" in proc.stderr, proc.stderr


# ------------------------------------------------------------------------------------------------------------
# file modes against the Python sources of truth


def run_i2s(exe: Path, tmp: Path, w: np.ndarray, q: np.ndarray, n_tables: int, **run) -> list[np.ndarray]:
    n, kp4 = w.shape
    nb, kp = q.shape
    assert kp == kp4 * 4
    src, dst = tmp / "i2s.in", tmp / "i2s.out"
    src.write_bytes(struct.pack("<3i", n, kp, nb) + w.tobytes() + q.tobytes())
    proc = run_binary(exe, ["i2s", src, dst], **run)
    assert proc.returncode == 0, proc.stderr
    out = np.fromfile(dst, dtype="<i4")
    assert out.size == n_tables * 2 * nb * n
    return list(out.reshape(n_tables * 2, nb, n))


def i2s_cases(seed: int = 7):
    rng = np.random.default_rng(seed)
    # (67, 2560, 71): every tail of the avx512-vnni gemm tile (4 rows x 4 tokens) and a second 64-token batch
    for n, k, nb in ((1, 1, 1), (37, 300, 3), (5, 128, 9), (13, 2560, 2), (3, 6912, 5), (64, 1000, 1),
                     (67, 2560, 71)):
        values = rng.integers(-1, 2, size=(n, k), dtype=np.int8)
        q = rng.integers(-128, 128, size=(nb, k), dtype=np.int8)
        yield values, q
    # extremes: every weight +1 / -1 against activations all -128 or all 127
    for t in (-1, 1):
        for a in (-128, 127):
            yield np.full((7, 6912), t, np.int8), np.full((4, 6912), a, np.int8)


def exact_acc(values: np.ndarray, q: np.ndarray) -> np.ndarray:
    return (q.astype(np.int64) @ values.astype(np.int64).T).astype(np.int32)  # [nb, n]


def check_i2s_against_numpy(exe: Path, tmp: Path, tables: list[str], **run) -> None:
    packing = get_packing("i2_s")
    for values, q in i2s_cases():
        n, k = values.shape
        w = packing.pack(values)
        kp = packing.padded_k(k)
        qp = np.zeros((q.shape[0], kp), np.int8)
        qp[:, :k] = q
        want = exact_acc(values, q)
        results = run_i2s(exe, tmp, w, qp, len(tables), **run)
        for i, name in enumerate(tables):
            for j, how in enumerate(("gemm" if q.shape[0] > 1 else "gemv", "gemv")):
                got = results[2 * i + j]
                assert np.array_equal(got, want), f"{name} {how} n={n} k={k} nb={q.shape[0]}: " \
                                                  f"{np.argwhere(got != want)[:5].tolist()}"


def test_i2s_native_matches_numpy_packing(native_exe, tmp_path):
    check_i2s_against_numpy(native_exe, tmp_path, native_tables())


@pytest.mark.parametrize("cpu", ["cortex-a72", "cortex-a76", "max"])
def test_i2s_aarch64_matches_numpy_packing(aarch64_exe, tmp_path, cpu):
    check_i2s_against_numpy(aarch64_exe, tmp_path, QEMU_CPUS[cpu], target="aarch64", qemu_cpu=cpu)


def quant_rows(seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    k = 300
    rows = [rng.standard_normal(k) * s for s in (1e-3, 0.1, 1.0, 37.0, 1e4)]
    rows.append(np.zeros(k))
    rows.append(np.full(k, 1e-7))  # below the 1e-5 absmax floor
    # exact ties: amax 127 gives a == 1, so x.5 rounds half to even
    ties = np.zeros(k)
    ties[0] = 127.0
    ties[1:41] = np.arange(-20, 20) + 0.5
    rows.append(ties)
    # a heavy-tailed row, as real activations (a few huge outliers)
    heavy = rng.standard_normal(k)
    heavy[rng.integers(0, k, 3)] *= 300
    rows.append(heavy)
    return np.asarray(rows, dtype=np.float32)


def check_quant(exe: Path, tmp: Path, tables: list[str], **run) -> None:
    x = quant_rows()
    rows, k = x.shape
    kp = (k + 127) // 128 * 128
    src, dst = tmp / "q.in", tmp / "q.out"
    src.write_bytes(struct.pack("<3i", rows, k, kp) + x.tobytes())
    proc = run_binary(exe, ["quant", src, dst], **run)
    assert proc.returncode == 0, proc.stderr
    out = np.fromfile(dst, dtype=np.uint8).reshape(len(tables), rows, 4 + kp)
    q_ref, a_ref = quantize_activations(x)
    for name, per_table in zip(tables, out):
        a_c = per_table[:, :4].copy().view("<f4")[:, 0]
        q_c = per_table[:, 4:].view(np.int8)
        assert np.array_equal(a_c.view(np.uint32), a_ref[:, 0].view(np.uint32)), name
        assert np.array_equal(q_c[:, :k], q_ref), f"{name}: rows {np.unique(np.argwhere(q_c[:, :k] != q_ref)[:, 0])}"
        assert not q_c[:, k:].any(), name  # padding zero-filled


def test_quantize_native_matches_reference(native_exe, tmp_path):
    check_quant(native_exe, tmp_path, native_tables())


def test_quantize_aarch64_matches_reference(aarch64_exe, tmp_path):
    check_quant(aarch64_exe, tmp_path, QEMU_CPUS["cortex-a76"], target="aarch64", qemu_cpu="cortex-a76")


def test_f16_conversion_all_values(native_exe, tmp_path):
    dst = tmp_path / "f16.out"
    proc = run_binary(native_exe, ["f16", dst])
    assert proc.returncode == 0, proc.stderr
    got = np.fromfile(dst, dtype="<f4")
    want = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan)
    assert np.array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))


def float_case(kind: str, n: int, k: int, seed: int):
    """(type id, weight bytes, exact float rows) with the rows as the file holds them."""
    import gguf
    from gguf.quants import dequantize, quantize

    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, k)).astype(np.float32)
    if kind == "f32":
        return 0, w.tobytes(), w
    if kind == "f16":
        h = w.astype(np.float16)
        return 1, h.tobytes(), h.astype(np.float32)
    qtype = {"q8_0": gguf.GGMLQuantizationType.Q8_0, "q4_0": gguf.GGMLQuantizationType.Q4_0,
             "q6_k": gguf.GGMLQuantizationType.Q6_K}[kind]
    if kind == "q6_k":  # gguf-py has no Q6_K quantizer: bitedge's port of ggml's, plus raw random blocks (every level,
        # every scale, either sign of d), so that no bit pattern of the layout goes untested
        packed = float_quants.quantize(w, qtype)
        raw = rng.integers(0, 256, size=packed.shape, dtype=np.uint8)
        d = (rng.standard_normal(packed.shape[:-1] + (packed.shape[-1] // 210,)) * 0.02).astype(np.float16)
        raw.reshape(n, -1, 210)[:, :, 208:] = d.view(np.uint8).reshape(n, -1, 2)
        packed = np.where(np.arange(n)[:, None] % 2 == 0, packed, raw)
    else:
        packed = quantize(w, qtype)
    return int(qtype), packed.tobytes(), dequantize(packed, qtype).astype(np.float32).reshape(n, k)


def check_float(exe: Path, tmp: Path, tables: list[str], **run) -> None:
    rng = np.random.default_rng(11)
    for kind, n, k in (("f32", 19, 333), ("f16", 23, 517), ("q8_0", 21, 640), ("f32", 3, 2560),
                       ("f16", 2, 2560), ("q8_0", 5, 2560), ("q4_0", 17, 608), ("q4_0", 4, 2560), ("q6_k", 13, 768),
                       ("q6_k", 4, 2560), ("q6_k", 3, 4608)):
        type_id, data, rows = float_case(kind, n, k, seed=n * k)
        x = (rng.standard_normal(k) * 2).astype(np.float32)
        src, dst = tmp / "f.in", tmp / "f.out"
        src.write_bytes(struct.pack("<3i", type_id, n, k) + data + x.tobytes())
        proc = run_binary(exe, ["float", src, dst], **run)
        assert proc.returncode == 0, proc.stderr
        out = np.fromfile(dst, dtype="<f4")
        deq = out[: n * k].reshape(n, k)
        assert np.array_equal(deq.view(np.uint32), rows.view(np.uint32)), f"{kind}: be_dequantize_row differs"
        exact = rows.astype(np.float64) @ x.astype(np.float64)
        mag = np.abs(rows.astype(np.float64)) @ np.abs(x.astype(np.float64))
        ys = out[n * k:].reshape(len(tables), n)
        for name, y in zip(tables, ys):
            err = np.abs(y.astype(np.float64) - exact)
            assert (err <= FLOAT_RTOL * mag).all(), f"{name} {kind}: max rel err {(err / mag).max():.3g}"


def test_float_gemv_native_matches_gguf(native_exe, tmp_path):
    check_float(native_exe, tmp_path, native_tables())


def test_float_gemv_aarch64_matches_gguf(aarch64_exe, tmp_path):
    check_float(aarch64_exe, tmp_path, QEMU_CPUS["cortex-a72"], target="aarch64", qemu_cpu="cortex-a72")
