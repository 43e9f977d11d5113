// Reductions: each forward beside its VJP (g the cotangent of the result y).
//
//   op            y                          VJP
//   sum           sum over all / one axis    g broadcast back to x's shape
//   mean          sum / n                    g / n broadcast back
//   max           max over all / one axis    g broadcast back, times [x == y] / (number of ties);
//                 NaN if the slice has one   a NaN result: over all axes its NaNs share g (torch.max()),
//                                            along an axis the slice's gradient is NaN (torch.amax)
//   min           min, as max                as max
//   prod          product                    g prod_{j != i} x_j (exclusive products: exact with zeros;
//                                            recorded: g y / x, a tape_error where x has a zero)
//   logsumexp     m + log sum e^(x - m)      g e^(x - y) = g softmax(x); an all -inf slice gives -inf
//   var           sum (x - mean)^2 / (n - c) 2 g (x - mean) / (n - c) (engine ops; n <= c divides by 0)
//   std           sqrt(var)                  g / (2 y) times var's VJP; 0 where y = 0 (PyTorch)
//   norm          ord 1: sum |x|             g sign(x)
//                 ord 2: sqrt sum x^2        g x / y; 0 where y = 0 (PyTorch)
//                 ord inf: max |x|           g sign(x) [|x| = y] / (number of ties); a NaN result: its NaNs
//                                            share g, times sign(NaN) = 0 (torch.linalg.vector_norm)
//   cumsum        running sums along axis    running sums of g from the end (flip, cumsum, flip)
//   argmax/argmin indices                    no gradient; the first at ties, a NaN counts as the extreme
//   sum_to_shape  x summed to `shape`        g broadcast back to x's shape

#include "autodiff/ops/reduce.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include <fmt/format.h>
#include <xtensor/xmanipulation.hpp>
#include <xtensor/xreducer.hpp>

#include "autodiff/memory/grad_buffers.hpp"
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
    // Of nothing: 0 / 0 = NaN, as torch.mean's.
    return sum(x) * (T(1) / T(x.size()));
}

template <class T>
Var<T> mean(const Var<T>& x, long axis, bool keepdims) {
    detail::check_defined("mean", x);
    std::size_t ax = normalize_axis("mean", axis, x.dim());
    std::size_t n = x.value().shape()[ax];
    return sum(x, axis, keepdims) * (T(1) / T(n));
}

