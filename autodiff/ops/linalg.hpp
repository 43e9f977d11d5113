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

/// The dense layer y = x W^T + b with rows as samples: x (batch, in), W (out,
/// in), b (out). One GEMM into a buffer that already holds b, and one record
/// (the tape keeps y only, not x W^T as well).
template <class T>
Var<T> linear(const Var<T>& x, const Var<T>& weight, const Var<T>& bias);

/// sigmoid(linear(x, weight, bias)) as one op: the sigmoid runs in place on
/// the product while it is in cache, and the tape holds one record and one
/// value per layer instead of two (nn::Sequential fuses a Linear followed by
/// a Sigmoid into it).
template <class T>
Var<T> linear_sigmoid(const Var<T>& x, const Var<T>& weight, const Var<T>& bias);

}  // namespace ad
