/*
 * Serial inner loops: see _simd.h for the contract.
 *
 * This file is compiled with -ffp-contract=fast so that the AVX2 and
 * AVX-512 clones fuse multiply-adds in the reductions and in the exp
 * polynomial.  Loops whose result must equal NumPy's bit for bit (axpy is
 * `y += a*x`, rounded twice) switch contraction off per function.
 */
#include <math.h>
#include <string.h>

#include "_simd.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    defined(__linux__) && !defined(BREAKEVEN_NO_CLONES)
/* One clone per x86-64 micro-architecture level, chosen once at load time
 * through an ifunc: a portable build that still uses the host's vectors. */
#define BE_CLONES \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define BE_CLONES
#endif
#define BE_NO_CONTRACT __attribute__((optimize("fp-contract=off")))

/* Reductions work on leaves of BE_LEAF elements with BE_ACC independent
 * accumulators (enough to fill the FP pipes with AVX-512, and vectorisable
 * by SLP), and combine leaves pairwise: error grows like log(n), as in
 * NumPy's pairwise summation, not like n. */
#define BE_LEAF 512
#define BE_ACC 16

/* ------------------------------------------------------------------------ */
/* Pairwise combination stack                                                */
/* ------------------------------------------------------------------------ */

#define BE_DEFINE_STACK(T, S)                                                 \
    void be_stack_init_##S(be_stack_##S *s) { s->count = 0; s->top = 0; }    \
                                                                              \
    void be_stack_push_##S(be_stack_##S *s, T v)                             \
    {                                                                         \
        /* Adding 1 to a binary counter: each carry merges two equal-sized  \
         * subtrees, left operand first. */                                   \
        int64_t c = s->count;                                                 \
        while (c & 1) {                                                       \
            v = s->v[--s->top] + v;                                           \
            c >>= 1;                                                          \
        }                                                                     \
        s->v[s->top++] = v;                                                   \
        s->count++;                                                           \
    }                                                                         \
                                                                              \
    T be_stack_result_##S(const be_stack_##S *s)                              \
    {                                                                         \
        if (s->top == 0) return (T)0;                                         \
        T r = s->v[s->top - 1];                                               \
        for (int i = s->top - 2; i >= 0; i--) r = s->v[i] + r;                \
        return r;                                                             \
    }

BE_DEFINE_STACK(double, d)
BE_DEFINE_STACK(float, f)

/* ------------------------------------------------------------------------ */
/* sum and dot                                                               */
/* ------------------------------------------------------------------------ */

/* -0.0 is the exact identity of IEEE addition (-0.0 + -0.0 == -0.0), so a sum
 * of negative zeros stays -0.0, as in NumPy. */
#define BE_DEFINE_REDUCE(T, S)                                                \
    static inline T sum_leaf_##S(const T *x, be_index n)                      \
    {                                                                         \
        T acc[BE_ACC];                                                        \
        for (int k = 0; k < BE_ACC; k++) acc[k] = (T)-0.0;                    \
        be_index i = 0;                                                       \
        for (; i + BE_ACC <= n; i += BE_ACC)                                  \
            for (int k = 0; k < BE_ACC; k++) acc[k] += x[i + k];              \
        T tail = (T)-0.0;                                                     \
        for (; i < n; i++) tail += x[i];                                      \
        for (int w = BE_ACC / 2; w >= 1; w /= 2)                              \
            for (int k = 0; k < w; k++) acc[k] = acc[k] + acc[k + w];         \
        return acc[0] + tail;                                                 \
    }                                                                         \
                                                                              \
    static inline T dot_leaf_##S(const T *x, const T *y, be_index n)          \
    {                                                                         \
        T acc[BE_ACC];                                                        \
        for (int k = 0; k < BE_ACC; k++) acc[k] = (T)-0.0;                    \
        be_index i = 0;                                                       \
        for (; i + BE_ACC <= n; i += BE_ACC)                                  \
            for (int k = 0; k < BE_ACC; k++) acc[k] += x[i + k] * y[i + k];   \
        T tail = (T)-0.0;                                                     \
        for (; i < n; i++) tail += x[i] * y[i];                               \
        for (int w = BE_ACC / 2; w >= 1; w /= 2)                              \
            for (int k = 0; k < w; k++) acc[k] = acc[k] + acc[k + w];         \
        return acc[0] + tail;                                                 \
    }                                                                         \
                                                                              \
    BE_CLONES T be_sum_block_##S(const T *x, be_index n)                      \
    {                                                                         \
        if (n <= BE_LEAF) return n > 0 ? sum_leaf_##S(x, n) : (T)0;           \
        be_stack_##S s;                                                       \
        be_stack_init_##S(&s);                                                \
        for (be_index i = 0; i < n; i += BE_LEAF)                             \
            be_stack_push_##S(&s, sum_leaf_##S(x + i,                         \
                                  n - i < BE_LEAF ? n - i : BE_LEAF));        \
        return be_stack_result_##S(&s);                                       \
    }                                                                         \
                                                                              \
    BE_CLONES T be_dot_block_##S(const T *x, const T *y, be_index n)          \
    {                                                                         \
        if (n <= BE_LEAF) return n > 0 ? dot_leaf_##S(x, y, n) : (T)0;        \
        be_stack_##S s;                                                       \
        be_stack_init_##S(&s);                                                \
        for (be_index i = 0; i < n; i += BE_LEAF)                             \
            be_stack_push_##S(&s, dot_leaf_##S(x + i, y + i,                  \
                                  n - i < BE_LEAF ? n - i : BE_LEAF));        \
        return be_stack_result_##S(&s);                                       \
    }