namespace {

/// How a reduction over one axis sees x's row-major storage (all axes: one
/// block of x.size() slabs of one number).
AxisBlocks blocks_of(const Shape& shape, std::optional<std::size_t> axis) {
    if (axis) return axis_blocks(shape, *axis);
    AxisBlocks b;
    b.length = element_count(shape);
    return b;
}

/// The shape of a reduction of `shape` over `axis` (all axes: 0-d).
Shape reduced_of(const Shape& shape, std::optional<std::size_t> axis, bool keepdims) {
    if (!axis) return {};
    Shape out = shape;
    if (keepdims) {
        out[*axis] = 1;
    } else {
        out.erase(out.begin() + static_cast<long>(*axis));
    }
    return out;
}

/// The axis of a reduction, normalised (nullopt: all axes).
std::optional<std::size_t> optional_axis(const char* op, const Shape& shape, std::optional<long> axis) {
    if (!axis) return std::nullopt;
    return normalize_axis(op, *axis, shape.size());
}

/// The axis of a reduction, normalised, and a check that every slice it
/// reduces has an element (`what` of nothing is undefined).
std::optional<std::size_t> reduction_axis(const char* op, const Shape& shape, std::optional<long> axis) {
    if (!axis) {
        if (element_count(shape) == 0) throw value_error(fmt::format("{}: the value is empty (shape {})", op, shape_string(shape)));
        return std::nullopt;
    }
    std::size_t ax = normalize_axis(op, *axis, shape.size());
    if (shape[ax] == 0) throw value_error(fmt::format("{}: axis {} of shape {} is empty", op, *axis, shape_string(shape)));
    return ax;
}

/// g of a reduction over `axis` (or all axes) broadcast back to x's shape.
template <class T>
Var<T> spread(const Var<T>& g, const Shape& x_shape, std::optional<std::size_t> axis) {
    return axis ? unreduce(g, x_shape, *axis) : broadcast_to(g, x_shape);
}

/// Where the cotangent of a slice whose extreme is NaN goes: shared evenly by
/// the slice's NaNs (torch.max() over all axes, and the inf-norm's
/// magnitudes), or NaN to every element of the slice (torch.amax along an
/// axis, whose count of elements equal to NaN is 0).
enum class NanSlice { shared, nan_gradient };

/// max (larger) or min over all axes or one: the value, and the share of the
/// cotangent each element of x gets (ties share evenly; a NaN propagates, its
/// gradient as `nan_slice` says).
template <class T>
Var<T> extreme(const char* op, const Var<T>& x, std::optional<long> axis_arg, bool keepdims, bool larger, NanSlice nan_slice) {
    detail::check_defined(op, x);
    const Shape x_shape = x.shape();
    const std::optional<std::size_t> axis = reduction_axis(op, x_shape, axis_arg);
    const AxisBlocks b = blocks_of(x_shape, axis);
    const T* in = x.value().data();
    Array<T> y = Array<T>::from_shape(reduced_of(x_shape, axis, keepdims));
    Array<T> weights = xt::zeros<T>(x_shape);
    for (std::size_t o = 0; o < b.outer; ++o) {
        for (std::size_t i = 0; i < b.inner; ++i) {
            std::size_t best = b.at(o, 0, i);
            for (std::size_t k = 0; k < b.length && !std::isnan(in[best]); ++k) {
                const T v = in[b.at(o, k, i)];
                if (std::isnan(v) || (larger ? v > in[best] : v < in[best])) best = b.at(o, k, i);
            }
            const T m = in[best];
            y.data()[o * b.inner + i] = m;
            if (std::isnan(m) && nan_slice == NanSlice::nan_gradient) {
                for (std::size_t k = 0; k < b.length; ++k) weights.data()[b.at(o, k, i)] = m;
                continue;
            }
            // The extremes: the elements equal to m, or the NaNs when m is one.
            auto is_extreme = [m](T v) { return std::isnan(m) ? std::isnan(v) : v == m; };
            std::size_t ties = 0;
            for (std::size_t k = 0; k < b.length; ++k) ties += is_extreme(in[b.at(o, k, i)]);
            for (std::size_t k = 0; k < b.length; ++k) {
                if (is_extreme(in[b.at(o, k, i)])) weights.data()[b.at(o, k, i)] = T(1) / T(ties);
            }
        }
    }
    return make_op(op, std::move(y), x, [weights = std::move(weights), x_shape, axis](std::size_t, const Var<T>& g) {
        return spread(g, x_shape, axis) * constant(weights);
    });
}

/// The products of each slice's elements other than element k, for every k
/// (prefix times suffix products: no division, so zeros are exact).
template <class T>
Array<T> products_of_others(const Array<T>& x, const AxisBlocks& b) {
    Array<T> others = Array<T>::from_shape(x.shape());
    const T* in = x.data();
    T* out = others.data();
    for (std::size_t o = 0; o < b.outer; ++o) {
        for (std::size_t i = 0; i < b.inner; ++i) {
            T prefix = T(1);
            for (std::size_t k = 0; k < b.length; ++k) {
                out[b.at(o, k, i)] = prefix;
                prefix *= in[b.at(o, k, i)];
            }
            T suffix = T(1);
            for (std::size_t k = b.length; k-- > 0;) {
                out[b.at(o, k, i)] *= suffix;
                suffix *= in[b.at(o, k, i)];
            }
        }
    }
    return others;
}

template <class T>
Var<T> prod_impl(const Var<T>& x, std::optional<long> axis_arg, bool keepdims) {
    detail::check_defined("prod", x);
    const Shape x_shape = x.shape();
    // The product of nothing is 1 (torch.prod of an empty value).
    const std::optional<std::size_t> axis = optional_axis("prod", x_shape, axis_arg);
    const AxisBlocks b = blocks_of(x_shape, axis);
    Array<T> y = Array<T>::from_shape(reduced_of(x_shape, axis, keepdims));
    const T* in = x.value().data();
    for (std::size_t o = 0; o < b.outer; ++o) {
        for (std::size_t i = 0; i < b.inner; ++i) {
            T p = T(1);
            for (std::size_t k = 0; k < b.length; ++k) p *= in[b.at(o, k, i)];
            y.data()[o * b.inner + i] = p;
        }
    }
    return make_op("prod", std::move(y), x, [x, x_shape, axis, b](std::size_t, const Var<T>& g, const Var<T>& y) {
        if (!detail::recording()) return spread(g, x_shape, axis) * constant(products_of_others(x.value(), b));
        // Recorded (for a second derivative): y / x, which engine ops differentiate
        // again. At a zero of x that formula fails, and the exclusive products as a
        // constant would give a second derivative of zero without a word: refuse.
        // A loop, not xt::any: xtensor's end pointer of an empty array is an
        // offset from a null pointer, undefined behaviour.
        const T* xs = x.value().data();
        if (std::any_of(xs, xs + x.size(), [](T v) { return v == T(0); })) {
            throw tape_error(fmt::format("prod: a second derivative through a product of {} with zeros in it is not supported",
                                         shape_string(x_shape)));
        }
        return spread(g, x_shape, axis) * spread(y, x_shape, axis) / x;
    });
}

template <class T>
Var<T> logsumexp_impl(const Var<T>& x, std::optional<long> axis_arg, bool keepdims) {
    detail::check_defined("logsumexp", x);
    const Shape x_shape = x.shape();
    // An empty slice's sum of exponentials is 0: its logsumexp is -inf (as torch's).
    const std::optional<std::size_t> axis = optional_axis("logsumexp", x_shape, axis_arg);
    const AxisBlocks b = blocks_of(x_shape, axis);
    Array<T> y = Array<T>::from_shape(reduced_of(x_shape, axis, keepdims));
    const T* in = x.value().data();
    for (std::size_t o = 0; o < b.outer; ++o) {
        for (std::size_t i = 0; i < b.inner; ++i) {
            T m = -std::numeric_limits<T>::infinity();
            for (std::size_t k = 0; k < b.length; ++k) m = std::max(m, in[b.at(o, k, i)]);
            // An infinite maximum is not subtracted: -inf - -inf would be NaN.
            const T shift = std::isfinite(m) ? m : T(0);
            T sum = T(0);
            for (std::size_t k = 0; k < b.length; ++k) sum += std::exp(in[b.at(o, k, i)] - shift);
            y.data()[o * b.inner + i] = shift + std::log(sum);
        }
    }
    return make_op("logsumexp", std::move(y), x, [x, x_shape, axis](std::size_t, const Var<T>& g, const Var<T>& y) {
        return spread(g, x_shape, axis) * exp(x - spread(y, x_shape, axis));
    });
}

template <class T>
Var<T> var_impl(const char* op, const Var<T>& x, std::optional<long> axis_arg, std::size_t correction, bool keepdims) {
    detail::check_defined(op, x);
    const Shape x_shape = x.shape();
    const std::optional<std::size_t> axis = optional_axis(op, x_shape, axis_arg);
    const AxisBlocks b = blocks_of(x_shape, axis);
    const std::size_t n = b.length;
    // torch's divisor max(0, n - correction): too few values give 0 / 0 = NaN
    // (or inf where the squares do not sum to 0), as mean of nothing does.
    const T scale = T(1) / T(n > correction ? n - correction : 0);
    Array<T> y = Array<T>::from_shape(reduced_of(x_shape, axis, keepdims));
    const T* in = x.value().data();
    for (std::size_t o = 0; o < b.outer; ++o) {
        for (std::size_t i = 0; i < b.inner; ++i) {
            T total = T(0);
            for (std::size_t k = 0; k < n; ++k) total += in[b.at(o, k, i)];
            const T average = total / T(n);
            T squares = T(0);
            for (std::size_t k = 0; k < n; ++k) squares += (in[b.at(o, k, i)] - average) * (in[b.at(o, k, i)] - average);
            y.data()[o * b.inner + i] = squares * scale;
        }
    }
    // 2 g (x - mean) / (n - correction), without the mean's own term (it sums
    // to zero): where x holds an infinity only that element's gradient is NaN,
    // as torch's.
    return make_op(op, std::move(y), x, [x, x_shape, axis, scale](std::size_t, const Var<T>& g) {
        Var<T> centered = axis ? x - mean(x, static_cast<long>(*axis), true) : x - mean(x);
        return spread(g, x_shape, axis) * centered * (T(2) * scale);
    });
}

/// sqrt(v), recorded as `op`, whose gradient is zero where the root is: the
/// subgradient PyTorch gives std and the 2-norm at zero.
template <class T>
Var<T> root_with_zero_slope_at_zero(const char* op, const Var<T>& v) {
    return make_op(op, Array<T>(xt::sqrt(v.value())), v, [](std::size_t, const Var<T>& g, const Var<T>& y) {
        const Array<T> at_zero = xt::cast<T>(xt::equal(y.value(), T(0)));
        return g * T(0.5) * constant(Array<T>(T(1) - at_zero)) / (y + constant(at_zero));
    });
}

template <class T>
Var<T> norm_impl(const Var<T>& x, double ord, std::optional<long> axis, bool keepdims) {
    detail::check_defined("norm", x);
    if (ord == 1) return axis ? sum(abs(x), *axis, keepdims) : sum(abs(x));
    if (ord == 2) {
        Var<T> squares = axis ? sum(square(x), *axis, keepdims) : sum(square(x));
        return root_with_zero_slope_at_zero("norm", squares);
    }
    // torch.linalg.vector_norm's: the tied magnitudes, or the NaNs, share g, times sign(x) (0 at NaN).
    if (std::isinf(ord) && ord > 0) return extreme("norm", abs(x), axis, keepdims, true, NanSlice::shared);
    throw value_error(fmt::format("norm: order {} is not 1, 2 or infinity (value of shape {})", ord, shape_string_of(x.value())));
}

template <class T>
IndexArray arg_extreme(const char* op, const Var<T>& x, std::optional<long> axis_arg, bool keepdims, bool larger) {
    detail::check_defined(op, x);
    const Shape x_shape = x.shape();
    const std::optional<std::size_t> axis = reduction_axis(op, x_shape, axis_arg);
    const AxisBlocks b = blocks_of(x_shape, axis);
    IndexArray indices = IndexArray::from_shape(reduced_of(x_shape, axis, keepdims));
    const T* in = x.value().data();
    for (std::size_t o = 0; o < b.outer; ++o) {
        for (std::size_t i = 0; i < b.inner; ++i) {
            std::size_t best = 0;
            for (std::size_t k = 1; k < b.length && !std::isnan(in[b.at(o, best, i)]); ++k) {
                const T v = in[b.at(o, k, i)], m = in[b.at(o, best, i)];
                if (std::isnan(v) || (larger ? v > m : v < m)) best = k;
            }
            indices.data()[o * b.inner + i] = static_cast<std::int64_t>(best);
        }
    }
    return indices;
}

}  // namespace

