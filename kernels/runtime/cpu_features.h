/* Run-time CPU feature detection, the llama.cpp-style system_info line, and the check that refuses a build
 * compiled for instructions this CPU lacks (exit with a message instead of SIGILL).
 *
 * x86-64: cpuid + xgetbv (the OS must also save the AVX state). aarch64 Linux: getauxval(AT_HWCAP);
 * aarch64 macOS: sysctlbyname("hw.optional.arm.FEAT_*"). */
#ifndef BITEDGE_CPU_FEATURES_H
#define BITEDGE_CPU_FEATURES_H

#include <stddef.h>

typedef struct {
    /* x86 */
    int sse3, ssse3, avx, avx2, fma, f16c, avx512f, avx_vnni;
    /* avx_vnni: the VEX vpdpbusd (CPUID.(EAX=7,ECX=1):EAX bit 4), 0 unless AVX2 is usable (OS saves YMM state).
     * AVX-512 subsets the avx512-vnni kernel table needs; each is 0 unless the OS also saves the ZMM state */
    int avx512bw, avx512vl, avx512_vnni;
    /* arm */
    int neon, arm_fma, fp16, dotprod, i8mm, sve;
} be_cpu_features;

/* Which SIMD kernel tables this build compiles in (kernels_avx2.c, kernels_avxvnni.c, kernels_avx512vnni.c,
 * kernels_neon.c). The x86 tables are compiled with target attributes, so a default x86-64 build carries them and
 * picks one at run time; the avx-vnni table needs a compiler that knows target("avxvnni") (GCC 11, clang 12,
 * Apple clang 13 and later). NEON is baseline on
 * aarch64; the dotprod table uses a target("+dotprod") attribute with GCC, and with other compilers only when
 * the whole build targets dotprod (-march=armv8.2-a+dotprod); the i8mm table likewise (+i8mm). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define BE_HAVE_AVX2_KERNELS 1
#define BE_HAVE_AVX512VNNI_KERNELS 1
#if defined(__clang__) ? (defined(__apple_build_version__) ? __clang_major__ >= 13 : __clang_major__ >= 12) \
                       : __GNUC__ >= 11
#define BE_HAVE_AVXVNNI_KERNELS 1
#else
#define BE_HAVE_AVXVNNI_KERNELS 0
#endif
#else
#define BE_HAVE_AVX2_KERNELS 0
#define BE_HAVE_AVX512VNNI_KERNELS 0
#define BE_HAVE_AVXVNNI_KERNELS 0
#endif
#if defined(__aarch64__) && defined(__ARM_NEON)
#define BE_HAVE_NEON_KERNELS 1
#if defined(__ARM_FEATURE_DOTPROD) || (defined(__GNUC__) && !defined(__clang__))
#define BE_HAVE_DOTPROD_KERNELS 1
#else
#define BE_HAVE_DOTPROD_KERNELS 0
#endif
/* the i8mm table (kernels_neon_i8mm.c's gemm, the dotprod gemv): the same rule, for the int8 matrix multiply */
#if BE_HAVE_DOTPROD_KERNELS && (defined(__ARM_FEATURE_MATMUL_INT8) || (defined(__GNUC__) && !defined(__clang__)))
#define BE_HAVE_I8MM_KERNELS 1
#else
#define BE_HAVE_I8MM_KERNELS 0
#endif
#else
#define BE_HAVE_NEON_KERNELS 0
#define BE_HAVE_DOTPROD_KERNELS 0
#define BE_HAVE_I8MM_KERNELS 0
#endif

/* The features of this CPU, detected once (thread-safe after the first call returns; call it early). */
const be_cpu_features *be_cpu_get(void);
/* "AVX = 1 | AVX2 = 1 | ... | NEON = 0 | ARM_FMA = 0 | DOTPROD = 0 | ..." (what the CPU has). */
void be_system_info(char *buf, size_t cap);
/* The CPU model: x86 brand string, or an ARM core name from /proc/cpuinfo, or "unknown". */
void be_cpu_name(char *buf, size_t cap);
/* 0 if this CPU has every instruction set the whole build was compiled for (-mavx2, -march=native,
 * -march=armv8.2-a+dotprod, ...); else -1 with a one-line message naming what is missing. */
int be_cpu_check_build(char *err, size_t cap);

#endif
