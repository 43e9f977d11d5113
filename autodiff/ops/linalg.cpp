// Matrix products through BLAS. With C = op(A) op(B), where op transposes
// when asked, the VJPs are again single GEMMs with transpose flags, so no
// transpose is ever materialised:
//
//   A_bar = g op(B)^T        (transposed back when A was used transposed: op(B) g^T)
//   B_bar = op(A)^T g        (transposed back when B was used transposed: g^T op(A))
//
// 1-D operands are reshaped to a row (left) or a column (right) and back.
//
//   linear          y = x W^T + b            x: g W      W: g^T x      b: column sums of g
//   linear_sigmoid  y = sigma(x W^T + b)     the same with d = sigmoid_backward(g, y) for g,
//                                            computed once per sweep (a StagedVjp)
//
// A parameter's gradient GEMM (and a bias's column sums) writes into the
// parameter's own gradient node when zero_grad() has left it free
// (detail::lend_grad_buffer): a training step then makes no gradient arrays.

#include "autodiff/ops/linalg.hpp"

#include <limits>

#include <fmt/format.h>

#include "autodiff/blas.hpp"
#include "autodiff/kernels.hpp"
#include "autodiff/ops/all.hpp"

namespace ad {

namespace {

[[noreturn, gnu::noinline]] void reject_beyond_int(const char* op, std::size_t n) {
    throw shape_error(fmt::format("{}: dimension {} is beyond BLAS's int", op, n));
}

/// A dimension as BLAS's int (checked: a larger one would be truncated).
/// Inline, with the throw out of line: a product asks this of four dimensions.
inline int blas_int(const char* op, std::size_t n) {
    if (n > static_cast<std::size_t>(std::numeric_limits<int>::max())) reject_beyond_int(op, n);
    return static_cast<int>(n);
}

}  // namespace

namespace detail {

/// matmul, computed into `buffer` when it has the result's shape (a weight
/// gradient into its parameter's lent gradient node), else into a new node.
template <class T>
Var<T> matmul_into(Var<T> buffer, const Var<T>& a, const Var<T>& b, bool transpose_a, bool transpose_b) {
    detail::check_defined("matmul", a);
    detail::check_defined("matmul", b);
    const auto& A = a.value();
    const auto& B = b.value();
    if (A.dimension() != 2 || B.dimension() != 2) {
        throw shape_error(fmt::format("matmul: cannot multiply {} by {} (expects 2-D operands here)",
                                      shape_string_of(A), shape_string_of(B)));
    }
    std::size_t m = transpose_a ? A.shape()[1] : A.shape()[0];
    std::size_t k = transpose_a ? A.shape()[0] : A.shape()[1];
    std::size_t k_b = transpose_b ? B.shape()[1] : B.shape()[0];
    std::size_t n = transpose_b ? B.shape()[0] : B.shape()[1];
    if (k != k_b) {
        throw shape_error(fmt::format("matmul: cannot multiply {}{} by {}{}", shape_string_of(A),
                                      transpose_a ? "^T" : "", shape_string_of(B), transpose_b ? "^T" : ""));
    }
    const std::array<std::size_t, 2> shape{m, n};
    Var<T> result = fits(buffer, shape) ? std::move(buffer) : detail::make_uninitialized<T>(shape);
    Array<T>& c = result.mutable_value();
    // A vector on either side takes GEMV, and an outer product (k = 1, the
    // input gradient of a layer with one output) GER: OpenBLAS's GEMM packs
    // its operands first, which on such shapes costs more than the product.
    const int rows_a = blas_int("matmul", A.shape()[0]), cols_a = blas_int("matmul", A.shape()[1]);
    const int rows_b = blas_int("matmul", B.shape()[0]), cols_b = blas_int("matmul", B.shape()[1]);
    if (k == 0 || m == 0 || n == 0) {
        c.fill(T(0));
    } else if (n == 1 && m > 1) {
        blas::gemv(transpose_a, rows_a, cols_a, T(1), A.data(), B.data(), T(0), c.data());
    } else if (m == 1 && n > 1) {
        blas::gemv(!transpose_b, rows_b, cols_b, T(1), B.data(), A.data(), T(0), c.data());
    } else if (k == 1) {
        c.fill(T(0));  // with k = 1, op(A) is m contiguous values and op(B) n, transposed or not
        blas::ger(int(m), int(n), A.data(), B.data(), c.data());
    } else {
        blas::gemm(transpose_a, transpose_b, int(m), int(n), int(k), T(1), A.data(), cols_a, B.data(), cols_b,
                   T(0), c.data());
    }
    if (!detail::recording()) return result;  // a VJP's product, in a sweep without create_graph
    return make_op("matmul", std::move(result), a, b,
                   [a = detail::kept(a), b = detail::kept(b), transpose_a, transpose_b](std::size_t i, const Var<T>& g) {
                       if (i == 0) {
                           return transpose_a ? matmul_into(lend_grad_buffer(a), b, g, transpose_b, true)
                                              : matmul_into(lend_grad_buffer(a), g, b, false, !transpose_b);
                       }
                       return transpose_b ? matmul_into(lend_grad_buffer(b), g, a, true, transpose_a)
                                          : matmul_into(lend_grad_buffer(b), a, g, !transpose_a, false);
                   });
}

}  // namespace detail

template <class T>
Var<T> matmul(const Var<T>& a, const Var<T>& b, bool transpose_a, bool transpose_b) {
    return detail::matmul_into<T>(Var<T>(), a, b, transpose_a, transpose_b);
}

template <class T>
Var<T> matmul(const Var<T>& a, const Var<T>& b) {
    detail::check_defined("matmul", a);
    detail::check_defined("matmul", b);
    std::size_t ra = a.dim(), rb = b.dim();
    if (ra < 1 || ra > 2 || rb < 1 || rb > 2) {
        throw shape_error(fmt::format("matmul: cannot multiply {} by {} (expects 1-D or 2-D operands)",
                                      shape_string_of(a.value()), shape_string_of(b.value())));
    }
    if (ra == 2 && rb == 2) return matmul(a, b, false, false);
    // A vector on the left is a row, on the right a column; a mismatch is reported with the real shapes.
    long ka = ra == 2 ? static_cast<long>(a.value().shape()[1]) : static_cast<long>(a.size());
    long kb = static_cast<long>(b.value().shape()[0]);
    if (ka != kb) {
        throw shape_error(fmt::format("matmul: cannot multiply {} by {}", shape_string_of(a.value()),
                                      shape_string_of(b.value())));
    }
    Var<T> left = ra == 1 ? reshape(a, {1, -1}) : a;
    Var<T> right = rb == 1 ? reshape(b, {-1, 1}) : b;
    Var<T> c = matmul(left, right, false, false);
    return ra == 1 && rb == 1 ? reshape(c, {}) : reshape(c, {-1});
}

namespace {

/// x W^T + b into a fresh node, after checking that the operands make a
/// layer (`op` names the caller in the error).
template <class T>
Var<T> affine_product(const char* op, const Var<T>& x, const Var<T>& weight, const Var<T>& bias) {
    for (const auto* v : {&x, &weight, &bias}) detail::check_defined(op, *v);
    const auto& X = x.value();
    const auto& W = weight.value();
    const auto& b = bias.value();
    if (X.dimension() != 2 || W.dimension() != 2 || b.dimension() != 1 || X.shape()[1] != W.shape()[1] ||
        b.shape()[0] != W.shape()[0]) {
        throw shape_error(fmt::format("{}: input {}, weight {} and bias {} do not fit y = x W^T + b (expects "
                                      "(batch, in), (out, in), (out,))",
                                      op, shape_string_of(X), shape_string_of(W), shape_string_of(b)));
    }
    std::size_t rows = X.shape()[0], out = W.shape()[0];
    Var<T> result = detail::make_uninitialized<T>(std::array<std::size_t, 2>{rows, out});
    Array<T>& y = result.mutable_value();
    // Every row starts as the bias. Narrow rows element by element: a call to
    // memmove per row (what std::copy_n becomes) or a vector loop's set-up
    // cost more than copying a few numbers.
    const T* bias_values = b.data();
    T* row = y.data();
    if (out < 8) {
        for (std::size_t r = 0; r < rows; ++r, row += out) {
            for (std::size_t j = 0; j < out; ++j) row[j] = bias_values[j];
        }
    } else {
        for (std::size_t r = 0; r < rows; ++r, row += out) std::copy_n(bias_values, out, row);
    }
    const int batch = blas_int(op, rows), outputs = blas_int(op, out), inputs = blas_int(op, X.shape()[1]);
    // One output or one row is a matrix-vector product (see matmul_into).
    if (batch != 0 && outputs != 0 && inputs != 0) {
        if (outputs == 1) {
            blas::gemv(false, batch, inputs, T(1), X.data(), W.data(), T(1), y.data());
        } else if (batch == 1) {
            blas::gemv(false, outputs, inputs, T(1), W.data(), X.data(), T(1), y.data());
        } else {
            blas::gemm(false, true, batch, outputs, inputs, T(1), X.data(), inputs, W.data(), inputs, T(1), y.data());
        }
    }
    return result;
}

/// linear's VJP for input i given d, the cotangent of x W^T + b.
template <class T>
AD_INLINE Var<T> affine_product_vjp(std::size_t i, const Var<T>& d, const Var<T>& x, const Var<T>& weight,
                                    const Var<T>& bias) {
    if (i == 0) return detail::matmul_into<T>(Var<T>(), d, weight, false, false);
    if (i == 1) return detail::matmul_into(detail::lend_grad_buffer(weight), d, x, true, false);
    // Outside create_graph straight into a node (detail::column_sums).
    return detail::recording() ? sum(d, 0) : detail::column_sums(d, detail::lend_grad_buffer(bias));
}

}  // namespace

template <class T>
Var<T> linear(const Var<T>& x, const Var<T>& weight, const Var<T>& bias) {
    Var<T> result = affine_product("linear", x, weight, bias);  // first: it checks the operands
    return make_op("linear", std::move(result), x, weight, bias,
                   // weight and bias are kept in any case: their gradients are computed into
                   // their gradient nodes (lend_grad_buffer).
                   [x = detail::kept_for(x, weight), weight, bias](std::size_t i, const Var<T>& g) {
                       return affine_product_vjp(i, g, x, weight, bias);
                   });
}

template <class T>
Var<T> linear_sigmoid(const Var<T>& x, const Var<T>& weight, const Var<T>& bias) {
    Var<T> result = affine_product("linear_sigmoid", x, weight, bias);
    Array<T>& y = result.mutable_value();
    kernels::sigmoid(y.data(), y.data(), y.size());
    return make_op("linear_sigmoid", std::move(result), x, weight, bias,
                   staged_vjp(
                       [](const Var<T>& g, const Var<T>& y) { return detail::sigmoid_backward_in_sweep(g, y); },
                       [x = detail::kept_for(x, weight), weight, bias](std::size_t i, const Var<T>& d) {
                           return affine_product_vjp(i, d, x, weight, bias);
                       }));
}

#define AD_INSTANTIATE(T)                                                  \
    template Var<T> matmul(const Var<T>&, const Var<T>&);                  \
    template Var<T> matmul(const Var<T>&, const Var<T>&, bool, bool);      \
    template Var<T> linear(const Var<T>&, const Var<T>&, const Var<T>&);   \
    template Var<T> linear_sigmoid(const Var<T>&, const Var<T>&, const Var<T>&);

AD_INSTANTIATE(float)
AD_INSTANTIATE(double)

}  // namespace ad
