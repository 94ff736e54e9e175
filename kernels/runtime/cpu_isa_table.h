/* The one table of the instruction sets a build can be compiled for: the compiler's predefined macro (what
 * -march/-mcpu turned on) -> where this CPU says it has it (x86: a cpuid bit and the XCR0 state the OS must save;
 * aarch64: a Linux HWCAP bit, a macOS sysctl) -> the name a refusal prints.
 *
 * be_cpu_check_build() (cpu_features.c) refuses to start a build whose compiler had any of these macros defined
 * on a CPU without the feature: exit 3 with the names, never SIGILL. cpu_build_isa.c, compiled with the build's
 * own CPU flags, records which macros were defined (data only); cpu_features.c itself is compiled for the
 * architecture's baseline (bitedge/builder/compile.py), so the check runs on any CPU of the architecture.
 * Kernel dispatch (which kernel table runs) is separate: be_cpu_get() and kernels.c.
 *
 * What is checked: every instruction set the compiler may emit code for on its own (vectorising, lowering a
 * builtin, an atomic, a memcpy), which is every such macro GCC and clang define for the -march/-mcpu values in
 * tests/test_cpu_check.py. Not checked, because a compiler emits them only through their intrinsics (which
 * bitedge-run does not use) while firmware, hypervisors and cheaper parts often hide or lack them, so a check
 * would refuse builds that run fine (clang's -mcpu=cortex-a72 turns on AES and SHA2, which a Raspberry Pi 4 lacks):
 *   x86: AES, PCLMUL, VAES, VPCLMULQDQ, SHA, SHA512, SM3, SM4, ADX, CRC32 (the SSE4.2 bit, checked as SSE4.2),
 *   SSE4A, RDRND, RDSEED, RDPID, PREFETCHI, CLFLUSHOPT, CLWB, CLZERO, CLDEMOTE, WBNOINVD, XSAVE*, FSGSBASE, RTM,
 *   HLE, SGX, PKU, SHSTK, WAITPKG, MOVDIRI, MOVDIR64B, ENQCMD, KL, WIDEKL, UINTR, SERIALIZE, TSXLDTRK, PCONFIG,
 *   PTWRITE, HRESET, CMPCCXADD, RAOINT, USER_MSR, LWP, MWAITX, INVPCID, RDPRU, MOVRS, AMX_AVX512, AMX_FP8,
 *   AMX_MOVRS, AMX_TF32, AVX512VP2INTERSECT (GCC 12 puts it in
 *   -march=sapphirerapids, which lacks it); PRFCHW and PREFETCHWT1 (prefetches: NOPs where missing); the x86-64
 *   baseline (SSE, SSE2, MMX, FXSR). AMX is checked although only its intrinsics emit it, so that a
 *   sapphirerapids build names it on a CPU without it;
 *   aarch64: AES, SHA2, SHA3, SHA512, SM3, SM4, CRYPTO, CRC32, JCVT, RNG, MEMORY_TAGGING, LS64, FP8, SME, SME2,
 *   LOCALLY_STREAMING (SME code runs only in functions marked for it, which bitedge-run has none of), the
 *   SVE matrix and crypto extras (SVE_MATMUL_*, SVE_BF16, SVE2_AES, SVE2_BITPERM, SVE2_SHA3, SVE2_SM4), SVE's
 *   properties rather than instructions (SVE_BITS, SVE_VECTOR_OPERATORS, SVE_PREDICATE_OPERATORS,
 *   __ARM_NEON_SVE_BRIDGE), BTI and return-address signing (BTI, BTI_DEFAULT, PAC_DEFAULT, PAUTH: emitted only
 *   under -mbranch-protection, which bitedge builds do not pass, and mostly as hints that older cores run as NOPs),
 *   and the ARMv8.0 baseline (NEON, FMA, CLZ, IDIV, ...).
 * A macro a newer compiler adds goes here or there: tests/test_cpu_check.py fails until it does.
 *
 * Entries run most important first: a refusal names every missing one in this order. */
#ifndef BITEDGE_CPU_ISA_TABLE_H
#define BITEDGE_CPU_ISA_TABLE_H

#include <stddef.h> /* NULL */

/* x86: X(name, macro, cpuid leaf, subleaf, register, bit, XCR0 state the OS must save) */
#define BE_EAX 0
#define BE_EBX 1
#define BE_ECX 2
#define BE_EDX 3
#define BE_XCR0_NONE 0x0u
#define BE_XCR0_YMM 0x6u        /* XMM and YMM */
#define BE_XCR0_ZMM 0xe6u       /* plus opmask and the ZMM halves */
#define BE_XCR0_TILE 0x60006u   /* AMX tile config and data (AMX instructions also use XMM state) */
#define BE_XCR0_APX 0x80000u    /* the extended general registers */

