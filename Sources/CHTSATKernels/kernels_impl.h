// The kernels, written once with vector extensions and included by kernels.c once per instruction set, with
// HK_FN(name) (a name suffix), HK_MR x HK_NV (the register tile: weight rows x token panels) and HK_ISA (one of
// kernels.c's HK_ISA_*) defined; it undefines them at its end. Intrinsics appear only where they pay: on AVX-512 the
// table-driven GELU and masked loads in gathers, on AVX2 a table GELU of its own and the gathers per 8-lane half, on
// NEON the table-driven GELU.
// Types, constants and the shared declarations live in kernels.c.
#define HK_AVX512 (HK_ISA == HK_ISA_AVX512)
#define HK_AVX2 (HK_ISA == HK_ISA_AVX2)
#define HK_NEON (HK_ISA == HK_ISA_NEON)

// MARK: - math

/// exp(x), within 1.3 ulp (1.6 without FMA), for x <= 88.376 (or NaN); exactly 0 below -87.3 (and for -inf). The
/// softmax's arguments (v - max <= 0) need nothing else.
static inline __attribute__((always_inline)) v16 HK_FN(vexp_le)(v16 x) {
    // Round x / ln2 to an integer n with the 1.5 * 2^23 trick (no floor instruction needed); r = x - n ln2 in two
    // parts (Cody-Waite, exact without FMA), e^r by a degree-6 fit on [-ln2/2, ln2/2] (4e-9): 3 operations fewer than
    // Cephes' degree 7 (AVX2 softmax -0.2 ms). Below -87.3 the arithmetic may make anything, which the final select
    // replaces.
    v16 t = x * 1.44269504088896341f + 12582912.0f;
    v16 n = t - 12582912.0f;
    v16 r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    v16 p = splat(1.3880350997e-03f);
    p = p * r + 8.3799497868e-03f;
    p = p * r + 4.1667511363e-02f;
    p = p * r + 1.6666340347e-01f;
    p = p * r + 4.9999995297e-01f;
    p = p * r + 1.0000000628e+00f;
    p = p * r + 1.0f;
    // p * 2^n as an exponent add: t's low bits hold n (two's complement), so t << 23 is n << 23.
    v16i scaled = (v16i)p + ((v16i)t << 23);
    return vselect(x < -87.33654f, splat(0), (v16)scaled);
}

/// exp(x) for any x: vexp_le with x clamped to 88.376 (NaN passes through, so a NaN score stays NaN, as in torch).
static inline __attribute__((always_inline)) v16 HK_FN(vexp)(v16 x) {
    return HK_FN(vexp_le)(vselect(x > 88.3762626647949f, splat(88.3762626647949f), x));
}

/// 10 * log10(x) for normal x > 0 (and NaN, +inf unchanged), about 2 ulp: Cephes' logf (mantissa in
/// [sqrt(1/2), sqrt(2)), degree-8 polynomial).
static inline __attribute__((always_inline)) v16 HK_FN(vdb)(v16 x) {
    v16i bits = (v16i)x;
    v16i e = ((bits >> 23) & 0xff) - 126;
    v16 m = (v16)((bits & 0x007fffff) | 0x3f000000); // in [0.5, 1)
    v16i low = m < 0.707106781186547524f;
    v16 fe = __builtin_convertvector(e, v16) - vselect(low, splat(1), splat(0));
    m = m + vselect(low, m, splat(0)) - 1.0f;
    v16 z = m * m;
    v16 y = splat(7.0376836292e-2f);
    y = y * m + -1.1514610310e-1f;
    y = y * m + 1.1676998740e-1f;
    y = y * m + -1.2420140846e-1f;
    y = y * m + 1.4249322787e-1f;
    y = y * m + -1.6668057665e-1f;
    y = y * m + 2.0000714765e-1f;
    y = y * m + -2.4999993993e-1f;
    y = y * m + 3.3333331174e-1f;
    y = y * m * z;
    y = y + fe * -2.12194440e-4f;
    y = y + z * -0.5f;
    v16 ln = m + y + fe * 0.693359375f;
    return vselect(x < __builtin_inff(), ln * 4.342944819032518f, x); // 10 / ln(10)
}

static void HK_FN(db)(const float *x, float *y, long n) {
    long i = 0;
    for (; i + 16 <= n; i += 16) store(y + i, HK_FN(vdb)(load(x + i)));
    if (i < n) {
        float tmp[16];
        for (int k = 0; k < 16; k++) tmp[k] = i + k < n ? x[i + k] : 1.0f;
        v16 v = HK_FN(vdb)(load(tmp));
        for (long k = i; k < n; k++) y[k] = v[k - i];
    }
}

