/* Run-time CPU feature detection (see cpu_features.h). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#if defined(__APPLE__) && !defined(_DARWIN_C_SOURCE)
#define _DARWIN_C_SOURCE  /* sysctlbyname */
#endif

#include "cpu_features.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cpu_isa_table.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif
#if defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>
#include <sys/types.h>
#endif

static be_cpu_features features;
static pthread_once_t features_once = PTHREAD_ONCE_INIT;

/* ----------------------------------------------------------------------------------------------------------
 * x86: cpuid leaves 1 and 7, and XCR0 (the OS saves the YMM / ZMM registers on a context switch) */

#if defined(__x86_64__) || defined(__i386__)
static uint64_t read_xcr0(void) {
    uint32_t lo, hi;
    /* xgetbv with ecx = 0; as raw bytes so the file needs no -mxsave */
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static void detect(be_cpu_features *f) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    const int osxsave = (c >> 27) & 1;
    f->sse3 = c & 1;
    f->ssse3 = (c >> 9) & 1;
    const uint64_t xcr0 = osxsave ? read_xcr0() : 0;
    const int os_avx = (xcr0 & 0x6) == 0x6;         /* XMM and YMM state */
    const int os_avx512 = (xcr0 & 0xe6) == 0xe6;    /* plus opmask and ZMM state */
    f->avx = os_avx && ((c >> 28) & 1);
    f->fma = f->avx && ((c >> 12) & 1);
    f->f16c = f->avx && ((c >> 29) & 1);
    if ((unsigned)__get_cpuid_max(0, NULL) >= 7u) {
        __cpuid_count(7, 0, a, b, c, d);
        f->avx2 = f->avx && ((b >> 5) & 1);
        f->avx512f = os_avx512 && ((b >> 16) & 1);
        f->avx512bw = f->avx512f && ((b >> 30) & 1);
        f->avx512vl = f->avx512f && ((b >> 31) & 1);
        f->avx512_vnni = f->avx512f && ((c >> 11) & 1);
        const unsigned max_subleaf = a;  /* leaf 7, subleaf 0: EAX is the highest subleaf */
        if (max_subleaf >= 1) {
            /* AVX-VNNI: the VEX vpdpbusd on ymm; needs the YMM state (f->avx2 includes it), not the ZMM one */
            __cpuid_count(7, 1, a, b, c, d);
            f->avx_vnni = f->avx2 && ((a >> 4) & 1);
        }
    }
}

void be_cpu_name(char *buf, size_t cap) {
    unsigned regs[12];
    if (cap == 0) return;
    if ((unsigned)__get_cpuid_max(0x80000000u, NULL) < 0x80000004u) {
        snprintf(buf, cap, "unknown x86");
        return;
    }
    for (unsigned i = 0; i < 3; i++)
        __get_cpuid(0x80000002u + i, &regs[4 * i], &regs[4 * i + 1], &regs[4 * i + 2], &regs[4 * i + 3]);
    char brand[49];
    memcpy(brand, regs, 48);
    brand[48] = '\0';
    const char *s = brand;
    while (*s == ' ') s++;
    snprintf(buf, cap, "%s", *s ? s : "unknown x86");
}

/* ----------------------------------------------------------------------------------------------------------
 * aarch64: NEON and its FMA are baseline; dotprod, i8mm, fp16, SVE from the kernel's HWCAPs or macOS sysctl */

#elif defined(__aarch64__)
#if defined(__linux__)
/* the bit values of the Linux arm64 uapi <asm/hwcap.h>, for libcs whose headers predate them */
#define BE_HWCAP_FPHP (1ul << 9)
#define BE_HWCAP_ASIMDHP (1ul << 10)
#define BE_HWCAP_ASIMDDP (1ul << 20)
#define BE_HWCAP_SVE (1ul << 22)
#define BE_HWCAP2_I8MM (1ul << 13)
#define BE_HWCAP_ASIMD (1ul << 1)

static void detect(be_cpu_features *f) {
    const unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    f->neon = (hw & BE_HWCAP_ASIMD) != 0;
    f->arm_fma = f->neon;
    f->fp16 = (hw & BE_HWCAP_FPHP) && (hw & BE_HWCAP_ASIMDHP);
    f->dotprod = f->neon && (hw & BE_HWCAP_ASIMDDP) != 0;
    f->i8mm = f->neon && (hw2 & BE_HWCAP2_I8MM) != 0;
    f->sve = (hw & BE_HWCAP_SVE) != 0;
}
#elif defined(__APPLE__)
static int sysctl_flag(const char *name) {
    int v = 0;
    size_t len = sizeof(v);
    return sysctlbyname(name, &v, &len, NULL, 0) == 0 && v != 0;
}

static void detect(be_cpu_features *f) {
    f->neon = 1;
    f->arm_fma = 1;
    f->fp16 = sysctl_flag("hw.optional.arm.FEAT_FP16");
    f->dotprod = sysctl_flag("hw.optional.arm.FEAT_DotProd");
    f->i8mm = sysctl_flag("hw.optional.arm.FEAT_I8MM");
}
#else
static void detect(be_cpu_features *f) {
    f->neon = 1;  /* baseline on aarch64; extensions unknown on this OS, so not used */
    f->arm_fma = 1;
}
#endif

