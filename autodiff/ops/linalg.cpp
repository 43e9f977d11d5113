// Matrix products through BLAS. With C = op(A) op(B), where op transposes
// when asked, the VJPs are again single GEMMs with transpose flags, so no
// transpose is ever materialised:
//
//   A_bar = g op(B)^T        (transposed back when A was used transposed: op(B) g^T)
//   B_bar = op(A)^T g        (transposed back when B was used transposed: g^T op(A))
//
// 1-D operands are reshaped to a row (left) or a column (right) and back.
//
//   op              y                               VJP
//   matmul batched  C[p] = op(A[p]) op(B[p]) for    the same two formulas per batch element, as
//   (rank >= 3 on   every p of the broadcast batch  batched matmuls with transpose flags; the
//   either side)    (torch.matmul; one GEMM per p)  record sums them back over broadcast batch axes
//                                                   (sum_to_shape). When B has a single matrix
//                                                   (batch of ones) and A is not transposed, the
//                                                   batch is folded into A's rows: one GEMM forward,
//                                                   and B_bar = A_rows^T g_rows in one GEMM
//   outer           y = a b^T (1-D x 1-D -> 2-D)    a: g b      b: g^T a
//   dot             y = a . b (1-D x 1-D -> 0-d)    a: g b      b: g a
//   trace           y = sum_i x_ii, i < min(m, n)   g on the diagonal of an (m, n) zero: g * I
//   linear          y = x W^T + b            x: g W      W: g^T x      b: column sums of g
//   linear_sigmoid  y = sigma(x W^T + b)     the same with d = sigmoid_backward(g, y) for g,
//                                            computed once per sweep (a StagedVjp)
//
// As in PyTorch (which calls BLAS too), NaN and Inf propagate as BLAS
// propagates them, and an empty inner dimension (k = 0) gives zeros.
// torch.matmul's 1-D promotion holds on the batched path too: a 1-D left
// operand is a row (1, k) and a right one a column (k, 1), the added axis
// removed from the result; batched operands need rank >= 2 for the flags form.
//
// A parameter's gradient GEMM (and a bias's column sums) writes into the
// parameter's own gradient node when zero_grad() has left it free
// (detail::lend_grad_buffer): a training step then makes no gradient arrays.

#include "autodiff/ops/linalg.hpp"

#include <algorithm>
#include <limits>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "autodiff/blas.hpp"
#include "autodiff/kernels.hpp"
#include "autodiff/memory/grad_buffers.hpp"
#include "autodiff/ops/all.hpp"

