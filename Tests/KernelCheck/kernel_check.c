// Checks every kernel of Sources/CHTSATKernels, as the run-time dispatch picks them (HTSAT_KERNELS forces a
// variant), against a scalar reference in double, and that the pooled kernels give bit-identical results on 1, 2
// and 3 threads. Plain C, no framework: scripts/test-kernels.sh builds it with kernels.c and pool.c, natively for
// each x86-64 variant and for arm64 under qemu-user. Exits 1 at the first difference, naming kernel, sizes and
// element. Tolerances follow float rounding: u = 2^-24 per operation, times the depth of each sum.
#include "hts_kernels.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define U 5.9604644775390625e-08 // 2^-24

static const char *isa;
static int checks;
static hk_pool *pools[3]; // 1, 2 and 3 threads

static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kernel_check (%s): FAIL ", isa);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void pass(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("ok %d ", ++checks);
    vprintf(fmt, ap);
    putchar('\n');
    va_end(ap);
}

static void *alloc(long n) {
    void *p = calloc((size_t)(n > 0 ? n : 1), 1);
    if (!p) fail("out of memory");
    return p;
}

static uint64_t seed = 0x9e3779b97f4a7c15u;
/// Uniform in [-1, 1), the same sequence on every platform.
static float rnd(void) {
    seed = seed * 6364136223846793005u + 1442695040888963407u;
    return (float)((int32_t)(seed >> 32) / 2147483648.0);
}

static float *random_floats(long n) {
    float *p = alloc(n * (long)sizeof(float));
    for (long i = 0; i < n; i++) p[i] = rnd();
    return p;
}

/// One float32 step at |v| (the distance to the next float away from zero).
static double ulp(double v) {
    float f = fabsf((float)v);
    if (isinf(f) || f >= FLT_MAX) return FLT_MAX - nextafterf(FLT_MAX, 0);
    return (double)nextafterf(f, INFINITY) - f;
}

/// got against want within tol, element by element; NaN must stay NaN and infinities must be exact. `panel` and
/// `row` (floats) locate an element as (row, token) of a panel layout; panel 0 for a flat array.
static void compare(const char *what, const float *got, const double *want, const double *tol, long n, long panel,
                    long row) {
    for (long i = 0; i < n; i++) {
        double g = got[i], w = want[i];
        int ok = isnan(w) ? isnan(g) : isinf(w) ? g == w : fabs(g - w) <= tol[i];
        if (ok) continue;
        char where[64] = "";
        if (panel) snprintf(where, sizeof where, " (row %ld, token %ld)", i % panel / row, i / panel * 16 + i % 16);
        fail("%s: element %ld%s: expected %.9g, got %.9g (tolerance %.3g)", what, i, where, w, g, tol[i]);
    }
}

typedef void run_fn(void *ctx, hk_pool *pool, float *out);

/// Runs a kernel on 1, 2 and 3 threads, each time into a fresh copy of init (n floats); fails unless the three
/// results are bit-identical. The 1-thread result is left in out.
static void run_threads(const char *what, run_fn *run, void *ctx, const float *init, float *out, long n) {
    float *other = alloc(n * (long)sizeof(float));
    memcpy(out, init, (size_t)n * sizeof(float));
    run(ctx, pools[0], out);
    for (int t = 1; t < 3; t++) {
        memcpy(other, init, (size_t)n * sizeof(float));
        run(ctx, pools[t], other);
        for (long i = 0; i < n; i++)
            if (memcmp(out + i, other + i, sizeof(float)) != 0)
                fail("%s: %d threads differ from 1 at element %ld: %.9g vs %.9g", what, t + 1, i, other[i], out[i]);
    }
    free(other);
}

/// Reference and tolerance arrays, preset to init exactly (what a kernel must leave untouched).
static void preset(const float *init, long n, double **want, double **tol) {
    *want = alloc(n * (long)sizeof(double));
    *tol = alloc(n * (long)sizeof(double));
    for (long i = 0; i < n; i++) (*want)[i] = init[i];
}

static double gelu_ref(double x) { return 0.5 * x * erfc(-x / sqrt(2.0)); }

// MARK: - hk_linear