/* ARM core names by (implementer, part) from MIDR_EL1, for the cores edge boards use */
static const char *arm_part_name(unsigned impl, unsigned part) {
    static const struct { unsigned impl, part; const char *name; } parts[] = {
        {0x41, 0xd03, "Cortex-A53"}, {0x41, 0xd04, "Cortex-A35"}, {0x41, 0xd05, "Cortex-A55"},
        {0x41, 0xd07, "Cortex-A57"}, {0x41, 0xd08, "Cortex-A72"}, {0x41, 0xd09, "Cortex-A73"},
        {0x41, 0xd0a, "Cortex-A75"}, {0x41, 0xd0b, "Cortex-A76"}, {0x41, 0xd0c, "Neoverse-N1"},
        {0x41, 0xd0d, "Cortex-A77"}, {0x41, 0xd40, "Neoverse-V1"}, {0x41, 0xd41, "Cortex-A78"},
        {0x41, 0xd44, "Cortex-X1"}, {0x41, 0xd46, "Cortex-A510"}, {0x41, 0xd47, "Cortex-A710"},
        {0x41, 0xd48, "Cortex-X2"}, {0x41, 0xd49, "Neoverse-N2"}, {0x41, 0xd4f, "Neoverse-V2"},
        {0x41, 0xd80, "Cortex-A520"}, {0x41, 0xd81, "Cortex-A720"}, {0x41, 0xd82, "Cortex-X4"},
    };
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
        if (parts[i].impl == impl && parts[i].part == part) return parts[i].name;
    return NULL;
}

void be_cpu_name(char *buf, size_t cap) {
    if (cap == 0) return;
    snprintf(buf, cap, "unknown aarch64");
#if defined(__APPLE__)
    size_t len = cap;
    if (sysctlbyname("machdep.cpu.brand_string", buf, &len, NULL, 0) != 0) snprintf(buf, cap, "unknown aarch64");
#else
    FILE *fp = fopen("/proc/cpuinfo", "r");
    if (!fp) return;
    char line[256], model[128] = "";
    unsigned impl = 0, part = 0;
    while (fgets(line, sizeof(line), fp)) {
        char *colon = strchr(line, ':');
        if (!colon) continue;
        if (!strncmp(line, "CPU implementer", 15) && !impl) sscanf(colon + 1, "%x", &impl);
        else if (!strncmp(line, "CPU part", 8) && !part) sscanf(colon + 1, "%x", &part);
        else if ((!strncmp(line, "model name", 10) || !strncmp(line, "Model", 5)) && !model[0]) {
            const char *s = colon + 1;
            while (*s == ' ' || *s == '\t') s++;
            snprintf(model, sizeof(model), "%.*s", (int)strcspn(s, "\n"), s);
        }
    }
    fclose(fp);
    const char *core = arm_part_name(impl, part);
    if (core && model[0]) snprintf(buf, cap, "%s (%s)", core, model);
    else if (core) snprintf(buf, cap, "%s", core);
    else if (model[0]) snprintf(buf, cap, "%s", model);
    else if (impl || part) snprintf(buf, cap, "aarch64 implementer 0x%02x part 0x%03x", impl, part);
#endif
}

#else
static void detect(be_cpu_features *f) { (void)f; }

void be_cpu_name(char *buf, size_t cap) {
    if (cap) snprintf(buf, cap, "unknown");
}
#endif

/* ---------------------------------------------------------------------------------------------------------- */

static void detect_once(void) { detect(&features); }

const be_cpu_features *be_cpu_get(void) {
    pthread_once(&features_once, detect_once);
    return &features;
}

void be_system_info(char *buf, size_t cap) {
    const be_cpu_features *f = be_cpu_get();
    if (cap == 0) return;
    snprintf(buf, cap,
             "AVX = %d | AVX_VNNI = %d | AVX2 = %d | AVX512 = %d | AVX512_VNNI = %d | FMA = %d | NEON = %d | ARM_FMA = %d | F16C = %d"
             " | FP16_VA = %d | DOTPROD = %d | MATMUL_INT8 = %d | SVE = %d | SSE3 = %d | SSSE3 = %d |",
             f->avx, f->avx_vnni, f->avx2, f->avx512f, f->avx512_vnni, f->fma, f->neon, f->arm_fma, f->f16c, f->fp16, f->dotprod,
             f->i8mm, f->sve, f->sse3, f->ssse3);
}

/* ----------------------------------------------------------------------------------------------------------
 * the build check: the one table in cpu_isa_table.h, what the compiler was told (be_build_isa_values, from
 * cpu_build_isa.c) against what this CPU says. Read straight from cpuid / HWCAP, not from be_cpu_features:
 * that struct is for kernel dispatch, this for every instruction set the build may hold. */

