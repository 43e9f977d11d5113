#pragma once
// The CBLAS calls of the engine (ops/linalg.cpp, kernels.cpp), overloaded on
// float and double, on row-major buffers. Straight CBLAS: xtensor-blas's
// wrappers build an adaptor per vector operand and go through cxxblas, which
// on a small layer's training step costs more than the call's arithmetic.
//
// Threads. Every call here first sets how many OpenBLAS threads it runs on:
// one below a measured amount of work, where a second thread cannot pay for
// waking it, and OpenBLAS's own count (its default, OPENBLAS_NUM_THREADS, or
// what the program set) at or above it. OpenBLAS keeps the smallest calls on
// one thread, but its own limits are low: it threads calls of a few
// microseconds, where a second thread costs more than it gains when the
// machine is quiet, and when the machine is busy the call waits a scheduler
// time slice for the worker to run, a thousand times the call's own work
// (benchmarks/README.md, blas_threads, has the limits and the measurements).
//
// The count is process-wide. The engine changes it only when a call crosses
// from small to large or back, so it reads 1 after a small product; a cheap
// check per call (openblas_get_num_threads) notices when someone else
// set it (openblas_set_num_threads, or bench::set_blas_threads), and that
// count becomes the one large calls use. One case it cannot tell apart: a
// program setting 1 right after a small product, when the count is already
// 1; set_threads below says it without ambiguity.
//
// Several threads calling BLAS at once: the engine's own changes of the count
// go one at a time (a mutex, taken only when the count must change), so the
// large count is never lost; but OpenBLAS reads the count when a call starts,
// so a large product may run on one thread while another thread's small
// product runs, or a small one on the large count. Results are the same
// either way; only speed differs. Programs that call BLAS from many threads
// usually run OpenBLAS on one thread (OPENBLAS_NUM_THREADS=1, as the engine's
// thread tests do), and then the engine never changes the count.

#include <cstddef>
#include <limits>

#include <xtensor-blas/xblas.hpp>  // the CBLAS declarations (not <cblas.h>: both define CBLAS_ORDER)

namespace ad::blas {

/// GEMM work (m n k) below which a product runs on one thread: 2^22, e.g.
/// 161^3 or (32 x 362) by (362 x 362). Around it a second thread gains when
/// the machine is quiet and loses when it is busy (benchmarks/README.md,
/// blas_threads); larger products keep OpenBLAS's threads.
inline constexpr double kGemmOneThreadWork = double(1 << 22);
/// GEMV and GER work (m n elements), AXPY and DOT (n) below which a call runs
/// on one thread: 2^18, e.g. a 512 x 512 GEMV, chosen the same way.
inline constexpr double kVectorOneThreadWork = double(1 << 18);

enum class ThreadPolicy {
    by_size,   ///< (the default) one thread below the thresholds above, OpenBLAS's count at or above
    openblas,  ///< leave the count alone: OpenBLAS's own limits decide
};

/// A dimension as BLAS's int, checked: a larger one would be truncated. The
/// shape_error names `op`; the throw is out of line, since a product asks
/// this of every dimension.
[[noreturn]] void reject_beyond_int(const char* op, std::size_t n);
inline int checked_int(const char* op, std::size_t n) {
    if (n > static_cast<std::size_t>(std::numeric_limits<int>::max())) reject_beyond_int(op, n);
    return static_cast<int>(n);
}

/// How the engine's BLAS calls choose their thread count (process-wide).
void set_thread_policy(ThreadPolicy policy);
ThreadPolicy thread_policy();

/// Sets OpenBLAS's thread count now, and the count the engine's large calls
/// use from here on. Once the engine has run, prefer it to
/// openblas_set_num_threads (see the notes at the top).
void set_threads(int threads);
/// The count large calls use: OpenBLAS's count at the engine's first call,
/// or what the program set since.
int threads();

namespace detail {
/// Sets OpenBLAS's count for a call that is small (one thread) or large.
void fit_threads(bool small);
}  // namespace detail

inline CBLAS_TRANSPOSE transpose_flag(bool transpose) { return transpose ? CblasTrans : CblasNoTrans; }

inline void fit_gemm(int m, int n, int k) { detail::fit_threads(double(m) * double(n) * double(k) < kGemmOneThreadWork); }
inline void fit_vector(double elements) { detail::fit_threads(elements < kVectorOneThreadWork); }

/// C (m x n) = alpha op(A) op(B) + beta C; lda, ldb: the stored row lengths.
inline void gemm(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b,
                 int ldb, float beta, float* c) {
    fit_gemm(m, n, k);
    cblas_sgemm(CblasRowMajor, transpose_flag(ta), transpose_flag(tb), m, n, k, alpha, a, lda, b, ldb, beta, c, n);
}
inline void gemm(bool ta, bool tb, int m, int n, int k, double alpha, const double* a, int lda, const double* b,
                 int ldb, double beta, double* c) {
    fit_gemm(m, n, k);
    cblas_dgemm(CblasRowMajor, transpose_flag(ta), transpose_flag(tb), m, n, k, alpha, a, lda, b, ldb, beta, c, n);
}

/// y = alpha op(A) x + beta y for A stored (rows, cols).
inline void gemv(bool ta, int rows, int cols, float alpha, const float* a, const float* x, float beta, float* y) {
    fit_vector(double(rows) * double(cols));
    cblas_sgemv(CblasRowMajor, transpose_flag(ta), rows, cols, alpha, a, cols, x, 1, beta, y, 1);
}
inline void gemv(bool ta, int rows, int cols, double alpha, const double* a, const double* x, double beta,
                 double* y) {
    fit_vector(double(rows) * double(cols));
    cblas_dgemv(CblasRowMajor, transpose_flag(ta), rows, cols, alpha, a, cols, x, 1, beta, y, 1);
}

/// A (m x n) += x y^T.
inline void ger(int m, int n, const float* x, const float* y, float* a) {
    fit_vector(double(m) * double(n));
    cblas_sger(CblasRowMajor, m, n, 1.0f, x, 1, y, 1, a, n);
}
inline void ger(int m, int n, const double* x, const double* y, double* a) {
    fit_vector(double(m) * double(n));
    cblas_dger(CblasRowMajor, m, n, 1.0, x, 1, y, 1, a, n);
}

/// x . y (n elements).
inline float dot(int n, const float* x, const float* y) {
    fit_vector(n);
    return cblas_sdot(n, x, 1, y, 1);
}
inline double dot(int n, const double* x, const double* y) {
    fit_vector(n);
    return cblas_ddot(n, x, 1, y, 1);
}

/// y += alpha x (n elements).
inline void axpy(int n, float alpha, const float* x, float* y) {
    fit_vector(n);
    cblas_saxpy(n, alpha, x, 1, y, 1);
}
inline void axpy(int n, double alpha, const double* x, double* y) {
    fit_vector(n);
    cblas_daxpy(n, alpha, x, 1, y, 1);
}

}  // namespace ad::blas
