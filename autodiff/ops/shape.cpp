// Shape ops: each forward beside its VJP (g the cotangent of the result y).
// Every VJP here is another shape op: the pairs below are each other's VJP.
//
//   op                 y                                   VJP
//   reshape            x with a new shape                  reshape(g, x.shape)
//   transpose          axes permuted by perm               transpose(g, inverse(perm))
//   broadcast_to       x repeated along broadcast axes     sum_to_shape(g, x.shape)
//   slice              x[begin:end] along axis             pad(g, axis, begin, x.shape[axis]); a sweep that
//                                                          records nothing adds g into x's cotangent in place
//   pad                zeros with x at [begin:...]         slice(g, axis, begin, begin + x.shape[axis])
//   take_rows          x[indices]                          scatter_add_rows(g, indices, x.rows)
//   scatter_add_rows   zeros, row indices[i] += x[i]       take_rows(g, indices)
//   concatenate        xs joined along axis                slice of g for each input
//   flip               x reversed along axes               flip(g, axes)
//   repeat, tile       x tiled r_d times along each axis   reshape(g, (r0, s0, r1, s1, ...)) summed over
//                                                          the r axes (sum_to_shape), reshaped to x.shape
//   squeeze            x without length-1 axes             reshape(g, x.shape)
//   unsqueeze          x with a new length-1 axis          reshape(g, x.shape)
//   permute            transpose(x, perm)                  transpose(g, inverse(perm))
//   split, chunk       slices of x along axis              one slice op per part: the parts' pads add up
//
// PyTorch semantics: squeeze(x, axis) of an axis longer than 1 is x itself;
// repeat's repeats may be longer than the rank (leading axes), tile's reps
// shorter (leading 1s); chunk gives ceil(n / chunks)-long parts, so possibly
// fewer than `chunks`; flip rejects an axis named twice.

#include "autodiff/ops/shape.hpp"

#include <algorithm>
#include <cstddef>
#include <limits>
#include <numeric>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <xtensor/xbroadcast.hpp>
#include <xtensor/xmanipulation.hpp>

#include "autodiff/ops/all.hpp"

