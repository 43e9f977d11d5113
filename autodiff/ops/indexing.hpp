#pragma once
// Ops that pick elements by integer index: gather, index_select, embedding,
// and the ops that add elements back where they were picked (their VJPs).
// Indices are ad::IndexArray (int64, like PyTorch's); an index outside
// [0, bound) is a value_error naming the op, the index and the bound.

#include <cstddef>
#include <vector>

#include "autodiff/memory/kept.hpp"
#include "autodiff/record.hpp"

namespace ad {

/// torch.gather: y[i..] = x[i.. with i_axis replaced by index[i..]]. `index`
/// has x's rank and index.shape[d] <= x.shape[d] for d != axis; y has index's
/// shape. VJP: x_bar = scatter_add(x.shape, axis, index, g).
template <class T> Var<T> gather(const Var<T>& x, long axis, const IndexArray& index);

/// The transpose of gather: zeros of `shape` into which src[i..] is added at
/// [i.. with i_axis replaced by index[i..]] (repeats add up), i.e.
/// torch.zeros(shape).scatter_add_(axis, index, src). src has index's shape.
/// VJP: src_bar = gather(g, axis, index).
template <class T>
Var<T> scatter_add(const Shape& shape, long axis, const IndexArray& index, const Var<T>& src);

/// torch.index_select: the slices indices[j] of x along `axis` (1-D indices,
/// repeats allowed); y.shape[axis] = indices.size().
/// VJP: x_bar = index_add(x.shape, axis, indices, g) (repeats add up).
template <class T> Var<T> index_select(const Var<T>& x, long axis, const IndexArray& indices);
template <class T> Var<T> index_select(const Var<T>& x, long axis, const std::vector<std::size_t>& indices);

/// The transpose of index_select: zeros of `shape` with slice j of src (along
/// `axis`) added at slice indices[j], i.e. torch.zeros(shape).index_add_(axis,
/// indices, src). src is `shape` with shape[axis] = indices.size().
/// VJP: src_bar = index_select(g, axis, indices).
template <class T>
Var<T> index_add(const Shape& shape, long axis, const IndexArray& indices, const Var<T>& src);

/// F.embedding(tokens, table): row tokens[i..] of the table (V, D) for every
/// token; y has shape tokens.shape + (D,).
/// VJP: table_bar = zeros (V, D) with row g[i..] added at row tokens[i..]
/// (index_add over the flattened tokens).
template <class T> Var<T> embedding(const Var<T>& table, const IndexArray& tokens);

}  // namespace ad
