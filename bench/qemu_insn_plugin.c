/* qemu_insn_plugin.c: a QEMU TCG plugin that counts executed guest instructions per translation block, for
 * bench/arm_insn_count.py (instructions per generated token of bitedge-run under qemu-aarch64, split by function).
 *
 *   gcc -shared -fPIC -O2 bench/qemu_insn_plugin.c -o build/qemu_insn_plugin.so
 *   qemu-aarch64 -cpu cortex-a76 -plugin build/qemu_insn_plugin.so,out=counts.txt bitedge-run generate ...
 *
 * Output: one line per translated block, "vaddr n_insns executions" (hex, dec, dec); a block translated more than
 * once appears once per translation (the script sums by address). Instruction counts are exact and repeatable: the
 * counter is an inline add per block execution, whatever else the machine does.
 *
 * QEMU's plugin header (qemu-plugin.h) is not packaged by Debian, so the few API v1 entry points used here are
 * declared below with the signatures of QEMU 7.2's include/qemu/qemu-plugin.h (all still present in 8.x). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*tb_trans_cb)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*atexit_cb)(qemu_plugin_id_t id, void *userdata);

extern void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, tb_trans_cb cb);
extern size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
extern uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
extern void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op, void *ptr,
                                                     uint64_t imm);
extern void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, atexit_cb cb, void *userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

typedef struct {
    uint64_t vaddr, n_insns, count;
} block;

/* blocks live in chunks that never move, because the inline counters point into them */
#define CHUNK 65536
static block *chunks[4096];
static size_t n_blocks;
static char out_path[4096] = "qemu_insn_counts.txt";

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    if (n_blocks >= (size_t)CHUNK * 4096) return; /* 268M translations: more than any run here makes */
    if (n_blocks % CHUNK == 0) chunks[n_blocks / CHUNK] = calloc(CHUNK, sizeof(block));
    block *b = &chunks[n_blocks / CHUNK][n_blocks % CHUNK];
    n_blocks++;
    b->vaddr = qemu_plugin_tb_vaddr(tb);
    b->n_insns = qemu_plugin_tb_n_insns(tb);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &b->count, 1);
}

static void on_exit_(qemu_plugin_id_t id, void *userdata) {
    (void)id;
    (void)userdata;
    FILE *f = fopen(out_path, "w");
    if (!f) return;
    for (size_t i = 0; i < n_blocks; i++) {
        const block *b = &chunks[i / CHUNK][i % CHUNK];
        if (b->count) fprintf(f, "%llx %llu %llu\n", (unsigned long long)b->vaddr, (unsigned long long)b->n_insns,
                              (unsigned long long)b->count);
    }
    fclose(f);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                                                int argc, char **argv) {
    (void)info;
    for (int i = 0; i < argc; i++)
        if (!strncmp(argv[i], "out=", 4)) snprintf(out_path, sizeof out_path, "%s", argv[i] + 4);
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_exit_, NULL);
    return 0;
}
