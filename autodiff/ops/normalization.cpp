// Normalisation and regularisation: each forward beside its VJP (g the
// cotangent of the result y).
//
//   op          y                                        VJP
//   layer_norm  x_hat = (x - mean) rstd over the         x: rstd (g - mean(g) - x_hat mean(g x_hat)) per row
//               trailing dims, rstd = 1/sqrt(var + eps)     (written with engine ops when recorded, so it
//               (then * weight + bias: mul, add)            differentiates again); weight, bias: mul's, add's
//   batch_norm  (x - mean_c) rstd_c weight_c + bias_c    composed of permute, reshape, mean, rsqrt, mul, add
//               (eval: the running statistics)
//   dropout     x mask / (1 - p)                         g mask / (1 - p)

#include "autodiff/ops/normalization.hpp"

#include <cmath>

#include <fmt/format.h>

#include "autodiff/kernels.hpp"
#include "autodiff/ops/all.hpp"

namespace ad {
namespace {

std::vector<long> as_long(const Shape& shape) { return std::vector<long>(shape.begin(), shape.end()); }

/// x_hat of x viewed as (rows, width): each row normalised to mean 0 and
/// variance 1 (biased), the fused core of layer_norm.
template <class T>
Var<T> normalize_rows(const Var<T>& x, std::size_t rows, std::size_t width, T eps) {
    Array<T> rstd = Array<T>::from_shape({rows});
    Var<T> y = detail::make_uninitialized<T>(x.value().shape());
    const T* in = x.value().data();
    T* out = y.mutable_value().data();
    T* rstd_of_row = rstd.data();
    for (std::size_t r = 0; r < rows; ++r) {
        const T* row = in + r * width;
        T* out_row = out + r * width;
        const T mean = kernels::interleaved_sum<T>(width, [row](std::size_t k) { return row[k]; }) / T(width);
        const T var = kernels::interleaved_sum<T>(width, [row, mean](std::size_t k) { return (row[k] - mean) * (row[k] - mean); });
        const T s = T(1) / std::sqrt(var / T(width) + eps);
        for (std::size_t k = 0; k < width; ++k) out_row[k] = (row[k] - mean) * s;
        rstd_of_row[r] = s;
    }
    return make_op("layer_norm", std::move(y), x,
                   [x, rstd = std::move(rstd), rows, width, eps](std::size_t, const Var<T>& g, const Var<T>& y) {
                       if (!detail::recording()) {
                           // One pass per row over raw storage: the first-order backward.
                           Var<T> out = detail::make_uninitialized<T>(x.value().shape());
                           const T* gv = g.value().data();
                           const T* yv = y.value().data();
                           T* o = out.mutable_value().data();
                           for (std::size_t r = 0; r < rows; ++r) {
                               const T* gr = gv + r * width;
                               const T* yr = yv + r * width;
                               const T mean_g = kernels::interleaved_sum<T>(width, [gr](std::size_t k) { return gr[k]; }) / T(width);
                               const T mean_gy =
                                   kernels::interleaved_sum<T>(width, [gr, yr](std::size_t k) { return gr[k] * yr[k]; }) / T(width);
                               const T s = rstd(r);
                               T* orow = o + r * width;
                               for (std::size_t k = 0; k < width; ++k) orow[k] = s * (gr[k] - mean_g - yr[k] * mean_gy);
                           }
                           return out;
                       }
                       // Recorded (create_graph): the same formula in engine ops, rstd from x.
                       const std::vector<long> matrix{static_cast<long>(rows), static_cast<long>(width)};
                       Var<T> g2 = reshape(g, matrix), y2 = reshape(y, matrix);
                       Var<T> s = rsqrt(var(reshape(x, matrix), 1, 0, true) + eps);
                       Var<T> out = s * (g2 - mean(g2, 1, true) - y2 * mean(g2 * y2, 1, true));
                       return reshape(out, as_long(x.shape()));
                   });
}

}  // namespace

template <class T>
Var<T> layer_norm(const Var<T>& x, const Shape& normalized_shape, const Var<T>& weight, const Var<T>& bias,
                  same_t<T> eps) {
    detail::check_defined("layer_norm", x);
    const Shape x_shape = x.shape();
    const std::size_t k = normalized_shape.size();
    bool trailing = k >= 1 && k <= x_shape.size();
    for (std::size_t i = 0; trailing && i < k; ++i) trailing = x_shape[x_shape.size() - k + i] == normalized_shape[i];
    if (!trailing) {
        throw shape_error(fmt::format("layer_norm: normalized_shape {} is not the trailing dimensions of the input {}",
                                      shape_string(normalized_shape), shape_string(x_shape)));
    }
    for (const Var<T>* p : {&weight, &bias}) {
        if (p->defined() && p->shape() != normalized_shape) {
            throw shape_error(fmt::format("layer_norm: {} {} does not have normalized_shape {}",
                                          p == &weight ? "weight" : "bias", shape_string_of(p->value()),
                                          shape_string(normalized_shape)));
        }
    }
    const std::size_t width = element_count(normalized_shape);
    if (width == 0) throw value_error(fmt::format("layer_norm: normalized_shape {} has no elements", shape_string(normalized_shape)));
    if (!(eps >= 0)) throw value_error(fmt::format("layer_norm: eps must not be negative, got {}", eps));
    Var<T> y = normalize_rows(x, x.size() / width, width, T(eps));
    if (weight.defined()) y = y * weight;
    if (bias.defined()) y = y + bias;
    return y;
}

template <class T>
Var<T> batch_norm(const Var<T>& x, const Var<T>& weight, const Var<T>& bias, RunningStats<T>* running, bool training,
                  same_t<T> momentum, same_t<T> eps) {
    detail::check_defined("batch_norm", x);
    const Shape x_shape = x.shape();
    if (x_shape.size() < 2) {
        throw shape_error(fmt::format("batch_norm: the input must be (N, C) or (N, C, ...), got {}", shape_string(x_shape)));
    }
    const std::size_t channels = x_shape[1];
    const Shape per_channel{channels};
    for (const Var<T>* p : {&weight, &bias}) {
        if (p->defined() && p->shape() != per_channel) {
            throw shape_error(fmt::format("batch_norm: {} {} does not match the {} channels of the input {}",
                                          p == &weight ? "weight" : "bias", shape_string_of(p->value()), channels,
                                          shape_string(x_shape)));
        }
    }
    if (running && (shape_of(running->mean) != per_channel || shape_of(running->var) != per_channel)) {
        throw shape_error(fmt::format("batch_norm: running mean {} and variance {} do not match the {} channels of {}",
                                      shape_string_of(running->mean), shape_string_of(running->var), channels,
                                      shape_string(x_shape)));
    }
    if (!training && !running) throw value_error("batch_norm: eval mode needs the running statistics");
    const std::size_t count = channels == 0 ? 0 : x.size() / channels;  // values per channel
    if (training && count <= 1) {
        throw value_error(fmt::format("batch_norm: expected more than 1 value per channel when training, got input {}",
                                      shape_string(x_shape)));
    }

    // Channels last, as rows of a (count, C) matrix: statistics are column means.
    std::vector<long> to_last{0};
    for (std::size_t d = 2; d < x_shape.size(); ++d) to_last.push_back(static_cast<long>(d));
    to_last.push_back(1);
    Var<T> channels_last = x_shape.size() == 2 ? x : permute(x, to_last);
    const Shape last_shape = channels_last.shape();
    Var<T> rows = reshape(channels_last, {static_cast<long>(count), static_cast<long>(channels)});

    Var<T> normalized;
    if (training) {
        Var<T> centered = rows - mean(rows, 0, true);
        Var<T> biased_var = mean(square(centered), 0, true);
        normalized = centered * rsqrt(biased_var + T(eps));
        if (running) {
            const T m = momentum;
            const Array<T> batch_mean = xt::reshape_view(mean(rows, 0).value(), {channels});
            const Array<T> unbiased = xt::reshape_view(biased_var.value(), {channels}) * (T(count) / T(count - 1));
            running->mean = (T(1) - m) * running->mean + m * batch_mean;
            running->var = (T(1) - m) * running->var + m * unbiased;
        }
    } else {
        normalized = (rows - constant(running->mean)) * constant(Array<T>(T(1) / xt::sqrt(running->var + T(eps))));
    }
    if (weight.defined()) normalized = normalized * weight;
    if (bias.defined()) normalized = normalized + bias;
    Var<T> y = reshape(normalized, std::vector<long>(last_shape.begin(), last_shape.end()));
    if (x_shape.size() == 2) return y;
    std::vector<long> back(x_shape.size());
    for (std::size_t i = 0; i < to_last.size(); ++i) back[static_cast<std::size_t>(to_last[i])] = static_cast<long>(i);
    return permute(y, back);
}

template <class T>
Var<T> dropout(const Var<T>& x, double p, bool training, std::mt19937_64& generator) {
    detail::check_defined("dropout", x);
    if (!(p >= 0 && p <= 1)) {
        throw value_error(fmt::format("dropout: p must lie in [0, 1], got {} (input {})", p, shape_string_of(x.value())));
    }
    if (!training || p == 0) return x;
    const T scale = p == 1 ? T(0) : T(1 / (1 - p));
    Array<T> mask = Array<T>::from_shape(x.value().shape());
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    for (auto& m : mask) m = uniform(generator) < p ? T(0) : scale;
    Array<T> y = x.value() * mask;
    return make_op("dropout", std::move(y), x,
                   [mask = std::move(mask)](std::size_t, const Var<T>& g) { return g * constant(mask); });
}

#define AD_INSTANTIATE(T)                                                                                       \
    template Var<T> layer_norm(const Var<T>&, const Shape&, const Var<T>&, const Var<T>&, same_t<T>);           \
    template Var<T> batch_norm(const Var<T>&, const Var<T>&, const Var<T>&, RunningStats<T>*, bool, same_t<T>, \
                               same_t<T>);                                                                      \
    template Var<T> dropout(const Var<T>&, double, bool, std::mt19937_64&);

AD_INSTANTIATE(float)
AD_INSTANTIATE(double)

}  // namespace ad
