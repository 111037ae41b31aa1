// Per-layer timing of the kernels against OpenBLAS on the full AudioSet model's shapes (scripts/bench-kernels.sh):
// each Swin block's steps alone and as the model runs them (hk_window_run), each linear layer and each stage's
// attention beside the same GEMMs on cblas_sgemm, as ../shared/tools/gemmfloor.c runs them. Weights stay in cache
// (one set per shape, reused), so this shows the kernels' own speed; `htsatd bench` shows the model's.
// Usage: kernel_bench [THREADS [RUNS]]; each figure is the best of RUNS, in ms.
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "hts_kernels.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static float *values(long n, float scale) {
    float *p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    if (!p) { fprintf(stderr, "kernel_bench: out of memory\n"); exit(1); }
    for (long i = 0; i < n; i++) p[i] = (float)((int)((i * 2654435761u) >> 8) % 2001 - 1000) * scale;
    return p;
}

static int runs = 20;
static hk_pool *pool;

// The best of `runs` calls of one of these, in ms.
typedef struct { enum { LINEAR, ATTENTION, STEPS, BLAS, BLAS_ATTENTION } kind; const void *args; int n, m, k, count; } job;

static void once(const job *j) {
    static float *a, *b, *c;
    if (!a) a = values(4096L * 3072, 1e-3f), b = values(4096L * 3072, 1e-3f), c = values(4096L * 3072, 0);
    switch (j->kind) {
    case LINEAR: hk_linear(pool, j->args); break;
    case ATTENTION: hk_attention(pool, j->args); break;
    case STEPS: {
        const hk_attention_args *at = ((const hk_step *)j->args)[2].attention;
        hk_window_run(pool, at->windows, at->padded / HK_PANEL, j->args, 4);
        hk_window_run(pool, at->windows, at->padded / HK_PANEL, (const hk_step *)j->args + 4, 3);
        break;
    }
    case BLAS: cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->n, j->m, j->k, 1, a, j->k, b, j->k, 0, c, j->m); break;
    case BLAS_ATTENTION:
        for (int w = 0; w < j->count; w++) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, 64, 64, j->k, 1, a, j->k, b, j->k, 0, c, 64);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, 64, j->k, 64, 1, a, 64, b, 64, 0, c, j->k);
        }
        break;
    }
}

static double best(job j) {
    double min = 1e30;
    once(&j);
    for (int r = 0; r < runs; r++) {
        double t0 = now();
        once(&j);
        double t = now() - t0;
        if (t < min) min = t;
    }
    return min * 1e3;
}

static double total_ours, total_blas;

