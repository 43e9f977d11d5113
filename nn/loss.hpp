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

template <class T>
Var<T> half_sse(const Var<T>& pred, const Var<T>& target, Reduction reduction = Reduction::sum);
template <class T>
Var<T> mse(const Var<T>& pred, const Var<T>& target, Reduction reduction = Reduction::mean);
/// Targets one-hot (or probabilities), the logits' shape.
template <class T>
Var<T> softmax_cross_entropy(const Var<T>& logits, const Var<T>& targets, Reduction reduction = Reduction::mean);
/// Targets as class indices, one per row.
template <class T>
Var<T> softmax_cross_entropy(const Var<T>& logits, const std::vector<std::size_t>& classes,
                             Reduction reduction = Reduction::mean);
template <class T>
Var<T> binary_cross_entropy(const Var<T>& p, const Var<T>& target, Reduction reduction = Reduction::mean);

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
