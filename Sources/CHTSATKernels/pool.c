// A fork-join pool for back-to-back parallel operations: workers spin briefly between operations (an
// inference issues about a hundred of them, microseconds apart), then sleep on a condition variable.
#include "hts_kernels.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

struct hk_pool {
    int threads;
    pthread_t *workers;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    atomic_uint generation; // bumped for each operation
    atomic_int sleeping;
    atomic_int stop;
    atomic_int next;    // next item to take
    atomic_int pending; // workers still inside the current operation
    int items;
    void (*run)(void *ctx, int item, int thread);
    void *ctx;
};

typedef struct {
    hk_pool *pool;
    int index;
} worker_start;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/// Takes items until none is left.
static void drain(hk_pool *p, int thread) {
    for (;;) {
        int item = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (item >= p->items) return;
        p->run(p->ctx, item, thread);
    }
}

/// How long a worker spins for the next operation before it sleeps.
static const double spin_seconds = 300e-6;

static void *worker_main(void *arg) {
    worker_start start = *(worker_start *)arg;
    free(arg);
    hk_pool *p = start.pool;
    unsigned seen = 0; // the generation at creation: an operation posted before this thread ran is not missed
    for (;;) {
        double deadline = now_seconds() + spin_seconds;
        unsigned spins = 0;
        while (atomic_load_explicit(&p->generation, memory_order_acquire) == seen && !atomic_load(&p->stop)) {
            cpu_relax();
            if ((++spins & 255) == 0 && now_seconds() > deadline) {
                pthread_mutex_lock(&p->lock);
                atomic_fetch_add(&p->sleeping, 1);
                while (atomic_load(&p->generation) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->wake, &p->lock);
                atomic_fetch_sub(&p->sleeping, 1);
                pthread_mutex_unlock(&p->lock);
            }
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = atomic_load_explicit(&p->generation, memory_order_acquire);
        drain(p, start.index);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
    }
}

hk_pool *hk_pool_create(int threads) {
    if (threads < 1) return NULL;
    hk_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->threads = threads;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    p->workers = calloc(threads > 1 ? threads - 1 : 1, sizeof(pthread_t));
    if (!p->workers) { free(p); return NULL; }
    for (int i = 1; i < threads; i++) {
        worker_start *s = malloc(sizeof *s);
        if (s) { s->pool = p; s->index = i; }
        if (!s || pthread_create(&p->workers[i - 1], NULL, worker_main, s) != 0) {
            free(s);
            p->threads = i; // the workers started so far
            hk_pool_destroy(p);
            return NULL;
        }
    }
    return p;
}

void hk_pool_destroy(hk_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 1; i < p->threads; i++) pthread_join(p->workers[i - 1], NULL);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    free(p->workers);
    free(p);
}

int hk_pool_threads(const hk_pool *p) { return p ? p->threads : 1; }

/// Runs `items` calls of run(ctx, item, thread) on all threads and returns when all are done. One
/// operation at a time per pool (the model runs one inference at a time).
void hk_pool_run(hk_pool *p, int items, void (*run)(void *ctx, int item, int thread), void *ctx) {
    if (!p || p->threads == 1 || items <= 1) {
        for (int i = 0; i < items; i++) run(ctx, i, 0);
        return;
    }
    p->items = items;
    p->run = run;
    p->ctx = ctx;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->pending, p->threads - 1, memory_order_relaxed);
    atomic_fetch_add(&p->generation, 1); // sequentially consistent: pairs with `sleeping` below
    if (atomic_load(&p->sleeping) > 0) {
        pthread_mutex_lock(&p->lock);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);
    }
    drain(p, 0);
    // A worker still busy was most likely preempted (a shared machine): after a short spin, yield the core so
    // that it can run rather than burning the time it needs.
    for (unsigned spins = 0; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; spins++) {
        if (spins < 4096) cpu_relax();
        else sched_yield();
    }
}
