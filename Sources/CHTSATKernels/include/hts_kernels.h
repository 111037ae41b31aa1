// Compute kernels of the HTS-AT forward pass: a fused linear layer, window attention, LayerNorm and token
// gathers, on the "panel" layout below, run by a small persistent thread pool.
//
// Panel layout: an R x T matrix (R rows = channels, T columns = tokens) is stored as ceil(T / 16) panels of
// R x 16 floats; element (r, t) is at base + (t / 16) * panel + r * 16 + t % 16, with panel >= R * 16. A panel
// is one SIMD register wide, so every per-token operation is a vector operation, and a weight matrix stored
// as PyTorch keeps it (out x in, row-major) is used in place, without a packed copy.
//
// The kernels are compiled for AVX-512, AVX2 and a portable baseline on x86-64, for NEON and the baseline on
// arm64; the best the CPU supports is chosen at run time (hk_isa() names it).
#ifndef HTS_KERNELS_H
#define HTS_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Tokens per panel.
#define HK_PANEL 16

/// A fork-join pool of `threads - 1` persistent workers plus the calling thread.
typedef struct hk_pool hk_pool;

/// Starts the workers; NULL if a thread cannot be created. threads >= 1.
hk_pool *hk_pool_create(int threads);
/// Stops and joins the workers.
void hk_pool_destroy(hk_pool *pool);
/// Threads that take part in each operation (workers + caller).
int hk_pool_threads(const hk_pool *pool);

/// The instruction set the kernels run with: "avx512", "avx2", "neon" or "generic".
const char *hk_isa(void);

/// The cache budgets the kernels block for, in bytes: 3/4 of a core's L1 data cache and of its L2, as the CPU reports
/// them (Zen 4's 32 KB and 1 MB where it reports none). They choose loop orders only, never the results.
void hk_cache_shares(long *l1, long *l2);

/// y = epilogue(a * x + bias): a linear layer over `chunks` token panels.
/// a: rows x depth, row r at a + r * a_stride (PyTorch's Linear weight as stored). x: depth rows, panel
/// stride x_panel. y: rows rows, panel stride y_panel; y must not overlap x.
/// Epilogue per element: v = acc + bias[r]; rows r < scale_rows are multiplied by `scale`; then exact
/// GELU if `gelu`; then v += y (the previous value) if `accumulate`.
typedef struct {
    int rows, depth, chunks;
    const float *a;
    long a_stride;
    const float *x;
    long x_panel;
    float *y;
    long y_panel;
    const float *bias; // may be NULL
    float scale;
    int scale_rows;
    int gelu;
    int accumulate;
} hk_linear_args;

void hk_linear(hk_pool *pool, const hk_linear_args *args);

/// Whether this CPU runs the bfloat16 linear layer (AVX512-BF16, and the AVX-512 kernels chosen).
int hk_bf16_supported(void);

/// Rounds a linear layer's weights (rows x depth, row r at w + r * a_stride) to bfloat16 pairs for
/// hk_linear_bf16: out[r * ceil(depth / 2) + p] holds w[r][2p] (low half) and w[r][2p + 1] (high half, 0 past
/// depth), rounded to nearest even.
void hk_pack_bf16(const float *w, int rows, int depth, long a_stride, uint32_t *out);

/// hk_linear (args->a unused) with bfloat16 weights from hk_pack_bf16 and activations rounded to bfloat16 in
/// `scratch` (chunks * ceil(depth / 2) * 16 values); products summed in float32, same epilogue. Does nothing
/// unless hk_bf16_supported().
void hk_linear_bf16(hk_pool *pool, const hk_linear_args *args, const uint32_t *packed, uint32_t *scratch);

/// Multi-head self-attention inside windows, for every window and head.
/// qkv: windows * padded tokens (window-major), 3 * channels rows (q, k, v; q already scaled), panel layout
/// with panel stride qkv_panel (>= 3 * channels * 16). context: same tokens, channels rows, panel stride
/// channels * 16.
/// bias: per head, the padded x padded matrix added to the scores, stored transposed as key rows x query
/// columns in panel layout (panel stride padded * 16); rows of padding keys must be -infinity.
/// masks: NULL, or one pointer per window (NULL for none) to a padded x padded matrix laid out like bias,
/// added after it. scratch: hk_pool_threads() * (padded + 1) * padded floats.
typedef struct {
    int windows, heads, head_dim, channels;
    int padded; // tokens per window rounded up to a multiple of 16
    const float *qkv;
    long qkv_panel;
    float *context;
    const float *bias;
    const float *const *masks;
    float *scratch;
} hk_attention_args;

