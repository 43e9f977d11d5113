// Linear algebra through LAPACK: each forward beside its VJP (g the cotangent
// of the result y = X; B may be a vector, then B_bar X^T is an outer product).
//
//   op                y                      VJP
//   solve             A^-1 B                 B: solve(A^T, g)    A: -B_bar X^T
//   solve_triangular  A^-1 B, A's triangle   B: solve_triangular(A^T, g, !upper)    A: -B_bar X^T in A's triangle
//   cholesky          L, A = L L^T           A: sym(L^-T phi(L^T tril(g)) L^-1), two triangular solves
//   inv               A^-1                   A: -Y^T g Y^T
//   det               det A                  A: g y A^-T
//   logabsdet         log |det A|            A: g A^-T
//
// Matrices are copied to column-major storage for LAPACK (getrf, potrf,
// trtrs); the results come back row-major.

#include "autodiff/ops/decomposition.hpp"

#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <xtensor-blas/xlinalg.hpp>

#include "autodiff/ops/all.hpp"

namespace ad {
namespace {

using xt::blas_index_t;

template <class T>
using ColumnMajor = xt::xarray<T, xt::layout_type::column_major>;

template <class T>
void check_square(const char* op, const Var<T>& a) {
    detail::check_defined(op, a);
    const auto& s = a.value().shape();
    if (s.size() != 2 || s[0] != s[1]) {
        throw shape_error(fmt::format("{}: the matrix {} is not square (n, n)", op, shape_string_of(a.value())));
    }
}

template <class T>
void check_right_side(const char* op, const Var<T>& a, const Var<T>& b) {
    detail::check_defined(op, b);
    const auto& s = b.value().shape();
    if ((s.size() != 1 && s.size() != 2) || s[0] != a.value().shape()[0]) {
        throw shape_error(fmt::format("{}: the right-hand side {} does not have the {} rows of the matrix {} (expects (n,) or (n, k))",
                                      op, shape_string_of(b.value()), a.value().shape()[0], shape_string_of(a.value())));
    }
}

/// The LU factors of A in LAPACK's form and its pivots; throws value_error
/// naming `op` when A is singular (a zero pivot).
template <class T>
std::pair<ColumnMajor<T>, xt::uvector<blas_index_t>> lu(const char* op, const Array<T>& a, bool throw_if_singular) {
    ColumnMajor<T> factors = a;
    xt::uvector<blas_index_t> pivots(a.shape()[0]);
    const int info = a.size() == 0 ? 0 : xt::lapack::getrf(factors, pivots);
    if (info > 0 && throw_if_singular) {
        throw value_error(fmt::format("{}: the matrix {} is singular (pivot {} is zero)", op, shape_string_of(a), info));
    }
    return {std::move(factors), std::move(pivots)};
}

/// A^-1 B with A's triangle as LAPACK's trtrs reads it.
template <class T>
Array<T> triangular_solve(const char* op, const Array<T>& a, const Array<T>& b, bool upper, bool unit) {
    const std::size_t n = a.shape()[0];
    ColumnMajor<T> factor = a;
    const bool vector = b.dimension() == 1;
    ColumnMajor<T> rhs = vector ? ColumnMajor<T>(xt::reshape_view(b, {n, std::size_t(1)})) : ColumnMajor<T>(b);
    const std::size_t k = rhs.shape()[1];
    if (n > 0 && k > 0) {
        const auto info = cxxlapack::trtrs<blas_index_t>(upper ? 'U' : 'L', 'N', unit ? 'U' : 'N', static_cast<blas_index_t>(n),
                                                         static_cast<blas_index_t>(k), factor.data(), static_cast<blas_index_t>(n),
                                                         rhs.data(), static_cast<blas_index_t>(n));
        if (info > 0) {
            throw value_error(fmt::format("{}: the triangular matrix {} is singular (diagonal element {} is zero)", op,
                                          shape_string_of(a), info));
        }
    }
    Array<T> x = rhs;
    if (vector) x.reshape({n});
    return x;
}

/// The mask of A's triangle that solve_triangular reads (diagonal excluded when unitriangular).
template <class T>
Array<T> triangle_mask(std::size_t n, bool upper, bool unit) {
    Array<T> mask = Array<T>::from_shape({n, n});
    for (std::size_t i = 0; i < n; ++i) {
        for (std::size_t j = 0; j < n; ++j) mask(i, j) = T(upper ? (j > i || (j == i && !unit)) : (j < i || (j == i && !unit)));
    }
    return mask;
}

/// -B_bar X^T: the cotangent of A in A X = B (an outer product when B is a vector).
template <class T>
Var<T> minus_outer(const Var<T>& b_bar, const Var<T>& x) {
    if (x.dim() == 1) return -outer(b_bar, x);
    return -matmul(b_bar, x, false, true);
}

}  // namespace

template <class T>
Var<T> solve(const Var<T>& a, const Var<T>& b) {
    check_square("solve", a);
    check_right_side("solve", a, b);
    auto [factors, pivots] = lu("solve", a.value(), true);
    const std::size_t n = a.value().shape()[0];
    const bool vector = b.dim() == 1;
    ColumnMajor<T> rhs = vector ? ColumnMajor<T>(xt::reshape_view(b.value(), {n, std::size_t(1)})) : ColumnMajor<T>(b.value());
    const std::size_t k = rhs.shape()[1];
    if (n > 0 && k > 0) {
        cxxlapack::getrs<blas_index_t>('N', static_cast<blas_index_t>(n), static_cast<blas_index_t>(k), factors.data(),
                                       static_cast<blas_index_t>(n), pivots.data(), rhs.data(), static_cast<blas_index_t>(n));
    }
    Array<T> x = rhs;
    if (vector) x.reshape({n});
    return make_op("solve", std::move(x), a, b, [a](std::size_t i, const Var<T>& g, const Var<T>& y) {
        Var<T> b_bar = solve(transpose(a), g);
        return i == 1 ? b_bar : minus_outer(b_bar, y);
    });
}

template <class T>
Var<T> solve_triangular(const Var<T>& a, const Var<T>& b, bool upper, bool unitriangular) {
    check_square("solve_triangular", a);
    check_right_side("solve_triangular", a, b);
    Array<T> x = triangular_solve("solve_triangular", a.value(), b.value(), upper, unitriangular);
    return make_op("solve_triangular", std::move(x), a, b,
                   [a, upper, unitriangular](std::size_t i, const Var<T>& g, const Var<T>& y) {
                       Var<T> b_bar = solve_triangular(transpose(a), g, !upper, unitriangular);
                       if (i == 1) return b_bar;
                       return minus_outer(b_bar, y) *
                              constant(triangle_mask<T>(a.value().shape()[0], upper, unitriangular));
                   });
}

template <class T>
Var<T> cholesky(const Var<T>& a) {
    check_square("cholesky", a);
    const std::size_t n = a.value().shape()[0];
    ColumnMajor<T> factor = a.value();
    const int info = n == 0 ? 0 : xt::lapack::potr(factor, 'L');
    if (info > 0) {
        throw value_error(fmt::format("cholesky: the matrix {} is not positive definite (leading minor {} is not)",
                                      shape_string_of(a.value()), info));
    }
    Array<T> l = factor;
    for (std::size_t i = 0; i < n; ++i) {
        for (std::size_t j = i + 1; j < n; ++j) l(i, j) = T(0);  // potrf leaves A's upper triangle there
    }
    return make_op("cholesky", std::move(l), a, [n](std::size_t, const Var<T>& g, const Var<T>& l) {
        Array<T> lower = triangle_mask<T>(n, false, false);
        Array<T> halved = lower;
        for (std::size_t i = 0; i < n; ++i) halved(i, i) = T(0.5);
        Var<T> phi = matmul(transpose(l), g * constant(lower)) * constant(halved);
        Var<T> left = solve_triangular(transpose(l), phi, true);                        // L^-T phi
        Var<T> both = transpose(solve_triangular(transpose(l), transpose(left), true));  // L^-T phi L^-1
        return (both + transpose(both)) * T(0.5);
    });
}

template <class T>
Var<T> inv(const Var<T>& a) {
    check_square("inv", a);
    auto [factors, pivots] = lu("inv", a.value(), true);
    if (a.size() > 0) xt::lapack::getri(factors, pivots);
    return make_op("inv", Array<T>(factors), a, [](std::size_t, const Var<T>& g, const Var<T>& y) {
        return -matmul(matmul(y, g, true, false), y, false, true);
    });
}

template <class T>
Var<T> det(const Var<T>& a) {
    check_square("det", a);
    auto [factors, pivots] = lu("det", a.value(), false);
    T d = T(1);
    for (std::size_t i = 0; i < pivots.size(); ++i) d *= (pivots[i] != blas_index_t(i + 1) ? T(-1) : T(1)) * factors(i, i);
    return make_op("det", Array<T>(d), a, [a](std::size_t, const Var<T>& g, const Var<T>& y) {
        return g * y * transpose(inv(a));
    });
}

template <class T>
Var<T> logabsdet(const Var<T>& a) {
    check_square("logabsdet", a);
    auto [factors, pivots] = lu("logabsdet", a.value(), false);
    T log_abs = T(0);
    for (std::size_t i = 0; i < pivots.size(); ++i) log_abs += std::log(std::abs(factors(i, i)));
    return make_op("logabsdet", Array<T>(log_abs), a, [a](std::size_t, const Var<T>& g) {
        return g * transpose(inv(a));
    });
}

#define AD_INSTANTIATE(T)                                                          \
    template Var<T> solve(const Var<T>&, const Var<T>&);                           \
    template Var<T> solve_triangular(const Var<T>&, const Var<T>&, bool, bool);    \
    template Var<T> cholesky(const Var<T>&);                                       \
    template Var<T> inv(const Var<T>&);                                            \
    template Var<T> det(const Var<T>&);                                            \
    template Var<T> logabsdet(const Var<T>&);

AD_INSTANTIATE(float)
AD_INSTANTIATE(double)

}  // namespace ad
