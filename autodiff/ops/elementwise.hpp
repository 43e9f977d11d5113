#pragma once
// Elementwise ops with NumPy broadcasting (0-d operands included).
// Their VJPs, with g the cotangent of the result y, are in elementwise.cpp.

#include "autodiff/var.hpp"

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

template <class T> Var<T> operator+(const Var<T>& a, const Var<T>& b) { return add(a, b); }
template <class T> Var<T> operator-(const Var<T>& a, const Var<T>& b) { return sub(a, b); }
template <class T> Var<T> operator*(const Var<T>& a, const Var<T>& b) { return mul(a, b); }
template <class T> Var<T> operator/(const Var<T>& a, const Var<T>& b) { return div(a, b); }
template <class T> Var<T> operator-(const Var<T>& x) { return neg(x); }

// Scalars: the scalar takes the Var's element type (so `1 - y` works for float and double).
template <class T> struct identity { using type = T; };
template <class T> using same_t = typename identity<T>::type;

template <class T> Var<T> operator+(const Var<T>& x, same_t<T> s) { return shift(x, s); }
template <class T> Var<T> operator+(same_t<T> s, const Var<T>& x) { return shift(x, s); }
template <class T> Var<T> operator-(const Var<T>& x, same_t<T> s) { return shift(x, -s); }
template <class T> Var<T> operator-(same_t<T> s, const Var<T>& x) { return affine(x, T(-1), s); }
template <class T> Var<T> operator*(const Var<T>& x, same_t<T> s) { return scale(x, s); }
template <class T> Var<T> operator*(same_t<T> s, const Var<T>& x) { return scale(x, s); }
template <class T> Var<T> operator/(const Var<T>& x, same_t<T> s) { return scale(x, T(1) / s); }
template <class T> Var<T> operator/(same_t<T> s, const Var<T>& x) { return scale(pow(x, T(-1)), s); }

namespace detail {

/// sigmoid_backward(g, y) inside a sweep, for a VJP whose cotangent g is
/// read by no other part of the VJP (sigmoid's, linear_sigmoid's first
/// stage): without create_graph, a g that nothing else holds is overwritten
/// in place and returned, instead of a new value per sigmoid layer.
template <class T> Var<T> sigmoid_backward_in_sweep(const Var<T>& g, const Var<T>& y);

}  // namespace detail

}  // namespace ad