void hk_attention(hk_pool *pool, const hk_attention_args *args);

/// LayerNorm over `channels` rows for each of `chunks` token panels (panel stride channels * 16);
/// y may be x. Biased variance, eps inside the square root, like torch.
void hk_layernorm(hk_pool *pool, int channels, int chunks, const float *x, float *y,
                  const float *weight, const float *bias, float eps);

/// What an hk_step runs.
typedef enum { HK_STEP_LAYERNORM, HK_STEP_LINEAR, HK_STEP_ATTENTION } hk_step_kind;

/// One step of hk_window_run: a LayerNorm, a linear layer or the attention, applied to one window's token panels.
typedef struct {
    hk_step_kind kind;
    const hk_linear_args *linear;       // HK_STEP_LINEAR
    const uint32_t *packed;             // HK_STEP_LINEAR in bfloat16 (as hk_linear_bf16), else NULL
    uint32_t *pairs;
    const hk_attention_args *attention; // HK_STEP_ATTENTION
    int channels;                       // HK_STEP_LAYERNORM, as hk_layernorm
    const float *x;
    float *y;
    const float *weight, *bias;
    float eps;
} hk_step;

/// Runs `count` steps over `windows` windows of `window_chunks` token panels, with the same results, bit for bit, as
/// running each step over all of them in turn (hk_layernorm, hk_linear or hk_linear_bf16, hk_attention; the steps'
/// arguments describe whole tensors, and an attention's `windows` is this call's). Where every layer's weights fit L2,
/// each thread runs all the steps of one window before the next, so that the window's activations stay in its
/// caches from step to step (in float32); otherwise, step by step. A step may read only its own window's part of what
/// earlier steps wrote.
void hk_window_run(hk_pool *pool, int windows, int window_chunks, const hk_step *steps, int count);

/// Token gather: column t of dst (t < chunks * 16) receives column index[t] of src, or zeros when
/// index[t] < 0; with `accumulate` it is added to dst instead. `channels` rows; panel strides src_panel and
/// dst_panel; row r of dst starts r * dst_row floats into its panel (16 for consecutive rows); dst must not
/// overlap src.
void hk_gather(hk_pool *pool, int channels, int chunks, const int32_t *index,
               const float *src, long src_panel, float *dst, long dst_panel, long dst_row, int accumulate);

/// Log-mel frames: out[f * mels + m] = 10 * log10(max(sum over k of power[f * bins + k] * melw[k * mel_stride + m],
/// amin)) for frames f < frames. melw is bins x mel_stride (mel_stride: mels rounded up to 16, zero columns
/// beyond mels); only rows [first[b], last[b]) can be nonzero in the 16 columns of block b.
void hk_logmel(hk_pool *pool, const float *power, int frames, int bins, const float *melw, int mels, int mel_stride,
               const int32_t *first, const int32_t *last, float amin, float *out);

/// Runs run(ctx, item, thread) for item < items on the pool's threads (thread 0 is the caller) and returns
/// when all are done; inline when pool is NULL.
void hk_pool_run(hk_pool *pool, int items, void (*run)(void *ctx, int item, int thread), void *ctx);

/// y[i] = 0.5 * x[i] * (1 + erf(x[i] / sqrt(2))) for n values (the GELU of the linear epilogue).
void hk_gelu(const float *x, float *y, long n);

/// y[i] = exp(x[i]) for n values (the exponential of the softmax, within 1.3 ulp), 0 below -87.34 and 2.4e38
/// from 88.376 up, +inf included (the softmax's arguments are never positive; the sigmoid handles overflow itself).
void hk_exp(const float *x, float *y, long n);

/// y[i] = 1 / (1 + exp(-x[i])) for n values (the model's output scores).
void hk_sigmoid(const float *x, float *y, long n);

/// y[i] = 10 * log10(x[i]) for n positive values (the log of the log-mel).
void hk_db(const float *x, float *y, long n);

#ifdef __cplusplus
}
#endif

#endif