static void run_linear(void *ctx, hk_pool *pool, float *out) {
    hk_linear_args a = *(const hk_linear_args *)ctx;
    a.y = out;
    hk_linear(pool, &a);
}

static void check_linear(int rows, int depth, int chunks, int bias, int scale_rows, int gelu, int accumulate) {
    long as = depth + 3, xp = (long)depth * 16 + 32, yp = (long)rows * 16 + 16, ny = chunks * yp;
    float *a = random_floats(rows * as), *x = random_floats(chunks * xp), *b = random_floats(rows);
    float *y0 = random_floats(ny), *y = alloc(ny * (long)sizeof(float));
    hk_linear_args args = {rows, depth, chunks, a, as, x, xp, y, yp, bias ? b : NULL, 0.37f, scale_rows, gelu,
                           accumulate};
    char what[160];
    snprintf(what, sizeof what, "hk_linear rows %d depth %d chunks %d bias %d scale_rows %d gelu %d accumulate %d",
             rows, depth, chunks, bias, scale_rows, gelu, accumulate);
    run_threads(what, run_linear, &args, y0, y, ny);
    double *want, *tol;
    preset(y0, ny, &want, &tol);
    for (int c = 0; c < chunks; c++)
        for (int r = 0; r < rows; r++)
            for (int l = 0; l < 16; l++) {
                double v = 0, m = 0;
                for (int k = 0; k < depth; k++) {
                    double p = (double)a[r * as + k] * x[c * xp + k * 16 + l];
                    v += p;
                    m += fabs(p);
                }
                if (bias) v += b[r], m += fabs(b[r]);
                if (r < scale_rows) v *= 0.37f, m *= 0.37f;
                if (gelu) v = gelu_ref(v);
                long i = c * yp + r * 16 + l;
                if (accumulate) v += y0[i], m += fabs(y0[i]);
                want[i] = v;
                tol[i] = U * (depth + 16) * m; // a rounding per term of the sum, a few for the epilogue
            }
    compare(what, y, want, tol, ny, yp, 16);
    pass("%s", what);
    free(a), free(x), free(b), free(y0), free(y), free(want), free(tol);
}

// MARK: - hk_attention

static void run_attention(void *ctx, hk_pool *pool, float *out) {
    hk_attention_args a = *(const hk_attention_args *)ctx;
    a.context = out;
    hk_attention(pool, &a);
}

