// Instruction-set dispatch and the parallel drivers of the kernels in kernels_impl.h.
#include "hts_kernels.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define HK_X86 1
#else
#define HK_X86 0
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#define HK_ARM 1
#else
#define HK_ARM 0
#endif

// One SIMD register of a panel: 16 floats (one zmm, two ymm, four xmm or NEON q registers).
typedef float v16 __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));

// Macros rather than functions, so that each instruction set's code inlines them without crossing targets.
#define splat(s) ((v16){0} + (float)(s))
#define load(p) (*(const v16u *)(p))
#define store(p, v) (*(v16u *)(p) = (v))
#define vselect(m, a, b) ((v16)(((m) & (v16i)(a)) | (~(m) & (v16i)(b))))
// Compare-and-select maximum (one instruction on x86): b when either is NaN, so a NaN b propagates.
#define vmax(a, b) vselect((a) > (b), (a), (b))

// The helpers below pass 16-float vectors by value between always-inlined functions of one instruction set,
// so the ABI note for targets narrower than AVX-512 does not apply.
#pragma clang diagnostic ignored "-Wpsabi"

/// What a tile does with its accumulators (see hk_linear_args).
typedef struct {
    const float *bias;
    float scale;
    int scale_rows;
    int gelu;
    int accumulate;
} hk_epilogue;

/// A per-core cache's size in bytes (level 1: data; level 2): sysconf (glibc reads cpuid on x86), else sysfs (arm64's
/// glibc reports none), else 0.
static long cache_bytes(int level) {
    long v = sysconf(level == 1 ? _SC_LEVEL1_DCACHE_SIZE : _SC_LEVEL2_CACHE_SIZE);
    if (v > 0) return v;
    for (int i = 0; i < 8; i++) {
        char path[64], type[16] = "", unit = 0;
        int lvl = 0;
        long size = 0;
        FILE *f;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
        if (!(f = fopen(path, "r"))) break;
        if (fscanf(f, "%d", &lvl) != 1) lvl = 0;
        fclose(f);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/type", i);
        if ((f = fopen(path, "r"))) { if (fscanf(f, "%15s", type) != 1) type[0] = 0; fclose(f); }
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        if ((f = fopen(path, "r"))) { if (fscanf(f, "%ld%c", &size, &unit) < 1) size = 0; fclose(f); }
        if (lvl != level || strcmp(type, level == 1 ? "Data" : "Unified") != 0) continue;
        return unit == 'K' ? size << 10 : unit == 'M' ? size << 20 : size;
    }
    return 0;
}

/// 3/4 of a core's cache at `level` (1: L1 data, 2: L2), in bytes: the L1 share is what a block of token panels may
/// take and stay as the weight rows stream past it (24 KB on Zen 4's 32 KB); the L2 share what one layer's weights,
/// or a block of token panels, may take and stay (768 KB on Zen 4's 1 MB, 384 KB on Zen 3, 1.5 MB on a Xeon's 2 MB).
/// Measured once; Zen 4's sizes where the CPU reports none or an odd one.
static long cache_share(int level) {
    static _Atomic long shares[3];
    long v = shares[level];
    if (!v) {
        long bytes = cache_bytes(level), lo = level == 1 ? 16384 : 131072, hi = level == 1 ? 262144 : 16777216;
        shares[level] = v = (bytes >= lo && bytes <= hi ? bytes : level == 1 ? 32768 : 1048576) / 4 * 3;
    }
    return v;
}

void hk_cache_shares(long *l1, long *l2) {
    *l1 = cache_share(1);
    *l2 = cache_share(2);
}

/// Whether a linear layer's weights (rows x depth) stay in L2 as token panels stream past them.
static inline int hk_weights_fit_l2(int rows, int depth) { return (long)rows * depth * (long)sizeof(float) <= cache_share(2); }

