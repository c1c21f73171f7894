# Declarations of the serial inner loops in simd.c (see simd.h).
from libc.stdint cimport int64_t

cdef extern from "simd.h" nogil:
    ctypedef Py_ssize_t be_index
    enum:
        BE_REDUCE_BLOCK
        BE_SCAN_BLOCK

    ctypedef struct be_stack_d:
        pass
    ctypedef struct be_stack_f:
        pass
    void be_stack_init_d(be_stack_d *s)
    void be_stack_push_d(be_stack_d *s, double v)
    double be_stack_result_d(const be_stack_d *s)
    void be_stack_init_f(be_stack_f *s)
    void be_stack_push_f(be_stack_f *s, float v)
    float be_stack_result_f(const be_stack_f *s)

    double be_sum_block_d(const double *x, be_index n)
    float be_sum_block_f(const float *x, be_index n)
    double be_dot_block_d(const double *x, const double *y, be_index n)
    float be_dot_block_f(const float *x, const float *y, be_index n)

    void be_axpy_d(double a, const double *x, double *y, be_index n)
    void be_axpy_f(float a, const float *x, float *y, be_index n)
    int be_exp_d(const double *x, double *out, be_index n)
    int be_exp_f(const float *x, float *out, be_index n)
    void be_add_scalar_d(double *out, be_index n, double c)
    void be_add_scalar_f(float *out, be_index n, float c)

    double be_scan_block_d(const double *x, double *out, be_index n, double offset)
    float be_scan_block_f(const float *x, float *out, be_index n, float offset)

    void be_hist_d(const double *x, be_index n, const double *edges, be_index bins,
                   double lo, double hi, int64_t *counts)
    void be_hist_f(const float *x, be_index n, const float *edges, be_index bins,
                   double lo, double hi, int64_t *counts)

    void be_argmin_rows_d(const double *g, be_index rows, be_index m,
                          const double *cn, const double *x, be_index d,
                          int64_t *out)
    void be_argmin_rows_f(const float *g, be_index rows, be_index m,
                          const float *cn, const float *x, be_index d,
                          int64_t *out)
    void be_sqnorm_rows_d(const double *c, be_index rows, be_index d, double *out)
    void be_sqnorm_rows_f(const float *c, be_index rows, be_index d, float *out)
