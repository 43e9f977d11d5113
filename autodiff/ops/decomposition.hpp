#pragma once
// Differentiable linear algebra through LAPACK (xtensor-blas): solves,
// factorisations, inverses, determinants of 2-D matrices. The VJPs are the
// ones PyTorch and JAX use, written with these ops and matmul, so they
// differentiate again; they solve with the factors instead of forming an
// inverse where the formula allows.

#include "autodiff/memory/kept.hpp"
#include "autodiff/record.hpp"

namespace ad {

/// X = A^-1 B for a square A (n, n) and B (n, k) or (n,) (torch.linalg.solve).
/// B_bar = solve(A^T, G), A_bar = -B_bar X^T. A singular A is a value_error.
template <class T> Var<T> solve(const Var<T>& a, const Var<T>& b);

/// X = A^-1 B for a triangular A (n, n), reading only its lower (upper = false)
/// or upper triangle, and the diagonal as ones if unitriangular
/// (torch.linalg.solve_triangular with left = true). B (n, k) or (n,).
/// B_bar = solve_triangular(A^T, G, !upper), A_bar = -B_bar X^T in A's triangle.
template <class T>
Var<T> solve_triangular(const Var<T>& a, const Var<T>& b, bool upper, bool unitriangular = false);

/// The lower factor L of A = L L^T, A symmetric positive definite (only its
/// lower triangle is read). A_bar = sym(L^-T phi(L^T L_bar) L^-1), phi keeping
/// the lower triangle with the diagonal halved, sym(M) = (M + M^T) / 2: the
/// gradient is symmetric, as PyTorch's. Not positive definite: value_error
/// naming the leading minor that is not.
template <class T> Var<T> cholesky(const Var<T>& a);

/// A^-1. A_bar = -Y^T G Y^T. A singular A is a value_error.
template <class T> Var<T> inv(const Var<T>& a);

/// det A (0-d). A_bar = g det(A) A^-T (A invertible for the gradient).
template <class T> Var<T> det(const Var<T>& a);

/// log |det A| (torch.linalg.slogdet's second result; -inf for a singular A).
/// A_bar = g A^-T.
template <class T> Var<T> logabsdet(const Var<T>& a);

}  // namespace ad