#define BE_X86_ISA_TABLE(X)                                                   \
    X("AVX512F", __AVX512F__, 7, 0, BE_EBX, 16, BE_XCR0_ZMM)                  \
    X("EVEX512", __EVEX512__, 7, 0, BE_EBX, 16, BE_XCR0_ZMM)                  \
    X("AVX512CD", __AVX512CD__, 7, 0, BE_EBX, 28, BE_XCR0_ZMM)                \
    X("AVX512BW", __AVX512BW__, 7, 0, BE_EBX, 30, BE_XCR0_ZMM)                \
    X("AVX512DQ", __AVX512DQ__, 7, 0, BE_EBX, 17, BE_XCR0_ZMM)                \
    X("AVX512VL", __AVX512VL__, 7, 0, BE_EBX, 31, BE_XCR0_ZMM)                \
    X("AVX512VNNI", __AVX512VNNI__, 7, 0, BE_ECX, 11, BE_XCR0_ZMM)            \
    X("AVX512IFMA", __AVX512IFMA__, 7, 0, BE_EBX, 21, BE_XCR0_ZMM)            \
    X("AVX512VBMI", __AVX512VBMI__, 7, 0, BE_ECX, 1, BE_XCR0_ZMM)             \
    X("AVX512VBMI2", __AVX512VBMI2__, 7, 0, BE_ECX, 6, BE_XCR0_ZMM)           \
    X("AVX512BITALG", __AVX512BITALG__, 7, 0, BE_ECX, 12, BE_XCR0_ZMM)        \
    X("AVX512VPOPCNTDQ", __AVX512VPOPCNTDQ__, 7, 0, BE_ECX, 14, BE_XCR0_ZMM)  \
    X("AVX512BF16", __AVX512BF16__, 7, 1, BE_EAX, 5, BE_XCR0_ZMM)             \
    X("AVX512FP16", __AVX512FP16__, 7, 0, BE_EDX, 23, BE_XCR0_ZMM)            \
    X("AVX512PF", __AVX512PF__, 7, 0, BE_EBX, 26, BE_XCR0_ZMM)                \
    X("AVX512ER", __AVX512ER__, 7, 0, BE_EBX, 27, BE_XCR0_ZMM)                \
    X("AVX5124VNNIW", __AVX5124VNNIW__, 7, 0, BE_EDX, 2, BE_XCR0_ZMM)         \
    X("AVX5124FMAPS", __AVX5124FMAPS__, 7, 0, BE_EDX, 3, BE_XCR0_ZMM)         \
    X("AVX10.1", __AVX10_1__, 7, 1, BE_EDX, 19, BE_XCR0_ZMM)                  \
    X("AVX10.1-256", __AVX10_1_256__, 7, 1, BE_EDX, 19, BE_XCR0_ZMM)          \
    X("AVX10.1-512", __AVX10_1_512__, 7, 1, BE_EDX, 19, BE_XCR0_ZMM)          \
    /* AVX10.2: leaf 0x24's EBX[7:0] is the AVX10 version; bit 1 is set for versions 2 and 3, the ones defined */ \
    X("AVX10.2", __AVX10_2__, 0x24, 0, BE_EBX, 1, BE_XCR0_ZMM)                \
    X("AVX10.2-512", __AVX10_2_512__, 0x24, 0, BE_EBX, 1, BE_XCR0_ZMM)        \
    X("AMX-TILE", __AMX_TILE__, 7, 0, BE_EDX, 24, BE_XCR0_TILE)               \
    X("AMX-INT8", __AMX_INT8__, 7, 0, BE_EDX, 25, BE_XCR0_TILE)               \
    X("AMX-BF16", __AMX_BF16__, 7, 0, BE_EDX, 22, BE_XCR0_TILE)               \
    X("AMX-TILE", __AMXTILE__, 7, 0, BE_EDX, 24, BE_XCR0_TILE) /* clang's spelling */ \
    X("AMX-INT8", __AMXINT8__, 7, 0, BE_EDX, 25, BE_XCR0_TILE)                \
    X("AMX-BF16", __AMXBF16__, 7, 0, BE_EDX, 22, BE_XCR0_TILE)                \
    X("AMX-FP16", __AMXFP16__, 7, 1, BE_EAX, 21, BE_XCR0_TILE)                \
    X("AMX-COMPLEX", __AMXCOMPLEX__, 7, 1, BE_EDX, 8, BE_XCR0_TILE)           \
    X("AMX-FP16", __AMX_FP16__, 7, 1, BE_EAX, 21, BE_XCR0_TILE)               \
    X("AMX-COMPLEX", __AMX_COMPLEX__, 7, 1, BE_EDX, 8, BE_XCR0_TILE)          \
    X("AVX", __AVX__, 1, 0, BE_ECX, 28, BE_XCR0_YMM)                          \
    X("AVX2", __AVX2__, 7, 0, BE_EBX, 5, BE_XCR0_YMM)                         \
    X("FMA", __FMA__, 1, 0, BE_ECX, 12, BE_XCR0_YMM)                          \
    X("F16C", __F16C__, 1, 0, BE_ECX, 29, BE_XCR0_YMM)                        \
    X("AVXVNNI", __AVXVNNI__, 7, 1, BE_EAX, 4, BE_XCR0_YMM)                   \
    X("AVXIFMA", __AVXIFMA__, 7, 1, BE_EAX, 23, BE_XCR0_YMM)                  \
    X("AVXVNNIINT8", __AVXVNNIINT8__, 7, 1, BE_EDX, 4, BE_XCR0_YMM)           \
    X("AVXVNNIINT16", __AVXVNNIINT16__, 7, 1, BE_EDX, 10, BE_XCR0_YMM)        \
    X("AVXNECONVERT", __AVXNECONVERT__, 7, 1, BE_EDX, 5, BE_XCR0_YMM)         \
    X("XOP", __XOP__, 0x80000001u, 0, BE_ECX, 11, BE_XCR0_YMM)                \
    X("FMA4", __FMA4__, 0x80000001u, 0, BE_ECX, 16, BE_XCR0_YMM)              \
    X("SSE3", __SSE3__, 1, 0, BE_ECX, 0, BE_XCR0_NONE)                        \
    X("SSSE3", __SSSE3__, 1, 0, BE_ECX, 9, BE_XCR0_NONE)                      \
    X("SSE4.1", __SSE4_1__, 1, 0, BE_ECX, 19, BE_XCR0_NONE)                   \
    X("SSE4.2", __SSE4_2__, 1, 0, BE_ECX, 20, BE_XCR0_NONE)                   \
    X("POPCNT", __POPCNT__, 1, 0, BE_ECX, 23, BE_XCR0_NONE)                   \
    X("LZCNT", __LZCNT__, 0x80000001u, 0, BE_ECX, 5, BE_XCR0_NONE)            \
    X("ABM", __ABM__, 0x80000001u, 0, BE_ECX, 5, BE_XCR0_NONE)                \
    X("BMI", __BMI__, 7, 0, BE_EBX, 3, BE_XCR0_NONE)                          \
    X("BMI2", __BMI2__, 7, 0, BE_EBX, 8, BE_XCR0_NONE)                        \
    X("TBM", __TBM__, 0x80000001u, 0, BE_ECX, 21, BE_XCR0_NONE)               \
    X("MOVBE", __MOVBE__, 1, 0, BE_ECX, 22, BE_XCR0_NONE)                     \
    X("CX16", __GCC_HAVE_SYNC_COMPARE_AND_SWAP_16, 1, 0, BE_ECX, 13, BE_XCR0_NONE) \
    X("LAHF-SAHF", __LAHF_SAHF__, 0x80000001u, 0, BE_ECX, 0, BE_XCR0_NONE)    \
    X("GFNI", __GFNI__, 7, 0, BE_ECX, 8, BE_XCR0_NONE)                        \
    X("APX-F", __APX_F__, 7, 1, BE_EDX, 21, BE_XCR0_APX)                      \
    X("APX-EGPR", __EGPR__, 7, 1, BE_EDX, 21, BE_XCR0_APX) /* APX's parts */  \
    X("APX-NDD", __NDD__, 7, 1, BE_EDX, 21, BE_XCR0_APX)                      \
    X("APX-CCMP", __CCMP__, 7, 1, BE_EDX, 21, BE_XCR0_APX)                    \
    X("APX-NF", __NF__, 7, 1, BE_EDX, 21, BE_XCR0_APX)                        \
    X("APX-PPX", __PPX__, 7, 1, BE_EDX, 21, BE_XCR0_APX)                      \
    X("APX-PUSH2POP2", __PUSH2POP2__, 7, 1, BE_EDX, 21, BE_XCR0_APX)          \
    X("APX-ZU", __ZU__, 7, 1, BE_EDX, 21, BE_XCR0_APX)

