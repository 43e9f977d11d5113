#pragma once
// Matrix products through BLAS.

#include "autodiff/memory/kept.hpp"
#include "autodiff/record.hpp"

namespace ad {

/// torch.matmul: 2-D x 2-D, 2-D x 1-D (matrix-vector), 1-D x 2-D
/// (vector-matrix), 1-D x 1-D (dot, 0-d), and batched when an operand has
/// rank >= 3: C[p] = A[p] B[p] over the broadcast batch axes (all but the last
/// two; (2, 1, 3, 4) x (5, 4, 6) -> (2, 5, 3, 6)), a 1-D operand promoted to a
/// row (left) or a column (right) and the added axis removed.
/// VJP: a_bar = g b^T, b_bar = a^T g (per batch element), summed over the
/// batch axes an operand was broadcast along.
template <class T> Var<T> matmul(const Var<T>& a, const Var<T>& b);
/// op(a) op(b), op transposing the last two axes when asked, without
/// materialising a transpose: one GEMM with BLAS's transpose flags (one per
/// batch element when an operand has rank >= 3; both need rank >= 2).
/// VJP: a_bar = g op(b)^T (op(b) g^T when a is transposed),
///      b_bar = op(a)^T g (g^T op(a) when b is transposed), batch sums as above.
template <class T>
Var<T> matmul(const Var<T>& a, const Var<T>& b, bool transpose_a, bool transpose_b);

/// The outer product of two vectors: y_ij = a_i b_j, (m,) x (n,) -> (m, n).
/// VJP: a_bar = g b, b_bar = g^T a.
template <class T> Var<T> outer(const Var<T>& a, const Var<T>& b);

/// The dot product of two vectors of one length: y = sum_i a_i b_i (0-d).
/// VJP: a_bar = g b, b_bar = g a.
template <class T> Var<T> dot(const Var<T>& a, const Var<T>& b);

/// The sum of the diagonal of a 2-D x, maybe not square: y = sum_{i < min(m, n)} x_ii
/// (torch.trace). VJP: x_bar = g I, I the (m, n) matrix with ones on the diagonal.
template <class T> Var<T> trace(const Var<T>& x);

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