/// Token-panel groups (nv panels of `depth` rows each) that a linear layer of `rows` outputs runs past each
/// weight tile in turn. Where the weights fit L2 (stages 0 and 1 on Zen 4), a block is as many groups as fill the
/// L1 share: the block stays in L1 as the weight rows stream past it from L2, each tile once per block
/// (AVX2's 1-panel groups of depth 96 go 4 at a time on Zen 4: stage 0 -0.4 ms; AVX-512's 4-panel groups are that
/// size already, and larger blocks cost it 0.8 ms there). Otherwise as many groups as fit the L2 share go past each
/// weight tile, which stays in L1, and the weights (beyond L2 from stage 2 on, beyond L3 in stage 3) are fetched once
/// per block rather than once per group. AVX2 (1-panel groups), 1 thread, Zen 4: stage 3 20.6 -> 19.2 ms, stage 2
/// 59.3 -> 57.6 ms.
static inline int hk_group_block(int nv, int depth, int rows) {
    long bytes = (long)nv * depth * 16 * (long)sizeof(float);
    long cache = hk_weights_fit_l2(rows, depth) ? cache_share(1) : cache_share(2);
    return bytes >= cache ? 1 : (int)(cache / bytes);
}

/// Whether linear_range prefetches each weight tile's successor into L1 while the current tile runs (kernels_impl.h
/// says where that pays): 1-panel groups, weights beyond L2, and a tile that fits half the L1 share, beside a panel.
static inline int hk_prefetch_weights(int nv, int mr, int depth, int rows) {
    return nv == 1 && !hk_weights_fit_l2(rows, depth) && (long)mr * depth * (long)sizeof(float) <= cache_share(1) / 2;
}

typedef void hk_tile_fn(int depth, const float *const *ar, long ak, long achunk, const float *x, long xp, float *out,
                        long op);

/// The kernels of one instruction set.
typedef struct {
    void (*linear_range)(const hk_linear_args *p, int g0, int g1, int t0, int t1);
    void (*attention_item)(const hk_attention_args *p, int window, int head, float *scratch);
    void (*layernorm_range)(int ch, int c0, int c1, const float *x, float *y, const float *w, const float *b, float eps);
    void (*gather_range)(int ch, int c0, int c1, const int32_t *index, const float *src, long sp, float *dst, long dp,
                         long dr, int accumulate);
    void (*logmel_range)(const float *power, int f0, int f1, int bins, const float *melw, int mels, int stride,
                         const int32_t *first, const int32_t *last, float amin, float *out);
    void (*gelu)(const float *x, float *y, long n);
    void (*exp)(const float *x, float *y, long n);
    void (*sigmoid)(const float *x, float *y, long n);
    void (*db)(const float *x, float *y, long n);
    int mr, nv;
} hk_impl;

#if HK_X86 || HK_ARM
/// erf(x / sqrt(2)) / 2 on [0, 4 sqrt(2)) in 16 pieces (the AVX-512 and NEON GELU): hk_gelu_pieces[k][i] is the coefficient of t^k, with
/// t = x * 16 / (4 sqrt(2)) - i - 1/2 (least-squares minimax fits, approximation error below 3e-9).
static const float hk_gelu_pieces[6][16] = {
    {7.015810107e-02f, 2.020584518e-01f, 3.116204386e-01f, 3.920375299e-01f, 4.441941168e-01f, 4.740850377e-01f, 4.892218675e-01f, 4.959950291e-01f, 4.986729852e-01f, 4.996085307e-01f, 4.998973120e-01f, 4.999760725e-01f, 4.999950516e-01f, 4.999990924e-01f, 4.999998524e-01f, 4.999999787e-01f},
    {1.388606566e-01f, 1.225441007e-01f, 9.543744320e-02f, 6.559313230e-02f, 3.978424567e-02f, 2.129497159e-02f, 1.005903183e-02f, 4.193228114e-03f, 1.542602410e-03f, 5.008097428e-04f, 1.434844511e-04f, 3.627858255e-05f, 8.094859297e-06f, 1.593976797e-06f, 2.769928825e-07f, 4.247852654e-08f},
    {-4.339299136e-03f, -1.148829571e-02f, -1.491192365e-02f, -1.434845287e-02f, -1.118938481e-02f, -7.320241155e-03f, -4.086543680e-03f, -1.965593618e-03f, -8.194999710e-04f, -2.973424812e-04f, -9.415199460e-05f, -2.607029135e-05f, -6.322137774e-06f, -1.344276235e-06f, -2.508505131e-07f, -4.111104939e-08f},
    {-2.802472382e-03f, -1.834957920e-03f, -4.349675022e-04f, 7.259238853e-04f, 1.269137154e-03f, 1.233891444e-03f, 8.972062474e-04f, 5.268946613e-04f, 2.581089654e-04f, 1.072695360e-04f, 3.820492415e-05f, 1.173736677e-05f, 3.124549420e-06f, 7.230714819e-07f, 1.458165892e-07f, 2.567289102e-08f},
    {1.331616992e-04f, 3.230741872e-04f, 3.427614398e-04f, 2.190493093e-04f, 5.534119414e-05f, -5.856072422e-05f, -9.644787961e-05f, -8.234985241e-05f, -5.156811920e-05f, -2.579284458e-05f, -1.067760739e-05f, -3.727610552e-06f, -1.109808401e-06f, -2.838724585e-07f, -6.270232482e-08f, -1.200474899e-08f},
    {5.050564942e-05f, 2.212153835e-05f, -1.317449521e-05f, -3.253801094e-05f, -2.979684264e-05f, -1.496544353e-05f, -1.136309660e-06f, 5.521922500e-06f, 6.072731945e-06f, 4.082525612e-06f, 2.069847775e-06f, 8.446130534e-07f, 2.857938099e-07f, 8.153403602e-08f, 1.981644314e-08f, 4.132002927e-09f},
};
#endif