BE_DEFINE_REDUCE(double, d)
BE_DEFINE_REDUCE(float, f)

/* ------------------------------------------------------------------------ */
/* axpy and add-a-constant                                                   */
/* ------------------------------------------------------------------------ */

#define BE_DEFINE_AXPY(T, S)                                                  \
    BE_CLONES BE_NO_CONTRACT void be_axpy_##S(T a, const T *restrict x,       \
                                              T *restrict y, be_index n)      \
    {                                                                         \
        for (be_index i = 0; i < n; i++) y[i] += a * x[i];                    \
    }                                                                         \
                                                                              \
    BE_CLONES void be_add_scalar_##S(T *restrict out, be_index n, T c)        \
    {                                                                         \
        for (be_index i = 0; i < n; i++) out[i] = c + out[i];                 \
    }

BE_DEFINE_AXPY(double, d)
BE_DEFINE_AXPY(float, f)

/* ------------------------------------------------------------------------ */
/* exp                                                                       */
/* ------------------------------------------------------------------------ */

/*
 * exp(x) = 2^n * exp(r), n = round(x / ln2), |r| <= ln2/2, exp(r) by its
 * Taylor polynomial (degree 13 for float64: truncation error < 0.05 ulp).
 * Branch-free, so the loop vectorises; no -ffast-math, so NaN, inf,
 * overflow and underflow behave as IEEE (and NumPy) say:
 *  - x is clamped to [-746, 710], outside which the result is 0 or inf
 *    anyway; NaN fails both comparisons and propagates;
 *  - 2^n is applied as two factors 2^(n/2) * 2^(n - n/2), each a normal
 *    number, so results in the subnormal range are rounded once, correctly.
 * float32 is computed through float64 with a degree-7 polynomial and
 * rounded once to float32 (error ~0.5 ulp).
 */
static inline double be_pow2i(int64_t n)
{
    uint64_t bits = (uint64_t)(n + 1023) << 52;
    double r;
    memcpy(&r, &bits, sizeof r);
    return r;
}

#define BE_EXP_REDUCE(x, kd, r, n)                                            \
    do {                                                                      \
        const double shift = 6755399441055744.0; /* 1.5 * 2^52 */             \
        double xc = (x) < -746.0 ? -746.0 : (x);                              \
        xc = xc > 710.0 ? 710.0 : xc;                                         \
        kd = xc * 1.4426950408889634 + shift;                                 \
        uint64_t kbits, sbits;                                                \
        memcpy(&kbits, &kd, sizeof kbits);                                    \
        memcpy(&sbits, &shift, sizeof sbits);                                 \
        n = (int64_t)(kbits - sbits);                                         \
        kd = kd - shift;                                                      \
        r = xc - kd * 6.93147180369123816490e-01;                             \
        r = r - kd * 1.90821492927058770002e-10;                              \
    } while (0)

static inline double be_exp1(double x)
{
    double kd, r;
    int64_t n;
    BE_EXP_REDUCE(x, kd, r, n);
    double p = 1.6059043836821613e-10;
    p = p * r + 2.08767569878681e-09;
    p = p * r + 2.505210838544172e-08;
    p = p * r + 2.755731922398589e-07;
    p = p * r + 2.7557319223985893e-06;
    p = p * r + 2.48015873015873e-05;
    p = p * r + 0.0001984126984126984;
    p = p * r + 0.001388888888888889;
    p = p * r + 0.008333333333333333;
    p = p * r + 0.041666666666666664;
    p = p * r + 0.16666666666666666;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    int64_t n1 = n >> 1;
    return p * be_pow2i(n1) * be_pow2i(n - n1);
}

static inline float be_expf1(float xf)
{
    /* clamp in float32 first: keeps the loop branch-free (vectorisable) */
    xf = xf < -746.0f ? -746.0f : xf;
    xf = xf > 710.0f ? 710.0f : xf;
    double x = (double)xf, kd, r;
    int64_t n;
    BE_EXP_REDUCE(x, kd, r, n);
    double p = 0.0001984126984126984;
    p = p * r + 0.001388888888888889;
    p = p * r + 0.008333333333333333;
    p = p * r + 0.041666666666666664;
    p = p * r + 0.16666666666666666;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    int64_t n1 = n >> 1;
    return (float)(p * be_pow2i(n1) * be_pow2i(n - n1));
}

BE_CLONES void be_exp_d(const double *restrict x, double *restrict out, be_index n)
{
    for (be_index i = 0; i < n; i++) out[i] = be_exp1(x[i]);
}

