#pragma once
// Matrix products through BLAS.

#include "autodiff/var.hpp"

namespace ad {

/// 2-D x 2-D, 2-D x 1-D (matrix-vector) and 1-D x 2-D (vector-matrix).
template <class T> Var<T> matmul(const Var<T>& a, const Var<T>& b);
/// op(a) op(b) for 2-D operands, op transposing when asked, without
/// materialising a transpose: one GEMM with BLAS's transpose flags.
template <class T>
Var<T> matmul(const Var<T>& a, const Var<T>& b, bool transpose_a, bool transpose_b);

}  // namespace ad
