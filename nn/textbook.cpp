#include "nn/textbook.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <fmt/ostream.h>
#include <xtensor-blas/xlinalg.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xview.hpp>

#include "nn/loss.hpp"

namespace ad::nn {
namespace {

template <class T>
Array<T> logistic(const Array<T>& z) {
    return T(1) / (T(1) + xt::exp(-z));
}

}  // namespace

template <class T>
TextbookGradients<T> textbook_backward(const std::vector<Array<T>>& weights, const std::vector<Array<T>>& biases,
                                       const Array<T>& inputs, const Array<T>& targets, Reduction reduction) {
    const std::size_t L = weights.size();
    if (L == 0 || biases.size() != L) {
        throw value_error(fmt::format("textbook_backward: {} weights and {} biases; need one of each per layer", L,
                                      biases.size()));
    }
    if (inputs.dimension() != 2 || inputs.shape()[0] == 0) {
        throw shape_error(fmt::format("textbook_backward: inputs have shape {}; expected (batch, n0), batch > 0",
                                      shape_string_of(inputs)));
    }
    // Forward, keeping every A^l (A[0] = X): sigma'(Z^l) = A^l (1 - A^l) needs no Z.
    std::vector<Array<T>> A{inputs};
    for (std::size_t l = 1; l <= L; ++l) {
        const Array<T>& W = weights[l - 1];
        const Array<T>& b = biases[l - 1];
        const Array<T>& prev = A.back();
        if (W.dimension() != 2 || W.shape()[1] != prev.shape()[1] || b.dimension() != 1 ||
            b.shape()[0] != W.shape()[0]) {
            throw shape_error(fmt::format("textbook_backward: layer {}: W^{} {} and b^{} {} do not fit A^{} {}", l,
                                          l, shape_string_of(W), l, shape_string_of(b), l - 1,
                                          shape_string_of(prev)));
        }
        Array<T> Z = xt::linalg::dot(prev, xt::transpose(W));
        Z += b;  // broadcast over rows: 1 (b^l)^T
        A.push_back(logistic(Z));
    }
    const Array<T>& out = A.back();
    if (!equal_shapes(out, targets)) {
        throw shape_error(fmt::format("textbook_backward: output A^{} has shape {} but targets have shape {}", L,
                                      shape_string_of(out), shape_string_of(targets)));
    }
    const T scale = reduction == Reduction::mean ? T(1) / T(inputs.shape()[0]) : T(1);

    TextbookGradients<T> g;
    Array<T> error = out - targets;
    g.loss = T(0.5) * scale * xt::sum(error * error)();
    g.weight_grads.resize(L);
    g.bias_grads.resize(L);
    g.equations.resize(L);

    // (3): the output layer.
    Array<T> delta = error * out * (T(1) - out);
    for (std::size_t l = L; l >= 1; --l) {
        if (l < L) {
            // (5): the delta recursion, reusing Delta^(l+1) from the layer above.
            Array<T> back = xt::linalg::dot(delta, weights[l]);  // Delta^(l+1) W^(l+1)
            delta = back * A[l] * (T(1) - A[l]);
        }
        Array<T> dW = xt::linalg::dot(xt::transpose(delta), A[l - 1]);  // (Delta^l)^T A^(l-1)
        Array<T> db = xt::sum(delta, {0});                               // column sums
        g.weight_grads[l - 1] = scale * dW;
        g.bias_grads[l - 1] = scale * db;
        g.equations[l - 1] = l == L ? "(3)" : "(5)";
    }
    return g;
}

template <class T>
TextbookGradients<T> textbook_backward(const MLP<T>& model, const Array<T>& inputs, const Array<T>& targets,
                                       Reduction reduction) {
    std::vector<Array<T>> weights, biases;
    for (std::size_t l = 0; l < model.depth(); ++l) {
        if (model.activations()[l] != Activation::sigmoid) {
            throw value_error(fmt::format("textbook_backward: layer {} uses {}; the textbook derivation is for "
                                          "sigmoid on every layer",
                                          l + 1, activation_name(model.activations()[l])));
        }
        weights.push_back(model.linear(l).weight().value());
        biases.push_back(model.linear(l).bias().value());
    }
    return textbook_backward(weights, biases, inputs, targets, reduction);
}

double GradientComparison::max_abs() const {
    double m = 0;
    for (const auto& r : rows) m = std::max(m, r.max_abs);
    return m;
}

double GradientComparison::max_rel() const {
    double m = 0;
    for (const auto& r : rows) m = std::max(m, r.max_rel);
    return m;
}

namespace {

template <class T>
void measure(GradientDifference& row, const Array<T>& tape, const Array<T>& hand) {
    row.shape = shape_of(hand);
    if (!equal_shapes(tape, hand)) {
        throw shape_error(fmt::format("compare_with_textbook: {}: tape gradient {} vs hand gradient {}",
                                      row.parameter, shape_string_of(tape), shape_string_of(hand)));
    }
    auto t = tape.begin();
    for (auto h = hand.begin(); h != hand.end(); ++h, ++t) {
        double a = double(*t), b = double(*h);
        double diff = std::abs(a - b);
        double size = std::max(std::abs(a), std::abs(b));
        row.max_abs = std::max(row.max_abs, diff);
        if (size > 0) row.max_rel = std::max(row.max_rel, diff / size);
    }
}

}  // namespace

template <class T>
GradientComparison compare_with_textbook(MLP<T>& model, const Array<T>& inputs, const Array<T>& targets,
                                         Reduction reduction) {
    TextbookGradients<T> hand = textbook_backward(model, inputs, targets, reduction);

    Tape tape;  // our own: the caller's tape (if any) is current again when it goes
    EnableGrad recording;  // the comparison needs the tape even when called under NoGrad
    auto params = model.named_parameters();
    std::vector<Var<T>> vars;
    for (const auto& p : params) vars.push_back(p.var);
    Var<T> loss = nn::half_sse(model(inputs), targets, reduction);
    std::vector<Var<T>> grads = ad::grad(loss, vars);

    GradientComparison c;
    c.tape_loss = double(loss.item());
    c.hand_loss = double(hand.loss);
    c.reduction = reduction == Reduction::mean ? "mean" : "sum";
    const std::size_t L = model.depth();
    const std::string over_batch = reduction == Reduction::mean ? ", / B" : "";
    for (std::size_t i = 0; i < params.size(); ++i) {
        // Parameters come as layers.<2(l-1)>.weight, then .bias, for l = 1..L.
        std::size_t l = i / 2 + 1;
        bool is_weight = i % 2 == 0;
        GradientDifference row;
        row.parameter = params[i].name;
        row.symbol = fmt::format("dC/d{}^{}", is_weight ? "W" : "b", l);
        std::string delta = l == L ? fmt::format("Delta^{0} = (A^{0} - Y) (.) sigma'(Z^{0})", l)
                                   : fmt::format("Delta^{0} = (Delta^{1} W^{1}) (.) sigma'(Z^{0})", l, l + 1);
        row.equation = is_weight ? fmt::format("{} (Delta^{})^T A^{}, {}{}", hand.equations[l - 1], l, l - 1, delta,
                                               over_batch)
                                 : fmt::format("{} column sums of Delta^{}{}", hand.equations[l - 1], l, over_batch);
        measure(row, grads[i].value(), is_weight ? hand.weight_grads[l - 1] : hand.bias_grads[l - 1]);
        c.rows.push_back(row);
    }
    return c;
}

void print_comparison(std::ostream& out, const GradientComparison& c) {
    fmt::print(out, "tape vs hand-derived gradients ({} loss: tape {:.17g}, hand {:.17g})\n", c.reduction,
               c.tape_loss, c.hand_loss);
    fmt::print(out, "{:<16} {:<9} {:<8} {:>12} {:>12}  {}\n", "parameter", "textbook", "shape", "max abs", "max rel",
               "hand gradient by equation");
    for (const auto& r : c.rows) {
        fmt::print(out, "{:<16} {:<9} {:<8} {:>12.3e} {:>12.3e}  {}\n", r.parameter, r.symbol, shape_string(r.shape),
                   r.max_abs, r.max_rel, r.equation);
    }
    fmt::print(out, "(Delta includes sigma'(Z) = A (1 - A), Nielsen's convention; rows are samples)\n");
}

#define NN_TEXTBOOK_INSTANTIATE(T)                                                                           \
    template TextbookGradients<T> textbook_backward(const std::vector<Array<T>>&, const std::vector<Array<T>>&, \
                                                    const Array<T>&, const Array<T>&, Reduction);             \
    template TextbookGradients<T> textbook_backward(const MLP<T>&, const Array<T>&, const Array<T>&, Reduction); \
    template GradientComparison compare_with_textbook(MLP<T>&, const Array<T>&, const Array<T>&, Reduction);

NN_TEXTBOOK_INSTANTIATE(float)
NN_TEXTBOOK_INSTANTIATE(double)

}  // namespace ad::nn