/// Log-mel of frames [f0, f1): each 16-band block sums its rows of the filterbank, then the dB.
static void HK_FN(logmel_range)(const float *power, int f0, int f1, int bins, const float *melw, int mels,
                                int stride, const int32_t *first, const int32_t *last, float amin, float *out) {
    for (int f = f0; f < f1; f++) {
        const float *p = power + (long)f * bins;
        for (int b = 0; b * 16 < mels; b++) {
            v16 acc0 = splat(0), acc1 = splat(0);
            int k = first[b];
            for (; k + 1 < last[b]; k += 2) {
                acc0 += load(melw + (long)k * stride + b * 16) * p[k];
                acc1 += load(melw + (long)(k + 1) * stride + b * 16) * p[k + 1];
            }
            if (k < last[b]) acc0 += load(melw + (long)k * stride + b * 16) * p[k];
            v16 acc = acc0 + acc1;
            // max() as torch.clamp: a NaN power stays NaN.
            v16 db = HK_FN(vdb)(vselect(acc < amin, splat(amin), acc));
            float *o = out + (long)f * mels + b * 16;
            if (b * 16 + 16 <= mels) store(o, db);
            else for (int m = 0; m < mels - b * 16; m++) o[m] = db[m];
        }
    }
}

/// erf(x), within about 1 ulp (the GELU of the portable kernels).
static inline __attribute__((always_inline)) v16 HK_FN(verf)(v16 x) {
    v16 a = __builtin_elementwise_abs(x), r;
    // x * (c0 + x^2 P(x^2)) below 0.921875, 1 - Q(|x| - 2.4) up to 3.925, then +-1.
    v16 a2 = a * a;
    v16 p = splat(8.825232597540927e-05f);
    p = p * a2 + -8.254793057046404e-04f;
    p = p * a2 + 5.211278869077632e-03f;
    p = p * a2 + -2.6863648500085067e-02f;
    p = p * a2 + 1.1283773147920984e-01f;
    p = p * a2 + -3.761263868080189e-01f;
    v16 small = a * 1.1283791670955126f + (a * a2) * p;
    v16 t = vselect(a > 3.925f, splat(3.925f), a) - 2.4f;
    v16 q = splat(-1.238726003e-06f);
    q = q * t + 1.039518126e-06f;
    q = q * t + 1.796431722e-05f;
    q = q * t + -3.845508368e-05f;
    q = q * t + -5.767292673e-05f;
    q = q * t + 3.425356877e-04f;
    q = q * t + -5.262584724e-04f;
    q = q * t + -2.513411801e-04f;
    q = q * t + 3.086926130e-03f;
    q = q * t + -7.884946588e-03f;
    q = q * t + 1.211624451e-02f;
    q = q * t + -1.246995661e-02f;
    q = q * t + 8.533725253e-03f;
    q = q * t + -3.555562926e-03f;
    q = q * t + 6.885106422e-04f;
    v16 large = vselect(a >= 3.925f, splat(1), 1.0f - q);
    r = vselect(a < 0.921875f, small, large);
    // Copy the sign of x (erf is odd); NaN stays NaN through the polynomials.
    return (v16)(((v16i)r & 0x7fffffff) | ((v16i)x & (int32_t)0x80000000));
}