#ifdef BE_ISA_TABLE
/* This file's own view, for programs that link cpu_features.c without cpu_build_isa.c (the kernel tests, the
 * tuner's drivers: every file compiled with the same flags). A real build links cpu_build_isa.c, whose strong
 * definition wins: there this file is compiled for the baseline and its own macros say nothing. */
__attribute__((weak)) const char *const be_build_isa_values[] = BE_ISA_BUILT_VALUES;

#define BE_ISA_MACRO_NAME(name, macro, ...) #macro,
#define BE_ISA_LABEL(name, ...) name,
static const char *const isa_macro_names[] = {BE_ISA_TABLE(BE_ISA_MACRO_NAME) NULL};
static const char *const isa_labels[] = {BE_ISA_TABLE(BE_ISA_LABEL) NULL};
#endif

#if defined(__x86_64__) || defined(__i386__)
#define BE_ISA_PROBE(name, macro, leaf, subleaf, reg, bit, xcr0) {leaf, subleaf, reg, bit, xcr0},
static const struct { unsigned leaf, subleaf, reg, bit, xcr0; } isa_probes[] = {BE_ISA_TABLE(BE_ISA_PROBE)};

static int cpu_has_isa(size_t i) {
    unsigned r[4] = {0, 0, 0, 0};
    const unsigned leaf = isa_probes[i].leaf;
    if ((unsigned)__get_cpuid_max(leaf & 0x80000000u, NULL) < leaf) return 0;
    if (leaf == 7 && isa_probes[i].subleaf > 0) {
        __cpuid_count(7, 0, r[0], r[1], r[2], r[3]);
        if (r[0] < isa_probes[i].subleaf) return 0;  /* leaf 7's EAX: the highest subleaf */
    }
    __cpuid_count(leaf, isa_probes[i].subleaf, r[0], r[1], r[2], r[3]);
    if (!((r[isa_probes[i].reg] >> isa_probes[i].bit) & 1)) return 0;
    if (isa_probes[i].xcr0) {
        __cpuid(1, r[0], r[1], r[2], r[3]);
        if (!((r[2] >> 27) & 1)) return 0;  /* no OSXSAVE: the OS saves no extended state */
        if ((read_xcr0() & isa_probes[i].xcr0) != isa_probes[i].xcr0) return 0;
    }
    return 1;
}
#elif defined(__aarch64__)
#define BE_ISA_PROBE(name, macro, word, bits, sysctl) {word, bits, sysctl},
static const struct { int word; unsigned long bits; const char *sysctl; } isa_probes[] = {BE_ISA_TABLE(BE_ISA_PROBE)};

static int cpu_has_isa(size_t i) {
#if defined(__linux__)
    const unsigned long hw = getauxval(isa_probes[i].word == 2 ? AT_HWCAP2 : AT_HWCAP);
    return (hw & isa_probes[i].bits) == isa_probes[i].bits;
#elif defined(__APPLE__)
    int v = 0;
    size_t len = sizeof(v);
    if (!isa_probes[i].sysctl || sysctlbyname(isa_probes[i].sysctl, &v, &len, NULL, 0) != 0) return 1;  /* unknown */
    return v != 0;
#else
    (void)i;
    return 1;  /* no way to ask this OS: do not refuse */
#endif
}
#endif

int be_cpu_check_build(char *err, size_t cap) {
    char missing[768];  /* not "= {0}": a build that compiles this file with -mavx512f would zero it with ZMM stores */
    size_t used = 0;
    missing[0] = '\0';
    int n_missing = 0;
#ifdef BE_ISA_TABLE
    for (size_t i = 0; isa_macro_names[i]; i++) {
        /* the build's value of the macro differs from its name exactly when the compiler defined it */
        if (!strcmp(be_build_isa_values[i], isa_macro_names[i]) || cpu_has_isa(i)) continue;
        int w = snprintf(missing + used, sizeof(missing) - used, "%s%s", n_missing ? ", " : "", isa_labels[i]);
        if (w > 0) used = used + (size_t)w < sizeof(missing) ? used + (size_t)w : sizeof(missing) - 1;
        n_missing++;
    }
#endif
    if (!n_missing) return 0;
    if (cap) {
        char name[128];
        be_cpu_name(name, sizeof(name));
        snprintf(err, cap,
                 "this build of bitedge-run was compiled to use %s, which this CPU (%s) does not have; "
                 "rebuild for this board's profile (bitedge build --target TARGET, or bitedge probe --host HOST to find it)",
                 missing, name);
    }
    return -1;
}

/* Before main() and before any other file's code runs: those files are compiled for the build's ISA and may use
 * it anywhere, main() included. */
__attribute__((constructor)) static void check_build_before_main(void) {
    char err[1024];
    if (be_cpu_check_build(err, sizeof(err)) == 0) return;
    fprintf(stderr, "bitedge-run: error: %s\n", err);
    fflush(stderr);
    _exit(3);  /* EXIT_CPU_MISMATCH (main.c); no atexit handlers: nothing has started */
}