BE_CLONES void be_exp_f(const float *restrict x, float *restrict out, be_index n)
{
    for (be_index i = 0; i < n; i++) out[i] = be_expf1(x[i]);
}

/* ------------------------------------------------------------------------ */
/* cumsum                                                                    */
/* ------------------------------------------------------------------------ */

/*
 * A running sum is a chain of dependent additions: NumPy's cumsum runs at
 * one addition latency per element.  Here the block is cut into sub-blocks
 * of BE_SUB elements: a running sum restarts in each sub-block (chains the
 * CPU overlaps), a carry accumulates the sub-block totals, and
 *     out[i] = offset + (carry + running)
 * so the dependent chain advances once per sub-block, not per element.
 * The parallel scan calls this with offset = -0.0 (the identity), then adds
 * the block's true offset with be_add_scalar: the same two roundings.
 */
#define BE_SUB 8

#define BE_DEFINE_SCAN(T, S)                                                  \
    BE_CLONES T be_scan_block_##S(const T *restrict x, T *restrict out,       \
                                  be_index n, T offset)                       \
    {                                                                         \
        T carry = (T)-0.0;                                                    \
        be_index i = 0;                                                       \
        for (; i + BE_SUB <= n; i += BE_SUB) {                                \
            T run = (T)-0.0;                                                  \
            for (int k = 0; k < BE_SUB; k++) {                                \
                run += x[i + k];                                              \
                out[i + k] = offset + (carry + run);                          \
            }                                                                 \
            carry = carry + run;                                              \
        }                                                                     \
        T run = (T)-0.0;                                                      \
        for (; i < n; i++) {                                                  \
            run += x[i];                                                      \
            out[i] = offset + (carry + run);                                  \
        }                                                                     \
        return carry + run;                                                   \
    }

BE_DEFINE_SCAN(double, d)
BE_DEFINE_SCAN(float, f)

/* ------------------------------------------------------------------------ */
/* histogram                                                                 */
/* ------------------------------------------------------------------------ */

/*
 * NumPy's rule for equal bins: keep lo <= v <= hi (compared in float64);
 * index = floor((v - lo) / (hi - lo) * bins), the last edge folded into the
 * last bin, then corrected by one against the actual edges, so rounding in
 * the estimate never moves a value across an edge.
 */
#define BE_DEFINE_HIST(T, S)                                                  \
    void be_hist_##S(const T *x, be_index n, const T *edges, be_index bins,   \
                     double lo, double hi, int64_t *counts)                   \
    {                                                                         \
        const double denom = hi - lo;                                         \
        const double nb = (double)bins;                                       \
        for (be_index i = 0; i < n; i++) {                                    \
            const T v = x[i];                                                 \
            const double vd = (double)v;                                      \
            if (!(vd >= lo && vd <= hi)) continue;                            \
            be_index idx = (be_index)(((vd - lo) / denom) * nb);              \
            if (idx >= bins) idx = bins - 1;                                  \
            if (idx < 0) idx = 0;                                             \
            if (v < edges[idx]) idx--;                                        \
            if (idx < bins - 1 && v >= edges[idx + 1]) idx++;                 \
            counts[idx]++;                                                    \
        }                                                                     \
    }

BE_DEFINE_HIST(double, d)
BE_DEFINE_HIST(float, f)

/* ------------------------------------------------------------------------ */
/* nearest: the parts around gemm                                            */
/* ------------------------------------------------------------------------ */

#define BE_DEFINE_NEAREST(T, S)                                               \
    BE_CLONES void be_argmin_rows_##S(const T *g, be_index rows, be_index m,  \
                                      const T *cn, int64_t *out)              \
    {                                                                         \
        for (be_index r = 0; r < rows; r++) {                                 \
            const T *gr = g + r * m;                                          \
            T best = cn[0] - 2 * gr[0];                                       \
            int64_t arg = 0;                                                  \
            /* like np.argmin: strict <, so ties keep the lowest index, and  \
             * the first NaN wins outright. */                                \
            if (best == best) {                                               \
                for (be_index j = 1; j < m; j++) {                            \
                    T dist = cn[j] - 2 * gr[j];                               \
                    if (dist < best) {                                        \
                        best = dist;                                          \
                        arg = j;                                              \
                    } else if (dist != dist) {                                \
                        arg = j;                                              \
                        break;                                                \
                    }                                                         \
                }                                                             \
            }                                                                 \
            out[r] = arg;                                                     \
        }                                                                     \
    }                                                                         \
                                                                              \
    BE_CLONES void be_sqnorm_rows_##S(const T *c, be_index rows, be_index d,  \
                                      T *out)                                 \
    {                                                                         \
        for (be_index r = 0; r < rows; r++) {                                 \
            const T *cr = c + r * d;                                          \
            T acc = (T)0;                                                     \
            for (be_index k = 0; k < d; k++) acc += cr[k] * cr[k];            \
            out[r] = acc;                                                     \
        }                                                                     \
    }

BE_DEFINE_NEAREST(double, d)
BE_DEFINE_NEAREST(float, f)
