/*
 * Serial inner loops: see simd.h for the contract.
 *
 * This file is compiled with -ffp-contract=fast so that the AVX2 and
 * AVX-512 clones fuse multiply-adds in the reductions and in the exp
 * polynomial.  Loops whose result must equal NumPy's bit for bit (axpy is
 * `y += a*x`, rounded twice) switch contraction off per function.
 */
#include <math.h>
#include <string.h>

#include "simd.h"

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

/* Reductions work on leaves of BE_LEAF_d or _f elements with BE_ACC independent
 * accumulators (enough to fill the FP pipes with AVX-512, and vectorisable
 * by SLP), and combine leaves pairwise: error grows like log(n), as in
 * NumPy's pairwise summation, not like n. */
#define BE_ACC 32
/* float64 leaves are a whole block: each accumulator then sums 256 values
 * (error bound ~256 eps = 6e-14, far below what float64 users see), and the
 * leaf combine is paid once per block.  float32 leaves are 1024 values (32 per
 * accumulator), to keep float32 sums within a few ulp like NumPy's. */
#define BE_LEAF_d 8192
#define BE_LEAF_f 1024

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
        if (n <= BE_LEAF_##S) return n > 0 ? sum_leaf_##S(x, n) : (T)0;           \
        be_stack_##S s;                                                       \
        be_stack_init_##S(&s);                                                \
        for (be_index i = 0; i < n; i += BE_LEAF_##S)                             \
            be_stack_push_##S(&s, sum_leaf_##S(x + i,                         \
                                  n - i < BE_LEAF_##S ? n - i : BE_LEAF_##S));        \
        return be_stack_result_##S(&s);                                       \
    }                                                                         \
                                                                              \
    BE_CLONES T be_dot_block_##S(const T *x, const T *y, be_index n)          \
    {                                                                         \
        if (n <= BE_LEAF_##S) return n > 0 ? dot_leaf_##S(x, y, n) : (T)0;        \
        be_stack_##S s;                                                       \
        be_stack_init_##S(&s);                                                \
        for (be_index i = 0; i < n; i += BE_LEAF_##S)                             \
            be_stack_push_##S(&s, dot_leaf_##S(x + i, y + i,                  \
                                  n - i < BE_LEAF_##S ? n - i : BE_LEAF_##S));        \
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
 * exp(x) = 2^n * p(r), n = round(x / ln2), r = x - n ln2 (|r| <= ln2/2, by
 * Cody-Waite reduction with a two-part ln2), p a degree-11 polynomial fitted
 * to exp on that interval (relative approximation error < 0.06 ulp; the
 * coefficients are a weighted least-squares fit at 4000 Chebyshev nodes in
 * 80-bit arithmetic, with p(0) = p'(0) = 1 exact).  No -ffast-math: NaN,
 * inf, overflow and underflow behave as IEEE (and NumPy) say.
 *
 * The input is taken in chunks of BE_EXP_CHUNK.  A chunk whose values all lie
 * in [-708, 708] ([-87, 88] for float32; the common case) takes the fast
 * path: the result is normal, so 2^n is applied by adding n to p's exponent
 * bits.  Any other chunk
 * (NaN, inf, overflow, subnormal results) takes the safe path: x clamped to
 * [-746, 710] (NaN fails both comparisons and propagates), and 2^n applied
 * as two normal factors 2^(n/2) * 2^(n - n/2), so a subnormal result is
 * rounded once, correctly.  Both paths are branch-free and vectorise.  The
 * safe path also reports whether a finite x overflowed to inf, which the
 * caller turns into NumPy's floating-point error handling (np.errstate).
 *
 * float32 goes through float64 with a degree-6 polynomial (error < 0.07 ulp
 * of float32 before the final rounding), so it is nearly correctly rounded;
 * its overflow and underflow come from the final conversion.
 */
#define BE_EXP_CHUNK 256
#define BE_EXP_SHIFT 6755399441055744.0 /* 1.5 * 2^52: rounds to an integer */
#define BE_LOG2E 1.4426950408889634
#define BE_LN2_HI 6.93147180369123816490e-01 /* 32 significant bits */
#define BE_LN2_LO 1.90821492927058770002e-10

static inline double be_bits2d(uint64_t b) { double d; memcpy(&d, &b, sizeof d); return d; }
static inline uint64_t be_d2bits(double d) { uint64_t b; memcpy(&b, &d, sizeof b); return b; }

/* n (as bits of kd minus bits of the shift) and r for a finite, clamped x. */
static inline double be_exp_reduce(double x, int64_t *n)
{
    double kd = x * BE_LOG2E + BE_EXP_SHIFT;
    *n = (int64_t)(be_d2bits(kd) - be_d2bits(BE_EXP_SHIFT));
    kd = kd - BE_EXP_SHIFT;
    double r = x - kd * BE_LN2_HI;
    return r - kd * BE_LN2_LO;
}

static inline double be_exp_poly_d(double r)
{
    double p = 2.5023473640600192e-08;
    p = p * r + 2.7634096350326753e-07;
    p = p * r + 2.7557522987369508e-06;
    p = p * r + 2.4801482391767382e-05;
    p = p * r + 0.00019841269566089447;
    p = p * r + 0.001388888895392753;
    p = p * r + 0.008333333333471814;
    p = p * r + 0.041666666666490694;
    p = p * r + 0.1666666666666644;
    p = p * r + 0.5000000000000016;
    p = p * r + 1.0;
    return p * r + 1.0;
}

static inline double be_exp_poly_f(double r)
{
    double p = 0.0013746219157262077;
    p = p * r + 0.008370347368882524;
    p = p * r + 0.041669762632241154;
    p = p * r + 0.1666650632923372;
    p = p * r + 0.4999998718521374;
    p = p * r + 1.0;
    return p * r + 1.0;
}

static inline double be_exp_clamp(double x)
{
    double xc = x < -746.0 ? -746.0 : x;
    return xc > 710.0 ? 710.0 : xc;
}

/* 2^n * p for a normal result: add n to the exponent field. */
static inline double be_scale_fast(double p, int64_t n)
{
    return be_bits2d(be_d2bits(p) + ((uint64_t)n << 52));
}

/* 2^n * p for any n in [-1080, 1030]: two normal factors, one rounding. */
static inline double be_scale_safe(double p, int64_t n)
{
    int64_t n1 = n >> 1;
    return p * be_bits2d((uint64_t)(n1 + 1023) << 52)
             * be_bits2d((uint64_t)(n - n1 + 1023) << 52);
}

#define BE_DEFINE_EXP(T, S, POLY, FAST_MIN, FAST_MAX)                         \
    static inline void exp_fast_##S(const T *restrict x, T *restrict out,     \
                                    be_index n)                               \
    {                                                                         \
        for (be_index i = 0; i < n; i++) {                                    \
            int64_t e;                                                        \
            double r = be_exp_reduce((double)x[i], &e);                       \
            out[i] = (T)be_scale_fast(POLY(r), e);                            \
        }                                                                     \
    }                                                                         \
                                                                              \
    /* also says whether a finite x gave an infinite result (overflow) */    \
    static inline int exp_safe_##S(const T *x, T *out, be_index n)            \
    {                                                                         \
        int overflow = 0;                                                     \
        for (be_index i = 0; i < n; i++) {                                    \
            int64_t e;                                                        \
            const T xi = x[i]; /* out may be x itself */                      \
            double r = be_exp_reduce(be_exp_clamp((double)xi), &e);           \
            const T y = (T)be_scale_safe(POLY(r), e);                         \
            out[i] = y;                                                       \
            overflow |= (y == (T)INFINITY) & (xi != (T)INFINITY);             \
        }                                                                     \
        return overflow;                                                      \
    }                                                                         \
                                                                              \
    /* every x of the chunk has a normal result in T (0 for NaN) */          \
    static inline int exp_all_fast_##S(const T *x, be_index n)                \
    {                                                                         \
        int fast = 1;                                                         \
        for (be_index i = 0; i < n; i++)                                      \
            fast &= (x[i] >= (T)FAST_MIN) & (x[i] <= (T)FAST_MAX);            \
        return fast;                                                          \
    }                                                                         \
                                                                              \
    BE_CLONES int be_exp_##S(const T *x, T *out, be_index n)                  \
    {                                                                         \
        int overflow = 0;                                                     \
        for (be_index i = 0; i < n; i += BE_EXP_CHUNK) {                      \
            be_index len = n - i < BE_EXP_CHUNK ? n - i : BE_EXP_CHUNK;       \
            /* checked before writing: out may be x itself */                 \
            if (exp_all_fast_##S(x + i, len))                                 \
                exp_fast_##S(x + i, out + i, len);                            \
            else                                                              \
                overflow |= exp_safe_##S(x + i, out + i, len);                \
        }                                                                     \
        return overflow;                                                      \
    }

/* float64: results normal for |x| <= 708; float32 (computed in float64 and
   rounded once): for x in [-87, 88] */
BE_DEFINE_EXP(double, d, be_exp_poly_d, -708.0, 708.0)
BE_DEFINE_EXP(float, f, be_exp_poly_f, -87.0f, 88.0f)

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
 * NumPy's rule for equal bins, step by step as np.histogram computes it for
 * a range given as Python floats (which NumPy casts to the data's type):
 * keep (T)lo <= v <= (T)hi, compared in T (NaN fails); estimate
 * index = ((v - (T)lo) / (hi - lo)) * bins, the difference in T and the rest
 * in float64; fold index == bins into the last bin; then correct by one
 * against the actual edges (decrement first, then increment).
 */
#define BE_DEFINE_HIST(T, S, NEXT, EPS)                                       \
    BE_CLONES void be_hist_##S(const T *x, be_index n, const T *edges,        \
                               be_index bins, double lo, double hi,           \
                               int64_t *counts)                               \
    {                                                                         \
        const T lo_t = (T)lo, hi_t = (T)hi;                                   \
        const double denom = hi - lo;                                         \
        const double nb = (double)bins;                                       \
        const double scale = nb / denom;                                      \
        /* How far, in bins, v * scale may be from v's place among the       \
         * edges: the edges' rounding (a few ulps of the largest, against    \
         * the bin width) and the subtraction's in T.  A value whose         \
         * position is further than that from a bin boundary is in the bin   \
         * the multiplication says, which is where NumPy's estimate and      \
         * correction put it; the few near a boundary are checked against    \
         * the edges as NumPy does. */                                        \
        const T big = fabs(lo) > fabs(hi) ? (T)fabs(lo) : (T)fabs(hi);        \
        const double ulp = (double)(NEXT(big, (T)INFINITY) - big);            \
        const double margin = 4.0 * (4.0 * ulp * scale + EPS * nb) + 1e-9;    \
        if (margin < 0.25) {                                                  \
            for (be_index i = 0; i < n; i++) {                                \
                const T v = x[i];                                             \
                if (!(v >= lo_t && v <= hi_t)) continue;                      \
                const double f = (double)(T)(v - lo_t) * scale;               \
                be_index idx = (be_index)f;                                   \
                const double frac = f - (double)idx;                          \
                if (__builtin_expect(frac < margin || frac > 1.0 - margin     \
                                     || idx >= bins, 0)) {                    \
                    if (idx >= bins) idx = bins - 1;                          \
                    if (v < edges[idx]) idx--;                                \
                    if (idx < bins - 1 && v >= edges[idx + 1]) idx++;         \
                }                                                             \
                counts[idx]++;                                                \
            }                                                                 \
            return;                                                           \
        }                                                                     \
        /* bins of a few ulps: NumPy's own arithmetic, step by step */       \
        for (be_index i = 0; i < n; i++) {                                    \
            const T v = x[i];                                                 \
            if (!(v >= lo_t && v <= hi_t)) continue;                          \
            be_index idx = (be_index)(((double)(T)(v - lo_t) / denom) * nb);  \
            if (idx >= bins) idx = bins - 1;                                  \
            if (idx < 0) idx = 0;                                             \
            if (v < edges[idx]) idx--;                                        \
            if (idx < bins - 1 && v >= edges[idx + 1]) idx++;                 \
            counts[idx]++;                                                    \
        }                                                                     \
    }

BE_DEFINE_HIST(double, d, nextafter, 0x1p-52)
BE_DEFINE_HIST(float, f, nextafterf, 0x1p-23)

/* ------------------------------------------------------------------------ */
/* nearest: the parts around gemm                                            */
/* ------------------------------------------------------------------------ */

/* The argmin of NumPy's full formula (|x|^2 - 2 x.c) + |c|^2 for a row x
   whose |x|^2 is inf or NaN: there the term cannot be left out (inf - inf
   is NaN), and np.argmin takes the first NaN, else the first minimum. */
#define BE_DEFINE_NEAREST(T, S)                                               \
    static int64_t argmin_full_##S(const T *gr, be_index m, const T *cn,      \
                                   T xn)                                      \
    {                                                                         \
        T best = (xn - 2 * gr[0]) + cn[0];                                    \
        int64_t arg = 0;                                                      \
        if (best != best) return 0;                                           \
        for (be_index j = 1; j < m; j++) {                                    \
            T dist = (xn - 2 * gr[j]) + cn[j];                                \
            if (dist != dist) return j;                                       \
            if (dist < best) { best = dist; arg = j; }                        \
        }                                                                     \
        return arg;                                                           \
    }                                                                         \
                                                                              \
    BE_CLONES void be_argmin_rows_##S(const T *g, be_index rows, be_index m,  \
                                      const T *cn, const T *x, be_index d,    \
                                      int64_t *out)                           \
    {                                                                         \
        for (be_index r = 0; r < rows; r++) {                                 \
            const T *gr = g + r * m;                                          \
            if (!isfinite(gr[0])) {                                           \
                /* a row holding inf or NaN makes every product non-finite:  \
                 * check |x|^2 (rare, so computed only here) */               \
                T xn = (T)0;                                                  \
                for (be_index k = 0; k < d; k++)                              \
                    xn += x[r * d + k] * x[r * d + k];                        \
                if (!isfinite(xn)) {                                          \
                    out[r] = argmin_full_##S(gr, m, cn, xn);                  \
                    continue;                                                 \
                }                                                             \
            }                                                                 \
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
