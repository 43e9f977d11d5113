// Reductions: each forward beside its VJP (g the cotangent of the result y).
//
//   op            y                          VJP
//   sum           sum over all / one axis    g broadcast back to x's shape
//   mean          sum / n                    g / n broadcast back
//   max           max over all / one axis    g broadcast back, times [x == y] / (number of ties)
//   sum_to_shape  x summed to `shape`        g broadcast back to x's shape

#include "autodiff/ops/reduce.hpp"

#include <fmt/format.h>
#include <xtensor/xmanipulation.hpp>
#include <xtensor/xreducer.hpp>
#include <xtensor/xsort.hpp>

#include "autodiff/ops/all.hpp"

namespace ad {
namespace {

/// x's shape with `axis` set to 1: where keepdims leaves a reduced value.
std::vector<long> keepdims_shape(const Shape& x, std::size_t axis) {
    std::vector<long> shape(x.begin(), x.end());
    shape[axis] = 1;
    return shape;
}

/// Undoes the dropping of a reduced axis, then broadcasts back to x's shape.
template <class T>
Var<T> unreduce(const Var<T>& g, const Shape& x_shape, std::size_t axis) {
    return broadcast_to(reshape(g, keepdims_shape(x_shape, axis)), x_shape);
}

/// What a keep_dims reduction of an empty value gives: xtensor's immediate
/// reducers read out of bounds there, so they must not see one. Zeros are the
/// sum of nothing; wherever another op reduces, the result has no elements.
template <class T>
Array<T> empty_reduction(const Shape& x_shape, const std::vector<std::size_t>& axes) {
    Shape kept = x_shape;
    for (std::size_t a : axes) kept[a] = 1;
    return xt::zeros<T>(kept);
}

template <class T>
Array<T> drop_axis_if(Array<T>&& reduced, const Shape& x_shape, std::size_t axis, bool keepdims) {
    if (keepdims) return std::move(reduced);
    Shape shape = x_shape;
    shape.erase(shape.begin() + static_cast<long>(axis));
    reduced.reshape(shape);
    return std::move(reduced);
}

/// x summed over one axis. The row-major value is (outer, n, inner) blocks
/// around the axis, so one pass in memory order with a vectorisable inner
/// loop does it; xtensor's reducer walks it strided and costs microseconds
/// even on a 4 x 3 array (every dense layer's bias gradient comes here).
template <class T, class S>
void sum_over_axis_into(const Array<T>& x, const S& x_shape, std::size_t axis, T* sums_out) {
    std::size_t outer = 1, inner = 1;
    for (std::size_t i = 0; i < axis; ++i) outer *= x_shape[i];
    for (std::size_t i = axis + 1; i < x_shape.size(); ++i) inner *= x_shape[i];
    const std::size_t n = x_shape[axis];
    const T* in = x.data();
    if (inner < 8) {
        // Narrow rows (a small layer's bias gradient): one running sum per
        // column, in the same order, instead of setting up a vector loop per row.
        for (std::size_t o = 0; o < outer; ++o) {
            for (std::size_t i = 0; i < inner; ++i) {
                T sum = T(0);
                for (std::size_t k = 0; k < n; ++k) sum += in[(o * n + k) * inner + i];
                sums_out[o * inner + i] = sum;
            }
        }
        return;
    }
    std::fill(sums_out, sums_out + outer * inner, T(0));
    for (std::size_t o = 0; o < outer; ++o) {
        T* sums = sums_out + o * inner;
        for (std::size_t k = 0; k < n; ++k) {
            const T* slice = in + (o * n + k) * inner;
            for (std::size_t i = 0; i < inner; ++i) sums[i] += slice[i];
        }
    }
}

/// x's shape without `axis` (or with it set to 1, keepdims), in xtensor's
/// own shape type: no heap allocation up to four dimensions.
template <class S>
xt::svector<std::size_t, 4> reduced_shape(const S& x_shape, std::size_t axis, bool keepdims) {
    xt::svector<std::size_t, 4> shape(x_shape.begin(), x_shape.end());
    if (keepdims) {
        shape[axis] = 1;
    } else {
        shape.erase(shape.begin() + static_cast<long>(axis));
    }
    return shape;
}

template <class T>
Array<T> sum_over_axis(const Array<T>& x, const Shape& x_shape, std::size_t axis, bool keepdims) {
    Array<T> y = Array<T>::from_shape(reduced_shape(x_shape, axis, keepdims));
    sum_over_axis_into(x, x_shape, axis, y.data());
    return y;
}

}  // namespace

template <class T>
Var<T> sum(const Var<T>& x) {
    detail::check_defined("sum", x);
    Shape x_shape = x.shape();
    return make_op("sum", Array<T>(xt::sum(x.value())()), x,
                   [x_shape](std::size_t, const Var<T>& g) { return broadcast_to(g, x_shape); });
}

template <class T>
Var<T> sum(const Var<T>& x, long axis, bool keepdims) {
    detail::check_defined("sum", x);
    const auto& x_shape = x.value().shape();
    std::size_t ax = normalize_axis("sum", axis, x_shape.size());
    // Straight into a (recycled) node, and x's shape kept compact: this is
    // every dense layer's bias gradient, on small layers mostly bookkeeping.
    Var<T> y = detail::make_uninitialized<T>(reduced_shape(x_shape, ax, keepdims));
    sum_over_axis_into(x.value(), x_shape, ax, y.mutable_value().data());
    if (!detail::recording()) return y;  // a VJP's sum, in a sweep without create_graph
    return detail::record_op("sum", std::move(y), std::array<const Var<T>*, 1>{&x},
                             [x_shape = detail::SavedShape(x_shape), ax](std::size_t, const Var<T>& g) {
                                 return unreduce(g, x_shape.to_shape(), ax);
                             });
}

namespace detail {

template <class T>
Var<T> column_sums(const Var<T>& x, Var<T> buffer) {
    const auto& x_shape = x.value().shape();
    const std::array<std::size_t, 1> shape{x_shape[1]};
    Var<T> y = fits(buffer, shape) ? std::move(buffer) : make_uninitialized<T>(shape);
    sum_over_axis_into(x.value(), x_shape, 0, y.mutable_value().data());
    return y;
}

}  // namespace detail

template <class T>
Var<T> mean(const Var<T>& x) {
    detail::check_defined("mean", x);
    if (x.size() == 0) throw value_error("mean: the value is empty (shape " + shape_string_of(x.value()) + ")");
    return sum(x) * (T(1) / T(x.size()));
}

template <class T>
Var<T> mean(const Var<T>& x, long axis, bool keepdims) {
    detail::check_defined("mean", x);
    std::size_t ax = normalize_axis("mean", axis, x.dim());
    std::size_t n = x.value().shape()[ax];
    if (n == 0) throw value_error("mean: axis " + std::to_string(axis) + " of shape " + shape_string_of(x.value()) + " is empty");
    return sum(x, axis, keepdims) * (T(1) / T(n));
}

template <class T>
Var<T> max(const Var<T>& x) {
    detail::check_defined("max", x);
    if (x.size() == 0) throw value_error("max: the value is empty (shape " + shape_string_of(x.value()) + ")");
    T m = xt::amax(x.value())();
    Array<T> ties = xt::cast<T>(xt::equal(x.value(), m));
    Array<T> weights = ties / xt::sum(ties)();
    return make_op("max", Array<T>(m), x, [weights = std::move(weights)](std::size_t, const Var<T>& g) {
        return g * constant(weights);
    });
}

template <class T>
Var<T> max(const Var<T>& x, long axis, bool keepdims) {
    detail::check_defined("max", x);
    Shape x_shape = x.shape();
    std::size_t ax = normalize_axis("max", axis, x_shape.size());
    if (x_shape[ax] == 0) throw value_error(fmt::format("max: axis {} of shape {} is empty", axis, shape_string(x_shape)));
    Array<T> m = x.size() == 0 ? empty_reduction<T>(x_shape, {ax})
                               : xt::amax(x.value(), {ax}, xt::keep_dims | xt::evaluation_strategy::immediate);
    Array<T> ties = xt::cast<T>(xt::equal(x.value(), m));
    Array<T> count = x.size() == 0 ? empty_reduction<T>(x_shape, {ax})
                                   : xt::sum(ties, {ax}, xt::keep_dims | xt::evaluation_strategy::immediate);
    Array<T> weights = ties / count;
    return make_op("max", drop_axis_if(std::move(m), x_shape, ax, keepdims), x,
                   [weights = std::move(weights), x_shape, ax](std::size_t, const Var<T>& g) {
                       return reshape(g, keepdims_shape(x_shape, ax)) * constant(weights);
                   });
}

template <class T>
Var<T> sum_to_shape(const Var<T>& x, const Shape& shape) {
    detail::check_defined("sum_to_shape", x);
    Shape x_shape = x.shape();
    if (x_shape == shape) return x;
    if (!broadcasts_to(shape, x_shape)) {
        throw shape_error(fmt::format("sum_to_shape: cannot sum {} to {}", shape_string(x_shape), shape_string(shape)));
    }
    std::size_t lead = x_shape.size() - shape.size();
    std::vector<std::size_t> axes;
    for (std::size_t i = 0; i < x_shape.size(); ++i) {
        if (i < lead || (shape[i - lead] == 1 && x_shape[i] != 1)) axes.push_back(i);
    }
    // x_shape != shape, so at least one axis is summed.
    Array<T> reduced = sum_over_axis(x.value(), x_shape, axes.front(), true);
    Shape reduced_shape = x_shape;
    reduced_shape[axes.front()] = 1;
    for (std::size_t i = 1; i < axes.size(); ++i) {
        reduced = sum_over_axis(reduced, reduced_shape, axes[i], true);
        reduced_shape[axes[i]] = 1;
    }
    reduced.reshape(shape);
    return make_op("sum_to_shape", std::move(reduced), x,
                   [x_shape](std::size_t, const Var<T>& g) { return broadcast_to(g, x_shape); });
}

#define AD_INSTANTIATE(T)                                          \
    template Var<T> sum(const Var<T>&);                            \
    template Var<T> sum(const Var<T>&, long, bool);                \
    template Var<T> mean(const Var<T>&);                           \
    template Var<T> mean(const Var<T>&, long, bool);               \
    template Var<T> max(const Var<T>&);                            \
    template Var<T> max(const Var<T>&, long, bool);                \
    template Var<T> sum_to_shape(const Var<T>&, const Shape&);     \
    template Var<T> detail::column_sums(const Var<T>&, Var<T>);

AD_INSTANTIATE(float)
AD_INSTANTIATE(double)

}  // namespace ad