namespace ad {
namespace {

std::vector<long> as_long(const Shape& shape) { return std::vector<long>(shape.begin(), shape.end()); }

/// In every outer block, copies `count` slabs from slab `from` of `src` to
/// slab `to` of `dst`: one contiguous run per block. Slicing, padding and
/// joining along an axis are this copy; xtensor's strided views walk the same
/// elements one index at a time, several times slower.
template <class T>
void copy_slabs(const T* src, const AxisBlocks& s, std::size_t from, T* dst, const AxisBlocks& d, std::size_t to,
                std::size_t count) {
    const std::size_t run = count * s.inner;
    if (run == 0) return;  // also keeps null data pointers of empty arrays out of the arithmetic
    for (std::size_t o = 0; o < s.outer; ++o) {
        std::copy_n(src + (o * s.length + from) * s.inner, run, dst + (o * d.length + to) * d.inner);
    }
}

/// y = x with its axes permuted (y's axis i is x's axis perm[i]), in y's
/// row-major order: an odometer over y's outer axes, one run along its last
/// axis per step (a contiguous copy when that axis is x's last too).
/// xtensor's assignment of a transposed view recomputes every index, about
/// ten times slower on the head permutes of attention.
template <class T>
void permute_copy(const T* x, const Shape& x_shape, const std::vector<std::size_t>& perm, T* y) {
    const std::size_t rank = perm.size();
    if (rank == 0) {
        *y = *x;
        return;
    }
    std::vector<std::size_t> x_strides(rank);
    std::size_t total = 1;
    for (std::size_t d = rank; d-- > 0;) {
        x_strides[d] = total;
        total *= x_shape[d];
    }
    std::vector<std::size_t> extent(rank), stride(rank), index(rank, 0);
    for (std::size_t d = 0; d < rank; ++d) {
        extent[d] = x_shape[perm[d]];
        stride[d] = x_strides[perm[d]];
    }
    const std::size_t inner = extent[rank - 1], step = stride[rank - 1];
    std::size_t offset = 0;
    for (std::size_t done = 0; done < total; done += inner, y += inner) {
        const T* src = x + offset;
        if (step == 1) {
            std::copy_n(src, inner, y);
        } else {
            for (std::size_t k = 0; k < inner; ++k) y[k] = src[k * step];
        }
        for (std::size_t d = rank - 1; d-- > 0;) {
            offset += stride[d];
            if (++index[d] < extent[d]) break;
            offset -= stride[d] * extent[d];
            index[d] = 0;
        }
    }
}

/// In every outer block, adds `src`'s slabs into `dst`'s slabs from slab `to` on.
template <class T>
void add_slabs(const T* src, const AxisBlocks& s, T* dst, const AxisBlocks& d, std::size_t to) {
    const std::size_t run = s.length * s.inner;
    if (run == 0) return;
    for (std::size_t o = 0; o < s.outer; ++o) {
        const T* from = src + o * run;
        T* into = dst + (o * d.length + to) * d.inner;
        for (std::size_t k = 0; k < run; ++k) into[k] += from[k];
    }
}

void check_rows(const char* op, const Shape& shape, const std::vector<std::size_t>& indices, std::size_t rows) {
    for (std::size_t i : indices) {
        if (i >= rows) {
            throw value_error(fmt::format("{}: row index {} is out of range for {} rows (shape {})", op, i,
                                          rows, shape_string(shape)));
        }
    }
}

}  // namespace

template <class T>
Var<T> reshape(const Var<T>& x, const std::vector<long>& shape) {
    detail::check_defined("reshape", x);
    Shape x_shape = x.shape();
    auto reject = [&] {
        throw shape_error(fmt::format("reshape: cannot reshape {} into ({})", shape_string(x_shape), fmt::join(shape, ", ")));
    };
    Shape target(shape.size());
    // The product of the nonzero extents must fit in a ptrdiff_t, xtensor's
    // stride type, even when a zero extent makes the value empty: a product
    // that wrapped around could match the element count of another shape.
    std::size_t known = 1, nonzero = 1;
    long inferred = -1;
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (shape[i] == -1 && inferred < 0) {
            inferred = static_cast<long>(i);
        } else if (shape[i] < 0) {
            reject();
        } else {
            target[i] = static_cast<std::size_t>(shape[i]);
            if (target[i] != 0 && (__builtin_mul_overflow(nonzero, target[i], &nonzero) ||
                                   nonzero > std::size_t(std::numeric_limits<std::ptrdiff_t>::max()))) {
                reject();
            }
            known = target[i] == 0 || known == 0 ? 0 : nonzero;
        }
    }
    if (inferred >= 0 && known != 0) target[static_cast<std::size_t>(inferred)] = x.size() / known;
    if (element_count(target) != x.size()) reject();
    // Copied into a recycled array: a fresh one of a step's large size takes a page fault per 4 KiB.
    Array<T> y = detail::new_array<T>(target);
    if (x.size() > 0) std::copy_n(x.value().data(), x.size(), y.data());  // an empty array's data may be null
    return make_op("reshape", std::move(y), x, [x_shape](std::size_t, const Var<T>& g) {
        return reshape(g, as_long(x_shape));
    });
}

template <class T>
Var<T> transpose(const Var<T>& x) {
    detail::check_defined("transpose", x);
    std::vector<std::size_t> perm(x.dim());
    std::iota(perm.rbegin(), perm.rend(), std::size_t{0});
    return transpose(x, perm);
}