template <class T>
Var<T> max(const Var<T>& x) {
    return extreme("max", x, std::nullopt, false, true, NanSlice::shared);
}

template <class T>
Var<T> max(const Var<T>& x, long axis, bool keepdims) {
    return extreme("max", x, axis, keepdims, true, NanSlice::nan_gradient);
}

template <class T>
Var<T> min(const Var<T>& x) {
    return extreme("min", x, std::nullopt, false, false, NanSlice::shared);
}

template <class T>
Var<T> min(const Var<T>& x, long axis, bool keepdims) {
    return extreme("min", x, axis, keepdims, false, NanSlice::nan_gradient);
}

template <class T>
Var<T> prod(const Var<T>& x) {
    return prod_impl(x, std::nullopt, false);
}

template <class T>
Var<T> prod(const Var<T>& x, long axis, bool keepdims) {
    return prod_impl(x, axis, keepdims);
}

template <class T>
Var<T> logsumexp(const Var<T>& x) {
    return logsumexp_impl(x, std::nullopt, false);
}

template <class T>
Var<T> logsumexp(const Var<T>& x, long axis, bool keepdims) {
    return logsumexp_impl(x, axis, keepdims);
}

template <class T>
Var<T> var(const Var<T>& x, std::optional<long> axis, std::size_t correction, bool keepdims) {
    return var_impl("var", x, axis, correction, keepdims);
}

