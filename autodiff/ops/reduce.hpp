#pragma once
// Reductions over all axes (a 0-d result) or over one axis, with keepdims.

#include <cstddef>
#include <optional>

#include "autodiff/memory/kept.hpp"
#include "autodiff/record.hpp"

namespace ad {

template <class T> Var<T> sum(const Var<T>& x);
template <class T> Var<T> sum(const Var<T>& x, long axis, bool keepdims = false);
/// Over zero elements each reduction gives what torch's does: sum 0, prod 1,
/// logsumexp -inf, norm of order 1 or 2 0; mean, var and std NaN (0 / 0); max,
/// min, argmax, argmin and the inf-norm, with no value to give, a value_error.
template <class T> Var<T> mean(const Var<T>& x);
template <class T> Var<T> mean(const Var<T>& x, long axis, bool keepdims = false);
/// Ties share the gradient evenly; NaN if the slice holds a NaN (it
/// propagates, as in PyTorch). Over all axes, as torch.max(x): a NaN result's
/// NaNs share the gradient. Along an axis, as torch.amax(x, axis): a slice
/// whose result is NaN has a NaN gradient throughout.
template <class T> Var<T> max(const Var<T>& x);
template <class T> Var<T> max(const Var<T>& x, long axis, bool keepdims = false);

/// The smallest: NaN, ties and gradients as max.
template <class T> Var<T> min(const Var<T>& x);
template <class T> Var<T> min(const Var<T>& x, long axis, bool keepdims = false);
/// The product; x_bar = g prod_{j != i} x_j, exact with zeros in x.
template <class T> Var<T> prod(const Var<T>& x);
template <class T> Var<T> prod(const Var<T>& x, long axis, bool keepdims = false);
/// log sum e^x, the maximum subtracted first; x_bar = g softmax(x).
template <class T> Var<T> logsumexp(const Var<T>& x);
template <class T> Var<T> logsumexp(const Var<T>& x, long axis, bool keepdims = false);
/// sum (x - mean)^2 / (n - correction) over all axes (axis nullopt) or one,
/// as torch.var(x, dim, correction, keepdim): correction 0 is the biased
/// variance, 1 the unbiased one. n <= correction divides by 0, as torch's
/// max(0, n - correction) does: NaN (inf where the squares sum above 0).
/// x_bar = 2 g (x - mean) / (n - correction).
template <class T>
Var<T> var(const Var<T>& x, std::optional<long> axis = std::nullopt, std::size_t correction = 1, bool keepdims = false);
/// sqrt(var); at zero variance the gradient is zero, as PyTorch's.
template <class T>
Var<T> std(const Var<T>& x, std::optional<long> axis = std::nullopt, std::size_t correction = 1, bool keepdims = false);
/// The vector norm (torch.linalg.vector_norm) of order 1 (sum |x|), 2
/// (sqrt sum x^2; gradient 0 at x = 0) or infinity (max |x|; ties share, and a
/// NaN result's NaNs, whose sign is 0: their gradient is 0).
template <class T> Var<T> norm(const Var<T>& x, double ord = 2);
template <class T> Var<T> norm(const Var<T>& x, double ord, long axis, bool keepdims = false);
/// Running sums along `axis`; x_bar = the running sums of g from the end.
template <class T> Var<T> cumsum(const Var<T>& x, long axis);
/// The flat index of the largest (smallest) element, 0-d, or the index along
/// `axis`: the first one at ties; a NaN counts as the extreme (as PyTorch's).
template <class T> IndexArray argmax(const Var<T>& x);
template <class T> IndexArray argmax(const Var<T>& x, long axis, bool keepdims = false);
template <class T> IndexArray argmin(const Var<T>& x);
template <class T> IndexArray argmin(const Var<T>& x, long axis, bool keepdims = false);

/// Sums `x` over the axes that broadcasting added or stretched so that the
/// result has `shape`: the VJP of broadcasting, used by every binary op.
template <class T> Var<T> sum_to_shape(const Var<T>& x, const Shape& shape);

namespace detail {
/// sum(x, 0) of a 2-D x, unrecorded: a layer's bias gradient in a sweep
/// without create_graph, where sum()'s axis check and reduced shape cost
/// more than the sums on a small layer. Into `buffer` when it has the
/// result's shape (a bias's lent gradient node: lend_grad_buffer).
template <class T> Var<T> column_sums(const Var<T>& x, Var<T> buffer = Var<T>());
}  // namespace detail

}  // namespace ad