/// windows x heads of head_dim, `tokens` real tokens per window (padded to 16); masks on every other window.
static void check_attention(int windows, int heads, int head_dim, int tokens, int masked) {
    int np = (tokens + 15) / 16 * 16, nc = np / 16, ch = heads * head_dim;
    long ps = (3L * ch + 2) * 16, nq = windows * nc * ps, nctx = (long)windows * nc * ch * 16; // rows past v unused
    float *qkv = random_floats(nq), *bias = random_floats((long)heads * np * np), *ctx0 = random_floats(nctx);
    float *ctx = alloc(nctx * (long)sizeof(float)), *scratch = alloc(3L * (np + 1) * np * (long)sizeof(float));
    float *mask = alloc((long)np * np * (long)sizeof(float));
    const float **masks = alloc(windows * (long)sizeof(float *));
    // Element (key j, query i) of a bias or mask matrix (key rows x query columns, panel layout).
#define KQ(j, i) ((long)(i) / 16 * np * 16 + (long)(j) * 16 + (i) % 16)
    for (int h = 0; h < heads; h++)
        for (int j = tokens; j < np; j++)
            for (int i = 0; i < np; i++) bias[(long)h * np * np + KQ(j, i)] = -INFINITY;
    for (int j = 0; j < np; j++)
        for (int i = 0; i < np; i++) mask[KQ(j, i)] = (i / 4 + j / 3) % 2 ? -100.0f : 0.0f;
    for (int w = 0; w < windows; w++) masks[w] = w % 2 ? NULL : mask;
    hk_attention_args args = {windows, heads, head_dim, ch, np, qkv, ps, ctx, bias, masked ? masks : NULL, scratch};
    char what[160];
    snprintf(what, sizeof what, "hk_attention windows %d heads %d head_dim %d tokens %d (padded %d) masks %d", windows,
             heads, head_dim, tokens, np, masked);
    run_threads(what, run_attention, &args, ctx0, ctx, nctx);
    double *want, *tol, *p = alloc(np * (long)sizeof(double));
    preset(ctx0, nctx, &want, &tol);
    for (int w = 0; w < windows; w++)
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < np; i++) {
                // Q(i, dd), K(j, dd), V(j, dd): token column of the window's panels, rows q | k | v.
#define QKV(part, t, dd) qkv[(long)w * nc * ps + (t) / 16 * ps + ((long)(part) * ch + h * head_dim + (dd)) * 16 + (t) % 16]
                double top = -INFINITY, mag = 0, sum = 0;
                for (int j = 0; j < np; j++) {
                    double s = bias[(long)h * np * np + KQ(j, i)], m = fabs(s);
                    if (masked && masks[w]) s += mask[KQ(j, i)], m += 100;
                    for (int dd = 0; dd < head_dim; dd++) {
                        double qk = (double)QKV(0, i, dd) * QKV(1, j, dd);
                        s += qk;
                        m += fabs(qk);
                    }
                    p[j] = s;
                    if (s > top) top = s;
                    if (j < tokens && m > mag) mag = m;
                }
                for (int j = 0; j < np; j++) sum += p[j] = exp(p[j] - top);
                for (int dd = 0; dd < head_dim; dd++) {
                    double v = 0, va = 0;
                    for (int j = 0; j < np; j++) {
                        v += p[j] * QKV(2, j, dd);
                        va += p[j] * fabs(QKV(2, j, dd));
                    }
                    long o = (long)w * nc * ch * 16 + i / 16 * (long)ch * 16 + (h * head_dim + dd) * 16 + i % 16;
                    want[o] = v / sum;
                    // Scores carry head_dim roundings at their magnitude, exp's relative error is the score's
                    // absolute one, then the weighted sum and the division.
                    tol[o] = U * (2 * (head_dim + 4) * mag + 2 * np + 16) * va / sum;
                }
#undef QKV
            }
#undef KQ
    compare(what, ctx, want, tol, nctx, (long)ch * 16, 16);
    pass("%s", what);
    free(qkv), free(bias), free(ctx0), free(ctx), free(scratch), free(mask), free(masks), free(want), free(tol), free(p);
}

// MARK: - hk_layernorm

typedef struct {
    int channels, chunks, in_place;
    const float *x, *w, *b;
} layernorm_case;

static void run_layernorm(void *ctx, hk_pool *pool, float *out) {
    const layernorm_case *c = ctx;
    hk_layernorm(pool, c->channels, c->chunks, c->in_place ? out : c->x, out, c->w, c->b, 1e-5f);
}

static void check_layernorm(int channels, int chunks, int in_place) {
    long n = (long)channels * chunks * 16;
    float *x = random_floats(n), *w = random_floats(channels), *b = random_floats(channels);
    float *y0 = random_floats(n), *y = alloc(n * (long)sizeof(float));
    for (long i = 0; i < n; i++) x[i] = 3 + 2 * x[i]; // an offset mean, as activations have
    layernorm_case lc = {channels, chunks, in_place, x, w, b};
    char what[128];
    snprintf(what, sizeof what, "hk_layernorm channels %d chunks %d in_place %d", channels, chunks, in_place);
    run_threads(what, run_layernorm, &lc, in_place ? x : y0, y, n);
    double *want, *tol;
    preset(in_place ? x : y0, n, &want, &tol);
    for (int c = 0; c < chunks; c++)
        for (int l = 0; l < 16; l++) {
            const float *xc = x + (long)c * channels * 16 + l;
            double mean = 0, var = 0, big = 0;
            for (int r = 0; r < channels; r++) mean += xc[r * 16], big = fmax(big, fabs(xc[r * 16]));
            mean /= channels;
            for (int r = 0; r < channels; r++) var += (xc[r * 16] - mean) * (xc[r * 16] - mean);
            double rstd = 1 / sqrt(var / channels + 1e-5f);
            for (int r = 0; r < channels; r++) {
                long i = (long)c * channels * 16 + r * 16 + l;
                double xh = (xc[r * 16] - mean) * rstd;
                want[i] = xh * w[r] + b[r];
                // The mean's and the variance's sums round at the inputs' magnitude.
                tol[i] = U * (channels + 16) * (fabs(xh) + big * rstd) * fabs(w[r]) + 4 * U * fabs(b[r]);
            }
        }
    compare(what, y, want, tol, n, (long)channels * 16, 16);
    pass("%s", what);
    free(x), free(w), free(b), free(y0), free(y), free(want), free(tol);
}

