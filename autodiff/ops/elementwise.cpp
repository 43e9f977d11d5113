// Elementwise ops: each forward beside its VJP. g is the cotangent of the
// result y; binary VJPs may return a broadcast shape: the record sums it back
// to the input's shape (sum_to_shape), the one place broadcasting is undone.
//
//   op          y                      VJP
//   add         a + b                  a: g                 b: g
//   sub         a - b                  a: g                 b: -g
//   mul         a * b                  a: g b               b: g a
//   div         a / b                  a: g / b             b: -g y / b
//   pow         a ^ b                  a: g b a^(b-1)       b: g y log(a)
//   pow         x ^ p (p constant)     g p x^(p-1)
//   affine      a x + b (a, b const)   g a
//   neg         -x                     -g
//   exp         e^x                    g y
//   log         ln x                   g / x
//   sqrt        x^(1/2)                g / (2 y)
//   square      x^2                    2 g x
//   abs         |x|                    g sign(x)
//   sigmoid     1 / (1 + e^-x)         sigmoid_backward(g, y)
//   sigmoid_backward  g y (1 - y)      g: g' y (1 - y)        y: g' g (1 - 2 y)
//   tanh        tanh x                 g (1 - y^2)
//   relu        max(x, 0)              g [x > 0]
//   softplus    ln(1 + e^x)            g sigmoid(x)
//   clamp       min(max(x, lo), hi)    g [lo <= x <= hi]

#include "autodiff/ops/elementwise.hpp"

#include <cmath>
#include <functional>

#include <fmt/format.h>

#include <xtensor/xmath.hpp>
#include <xtensor/xoperation.hpp>

#include "autodiff/kernels.hpp"
#include "autodiff/ops/all.hpp"

