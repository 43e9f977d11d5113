#pragma once
// Fused, numerically stable ops of neural networks: softmax and the losses.

#include <vector>

#include "autodiff/ops/elementwise.hpp"
#include "autodiff/memory/kept.hpp"
#include "autodiff/record.hpp"

namespace ad {

/// How a loss reduces over the batch (rows are samples). A mean over no rows
/// or elements is NaN (0 / 0), a sum 0, as torch's losses give.
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

/// The Huber loss of r = pred - target, elementwise: r^2 / 2 where |r| <= delta,
/// delta (|r| - delta / 2) beyond; mean over all elements (or summed), as
/// F.huber_loss. pred_bar = g s clamp(r, -delta, delta), target_bar = -pred_bar.
template <class T>
Var<T> huber_loss(const Var<T>& pred, const Var<T>& target, same_t<T> delta = same_t<T>(1),
                  Reduction reduction = Reduction::mean);
/// |pred - target| averaged over all elements (or summed), as F.l1_loss;
/// its gradient is g s sign(pred - target), 0 where they are equal.
template <class T>
Var<T> l1_loss(const Var<T>& pred, const Var<T>& target, Reduction reduction = Reduction::mean);
/// The negative log-likelihood of class indices under log-probabilities
/// (N, C), one class per row: -sum_r log_probs[r, classes[r]], mean over the
/// N rows (F.nll_loss). A class out of [0, C) is a value_error naming it.
template <class T>
Var<T> nll_loss(const Var<T>& log_probs, const IndexArray& classes, Reduction reduction = Reduction::mean);
template <class T>
Var<T> nll_loss(const Var<T>& log_probs, const std::vector<std::size_t>& classes, Reduction reduction = Reduction::mean);
/// Cross-entropy of logits (N, C) against class indices with label smoothing
/// eps (F.cross_entropy): the target of row r is (1 - eps) on classes[r] plus
/// eps / C on every class. Built from log_softmax and nll_loss.
template <class T>
Var<T> cross_entropy(const Var<T>& logits, const IndexArray& classes, Reduction reduction = Reduction::mean,
                     same_t<T> label_smoothing = same_t<T>(0));

}  // namespace ad
