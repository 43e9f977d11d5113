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
//   relu        max(x, 0), NaN kept    g [x > 0 or x is NaN]
//   softplus    ln(1 + e^x)            g sigmoid(x)
//   clamp       min(max(x, lo), hi)    g [lo <= x <= hi]
//   sin         sin x                  g cos x
//   cos         cos x                  -g sin x
//   tan         tan x                  g (1 + y^2)
//   asin        asin x                 g / sqrt(1 - x^2)
//   acos        acos x                 -g / sqrt(1 - x^2)
//   atan        atan x                 g / (1 + x^2)
//   sinh        sinh x                 g cosh x
//   cosh        cosh x                 g sinh x
//   log1p       ln(1 + x)              g / (1 + x)
//   expm1       e^x - 1                g (y + 1)
//   erf         erf x                  g 2/sqrt(pi) e^(-x^2)
//   reciprocal  1 / x                  -g y^2
//   rsqrt       x^(-1/2)               -g y^3 / 2
//   sign floor ceil round              0 (round: half to even; sign(NaN) = 0)
//   maximum     max(a, b), NaN if      a: g [a > b] + g/2 [a == b]  b: g [b > a] + g/2 [a == b]
//               either is NaN          (a NaN sends g to both, as torch.maximum's VJP does)
//   minimum     min(a, b)              a: g [a < b] + g/2 [a == b]  b: g [b < a] + g/2 [a == b]
//   where       c ? a : b              a: g [c]                     b: g [not c]
//   greater, less, equal, ...          masks: no gradient

#include "autodiff/ops/elementwise.hpp"

#include <cmath>
#include <functional>
#include <limits>

#include <fmt/format.h>

#include <xtensor/xbroadcast.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xoperation.hpp>

#include "autodiff/kernels.hpp"
#include "autodiff/ops/all.hpp"
#include "autodiff/scalar_tape.hpp"

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

/// The element count of `small` when its shape, leading ones aside, is the
/// trailing part of `big`'s and no longer: small then repeats along big's
/// leading dimensions (a bias row, a layer norm's weight, a positional
/// table). 0 otherwise.
template <class T>
std::size_t trailing_block(const Array<T>& big, const Array<T>& small) {
    const auto& bs = big.shape();
    const auto& ss = small.shape();
    if (ss.size() > bs.size()) return 0;
    std::size_t lead = 0;
    while (lead < ss.size() && ss[lead] == 1) ++lead;
    const std::size_t rank = ss.size() - lead;
    if (rank == 0) return 0;
    for (std::size_t i = 0; i < rank; ++i) {
        if (ss[lead + i] != bs[bs.size() - rank + i]) return 0;
    }
    return small.size();
}

/// make_op for the arithmetic ops: y = f(a, b) elementwise. When the shapes
/// agree, or one side is a single element that broadcasts to the other
/// (scaling by a loss's cotangent, by 1 / n), or one side repeats along the
/// other's leading dimensions (trailing_block), one pass straight into the
/// result's node; else the broadcasting xtensor expression that
/// `broadcast()` builds (built only then: building it costs more than a
/// small op's arithmetic). On small arrays xtensor's broadcasting assignment and moving
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
    } else if (const std::size_t w = trailing_block(A, B)) {
        y = detail::make_uninitialized<T>(A.shape());
        T* out = y.mutable_value().data();
        for (std::size_t r = 0, n = y.size(); r < n; r += w) {
            for (std::size_t k = 0; k < w; ++k) out[r + k] = f(lhs[r + k], rhs[k]);
        }
    } else if (const std::size_t w = trailing_block(B, A)) {
        y = detail::make_uninitialized<T>(B.shape());
        T* out = y.mutable_value().data();
        for (std::size_t r = 0, n = y.size(); r < n; r += w) {
            for (std::size_t k = 0; k < w; ++k) out[r + k] = f(lhs[k], rhs[r + k]);
        }
    } else {
        check_broadcast(op, a, b);
        y = detail::make_value(Array<T>(broadcast()));
    }
    // detail::record_op, not make_op: y is fresh by construction here, and
    // make_op's freshness check and extra move of the VJP are a noticeable
    // part of a small op. The same holds for sum(x, axis), half_sse and mse,
    // the other ops that VJPs and training steps call most.
    return detail::record_op(op, std::move(y), std::array<const Var<T>*, 2>{&a, &b}, std::move(vjp));
}

