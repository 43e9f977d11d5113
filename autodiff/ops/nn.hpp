#pragma once
// Fused, numerically stable ops of neural networks: softmax and the losses.

#include <vector>

#include "autodiff/var.hpp"

namespace ad {

/// How a loss reduces over the batch (rows are samples).
enum class Reduction { sum, mean };

template <class T> Var<T> softmax(const Var<T>& x, long axis = -1);
template <class T> Var<T> log_softmax(const Var<T>& x, long axis = -1);

/// Cross-entropy of softmax(logits) along the last axis against one-hot (or
/// probability) targets of the logits' shape; 2-D logits, rows are samples.
/// Mean divides by the number of rows.
template <class T>
Var<T> softmax_cross_entropy(const Var<T>& logits, const Var<T>& targets,
                             Reduction reduction = Reduction::mean);
/// The same against class indices, one per row.
template <class T>
Var<T> softmax_cross_entropy(const Var<T>& logits, const std::vector<std::size_t>& classes,
                             Reduction reduction = Reduction::mean);

/// The textbook's loss, 1/2 sum (pred - target)^2; mean divides by the number
/// of rows (the batch size), as the textbook's averaged loss does.
template <class T>
Var<T> half_sse(const Var<T>& pred, const Var<T>& target, Reduction reduction = Reduction::sum);
/// Mean squared error: (pred - target)^2 averaged over all elements (or summed).
template <class T>
Var<T> mse(const Var<T>& pred, const Var<T>& target, Reduction reduction = Reduction::mean);
/// -(t log p + (1 - t) log(1 - p)) averaged over all elements (or summed);
/// log is clamped at -100 as PyTorch does, so p = 0 or 1 gives a finite loss.
template <class T>
Var<T> binary_cross_entropy(const Var<T>& p, const Var<T>& target,
                            Reduction reduction = Reduction::mean);

}  // namespace ad