// MARK: - hk_gather

typedef struct {
    int channels, chunks, accumulate;
    const int32_t *index;
    const float *src;
    long sp, dp, dr;
} gather_case;

static void run_gather(void *ctx, hk_pool *pool, float *out) {
    const gather_case *c = ctx;
    hk_gather(pool, c->channels, c->chunks, c->index, c->src, c->sp, out, c->dp, c->dr, c->accumulate);
}

/// Index patterns by chunk: one run, two runs of 8, four of 4 (a shifted window's rows), scattered with
/// padding (-1), all padding, padding then a run.
static void check_gather(int channels, int chunks, long dst_row, int accumulate) {
    int src_chunks = 3;
    long sp = (long)channels * 16 + 16, dp = channels * dst_row + 16, nd = chunks * dp;
    float *src = random_floats(src_chunks * sp), *d0 = random_floats(nd), *d = alloc(nd * (long)sizeof(float));
    int32_t *index = alloc(chunks * 16L * (long)sizeof(int32_t));
    for (int c = 0; c < chunks; c++)
        for (int l = 0; l < 16; l++) {
            int t;
            switch (c % 6) {
            case 0: t = 3 + l; break;
            case 1: t = l < 8 ? 30 + l : 2 + l; break;
            case 2: t = (3 - l / 4) * 11 + l % 4; break;
            case 3: t = (int)((rnd() + 1) * 26) - 4; break;
            case 4: t = -1; break;
            default: t = l < 5 ? -1 : 40 + l; break;
            }
            index[c * 16 + l] = t < 0 ? -1 : t % (src_chunks * 16);
        }
    gather_case gc = {channels, chunks, accumulate, index, src, sp, dp, dst_row};
    char what[128];
    snprintf(what, sizeof what, "hk_gather channels %d chunks %d dst_row %ld accumulate %d", channels, chunks,
             dst_row, accumulate);
    run_threads(what, run_gather, &gc, d0, d, nd);
    double *want, *tol;
    preset(d0, nd, &want, &tol);
    for (int c = 0; c < chunks; c++)
        for (int r = 0; r < channels; r++)
            for (int l = 0; l < 16; l++) {
                int t = index[c * 16 + l];
                long i = c * dp + r * dst_row + l;
                float v = t < 0 ? 0.0f : src[t / 16 * sp + r * 16 + t % 16];
                want[i] = accumulate ? d0[i] + v : v; // float addition: exact comparison
            }
    compare(what, d, want, tol, nd, 0, 16);
    pass("%s", what);
    free(src), free(d0), free(d), free(index), free(want), free(tol);
}

// MARK: - hk_logmel

typedef struct {
    const float *power, *melw;
    int frames, bins, mels, stride;
    const int32_t *first, *last;
} logmel_case;

static void run_logmel(void *ctx, hk_pool *pool, float *out) {
    const logmel_case *c = ctx;
    hk_logmel(pool, c->power, c->frames, c->bins, c->melw, c->mels, c->stride, c->first, c->last, 1e-10f, out);
}