/// y = f(x) with local derivative dy_dx(x, y), on the scalar stream
/// (scalar_tape.hpp) when x is 0-d and recorded; else an empty Var, and the
/// op takes its general path.
template <class T, class F, class D>
AD_INLINE Var<T> scalar_unary(detail::ScalarRule<T>& rule, const Var<T>& x, F f, D dy_dx) {
    Tape* tape = detail::scalar_recording(rule.op, x);
    if (!tape) return Var<T>();
    const T v = detail::scalar_value(x);
    const T y = f(v);
    return detail::record_scalar_unary(*tape, rule, x, y, dy_dx(v, y));
}

}  // namespace

template <class T>
Var<T> add(const Var<T>& a, const Var<T>& b) {
    if (Tape* tape = detail::scalar_recording("add", a, b)) {
        static detail::ScalarRule<T> rule{
            "add", [](const Var<T>* x, const T*) { return add(x[0], x[1]); }};
        const T x = detail::scalar_value(a), y = detail::scalar_value(b);
        return detail::record_scalar(*tape, rule, detail::ScalarKind::add, a, &b, x + y, x, y);
    }
    detail::check_defined("add", a);
    detail::check_defined("add", b);
    return arithmetic("add", a, b, std::plus<T>(), [&] { return a.value() + b.value(); },
                      [](std::size_t, const Var<T>& g) { return g; });
}

template <class T>
Var<T> sub(const Var<T>& a, const Var<T>& b) {
    if (Tape* tape = detail::scalar_recording("sub", a, b)) {
        static detail::ScalarRule<T> rule{
            "sub", [](const Var<T>* x, const T*) { return sub(x[0], x[1]); }};
        const T x = detail::scalar_value(a), y = detail::scalar_value(b);
        return detail::record_scalar(*tape, rule, detail::ScalarKind::sub, a, &b, x - y, x, y);
    }
    detail::check_defined("sub", a);
    detail::check_defined("sub", b);
    return arithmetic("sub", a, b, std::minus<T>(), [&] { return a.value() - b.value(); },
                      [](std::size_t i, const Var<T>& g) { return i == 0 ? g : -g; });
}

template <class T>
Var<T> mul(const Var<T>& a, const Var<T>& b) {
    if (Tape* tape = detail::scalar_recording("mul", a, b)) {
        static detail::ScalarRule<T> rule{
            "mul", [](const Var<T>* x, const T*) { return mul(x[0], x[1]); }};
        const T x = detail::scalar_value(a), y = detail::scalar_value(b);
        return detail::record_scalar(*tape, rule, detail::ScalarKind::mul, a, &b, x * y, x, y);
    }
    detail::check_defined("mul", a);
    detail::check_defined("mul", b);
    // An input is kept only when the other needs a gradient; when only one
    // input does, g is read by that input's product alone (product_in_sweep).
    return arithmetic("mul", a, b, std::multiplies<T>(), [&] { return a.value() * b.value(); },
                      [a = detail::kept_for(a, b), b = detail::kept_for(b, a)](std::size_t i, const Var<T>& g) {
                          if (i == 0) return a.defined() ? g * b : detail::product_in_sweep(g, b);
                          return b.defined() ? g * a : detail::product_in_sweep(g, a);
                      });
}

