/* A small pool of worker threads for the work between GEMMs (norms, activations, attention
 * heads), which OpenBLAS does not thread. A forward pass's state owns one, sized to OpenBLAS's
 * thread count, so `OPENBLAS_NUM_THREADS` sets the threads of the whole pass. Items are split into
 * contiguous ranges; each item's result is computed the same way whatever range it lands in, so
 * results do not depend on the thread count. Workers sleep on a condition variable between calls:
 * they never spin against OpenBLAS's own threads. */
#ifndef NN_POOL_H
#define NN_POOL_H

#include <stddef.h>

#include "nn_base.h"

typedef struct nn_pool nn_pool;

/* fn handles items [begin, end) as worker `worker` (0 is the calling thread). */
typedef void (*nn_pool_fn)(void *ctx, size_t begin, size_t end, int worker);

/* A pool of n_threads (the caller counts as one; n_threads <= 1 starts no thread). */
int nn_pool_create(nn_pool **out, int n_threads, nn_err *err);
void nn_pool_free(nn_pool *pool);
/* Threads of the pool, the caller included. */
int nn_pool_threads(const nn_pool *pool);
/* Runs fn over n items split across the threads, and returns when all are done. Fewer than
 * min_per_thread items per thread run on fewer threads (waking a thread costs microseconds). */
void nn_pool_run(nn_pool *pool, size_t n, size_t min_per_thread, nn_pool_fn fn, void *ctx);

/* Tells OpenBLAS's worker threads to sleep almost at once when a GEMM ends (2^12 cycles of
 * spinning instead of its default 2^28), unless OPENBLAS_THREAD_TIMEOUT is already set. Between
 * GEMMs the pool's threads run the norms, activations and attention; an OpenBLAS thread spinning
 * on sched_yield beside them takes a share of the same cores (bench/: +6% on two cores, nothing on
 * one). Call once at start-up, before other threads use BLAS: it restarts OpenBLAS's threads.
 * Returns true when it set the variable and restarted the threads: the BLAS exports OpenBLAS's
 * openblas_read_env and blas_thread_shutdown_ (its pthreads build; its OpenMP build too, where the
 * timeout has no effect) and the variable was unset. A serial or other BLAS: false, nothing done.
 */
bool nn_blas_sleep_when_idle(void);

#endif