template <class T>
Var<T> transpose(const Var<T>& x, const std::vector<std::size_t>& perm) {
    detail::check_defined("transpose", x);
    std::vector<std::size_t> sorted = perm;
    std::sort(sorted.begin(), sorted.end());
    bool is_permutation = sorted.size() == x.dim();
    for (std::size_t i = 0; is_permutation && i < sorted.size(); ++i) is_permutation = sorted[i] == i;
    if (!is_permutation) {
        throw shape_error(fmt::format("transpose: ({}) is not a permutation of the axes of {}", fmt::join(perm, ", "),
                                      shape_string_of(x.value())));
    }
    std::vector<std::size_t> inverse(perm.size());
    for (std::size_t i = 0; i < perm.size(); ++i) inverse[perm[i]] = i;
    Shape x_shape = x.shape();
    Shape y_shape(perm.size());
    for (std::size_t i = 0; i < perm.size(); ++i) y_shape[i] = x_shape[perm[i]];
    Array<T> y = detail::new_array<T>(y_shape);
    // An empty value has nothing to copy (and its data pointer may be null).
    if (x.size() > 0) permute_copy(x.value().data(), x_shape, perm, y.data());
    return make_op("transpose", std::move(y), x,
                   [inverse](std::size_t, const Var<T>& g) { return transpose(g, inverse); });
}

template <class T>
Var<T> broadcast_to(const Var<T>& x, const Shape& shape) {
    detail::check_defined("broadcast_to", x);
    Shape x_shape = x.shape();
    if (x_shape == shape) return x;
    if (!broadcasts_to(x_shape, shape)) {
        throw shape_error(fmt::format("broadcast_to: cannot broadcast {} to {}", shape_string(x_shape), shape_string(shape)));
    }
    return make_op("broadcast_to", Array<T>(xt::broadcast(x.value(), shape)), x,
                   [x_shape](std::size_t, const Var<T>& g) { return sum_to_shape(g, x_shape); });
}

template <class T>
Var<T> slice(const Var<T>& x, long axis, std::size_t begin, std::size_t end) {
    detail::check_defined("slice", x);
    Shape x_shape = x.shape();
    std::size_t ax = normalize_axis("slice", axis, x_shape.size());
    if (begin > end || end > x_shape[ax]) {
        throw shape_error(fmt::format("slice: [{}, {}) is out of range for axis {} of {}", begin, end, axis,
                                      shape_string(x_shape)));
    }
    Shape y_shape = x_shape;
    y_shape[ax] = end - begin;
    Array<T> y = detail::new_array<T>(y_shape);
    copy_slabs(x.value().data(), axis_blocks(x_shape, ax), begin, y.data(), axis_blocks(y_shape, ax), 0, end - begin);
    std::size_t length = x_shape[ax];
    auto vjp = [ax, begin, length](std::size_t, const Var<T>& g) { return pad(g, static_cast<long>(ax), begin, length); };
    auto add_into = [ax, begin](std::size_t, const Var<T>& g, Array<T>& sum) {
        add_slabs(g.value().data(), axis_blocks(g.shape(), ax), sum.data(), axis_blocks(sum.shape(), ax), begin);
    };
    return make_op("slice", std::move(y), x, accumulating_vjp(vjp, add_into));
}

template <class T>
Var<T> rows(const Var<T>& x, std::size_t begin, std::size_t end) {
    detail::check_defined("rows", x);
    if (x.dim() == 0) throw shape_error("rows: a 0-d value has no rows");
    std::size_t n = x.value().shape()[0];
    if (begin > end || end > n) {
        throw shape_error(fmt::format("rows: [{}, {}) is out of range for the {} rows of {}", begin, end, n,
                                      shape_string_of(x.value())));
    }
    return slice(x, 0, begin, end);
}