/// torch's exact GELU: 0.5 * x * (1 + erf(x / sqrt(2))).
static inline __attribute__((always_inline)) v16 HK_FN(vgelu)(v16 x) {
#if HK_AVX512
    // The same as 0.5 x + |x| g(|x|) with g(a) = erf(a / sqrt(2)) / 2: 16 quintics over [0, 4 sqrt(2)) picked
    // per lane by one permute per coefficient (hk_gelu_pieces), g = 1/2 beyond (erf rounds to 1 there).
    v16 a = __builtin_elementwise_abs(x), s = a * (16.0f / 5.656854249492381f);
    __m512i piece = _mm512_min_epi32(_mm512_cvttps_epi32((__m512)s), _mm512_set1_epi32(15));
    v16 t = s - ((v16)_mm512_cvtepi32_ps(piece) + 0.5f);
    v16 g = (v16)_mm512_permutexvar_ps(piece, _mm512_loadu_ps(hk_gelu_pieces[5]));
    for (int k = 4; k >= 0; k--) g = g * t + (v16)_mm512_permutexvar_ps(piece, _mm512_loadu_ps(hk_gelu_pieces[k]));
    g = vselect(a >= 5.656854249492381f, splat(0.5f), g);
    return a * g + x * 0.5f;
#elif HK_AVX2
    // The same g per 8-lane half from hk_gelu_octs, whose 8 pieces one 8-entry permute picks: 7 permutes and no
    // branch. 16 pieces took 6 permutes, but 12 and 6 blends wherever a lane reached piece 8 (|x| >= 2.83), which a
    // branch had to guess. Estrin's scheme shortens the chain of dependent multiply-adds from 6 to 3, and clamping
    // the position to the last piece (where g is 0.5 to float precision) leaves out the index clamp and the select.
    // hk_gelu: 0.37 ns a value with |x| < 2.83 and 0.53 with half beyond, -> 0.33 for both.
    v16 a = __builtin_elementwise_abs(x), s = a * (8.0f / 5.656854249492381f), g;
    for (int h = 0; h < 2; h++) {
        __m256 sh;
        __builtin_memcpy(&sh, (const float *)&s + 8 * h, sizeof sh);
        sh = _mm256_min_ps(sh, _mm256_set1_ps(7.99999952f)); // NaN -> 7.99999952: a carries the NaN
        __m256i piece = _mm256_cvttps_epi32(sh);
        __m256 u = _mm256_sub_ps(sh, _mm256_cvtepi32_ps(piece));
#define HK_COEF(k) _mm256_permutevar8x32_ps(_mm256_loadu_ps(hk_gelu_octs[k]), piece)
        __m256 u2 = _mm256_mul_ps(u, u), u4 = _mm256_mul_ps(u2, u2);
        __m256 p01 = _mm256_fmadd_ps(HK_COEF(1), u, HK_COEF(0)), p23 = _mm256_fmadd_ps(HK_COEF(3), u, HK_COEF(2));
        __m256 p456 = _mm256_fmadd_ps(HK_COEF(6), u2, _mm256_fmadd_ps(HK_COEF(5), u, HK_COEF(4)));
        __m256 gh = _mm256_fmadd_ps(p456, u4, _mm256_fmadd_ps(p23, u2, p01));
#undef HK_COEF
        __builtin_memcpy((float *)&g + 8 * h, &gh, sizeof gh);
    }
    return a * g + x * 0.5f;
#elif HK_NEON
    // The same pieces per 4-lane quarter: vqtbl4q_u8 looks each lane's 4 bytes up in a 64-byte row of the table,
    // one lookup per coefficient like AVX-512's permute (the same values; hk_gelu's loop is 130 instructions per 16
    // values, against 262 with verf).
    v16 a = __builtin_elementwise_abs(x), s = a * (16.0f / 5.656854249492381f), g;
    for (int h = 0; h < 4; h++) {
        float32x4_t sh = vld1q_f32((const float *)&s + 4 * h);
        int32x4_t piece = vminq_s32(vcvtq_s32_f32(sh), vdupq_n_s32(15));
        uint8x16_t bytes = vreinterpretq_u8_s32(vmlaq_n_s32(vdupq_n_s32(0x03020100), piece, 0x04040404));
        float32x4_t t = vsubq_f32(sh, vaddq_f32(vcvtq_f32_s32(piece), vdupq_n_f32(0.5f)));
#define HK_COEF(k) vreinterpretq_f32_u8(vqtbl4q_u8(vld1q_u8_x4((const uint8_t *)hk_gelu_pieces[k]), bytes))
        float32x4_t gh = HK_COEF(5);
        for (int k = 4; k >= 0; k--) gh = vfmaq_f32(HK_COEF(k), gh, t);
#undef HK_COEF
        vst1q_f32((float *)&g + 4 * h, gh);
    }
    g = vselect(a >= 5.656854249492381f, splat(0.5f), g);
    return a * g + x * 0.5f;
#else
    return x * 0.5f * (1.0f + HK_FN(verf)(x * 0.707106781186547524f));
#endif
}

static void HK_FN(gelu)(const float *x, float *y, long n) {
    long i = 0;
    for (; i + 16 <= n; i += 16) store(y + i, HK_FN(vgelu)(load(x + i)));
    if (i < n) {
        float tmp[16] = {0};
        for (long k = i; k < n; k++) tmp[k - i] = x[k];
        v16 v = HK_FN(vgelu)(load(tmp));
        for (long k = i; k < n; k++) y[k] = v[k - i];
    }
}

/// 1 / (1 + exp(-x)), exactly 0 where exp(-x) overflows (as in float arithmetic).
static inline __attribute__((always_inline)) v16 HK_FN(vsigmoid)(v16 x) {
    v16 e = HK_FN(vexp)(-x);
    return 1.0f / (1.0f + vselect(x < -88.7228394f, splat(__builtin_inff()), e));
}

static void HK_FN(sigmoid)(const float *x, float *y, long n) {
    long i = 0;
    for (; i + 16 <= n; i += 16) store(y + i, HK_FN(vsigmoid)(load(x + i)));
    if (i < n) {
        float tmp[16] = {0};
        for (long k = i; k < n; k++) tmp[k - i] = x[k];
        v16 v = HK_FN(vsigmoid)(load(tmp));
        for (long k = i; k < n; k++) y[k] = v[k - i];
    }
}