template <class T>
Var<T> div(const Var<T>& a, const Var<T>& b) {
    if (Tape* tape = detail::scalar_recording("div", a, b)) {
        static detail::ScalarRule<T> rule{
            "div", [](const Var<T>* x, const T*) { return div(x[0], x[1]); }};
        const T x = detail::scalar_value(a), y = detail::scalar_value(b);
        return detail::record_scalar(*tape, rule, detail::ScalarKind::div, a, &b, x / y, x, y);
    }
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
    Array<T> y;
    if (equal_shapes(a.value(), b.value())) {
        // std::pow element by element: xtensor's batched pow rounds
        // differently from its scalar start (see kernels.hpp, exp).
        y = Array<T>::from_shape(a.value().shape());
        const T *pa = a.value().data(), *pb = b.value().data();
        for (std::size_t i = 0; i < y.size(); ++i) y.data()[i] = std::pow(pa[i], pb[i]);
    } else {
        check_broadcast("pow", a, b);
        // std::pow through xtensor's broadcasting: xt::pow would run xsimd's
        // pow where the broadcast is trivial, whose exp converts an infinite
        // exponent to an integer (undefined behaviour). A lambda taking T has
        // no batched form, so xtensor steps element by element.
        y = xt::make_lambda_xfunction([](T x, T p) { return std::pow(x, p); }, a.value(), b.value());
    }
    return make_op("pow", std::move(y), a, b,
                   [a = detail::kept(a), b = detail::kept(b)](std::size_t i, const Var<T>& g, const Var<T>& y) {
                       return i == 0 ? g * b * pow(a, b - T(1)) : g * y * log(a);
                   });
}

template <class T>
Var<T> pow(const Var<T>& x, T p) {
    detail::check_defined("pow", x);
    Var<T> y = detail::make_uninitialized<T>(x.value().shape());
    const T* in = x.value().data();
    T* out = y.mutable_value().data();
    for (std::size_t i = 0; i < y.size(); ++i) out[i] = std::pow(in[i], p);
    return make_op("pow", std::move(y), x,
                   [x, p](std::size_t, const Var<T>& g) { return g * pow(x, p - T(1)) * p; });
}

template <class T>
Var<T> affine(const Var<T>& x, T a, T b) {
    static detail::ScalarRule<T> rule{"affine", [](const Var<T>* x, const T* values) {
        (void)values;
        return affine(x[0], values[1], T(0));
    }};
    if (Var<T> fast = scalar_unary(rule, x, [a, b](T v) { return a * v + b; }, [a](T, T) { return a; }); fast.defined()) return fast;
    detail::check_defined("affine", x);
    return make_op("affine", detail::mapped(x, [a, b](T v) { return a * v + b; }), x,
                   [a](std::size_t, const Var<T>& g) { return a == T(1) ? g : detail::product_in_sweep(g, a); });
}

template <class T>
Var<T> neg(const Var<T>& x) {
    static detail::ScalarRule<T> rule{"neg", [](const Var<T>* x, const T* values) {
        (void)values;
        return neg(x[0]);
    }};
    if (Var<T> fast = scalar_unary(rule, x, [](T v) { return -v; }, [](T, T) { return T(-1); }); fast.defined()) return fast;
    detail::check_defined("neg", x);
    return make_op("neg", Array<T>(-x.value()), x,
                   [](std::size_t, const Var<T>& g) { return -g; });
}

namespace {

/// kernel applied to x's elements, into a fresh (recycled) value: the kernels
/// give each element the same bits wherever the arrays sit (kernels.hpp).
template <class T>
Var<T> mapped(const Var<T>& x, void (*kernel)(const T*, T*, std::size_t)) {
    Var<T> out = detail::make_uninitialized<T>(x.value().shape());
    kernel(x.value().data(), out.mutable_value().data(), out.size());
    return out;
}

}  // namespace

template <class T>
Var<T> exp(const Var<T>& x) {
    static detail::ScalarRule<T> rule{"exp", [](const Var<T>* x, const T* values) {
        (void)values;
        return exp(x[0]);
    }};
    if (Var<T> fast = scalar_unary(rule, x, [](T v) { T y; kernels::exp(&v, &y, 1); return y; }, [](T, T y) { return y; }); fast.defined()) return fast;
    detail::check_defined("exp", x);
    return make_op("exp", mapped(x, kernels::exp<T>), x,
                   [](std::size_t, const Var<T>& g, const Var<T>& y) { return g * y; });
}