/// Triangular filters as a mel filterbank has them; frame 2 is silent (every band at amin).
static void check_logmel(int frames, int bins, int mels) {
    int stride = (mels + 15) / 16 * 16, blocks = stride / 16;
    long n = (long)frames * mels;
    float *power = random_floats((long)frames * bins), *melw = alloc((long)bins * stride * (long)sizeof(float));
    int32_t *first = alloc(blocks * (long)sizeof(int32_t)), *last = alloc(blocks * (long)sizeof(int32_t));
    for (long i = 0; i < (long)frames * bins; i++) power[i] = frames > 2 && i / bins == 2 ? 0 : powf(power[i], 4) * 50;
    for (int b = 0; b < blocks; b++) first[b] = bins, last[b] = 0;
    for (int m = 0; m < mels; m++) {
        double center = (m + 1.0) * bins / (mels + 1), width = 2.0 * bins / (mels + 1);
        for (int k = 0; k < bins; k++) {
            double w = 1 - fabs(k - center) / width;
            if (w <= 0) continue;
            melw[(long)k * stride + m] = (float)w;
            if (k < first[m / 16]) first[m / 16] = k;
            if (k + 1 > last[m / 16]) last[m / 16] = k + 1;
        }
    }
    float *o0 = random_floats(n), *o = alloc(n * (long)sizeof(float));
    logmel_case lc = {power, melw, frames, bins, mels, stride, first, last};
    char what[128];
    snprintf(what, sizeof what, "hk_logmel frames %d bins %d mels %d", frames, bins, mels);
    run_threads(what, run_logmel, &lc, o0, o, n);
    double *want, *tol;
    preset(o0, n, &want, &tol);
    for (int f = 0; f < frames; f++)
        for (int m = 0; m < mels; m++) {
            double s = 0;
            for (int k = 0; k < bins; k++) s += (double)power[(long)f * bins + k] * melw[(long)k * stride + m];
            double v = 10 * log10(fmax(s, 1e-10f));
            want[(long)f * mels + m] = v;
            tol[(long)f * mels + m] = 4.343 * U * (bins + 8) + 4 * ulp(v); // positive terms: relative error
        }
    compare(what, o, want, tol, n, 0, 16);
    pass("%s", what);
    free(power), free(melw), free(first), free(last), free(o0), free(o), free(want), free(tol);
}

// MARK: - elementwise

/// Values for the elementwise functions: specials, every binade of both signs, a dense run over [-20, 20], the
/// functions' thresholds and their neighbours; an odd count, so the vector tail runs too.
static long sweep(float *v) {
    long n = 0;
    const float special[] = {NAN, -NAN, INFINITY, -INFINITY, 0.0f, -0.0f, FLT_MIN, -FLT_MIN, 1e-40f, -1e-40f,
                             FLT_MAX, -FLT_MAX, 1e30f, -1e30f, 1e-30f, -1e-30f, 1, -1, 0.5f, -0.5f};
    for (size_t i = 0; i < sizeof special / sizeof *special; i++) v[n++] = special[i];
    for (int e = -126; e <= 127; e++)
        for (int m = 0; m < 3; m++) {
            float x = ldexpf(1.0f + m / 3.0f, e);
            v[n++] = x;
            v[n++] = -x;
        }
    for (int i = -4000; i <= 4000; i++) {
        float step = i * 0.005f; // a statement of its own: no FMA contraction, the same values on every target
        v[n++] = step + 0.0001f * (i % 7);
    }
    const float edge[] = {-87.33654f, 87.33654f, 88.3762626647949f, -88.3762626647949f, -88.7228394f, 88.7228394f,
                          0.921875f * 1.41421356f, 3.925f * 1.41421356f, 5.656854249492381f, -5.656854249492381f,
                          2.828427f, -2.828427f, 0.707106781f, 1.41421356f, 0.3535534f};
    for (size_t i = 0; i < sizeof edge / sizeof *edge; i++) {
        v[n++] = edge[i];
        v[n++] = nextafterf(edge[i], INFINITY);
        v[n++] = nextafterf(edge[i], -INFINITY);
    }
    return n;
}

enum { F_GELU, F_EXP, F_SIGMOID, F_DB };