namespace ad {
namespace {

/// Throws unless a's and b's shapes broadcast (out of line: the Shapes it
/// builds would weigh on the ops' common cases, which never call it).
template <class T>
[[gnu::noinline]] void check_broadcast(const char* op, const Var<T>& a, const Var<T>& b) {
    broadcast_shapes(op, shape_of(a.value()), shape_of(b.value()));
}

/// y = f(x) elementwise into fresh storage, for functions xtensor lacks.
template <class T, class F>
Array<T> map(const Array<T>& x, F f) {
    Array<T> y = detail::new_array<T>(x.shape());
    const T* in = x.data();
    T* out = y.data();
    for (std::size_t i = 0, n = x.size(); i < n; ++i) out[i] = f(in[i]);
    return y;
}

/// f(x) elementwise into a fresh (recycled) node: the forward of the
/// elementwise ops xtensor lacks.
template <class T, class F>
Var<T> mapped(const Var<T>& x, F f) {
    Var<T> y = detail::make_uninitialized<T>(x.value().shape());
    const T* in = x.value().data();
    T* out = y.mutable_value().data();
    for (std::size_t i = 0, n = x.size(); i < n; ++i) out[i] = f(in[i]);
    return y;
}

/// make_op for the arithmetic ops: y = f(a, b) elementwise. When the shapes
/// agree, or one side is a single element that broadcasts to the other
/// (scaling by a loss's cotangent, by 1 / n), one pass straight into the
/// result's node; else the broadcasting xtensor expression that
/// `broadcast()` builds (built only then: even building it costs a tenth of
/// a small op). On small arrays xtensor's broadcasting assignment and moving
/// an array into its node cost more than the arithmetic, and VJPs are made
/// of these ops too.
template <class T, class F, class Broadcast, class Vjp>
Var<T> arithmetic(const char* op, const Var<T>& a, const Var<T>& b, F f, Broadcast broadcast, Vjp vjp) {
    const Array<T>& A = a.value();
    const Array<T>& B = b.value();
    const T* lhs = A.data();
    const T* rhs = B.data();
    Var<T> y;
    // A one-element operand of no higher rank broadcasts to any shape: the
    // broadcasting check (which builds shapes) is left to the last branch.
    if (equal_shapes(A, B)) {
        y = detail::make_uninitialized<T>(A.shape());
        T* out = y.mutable_value().data();
        for (std::size_t i = 0, n = y.size(); i < n; ++i) out[i] = f(lhs[i], rhs[i]);
    } else if (B.size() == 1 && B.dimension() <= A.dimension()) {
        y = detail::make_uninitialized<T>(A.shape());
        T* out = y.mutable_value().data();
        const T right = rhs[0];
        for (std::size_t i = 0, n = y.size(); i < n; ++i) out[i] = f(lhs[i], right);
    } else if (A.size() == 1 && A.dimension() <= B.dimension()) {
        y = detail::make_uninitialized<T>(B.shape());
        T* out = y.mutable_value().data();
        const T left = lhs[0];
        for (std::size_t i = 0, n = y.size(); i < n; ++i) out[i] = f(left, rhs[i]);
    } else {
        check_broadcast(op, a, b);
        y = detail::make_value(Array<T>(broadcast()));
    }
    // detail::record_op, not make_op: y is fresh by construction here, and
    // make_op's freshness check and extra move of the VJP cost this op chain
    // a tenth more instructions (callgrind). The same holds for sum(x, axis),
    // half_sse and mse, the other ops that VJPs and training steps call most.
    return detail::record_op(op, std::move(y), std::array<const Var<T>*, 2>{&a, &b}, std::move(vjp));
}

}  // namespace

template <class T>
Var<T> add(const Var<T>& a, const Var<T>& b) {
    detail::check_defined("add", a);
    detail::check_defined("add", b);
    return arithmetic("add", a, b, std::plus<T>(), [&] { return a.value() + b.value(); },
                      [](std::size_t, const Var<T>& g) { return g; });
}

template <class T>
Var<T> sub(const Var<T>& a, const Var<T>& b) {
    detail::check_defined("sub", a);
    detail::check_defined("sub", b);
    return arithmetic("sub", a, b, std::minus<T>(), [&] { return a.value() - b.value(); },
                      [](std::size_t i, const Var<T>& g) { return i == 0 ? g : -g; });
}

template <class T>
Var<T> mul(const Var<T>& a, const Var<T>& b) {
    detail::check_defined("mul", a);
    detail::check_defined("mul", b);
    return arithmetic("mul", a, b, std::multiplies<T>(), [&] { return a.value() * b.value(); },
                      [a = detail::kept_for(a, b), b = detail::kept_for(b, a)](std::size_t i, const Var<T>& g) {
                          return i == 0 ? g * b : g * a;
                      });
}

template <class T>
Var<T> div(const Var<T>& a, const Var<T>& b) {
    detail::check_defined("div", a);
    detail::check_defined("div", b);
    return arithmetic("div", a, b, std::divides<T>(), [&] { return a.value() / b.value(); },
                      [b = detail::kept(b)](std::size_t i, const Var<T>& g, const Var<T>& y) {
                          return i == 0 ? g / b : -(g * y / b);
                      });
}

template <class T>
Var<T> pow(const Var<T>& a, const Var<T>& b) {
    detail::check_defined("pow", a);
    detail::check_defined("pow", b);
    if (!equal_shapes(a.value(), b.value())) check_broadcast("pow", a, b);
    return make_op("pow", Array<T>(xt::pow(a.value(), b.value())), a, b,
                   [a = detail::kept(a), b = detail::kept(b)](std::size_t i, const Var<T>& g, const Var<T>& y) {
                       return i == 0 ? g * b * pow(a, b - T(1)) : g * y * log(a);
                   });
}

template <class T>
Var<T> pow(const Var<T>& x, T p) {
    detail::check_defined("pow", x);
    return make_op("pow", Array<T>(xt::pow(x.value(), p)), x,
                   [x, p](std::size_t, const Var<T>& g) { return g * pow(x, p - T(1)) * p; });
}

template <class T>
Var<T> affine(const Var<T>& x, T a, T b) {
    detail::check_defined("affine", x);
    return make_op("affine", mapped(x, [a, b](T v) { return a * v + b; }), x,
                   [a](std::size_t, const Var<T>& g) { return a == T(1) ? g : g * a; });
}

template <class T>
Var<T> neg(const Var<T>& x) {
    detail::check_defined("neg", x);
    return make_op("neg", Array<T>(-x.value()), x,
                   [](std::size_t, const Var<T>& g) { return -g; });
}

template <class T>
Var<T> exp(const Var<T>& x) {
    detail::check_defined("exp", x);
    return make_op("exp", Array<T>(xt::exp(x.value())), x,
                   [](std::size_t, const Var<T>& g, const Var<T>& y) { return g * y; });
}

template <class T>
Var<T> log(const Var<T>& x) {
    detail::check_defined("log", x);
    return make_op("log", Array<T>(xt::log(x.value())), x,
                   [x](std::size_t, const Var<T>& g) { return g / x; });
}

template <class T>
Var<T> sqrt(const Var<T>& x) {
    detail::check_defined("sqrt", x);
    return make_op("sqrt", Array<T>(xt::sqrt(x.value())), x,
                   [](std::size_t, const Var<T>& g, const Var<T>& y) { return g / y * T(0.5); });
}

template <class T>
Var<T> square(const Var<T>& x) {
    detail::check_defined("square", x);
    return make_op("square", Array<T>(x.value() * x.value()), x,
                   [x](std::size_t, const Var<T>& g) { return g * x * T(2); });
}

template <class T>
Var<T> abs(const Var<T>& x) {
    detail::check_defined("abs", x);
    return make_op("abs", Array<T>(xt::abs(x.value())), x, [x](std::size_t, const Var<T>& g) {
        return g * constant(map(x.value(), [](T v) { return T((v > 0) - (v < 0)); }));
    });
}

template <class T>
Var<T> sigmoid(const Var<T>& x) {
    detail::check_defined("sigmoid", x);
    Var<T> out = detail::make_uninitialized<T>(x.value().shape());
    kernels::sigmoid(x.value().data(), out.mutable_value().data(), out.size());
    return make_op("sigmoid", std::move(out), x, [](std::size_t, const Var<T>& g, const Var<T>& y) {
        return detail::sigmoid_backward_in_sweep(g, y);
    });
}

namespace detail {

template <class T>
Var<T> sigmoid_backward_in_sweep(const Var<T>& g, const Var<T>& y) {
    // use_count 1: the sweep's own copy, which it drops after this VJP.
    if (!recording() && g.node_ptr().use_count() == 1 && equal_shapes(g.value(), y.value())) {
        Array<T>& d = g.mutable_value();
        kernels::sigmoid_backward(d.data(), y.value().data(), d.data(), d.size());
        return g;
    }
    return sigmoid_backward(g, y);
}

}  // namespace detail

template <class T>
Var<T> sigmoid_backward(const Var<T>& g, const Var<T>& y) {
    detail::check_defined("sigmoid_backward", g);
    detail::check_defined("sigmoid_backward", y);
    // One pass instead of three (1 - y, then two products): the backward of
    // every sigmoid layer runs through here.
    if (!equal_shapes(g.value(), y.value())) {
        throw shape_error(fmt::format("sigmoid_backward: cotangent {} and result {} differ in shape",
                                      shape_string_of(g.value()), shape_string_of(y.value())));
    }
    Var<T> out = detail::make_uninitialized<T>(y.value().shape());
    kernels::sigmoid_backward(g.value().data(), y.value().data(), out.mutable_value().data(), out.size());
    if (!detail::recording()) return out;  // sigmoid's VJP, in a sweep without create_graph
    return make_op("sigmoid_backward", std::move(out), g, y, [g, y](std::size_t i, const Var<T>& h) {
        return i == 0 ? sigmoid_backward(h, y) : h * g * (T(1) - y * T(2));
    });
}

template <class T>
Var<T> tanh(const Var<T>& x) {
    detail::check_defined("tanh", x);
    return make_op("tanh", Array<T>(xt::tanh(x.value())), x,
                   [](std::size_t, const Var<T>& g, const Var<T>& y) { return g * (T(1) - square(y)); });
}

template <class T>
Var<T> relu(const Var<T>& x) {
    detail::check_defined("relu", x);
    return make_op("relu", mapped(x, [](T v) { return v > 0 ? v : T(0); }), x,
                   [x](std::size_t, const Var<T>& g) {
                       return g * constant(map(x.value(), [](T v) { return T(v > 0); }));
                   });
}

template <class T>
Var<T> softplus(const Var<T>& x) {
    detail::check_defined("softplus", x);
    // max(x, 0) + log1p(e^-|x|): no overflow for large |x|.
    return make_op("softplus",
                   mapped(x, [](T v) { return std::max(v, T(0)) + std::log1p(std::exp(-std::abs(v))); }), x,
                   [x](std::size_t, const Var<T>& g) { return g * sigmoid(x); });
}

template <class T>
Var<T> clamp(const Var<T>& x, T lo, T hi) {
    detail::check_defined("clamp", x);
    if (!(lo <= hi)) throw value_error(fmt::format("clamp: the bounds [{}, {}] are empty", lo, hi));
    return make_op("clamp", mapped(x, [lo, hi](T v) { return std::min(std::max(v, lo), hi); }), x,
                   [x, lo, hi](std::size_t, const Var<T>& g) {
                       return g * constant(map(x.value(), [lo, hi](T v) { return T(v >= lo && v <= hi); }));
                   });
}

#define AD_INSTANTIATE(T)                                                  \
    template Var<T> add(const Var<T>&, const Var<T>&);                     \
    template Var<T> sub(const Var<T>&, const Var<T>&);                     \
    template Var<T> mul(const Var<T>&, const Var<T>&);                     \
    template Var<T> div(const Var<T>&, const Var<T>&);                     \
    template Var<T> pow(const Var<T>&, const Var<T>&);                     \
    template Var<T> pow(const Var<T>&, T);                                 \
    template Var<T> affine(const Var<T>&, T, T);                           \
    template Var<T> neg(const Var<T>&);                                    \
    template Var<T> exp(const Var<T>&);                                    \
    template Var<T> log(const Var<T>&);                                    \
    template Var<T> sqrt(const Var<T>&);                                   \
    template Var<T> square(const Var<T>&);                                 \
    template Var<T> abs(const Var<T>&);                                    \
    template Var<T> sigmoid(const Var<T>&);                                \
    template Var<T> sigmoid_backward(const Var<T>&, const Var<T>&);        \
    template Var<T> tanh(const Var<T>&);                                   \
    template Var<T> relu(const Var<T>&);                                   \
    template Var<T> softplus(const Var<T>&);                               \
    template Var<T> clamp(const Var<T>&, T, T);                            \
    template Var<T> detail::sigmoid_backward_in_sweep(const Var<T>&, const Var<T>&);

AD_INSTANTIATE(float)
AD_INSTANTIATE(double)

}  // namespace ad