#if HK_X86
/// The same g on [0, 4 sqrt(2)) in 8 pieces of degree 6 (the AVX2 GELU: one 8-entry permute per coefficient):
/// hk_gelu_octs[k][i] is the coefficient of u^k, with u = x * 8 / (4 sqrt(2)) - i in [0, 1) (least-squares fits,
/// approximation error below 9e-9).
static const float hk_gelu_octs[7][8] = {
    {-8.075962121e-09f, 2.602499425e-01f, 4.213503897e-01f, 4.830525815e-01f, 4.976611435e-01f, 4.997965097e-01f, 4.999889433e-01f, 4.999996424e-01f},
    {2.820956111e-01f, 2.196948379e-01f, 1.037766561e-01f, 2.973285317e-02f, 5.166788120e-03f, 5.445408169e-04f, 3.480449595e-05f, 1.348959472e-06f},
    {-1.323107426e-05f, -5.491103604e-02f, -5.188472196e-02f, -2.230394073e-02f, -5.167456809e-03f, -6.802282878e-04f, -5.207613867e-05f, -2.347364216e-06f},
    {-2.342591807e-02f, -9.229957126e-03f, 8.623922244e-03f, 8.699136786e-03f, 3.018566407e-03f, 5.189541844e-04f, 4.842644921e-05f, 2.549488045e-06f},
    {-2.447546285e-04f, 5.932196975e-03f, 2.239047084e-03f, -1.471360913e-03f, -1.091266517e-03f, -2.610503871e-04f, -2.995587238e-05f, -1.826285484e-06f},
    {2.145608887e-03f, -1.779159065e-04f, -1.213649055e-03f, -1.188234601e-04f, 2.304764057e-04f, 8.324389637e-05f, 1.161333785e-05f, 8.006859389e-07f},
    {-3.073499538e-04f, -2.076783567e-04f, 1.609198225e-04f, 7.069917774e-05f, -2.171535380e-05f, -1.303008230e-05f, -2.138737955e-06f, -1.616595711e-07f},
};
#endif

// The instruction sets kernels_impl.h is compiled for (HK_ISA).
#define HK_ISA_GENERIC 0
#define HK_ISA_AVX2 1
#define HK_ISA_AVX512 2
#define HK_ISA_NEON 3

// Portable baseline (SSE2 on x86-64, NEON without intrinsics on arm64).
#define HK_FN(name) hk_generic_##name
#define HK_MR 2
#define HK_NV 1
#define HK_ISA HK_ISA_GENERIC
#include "kernels_impl.h"