/// One elementwise function over the sweep; reports the largest error in float32 steps of the result.
static void check_elementwise(int f) {
    static float x[12000], y[12000];
    static double want[12000], tol[12000];
    long n = sweep(x), m = 0;
    static const char *names[] = {"hk_gelu", "hk_exp", "hk_sigmoid", "hk_db"};
    float xs[12000];
    for (long i = 0; i < n; i++) {
        // hk_db is defined for normal x > 0, NaN and +inf.
        if (f == F_DB && !(isnan(x[i]) || x[i] >= FLT_MIN)) continue;
        xs[m++] = x[i];
    }
    if (f == F_GELU) hk_gelu(xs, y, m);
    else if (f == F_EXP) hk_exp(xs, y, m);
    else if (f == F_SIGMOID) hk_sigmoid(xs, y, m);
    else hk_db(xs, y, m);
    double worst = 0;
    for (long i = 0; i < m; i++) {
        double v = xs[i], w;
        switch (f) {
        case F_GELU:
            w = gelu_ref(v);
            // Around ulp(x) of absolute error where 0.5 x and the erf part cancel (x < 0); the table's
            // approximation error is below 3e-9 |x|.
            tol[i] = 3 * ulp(w) + 2 * U * fabs(v);
            break;
        case F_EXP:
            // Exactly 0 below -87.3 (documented); above 88.376 (and for +inf) vexp's clamp holds the result at
            // exp(88.376) = 2.4e38, short of overflow (hk_sigmoid handles that range itself).
            w = v < -87.33654f ? 0 : exp(v > 88.3762626647949f ? 88.3762626647949f : v);
            tol[i] = 2 * ulp(w);
            break;
        case F_SIGMOID:
            w = 1 / (1 + exp(-v));
            tol[i] = 4 * ulp(w) + FLT_MIN; // 0 where the exact value is subnormal
            break;
        default:
            w = 10 * log10(v);
            tol[i] = 3 * ulp(w);
            break;
        }
        want[i] = w;
        // In steps of the result (for GELU of the larger of result and x, see its tolerance), where normal.
        double scale = f == F_GELU ? fmax(fabs(w), fabs(v)) : fabs(w);
        if (isfinite(w) && isfinite(y[i]) && scale >= FLT_MIN) worst = fmax(worst, fabs(y[i] - w) / ulp(scale));
    }
    char what[64];
    snprintf(what, sizeof what, "%s over %ld values", names[f], m);
    for (long i = 0; i < m; i++) {
        double g = y[i], w = want[i];
        if (isnan(w) ? isnan(g) : isinf(w) ? g == w : fabs(g - w) <= tol[i]) continue;
        fail("%s: x = %.9g: expected %.9g, got %.9g (tolerance %.3g)", what, xs[i], w, g, tol[i]);
    }
    pass("%s (largest error %.2f ulp)", what, worst);
}

// MARK: - hk_window_run

typedef struct {
    int windows, ch, hidden;
    long arena_panel;
    const float *w_qkv, *w_proj, *w_fc1, *w_fc2, *b, *norm, *bias;
    float *tok, *arena, *ctx, *scratch;
} block_case;

/// A Swin block's steps over x in place (qkv and the hidden activations sharing one arena, as the model has them).
static int block_steps(const block_case *c, float *x, hk_linear_args *lin, hk_attention_args *att, hk_step *steps) {
    int ch = c->ch, chunks = c->windows * 4;
    long p = ch * 16L, ap = c->arena_panel;
    lin[0] = (hk_linear_args){3 * ch, ch, chunks, c->w_qkv, ch, c->tok, p, c->arena, ap, c->b, 0.3f, ch, 0, 0};
    lin[1] = (hk_linear_args){ch, ch, chunks, c->w_proj, ch, c->ctx, p, x, p, c->b, 1, 0, 0, 1};
    lin[2] = (hk_linear_args){c->hidden, ch, chunks, c->w_fc1, ch, c->tok, p, c->arena, ap, c->b, 1, 0, 1, 0};
    lin[3] = (hk_linear_args){ch, c->hidden, chunks, c->w_fc2, c->hidden, c->arena, ap, x, p, c->b, 1, 0, 0, 1};
    *att = (hk_attention_args){c->windows, 2, ch / 2, ch, 64, c->arena, ap, c->ctx, c->bias, NULL, c->scratch};
    hk_step norm = {.kind = HK_STEP_LAYERNORM, .channels = ch, .x = x, .y = c->tok, .weight = c->norm,
                    .bias = c->norm + ch, .eps = 1e-5f};
    steps[0] = norm;
    steps[1] = (hk_step){.kind = HK_STEP_LINEAR, .linear = &lin[0]};
    steps[2] = (hk_step){.kind = HK_STEP_ATTENTION, .attention = att};
    steps[3] = (hk_step){.kind = HK_STEP_LINEAR, .linear = &lin[1]};
    steps[4] = norm;
    steps[5] = (hk_step){.kind = HK_STEP_LINEAR, .linear = &lin[2]};
    steps[6] = (hk_step){.kind = HK_STEP_LINEAR, .linear = &lin[3]};
    return 7;
}