template <class T>
Var<T> std(const Var<T>& x, std::optional<long> axis, std::size_t correction, bool keepdims) {
    return root_with_zero_slope_at_zero("std", var_impl("std", x, axis, correction, keepdims));
}

template <class T>
Var<T> norm(const Var<T>& x, double ord) {
    return norm_impl(x, ord, std::nullopt, false);
}

template <class T>
Var<T> norm(const Var<T>& x, double ord, long axis, bool keepdims) {
    return norm_impl(x, ord, axis, keepdims);
}

template <class T>
Var<T> cumsum(const Var<T>& x, long axis) {
    detail::check_defined("cumsum", x);
    const Shape x_shape = x.shape();
    const std::size_t ax = normalize_axis("cumsum", axis, x_shape.size());
    const AxisBlocks b = blocks_of(x_shape, ax);
    Array<T> y = Array<T>::from_shape(x_shape);
    const T* in = x.value().data();
    for (std::size_t o = 0; o < b.outer; ++o) {
        for (std::size_t i = 0; i < b.inner; ++i) {
            T running = T(0);
            for (std::size_t k = 0; k < b.length; ++k) y.data()[b.at(o, k, i)] = running += in[b.at(o, k, i)];
        }
    }
    return make_op("cumsum", std::move(y), x, [ax](std::size_t, const Var<T>& g) {
        const std::vector<long> axes{static_cast<long>(ax)};
        return flip(cumsum(flip(g, axes), static_cast<long>(ax)), axes);
    });
}

