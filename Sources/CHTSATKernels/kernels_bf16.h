// The opt-in bfloat16 linear layer (AVX512-BF16): weights and activations rounded to bfloat16 pairs, products
// summed in float32 by vdpbf16ps, the float32 epilogue of kernels_impl.h. Included by kernels.c after the
// AVX-512 kernels, under a target that adds avx512bf16.
//
// Pair layout: a depth x 16-token panel becomes ceil(depth / 2) vectors of 16 lanes, lane t holding the
// bfloat16 values of rows 2p (low half) and 2p + 1 (high half) of token t, as vdpbf16ps multiplies them.

/// Rounds a float to bfloat16 bits, to nearest even (NaN stays NaN).
static inline uint32_t hk_bf16_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000) return (u >> 16) | 0x40;
    return (u + 0x7fff + ((u >> 16) & 1)) >> 16;
}

/// The multiply-adds of one mr x nv bfloat16 tile over `pairs` row pairs, written to out + c * 6 * 16 + r * 16.
static inline __attribute__((always_inline)) void hk_bf16_tile(const int mr, const int nv, int pairs,
        const uint32_t *const *ar, const uint32_t *x, long xp, float *out) {
    __m512 acc[6][4];
    for (int r = 0; r < 6; r++)
        for (int c = 0; c < 4; c++) acc[r][c] = _mm512_setzero_ps();
    const uint32_t *a0 = ar[0], *a1 = mr > 1 ? ar[1] : 0, *a2 = mr > 2 ? ar[2] : 0;
    const uint32_t *a3 = mr > 3 ? ar[3] : 0, *a4 = mr > 4 ? ar[4] : 0, *a5 = mr > 5 ? ar[5] : 0;
    for (int p = 0; p < pairs; p++) {
        const uint32_t *xk = x + (long)p * 16;
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(xk), b1 = b0, b2 = b0, b3 = b0;
        if (nv > 1) b1 = (__m512bh)_mm512_loadu_si512(xk + xp);
        if (nv > 2) b2 = (__m512bh)_mm512_loadu_si512(xk + 2 * xp);
        if (nv > 3) b3 = (__m512bh)_mm512_loadu_si512(xk + 3 * xp);
        __m512bh s;
#define HK_ROW(r)                                                                   \
        if (mr > r) {                                                               \
            s = (__m512bh)_mm512_set1_epi32((int)a##r[p]);                          \
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], b0, s);                         \
            if (nv > 1) acc[r][1] = _mm512_dpbf16_ps(acc[r][1], b1, s);             \
            if (nv > 2) acc[r][2] = _mm512_dpbf16_ps(acc[r][2], b2, s);             \
            if (nv > 3) acc[r][3] = _mm512_dpbf16_ps(acc[r][3], b3, s);             \
        }
        HK_ROW(0) HK_ROW(1) HK_ROW(2) HK_ROW(3) HK_ROW(4) HK_ROW(5)
#undef HK_ROW
    }
#define HK_OUT(r)                                                                   \
    if (mr > r) {                                                                   \
        _mm512_storeu_ps(out + r * 16, acc[r][0]);                                  \
        if (nv > 1) _mm512_storeu_ps(out + 6 * 16 + r * 16, acc[r][1]);             \
        if (nv > 2) _mm512_storeu_ps(out + 12 * 16 + r * 16, acc[r][2]);            \
        if (nv > 3) _mm512_storeu_ps(out + 18 * 16 + r * 16, acc[r][3]);            \
    }
    HK_OUT(0) HK_OUT(1) HK_OUT(2) HK_OUT(3) HK_OUT(4) HK_OUT(5)
#undef HK_OUT
}

typedef void hk_bf16_tile_fn(int pairs, const uint32_t *const *ar, const uint32_t *x, long xp, float *out);

#define HK_TILE(MR_, NV_)                                                                                     \
    static __attribute__((noinline)) void hk_bf16_tile_##MR_##_##NV_(int pairs, const uint32_t *const *ar,    \
                                                                    const uint32_t *x, long xp, float *out) { \
        hk_bf16_tile(MR_, NV_, pairs, ar, x, xp, out);                                                        \
    }
#define HK_TILE_ROW(MR_) HK_TILE(MR_, 1) HK_TILE(MR_, 2) HK_TILE(MR_, 3) HK_TILE(MR_, 4)
HK_TILE_ROW(1)
HK_TILE_ROW(2)
HK_TILE_ROW(3)
HK_TILE_ROW(4)
HK_TILE_ROW(5)
HK_TILE_ROW(6)
#undef HK_TILE_ROW
#undef HK_TILE
#define HK_TILE_ENTRY(MR_) \
    {hk_bf16_tile_##MR_##_1, hk_bf16_tile_##MR_##_2, hk_bf16_tile_##MR_##_3, hk_bf16_tile_##MR_##_4}
static hk_bf16_tile_fn *const hk_bf16_tiles[6][4] = {
    HK_TILE_ENTRY(1), HK_TILE_ENTRY(2), HK_TILE_ENTRY(3), HK_TILE_ENTRY(4), HK_TILE_ENTRY(5), HK_TILE_ENTRY(6),
};
#undef HK_TILE_ENTRY

/// Tile rows [t0, t1) x tile columns [g0, g1) of a bfloat16 linear layer (x: pair layout, xp uint32 per panel).
static void hk_bf16_linear_range(const hk_linear_args *p, const uint32_t *packed, const uint32_t *x, long xp, int g0,
                                 int g1, int t0, int t1) {
    hk_epilogue e = {p->bias, p->scale, p->scale_rows, p->gelu, p->accumulate};
    int pairs = (p->depth + 1) / 2;
    float sums[4 * 6 * 16];
    for (int g = g0; g < g1; g++) {
        int c0 = g * 4, nv = p->chunks - c0 < 4 ? p->chunks - c0 : 4;
        for (int t = t0; t < t1; t++) {
            int r0 = t * 6, mr = p->rows - r0 < 6 ? p->rows - r0 : 6;
            const uint32_t *ar[6];
            for (int r = 0; r < mr; r++) ar[r] = packed + (long)(r0 + r) * pairs;
            hk_bf16_tiles[mr - 1][nv - 1](pairs, ar, x + c0 * xp, xp, sums);
            hk_avx512_epilogue(e.bias != 0, e.gelu, e.accumulate, mr, nv, sums, p->y + c0 * p->y_panel + r0 * 16,
                               p->y_panel, &e, r0);
        }
    }
}

/// Panels [c0, c1) of x (depth rows, panel stride xp floats) into pair layout (pairs * 16 uint32 per panel).
static void hk_bf16_pairs_range(int depth, int c0, int c1, const float *x, long xp, uint32_t *out) {
    // vcvtne2ps2bf16 gives [16 of its second operand, 16 of its first]; interleave them token by token.
    const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                                23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    int pairs = (depth + 1) / 2;
    for (int c = c0; c < c1; c++) {
        const float *panel = x + (long)c * xp;
        uint32_t *o = out + (long)c * pairs * 16;
        for (int p = 0; p < pairs; p++) {
            __m512 lo = _mm512_loadu_ps(panel + (2 * p) * 16);
            __m512 hi = 2 * p + 1 < depth ? _mm512_loadu_ps(panel + (2 * p + 1) * 16) : _mm512_setzero_ps();
            __m512i both = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
            _mm512_storeu_si512(o + p * 16, _mm512_permutexvar_epi16(interleave, both));
        }
    }
}
