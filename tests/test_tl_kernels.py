"""Every rendered TL1 / TL2 kernel equals acc[n] = sum_k T[n][k] * q[k] exactly, where T is the numpy packer's
unpack of the bytes the C code reads: natively (scalar, AVX2) and under qemu-aarch64 (scalar, NEON on a
cortex-a72 and on a cortex-a76), on odd shapes, split row ranges and extreme activations. (I2_S is not rendered:
its hand-written kernels are tested in tests/test_c_kernels.py.)
The TL gemm (several tokens at once, prompt processing) equals both the reference and the scalar gemv run token by
token, bit for bit, for token counts around the gemm's block of GEMM_TOKENS tokens."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from tests._c_build import AARCH64_CC, have_tool
from bitedge.render import GEMM_TOKENS
from tests._render_helpers import ARM_VARIANTS, batch_reference, build_driver, random_batch, run_batch, run_check

METHODS = ("tl1", "tl2")
# rendered specialisations (constant kp) for some shapes; the others go through the generic path
SPECIALISED = [(64, 130), (96, 1000), (2560, 2560)]
# (N, K): N not a multiple of 32, K not a multiple of 2 / 3 / 128, tiny and single-column rows
CASES = [(37, 71), (64, 130), (5, 3), (100, 259), (33, 1), (96, 1000), (70, 6), (1, 2)]
EXTREMES = ("random", "min", "max")


def splits_for(n: int) -> list[tuple[int, ...]]:
    """Row ranges as threads would take them: whole, split on a tile boundary, split inside a tile."""
    out = [()]
    if n > 32:
        out.append((32,))
    if n > 7:
        out.append((3, 7, n - 1))
    return out


def check_all(exe, method, isa, rng, work, arch="native", qemu_cpu="cortex-a72", cases=CASES, extremes=EXTREMES):
    for n, k in cases:
        for extreme in extremes:
            for splits in splits_for(n):
                want, got = run_check(exe, method, isa, n, k, rng, work, extreme, splits, arch, qemu_cpu)
                bad = np.flatnonzero(want != got)
                assert bad.size == 0, (f"{method}/{isa} N={n} K={k} {extreme} splits={splits}: row {bad[0]} "
                                       f"is {got[bad[0]]}, expected {want[bad[0]]} ({bad.size} rows differ)")


# tile variants: defaults; 2-tile blocks with the smallest K chunk (widening every 2 groups) in sweeps of 2 tiles;
# 3-tile blocks (a single-tile remainder in every sweep of 6 tiles) with the largest chunk the bound allows
NATIVE_TILES = {
    "default": None,
    "small": {"tl1": {"bm": 64, "bk": 4, "bn": 64}, "tl2": {"bm": 64, "bk": 6, "bn": 64}},
    "large": {"tl1": {"bm": 96, "bk": 252, "bn": 192}, "tl2": {"bm": 96, "bk": 252, "bn": 192}},
}


@pytest.fixture(scope="module")
def native_drivers(tmp_path_factory):
    drivers = {}
    for name, tiles in NATIVE_TILES.items():
        out = tmp_path_factory.mktemp(f"native-{name}")
        drivers[name] = {}
        for method in METHODS:
            drivers[name][method] = build_driver(out / method, "x86-64-avx2", [method], SPECIALISED,
                                                 tiles and tiles[method])
    return drivers


def native_has_avx2() -> bool:
    try:
        return "avx2" in open("/proc/cpuinfo").read()
    except OSError:
        return False


@pytest.mark.parametrize("tiles", list(NATIVE_TILES))
@pytest.mark.parametrize("isa", ["scalar", "avx2"])
@pytest.mark.parametrize("method", METHODS)
def test_native_bit_exact(native_drivers, method, isa, tiles, tmp_path):
    if isa == "avx2" and not native_has_avx2():
        pytest.skip("this CPU has no AVX2")
    rng = np.random.default_rng(zlib.crc32(f"{method}{isa}{tiles}".encode()))
    extremes = EXTREMES if tiles == "default" else ("random", "min")
    check_all(native_drivers[tiles][method], method, isa, rng, tmp_path, extremes=extremes)


def test_int16_chunks_really_flush(native_drivers, tmp_path):
    """A row of 6000 weights -1 against q = -128 sums to about 768000: far past int16, so only a
    kernel that widens every chunk gets it right; run it on the largest chunk the bound allows."""
    rng = np.random.default_rng(7)
    for method in METHODS:
        for isa in ("scalar", "avx2") if native_has_avx2() else ("scalar",):
            for extreme in ("min", "max"):
                want, got = run_check(native_drivers["large"][method], method, isa, 40, 6000, rng, tmp_path, extreme)
                # row 0: T = -1 against q = 127, -128, -128, ... / T = +1 against 127, -128, 127, ...
                assert want[0] == (128 * 5999 - 127 if extreme == "min" else 127 * 5999 - 128)
                np.testing.assert_array_equal(got, want, err_msg=f"{method}/{isa} {extreme}")


@pytest.fixture(scope="module")
def arm_drivers(tmp_path_factory):
    if not have_tool(AARCH64_CC) or not have_tool("qemu-aarch64"):
        pytest.skip("aarch64 cross compiler or qemu-aarch64 not installed")
    drivers = {}
    for variant, (target, _, flags) in ARM_VARIANTS.items():
        for method in METHODS:
            out = tmp_path_factory.mktemp(f"arm-{variant}-{method}")
            tiles = NATIVE_TILES["small"][method] if variant == "neon" else None
            drivers[variant, method] = build_driver(out, target, [method], SPECIALISED, tiles, flags, arch="aarch64")
    return drivers


ARM_CASES = [(m, isa, v) for m in METHODS for v in ARM_VARIANTS for isa in ("neon", "scalar")]


@pytest.mark.parametrize(("method", "isa", "variant"), ARM_CASES)
def test_aarch64_bit_exact_under_qemu(arm_drivers, method, isa, variant, tmp_path):
    _, qemu_cpu, _ = ARM_VARIANTS[variant]
    rng = np.random.default_rng(zlib.crc32(f"{method}{isa}{variant}".encode()))
    # qemu is slow to start: fewer combinations than natively, still every shape and both activation extremes
    cases = CASES if isa != "scalar" else CASES[:4]
    for n, k in cases:
        for extreme, splits in (("random", splits_for(n)[-1]), ("min", ()), ("max", splits_for(n)[min(1, len(splits_for(n)) - 1)])):
            want, got = run_check(arm_drivers[variant, method], method, isa, n, k, rng, tmp_path, extreme, splits,
                                  "aarch64", qemu_cpu)
            np.testing.assert_array_equal(got, want, err_msg=f"{method}/{isa} on {qemu_cpu}: N={n} K={k} {extreme}")


# TL gemm: token counts 1, 2, one more than a block (a 1-token tail), two blocks and an odd tail
TOKEN_COUNTS = (1, 2, GEMM_TOKENS + 1, 2 * GEMM_TOKENS + 3)
TL_METHODS = ("tl1", "tl2")


def check_gemm(exe, method, isa, rng, work, cases, token_counts=TOKEN_COUNTS, extremes=EXTREMES, arch="native",
               qemu_cpu="cortex-a72", all_splits=True):
    """gemm on isa == batch_reference == the scalar gemv run per token, for every case, token count and extreme."""
    for n, k in cases:
        for nb in token_counts:
            for extreme in extremes:
                packed, q = random_batch(method, n, k, nb, rng, extreme)
                want = batch_reference(method, packed, n, k, q)
                per_token = run_batch(exe, "tokens", method, "scalar", n, packed, q, work, (), arch, qemu_cpu)
                np.testing.assert_array_equal(per_token, want, err_msg=f"{method}/scalar gemv per token N={n} K={k}")
                for splits in splits_for(n) if all_splits else splits_for(n)[-1:]:
                    got = run_batch(exe, "gemm", method, isa, n, packed, q, work, splits, arch, qemu_cpu)
                    bad = np.argwhere(got != per_token)
                    assert bad.size == 0, (f"{method}/{isa} gemm N={n} K={k} nb={nb} {extreme} splits={splits}: "
                                           f"token {bad[0][0]} row {bad[0][1]} is {got[tuple(bad[0])]}, the gemv per "
                                           f"token gives {per_token[tuple(bad[0])]} ({len(bad)} entries differ)")


@pytest.mark.parametrize("tiles", list(NATIVE_TILES))
@pytest.mark.parametrize("isa", ["scalar", "avx2"])
@pytest.mark.parametrize("method", TL_METHODS)
def test_native_gemm_equals_gemv_per_token(native_drivers, method, isa, tiles, tmp_path):
    if isa == "avx2" and not native_has_avx2():
        pytest.skip("this CPU has no AVX2")
    rng = np.random.default_rng(zlib.crc32(f"gemm{method}{isa}{tiles}".encode()))
    cases = CASES if tiles == "default" else CASES[:4]
    extremes = EXTREMES if tiles == "default" else ("random", "min")
    check_gemm(native_drivers[tiles][method], method, isa, rng, tmp_path, cases, extremes=extremes)


def test_gemm_int16_chunks_really_flush(native_drivers, tmp_path):
    """As test_int16_chunks_really_flush, through the gemm with several tokens: sums far past int16."""
    rng = np.random.default_rng(8)
    for method in TL_METHODS:
        for isa in ("scalar", "avx2") if native_has_avx2() else ("scalar",):
            packed, q = random_batch(method, 40, 6000, GEMM_TOKENS + 1, rng, "min")
            got = run_batch(native_drivers["large"][method], "gemm", method, isa, 40, packed, q, tmp_path)
            want = batch_reference(method, packed, 40, 6000, q)
            assert want[0, 0] == 128 * 5999 - 127
            np.testing.assert_array_equal(got, want, err_msg=f"{method}/{isa} gemm")


@pytest.mark.parametrize(("method", "isa", "variant"), [(m, isa, "neon") for m in TL_METHODS for isa in ("neon", "scalar")]
                         + [(m, "neon", "neon-dotprod") for m in TL_METHODS])
def test_aarch64_gemm_under_qemu(arm_drivers, method, isa, variant, tmp_path):
    _, qemu_cpu, _ = ARM_VARIANTS[variant]
    rng = np.random.default_rng(zlib.crc32(f"gemm{method}{isa}{variant}".encode()))
    # qemu is slow to start: a few shapes (a partial tile, an odd group count, several sweeps) and one split each
    check_gemm(arm_drivers[variant, method], method, isa, rng, tmp_path, [(37, 71), (100, 259), (70, 6)],
               token_counts=(2, GEMM_TOKENS + 1), extremes=("random", "min"), arch="aarch64", qemu_cpu=qemu_cpu,
               all_splits=False)
