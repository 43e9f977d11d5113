#pragma once
// Gradient clipping, in place on the parameters' gradients, between
// backward() and the optimizer's step (torch.nn.utils.clip_grad_norm_ and
// clip_grad_value_).
//
//   clip_grad_norm   n = || all gradients as one vector ||_p;  g <- g min(1, max_norm / (n + 1e-6))
//   clip_grad_value  g <- clamp(g, -c, c)

#include <limits>
#include <vector>

#include "nn/module.hpp"

namespace ad::nn {

/// Scales every gradient so that their global norm (p = 2 by default, or
/// std::numeric_limits<double>::infinity()) is at most max_norm; returns the
/// norm before clipping. A gradient that is not finite is a value_error
/// naming it, with every gradient unchanged (PyTorch's error_if_nonfinite).
template <class T>
double clip_grad_norm(const std::vector<Var<T>>& parameters, double max_norm, double norm_type = 2);
template <class T>
double clip_grad_norm(const Module<T>& model, double max_norm, double norm_type = 2) {
    return clip_grad_norm(model.parameters(), max_norm, norm_type);
}

/// Clamps every gradient element into [-clip_value, clip_value].
template <class T>
void clip_grad_value(const std::vector<Var<T>>& parameters, double clip_value);
template <class T>
void clip_grad_value(const Module<T>& model, double clip_value) {
    clip_grad_value(model.parameters(), clip_value);
}

}  // namespace ad::nn
