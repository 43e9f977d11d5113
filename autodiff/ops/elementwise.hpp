#pragma once
// Elementwise ops with NumPy broadcasting (0-d operands included).
// Their VJPs, with g the cotangent of the result y, are in elementwise.cpp.

#include "autodiff/memory/kept.hpp"
#include "autodiff/record.hpp"

namespace ad {

template <class T> Var<T> add(const Var<T>& a, const Var<T>& b);
template <class T> Var<T> sub(const Var<T>& a, const Var<T>& b);
template <class T> Var<T> mul(const Var<T>& a, const Var<T>& b);
template <class T> Var<T> div(const Var<T>& a, const Var<T>& b);
/// a ** b, both differentiable.
template <class T> Var<T> pow(const Var<T>& a, const Var<T>& b);
/// x ** p for a constant exponent.
template <class T> Var<T> pow(const Var<T>& x, T p);
/// a x + b for constant scalars a and b: scalar arithmetic in one pass.
template <class T> Var<T> affine(const Var<T>& x, T a, T b);
template <class T> Var<T> scale(const Var<T>& x, T s) { return affine(x, s, T(0)); }
template <class T> Var<T> shift(const Var<T>& x, T s) { return affine(x, T(1), s); }

template <class T> Var<T> neg(const Var<T>& x);
template <class T> Var<T> exp(const Var<T>& x);
template <class T> Var<T> log(const Var<T>& x);
template <class T> Var<T> sqrt(const Var<T>& x);
template <class T> Var<T> square(const Var<T>& x);
template <class T> Var<T> abs(const Var<T>& x);
template <class T> Var<T> sigmoid(const Var<T>& x);
/// g y (1 - y): sigmoid's VJP given its result y, fused into one pass.
template <class T> Var<T> sigmoid_backward(const Var<T>& g, const Var<T>& y);
template <class T> Var<T> tanh(const Var<T>& x);
template <class T> Var<T> relu(const Var<T>& x);
template <class T> Var<T> softplus(const Var<T>& x);
/// x limited to [lo, hi]; the gradient is zero where x is outside.
template <class T> Var<T> clamp(const Var<T>& x, T lo, T hi);

// Trigonometric, hyperbolic and other smooth functions (VJPs in elementwise.cpp).
template <class T> Var<T> sin(const Var<T>& x);
template <class T> Var<T> cos(const Var<T>& x);
template <class T> Var<T> tan(const Var<T>& x);
template <class T> Var<T> asin(const Var<T>& x);
template <class T> Var<T> acos(const Var<T>& x);
template <class T> Var<T> atan(const Var<T>& x);
template <class T> Var<T> sinh(const Var<T>& x);
template <class T> Var<T> cosh(const Var<T>& x);
/// log(1 + x), exact for tiny x.
template <class T> Var<T> log1p(const Var<T>& x);
/// e^x - 1, exact for tiny x.
template <class T> Var<T> expm1(const Var<T>& x);
template <class T> Var<T> erf(const Var<T>& x);
/// 1 / x.
template <class T> Var<T> reciprocal(const Var<T>& x);
/// 1 / sqrt(x).
template <class T> Var<T> rsqrt(const Var<T>& x);

// Piecewise-constant functions: their gradient is zero wherever it exists,
// and zero is what flows back (as in PyTorch).
template <class T> Var<T> sign(const Var<T>& x);
template <class T> Var<T> floor(const Var<T>& x);
template <class T> Var<T> ceil(const Var<T>& x);
/// Rounds half to even, like torch.round and std::nearbyint.
template <class T> Var<T> round(const Var<T>& x);

/// The larger of a and b elementwise (broadcasting); NaN if either is NaN.
/// At a tie each operand gets half the cotangent (torch.maximum).
template <class T> Var<T> maximum(const Var<T>& a, const Var<T>& b);
/// The smaller of a and b elementwise; NaN and ties as maximum.
template <class T> Var<T> minimum(const Var<T>& a, const Var<T>& b);
/// a where `condition` holds, else b; the three broadcast together
/// (torch.where). The cotangent goes to the operand that was picked.
template <class T> Var<T> where(const Mask& condition, const Var<T>& a, const Var<T>& b);

// Comparisons: masks (no gradient), with broadcasting; against a scalar too.
template <class T> Mask greater(const Var<T>& a, const Var<T>& b);
template <class T> Mask greater_equal(const Var<T>& a, const Var<T>& b);
template <class T> Mask less(const Var<T>& a, const Var<T>& b);
template <class T> Mask less_equal(const Var<T>& a, const Var<T>& b);
template <class T> Mask equal(const Var<T>& a, const Var<T>& b);
template <class T> Mask not_equal(const Var<T>& a, const Var<T>& b);

template <class T> Var<T> operator+(const Var<T>& a, const Var<T>& b) { return add(a, b); }
template <class T> Var<T> operator-(const Var<T>& a, const Var<T>& b) { return sub(a, b); }
template <class T> Var<T> operator*(const Var<T>& a, const Var<T>& b) { return mul(a, b); }
template <class T> Var<T> operator/(const Var<T>& a, const Var<T>& b) { return div(a, b); }
template <class T> Var<T> operator-(const Var<T>& x) { return neg(x); }

// Scalars: the scalar takes the Var's element type (so `1 - y` works for float and double).
template <class T> struct identity { using type = T; };
template <class T> using same_t = typename identity<T>::type;

template <class T> Mask greater(const Var<T>& a, same_t<T> b);
template <class T> Mask greater_equal(const Var<T>& a, same_t<T> b);
template <class T> Mask less(const Var<T>& a, same_t<T> b);
template <class T> Mask less_equal(const Var<T>& a, same_t<T> b);
template <class T> Mask equal(const Var<T>& a, same_t<T> b);
template <class T> Mask not_equal(const Var<T>& a, same_t<T> b);

template <class T> Var<T> operator+(const Var<T>& x, same_t<T> s) { return shift(x, s); }
template <class T> Var<T> operator+(same_t<T> s, const Var<T>& x) { return shift(x, s); }
template <class T> Var<T> operator-(const Var<T>& x, same_t<T> s) { return shift(x, -s); }
template <class T> Var<T> operator-(same_t<T> s, const Var<T>& x) { return affine(x, T(-1), s); }
template <class T> Var<T> operator*(const Var<T>& x, same_t<T> s) { return scale(x, s); }
template <class T> Var<T> operator*(same_t<T> s, const Var<T>& x) { return scale(x, s); }
template <class T> Var<T> operator/(const Var<T>& x, same_t<T> s) { return scale(x, T(1) / s); }
template <class T> Var<T> operator/(same_t<T> s, const Var<T>& x) { return scale(pow(x, T(-1)), s); }

namespace detail {

/// f(x) elementwise into a fresh (recycled) node: the forward of the
/// elementwise ops and activations that xtensor lacks.
template <class T, class F>
Var<T> mapped(const Var<T>& x, F f) {
    Var<T> y = make_uninitialized<T>(x.value().shape());
    const T* in = x.value().data();
    T* out = y.mutable_value().data();
    for (std::size_t i = 0, n = x.size(); i < n; ++i) out[i] = f(in[i]);
    return y;
}

/// sigmoid_backward(g, y) inside a sweep, for a VJP whose cotangent g is
/// read by no other part of the VJP (sigmoid's, linear_sigmoid's first
/// stage): without create_graph or anomaly mode, a g that nothing else holds is overwritten
/// in place and returned, instead of a new value per sigmoid layer.
template <class T> Var<T> sigmoid_backward_in_sweep(const Var<T>& g, const Var<T>& y);

/// g * s inside a sweep, for a VJP whose cotangent g is read by no other
/// part of the VJP (mul's, when only one input needs a gradient, and
/// affine's): without create_graph or anomaly mode, a g that nothing else
/// holds is scaled in place (when s has its shape or one element), instead
/// of a new value per product.
template <class T> Var<T> product_in_sweep(const Var<T>& g, const Var<T>& s);
template <class T> Var<T> product_in_sweep(const Var<T>& g, T s);

}  // namespace detail

}  // namespace ad