template <class T>
IndexArray argmax(const Var<T>& x) {
    return arg_extreme("argmax", x, std::nullopt, false, true);
}

template <class T>
IndexArray argmax(const Var<T>& x, long axis, bool keepdims) {
    return arg_extreme("argmax", x, axis, keepdims, true);
}

template <class T>
IndexArray argmin(const Var<T>& x) {
    return arg_extreme("argmin", x, std::nullopt, false, false);
}

template <class T>
IndexArray argmin(const Var<T>& x, long axis, bool keepdims) {
    return arg_extreme("argmin", x, axis, keepdims, false);
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
    template Var<T> min(const Var<T>&);                            \
    template Var<T> min(const Var<T>&, long, bool);                \
    template Var<T> prod(const Var<T>&);                           \
    template Var<T> prod(const Var<T>&, long, bool);               \
    template Var<T> logsumexp(const Var<T>&);                      \
    template Var<T> logsumexp(const Var<T>&, long, bool);          \
    template Var<T> var(const Var<T>&, std::optional<long>, std::size_t, bool); \
    template Var<T> std(const Var<T>&, std::optional<long>, std::size_t, bool); \
    template Var<T> norm(const Var<T>&, double);                   \
    template Var<T> norm(const Var<T>&, double, long, bool);       \
    template Var<T> cumsum(const Var<T>&, long);                   \
    template IndexArray argmax(const Var<T>&);                     \
    template IndexArray argmax(const Var<T>&, long, bool);         \
    template IndexArray argmin(const Var<T>&);                     \
    template IndexArray argmin(const Var<T>&, long, bool);         \
    template Var<T> sum_to_shape(const Var<T>&, const Shape&);     \
    template Var<T> detail::column_sums(const Var<T>&, Var<T>);

AD_INSTANTIATE(float)
AD_INSTANTIATE(double)

}  // namespace ad