static void HK_FN(exp)(const float *x, float *y, long n) {
    long i = 0;
    for (; i + 16 <= n; i += 16) store(y + i, HK_FN(vexp)(load(x + i)));
    if (i < n) {
        float tmp[16] = {0};
        for (long k = i; k < n; k++) tmp[k - i] = x[k];
        v16 v = HK_FN(vexp)(load(tmp));
        for (long k = i; k < n; k++) y[k] = v[k - i];
    }
}

// MARK: - register tile

/// The multiply-adds of one mr x nv tile: acc(r, c) = sum over k of A(r, k) * X(k, c), with
/// A(r, k) = ar[r][(k / 16) * achunk + (k % 16) * ak] (row pointers and strides describe both weights and the
/// transposed blocks inside attention) and X(k, c) = x[c * xp + k * 16]; stored at out + c * op + r * 16.
/// Rows and panels are written out one by one, and the epilogue is left to the caller, so that the compiler
/// keeps every accumulator in a register and interleaves each broadcast with its multiply-adds.
static inline __attribute__((always_inline)) void HK_FN(tile)(const int mr, const int nv, int depth,
        const float *const *ar, long ak, long achunk, const float *x, long xp, float *out, long op) {
    v16 acc[6][4] = {{0}};
    const float *a0 = ar[0], *a1 = mr > 1 ? ar[1] : 0, *a2 = mr > 2 ? ar[2] : 0;
    const float *a3 = mr > 3 ? ar[3] : 0, *a4 = mr > 4 ? ar[4] : 0, *a5 = mr > 5 ? ar[5] : 0;
    for (int k = 0; k < depth; k++) {
        long ka = (k >> 4) * achunk + (k & 15) * ak; // offset of A(r, k) from row r's pointer
        const float *xk = x + (long)k * 16;
        v16 b0 = load(xk), b1 = nv > 1 ? load(xk + xp) : b0;
        v16 b2 = nv > 2 ? load(xk + 2 * xp) : b0, b3 = nv > 3 ? load(xk + 3 * xp) : b0;
        float s;
#define HK_ROW(r)                             \
        if (mr > r) {                         \
            s = a##r[ka];                     \
            acc[r][0] += b0 * s;              \
            if (nv > 1) acc[r][1] += b1 * s;  \
            if (nv > 2) acc[r][2] += b2 * s;  \
            if (nv > 3) acc[r][3] += b3 * s;  \
        }
        HK_ROW(0) HK_ROW(1) HK_ROW(2) HK_ROW(3) HK_ROW(4) HK_ROW(5)
#undef HK_ROW
    }
#define HK_OUT(r)                                                               \
    if (mr > r) {                                                               \
        store(out + r * 16, acc[r][0]);                                         \
        if (nv > 1) store(out + op + r * 16, acc[r][1]);                        \
        if (nv > 2) store(out + 2 * op + r * 16, acc[r][2]);                    \
        if (nv > 3) store(out + 3 * op + r * 16, acc[r][3]);                    \
    }
    HK_OUT(0) HK_OUT(1) HK_OUT(2) HK_OUT(3) HK_OUT(4) HK_OUT(5)
#undef HK_OUT
}