template <class T>
Var<T> pad(const Var<T>& x, long axis, std::size_t begin, std::size_t size) {
    detail::check_defined("pad", x);
    Shape x_shape = x.shape();
    std::size_t ax = normalize_axis("pad", axis, x_shape.size());
    std::size_t length = x_shape[ax];
    if (begin > size || length > size - begin) {  // not begin + length > size: that sum can wrap
        throw shape_error(fmt::format("pad: {} does not fit at {} of an axis of length {}", shape_string(x_shape), begin, size));
    }
    Shape y_shape = x_shape;
    y_shape[ax] = size;
    Array<T> y = detail::new_array<T>(y_shape);
    const AxisBlocks xb = axis_blocks(x_shape, ax), yb = axis_blocks(y_shape, ax);
    if (y.size() > 0) {
        // Zeros before and after x's slabs in each block, then x's slabs.
        for (std::size_t o = 0; o < yb.outer; ++o) {
            T* block = y.data() + o * size * yb.inner;
            std::fill_n(block, begin * yb.inner, T(0));
            std::fill_n(block + (begin + length) * yb.inner, (size - begin - length) * yb.inner, T(0));
        }
    }
    copy_slabs(x.value().data(), xb, 0, y.data(), yb, begin, length);
    return make_op("pad", std::move(y), x, [ax, begin, length](std::size_t, const Var<T>& g) {
        return slice(g, static_cast<long>(ax), begin, begin + length);
    });
}

template <class T>
Var<T> take_rows(const Var<T>& x, const std::vector<std::size_t>& indices) {
    detail::check_defined("take_rows", x);
    Shape x_shape = x.shape();
    if (x_shape.empty()) throw shape_error("take_rows: a 0-d value has no rows");
    check_rows("take_rows", x_shape, indices, x_shape[0]);
    Shape y_shape = x_shape;
    y_shape[0] = indices.size();
    Array<T> y = Array<T>::from_shape(y_shape);
    std::size_t row = x_shape[0] == 0 ? 0 : x.size() / x_shape[0];
    for (std::size_t i = 0; i < indices.size(); ++i) {
        std::copy_n(x.value().data() + indices[i] * row, row, y.data() + i * row);
    }
    std::size_t n = x_shape[0];
    return make_op("take_rows", std::move(y), x, [indices, n](std::size_t, const Var<T>& g) {
        return scatter_add_rows(g, indices, n);
    });
}

template <class T>
Var<T> scatter_add_rows(const Var<T>& x, const std::vector<std::size_t>& indices, std::size_t rows) {
    detail::check_defined("scatter_add_rows", x);
    Shape x_shape = x.shape();
    if (x_shape.empty() || x_shape[0] != indices.size()) {
        throw shape_error(fmt::format("scatter_add_rows: {} rows of {} for {} indices", x_shape.empty() ? 0 : x_shape[0],
                                      shape_string(x_shape), indices.size()));
    }
    check_rows("scatter_add_rows", x_shape, indices, rows);
    Shape y_shape = x_shape;
    y_shape[0] = rows;
    Array<T> y = xt::zeros<T>(y_shape);
    std::size_t row = indices.empty() ? 0 : x.size() / indices.size();
    for (std::size_t i = 0; i < indices.size(); ++i) {
        const T* from = x.value().data() + i * row;
        T* to = y.data() + indices[i] * row;
        for (std::size_t j = 0; j < row; ++j) to[j] += from[j];
    }
    return make_op("scatter_add_rows", std::move(y), x, [indices](std::size_t, const Var<T>& g) {
        return take_rows(g, indices);
    });
}

template <class T>
Var<T> concatenate(const std::vector<Var<T>>& xs, long axis) {
    if (xs.empty()) throw shape_error("concatenate: no values to join");
    for (const auto& x : xs) detail::check_defined("concatenate", x);
    Shape first = xs[0].shape();
    std::size_t ax = normalize_axis("concatenate", axis, first.size());
    std::vector<std::size_t> offsets;
    Shape y_shape = first;
    y_shape[ax] = 0;
    for (const auto& x : xs) {
        Shape s = x.shape();
        Shape a = s, b = first;
        if (s.size() == first.size()) a[ax] = b[ax] = 0;
        if (a != b) {
            std::vector<std::string> shapes;
            for (const auto& v : xs) shapes.push_back(shape_string_of(v.value()));
            throw shape_error(fmt::format("concatenate: shapes {} differ outside axis {}", fmt::join(shapes, ", "), axis));
        }
        offsets.push_back(y_shape[ax]);
        y_shape[ax] += s[ax];
    }
    Array<T> y = detail::new_array<T>(y_shape);
    const AxisBlocks yb = axis_blocks(y_shape, ax);
    for (std::size_t i = 0; i < xs.size(); ++i) {
        const AxisBlocks xb = axis_blocks(xs[i].shape(), ax);
        copy_slabs(xs[i].value().data(), xb, 0, y.data(), yb, offsets[i], xb.length);
    }
    std::vector<std::size_t> lengths;
    for (const auto& x : xs) lengths.push_back(x.value().shape()[ax]);
    return make_op("concatenate", std::move(y), xs,
                   [ax, offsets, lengths](std::size_t i, const Var<T>& g) {
                       return slice(g, static_cast<long>(ax), offsets[i], offsets[i] + lengths[i]);
                   });
}