namespace ad {

namespace {

/// The shape of a product's operand as an error shows it: with ^T when used transposed.
template <class T>
std::string operand_string(const Array<T>& x, bool transposed) {
    return shape_string_of(x) + (transposed ? "^T" : "");
}

}  // namespace

namespace detail {

template <class T>
Var<T> matmul_into(Var<T> buffer, const Var<T>& a, const Var<T>& b, bool transpose_a, bool transpose_b);

/// The batched product op(a) op(b) of operands of rank >= 2 (one of rank
/// >= 3): one GEMM per element of the broadcast batch, on the operands'
/// contiguous matrices (a broadcast operand's matrix is reused, not copied).
/// Into `buffer` when it has the result's shape (an operand's lent gradient
/// node, as in matmul_into), else into a new node.
template <class T>
Var<T> batched_matmul(Var<T> buffer, const Var<T>& a, const Var<T>& b, bool transpose_a, bool transpose_b) {
    const Array<T>& A = a.value();
    const Array<T>& B = b.value();
    const std::size_t ra = A.dimension(), rb = B.dimension();
    const std::size_t rows_a = A.shape()[ra - 2], cols_a = A.shape()[ra - 1];
    const std::size_t rows_b = B.shape()[rb - 2], cols_b = B.shape()[rb - 1];
    const std::size_t m = transpose_a ? cols_a : rows_a, k = transpose_a ? rows_a : cols_a;
    const std::size_t k_b = transpose_b ? cols_b : rows_b, n = transpose_b ? rows_b : cols_b;
    if (k != k_b) {
        throw shape_error(fmt::format("matmul: cannot multiply {} by {}", operand_string(A, transpose_a),
                                      operand_string(B, transpose_b)));
    }
    // The batch axes aligned on the right, a missing one counting as 1; per
    // axis the step (in elements) from one matrix of an operand to the next,
    // 0 where the operand is broadcast.
    const std::size_t rank = std::max(ra, rb) - 2, skip_a = rank - (ra - 2), skip_b = rank - (rb - 2);
    Shape out_shape(rank + 2);
    std::vector<std::size_t> step_a(rank), step_b(rank);
    std::size_t matrices_a = 1, matrices_b = 1;
    for (std::size_t d = rank; d-- > 0;) {
        const std::size_t da = d < skip_a ? 1 : A.shape()[d - skip_a];
        const std::size_t db = d < skip_b ? 1 : B.shape()[d - skip_b];
        if (da != db && da != 1 && db != 1) {
            throw shape_error(fmt::format("matmul: cannot multiply {} by {} (batch dimensions {} and {} do not broadcast)",
                                          operand_string(A, transpose_a), operand_string(B, transpose_b),
                                          shape_string(Shape(A.shape().begin(), A.shape().end() - 2)),
                                          shape_string(Shape(B.shape().begin(), B.shape().end() - 2))));
        }
        out_shape[d] = da == 1 ? db : da;
        step_a[d] = da == 1 ? 0 : matrices_a * rows_a * cols_a;
        step_b[d] = db == 1 ? 0 : matrices_b * rows_b * cols_b;
        matrices_a *= da;
        matrices_b *= db;
    }
    out_shape[rank] = m;
    out_shape[rank + 1] = n;
    const std::size_t batch = element_count(Shape(out_shape.begin(), out_shape.end() - 2));
    const int lda = blas::checked_int("matmul", cols_a), ldb = blas::checked_int("matmul", cols_b);
    const int M = blas::checked_int("matmul", m), N = blas::checked_int("matmul", n), K = blas::checked_int("matmul", k);
    // B a single matrix and A not transposed: A's matrices are the batch's,
    // in order, so their rows stack into one (batch m, k) operand.
    const bool fold = matrices_b == 1 && !transpose_a && batch * m * n * k != 0;

    Var<T> result = fits(buffer, out_shape) ? std::move(buffer) : detail::make_uninitialized<T>(out_shape);
    Array<T>& c = result.mutable_value();
    if (k == 0) {
        c.fill(T(0));
    } else if (fold) {
        blas::gemm(false, transpose_b, blas::checked_int("matmul", batch * m), N, K, T(1), A.data(), lda, B.data(), ldb, T(0),
                   c.data());
    } else if (m != 0 && n != 0) {
        std::vector<std::size_t> index(rank, 0);
        std::size_t offset_a = 0, offset_b = 0;
        T* out = c.data();
        for (std::size_t p = 0; p < batch; ++p, out += m * n) {
            blas::gemm(transpose_a, transpose_b, M, N, K, T(1), A.data() + offset_a, lda, B.data() + offset_b, ldb,
                       T(0), out);
            // The next batch element: the last axis moves fastest.
            for (std::size_t d = rank; d-- > 0;) {
                offset_a += step_a[d];
                offset_b += step_b[d];
                if (++index[d] < out_shape[d]) break;
                offset_a -= step_a[d] * out_shape[d];
                offset_b -= step_b[d] * out_shape[d];
                index[d] = 0;
            }
        }
    }
    if (!detail::recording()) return result;  // a VJP's product, in a sweep without create_graph
    return make_op("matmul", std::move(result), a, b,
                   // Both kept, as in matmul_into: an operand's own node lends its gradient buffer.
                   [a = detail::kept(a), b = detail::kept(b), transpose_a, transpose_b, fold](std::size_t i,
                                                                                             const Var<T>& g) -> Var<T> {
                       // Products over the broadcast batch (g has rank >= 3), into the operand's gradient
                       // node when it has the product's shape; the record sums a broadcast operand's back.
                       if (i == 0) {
                           return transpose_a ? batched_matmul(lend_grad_buffer(a), b, g, transpose_b, true)
                                              : batched_matmul(lend_grad_buffer(a), g, b, false, !transpose_b);
                       }
                       if (fold) {
                           // B_bar sums over every row of the batch: one GEMM on the stacked rows.
                           Var<T> a_rows = reshape(a, {-1, static_cast<long>(a.value().shape().back())});
                           Var<T> g_rows = reshape(g, {-1, static_cast<long>(g.value().shape().back())});
                           const std::size_t rank_b = b.dim();
                           Var<T> buffer = rank_b == 2 ? lend_grad_buffer(b) : Var<T>();
                           Var<T> d = transpose_b ? matmul_into(std::move(buffer), g_rows, a_rows, true, false)
                                                  : matmul_into(std::move(buffer), a_rows, g_rows, true, false);
                           if (rank_b == 2) return d;
                           std::vector<long> shape(rank_b, 1);
                           shape[rank_b - 2] = static_cast<long>(d.value().shape()[0]);
                           shape[rank_b - 1] = static_cast<long>(d.value().shape()[1]);
                           return reshape(d, shape);
                       }
                       return transpose_b ? batched_matmul(lend_grad_buffer(b), g, a, true, transpose_a)
                                          : batched_matmul(lend_grad_buffer(b), a, g, !transpose_a, false);
                   });
}

/// matmul(a, b) with an operand of rank >= 3 and the other of rank >= 1: a
/// 1-D operand becomes a row (left) or a column (right), and the axis it
/// added is removed from the product (torch.matmul).
template <class T>
Var<T> promoted_batched_matmul(const Var<T>& a, const Var<T>& b) {
    const std::size_t ra = a.dim(), rb = b.dim();
    if (ra >= 2 && rb >= 2) return batched_matmul(Var<T>(), a, b, false, false);
    // Checked before reshaping, so that the error shows the real shapes and nothing is recorded.
    const std::size_t ka = ra == 1 ? a.size() : a.value().shape()[ra - 1];
    const std::size_t kb = rb == 1 ? b.size() : b.value().shape()[rb - 2];
    if (ka != kb) {
        throw shape_error(fmt::format("matmul: cannot multiply {} by {}", shape_string_of(a.value()),
                                      shape_string_of(b.value())));
    }
    const long k = static_cast<long>(ka);
    Var<T> c = ra == 1 ? batched_matmul(Var<T>(), reshape(a, {1, k}), b, false, false)
                       : batched_matmul(Var<T>(), a, reshape(b, {k, 1}), false, false);
    std::vector<long> shape(c.value().shape().begin(), c.value().shape().end());
    shape.erase(shape.end() - (ra == 1 ? 2 : 1));
    return reshape(c, shape);
}

/// matmul, computed into `buffer` when it has the result's shape (a weight
/// gradient into its parameter's lent gradient node), else into a new node.
template <class T>
Var<T> matmul_into(Var<T> buffer, const Var<T>& a, const Var<T>& b, bool transpose_a, bool transpose_b) {
    detail::check_defined("matmul", a);
    detail::check_defined("matmul", b);
    const auto& A = a.value();
    const auto& B = b.value();
    if (A.dimension() != 2 || B.dimension() != 2) {
        if (A.dimension() >= 2 && B.dimension() >= 2) return batched_matmul(Var<T>(), a, b, transpose_a, transpose_b);
        throw shape_error(fmt::format("matmul: cannot multiply {} by {} (expects operands of rank 2 or more here)",
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
    const int rows_a = blas::checked_int("matmul", A.shape()[0]), cols_a = blas::checked_int("matmul", A.shape()[1]);
    const int rows_b = blas::checked_int("matmul", B.shape()[0]), cols_b = blas::checked_int("matmul", B.shape()[1]);
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
        if (ra >= 1 && rb >= 1) return detail::promoted_batched_matmul(a, b);  // one of rank >= 3
        throw shape_error(fmt::format("matmul: cannot multiply {} by {} (expects operands of rank 1 or more)",
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

template <class T>
Var<T> outer(const Var<T>& a, const Var<T>& b) {
    detail::check_defined("outer", a);
    detail::check_defined("outer", b);
    if (a.dim() != 1 || b.dim() != 1) {
        throw shape_error(fmt::format("outer: expects two 1-D operands, got {} and {}", shape_string_of(a.value()),
                                      shape_string_of(b.value())));
    }
    const std::size_t m = a.size(), n = b.size();
    Var<T> result = detail::make_uninitialized<T>(std::array<std::size_t, 2>{m, n});
    const T* x = a.value().data();
    const T* y = b.value().data();
    T* c = result.mutable_value().data();
    for (std::size_t i = 0; i < m; ++i, c += n) {
        for (std::size_t j = 0; j < n; ++j) c[j] = x[i] * y[j];
    }
    return make_op("outer", std::move(result), a, b,
                   [a = detail::kept_for(a, b), b = detail::kept_for(b, a)](std::size_t i, const Var<T>& g) {
                       return i == 0 ? matmul(g, b) : matmul(a, g);
                   });
}

template <class T>
Var<T> dot(const Var<T>& a, const Var<T>& b) {
    detail::check_defined("dot", a);
    detail::check_defined("dot", b);
    if (a.dim() != 1 || b.dim() != 1 || a.size() != b.size()) {
        throw shape_error(fmt::format("dot: expects two 1-D operands of one length, got {} and {}",
                                      shape_string_of(a.value()), shape_string_of(b.value())));
    }
    Var<T> result = detail::make_uninitialized<T>(std::array<std::size_t, 0>{});
    result.mutable_value().data()[0] =
        a.size() == 0 ? T(0) : blas::dot(blas::checked_int("dot", a.size()), a.value().data(), b.value().data());
    return make_op("dot", std::move(result), a, b,
                   [a = detail::kept_for(a, b), b = detail::kept_for(b, a)](std::size_t i, const Var<T>& g) {
                       return i == 0 ? g * b : g * a;
                   });
}

template <class T>
Var<T> trace(const Var<T>& x) {
    detail::check_defined("trace", x);
    if (x.dim() != 2) {
        throw shape_error(fmt::format("trace: expects a 2-D operand, got {}", shape_string_of(x.value())));
    }
    const std::size_t rows = x.value().shape()[0], cols = x.value().shape()[1];
    const T* v = x.value().data();
    T sum = T(0);
    for (std::size_t i = 0; i < std::min(rows, cols); ++i) sum += v[i * cols + i];
    Var<T> result = detail::make_uninitialized<T>(std::array<std::size_t, 0>{});
    result.mutable_value().data()[0] = sum;
    return make_op("trace", std::move(result), x, [rows, cols](std::size_t, const Var<T>& g) {
        // g * I: a product with a constant, so that a create_graph sweep differentiates it in g.
        Array<T> identity = xt::zeros<T>({rows, cols});
        for (std::size_t i = 0; i < std::min(rows, cols); ++i) identity(i, i) = T(1);
        return g * constant(std::move(identity));
    });
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
    const int batch = blas::checked_int(op, rows), outputs = blas::checked_int(op, out), inputs = blas::checked_int(op, X.shape()[1]);
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
    template Var<T> linear_sigmoid(const Var<T>&, const Var<T>&, const Var<T>&); \
    template Var<T> outer(const Var<T>&, const Var<T>&);                   \
    template Var<T> dot(const Var<T>&, const Var<T>&);                     \
    template Var<T> trace(const Var<T>&);

AD_INSTANTIATE(float)
AD_INSTANTIATE(double)

}  // namespace ad
