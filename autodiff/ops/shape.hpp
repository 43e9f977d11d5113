#pragma once
// Ops that move elements without computing on them.

#include <initializer_list>
#include <vector>

#include "autodiff/memory/kept.hpp"
#include "autodiff/record.hpp"

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

/// torch.flip: x reversed along each of `axes` (negative allowed, no repeats).
/// VJP: x_bar = flip(g, axes).
template <class T> Var<T> flip(const Var<T>& x, const std::vector<long>& axes);
/// Tensor.repeat: x tiled repeats[d] times along axis d; repeats.size() >= rank,
/// extra leading repeats add leading axes (x is viewed with leading 1s).
/// VJP: x_bar = the sum of g's tiles: reshape(g, (r0, s0, r1, s1, ...)) summed
/// over the r axes, reshaped to x.shape.
template <class T> Var<T> repeat(const Var<T>& x, const std::vector<std::size_t>& repeats);
/// torch.tile / numpy.tile: repeat(x, reps) after padding reps with leading 1s
/// to x's rank. VJP: as repeat's.
template <class T> Var<T> tile(const Var<T>& x, const std::vector<std::size_t>& reps);
/// x without its length-1 axes. VJP: x_bar = reshape(g, x.shape).
template <class T> Var<T> squeeze(const Var<T>& x);
/// x without `axis` when its length is 1; x itself otherwise (like PyTorch).
/// A 0-d x takes axis 0 or -1. VJP: x_bar = reshape(g, x.shape).
template <class T> Var<T> squeeze(const Var<T>& x, long axis);
/// x with a new length-1 axis at `axis`, in [-rank - 1, rank].
/// VJP: x_bar = reshape(g, x.shape).
template <class T> Var<T> unsqueeze(const Var<T>& x, long axis);
/// Tensor.permute: result axis i is input axis perm[i] (negative allowed);
/// transpose(x, perm) under PyTorch's name. VJP: x_bar = permute(g, perm^-1).
template <class T> Var<T> permute(const Var<T>& x, const std::vector<long>& perm);
/// torch.split: consecutive slices of `split_size` along `axis` (the last one
/// shorter); an axis of length 0 gives one empty slice. Each part is a slice
/// op: the cotangents of the parts add up in x (x_bar = sum_k pad(g_k, ...)).
template <class T> std::vector<Var<T>> split(const Var<T>& x, std::size_t split_size, long axis = 0);
/// torch.split with sizes: slices of sizes[k] along `axis`, which must add up to its length.
template <class T> std::vector<Var<T>> split(const Var<T>& x, const std::vector<std::size_t>& sizes, long axis = 0);
/// torch.chunk: split(x, ceil(n / chunks), axis), so possibly fewer than `chunks`
/// parts; an axis of length 0 gives `chunks` empty parts.
template <class T> std::vector<Var<T>> chunk(const Var<T>& x, std::size_t chunks, long axis = 0);

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
