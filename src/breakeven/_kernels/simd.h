/*
 * Serial inner loops shared by the serial and the parallel kernels.
 *
 * The Cython modules own the OpenMP side (prange over blocks); these C
 * functions only ever run on one thread, on one block.  Keeping them in one
 * translation unit lets us compile them with per-ISA clones (target_clones),
 * so a portable build still runs AVX2/AVX-512 loops where the CPU has them,
 * and lets us allow FMA contraction here while the Cython modules (which
 * must reproduce NumPy's histogram edges exactly) are compiled without it.
 *
 * Determinism: a serial kernel and every parallel kernel call the very same
 * block function on the very same block bounds, and combine block results
 * in the same order, so results are bit-identical for any thread count.
 */
#ifndef BREAKEVEN_SIMD_H
#define BREAKEVEN_SIMD_H

#include <stddef.h>
#include <stdint.h>

typedef ptrdiff_t be_index;

/* Block sizes depend on nothing but these constants: never on threads. */
#define BE_REDUCE_BLOCK 8192
#define BE_SCAN_BLOCK 2048

/* Pairwise combination of block results, as a binary counter: pushing
 * block results one at a time gives the same tree as combining an array. */
typedef struct { double v[64]; int64_t count; int top; } be_stack_d;
typedef struct { float v[64]; int64_t count; int top; } be_stack_f;

void be_stack_init_d(be_stack_d *s);
void be_stack_push_d(be_stack_d *s, double v);
double be_stack_result_d(const be_stack_d *s);
void be_stack_init_f(be_stack_f *s);
void be_stack_push_f(be_stack_f *s, float v);
float be_stack_result_f(const be_stack_f *s);

/* Reductions over one block (n <= BE_REDUCE_BLOCK). */
double be_sum_block_d(const double *x, be_index n);
float be_sum_block_f(const float *x, be_index n);
double be_dot_block_d(const double *x, const double *y, be_index n);
float be_dot_block_f(const float *x, const float *y, be_index n);

/* Element-wise loops over any length. */
void be_axpy_d(double a, const double *x, double *y, be_index n);
void be_axpy_f(float a, const float *x, float *y, be_index n);
int be_exp_d(const double *x, double *out, be_index n);
int be_exp_f(const float *x, float *out, be_index n);
void be_add_scalar_d(double *out, be_index n, double c);
void be_add_scalar_f(float *out, be_index n, float c);

/* Scan of one block: out[i] = offset + (running sum within the block),
 * returns the block's total.  offset = -0.0 is the exact identity. */
double be_scan_block_d(const double *x, double *out, be_index n, double offset);
float be_scan_block_f(const float *x, float *out, be_index n, float offset);

/* Histogram of a range of x into counts (added to, not overwritten),
 * with NumPy's bin rule; edges has bins + 1 entries. */
void be_hist_d(const double *x, be_index n, const double *edges, be_index bins,
               double lo, double hi, int64_t *counts);
void be_hist_f(const float *x, be_index n, const float *edges, be_index bins,
               double lo, double hi, int64_t *counts);

/* For each of `rows` rows of g (row stride m): argmin_j cn[j] - 2 g[j],
 * ties to the lowest j; for a row of x (row stride d) whose squared norm is
 * inf or NaN, the argmin of NumPy's full formula (|x|^2 - 2 g[j]) + cn[j]. */
void be_argmin_rows_d(const double *g, be_index rows, be_index m,
                      const double *cn, const double *x, be_index d,
                      int64_t *out);
void be_argmin_rows_f(const float *g, be_index rows, be_index m,
                      const float *cn, const float *x, be_index d, int64_t *out);
/* Squared norms of rows (row stride d). */
void be_sqnorm_rows_d(const double *c, be_index rows, be_index d, double *out);
void be_sqnorm_rows_f(const float *c, be_index rows, be_index d, float *out);

#endif