#if HK_X86
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
// 6 weight rows x 1 token panel: 12 ymm accumulators, 2 for the panel's row and 1 broadcast, of the 16
// registers (the AVX-512 tile, 6 x 4 panels, would need 48).
#define HK_FN(name) hk_avx2_##name
#define HK_MR 6
#define HK_NV 1
#define HK_ISA HK_ISA_AVX2
#include "kernels_impl.h"
#pragma clang attribute pop

#pragma clang attribute push(__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,f16c"))), \
                             apply_to = function)
#define HK_FN(name) hk_avx512_##name
#define HK_MR 6
#define HK_NV 4
#define HK_ISA HK_ISA_AVX512
#include "kernels_impl.h"
#pragma clang attribute pop

#pragma clang attribute push(__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx512bf16,avx2,fma,f16c"))), \
                             apply_to = function)
#include "kernels_bf16.h"
#pragma clang attribute pop
#endif

#if HK_ARM
// NEON (every arm64 CPU has it): 6 weight rows x 1 token panel, 24 q-register accumulators, 4 for the panel's
// row and 2 for the weights, of the 32 (the portable 2 x 1 tile leaves most idle); the -S output's loop is 24 fmla
// by element and 6 scalar loads, no spills.
#define HK_FN(name) hk_neon_##name
#define HK_MR 6
#define HK_NV 1
#define HK_ISA HK_ISA_NEON
#include "kernels_impl.h"
#endif