template <class T>
Var<T> log(const Var<T>& x) {
    static detail::ScalarRule<T> rule{"log", [](const Var<T>* x, const T* values) {
        (void)values;
        return log(x[0]);
    }};
    if (Var<T> fast = scalar_unary(rule, x, [](T v) { T y; kernels::log(&v, &y, 1); return y; }, [](T v, T) { return T(1) / v; }); fast.defined()) return fast;
    detail::check_defined("log", x);
    return make_op("log", mapped(x, kernels::log<T>), x, [x](std::size_t, const Var<T>& g) { return g / x; });
}

template <class T>
Var<T> sqrt(const Var<T>& x) {
    static detail::ScalarRule<T> rule{"sqrt", [](const Var<T>* x, const T* values) {
        (void)values;
        return sqrt(x[0]);
    }};
    if (Var<T> fast = scalar_unary(rule, x, [](T v) { return std::sqrt(v); }, [](T, T y) { return T(0.5) / y; }); fast.defined()) return fast;
    detail::check_defined("sqrt", x);
    return make_op("sqrt", Array<T>(xt::sqrt(x.value())), x,
                   [](std::size_t, const Var<T>& g, const Var<T>& y) { return g / y * T(0.5); });
}

template <class T>
Var<T> square(const Var<T>& x) {
    static detail::ScalarRule<T> rule{"square", [](const Var<T>* x, const T* values) {
        (void)values;
        return square(x[0]);
    }};
    if (Var<T> fast = scalar_unary(rule, x, [](T v) { return v * v; }, [](T v, T) { return v * T(2); }); fast.defined()) return fast;
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
    static detail::ScalarRule<T> rule{"sigmoid", [](const Var<T>* x, const T* values) {
        (void)values;
        return sigmoid(x[0]);
    }};
    if (Var<T> fast = scalar_unary(rule, x, [](T v) { T y; kernels::sigmoid(&v, &y, 1); return y; }, [](T, T y) { return y * (T(1) - y); }); fast.defined()) return fast;
    detail::check_defined("sigmoid", x);
    Var<T> out = detail::make_uninitialized<T>(x.value().shape());
    kernels::sigmoid(x.value().data(), out.mutable_value().data(), out.size());
    return make_op("sigmoid", std::move(out), x, [](std::size_t, const Var<T>& g, const Var<T>& y) {
        return detail::sigmoid_backward_in_sweep(g, y);
    });
}

