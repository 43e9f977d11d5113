// Activations: each forward beside its VJP (g the cotangent of the result y).
//
//   op           y                                  VJP
//   leaky_relu   x > 0 ? x : a x                    g (x > 0 ? 1 : a)
//   elu          x > 0 ? x : a (e^x - 1)            g (x > 0 ? 1 : a e^x)
//   gelu         x Phi(x)                           g (Phi(x) + x phi(x))
//   gelu tanh    x/2 (1 + tanh u),                  g (1/2 (1 + t) + x/2 (1 - t^2) u'), t = tanh u,
//                u = c (x + 0.044715 x^3)           u' = c (1 + 3 0.044715 x^2), c = sqrt(2/pi)
//   silu         x s, s = sigmoid(x)                g s (1 + x (1 - s))
//   softsign     x / (1 + |x|)                      g / (1 + |x|)^2
//   log_sigmoid  -softplus(-x)                      g sigmoid(-x)
//   mish         x tanh(softplus(x))                g (t + x (1 - t^2) sigmoid(x)), t = tanh(softplus(x))
//   hardtanh     min(max(x, lo), hi)                g [lo < x < hi]
//
// Kinks follow PyTorch: leaky_relu and elu take the x <= 0 branch at 0,
// hardtanh's gradient is zero at its bounds. So does NaN: it takes elu's slope
// 1 and leaky_relu's a, and hardtanh passes g there.

#include "autodiff/ops/activation.hpp"

#include <cmath>

#include <fmt/format.h>

#include "autodiff/ops/all.hpp"

