#pragma once
// Ops that move elements without computing on them.

#include <initializer_list>
#include <vector>

#include "autodiff/var.hpp"

namespace ad {

/// One entry of `shape` may be -1: it is inferred from the element count.
template <class T> Var<T> reshape(const Var<T>& x, const std::vector<long>& shape);
/// Reverses the axes (the matrix transpose for 2-D).
template <class T> Var<T> transpose(const Var<T>& x);
/// Permutes the axes: result axis i is input axis perm[i].
template <class T> Var<T> transpose(const Var<T>& x, const std::vector<std::size_t>& perm);
/// Repeats `x` along broadcast axes to `shape` (NumPy's broadcast_to).
template <class T> Var<T> broadcast_to(const Var<T>& x, const Shape& shape);

/// Elements [begin, end) along `axis`.
template <class T> Var<T> slice(const Var<T>& x, long axis, std::size_t begin, std::size_t end);
/// Rows [begin, end): a contiguous mini-batch.
template <class T> Var<T> rows(const Var<T>& x, std::size_t begin, std::size_t end);
/// The inverse of slice: `x` placed at [begin, begin + x.shape[axis]) of a
/// zero value whose `axis` has length `size`.
template <class T> Var<T> pad(const Var<T>& x, long axis, std::size_t begin, std::size_t size);
/// Rows picked by index (repeats allowed): a shuffled mini-batch.
template <class T> Var<T> take_rows(const Var<T>& x, const std::vector<std::size_t>& indices);
/// The inverse of take_rows: a zero value with `rows` rows into which row i of
/// `x` is added at row indices[i].
template <class T>
Var<T> scatter_add_rows(const Var<T>& x, const std::vector<std::size_t>& indices, std::size_t rows);

template <class T> Var<T> concatenate(const std::vector<Var<T>>& xs, long axis = 0);
/// Joins values of one shape along a new axis.
template <class T> Var<T> stack(const std::vector<Var<T>>& xs, long axis = 0);

// So that `concatenate({a, b})` deduces the element type.
template <class T> Var<T> concatenate(std::initializer_list<Var<T>> xs, long axis = 0) {
    return concatenate(std::vector<Var<T>>(xs), axis);
}
template <class T> Var<T> stack(std::initializer_list<Var<T>> xs, long axis = 0) {
    return stack(std::vector<Var<T>>(xs), axis);
}

}  // namespace ad
