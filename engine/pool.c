#include "pool.h"

#include <pthread.h>
#include <stdlib.h>

/* OpenBLAS exports these from its pthreads builds without declaring them in cblas.h. Weak, so
 * that the engine still links against another BLAS, where they are NULL. */
extern void openblas_read_env(void) __attribute__((weak));
extern int blas_thread_shutdown_(void) __attribute__((weak));

typedef struct worker_arg {
    struct nn_pool *pool;
    int index; /* 1..n_workers; the caller is 0 */
} worker_arg;

struct nn_pool {
    int n_workers; /* threads besides the caller */
    pthread_t *threads;
    worker_arg *args;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    unsigned long generation; /* one per nn_pool_run */
    int pending;              /* workers yet to finish this generation */
    bool quit;
    /* the current call */
    nn_pool_fn fn;
    void *ctx;
    size_t n;
    int parts;
};

static void part_range(size_t n, int parts, int part, size_t *begin, size_t *end)
{
    *begin = n * (size_t)part / (size_t)parts;
    *end = n * (size_t)(part + 1) / (size_t)parts;
}

static void *worker_main(void *arg)
{
    nn_pool *p = ((worker_arg *)arg)->pool;
    int index = ((worker_arg *)arg)->index;
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->generation == seen && !p->quit)
            pthread_cond_wait(&p->go, &p->mu);
        if (p->quit)
            break;
        seen = p->generation;
        if (index < p->parts) {
            nn_pool_fn fn = p->fn;
            void *ctx = p->ctx;
            size_t begin, end;
            part_range(p->n, p->parts, index, &begin, &end);
            pthread_mutex_unlock(&p->mu);
            fn(ctx, begin, end, index);
            pthread_mutex_lock(&p->mu);
        }
        if (--p->pending == 0)
            pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int nn_pool_create(nn_pool **out, int n_threads, nn_err *err)
{
    *out = NULL;
    nn_pool *p = nn_calloc(1, sizeof *p, err);
    if (!p)
        return NN_ERR;
    int workers = n_threads > 1 ? n_threads - 1 : 0;
    if (workers && (!(p->threads = nn_calloc((size_t)workers, sizeof *p->threads, err)) ||
                    !(p->args = nn_calloc((size_t)workers, sizeof *p->args, err)))) {
        nn_free(p->threads);
        nn_free(p);
        return NN_ERR;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    for (int i = 0; i < workers; i++) {
        p->args[i] = (worker_arg){.pool = p, .index = i + 1};
        if (pthread_create(&p->threads[i], NULL, worker_main, &p->args[i]) != 0) {
            nn_pool_free(p);
            return nn_fail(err, "could not start worker thread %d of %d", i + 1, workers);
        }
        p->n_workers = i + 1;
    }
    *out = p;
    return NN_OK;
}

void nn_pool_free(nn_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->quit = true;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_workers; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    nn_free(p->threads);
    nn_free(p->args);
    nn_free(p);
}

int nn_pool_threads(const nn_pool *p)
{
    return p ? p->n_workers + 1 : 1;
}

void nn_pool_run(nn_pool *p, size_t n, size_t min_per_thread, nn_pool_fn fn, void *ctx)
{
    if (n == 0)
        return;
    int parts = nn_pool_threads(p);
    if (min_per_thread > 0 && n / min_per_thread < (size_t)parts)
        parts = n / min_per_thread > 1 ? (int)(n / min_per_thread) : 1;
    if (parts <= 1) {
        fn(ctx, 0, n, 0);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->parts = parts;
    p->pending = p->n_workers;
    p->generation++;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    size_t begin, end;
    part_range(n, parts, 0, &begin, &end);
    fn(ctx, begin, end, 0);
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0)
        pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

bool nn_blas_sleep_when_idle(void)
{
    if (!openblas_read_env || !blas_thread_shutdown_ || getenv("OPENBLAS_THREAD_TIMEOUT"))
        return false;
    /* OpenBLAS read its environment when it was loaded; it takes the timeout from it when its
     * threads start, which the next threaded call does after the shutdown. */
    if (setenv("OPENBLAS_THREAD_TIMEOUT", "12", 0) != 0)
        return false;
    openblas_read_env();
    blas_thread_shutdown_();
    return true;
}