namespace detail {

namespace {

/// Whether a VJP may overwrite its cotangent g: held alone, it is the
/// sweep's own copy, which the sweep drops after this VJP. Not in anomaly
/// mode, which compares g before and after the VJP.
template <class T>
bool writable_in_sweep(const Var<T>& g) {
    return !recording() && !(recording_state.observe & observe_anomaly) && g.node_ptr().held_alone();
}

}  // namespace

template <class T>
Var<T> product_in_sweep(const Var<T>& g, const Var<T>& s) {
    const Array<T>& S = s.value();
    if (writable_in_sweep(g) && (equal_shapes(g.value(), S) || (S.size() == 1 && S.dimension() <= g.dim()))) {
        Array<T>& d = g.mutable_value();
        T* out = d.data();
        const T* factor = S.data();
        const std::size_t step = S.size() == d.size() ? 1 : 0;  // equal shapes, or one factor for all
        for (std::size_t i = 0, n = d.size(); i < n; ++i) out[i] *= factor[i * step];
        return g;
    }
    return g * s;
}

template <class T>
Var<T> product_in_sweep(const Var<T>& g, T factor) {
    if (!writable_in_sweep(g)) return g * factor;
    Array<T>& d = g.mutable_value();
    T* out = d.data();
    for (std::size_t i = 0, n = d.size(); i < n; ++i) out[i] *= factor;
    return g;
}

template <class T>
Var<T> sigmoid_backward_in_sweep(const Var<T>& g, const Var<T>& y) {
    if (writable_in_sweep(g) && equal_shapes(g.value(), y.value())) {
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
    static detail::ScalarRule<T> rule{"tanh", [](const Var<T>* x, const T* values) {
        (void)values;
        return tanh(x[0]);
    }};
    if (Var<T> fast = scalar_unary(rule, x, [](T v) { T y; kernels::tanh(&v, &y, 1); return y; }, [](T, T y) { return T(1) - y * y; }); fast.defined()) return fast;
    detail::check_defined("tanh", x);
    return make_op("tanh", mapped(x, kernels::tanh<T>), x,
                   [](std::size_t, const Var<T>& g, const Var<T>& y) { return g * (T(1) - square(y)); });
}

template <class T>
Var<T> relu(const Var<T>& x) {
    detail::check_defined("relu", x);
    // NaN is kept and passes the gradient, as torch's (threshold_backward zeroes only y <= 0).
    // The VJP g * [x > 0]: in one pass when the sweep records nothing, into g
    // itself when the sweep alone holds it (as sigmoid's), else into a
    // recycled node; a mask array and a product otherwise.
    return make_op("relu", detail::mapped(x, [](T v) { return v <= 0 ? T(0) : v; }), x,
                   [x](std::size_t, const Var<T>& g) {
                       if (detail::recording() || !equal_shapes(g.value(), x.value())) {
                           return g * constant(map(x.value(), [](T v) { return T(!(v <= 0)); }));
                       }
                       const bool in_place = detail::writable_in_sweep(g);
                       Var<T> out = in_place ? g : detail::make_uninitialized<T>(g.value().shape());
                       const T* gv = g.value().data();
                       const T* xv = x.value().data();
                       T* o = out.mutable_value().data();
                       for (std::size_t i = 0, n = g.size(); i < n; ++i) o[i] = gv[i] * T(!(xv[i] <= 0));
                       return out;
                   });
}

template <class T>
Var<T> softplus(const Var<T>& x) {
    detail::check_defined("softplus", x);
    // max(x, 0) + log1p(e^-|x|): no overflow for large |x|.
    return make_op("softplus",
                   detail::mapped(x, [](T v) { return std::max(v, T(0)) + std::log1p(std::exp(-std::abs(v))); }), x,
                   [x](std::size_t, const Var<T>& g) { return g * sigmoid(x); });
}

template <class T>
Var<T> clamp(const Var<T>& x, T lo, T hi) {
    detail::check_defined("clamp", x);
    if (!(lo <= hi)) throw value_error(fmt::format("clamp: the bounds [{}, {}] are empty", lo, hi));
    return make_op("clamp", detail::mapped(x, [lo, hi](T v) { return std::min(std::max(v, lo), hi); }), x,
                   [x, lo, hi](std::size_t, const Var<T>& g) {
                       return g * constant(map(x.value(), [lo, hi](T v) { return T(v >= lo && v <= hi); }));
                   });
}

namespace {

/// make_op for a unary op whose forward is f elementwise.
template <class T, class F, class Vjp>
Var<T> unary(const char* op, const Var<T>& x, F f, Vjp vjp) {
    detail::check_defined(op, x);
    return make_op(op, detail::mapped(x, f), x, std::move(vjp));
}

/// The VJP of a piecewise-constant op: zeros of the cotangent's shape.
template <class T>
Var<T> zero_cotangent(const Var<T>& g) {
    return constant(Array<T>(xt::zeros<T>(g.value().shape())));
}

/// x's values stretched to `shape` (which x broadcasts to) as a plain array.
/// An empty result is made directly: a broadcast view of empty storage
/// offsets a null pointer.
template <class V>
xt::xarray<V> stretched(const xt::xarray<V>& x, const Shape& shape) {
    if (same_extents(x.shape(), shape)) return x;
    xt::xarray<V> out = xt::xarray<V>::from_shape(shape);
    if (out.size() > 0) out = xt::broadcast(x, shape);
    return out;
}

/// maximum (larger = true) or minimum: the value, and each operand's share of
/// the cotangent in the broadcast shape.
template <class T>
Var<T> extremum(const char* op, const Var<T>& a, const Var<T>& b, bool larger) {
    detail::check_defined(op, a);
    detail::check_defined(op, b);
    const Shape shape = broadcast_shapes(op, a.shape(), b.shape());
    const Array<T> A = stretched(a.value(), shape), B = stretched(b.value(), shape);
    Array<T> y = Array<T>::from_shape(shape), share_a = Array<T>::from_shape(shape), share_b = Array<T>::from_shape(shape);
    for (std::size_t i = 0; i < y.size(); ++i) {
        const T p = A.data()[i], q = B.data()[i];
        const bool a_wins = larger ? p > q : p < q, b_wins = larger ? q > p : q < p;
        y.data()[i] = std::isnan(p) || std::isnan(q) ? std::numeric_limits<T>::quiet_NaN() : (a_wins ? p : q);
        share_a.data()[i] = p == q ? T(0.5) : T(!b_wins);
        share_b.data()[i] = p == q ? T(0.5) : T(!a_wins);
    }
    return make_op(op, std::move(y), a, b,
                   [share_a = std::move(share_a), share_b = std::move(share_b)](std::size_t i, const Var<T>& g) {
                       return g * constant(i == 0 ? share_a : share_b);
                   });
}

/// A comparison of a and b elementwise, broadcasting.
template <class T, class Compare>
Mask compare(const char* op, const Var<T>& a, const Var<T>& b, Compare c) {
    detail::check_defined(op, a);
    detail::check_defined(op, b);
    const Shape shape = broadcast_shapes(op, a.shape(), b.shape());
    const Array<T> A = stretched(a.value(), shape), B = stretched(b.value(), shape);
    Mask m = Mask::from_shape(shape);
    for (std::size_t i = 0; i < m.size(); ++i) m.data()[i] = c(A.data()[i], B.data()[i]);
    return m;
}

template <class T, class Compare>
Mask compare(const char* op, const Var<T>& a, T b, Compare c) {
    detail::check_defined(op, a);
    Mask m = Mask::from_shape(a.value().shape());
    for (std::size_t i = 0; i < m.size(); ++i) m.data()[i] = c(a.value().data()[i], b);
    return m;
}

}  // namespace

template <class T>
Var<T> sin(const Var<T>& x) {
    static detail::ScalarRule<T> rule{"sin", [](const Var<T>* x, const T*) { return sin(x[0]); }};
    if (Var<T> fast = scalar_unary(rule, x, [](T v) { return std::sin(v); }, [](T v, T) { return std::cos(v); }); fast.defined()) return fast;
    return unary("sin", x, [](T v) { return std::sin(v); }, [x](std::size_t, const Var<T>& g) { return g * cos(x); });
}

template <class T>
Var<T> cos(const Var<T>& x) {
    static detail::ScalarRule<T> rule{"cos", [](const Var<T>* x, const T*) { return cos(x[0]); }};
    if (Var<T> fast = scalar_unary(rule, x, [](T v) { return std::cos(v); }, [](T v, T) { return -std::sin(v); }); fast.defined()) return fast;
    return unary("cos", x, [](T v) { return std::cos(v); }, [x](std::size_t, const Var<T>& g) { return -(g * sin(x)); });
}

template <class T>
Var<T> tan(const Var<T>& x) {
    return unary("tan", x, [](T v) { return std::tan(v); },
                 [](std::size_t, const Var<T>& g, const Var<T>& y) { return g * (square(y) + T(1)); });
}

template <class T>
Var<T> asin(const Var<T>& x) {
    return unary("asin", x, [](T v) { return std::asin(v); },
                 [x](std::size_t, const Var<T>& g) { return g * rsqrt(T(1) - square(x)); });
}

template <class T>
Var<T> acos(const Var<T>& x) {
    return unary("acos", x, [](T v) { return std::acos(v); },
                 [x](std::size_t, const Var<T>& g) { return -(g * rsqrt(T(1) - square(x))); });
}

template <class T>
Var<T> atan(const Var<T>& x) {
    return unary("atan", x, [](T v) { return std::atan(v); },
                 [x](std::size_t, const Var<T>& g) { return g / (square(x) + T(1)); });
}

template <class T>
Var<T> sinh(const Var<T>& x) {
    return unary("sinh", x, [](T v) { return std::sinh(v); }, [x](std::size_t, const Var<T>& g) { return g * cosh(x); });
}

template <class T>
Var<T> cosh(const Var<T>& x) {
    return unary("cosh", x, [](T v) { return std::cosh(v); }, [x](std::size_t, const Var<T>& g) { return g * sinh(x); });
}

template <class T>
Var<T> log1p(const Var<T>& x) {
    return unary("log1p", x, [](T v) { return std::log1p(v); },
                 [x](std::size_t, const Var<T>& g) { return g / (x + T(1)); });
}

template <class T>
Var<T> expm1(const Var<T>& x) {
    return unary("expm1", x, [](T v) { return std::expm1(v); },
                 [](std::size_t, const Var<T>& g, const Var<T>& y) { return g * (y + T(1)); });
}

template <class T>
Var<T> erf(const Var<T>& x) {
    return unary("erf", x, [](T v) { return std::erf(v); }, [x](std::size_t, const Var<T>& g) {
        return g * exp(-square(x)) * T(1.1283791670955126);  // 2 / sqrt(pi)
    });
}

template <class T>
Var<T> reciprocal(const Var<T>& x) {
    return unary("reciprocal", x, [](T v) { return T(1) / v; },
                 [](std::size_t, const Var<T>& g, const Var<T>& y) { return -(g * square(y)); });
}

template <class T>
Var<T> rsqrt(const Var<T>& x) {
    return unary("rsqrt", x, [](T v) { return T(1) / std::sqrt(v); },
                 [](std::size_t, const Var<T>& g, const Var<T>& y) { return g * y * square(y) * T(-0.5); });
}

template <class T>
Var<T> sign(const Var<T>& x) {
    // sign(NaN) is 0, as torch's.
    return unary("sign", x, [](T v) { return T((v > 0) - (v < 0)); },
                 [](std::size_t, const Var<T>& g) { return zero_cotangent(g); });
}

template <class T>
Var<T> floor(const Var<T>& x) {
    return unary("floor", x, [](T v) { return std::floor(v); },
                 [](std::size_t, const Var<T>& g) { return zero_cotangent(g); });
}

template <class T>
Var<T> ceil(const Var<T>& x) {
    return unary("ceil", x, [](T v) { return std::ceil(v); },
                 [](std::size_t, const Var<T>& g) { return zero_cotangent(g); });
}

template <class T>
Var<T> round(const Var<T>& x) {
    return unary("round", x, [](T v) { return std::nearbyint(v); },
                 [](std::size_t, const Var<T>& g) { return zero_cotangent(g); });
}

template <class T>
Var<T> maximum(const Var<T>& a, const Var<T>& b) {
    return extremum("maximum", a, b, true);
}

template <class T>
Var<T> minimum(const Var<T>& a, const Var<T>& b) {
    return extremum("minimum", a, b, false);
}

template <class T>
Var<T> where(const Mask& condition, const Var<T>& a, const Var<T>& b) {
    detail::check_defined("where", a);
    detail::check_defined("where", b);
    const Shape values = broadcast_shapes("where", a.shape(), b.shape());
    Shape shape;
    try {
        shape = broadcast_shapes("where", shape_of(condition), values);
    } catch (const shape_error&) {
        throw shape_error(fmt::format("where: cannot broadcast the condition {} with the values {} and {}",
                                      shape_string_of(condition), shape_string_of(a.value()), shape_string_of(b.value())));
    }
    const Mask c = stretched(condition, shape);
    const Array<T> A = stretched(a.value(), shape), B = stretched(b.value(), shape);
    Array<T> y = Array<T>::from_shape(shape), picked = Array<T>::from_shape(shape);
    for (std::size_t i = 0; i < y.size(); ++i) {
        y.data()[i] = c.data()[i] ? A.data()[i] : B.data()[i];
        picked.data()[i] = T(c.data()[i]);
    }
    return make_op("where", std::move(y), a, b, [picked = std::move(picked)](std::size_t i, const Var<T>& g) {
        return i == 0 ? g * constant(picked) : g * constant(Array<T>(T(1) - picked));
    });
}

#define AD_COMPARISON(name, expression)                                                                    \
    template <class T>                                                                                     \
    Mask name(const Var<T>& a, const Var<T>& b) {                                                          \
        return compare(#name, a, b, [](T p, T q) { return expression; });                                 \
    }                                                                                                      \
    template <class T>                                                                                     \
    Mask name(const Var<T>& a, same_t<T> b) {                                                              \
        return compare(#name, a, T(b), [](T p, T q) { return expression; });                              \
    }

AD_COMPARISON(greater, p > q)
AD_COMPARISON(greater_equal, p >= q)
AD_COMPARISON(less, p < q)
AD_COMPARISON(less_equal, p <= q)
AD_COMPARISON(equal, p == q)
AD_COMPARISON(not_equal, p != q)
#undef AD_COMPARISON

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
    template Var<T> detail::sigmoid_backward_in_sweep(const Var<T>&, const Var<T>&); \
    template Var<T> detail::product_in_sweep(const Var<T>&, const Var<T>&);          \
    template Var<T> detail::product_in_sweep(const Var<T>&, T);                      \
    template Var<T> sin(const Var<T>&);                                    \
    template Var<T> cos(const Var<T>&);                                    \
    template Var<T> tan(const Var<T>&);                                    \
    template Var<T> asin(const Var<T>&);                                   \
    template Var<T> acos(const Var<T>&);                                   \
    template Var<T> atan(const Var<T>&);                                   \
    template Var<T> sinh(const Var<T>&);                                   \
    template Var<T> cosh(const Var<T>&);                                   \
    template Var<T> log1p(const Var<T>&);                                  \
    template Var<T> expm1(const Var<T>&);                                  \
    template Var<T> erf(const Var<T>&);                                    \
    template Var<T> reciprocal(const Var<T>&);                             \
    template Var<T> rsqrt(const Var<T>&);                                  \
    template Var<T> sign(const Var<T>&);                                   \
    template Var<T> floor(const Var<T>&);                                  \
    template Var<T> ceil(const Var<T>&);                                   \
    template Var<T> round(const Var<T>&);                                  \
    template Var<T> maximum(const Var<T>&, const Var<T>&);                 \
    template Var<T> minimum(const Var<T>&, const Var<T>&);                 \
    template Var<T> where(const Mask&, const Var<T>&, const Var<T>&);      \
    template Mask greater(const Var<T>&, const Var<T>&);                   \
    template Mask greater_equal(const Var<T>&, const Var<T>&);             \
    template Mask less(const Var<T>&, const Var<T>&);                      \
    template Mask less_equal(const Var<T>&, const Var<T>&);                \
    template Mask equal(const Var<T>&, const Var<T>&);                     \
    template Mask not_equal(const Var<T>&, const Var<T>&);                 \
    template Mask greater(const Var<T>&, same_t<T>);                       \
    template Mask greater_equal(const Var<T>&, same_t<T>);                 \
    template Mask less(const Var<T>&, same_t<T>);                          \
    template Mask less_equal(const Var<T>&, same_t<T>);                    \
    template Mask equal(const Var<T>&, same_t<T>);                         \
    template Mask not_equal(const Var<T>&, same_t<T>);

AD_INSTANTIATE(float)
AD_INSTANTIATE(double)

}  // namespace ad
