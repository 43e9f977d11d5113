#pragma once
// Reductions over all axes (a 0-d result) or over one axis, with keepdims.

#include "autodiff/var.hpp"

namespace ad {

template <class T> Var<T> sum(const Var<T>& x);
template <class T> Var<T> sum(const Var<T>& x, long axis, bool keepdims = false);
template <class T> Var<T> mean(const Var<T>& x);
template <class T> Var<T> mean(const Var<T>& x, long axis, bool keepdims = false);
/// Ties share the gradient evenly (as torch.amax does).
template <class T> Var<T> max(const Var<T>& x);
template <class T> Var<T> max(const Var<T>& x, long axis, bool keepdims = false);

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