static void row(const char *name, double ours, double blas, double gflop, int times) {
    printf("  %-22s %8.3f %8.3f   %5.3f  %6.1f GFLOP/s\n", name, ours, blas, ours / blas, gflop / ours * 1e3);
    total_ours += ours * times;
    total_blas += blas * times;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    runs = argc > 2 ? atoi(argv[2]) : 20;
    if (threads < 1 || runs < 1) { fprintf(stderr, "usage: kernel_bench [THREADS [RUNS]]\n"); return 2; }
    pool = hk_pool_create(threads);
    openblas_set_num_threads(threads);
    long l1, l2;
    hk_cache_shares(&l1, &l2);
    printf("%s kernels, %d thread%s, blocked for %ld KB of L1 and %ld KB of L2; OpenBLAS %s; best of %d runs, ms\n",
           hk_isa(), threads, threads > 1 ? "s" : "", l1 / 1024, l2 / 1024, openblas_get_corename(), runs);
    const int depths[4] = {2, 2, 6, 2}, heads[4] = {4, 8, 16, 32};
    for (int s = 0; s < 4; s++) {
        const int n = 4096 >> (2 * s), c = 96 << s, h = heads[s], d = c / h, hid = 4 * c;
        const int chunks = n / HK_PANEL, windows = n / 64;
        const long xp = (long)c * HK_PANEL, ap = (long)(3 * c > hid ? 3 * c : hid) * HK_PANEL;
        float *x = values(chunks * xp, 1e-3f), *t = values(chunks * xp, 0), *arena = values(chunks * ap, 0);
        float *context = values(chunks * xp, 0), *scratch = values((long)threads * 65 * 64, 0);
        float *wqkv = values(3L * c * c, 1e-4f), *wp = values((long)c * c, 1e-4f), *w1 = values((long)hid * c, 1e-4f);
        float *w2 = values((long)c * hid, 1e-4f), *bias = values(4L * c, 1e-3f), *norm = values(c, 1e-3f);
        float *scores = values((long)h * 64 * 64, 1e-3f);
        hk_linear_args qkv = {3 * c, c, chunks, wqkv, c, t, xp, arena, ap, bias, 0.2f, c, 0, 0};
        hk_attention_args at = {windows, h, d, c, 64, arena, ap, context, scores, NULL, scratch};
        hk_linear_args proj = {c, c, chunks, wp, c, context, xp, x, xp, bias, 1, 0, 0, 1};
        hk_linear_args fc1 = {hid, c, chunks, w1, c, t, xp, arena, ap, bias, 1, 0, 1, 0};
        hk_linear_args fc2 = {c, hid, chunks, w2, hid, arena, ap, x, xp, bias, 1, 0, 0, 1};
        hk_step steps[7] = {
            {.kind = HK_STEP_LAYERNORM, .channels = c, .x = x, .y = t, .weight = norm, .bias = norm, .eps = 1e-5f},
            {.kind = HK_STEP_LINEAR, .linear = &qkv},
            {.kind = HK_STEP_ATTENTION, .attention = &at},
            {.kind = HK_STEP_LINEAR, .linear = &proj},
            {.kind = HK_STEP_LAYERNORM, .channels = c, .x = x, .y = t, .weight = norm, .bias = norm, .eps = 1e-5f},
            {.kind = HK_STEP_LINEAR, .linear = &fc1},
            {.kind = HK_STEP_LINEAR, .linear = &fc2},
        };
        printf("stage %d: %d tokens, %d channels, %d heads; per block (x%d)       htsatd OpenBLAS   ratio\n", s, n,
               c, h, depths[s]);
        double gemm = 2.0 * n * c;
        row("qkv", best((job){.kind = LINEAR, .args = &qkv}), best((job){.kind = BLAS, .n = n, .m = 3 * c, .k = c}), gemm * 3 * c * 1e-9, depths[s]);
        row("attention", best((job){.kind = ATTENTION, .args = &at}), best((job){.kind = BLAS_ATTENTION, .k = d, .count = windows * h}),
            4.0 * windows * h * 64 * 64 * d * 1e-9, depths[s]);
        row("proj", best((job){.kind = LINEAR, .args = &proj}), best((job){.kind = BLAS, .n = n, .m = c, .k = c}), gemm * c * 1e-9, depths[s]);
        row("fc1 (+ GELU)", best((job){.kind = LINEAR, .args = &fc1}), best((job){.kind = BLAS, .n = n, .m = hid, .k = c}), gemm * hid * 1e-9, depths[s]);
        row("fc2", best((job){.kind = LINEAR, .args = &fc2}), best((job){.kind = BLAS, .n = n, .m = c, .k = hid}), gemm * hid * 1e-9, depths[s]);
        // A cross-check, left out of the totals: the block as the model runs it, LayerNorms included.
        printf("  %-22s %8.3f  (the steps above and the LayerNorms, as the model runs them)\n", "block",
               best((job){.kind = STEPS, .args = steps}));
        if (s < 3) {
            float *wm = values(8L * c * c, 1e-4f);
            hk_linear_args merge = {2 * c, 4 * c, chunks / 4, wm, 4 * c, arena, 4L * c * HK_PANEL, t, 2L * c * HK_PANEL,
                                    NULL, 1, 0, 0, 0};
            row("patch merging", best((job){.kind = LINEAR, .args = &merge}), best((job){.kind = BLAS, .n = n / 4, .m = 2 * c, .k = 4 * c}),
                2.0 * n / 4 * 2 * c * 4 * c * 1e-9, 1);
            free(wm);
        }
        free(x), free(t), free(arena), free(context), free(scratch), free(wqkv), free(wp), free(w1), free(w2);
        free(bias), free(norm), free(scores);
    }
    printf("linear layers and attention of one window: htsatd %.2f ms, OpenBLAS %.2f ms, ratio %.3f\n", total_ours,
           total_blas, total_ours / total_blas);
    hk_pool_destroy(pool);
    return 0;
}