namespace ad {
namespace {

constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kSqrt2OverPi = 0.79788456080286535588;
constexpr double kGeluCubic = 0.044715;

/// [predicate(x)] as a constant, for VJPs that are piecewise.
template <class T, class P>
Var<T> indicator(const Var<T>& x, P predicate) {
    Array<T> m = Array<T>::from_shape(x.value().shape());
    for (std::size_t i = 0; i < m.size(); ++i) m.data()[i] = T(predicate(x.value().data()[i]));
    return constant(std::move(m));
}

template <class T>
T softplus_of(T v) {
    return std::max(v, T(0)) + std::log1p(std::exp(-std::abs(v)));
}

}  // namespace

template <class T>
Var<T> leaky_relu(const Var<T>& x, same_t<T> negative_slope) {
    detail::check_defined("leaky_relu", x);
    const T a = negative_slope;
    return make_op("leaky_relu", detail::mapped(x, [a](T v) { return v > 0 ? v : a * v; }), x,
                   [x, a](std::size_t, const Var<T>& g) {
                       return g * indicator(x, [a](T v) { return v > 0 ? T(1) : a; });
                   });
}

template <class T>
Var<T> elu(const Var<T>& x, same_t<T> alpha) {
    detail::check_defined("elu", x);
    const T a = alpha;
    return make_op("elu", detail::mapped(x, [a](T v) { return v > 0 ? v : a * std::expm1(v); }), x,
                   [x, a](std::size_t, const Var<T>& g) {
                       // The negative branch's slope a e^x through exp, so that it differentiates again;
                       // picked by where, as e^inf times 0 would be NaN. NaN takes the positive
                       // branch's slope 1, as torch's (it tests x <= 0).
                       Mask negative = Mask::from_shape(x.value().shape());
                       for (std::size_t i = 0; i < negative.size(); ++i) negative.data()[i] = x.value().data()[i] <= 0;
                       return g * (indicator(x, [](T v) { return !(v <= 0); }) +
                                   ad::where(negative, exp(x) * a, constant(Array<T>(T(0)))));
                   });
}

template <class T>
Var<T> gelu(const Var<T>& x, GeluApproximation approximate) {
    detail::check_defined("gelu", x);
    if (approximate == GeluApproximation::tanh) {
        auto forward = [](T v) {
            return T(0.5) * v * (T(1) + std::tanh(T(kSqrt2OverPi) * (v + T(kGeluCubic) * v * v * v)));
        };
        return make_op("gelu", detail::mapped(x, forward), x, [x](std::size_t, const Var<T>& g) {
            Var<T> x2 = square(x);
            Var<T> t = tanh((x + x * x2 * T(kGeluCubic)) * T(kSqrt2OverPi));
            Var<T> du = (x2 * T(3 * kGeluCubic) + T(1)) * T(kSqrt2OverPi);
            return g * ((t + T(1)) * T(0.5) + x * (T(1) - square(t)) * du * T(0.5));
        });
    }
    auto forward = [](T v) { return v * T(0.5) * (T(1) + std::erf(v * T(kInvSqrt2))); };
    return make_op("gelu", detail::mapped(x, forward), x, [x](std::size_t, const Var<T>& g) {
        Var<T> cdf = (erf(x * T(kInvSqrt2)) + T(1)) * T(0.5);
        Var<T> pdf = exp(square(x) * T(-0.5)) * T(kInvSqrt2Pi);
        return g * (cdf + x * pdf);
    });
}

template <class T>
Var<T> silu(const Var<T>& x) {
    detail::check_defined("silu", x);
    return make_op("silu", detail::mapped(x, [](T v) { return v / (T(1) + std::exp(-v)); }), x,
                   [x](std::size_t, const Var<T>& g) {
                       Var<T> s = sigmoid(x);
                       return g * s * (x * (T(1) - s) + T(1));
                   });
}

template <class T>
Var<T> softsign(const Var<T>& x) {
    detail::check_defined("softsign", x);
    return make_op("softsign", detail::mapped(x, [](T v) { return v / (T(1) + std::abs(v)); }), x,
                   [x](std::size_t, const Var<T>& g) { return g / square(abs(x) + T(1)); });
}

template <class T>
Var<T> log_sigmoid(const Var<T>& x) {
    detail::check_defined("log_sigmoid", x);
    return make_op("log_sigmoid", detail::mapped(x, [](T v) { return -softplus_of(-v); }), x,
                   [x](std::size_t, const Var<T>& g) { return g * sigmoid(-x); });
}

template <class T>
Var<T> mish(const Var<T>& x) {
    detail::check_defined("mish", x);
    return make_op("mish", detail::mapped(x, [](T v) { return v * std::tanh(softplus_of(v)); }), x,
                   [x](std::size_t, const Var<T>& g) {
                       Var<T> t = tanh(softplus(x));
                       return g * (t + x * (T(1) - square(t)) * sigmoid(x));
                   });
}

template <class T>
Var<T> hardtanh(const Var<T>& x, same_t<T> min_val, same_t<T> max_val) {
    detail::check_defined("hardtanh", x);
    const T lo = min_val, hi = max_val;
    if (!(lo <= hi)) throw value_error(fmt::format("hardtanh: min_val {} is above max_val {}", lo, hi));
    return make_op("hardtanh", detail::mapped(x, [lo, hi](T v) { return std::min(std::max(v, lo), hi); }), x,
                   [x, lo, hi](std::size_t, const Var<T>& g) {
                       // NaN passes g, as torch's (it zeroes x <= min_val or x >= max_val).
                       return g * indicator(x, [lo, hi](T v) { return !(v <= lo || v >= hi); });
                   });
}

#define AD_INSTANTIATE(T)                                                 \
    template Var<T> leaky_relu(const Var<T>&, same_t<T>);                 \
    template Var<T> elu(const Var<T>&, same_t<T>);                        \
    template Var<T> gelu(const Var<T>&, GeluApproximation);               \
    template Var<T> silu(const Var<T>&);                                  \
    template Var<T> softsign(const Var<T>&);                              \
    template Var<T> log_sigmoid(const Var<T>&);                           \
    template Var<T> mish(const Var<T>&);                                  \
    template Var<T> hardtanh(const Var<T>&, same_t<T>, same_t<T>);

AD_INSTANTIATE(float)
AD_INSTANTIATE(double)

}  // namespace ad