#define HK_TILE(MR_, NV_)                                                                                   \
    static __attribute__((noinline, unused)) void HK_FN(tile_##MR_##_##NV_)(int depth, const float *const *ar, \
            long ak, long achunk, const float *x, long xp, float *out, long op) {                           \
        HK_FN(tile)(MR_, NV_, depth, ar, ak, achunk, x, xp, out, op);                                           \
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
    {HK_FN(tile_##MR_##_1), HK_FN(tile_##MR_##_2), HK_FN(tile_##MR_##_3), HK_FN(tile_##MR_##_4)}
static hk_tile_fn *const HK_FN(tiles)[6][4] = {
    HK_TILE_ENTRY(1), HK_TILE_ENTRY(2), HK_TILE_ENTRY(3), HK_TILE_ENTRY(4), HK_TILE_ENTRY(5), HK_TILE_ENTRY(6),
};
#undef HK_TILE_ENTRY

/// The epilogue over a tile's sums, one loop per combination so that no test is left in the loops.
static inline __attribute__((always_inline)) void HK_FN(epilogue)(const int bias, const int gelu, const int accumulate,
        int mr, int nv, const float *sums, float *y, long yp, const hk_epilogue *e, int row0) {
    for (int r = 0; r < mr; r++) {
        int row = row0 + r;
        float b = bias ? e->bias[row] : 0.0f, scale = row < e->scale_rows ? e->scale : 1.0f;
        for (int c = 0; c < nv; c++) {
            float *out = y + c * yp + r * 16;
            v16 v = load(sums + c * 6 * 16 + r * 16);
            if (bias) v = v + b;
            v = v * scale;
            if (gelu) v = HK_FN(vgelu)(v);
            if (accumulate) v = v + load(out);
            store(out, v);
        }
    }
}

/// The full HK_MR x HK_NV tile of a linear layer (6 x 4 sixteen-float vectors with AVX-512, 6 x 1 with AVX2)
/// with its epilogue applied straight from the accumulators (bias; scale on the first scale_rows rows; GELU;
/// residual add), saving the round trip through memory that other tiles take. The flags are constants in each
/// instantiation.
static inline __attribute__((always_inline)) void HK_FN(tile_fused)(const int gelu, const int accumulate, int depth,
        const float *const *ar, const float *x, long xp, float *y, long yp, const hk_epilogue *e, int row0) {
    const int mr = HK_MR, nv = HK_NV;
    v16 acc[6][4] = {{0}};
    const float *a0 = ar[0], *a1 = mr > 1 ? ar[1] : 0, *a2 = mr > 2 ? ar[2] : 0;
    const float *a3 = mr > 3 ? ar[3] : 0, *a4 = mr > 4 ? ar[4] : 0, *a5 = mr > 5 ? ar[5] : 0;
    for (int k = 0; k < depth; k++) {
        const float *xk = x + (long)k * 16;
        v16 b0 = load(xk), b1 = nv > 1 ? load(xk + xp) : b0;
        v16 b2 = nv > 2 ? load(xk + 2 * xp) : b0, b3 = nv > 3 ? load(xk + 3 * xp) : b0;
        float s;
#define HK_ROW(r)                             \
        if (mr > r) {                         \
            s = a##r[k];                      \
            acc[r][0] += b0 * s;              \
            if (nv > 1) acc[r][1] += b1 * s;  \
            if (nv > 2) acc[r][2] += b2 * s;  \
            if (nv > 3) acc[r][3] += b3 * s;  \
        }
        HK_ROW(0) HK_ROW(1) HK_ROW(2) HK_ROW(3) HK_ROW(4) HK_ROW(5)
#undef HK_ROW
    }
#pragma clang loop unroll(full)
    for (int r = 0; r < mr; r++) {
        float b = e->bias[row0 + r], scale = row0 + r < e->scale_rows ? e->scale : 1.0f;
#pragma clang loop unroll(full)
        for (int c = 0; c < nv; c++) {
            float *out = y + c * yp + r * 16;
            v16 v = (acc[r][c] + b) * scale;
            if (gelu) v = HK_FN(vgelu)(v);
            if (accumulate) v = v + load(out);
            store(out, v);
        }
    }
}

static __attribute__((noinline)) void HK_FN(tile_bias)(int depth, const float *const *ar, const float *x, long xp,
                                                      float *y, long yp, const hk_epilogue *e, int row0) {
    HK_FN(tile_fused)(0, 0, depth, ar, x, xp, y, yp, e, row0);
}
static __attribute__((noinline)) void HK_FN(tile_gelu)(int depth, const float *const *ar, const float *x, long xp,
                                                      float *y, long yp, const hk_epilogue *e, int row0) {
    HK_FN(tile_fused)(1, 0, depth, ar, x, xp, y, yp, e, row0);
}
static __attribute__((noinline)) void HK_FN(tile_residual)(int depth, const float *const *ar, const float *x, long xp,
                                                          float *y, long yp, const hk_epilogue *e, int row0) {
    HK_FN(tile_fused)(0, 1, depth, ar, x, xp, y, yp, e, row0);
}

/// One tile with the linear layer's epilogue: Y(r, c) = y[c * yp + r * 16] (see hk_linear_args).
static inline void HK_FN(tile_out)(int mr, int nv, int depth, const float *const *ar, const float *x, long xp,
                                   float *y, long yp, const hk_epilogue *e, int row0) {
    if (!e->bias && !e->scale_rows && !e->gelu && !e->accumulate) {
        HK_FN(tiles)[mr - 1][nv - 1](depth, ar, 1, 16, x, xp, y, yp);
        return;
    }
    if (mr == HK_MR && nv == HK_NV && e->bias && !(e->gelu && e->accumulate)) {
        if (e->gelu) HK_FN(tile_gelu)(depth, ar, x, xp, y, yp, e, row0);
        else if (e->accumulate) HK_FN(tile_residual)(depth, ar, x, xp, y, yp, e, row0);
        else HK_FN(tile_bias)(depth, ar, x, xp, y, yp, e, row0);
        return;
    }
    float sums[4 * 6 * 16];
    HK_FN(tiles)[mr - 1][nv - 1](depth, ar, 1, 16, x, xp, sums, 6 * 16);
    // The combinations the model uses (fc1; proj and fc2; qkv and the rest), then any other.
    int b = e->bias != 0;
    if (b && e->gelu && !e->accumulate) HK_FN(epilogue)(1, 1, 0, mr, nv, sums, y, yp, e, row0);
    else if (b && !e->gelu && e->accumulate) HK_FN(epilogue)(1, 0, 1, mr, nv, sums, y, yp, e, row0);
    else if (b && !e->gelu && !e->accumulate) HK_FN(epilogue)(1, 0, 0, mr, nv, sums, y, yp, e, row0);
    else HK_FN(epilogue)(b, e->gelu, e->accumulate, mr, nv, sums, y, yp, e, row0);
}

/// Runs tile rows [t0, t1) x tile columns [g0, g1) of a linear layer, column-major so that a group of
/// token panels stays in cache while the weight rows stream past it, or row-major within blocks of
/// hk_group_block() groups. (Blocking the weight rows for L2 measured no faster on AVX2 or AVX-512.)
static void HK_FN(linear_range)(const hk_linear_args *p, int g0, int g1, int t0, int t1) {
    hk_epilogue e = {p->bias, p->scale, p->scale_rows, p->gelu, p->accumulate};
    int block = hk_group_block(HK_NV, p->depth, p->rows);
    // Weights beyond L2 come from memory for a tile's first group; with 1-panel groups that group is too short for
    // the hardware prefetchers to bring them in time, so each group prefetches a share of the next tile's rows
    // into L1, where a tile fits beside a panel (depth 384: stage 2 but its fc2). AVX2, 1 thread: stage 2 56.5 ->
    // 54.6 ms. Deeper tiles prefetched into L2 gained nothing in stage 2 and cost stage 3 and the head 1 ms;
    // AVX-512's 4-panel groups lost 1 ms with it.
    const int prefetch = hk_prefetch_weights(HK_NV, HK_MR, p->depth, p->rows);
    for (int b0 = g0; b0 < g1; b0 += block) {
        int b1 = b0 + block < g1 ? b0 + block : g1;
        for (int t = t0; t < t1; t++) {
            int r0 = t * HK_MR, mr = p->rows - r0 < HK_MR ? p->rows - r0 : HK_MR;
            const float *ar[6];
            for (int r = 0; r < mr; r++) ar[r] = p->a + (long)(r0 + r) * p->a_stride;
            const char *next = (const char *)(p->a + (long)(r0 + HK_MR) * p->a_stride);
            long lines = 0, done = 0;
            if (prefetch && t + 1 < t1) {
                int n = p->rows - r0 - HK_MR < HK_MR ? p->rows - r0 - HK_MR : HK_MR;
                lines = (((long)(n - 1) * p->a_stride + p->depth) * (long)sizeof(float) + 63) / 64;
            }
            long share = (lines + (b1 - b0) - 1) / (b1 - b0);
            for (int g = b0; g < b1; g++) {
                for (long end = done + share < lines ? done + share : lines; done < end; done++)
                    __builtin_prefetch(next + done * 64, 0, 3);
                int c0 = g * HK_NV, nv = p->chunks - c0 < HK_NV ? p->chunks - c0 : HK_NV;
                HK_FN(tile_out)(mr, nv, p->depth, ar, p->x + c0 * p->x_panel, p->x_panel,
                                p->y + c0 * p->y_panel + r0 * 16, p->y_panel, &e, r0);
            }
        }
    }
}

// MARK: - attention

/// Softmax numerators over the key rows of 16 query columns: s (np rows of 16) + bias (+ mask) becomes
/// exp(v - max) in place; returns the column sums (the division is left to the context's columns).
static v16 HK_FN(softmax_columns)(float *s, const float *bias, const float *mask, int np) {
    // With AVX-512, two running maxima and sums halve the dependency chains; a 16-float vector is 2 or 4 registers
    // elsewhere, which are chains enough, and a second set only spills (AVX2: -0.2 ms). np is a multiple of 16.
    enum { u = HK_AVX512 ? 2 : 1 };
    v16 top[u], sum[u];
    for (int i = 0; i < u; i++) top[i] = splat(-__builtin_inff()), sum[i] = splat(0);
    for (int j = 0; j < np; j += u)
        for (int i = 0; i < u; i++) {
            v16 v = load(s + (j + i) * 16) + load(bias + (j + i) * 16);
            if (mask) v = v + load(mask + (j + i) * 16);
            store(s + (j + i) * 16, v);
            top[i] = vmax(top[i], v);
        }
    v16 max = u == 2 ? vmax(top[0], top[u - 1]) : top[0];
    if (HK_AVX2) {
        // AVX2's 16 registers hold exp's constants and the maximum but not a running sum too: it spilled, and each
        // row waited for it through a store-to-load forward. Summed in a pass of its own, the exp loop carries
        // nothing (attention 7.6 -> 7.0 ms a window). The baseline's 4-register vectors run faster the other way.
        for (int j = 0; j < np; j++) store(s + j * 16, HK_FN(vexp_le)(load(s + j * 16) - max));
        v16 even = splat(0), odd = splat(0);
        for (int j = 0; j < np; j += 2) even += load(s + j * 16), odd += load(s + (j + 1) * 16);
        return even + odd;
    }
    for (int j = 0; j < np; j += u)
        for (int i = 0; i < u; i++) {
            v16 e = HK_FN(vexp_le)(load(s + (j + i) * 16) - max);
            store(s + (j + i) * 16, e);
            sum[i] += e;
        }
    return u == 2 ? sum[0] + sum[u - 1] : sum[0];
}

/// One window and head: S^T = K Q^T (keys x queries), column softmax with bias and mask, O^T = V^T P^T.
static void HK_FN(attention_item)(const hk_attention_args *p, int window, int head, float *s) {
    const int np = p->padded, nc = np / 16, d = p->head_dim, ch = p->channels;
    const long ps = p->qkv_panel;
    const float *base = p->qkv + (long)window * nc * ps;
    const float *q = base + (long)head * d * 16;
    const float *k = base + (long)(ch + head * d) * 16;
    const float *v = base + (long)(2 * ch + head * d) * 16;

    // Scores: rows are keys j (K(j, dd) sits in column j of the K^T panel rows), columns are queries.
    for (int j0 = 0; j0 < np; j0 += HK_MR) {
        int mr = np - j0 < HK_MR ? np - j0 : HK_MR;
        const float *ar[6];
        for (int r = 0; r < mr; r++) ar[r] = k + ((j0 + r) / 16) * ps + (j0 + r) % 16;
        for (int c0 = 0; c0 < nc; c0 += HK_NV) {
            int nv = nc - c0 < HK_NV ? nc - c0 : HK_NV;
            HK_FN(tiles)[mr - 1][nv - 1](d, ar, 16, 256, q + c0 * ps, ps, s + (long)c0 * np * 16 + j0 * 16, (long)np * 16);
        }
    }
    const float *bias = p->bias + (long)head * np * np;
    const float *mask = p->masks ? p->masks[window] : 0;
    float *inv = s + (long)np * np; // one reciprocal sum per query
    for (int c = 0; c < nc; c++)
        store(inv + c * 16, 1.0f / HK_FN(softmax_columns)(s + (long)c * np * 16, bias + (long)c * np * 16,
                                               mask ? mask + (long)c * np * 16 : 0, np));

    // Context: rows are the head's channels dd (V^T row dd, keys along it, a new panel every 16 keys).
    float *out = p->context + (long)window * nc * ch * 16 + (long)head * d * 16;
    for (int r0 = 0; r0 < d; r0 += HK_MR) {
        int mr = d - r0 < HK_MR ? d - r0 : HK_MR;
        const float *ar[6];
        for (int r = 0; r < mr; r++) ar[r] = v + (r0 + r) * 16;
        for (int c0 = 0; c0 < nc; c0 += HK_NV) {
            int nv = nc - c0 < HK_NV ? nc - c0 : HK_NV;
            HK_FN(tiles)[mr - 1][nv - 1](np, ar, 1, ps, s + (long)c0 * np * 16, (long)np * 16,
                                         out + c0 * (long)ch * 16 + r0 * 16, (long)ch * 16);
        }
    }
    // The softmax's division, per query column.
    for (int c = 0; c < nc; c++)
        for (int r = 0; r < d; r++) {
            float *o = out + c * (long)ch * 16 + r * 16;
            store(o, load(o) * load(inv + c * 16));
        }
}

// MARK: - per-token passes

static void HK_FN(layernorm_range)(int ch, int c0, int c1, const float *x, float *y, const float *w,
                                   const float *b, float eps) {
    for (int c = c0; c < c1; c++) {
        const float *xp = x + (long)c * ch * 16;
        float *yp = y + (long)c * ch * 16;
        v16 s0 = splat(0), s1 = splat(0);
        int r = 0;
        for (; r + 1 < ch; r += 2) { s0 += load(xp + r * 16); s1 += load(xp + r * 16 + 16); }
        if (r < ch) s0 += load(xp + r * 16);
        v16 mean = (s0 + s1) / (float)ch;
        v16 q0 = splat(0), q1 = splat(0);
        for (r = 0; r + 1 < ch; r += 2) {
            v16 d0 = load(xp + r * 16) - mean, d1 = load(xp + r * 16 + 16) - mean;
            q0 += d0 * d0;
            q1 += d1 * d1;
        }
        if (r < ch) { v16 d0 = load(xp + r * 16) - mean; q0 += d0 * d0; }
        v16 rstd = 1.0f / __builtin_elementwise_sqrt((q0 + q1) / (float)ch + eps);
        for (r = 0; r < ch; r++) store(yp + r * 16, (load(xp + r * 16) - mean) * rstd * w[r] + b[r]);
    }
}

static void HK_FN(gather_range)(int ch, int c0, int c1, const int32_t *index, const float *src, long sp,
                                float *dst, long dp, long dr, int accumulate) {
    for (int c = c0; c < c1; c++) {
        const int32_t *ix = index + c * 16;
        v16i offset;
        v16i valid;
        for (int l = 0; l < 16; l++) {
            int t = ix[l];
            valid[l] = t >= 0 ? -1 : 0;
            offset[l] = t >= 0 ? (int32_t)((t / 16) * sp + t % 16) : 0;
        }
        float *out = dst + (long)c * dp;
#if HK_AVX512
        // Runs of lanes reading consecutive columns of one source panel (a shifted window row reads two
        // runs of 4): one masked load per run and row is far cheaper than a gather instruction.
        __mmask16 masks[16];
        long starts[16];
        int runs = 0;
        for (int l = 0; l < 16; l++) {
            if (!valid[l]) continue;
            if (l > 0 && valid[l - 1] && offset[l] == offset[l - 1] + 1) {
                masks[runs - 1] |= (__mmask16)(1u << l);
            } else {
                masks[runs] = (__mmask16)(1u << l);
                starts[runs] = (long)offset[l] - l; // lane l reads start + l
                runs++;
            }
        }
        __mmask16 any = _mm512_cmpneq_epi32_mask((__m512i)valid, _mm512_setzero_si512());
        for (int r = 0; r < ch; r++) {
            __m512 g = _mm512_setzero_ps();
            if (runs <= 4) {
                for (int k = 0; k < runs; k++) g = _mm512_mask_loadu_ps(g, masks[k], src + r * 16 + starts[k]);
            } else {
                g = _mm512_mask_i32gather_ps(g, any, (__m512i)offset, src + r * 16, 4);
            }
            v16 v = (v16)g;
            if (accumulate) v = v + load(out + r * dr);
            store(out + r * dr, v);
        }
#elif HK_AVX2
        // As above per 8-lane half: masked loads (vmaskmovps zeroes the other lanes, so runs are OR-ed
        // together) for up to 2 runs, else a gather instruction; a scalar loop per lane costs ~10x more.
        __m256i masks[2][2];
        long starts[2][2];
        int runs[2] = {0, 0};
        for (int h = 0; h < 2; h++)
            for (int l = 8 * h; l < 8 * h + 8; l++) {
                if (!valid[l]) continue;
                int lane = l - 8 * h;
                if (lane > 0 && valid[l - 1] && offset[l] == offset[l - 1] + 1) {
                    if (runs[h] <= 2) ((int32_t *)&masks[h][runs[h] - 1])[lane] = -1;
                } else if (++runs[h] <= 2) {
                    int n = runs[h] - 1;
                    masks[h][n] = _mm256_setzero_si256();
                    ((int32_t *)&masks[h][n])[lane] = -1;
                    starts[h][n] = (long)offset[l] - lane; // lane reads start + lane
                }
            }
        __m256i any[2], off[2];
        for (int h = 0; h < 2; h++) {
            any[h] = _mm256_loadu_si256((const __m256i *)&((const int32_t *)&valid)[8 * h]);
            off[h] = _mm256_loadu_si256((const __m256i *)&((const int32_t *)&offset)[8 * h]);
        }
        for (int r = 0; r < ch; r++) {
            __m256 g[2];
            for (int h = 0; h < 2; h++) {
                const float *row = src + r * 16;
                if (runs[h] == 0) g[h] = _mm256_setzero_ps();
                else if (runs[h] == 1) g[h] = _mm256_maskload_ps(row + starts[h][0], masks[h][0]);
                else if (runs[h] == 2)
                    g[h] = _mm256_or_ps(_mm256_maskload_ps(row + starts[h][0], masks[h][0]),
                                        _mm256_maskload_ps(row + starts[h][1], masks[h][1]));
                else g[h] = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), row, off[h], _mm256_castsi256_ps(any[h]), 4);
            }
            v16 v;
            __builtin_memcpy(&v, g, sizeof v);
            if (accumulate) v = v + load(out + r * dr);
            store(out + r * dr, v);
        }
#else
        for (int r = 0; r < ch; r++) {
            v16 v;
            for (int l = 0; l < 16; l++) v[l] = valid[l] ? src[r * 16 + offset[l]] : 0.0f;
            if (accumulate) v = v + load(out + r * dr);
            store(out + r * dr, v);
        }
#endif
    }
}

static const hk_impl HK_FN(impl) = {
    HK_FN(linear_range), HK_FN(attention_item), HK_FN(layernorm_range), HK_FN(gather_range), HK_FN(logmel_range),
    HK_FN(gelu), HK_FN(exp), HK_FN(sigmoid), HK_FN(db), HK_MR, HK_NV,
};

#undef HK_FN
#undef HK_MR
#undef HK_NV
#undef HK_ISA
#undef HK_AVX512
#undef HK_AVX2
#undef HK_NEON
