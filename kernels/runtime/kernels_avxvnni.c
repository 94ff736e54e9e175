/* AVX-VNNI kernels (x86-64 client CPUs without AVX-512: Intel Alder Lake, Raptor Lake, Meteor Lake and later
 * cores; AMD Zen 5 also has it, beside AVX-512 VNNI, which kernels.c prefers there).
 *
 * AVX-VNNI is the VEX encoding of vpdpbusd on xmm/ymm (CPUID.(EAX=7,ECX=1):EAX bit 4), decoded by CPUs that
 * have no EVEX at all. The I2_S gemv and gemm are kernels_vnni_i2s.h, the same source the avx512-vnni table
 * instantiates with the EVEX vpdpbusd, here with _mm256_dpbusd_avx_epi32 under target("avxvnni,avx2,..."):
 * nothing in this file may need AVX-512, so every function is compiled without it (tests/test_c_kernels.py
 * disassembles the object: VEX vpdpbusd on ymm, no EVEX instruction, no zmm).
 *
 * The float gemv and the activation quantization are the avx2 table's (AVX-VNNI adds nothing to either): the
 * table calls them through be_kernels_avx2, one indirect call per matrix, not per row.
 *
 * Evidence, as this table cannot run on any CPU the project has had (Zen 3: no VNNI; Zen 4: AVX-512 VNNI but not
 * AVX-VNNI; qemu TCG up to 10.0 does not implement it): docs/kernels.md "AVX-VNNI". */
#include "cpu_features.h"
#include "kernels.h"

#if BE_HAVE_AVXVNNI_KERNELS

#include <immintrin.h>

#define BE_VNNI_TARGET "avxvnni,avx2,fma,f16c"
#define BE_VNNI __attribute__((target(BE_VNNI_TARGET)))
#define BE_VNNI_INLINE static inline __attribute__((target(BE_VNNI_TARGET), always_inline))

#define BE_VNNI_REGS16 1 /* VEX: ymm0-15 (the gemm tile is sized for them in kernels_vnni_i2s.h) */
#define BE_VNNI_DPBUSD256 _mm256_dpbusd_avx_epi32
#define BE_VNNI_SUFFIX avxvnni
#include "kernels_vnni_i2s.h"

const be_kernels be_kernels_avxvnni = {"avx-vnni", i2s_gemv_avxvnni, i2s_gemm_avxvnni, be_float_gemv_avx2,
                                       be_quantize_row_i8_avx2, be_q8_0_i16_gemv_avx2};

#else
typedef int be_kernels_avxvnni_unused; /* ISO C wants a declaration in every translation unit */
#endif
