#pragma once
// The CBLAS calls of the engine (ops/linalg.cpp, kernels.cpp), overloaded on
// float and double, on row-major buffers. Straight CBLAS: xtensor-blas's
// wrappers build an adaptor per vector operand and go through cxxblas, about
// 100 instructions per call, a few percent of a small layer's training step.

#include <xtensor-blas/xblas.hpp>  // the CBLAS declarations (not <cblas.h>: both define CBLAS_ORDER)

namespace ad::blas {

inline CBLAS_TRANSPOSE transpose_flag(bool transpose) { return transpose ? CblasTrans : CblasNoTrans; }

/// C (m x n) = alpha op(A) op(B) + beta C; lda, ldb: the stored row lengths.
inline void gemm(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b,
                 int ldb, float beta, float* c) {
    cblas_sgemm(CblasRowMajor, transpose_flag(ta), transpose_flag(tb), m, n, k, alpha, a, lda, b, ldb, beta, c, n);
}
inline void gemm(bool ta, bool tb, int m, int n, int k, double alpha, const double* a, int lda, const double* b,
                 int ldb, double beta, double* c) {
    cblas_dgemm(CblasRowMajor, transpose_flag(ta), transpose_flag(tb), m, n, k, alpha, a, lda, b, ldb, beta, c, n);
}

/// y = alpha op(A) x + beta y for A stored (rows, cols).
inline void gemv(bool ta, int rows, int cols, float alpha, const float* a, const float* x, float beta, float* y) {
    cblas_sgemv(CblasRowMajor, transpose_flag(ta), rows, cols, alpha, a, cols, x, 1, beta, y, 1);
}
inline void gemv(bool ta, int rows, int cols, double alpha, const double* a, const double* x, double beta,
                 double* y) {
    cblas_dgemv(CblasRowMajor, transpose_flag(ta), rows, cols, alpha, a, cols, x, 1, beta, y, 1);
}

/// A (m x n) += x y^T.
inline void ger(int m, int n, const float* x, const float* y, float* a) {
    cblas_sger(CblasRowMajor, m, n, 1.0f, x, 1, y, 1, a, n);
}
inline void ger(int m, int n, const double* x, const double* y, double* a) {
    cblas_dger(CblasRowMajor, m, n, 1.0, x, 1, y, 1, a, n);
}

/// x . y (n elements).
inline float dot(int n, const float* x, const float* y) { return cblas_sdot(n, x, 1, y, 1); }
inline double dot(int n, const double* x, const double* y) { return cblas_ddot(n, x, 1, y, 1); }

/// y += alpha x (n elements).
inline void axpy(int n, float alpha, const float* x, float* y) { cblas_saxpy(n, alpha, x, 1, y, 1); }
inline void axpy(int n, double alpha, const double* x, double* y) { cblas_daxpy(n, alpha, x, 1, y, 1); }

}  // namespace ad::blas