template <class T>
Var<T> stack(const std::vector<Var<T>>& xs, long axis) {
    if (xs.empty()) throw shape_error("stack: no values to join");
    for (const auto& x : xs) detail::check_defined("stack", x);
    Shape first = xs[0].shape();
    std::size_t ax = normalize_axis("stack", axis, first.size() + 1);
    for (const auto& x : xs) {
        if (x.shape() != first) {
            std::vector<std::string> shapes;
            for (const auto& v : xs) shapes.push_back(shape_string_of(v.value()));
            throw shape_error(fmt::format("stack: shapes {} are not all the same", fmt::join(shapes, ", ")));
        }
    }
    // Only once every shape is known to fit: a throwing stack must record nothing.
    std::vector<long> s = as_long(first);
    s.insert(s.begin() + static_cast<long>(ax), 1);
    std::vector<Var<T>> expanded;
    for (const auto& x : xs) expanded.push_back(reshape(x, s));
    return concatenate(expanded, static_cast<long>(ax));
}

template <class T>
Var<T> flip(const Var<T>& x, const std::vector<long>& axes) {
    detail::check_defined("flip", x);
    Shape x_shape = x.shape();
    std::vector<std::size_t> normalized;
    for (long a : axes) {
        std::size_t ax = normalize_axis("flip", a, x_shape.size());
        if (std::find(normalized.begin(), normalized.end(), ax) != normalized.end()) {
            throw value_error(fmt::format("flip: axis {} appears twice in ({}) for {}", a, fmt::join(axes, ", "),
                                          shape_string(x_shape)));
        }
        normalized.push_back(ax);
    }
    Array<T> y = x.value();
    // A flipped view of an empty value would offset a null pointer; there is nothing to reverse.
    for (std::size_t ax : normalized) {
        if (y.size() == 0) break;
        Array<T> flipped = xt::flip(y, ax);
        y = std::move(flipped);
    }
    return make_op("flip", std::move(y), x, [normalized](std::size_t, const Var<T>& g) {
        return flip(g, std::vector<long>(normalized.begin(), normalized.end()));
    });
}

namespace {

/// repeat and tile once `repeats` has at least x's rank: x viewed as
/// (1, s0, 1, s1, ...) (s with leading 1s) broadcast to (r0, s0, r1, s1, ...).
template <class T>
Var<T> tiled(const char* op, const Var<T>& x, const std::vector<std::size_t>& repeats) {
    Shape x_shape = x.shape();
    const std::size_t rank = repeats.size(), lead = rank - x_shape.size();
    Shape spread(2 * rank), tiles(2 * rank), y_shape(rank);
    for (std::size_t d = 0; d < rank; ++d) {
        std::size_t side = d < lead ? 1 : x_shape[d - lead];
        spread[2 * d] = 1;
        spread[2 * d + 1] = side;
        tiles[2 * d] = repeats[d];
        tiles[2 * d + 1] = side;
        y_shape[d] = repeats[d] * side;
    }
    Array<T> spread_x = x.value();
    spread_x.reshape(spread);
    Array<T> y = xt::broadcast(spread_x, tiles);
    y.reshape(y_shape);
    return make_op(op, std::move(y), x, [x_shape, spread, tiles](std::size_t, const Var<T>& g) {
        return reshape(sum_to_shape(reshape(g, as_long(tiles)), spread), as_long(x_shape));
    });
}

/// x's value under a new shape with as many elements, as op `op`.
template <class T>
Var<T> reshaped(const char* op, const Var<T>& x, const Shape& shape) {
    Shape x_shape = x.shape();
    Array<T> y = detail::new_array<T>(shape);
    if (x.size() > 0) std::copy_n(x.value().data(), x.size(), y.data());  // an empty array's data may be null
    return make_op(op, std::move(y), x, [x_shape](std::size_t, const Var<T>& g) { return reshape(g, as_long(x_shape)); });
}

}  // namespace

