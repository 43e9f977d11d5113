#pragma once
// The one place that includes xtensor for the engine: the array type, shape
// helpers, and NumPy broadcasting rules on shapes.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <xtensor/xarray.hpp>

namespace ad {

template <class T>
using Array = xt::xarray<T>;

using Shape = std::vector<std::size_t>;

/// Integer inputs of ops (indices, class labels, tokens): int64 like PyTorch's,
/// so that a negative index is reported as itself. Arrays of other integer
/// types (std::size_t, int) convert implicitly.
using IndexArray = xt::xarray<std::int64_t>;

/// Boolean masks: what comparisons return and `where` selects with.
using Mask = xt::xarray<bool>;

template <class E>
Shape shape_of(const E& e) {
    return Shape(e.shape().begin(), e.shape().end());
}

/// Whether two shapes (any sequences of extents: xtensor's, Shape, arrays)
/// are equal.
template <class SA, class SB>
bool same_extents(const SA& sa, const SB& sb) {
    if (sa.size() != sb.size()) return false;
    // A plain loop, not std::equal: that calls memcmp, whose call costs more
    // than comparing the few numbers of a shape (every op asks this).
    for (std::size_t i = 0; i < sa.size(); ++i) {
        if (static_cast<std::size_t>(sa[i]) != static_cast<std::size_t>(sb[i])) return false;
    }
    return true;
}

/// Whether two arrays have the same shape, without building Shape vectors.
template <class A, class B>
bool equal_shapes(const A& a, const B& b) {
    return same_extents(a.shape(), b.shape());
}

/// "(3, 4)"; a 0-d shape prints as "()".
std::string shape_string(const Shape& shape);

template <class E>
std::string shape_string_of(const E& e) {
    return shape_string(shape_of(e));
}

/// The shape NumPy broadcasting gives two operands; throws shape_error naming `op`.
Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b);

/// True when an array of shape `from` broadcasts to `to` without changing `to`.
bool broadcasts_to(const Shape& from, const Shape& to);

/// Turns a possibly negative axis into an index below `rank`; throws value_error naming `op`.
std::size_t normalize_axis(const char* op, long axis, std::size_t rank);

std::size_t element_count(const Shape& shape);

/// A row-major shape seen along one axis: `outer` blocks (the axes before it),
/// each of `length` slabs of `inner` contiguous elements (the axes after it).
struct AxisBlocks {
    std::size_t outer = 1, length = 0, inner = 1;
    /// The flat index of element i of slab k of block o.
    std::size_t at(std::size_t o, std::size_t k, std::size_t i) const { return (o * length + k) * inner + i; }
};

template <class S>
AxisBlocks axis_blocks(const S& shape, std::size_t axis) {
    AxisBlocks b;
    for (std::size_t d = 0; d < axis; ++d) b.outer *= shape[d];
    b.length = shape[axis];
    for (std::size_t d = axis + 1; d < shape.size(); ++d) b.inner *= shape[d];
    return b;
}

}  // namespace ad
