/* A small pthread pool: be_pool_run calls fn(ctx, ith, nth) on nth threads (the caller is thread 0)
 * and returns when all are done. Work is split by the callee from (ith, nth).
 * be_pool_create returns NULL when threads cannot be created; be_pool_run(NULL, ...) and a pool of 1 thread
 * run fn(ctx, 0, 1) inline. One be_pool_run at a time per pool (do not call it from inside fn). Waiting
 * workers spin briefly, yield, then sleep on a condition variable (threadpool.c). */
#ifndef BITEDGE_THREADPOOL_H
#define BITEDGE_THREADPOOL_H

typedef struct be_pool be_pool;
typedef void (*be_task_fn)(void *ctx, int ith, int nth);

be_pool *be_pool_create(int nthreads);
void be_pool_run(be_pool *pool, be_task_fn fn, void *ctx);
int be_pool_size(const be_pool *pool);
void be_pool_free(be_pool *pool);
/* [start, end) of n items for thread ith of nth, in chunks of `align` items (the last chunk may be short). */
void be_split_range(int n, int ith, int nth, int align, int *start, int *end);

#endif
