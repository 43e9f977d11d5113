// Indexing ops: each forward beside its VJP (g the cotangent of the result y).
// The pairs below are each other's VJP, so double backward works.
//
//   op            y                                              VJP
//   gather        y[i] = x[i with i_axis := index[i]]            scatter_add(x.shape, axis, index, g)
//   scatter_add   zeros(shape); y[i with i_axis := index[i]]     gather(g, axis, index)
//                   += src[i]
//   index_select  slices indices[j] of x along axis              index_add(x.shape, axis, indices, g)
//   index_add     zeros(shape); slice indices[j] += slice j      index_select(g, axis, indices)
//                   of src
//   embedding     y[t.., :] = table[tokens[t..], :]              index_add((V, D), 0, flat tokens,
//                                                                  reshape(g, (N, D)))
//
// PyTorch semantics: indices must lie in [0, bound) (negative ones are errors,
// as in torch.gather / index_select / F.embedding); a repeated index receives
// the sum of its cotangents. scatter_add and index_add start from zeros (the
// transposes of gather and index_select); their src has exactly index's shape
// (PyTorch's scatter_add also accepts a larger src and reads its leading block).

#include "autodiff/ops/indexing.hpp"

#include <algorithm>
#include <memory>

#include <fmt/format.h>

#include "autodiff/ops/all.hpp"

