/* A small pthread pool (see threadpool.h).
 *
 * be_pool_run publishes (fn, ctx) by bumping a generation counter; workers spin on it for a short while
 * (a token's forward pass calls be_pool_run a few hundred times, and a condition-variable wake-up costs tens
 * of microseconds), yield, and then sleep on a condition variable. Completion is the same: the caller waits
 * on the count of unfinished workers the same way. Both counters are read under the mutex before sleeping and
 * changed before signalling under it, so no wake-up is lost. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

/* Waiting is three-staged: BE_POOL_SPIN pause-spins (a few microseconds), then BE_POOL_YIELDS sched_yield()s
 * (lets a thread that is not running yet, e.g. on an oversubscribed or busy board, take the core instead of
 * burning our time slice), then a condition variable. */
#define BE_POOL_SPIN 2000
#define BE_POOL_YIELDS 50

typedef struct {
    be_pool *pool;
    int ith;
} worker_arg;

struct be_pool {
    int nthreads;          /* including the caller (thread 0) */
    pthread_t *threads;    /* [nthreads - 1] */
    worker_arg *args;      /* [nthreads - 1] */
    pthread_mutex_t mutex;
    pthread_cond_t start;  /* generation changed or quit */
    pthread_cond_t done;   /* pending reached 0 */
    atomic_uint generation;
    atomic_int pending;    /* workers still running the current task */
    atomic_int quit;
    be_task_fn fn;         /* written before generation is bumped */
    void *ctx;
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

/* spin, then yield, while *counter == value (the caller sleeps afterwards if it still is) */
static void wait_briefly_uint(atomic_uint *counter, unsigned value, atomic_int *quit) {
    for (int i = 0; i < BE_POOL_SPIN && atomic_load(counter) == value && !atomic_load(quit); i++) cpu_relax();
    for (int i = 0; i < BE_POOL_YIELDS && atomic_load(counter) == value && !atomic_load(quit); i++) sched_yield();
}

static void wait_briefly_pending(atomic_int *pending) {
    for (int i = 0; i < BE_POOL_SPIN && atomic_load(pending) > 0; i++) cpu_relax();
    for (int i = 0; i < BE_POOL_YIELDS && atomic_load(pending) > 0; i++) sched_yield();
}

static void *worker_main(void *p) {
    worker_arg *arg = p;
    be_pool *pool = arg->pool;
    unsigned seen = 0;
    for (;;) {
        wait_briefly_uint(&pool->generation, seen, &pool->quit);
        unsigned gen = atomic_load(&pool->generation);
        if (gen == seen) {
            pthread_mutex_lock(&pool->mutex);
            while ((gen = atomic_load(&pool->generation)) == seen && !atomic_load(&pool->quit))
                pthread_cond_wait(&pool->start, &pool->mutex);
            pthread_mutex_unlock(&pool->mutex);
        }
        if (atomic_load(&pool->quit)) break;
        seen = gen;
        pool->fn(pool->ctx, arg->ith, pool->nthreads);
        if (atomic_fetch_sub(&pool->pending, 1) == 1) {
            pthread_mutex_lock(&pool->mutex);
            pthread_cond_signal(&pool->done);
            pthread_mutex_unlock(&pool->mutex);
        }
    }
    return NULL;
}

be_pool *be_pool_create(int nthreads) {
    if (nthreads < 1) nthreads = 1;
    be_pool *pool = calloc(1, sizeof(*pool));
    if (!pool) return NULL;
    pool->nthreads = nthreads;
    atomic_init(&pool->generation, 0);
    atomic_init(&pool->pending, 0);
    atomic_init(&pool->quit, 0);
    if (nthreads == 1) return pool;
    pool->threads = calloc((size_t)nthreads - 1, sizeof(pthread_t));
    pool->args = calloc((size_t)nthreads - 1, sizeof(worker_arg));
    if (!pool->threads || !pool->args) goto fail;
    pthread_mutex_init(&pool->mutex, NULL);
    pthread_cond_init(&pool->start, NULL);
    pthread_cond_init(&pool->done, NULL);
    for (int i = 0; i < nthreads - 1; i++) {
        pool->args[i].pool = pool;
        pool->args[i].ith = i + 1;
        if (pthread_create(&pool->threads[i], NULL, worker_main, &pool->args[i]) != 0) {
            pool->nthreads = i + 1;  /* the threads started so far, joined by be_pool_free */
            be_pool_free(pool);
            return NULL;
        }
    }
    return pool;
fail:
    free(pool->threads);
    free(pool->args);
    free(pool);
    return NULL;
}

void be_pool_run(be_pool *pool, be_task_fn fn, void *ctx) {
    if (!pool || pool->nthreads == 1) {
        fn(ctx, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->ctx = ctx;
    atomic_store(&pool->pending, pool->nthreads - 1);
    pthread_mutex_lock(&pool->mutex);
    atomic_fetch_add(&pool->generation, 1);
    pthread_cond_broadcast(&pool->start);
    pthread_mutex_unlock(&pool->mutex);

    fn(ctx, 0, pool->nthreads);

    wait_briefly_pending(&pool->pending);
    if (atomic_load(&pool->pending) > 0) {
        pthread_mutex_lock(&pool->mutex);
        while (atomic_load(&pool->pending) > 0) pthread_cond_wait(&pool->done, &pool->mutex);
        pthread_mutex_unlock(&pool->mutex);
    }
}

int be_pool_size(const be_pool *pool) { return pool ? pool->nthreads : 1; }

void be_pool_free(be_pool *pool) {
    if (!pool) return;
    if (pool->threads) {
        pthread_mutex_lock(&pool->mutex);
        atomic_store(&pool->quit, 1);
        pthread_cond_broadcast(&pool->start);
        pthread_mutex_unlock(&pool->mutex);
        for (int i = 0; i < pool->nthreads - 1; i++) pthread_join(pool->threads[i], NULL);
        pthread_mutex_destroy(&pool->mutex);
        pthread_cond_destroy(&pool->start);
        pthread_cond_destroy(&pool->done);
    }
    free(pool->threads);
    free(pool->args);
    free(pool);
}

void be_split_range(int n, int ith, int nth, int align, int *start, int *end) {
    if (nth < 1) nth = 1;
    if (align < 1) align = 1;
    const long long chunks = ((long long)n + align - 1) / align;
    const long long c0 = chunks * ith / nth, c1 = chunks * (ith + 1) / nth;
    long long s = c0 * align, e = c1 * align;
    if (s > n) s = n;
    if (e > n) e = n;
    *start = (int)s;
    *end = (int)e;
}
