#pragma once
// Activations beyond relu, sigmoid, tanh and softplus (elementwise.hpp), with
// PyTorch's names, defaults and conventions at kinks. Their VJPs, with g the
// cotangent of the result y, are in activation.cpp.

#include "autodiff/ops/elementwise.hpp"
#include "autodiff/memory/kept.hpp"
#include "autodiff/record.hpp"

namespace ad {

/// x if x > 0, else negative_slope x. x_bar = g (x > 0 ? 1 : negative_slope).
template <class T> Var<T> leaky_relu(const Var<T>& x, same_t<T> negative_slope = same_t<T>(0.01));
/// x if x > 0, else alpha (e^x - 1). x_bar = g (x > 0 ? 1 : alpha e^x).
template <class T> Var<T> elu(const Var<T>& x, same_t<T> alpha = same_t<T>(1));

/// Which form of GELU: the exact x Phi(x), or PyTorch's tanh approximation.
enum class GeluApproximation { none, tanh };
/// none: x Phi(x), Phi the standard normal CDF; x_bar = g (Phi(x) + x phi(x)).
/// tanh: x/2 (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3);
/// x_bar = g (1/2 (1 + tanh u) + x/2 (1 - tanh^2 u) u').
template <class T> Var<T> gelu(const Var<T>& x, GeluApproximation approximate = GeluApproximation::none);
/// x sigmoid(x) (swish). x_bar = g s (1 + x (1 - s)), s = sigmoid(x).
template <class T> Var<T> silu(const Var<T>& x);
/// x / (1 + |x|). x_bar = g / (1 + |x|)^2.
template <class T> Var<T> softsign(const Var<T>& x);
/// log sigmoid(x) = -softplus(-x), stable for large |x|. x_bar = g sigmoid(-x).
template <class T> Var<T> log_sigmoid(const Var<T>& x);
/// x tanh(softplus(x)). x_bar = g (tanh(sp) + x (1 - tanh^2(sp)) sigmoid(x)).
template <class T> Var<T> mish(const Var<T>& x);
/// x limited to [min_val, max_val]. x_bar = g [min_val < x < max_val] (zero at
/// the bounds, as PyTorch's hardtanh; clamp's is one there).
template <class T>
Var<T> hardtanh(const Var<T>& x, same_t<T> min_val = same_t<T>(-1), same_t<T> max_val = same_t<T>(1));

}  // namespace ad