namespace ad {
namespace {

using SharedIndex = std::shared_ptr<const IndexArray>;
using SharedIndices = std::shared_ptr<const std::vector<std::size_t>>;

/// Throws value_error unless every index is in [0, bound).
void check_range(const char* op, const std::int64_t* index, std::size_t count, std::size_t bound, long axis) {
    for (std::size_t i = 0; i < count; ++i) {
        if (index[i] < 0 || static_cast<std::size_t>(index[i]) >= bound) {
            throw value_error(fmt::format("{}: index {} out of range [0, {}) along axis {}", op, index[i], bound, axis));
        }
    }
}

/// Row-major strides of `shape` in elements (xtensor's own are 0 on length-1 axes).
Shape strides_of(const Shape& shape) {
    Shape strides(shape.size());
    std::size_t stride = 1;
    for (std::size_t d = shape.size(); d-- > 0;) {
        strides[d] = stride;
        stride *= shape[d];
    }
    return strides;
}

/// Calls f(p, offset) for every element p (row-major) of `index`, with `offset`
/// the position in a row-major array of `x_shape` of [p's multi-index with
/// its `axis` entry replaced by index[p]]. Indices already checked.
template <class F>
void for_each_gathered(const Shape& x_shape, std::size_t axis, const IndexArray& index, F f) {
    const std::size_t count = index.size();
    if (count == 0) return;
    const Shape x_strides = strides_of(x_shape);
    const auto& i_shape = index.shape();
    const std::size_t rank = x_shape.size();
    Shape counter(rank, 0);
    std::size_t base = 0;  // the offset of the counter without its axis entry
    const std::int64_t* idx = index.data();
    for (std::size_t p = 0; p < count; ++p) {
        f(p, base + static_cast<std::size_t>(idx[p]) * x_strides[axis]);
        for (std::size_t d = rank; d-- > 0;) {
            if (d != axis) base += x_strides[d];
            if (++counter[d] < i_shape[d]) break;
            if (d != axis) base -= x_strides[d] * i_shape[d];
            counter[d] = 0;
        }
    }
}

/// Throws unless `index` fits x_shape for gather / scatter_add along `axis`.
void check_gather_index(const char* op, const Shape& x_shape, long axis, std::size_t ax, const IndexArray& index) {
    Shape i_shape = shape_of(index);
    if (i_shape.size() != x_shape.size()) {
        throw shape_error(fmt::format("{}: index {} has rank {}, x {} has rank {}", op, shape_string(i_shape),
                                      i_shape.size(), shape_string(x_shape), x_shape.size()));
    }
    for (std::size_t d = 0; d < x_shape.size(); ++d) {
        if (d != ax && i_shape[d] > x_shape[d]) {
            throw shape_error(fmt::format("{}: index {} is longer than x {} along axis {} (only axis {} may be)", op,
                                          shape_string(i_shape), shape_string(x_shape), d, axis));
        }
    }
    check_range(op, index.data(), index.size(), x_shape[ax], axis);
}

std::vector<std::size_t> checked_indices(const char* op, const IndexArray& indices, std::size_t bound, long axis) {
    if (indices.dimension() != 1) {
        throw shape_error(fmt::format("{}: indices {} must be 1-D", op, shape_string_of(indices)));
    }
    check_range(op, indices.data(), indices.size(), bound, axis);
    return std::vector<std::size_t>(indices.begin(), indices.end());
}

template <class T> Var<T> gather_unchecked(const Var<T>& x, std::size_t axis, const SharedIndex& index);
template <class T> Var<T> scatter_add_unchecked(const Shape& shape, std::size_t axis, const SharedIndex& index, const Var<T>& src);
template <class T> Var<T> index_select_unchecked(const Var<T>& x, std::size_t axis, const SharedIndices& indices);
template <class T> Var<T> index_add_unchecked(const Shape& shape, std::size_t axis, const SharedIndices& indices, const Var<T>& src);

template <class T>
Var<T> gather_unchecked(const Var<T>& x, std::size_t axis, const SharedIndex& index) {
    Shape x_shape = x.shape();
    Var<T> y = detail::make_uninitialized<T>(index->shape());
    const T* in = x.value().data();
    T* out = y.mutable_value().data();
    for_each_gathered(x_shape, axis, *index, [&](std::size_t p, std::size_t offset) { out[p] = in[offset]; });
    return make_op("gather", std::move(y), x, [x_shape, axis, index](std::size_t, const Var<T>& g) {
        return scatter_add_unchecked(x_shape, axis, index, g);
    });
}

template <class T>
Var<T> scatter_add_unchecked(const Shape& shape, std::size_t axis, const SharedIndex& index, const Var<T>& src) {
    Array<T> y = xt::zeros<T>(shape);
    const T* in = src.value().data();
    T* out = y.data();
    for_each_gathered(shape, axis, *index, [&](std::size_t p, std::size_t offset) { out[offset] += in[p]; });
    return make_op("scatter_add", std::move(y), src, [axis, index](std::size_t, const Var<T>& g) {
        return gather_unchecked(g, axis, index);
    });
}

template <class T>
Var<T> index_select_unchecked(const Var<T>& x, std::size_t axis, const SharedIndices& indices) {
    Shape x_shape = x.shape();
    AxisBlocks b = axis_blocks(x_shape, axis);
    const std::size_t k = indices->size();
    Shape y_shape = x_shape;
    y_shape[axis] = k;
    Var<T> y = detail::make_uninitialized<T>(y_shape);
    const T* in = x.value().data();
    T* out = y.mutable_value().data();
    for (std::size_t o = 0; o < b.outer; ++o) {
        for (std::size_t j = 0; j < k; ++j) {
            std::copy_n(in + (o * b.length + (*indices)[j]) * b.inner, b.inner, out + (o * k + j) * b.inner);
        }
    }
    return make_op("index_select", std::move(y), x, [x_shape, axis, indices](std::size_t, const Var<T>& g) {
        return index_add_unchecked(x_shape, axis, indices, g);
    });
}

template <class T>
Var<T> index_add_unchecked(const Shape& shape, std::size_t axis, const SharedIndices& indices, const Var<T>& src) {
    AxisBlocks b = axis_blocks(shape, axis);
    const std::size_t k = indices->size();
    Array<T> y = xt::zeros<T>(shape);
    const T* in = src.value().data();
    T* out = y.data();
    for (std::size_t o = 0; o < b.outer; ++o) {
        for (std::size_t j = 0; j < k; ++j) {
            const T* from = in + (o * k + j) * b.inner;
            T* to = out + (o * b.length + (*indices)[j]) * b.inner;
            for (std::size_t i = 0; i < b.inner; ++i) to[i] += from[i];
        }
    }
    return make_op("index_add", std::move(y), src, [axis, indices](std::size_t, const Var<T>& g) {
        return index_select_unchecked(g, axis, indices);
    });
}

}  // namespace

template <class T>
Var<T> gather(const Var<T>& x, long axis, const IndexArray& index) {
    detail::check_defined("gather", x);
    Shape x_shape = x.shape();
    std::size_t ax = normalize_axis("gather", axis, x_shape.size());
    check_gather_index("gather", x_shape, axis, ax, index);
    return gather_unchecked(x, ax, std::make_shared<const IndexArray>(index));
}

template <class T>
Var<T> scatter_add(const Shape& shape, long axis, const IndexArray& index, const Var<T>& src) {
    detail::check_defined("scatter_add", src);
    std::size_t ax = normalize_axis("scatter_add", axis, shape.size());
    if (!equal_shapes(src.value(), index)) {
        throw shape_error(fmt::format("scatter_add: src {} must have the shape of index {}", shape_string_of(src.value()),
                                      shape_string_of(index)));
    }
    check_gather_index("scatter_add", shape, axis, ax, index);
    return scatter_add_unchecked(shape, ax, std::make_shared<const IndexArray>(index), src);
}

template <class T>
Var<T> index_select(const Var<T>& x, long axis, const IndexArray& indices) {
    detail::check_defined("index_select", x);
    Shape x_shape = x.shape();
    std::size_t ax = normalize_axis("index_select", axis, x_shape.size());
    auto checked = checked_indices("index_select", indices, x_shape[ax], axis);
    return index_select_unchecked(x, ax, std::make_shared<const std::vector<std::size_t>>(std::move(checked)));
}

template <class T>
Var<T> index_select(const Var<T>& x, long axis, const std::vector<std::size_t>& indices) {
    detail::check_defined("index_select", x);
    Shape x_shape = x.shape();
    std::size_t ax = normalize_axis("index_select", axis, x_shape.size());
    for (std::size_t i : indices) {
        if (i >= x_shape[ax]) {
            throw value_error(fmt::format("index_select: index {} out of range [0, {}) along axis {}", i, x_shape[ax], axis));
        }
    }
    return index_select_unchecked(x, ax, std::make_shared<const std::vector<std::size_t>>(indices));
}

template <class T>
Var<T> index_add(const Shape& shape, long axis, const IndexArray& indices, const Var<T>& src) {
    detail::check_defined("index_add", src);
    std::size_t ax = normalize_axis("index_add", axis, shape.size());
    if (indices.dimension() != 1) {
        throw shape_error(fmt::format("index_add: indices {} must be 1-D", shape_string_of(indices)));
    }
    Shape expected = shape;
    expected[ax] = indices.size();
    if (src.shape() != expected) {
        throw shape_error(fmt::format("index_add: src {} must be {} for {} indices into {} along axis {}",
                                      shape_string_of(src.value()), shape_string(expected), indices.size(),
                                      shape_string(shape), axis));
    }
    auto checked = checked_indices("index_add", indices, shape[ax], axis);
    return index_add_unchecked(shape, ax, std::make_shared<const std::vector<std::size_t>>(std::move(checked)), src);
}

template <class T>
Var<T> embedding(const Var<T>& table, const IndexArray& tokens) {
    detail::check_defined("embedding", table);
    Shape t_shape = table.shape();
    if (t_shape.size() != 2) {
        throw shape_error(fmt::format("embedding: table {} must be 2-D (V, D)", shape_string(t_shape)));
    }
    const std::size_t vocabulary = t_shape[0], width = t_shape[1];
    const std::int64_t* tok = tokens.data();
    for (std::size_t i = 0; i < tokens.size(); ++i) {
        if (tok[i] < 0 || static_cast<std::size_t>(tok[i]) >= vocabulary) {
            throw value_error(fmt::format("embedding: token {} out of range [0, {}) for table {}", tok[i], vocabulary,
                                          shape_string(t_shape)));
        }
    }
    auto rows = std::make_shared<const std::vector<std::size_t>>(tokens.begin(), tokens.end());
    Shape y_shape = shape_of(tokens);
    y_shape.push_back(width);
    Var<T> y = detail::make_uninitialized<T>(y_shape);
    const T* in = table.value().data();
    T* out = y.mutable_value().data();
    for (std::size_t i = 0; i < rows->size(); ++i) std::copy_n(in + (*rows)[i] * width, width, out + i * width);
    return make_op("embedding", std::move(y), table, [t_shape, rows](std::size_t, const Var<T>& g) {
        std::vector<long> flat{static_cast<long>(rows->size()), static_cast<long>(t_shape[1])};
        return index_add_unchecked(t_shape, 0, rows, reshape(g, flat));
    });
}

#define AD_INSTANTIATE(T)                                                                          \
    template Var<T> gather(const Var<T>&, long, const IndexArray&);                                \
    template Var<T> scatter_add(const Shape&, long, const IndexArray&, const Var<T>&);             \
    template Var<T> index_select(const Var<T>&, long, const IndexArray&);                          \
    template Var<T> index_select(const Var<T>&, long, const std::vector<std::size_t>&);            \
    template Var<T> index_add(const Shape&, long, const IndexArray&, const Var<T>&);               \
    template Var<T> embedding(const Var<T>&, const IndexArray&);

AD_INSTANTIATE(float)
AD_INSTANTIATE(double)

}  // namespace ad
