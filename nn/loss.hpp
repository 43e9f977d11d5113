#pragma once
// Losses over a batch (rows are samples), thin wrappers over the engine's
// fused ops (autodiff/ops/nn.hpp) that add what a training loop needs: a
// shape check naming both shapes, a rejected empty batch, and a rejected
// non-finite loss, so a diverging run stops at the step that diverged.
//
//   half_sse   C = 1/2 sum (pred - target)^2        mean: divided by the batch size (the textbook's averaged loss)
//   mse        C = mean (pred - target)^2            over all elements; sum: not divided
//   softmax_cross_entropy  C = -sum_j y_j log softmax(z)_j per row, mean over rows by default
//   binary_cross_entropy   C = -(t log p + (1 - t) log(1 - p)), mean over all elements by default

#include <cstddef>
#include <vector>

#include "nn/module.hpp"

namespace ad::nn {

// Overloads for float and double rather than templates: after `using
// namespace ad::nn`, an unqualified half_sse(pred, y) also finds the engine's
// template ad::half_sse (by argument-dependent lookup), and a non-template is
// the better match, so the call means this one instead of being ambiguous.
Var<float> half_sse(const Var<float>& pred, const Var<float>& target, Reduction reduction = Reduction::sum);
Var<double> half_sse(const Var<double>& pred, const Var<double>& target, Reduction reduction = Reduction::sum);
Var<float> mse(const Var<float>& pred, const Var<float>& target, Reduction reduction = Reduction::mean);
Var<double> mse(const Var<double>& pred, const Var<double>& target, Reduction reduction = Reduction::mean);
/// Targets one-hot (or probabilities), the logits' shape.
Var<float> softmax_cross_entropy(const Var<float>& logits, const Var<float>& targets,
                                 Reduction reduction = Reduction::mean);
Var<double> softmax_cross_entropy(const Var<double>& logits, const Var<double>& targets,
                                  Reduction reduction = Reduction::mean);
/// Targets as class indices, one per row.
Var<float> softmax_cross_entropy(const Var<float>& logits, const std::vector<std::size_t>& classes,
                                 Reduction reduction = Reduction::mean);
Var<double> softmax_cross_entropy(const Var<double>& logits, const std::vector<std::size_t>& classes,
                                  Reduction reduction = Reduction::mean);
Var<float> binary_cross_entropy(const Var<float>& p, const Var<float>& target, Reduction reduction = Reduction::mean);
Var<double> binary_cross_entropy(const Var<double>& p, const Var<double>& target,
                                 Reduction reduction = Reduction::mean);

// Targets are data: the same with a plain array.
template <class T>
Var<T> half_sse(const Var<T>& pred, const Array<T>& target, Reduction reduction = Reduction::sum) {
    return nn::half_sse(pred, constant(target), reduction);
}
template <class T>
Var<T> mse(const Var<T>& pred, const Array<T>& target, Reduction reduction = Reduction::mean) {
    return nn::mse(pred, constant(target), reduction);
}
template <class T>
Var<T> softmax_cross_entropy(const Var<T>& logits, const Array<T>& targets, Reduction reduction = Reduction::mean) {
    return nn::softmax_cross_entropy(logits, constant(targets), reduction);
}
template <class T>
Var<T> binary_cross_entropy(const Var<T>& p, const Array<T>& target, Reduction reduction = Reduction::mean) {
    return nn::binary_cross_entropy(p, constant(target), reduction);
}

}  // namespace ad::nn
