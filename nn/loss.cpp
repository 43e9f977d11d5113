#include "nn/loss.hpp"

#include <cmath>

#include <fmt/format.h>

namespace ad::nn {
namespace {

/// Predictions and targets of one shape, at least one row.
template <class T>
void check_pair(const char* loss, const Var<T>& pred, const Var<T>& target, const char* pred_name,
                const char* target_name) {
    if (!pred.defined() || !target.defined()) throw tape_error(fmt::format("{}: an input is an empty Var", loss));
    if (!equal_shapes(pred.value(), target.value())) {  // not shape(): it builds a vector
        throw shape_error(fmt::format("{}: {} have shape {} but {} have shape {}; they must match", loss,
                                      pred_name, shape_string(pred.shape()), target_name,
                                      shape_string(target.shape())));
    }
    if (pred.dim() == 0 || pred.value().shape()[0] == 0 || pred.size() == 0) {
        throw value_error(fmt::format("{}: empty batch ({} have shape {})", loss, pred_name,
                                      shape_string(pred.shape())));
    }
}

template <class T>
Var<T> finite(const char* loss, Var<T> value, const Var<T>& pred) {
    T v = value.item();
    if (!std::isfinite(v)) {
        throw value_error(fmt::format("{}: the loss is {} for inputs of shape {}; the model has diverged or the "
                                      "data hold NaN or infinity",
                                      loss, v, shape_string(pred.shape())));
    }
    return value;
}

// The losses for either element type; the overloads below name them.
template <class T>
Var<T> checked_half_sse(const Var<T>& pred, const Var<T>& target, Reduction reduction) {
    check_pair("half_sse", pred, target, "predictions", "targets");
    return finite("half_sse", ad::half_sse(pred, target, reduction), pred);
}

template <class T>
Var<T> checked_mse(const Var<T>& pred, const Var<T>& target, Reduction reduction) {
    check_pair("mse", pred, target, "predictions", "targets");
    return finite("mse", ad::mse(pred, target, reduction), pred);
}

template <class T>
Var<T> checked_softmax_cross_entropy(const Var<T>& logits, const Var<T>& targets, Reduction reduction) {
    check_pair("softmax_cross_entropy", logits, targets, "logits", "targets");
    if (logits.dim() != 2) {
        throw shape_error(fmt::format("softmax_cross_entropy: logits have shape {}; expected (batch, classes)",
                                      shape_string(logits.shape())));
    }
    return finite("softmax_cross_entropy", ad::softmax_cross_entropy(logits, targets, reduction), logits);
}

template <class T>
Var<T> checked_softmax_cross_entropy(const Var<T>& logits, const std::vector<std::size_t>& classes, Reduction reduction) {
    if (!logits.defined()) throw tape_error("softmax_cross_entropy: the logits are an empty Var");
    Shape s = logits.shape();
    if (s.size() != 2 || s[0] != classes.size()) {
        throw shape_error(fmt::format("softmax_cross_entropy: logits have shape {} but there are {} class "
                                      "indices; expected logits (batch, classes) with one index per row",
                                      shape_string(s), classes.size()));
    }
    if (s[0] == 0) throw value_error("softmax_cross_entropy: empty batch (no rows)");
    for (std::size_t i = 0; i < classes.size(); ++i) {
        if (classes[i] >= s[1]) {
            throw value_error(fmt::format("softmax_cross_entropy: class index {} in row {} is out of range for "
                                          "logits of shape {}",
                                          classes[i], i, shape_string(s)));
        }
    }
    return finite("softmax_cross_entropy", ad::softmax_cross_entropy(logits, classes, reduction), logits);
}

template <class T>
Var<T> checked_binary_cross_entropy(const Var<T>& p, const Var<T>& target, Reduction reduction) {
    check_pair("binary_cross_entropy", p, target, "probabilities", "targets");
    return finite("binary_cross_entropy", ad::binary_cross_entropy(p, target, reduction), p);
}

}  // namespace

#define NN_LOSS_OVERLOADS(T)                                                                             \
    Var<T> half_sse(const Var<T>& pred, const Var<T>& target, Reduction reduction) {                     \
        return checked_half_sse(pred, target, reduction);                                                \
    }                                                                                                    \
    Var<T> mse(const Var<T>& pred, const Var<T>& target, Reduction reduction) {                          \
        return checked_mse(pred, target, reduction);                                                     \
    }                                                                                                    \
    Var<T> softmax_cross_entropy(const Var<T>& logits, const Var<T>& targets, Reduction reduction) {     \
        return checked_softmax_cross_entropy(logits, targets, reduction);                                \
    }                                                                                                    \
    Var<T> softmax_cross_entropy(const Var<T>& logits, const std::vector<std::size_t>& classes,          \
                                 Reduction reduction) {                                                  \
        return checked_softmax_cross_entropy(logits, classes, reduction);                                \
    }                                                                                                    \
    Var<T> binary_cross_entropy(const Var<T>& p, const Var<T>& target, Reduction reduction) {            \
        return checked_binary_cross_entropy(p, target, reduction);                                       \
    }

NN_LOSS_OVERLOADS(float)
NN_LOSS_OVERLOADS(double)

}  // namespace ad::nn