template <class T>
Var<T> repeat(const Var<T>& x, const std::vector<std::size_t>& repeats) {
    detail::check_defined("repeat", x);
    if (repeats.size() < x.dim()) {
        throw shape_error(fmt::format("repeat: {} repeats ({}) for {}: at least one per axis", repeats.size(),
                                      fmt::join(repeats, ", "), shape_string_of(x.value())));
    }
    return tiled("repeat", x, repeats);
}

template <class T>
Var<T> tile(const Var<T>& x, const std::vector<std::size_t>& reps) {
    detail::check_defined("tile", x);
    std::vector<std::size_t> padded = reps;
    if (padded.size() < x.dim()) padded.insert(padded.begin(), x.dim() - padded.size(), 1);
    return tiled("tile", x, padded);
}

template <class T>
Var<T> squeeze(const Var<T>& x) {
    detail::check_defined("squeeze", x);
    Shape shape;
    for (std::size_t side : x.shape()) {
        if (side != 1) shape.push_back(side);
    }
    return reshaped("squeeze", x, shape);
}

template <class T>
Var<T> squeeze(const Var<T>& x, long axis) {
    detail::check_defined("squeeze", x);
    Shape shape = x.shape();
    if (shape.empty()) {
        if (axis != 0 && axis != -1) {
            throw value_error(fmt::format("squeeze: axis {} is out of range for a 0-d value (0 or -1)", axis));
        }
        return x;
    }
    std::size_t ax = normalize_axis("squeeze", axis, shape.size());
    if (shape[ax] != 1) return x;
    shape.erase(shape.begin() + static_cast<long>(ax));
    return reshaped("squeeze", x, shape);
}

template <class T>
Var<T> unsqueeze(const Var<T>& x, long axis) {
    detail::check_defined("unsqueeze", x);
    Shape shape = x.shape();
    std::size_t ax = normalize_axis("unsqueeze", axis, shape.size() + 1);
    shape.insert(shape.begin() + static_cast<long>(ax), 1);
    return reshaped("unsqueeze", x, shape);
}

template <class T>
Var<T> permute(const Var<T>& x, const std::vector<long>& perm) {
    detail::check_defined("permute", x);
    const std::size_t rank = x.dim();
    std::vector<std::size_t> axes;
    std::vector<bool> seen(rank, false);
    bool is_permutation = perm.size() == rank;
    for (std::size_t i = 0; is_permutation && i < rank; ++i) {
        long p = perm[i] < 0 ? perm[i] + static_cast<long>(rank) : perm[i];
        is_permutation = p >= 0 && p < static_cast<long>(rank) && !seen[static_cast<std::size_t>(p)];
        if (is_permutation) {
            seen[static_cast<std::size_t>(p)] = true;
            axes.push_back(static_cast<std::size_t>(p));
        }
    }
    if (!is_permutation) {
        throw shape_error(fmt::format("permute: ({}) is not a permutation of the axes of {}", fmt::join(perm, ", "),
                                      shape_string_of(x.value())));
    }
    return transpose(x, axes);
}

