"""Helpers for the build tests: a small C program that exercises what a real runtime build needs (pthreads,
the profile's SIMD intrinsics, the BITEDGE_REQUIRE_* start-up check), a qemu CPU per shipped board, and a
per-session zig cache."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNTIME = REPO / "kernels" / "runtime"
RUNTIME_SOURCES = ("main.c", "forward.c", "sampler.c", "model.c", "gguf.c", "tokenizer.c", "kernels.c",
                   "kernels_avx2.c", "kernels_avx512vnni.c", "kernels_neon.c", "cpu_features.c", "threadpool.c")

# the qemu-aarch64 CPU model that stands in for each real aarch64 board (qemu 7.2 has no cortex-a78ae: max)
QEMU_CPU = {"rpi3": "cortex-a53", "rpi4": "cortex-a72", "rpi5": "cortex-a76", "jetson-orin": "max",
            "generic-aarch64": "cortex-a53"}

# Exit 3 with a message when the CPU lacks a feature the build requires (what the runtime does), then a
# SIMD dot product of 1..64 with 2s checked against the scalar sum, on a second thread.
PROBE_C = r"""
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#if defined(__aarch64__)
#include <arm_neon.h>
#if defined(__linux__)
#include <sys/auxv.h>
#endif
#elif defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

#ifndef BITEDGE_TARGET
#define BITEDGE_TARGET "none"
#endif

static int has(const char *f) {
#if defined(__aarch64__) && defined(__linux__)
    unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    if (!strcmp(f, "neon")) return (hw >> 1) & 1;
    if (!strcmp(f, "fp16")) return (hw >> 10) & 1;
    if (!strcmp(f, "dotprod")) return (hw >> 20) & 1;
    if (!strcmp(f, "sve")) return (hw >> 22) & 1;
    if (!strcmp(f, "i8mm")) return (hw2 >> 13) & 1;
#elif defined(__x86_64__)
    unsigned a = 0, b = 0, c = 0, d = 0;
    __get_cpuid(1, &a, &b, &c, &d);
    unsigned c1 = c;
    __get_cpuid_count(7, 0, &a, &b, &c, &d);
    if (!strcmp(f, "avx")) return (c1 >> 28) & 1;
    if (!strcmp(f, "fma")) return (c1 >> 12) & 1;
    if (!strcmp(f, "f16c")) return (c1 >> 29) & 1;
    if (!strcmp(f, "avx2")) return (b >> 5) & 1;
    if (!strcmp(f, "avx512f")) return (b >> 16) & 1;
    if (!strcmp(f, "avx512bw")) return (b >> 30) & 1;
#endif
    (void)f;
    return 1;
}

static int8_t xs[64], ys[64];
static int32_t result;

static void *dot(void *arg) {
    (void)arg;
#if defined(__aarch64__) && defined(__ARM_FEATURE_DOTPROD)
    int32x4_t acc = vdupq_n_s32(0);
    for (int i = 0; i < 64; i += 16) acc = vdotq_s32(acc, vld1q_s8(xs + i), vld1q_s8(ys + i));
    result = vaddvq_s32(acc);
#elif defined(__aarch64__)
    int32x4_t acc = vdupq_n_s32(0);
    for (int i = 0; i < 64; i += 8) acc = vpadalq_s16(acc, vmull_s8(vld1_s8(xs + i), vld1_s8(ys + i)));
    result = vaddvq_s32(acc);
#elif defined(__AVX2__)
    __m256i acc = _mm256_setzero_si256();
    for (int i = 0; i < 64; i += 16) {
        __m256i a = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(xs + i)));
        __m256i b = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(ys + i)));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
    }
    int32_t lanes[8];
    _mm256_storeu_si256((__m256i *)lanes, acc);
    result = 0;
    for (int i = 0; i < 8; i++) result += lanes[i];
#else
    result = 0;
    for (int i = 0; i < 64; i++) result += xs[i] * ys[i];
#endif
    return NULL;
}

int main(void) {
    static const char *required[] = {
#ifdef BITEDGE_REQUIRE_NEON
        "neon",
#endif
#ifdef BITEDGE_REQUIRE_FP16
        "fp16",
#endif
#ifdef BITEDGE_REQUIRE_DOTPROD
        "dotprod",
#endif
#ifdef BITEDGE_REQUIRE_I8MM
        "i8mm",
#endif
#ifdef BITEDGE_REQUIRE_SVE
        "sve",
#endif
#ifdef BITEDGE_REQUIRE_AVX2
        "avx2",
#endif
#ifdef BITEDGE_REQUIRE_FMA
        "fma",
#endif
#ifdef BITEDGE_REQUIRE_AVX512F
        "avx512f",
#endif
        NULL};
    for (int i = 0; required[i]; i++)
        if (!has(required[i])) {
            fprintf(stderr, "probe: error: built for %s, which needs %s: this CPU lacks it\n", BITEDGE_TARGET, required[i]);
            return 3;
        }
    for (int i = 0; i < 64; i++) { xs[i] = (int8_t)(i + 1); ys[i] = 2; }
    pthread_t t;
    if (pthread_create(&t, NULL, dot, NULL) != 0) return 1;
    pthread_join(t, NULL);
#if defined(__aarch64__)
    const char *arch = "aarch64";
#elif defined(__x86_64__)
    const char *arch = "x86_64";
#else
    const char *arch = "other";
#endif
    printf("arch=%s target=%s dot=%d\n", arch, BITEDGE_TARGET, (int)result);
    return 0;
}
"""
PROBE_DOT = 2 * 64 * 65 // 2  # sum of 2 * (1..64)


def write_probe(folder: Path) -> Path:
    path = folder / "probe.c"
    path.write_text(PROBE_C)
    return path


def runtime_compiles() -> bool:
    return all((RUNTIME / s).exists() for s in RUNTIME_SOURCES)


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def zig_session_cache() -> None:
    """zig builds musl libc once per architecture (~1 min each): keep it across test sessions in the user's
    cache (~/.cache/bitedge/zig, or $BITEDGE_ZIG_CACHE), never in a per-test tmp dir."""
    os.environ.setdefault("BITEDGE_ZIG_CACHE", str(Path.home() / ".cache" / "bitedge" / "zig"))