/* aarch64: X(name, macro, Linux AT_HWCAP word (1 or 2), its bits (all needed), macOS sysctl or NULL)
 * Bits: the Linux arm64 uapi <asm/hwcap.h>, by number so that older libc headers do not matter. On macOS a
 * feature whose sysctl is absent (older macOS) is taken as present: refuse only on what the OS says. */
#define BE_HWCAP_BIT(n) (1ul << (n))

#define BE_ARM_ISA_TABLE(X)                                                                                    \
    X("DOTPROD", __ARM_FEATURE_DOTPROD, 1, BE_HWCAP_BIT(20), "hw.optional.arm.FEAT_DotProd")                 \
    X("I8MM", __ARM_FEATURE_MATMUL_INT8, 2, BE_HWCAP_BIT(13), "hw.optional.arm.FEAT_I8MM")                    \
    X("FP16", __ARM_FEATURE_FP16_VECTOR_ARITHMETIC, 1, BE_HWCAP_BIT(10), "hw.optional.arm.FEAT_FP16")         \
    X("FP16 (scalar)", __ARM_FEATURE_FP16_SCALAR_ARITHMETIC, 1, BE_HWCAP_BIT(9), "hw.optional.arm.FEAT_FP16") \
    X("FP16FML", __ARM_FEATURE_FP16_FML, 1, BE_HWCAP_BIT(23), "hw.optional.arm.FEAT_FHM")                     \
    X("BF16", __ARM_FEATURE_BF16, 2, BE_HWCAP_BIT(14), "hw.optional.arm.FEAT_BF16")                           \
    X("BF16 (vector)", __ARM_FEATURE_BF16_VECTOR_ARITHMETIC, 2, BE_HWCAP_BIT(14), "hw.optional.arm.FEAT_BF16") \
    X("BF16 (scalar)", __ARM_FEATURE_BF16_SCALAR_ARITHMETIC, 2, BE_HWCAP_BIT(14), "hw.optional.arm.FEAT_BF16") \
    X("SVE", __ARM_FEATURE_SVE, 1, BE_HWCAP_BIT(22), "hw.optional.arm.FEAT_SVE")                              \
    X("SVE2", __ARM_FEATURE_SVE2, 2, BE_HWCAP_BIT(1), "hw.optional.arm.FEAT_SVE2")                            \
    X("SVE2.1", __ARM_FEATURE_SVE2p1, 2, BE_HWCAP_BIT(36), NULL)                                             \
    X("LSE atomics", __ARM_FEATURE_ATOMICS, 1, BE_HWCAP_BIT(8), "hw.optional.arm.FEAT_LSE")                   \
    X("RDM", __ARM_FEATURE_QRDMX, 1, BE_HWCAP_BIT(12), "hw.optional.arm.FEAT_RDM")                            \
    X("FCMA", __ARM_FEATURE_COMPLEX, 1, BE_HWCAP_BIT(14), "hw.optional.arm.FEAT_FCMA")                        \
    X("FRINTTS", __ARM_FEATURE_FRINT, 2, BE_HWCAP_BIT(8), "hw.optional.arm.FEAT_FRINTTS")                     \
    X("RCPC", __ARM_FEATURE_RCPC, 1, BE_HWCAP_BIT(15), "hw.optional.arm.FEAT_LRCPC")                          \
    X("MOPS", __ARM_FEATURE_MOPS, 2, BE_HWCAP_BIT(43), NULL)                                                 \
    X("CSSC", __ARM_FEATURE_CSSC, 2, BE_HWCAP_BIT(34), NULL)

#if defined(__x86_64__) || defined(__i386__)
#define BE_ISA_TABLE BE_X86_ISA_TABLE
#elif defined(__aarch64__)
#define BE_ISA_TABLE BE_ARM_ISA_TABLE
#endif

/* What a macro stood for where it is expanded: "1" (or its value) when the compiler defined it, its own name
 * when not. BE_ISA_STR's argument is macro-expanded first because BE_ISA_VALUE does not stringify it directly. */
#define BE_ISA_STR(x) #x
#define BE_ISA_VALUE(x) BE_ISA_STR(x)

#ifdef BE_ISA_TABLE
/* one string per table entry, in table order, expanded where the build's CPU flags apply (cpu_build_isa.c) */
#define BE_ISA_BUILT_VALUE(name, macro, ...) BE_ISA_VALUE(macro),
#define BE_ISA_BUILT_VALUES {BE_ISA_TABLE(BE_ISA_BUILT_VALUE) NULL}
extern const char *const be_build_isa_values[];
#endif

#endif