template <class T>
std::vector<Var<T>> split(const Var<T>& x, const std::vector<std::size_t>& sizes, long axis) {
    detail::check_defined("split", x);
    Shape x_shape = x.shape();
    if (x_shape.empty()) throw shape_error("split: a 0-d value has no axis to split");
    std::size_t ax = normalize_axis("split", axis, x_shape.size());
    std::size_t total = 0;
    for (std::size_t s : sizes) total += s;
    if (total != x_shape[ax]) {
        throw shape_error(fmt::format("split: sizes ({}) add up to {}, not to the length {} of axis {} of {}",
                                      fmt::join(sizes, ", "), total, x_shape[ax], axis, shape_string(x_shape)));
    }
    std::vector<Var<T>> parts;
    parts.reserve(sizes.size());
    std::size_t begin = 0;
    for (std::size_t s : sizes) {
        parts.push_back(slice(x, static_cast<long>(ax), begin, begin + s));
        begin += s;
    }
    return parts;
}

template <class T>
std::vector<Var<T>> split(const Var<T>& x, std::size_t split_size, long axis) {
    detail::check_defined("split", x);
    Shape x_shape = x.shape();
    if (x_shape.empty()) throw shape_error("split: a 0-d value has no axis to split");
    std::size_t n = x_shape[normalize_axis("split", axis, x_shape.size())];
    if (split_size == 0 && n != 0) {
        throw value_error(fmt::format("split: split_size 0 for axis {} of length {} of {}", axis, n, shape_string(x_shape)));
    }
    std::vector<std::size_t> sizes;
    for (std::size_t begin = 0; begin < n; begin += split_size) sizes.push_back(std::min(split_size, n - begin));
    if (sizes.empty()) sizes.push_back(0);  // one empty part, like PyTorch
    return split(x, sizes, axis);
}

template <class T>
std::vector<Var<T>> chunk(const Var<T>& x, std::size_t chunks, long axis) {
    detail::check_defined("chunk", x);
    Shape x_shape = x.shape();
    if (x_shape.empty()) throw shape_error("chunk: a 0-d value has no axis to split");
    std::size_t n = x_shape[normalize_axis("chunk", axis, x_shape.size())];
    if (chunks == 0) throw value_error(fmt::format("chunk: 0 chunks of {}", shape_string(x_shape)));
    if (n == 0) return split(x, std::vector<std::size_t>(chunks, 0), axis);
    return split(x, (n + chunks - 1) / chunks, axis);
}

#define AD_INSTANTIATE(T)                                                                     \
    template Var<T> reshape(const Var<T>&, const std::vector<long>&);                         \
    template Var<T> transpose(const Var<T>&);                                                 \
    template Var<T> transpose(const Var<T>&, const std::vector<std::size_t>&);                \
    template Var<T> broadcast_to(const Var<T>&, const Shape&);                                \
    template Var<T> slice(const Var<T>&, long, std::size_t, std::size_t);                     \
    template Var<T> rows(const Var<T>&, std::size_t, std::size_t);                            \
    template Var<T> pad(const Var<T>&, long, std::size_t, std::size_t);                       \
    template Var<T> take_rows(const Var<T>&, const std::vector<std::size_t>&);                \
    template Var<T> scatter_add_rows(const Var<T>&, const std::vector<std::size_t>&, std::size_t); \
    template Var<T> concatenate(const std::vector<Var<T>>&, long);                            \
    template Var<T> stack(const std::vector<Var<T>>&, long);                                  \
    template Var<T> flip(const Var<T>&, const std::vector<long>&);                            \
    template Var<T> repeat(const Var<T>&, const std::vector<std::size_t>&);                   \
    template Var<T> tile(const Var<T>&, const std::vector<std::size_t>&);                     \
    template Var<T> squeeze(const Var<T>&);                                                   \
    template Var<T> squeeze(const Var<T>&, long);                                             \
    template Var<T> unsqueeze(const Var<T>&, long);                                           \
    template Var<T> permute(const Var<T>&, const std::vector<long>&);                         \
    template std::vector<Var<T>> split(const Var<T>&, std::size_t, long);                     \
    template std::vector<Var<T>> split(const Var<T>&, const std::vector<std::size_t>&, long); \
    template std::vector<Var<T>> chunk(const Var<T>&, std::size_t, long);

AD_INSTANTIATE(float)
AD_INSTANTIATE(double)

}  // namespace ad