static const hk_impl *chosen_impl(void) {
#if HK_X86
    // HTSAT_KERNELS=generic|avx2 forces a lesser instruction set (for comparisons and tests).
    const char *force = getenv("HTSAT_KERNELS");
    __builtin_cpu_init();
    int want512 = !force || strcmp(force, "avx512") == 0;
    int want2 = want512 || strcmp(force, "avx2") == 0;
    if (want512 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
        return &hk_avx512_impl;
    if (want2 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return &hk_avx2_impl;
#elif HK_ARM
    // HTSAT_KERNELS=generic forces the portable kernels.
    const char *force = getenv("HTSAT_KERNELS");
    if (!force || strcmp(force, "generic") != 0) return &hk_neon_impl;
#endif
    return &hk_generic_impl;
}

static const hk_impl *impl(void) {
    static const hk_impl *_Atomic cached;
    const hk_impl *p = cached;
    if (!p) cached = p = chosen_impl();
    return p;
}

const char *hk_isa(void) {
    const hk_impl *p = impl();
#if HK_X86
    if (p == &hk_avx512_impl) return "avx512";
    if (p == &hk_avx2_impl) return "avx2";
#elif HK_ARM
    if (p == &hk_neon_impl) return "neon";
#endif
    (void)p;
    return "generic";
}

void hk_gelu(const float *x, float *y, long n) { impl()->gelu(x, y, n); }
void hk_exp(const float *x, float *y, long n) { impl()->exp(x, y, n); }
void hk_sigmoid(const float *x, float *y, long n) { impl()->sigmoid(x, y, n); }
void hk_db(const float *x, float *y, long n) { impl()->db(x, y, n); }

// MARK: - parallel drivers

static int min_int(int a, int b) { return a < b ? a : b; }
static int ceil_div(int a, int b) { return (a + b - 1) / b; }

typedef struct {
    const hk_linear_args *args;
    const hk_impl *impl;
    int groups, tiles, group_step, tile_step, tile_blocks;
} linear_job;

static void linear_item(void *ctx, int item, int thread) {
    (void)thread;
    const linear_job *j = ctx;
    int gb = item / j->tile_blocks, tb = item % j->tile_blocks;
    int g0 = gb * j->group_step, t0 = tb * j->tile_step;
    j->impl->linear_range(j->args, g0, min_int(g0 + j->group_step, j->groups), t0, min_int(t0 + j->tile_step, j->tiles));
}

void hk_linear(hk_pool *pool, const hk_linear_args *args) {
    if (args->rows <= 0 || args->chunks <= 0) return;
    const hk_impl *im = impl();
    int groups = ceil_div(args->chunks, im->nv), tiles = ceil_div(args->rows, im->mr);
    if (!pool || hk_pool_threads(pool) == 1) {
        im->linear_range(args, 0, groups, 0, tiles);
        return;
    }
    // Items of about 1.25 MFLOP (10-15 us): small enough that the threads finish within a few microseconds
    // of each other however their start or speed differs, large enough that taking one costs nothing.
    // An item is a run of weight-row tiles over one group of token panels, or several whole groups.
    // Where linear_range runs blocks of groups row by row, an item spans a block so that each item reads its
    // weight rows once.
    double tile_flops = 2.0 * im->mr * im->nv * 16 * args->depth, target = 1.25e6;
    int group_step = min_int(hk_group_block(im->nv, args->depth, args->rows), groups);
    int tile_step = (int)(target / (tile_flops * group_step));
    if (tile_step < 1) tile_step = 1;
    // The prefetch works within an item, so an item of 1 tile would never have it: 4 at least (AVX2, 2 threads:
    // stage 2 -1.5 ms).
    if (hk_prefetch_weights(im->nv, im->mr, args->depth, args->rows) && tile_step < 4) tile_step = 4;
    if (tile_step >= tiles) {
        tile_step = tiles;
        group_step = (int)(target / (tile_flops * tiles));
        if (group_step < 1) group_step = 1;
        if (group_step > groups) group_step = groups;
    }
    linear_job job = {args, im, groups, tiles, group_step, tile_step, ceil_div(tiles, tile_step)};
    hk_pool_run(pool, ceil_div(groups, group_step) * job.tile_blocks, linear_item, &job);
}

typedef struct {
    const hk_attention_args *args;
    const hk_impl *impl;
    int per_item;
} attention_job;

/// The thread's own part of an attention's scratch (see hk_attention_args).
static float *attention_scratch(const hk_attention_args *a, int thread) {
    return a->scratch + (long)thread * (a->padded + 1) * a->padded;
}

static void attention_item(void *ctx, int item, int thread) {
    const attention_job *j = ctx;
    const hk_attention_args *a = j->args;
    float *scratch = attention_scratch(a, thread);
    int total = a->windows * a->heads;
    for (int i = item * j->per_item; i < min_int((item + 1) * j->per_item, total); i++)
        j->impl->attention_item(a, i / a->heads, i % a->heads, scratch);
}

void hk_attention(hk_pool *pool, const hk_attention_args *args) {
    int total = args->windows * args->heads;
    if (total <= 0 || args->padded <= 0 || args->padded % 16 != 0) return;
    attention_job job = {args, impl(), 1};
    int threads = pool ? hk_pool_threads(pool) : 1;
    job.per_item = threads == 1 ? total : ceil_div(total, 16 * threads);
    hk_pool_run(pool, ceil_div(total, job.per_item), attention_item, &job);
}

typedef struct {
    const hk_impl *impl;
    int channels, chunks, step;
    const float *x;
    float *y;
    const float *w, *b;
    float eps;
    const int32_t *index;
    const float *src;
    long sp, dp, dr;
    int accumulate;
} pass_job;

static void layernorm_item(void *ctx, int item, int thread) {
    (void)thread;
    const pass_job *j = ctx;
    int c0 = item * j->step;
    j->impl->layernorm_range(j->channels, c0, min_int(c0 + j->step, j->chunks), j->x, j->y, j->w, j->b, j->eps);
}

static void gather_item(void *ctx, int item, int thread) {
    (void)thread;
    const pass_job *j = ctx;
    int c0 = item * j->step;
    j->impl->gather_range(j->channels, c0, min_int(c0 + j->step, j->chunks), j->index, j->src, j->sp, j->y, j->dp,
                          j->dr, j->accumulate);
}

/// Chunks per item of a memory-bound pass: one item per thread unless the pass is too small to share.
static int pass_step(hk_pool *pool, int channels, int chunks) {
    int threads = pool ? hk_pool_threads(pool) : 1;
    if (threads == 1 || (long)channels * chunks < 1024) return chunks;
    return ceil_div(chunks, 2 * threads);
}

void hk_layernorm(hk_pool *pool, int channels, int chunks, const float *x, float *y, const float *weight,
                  const float *bias, float eps) {
    if (chunks <= 0) return;
    pass_job job = {.impl = impl(), .channels = channels, .chunks = chunks, .step = pass_step(pool, channels, chunks),
                    .x = x, .y = y, .w = weight, .b = bias, .eps = eps};
    hk_pool_run(pool, ceil_div(chunks, job.step), layernorm_item, &job);
}

void hk_gather(hk_pool *pool, int channels, int chunks, const int32_t *index, const float *src, long src_panel,
               float *dst, long dst_panel, long dst_row, int accumulate) {
    if (chunks <= 0) return;
    pass_job job = {.impl = impl(), .channels = channels, .chunks = chunks, .step = pass_step(pool, channels, chunks),
                    .y = dst, .index = index, .src = src, .sp = src_panel, .dp = dst_panel, .dr = dst_row,
                    .accumulate = accumulate};
    hk_pool_run(pool, ceil_div(chunks, job.step), gather_item, &job);
}

typedef struct {
    const hk_impl *impl;
    const float *power;
    int frames, bins, mels, stride, step;
    const float *melw;
    const int32_t *first, *last;
    float amin;
    float *out;
} logmel_job;

static void logmel_item(void *ctx, int item, int thread) {
    (void)thread;
    const logmel_job *j = ctx;
    int f0 = item * j->step;
    j->impl->logmel_range(j->power, f0, min_int(f0 + j->step, j->frames), j->bins, j->melw, j->mels, j->stride,
                          j->first, j->last, j->amin, j->out);
}

void hk_logmel(hk_pool *pool, const float *power, int frames, int bins, const float *melw, int mels, int mel_stride,
               const int32_t *first, const int32_t *last, float amin, float *out) {
    if (frames <= 0 || mels <= 0) return;
    int threads = pool ? hk_pool_threads(pool) : 1;
    logmel_job job = {impl(), power, frames, bins, mels, mel_stride, ceil_div(frames, 2 * threads), melw, first, last,
                      amin, out};
    hk_pool_run(pool, ceil_div(frames, job.step), logmel_item, &job);
}

// MARK: - window runs

typedef struct {
    const hk_impl *impl;
    int window_chunks, count;
    const hk_step *steps;
} window_job;

static void window_item(void *ctx, int window, int thread) {
    const window_job *j = ctx;
    int c0 = window * j->window_chunks, c1 = c0 + j->window_chunks, nv = j->impl->nv;
    for (int i = 0; i < j->count; i++) {
        const hk_step *s = &j->steps[i];
        if (s->kind == HK_STEP_LAYERNORM) {
            j->impl->layernorm_range(s->channels, c0, c1, s->x, s->y, s->weight, s->bias, s->eps);
        } else if (s->kind == HK_STEP_ATTENTION) {
            for (int h = 0; h < s->attention->heads; h++)
                j->impl->attention_item(s->attention, window, h, attention_scratch(s->attention, thread));
        } else {
            j->impl->linear_range(s->linear, c0 / nv, c1 / nv, 0, ceil_div(s->linear->rows, j->impl->mr));
        }
    }
}

void hk_window_run(hk_pool *pool, int windows, int window_chunks, const hk_step *steps, int count) {
    if (windows <= 0 || window_chunks <= 0) return;
    const hk_impl *im = impl();
    // A window's steps on one thread pay where the weights stay in L2 (stages 0 and 1): AVX2, 1 thread, stage 0's
    // two blocks 23.3 -> 21.5 ms, stage 1's 19.5 -> 19.1 ms; 2 threads 13.1 -> 12.2 and 11.7 -> 10.2 ms. Beyond
    // (stage 2), each window would fetch the weights again: 18.3 -> 21.1 ms. Windows must hold whole panel groups,
    // and be enough to share: 4 a thread at least. bfloat16 layers run step by step: their activation pairs share
    // one buffer laid out per layer.
    int fused = window_chunks % im->nv == 0 && windows >= 4 * hk_pool_threads(pool);
    for (int i = 0; i < count; i++) {
        const hk_linear_args *a = steps[i].linear;
        if (steps[i].kind == HK_STEP_LINEAR && (steps[i].packed || !hk_weights_fit_l2(a->rows, a->depth))) fused = 0;
    }
    if (fused) {
        window_job job = {im, window_chunks, count, steps};
        hk_pool_run(pool, windows, window_item, &job);
        return;
    }
    for (int i = 0; i < count; i++) {
        const hk_step *s = &steps[i];
        if (s->kind == HK_STEP_LAYERNORM)
            hk_layernorm(pool, s->channels, windows * window_chunks, s->x, s->y, s->weight, s->bias, s->eps);
        else if (s->kind == HK_STEP_ATTENTION) hk_attention(pool, s->attention);
        else if (s->packed) hk_linear_bf16(pool, s->linear, s->packed, s->pairs);
        else hk_linear(pool, s->linear);
    }
}

// MARK: - bfloat16

int hk_bf16_supported(void) {
#if HK_X86
    __builtin_cpu_init();
    return impl() == &hk_avx512_impl && __builtin_cpu_supports("avx512bf16");
#else
    return 0;
#endif
}

void hk_pack_bf16(const float *w, int rows, int depth, long a_stride, uint32_t *out) {
#if HK_X86
    int pairs = (depth + 1) / 2;
    for (int r = 0; r < rows; r++) {
        const float *row = w + (long)r * a_stride;
        for (int p = 0; p < pairs; p++) {
            uint32_t hi = 2 * p + 1 < depth ? hk_bf16_bits(row[2 * p + 1]) : 0;
            out[(long)r * pairs + p] = hk_bf16_bits(row[2 * p]) | hi << 16;
        }
    }
#else
    (void)w, (void)rows, (void)depth, (void)a_stride, (void)out;
#endif
}

#if HK_X86
typedef struct {
    const hk_linear_args *args;
    const uint32_t *packed;
    uint32_t *pairs;
    int groups, tiles, group_step, tile_step, tile_blocks, chunk_step;
} bf16_job;

static void bf16_pairs_item(void *ctx, int item, int thread) {
    (void)thread;
    const bf16_job *j = ctx;
    int c0 = item * j->chunk_step;
    hk_bf16_pairs_range(j->args->depth, c0, min_int(c0 + j->chunk_step, j->args->chunks), j->args->x,
                        j->args->x_panel, j->pairs);
}

static void bf16_linear_item(void *ctx, int item, int thread) {
    (void)thread;
    const bf16_job *j = ctx;
    int gb = item / j->tile_blocks, tb = item % j->tile_blocks;
    int g0 = gb * j->group_step, t0 = tb * j->tile_step;
    hk_bf16_linear_range(j->args, j->packed, j->pairs, (long)(j->args->depth + 1) / 2 * 16, g0,
                         min_int(g0 + j->group_step, j->groups), t0, min_int(t0 + j->tile_step, j->tiles));
}
#endif

void hk_linear_bf16(hk_pool *pool, const hk_linear_args *args, const uint32_t *packed, uint32_t *scratch) {
#if HK_X86
    if (args->rows <= 0 || args->chunks <= 0 || !hk_bf16_supported()) return;
    int threads = pool ? hk_pool_threads(pool) : 1;
    bf16_job job = {args, packed, scratch, ceil_div(args->chunks, 4), ceil_div(args->rows, 6), 1, 1, 1, 1};
    job.chunk_step = threads == 1 ? args->chunks : ceil_div(args->chunks, 2 * threads);
    hk_pool_run(pool, ceil_div(args->chunks, job.chunk_step), bf16_pairs_item, &job);
    // Items as in hk_linear, at twice the rate per instruction.
    double tile_flops = 2.0 * 6 * 4 * 16 * args->depth, target = threads == 1 ? 1e30 : 2.5e6;
    job.tile_step = (int)(target / tile_flops);
    if (job.tile_step < 1) job.tile_step = 1;
    if (job.tile_step >= job.tiles) {
        job.tile_step = job.tiles;
        double steps = target / (tile_flops * job.tiles);
        job.group_step = steps < 1 ? 1 : steps > job.groups ? job.groups : (int)steps;
    }
    job.tile_blocks = ceil_div(job.tiles, job.tile_step);
    hk_pool_run(pool, ceil_div(job.groups, job.group_step) * job.tile_blocks, bf16_linear_item, &job);
#else
    (void)pool, (void)args, (void)packed, (void)scratch;
#endif
}
