#pragma once
// Normalisation and regularisation: layer_norm, batch_norm, dropout, with
// PyTorch's semantics (F.layer_norm, F.batch_norm, F.dropout).

#include <cstdint>
#include <random>

#include "autodiff/ops/elementwise.hpp"
#include "autodiff/memory/kept.hpp"
#include "autodiff/record.hpp"

namespace ad {

/// x normalised over its trailing dimensions `normalized_shape` (biased
/// variance), then scaled by `weight` and shifted by `bias` (both of
/// normalized_shape; an empty Var leaves either out):
///   x_hat = (x - mean) / sqrt(var + eps),  y = x_hat weight + bias.
/// x_bar = rstd (g_hat - mean(g_hat) - x_hat mean(g_hat x_hat)), g_hat = g weight;
/// weight_bar = sum over the leading axes of g x_hat; bias_bar = sum of g.
template <class T>
Var<T> layer_norm(const Var<T>& x, const Shape& normalized_shape, const Var<T>& weight = Var<T>(),
                  const Var<T>& bias = Var<T>(), same_t<T> eps = same_t<T>(1e-5));

/// Running statistics that batch_norm uses in eval mode and updates in
/// training mode: mean and variance per channel.
template <class T>
struct RunningStats {
    Array<T> mean;
    Array<T> var;
};

/// Batch normalisation of x (N, C) or (N, C, ...) per channel C.
/// training: statistics of the batch (over every axis but 1; biased variance
/// to normalise), and `running` (if given) updated in place with `momentum`
/// from the unbiased variance, as PyTorch does; eval (training = false):
/// `running` must be given and is used as is. weight and bias (C) are
/// optional (an empty Var). Built from engine ops: its VJP is theirs.
template <class T>
Var<T> batch_norm(const Var<T>& x, const Var<T>& weight, const Var<T>& bias, RunningStats<T>* running,
                  bool training, same_t<T> momentum = same_t<T>(0.1), same_t<T> eps = same_t<T>(1e-5));

/// Inverted dropout: in training, each element is zeroed with probability p
/// (drawn from `generator`) and the rest scaled by 1 / (1 - p); the identity
/// when not training or p = 0. x_bar = g mask / (1 - p), with the forward's mask.
template <class T>
Var<T> dropout(const Var<T>& x, double p, bool training, std::mt19937_64& generator);

}  // namespace ad
