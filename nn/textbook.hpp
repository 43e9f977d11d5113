#pragma once
// The textbook's backward pass of the sigmoid MLP, derived by hand
// (shared/docs/backprop-math.md, section 3), with no tape: plain xtensor
// arrays and BLAS. It exists to show that the tape computes exactly these
// equations. Rows are samples; layers are numbered l = 1..L as in the
// textbook (model parameter layers.<2(l-1)> is layer l). Delta includes
// sigma'(Z) (Nielsen's convention; the textbook calls (A^L - Y) itself delta).
//
//   forward   Z^l = A^(l-1) (W^l)^T + 1 (b^l)^T        A^l = sigma(Z^l)        A^0 = X
//   loss      C = 1/2 sum (A^L - Y)^2                  (mean: divided by the batch size B)
//   (3)       Delta^L = (A^L - Y) (.) sigma'(Z^L)      dC/dW^L = (Delta^L)^T A^(L-1)   dC/db^L = column sums of Delta^L
//   (5)       Delta^l = (Delta^(l+1) W^(l+1)) (.) sigma'(Z^l)
//                                                      dC/dW^l = (Delta^l)^T A^(l-1)   dC/db^l = column sums of Delta^l
//   with sigma'(Z) = A (1 - A); every gradient divided by B for the mean.

#include <ostream>
#include <string>
#include <vector>

#include "nn/sequential.hpp"

namespace ad::nn {

template <class T>
struct TextbookGradients {
    T loss = T(0);
    /// Per layer l = 1..L at index l-1: dC/dW^l (n_l, n_(l-1)) and dC/db^l (n_l).
    std::vector<Array<T>> weight_grads;
    std::vector<Array<T>> bias_grads;
    /// Per layer, the equation that produced its gradients, e.g. "(3)".
    std::vector<std::string> equations;
};

/// Hand-derived gradients of the half-squared-error loss of the sigmoid MLP
/// with weights W^l = weights[l-1] (n_l, n_(l-1)) and biases b^l, on inputs
/// X (B, n_0) and targets Y (B, n_L). Throws shape_error naming the layer
/// when shapes do not chain.
template <class T>
TextbookGradients<T> textbook_backward(const std::vector<Array<T>>& weights, const std::vector<Array<T>>& biases,
                                       const Array<T>& inputs, const Array<T>& targets,
                                       Reduction reduction = Reduction::sum);

/// The same for an MLP whose activations are all sigmoid (throws value_error otherwise).
template <class T>
TextbookGradients<T> textbook_backward(const MLP<T>& model, const Array<T>& inputs, const Array<T>& targets,
                                       Reduction reduction = Reduction::sum);

/// One row of the comparison: a parameter's tape gradient against its hand-derived one.
struct GradientDifference {
    std::string parameter;  ///< "layers.0.weight"
    std::string symbol;     ///< the textbook's name, "dC/dW^1"
    Shape shape;
    double max_abs = 0;     ///< max |tape - hand|
    double max_rel = 0;     ///< max |tape - hand| / max(|tape|, |hand|) (0 where both are 0)
    std::string equation;   ///< how the hand gradient was computed
};

struct GradientComparison {
    double tape_loss = 0;
    double hand_loss = 0;
    std::string reduction;  ///< "sum" or "mean"
    std::vector<GradientDifference> rows;
    double max_abs() const;
    double max_rel() const;
};

/// Runs the tape (nn::half_sse on model(inputs), ad::grad, the model's own
/// grad() untouched) and textbook_backward on the same model and batch.
template <class T>
GradientComparison compare_with_textbook(MLP<T>& model, const Array<T>& inputs, const Array<T>& targets,
                                         Reduction reduction = Reduction::sum);

/// The comparison as a table, one row per parameter, with the equation that
/// produced each hand gradient.
void print_comparison(std::ostream& out, const GradientComparison& comparison);

}  // namespace ad::nn