static void run_window(void *ctx, hk_pool *pool, float *out) {
    const block_case *c = ctx;
    hk_linear_args lin[4];
    hk_attention_args att;
    hk_step steps[7];
    int n = block_steps(c, out, lin, &att, steps);
    hk_window_run(pool, c->windows, 4, steps, n);
}

/// hk_window_run over a block's steps against the same steps one call at a time, bit for bit: by windows on each
/// thread (enough windows, weights in L2), and step by step (too few windows to share).
static void check_window_run(int windows, int ch) {
    int hidden = 4 * ch;
    long nx = windows * 4L * ch * 16, ap = (long)(3 * ch > hidden ? 3 * ch : hidden) * 16 + 16;
    block_case c = {windows, ch, hidden, ap, random_floats(3L * ch * ch), random_floats((long)ch * ch),
                    random_floats((long)hidden * ch), random_floats((long)hidden * ch), random_floats(hidden),
                    random_floats(2L * ch), random_floats(2L * 64 * 64), alloc(nx * 4), alloc(windows * 4L * ap * 4),
                    alloc(nx * 4), alloc(3L * 65 * 64 * 4)};
    float *x0 = random_floats(nx), *x = alloc(nx * 4), *want = alloc(nx * 4);
    char what[96];
    snprintf(what, sizeof what, "hk_window_run %d windows of 64 tokens, %d channels", windows, ch);
    run_threads(what, run_window, &c, x0, x, nx);
    hk_linear_args lin[4];
    hk_attention_args att;
    hk_step steps[7];
    memcpy(want, x0, nx * 4);
    int n = block_steps(&c, want, lin, &att, steps);
    for (int i = 0; i < n; i++) {
        const hk_step *s = &steps[i];
        if (s->kind == HK_STEP_LAYERNORM) hk_layernorm(NULL, s->channels, windows * 4, s->x, s->y, s->weight, s->bias, s->eps);
        else if (s->kind == HK_STEP_ATTENTION) hk_attention(NULL, s->attention);
        else hk_linear(NULL, s->linear);
    }
    for (long i = 0; i < nx; i++)
        if (memcmp(x + i, want + i, sizeof(float)) != 0)
            fail("%s: element %ld differs from the steps one by one: %.9g vs %.9g", what, i, x[i], want[i]);
    pass("%s", what);
}

int main(void) {
    isa = hk_isa();
    for (int t = 0; t < 3; t++)
        if (!(pools[t] = hk_pool_create(t + 1))) fail("hk_pool_create(%d)", t + 1);

    // Rows not a multiple of the 6- or 2-row tile, chunks not a multiple of 4 panels, odd depth: every epilogue.
    for (int e = 0; e < 16; e++) check_linear(13, 37, 6, e & 1, e & 2 ? 7 : 0, !!(e & 4), !!(e & 8));
    check_linear(5, 1, 1, 1, 0, 1, 0);
    check_linear(1, 2, 3, 0, 1, 0, 1);
    check_linear(96, 96, 24, 1, 32, 1, 0); // split into items across threads
    check_linear(96, 96, 24, 1, 0, 0, 1);
    check_linear(661, 301, 3, 1, 0, 0, 0); // weights past L2: blocks of panel groups

    check_attention(2, 3, 8, 13, 0);
    check_attention(3, 2, 12, 25, 1);
    check_attention(1, 1, 7, 40, 1);
    check_attention(4, 2, 16, 49, 1);

    check_window_run(12, 48);
    check_window_run(2, 48);

    check_layernorm(37, 30, 1);
    check_layernorm(96, 3, 0);
    check_layernorm(1, 2, 0);

    check_gather(96, 12, 32, 0);
    check_gather(96, 12, 16, 1);
    check_gather(7, 5, 16, 0);
    check_gather(7, 6, 24, 1);

    check_logmel(9, 65, 37);
    check_logmel(1, 20, 16);

    for (int f = F_GELU; f <= F_DB; f++) check_elementwise(f);

    for (int t = 0; t < 3; t++) hk_pool_destroy(pools[t]);
    printf("kernel_check: %d checks passed (%s)\n", checks, isa);
    return 0;
}
