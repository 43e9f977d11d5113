#include "nn/recurrent.hpp"

#include <cmath>

#include <fmt/format.h>

#include "autodiff/ops/all.hpp"
#include "nn/random.hpp"

namespace ad::nn {

namespace {

/// A (rows, cols) or (rows) array of U(-bound, bound) drawn from derive_seed(seed, index).
template <class T>
Array<T> draw(std::vector<std::size_t> shape, double bound, std::uint64_t seed, std::uint64_t index) {
    std::mt19937_64 rng(derive_seed(seed, index));
    Array<T> a = Array<T>::from_shape(shape);
    for (auto& v : a) v = static_cast<T>(uniform(rng, -bound, bound));
    return a;
}

void check_sizes(const std::string& name, long input_size, long hidden_size, long num_layers = 1) {
    if (input_size <= 0 || hidden_size <= 0 || num_layers <= 0) {
        throw value_error(fmt::format("{}({}, {}, num_layers={}): sizes must be positive", name, input_size,
                                      hidden_size, num_layers));
    }
}

template <class T>
Var<T> zeros_var(std::size_t n, std::size_t h) {
    return constant(Array<T>(xt::zeros<T>({n, h})));
}

/// x W^T (+ b): one GEMM over all gates.
template <class T>
Var<T> project(const Var<T>& x, const Var<T>& w, const Var<T>& b) {
    return b.defined() ? linear(x, w, b) : matmul(x, w, false, true);
}

/// One GRU step from gi = x W_ih^T + b_ih (N, 3H) and h (N, H): the gates in one fused op.
template <class T>
Var<T> gru_step(const Var<T>& gi, const Var<T>& h, const Var<T>& w_hh, const Var<T>& b_hh) {
    return gru_cell_gates(gi, project(h, w_hh, b_hh), h);
}

/// One LSTM step from gi = x W_ih^T + b_ih (N, 4H) and the state.
template <class T>
LSTMState<T> lstm_step(const Var<T>& gi, const LSTMState<T>& s, const Var<T>& w_hh, const Var<T>& b_hh) {
    std::vector<Var<T>> g = chunk(gi + project(s.h, w_hh, b_hh), 4, 1);
    Var<T> c = sigmoid(g[1]) * s.c + sigmoid(g[0]) * tanh(g[2]);
    Var<T> h = sigmoid(g[3]) * tanh(c);
    return {h, c};
}

template <class T>
void check_empty(const std::string& who, const Var<T>& v, const char* what) {
    if (!v.defined()) throw tape_error(fmt::format("{}: {} is an empty Var", who, what));
}

template <class T>
void check_2d(const std::string& who, const Var<T>& v, const char* what, std::size_t cols, const char* expected) {
    check_empty(who, v, what);
    const auto& s = v.value().shape();
    if (s.size() != 2 || s[1] != cols) {
        throw shape_error(fmt::format("{}: {} has shape {}; expected {}", who, what, shape_string_of(v.value()),
                                      fmt::format(expected, cols)));
    }
}

template <class T>
void check_state(const std::string& who, const Var<T>& v, const char* what, std::size_t n, std::size_t h) {
    const auto& s = v.value().shape();
    if (s.size() != 2 || s[0] != n || s[1] != h) {
        throw shape_error(
            fmt::format("{}: {} has shape {}; expected ({}, {})", who, what, shape_string_of(v.value()), n, h));
    }
}

template <class T>
void check_sequence(const std::string& who, const Var<T>& x, std::size_t input) {
    check_empty(who, x, "input");
    const auto& s = x.value().shape();
    if (s.size() != 3 || s[2] != input) {
        throw shape_error(
            fmt::format("{}: input has shape {}; expected (T, N, {})", who, shape_string_of(x.value()), input));
    }
    if (s[0] == 0 || s[1] == 0) {
        throw value_error(fmt::format("{}: empty sequence or batch (input has shape {})", who,
                                      shape_string_of(x.value())));
    }
}

template <class T>
void check_layers_state(const std::string& who, const Var<T>& v, const char* what, std::size_t layers, std::size_t n,
                        std::size_t h) {
    if (!v.defined()) return;
    const auto& s = v.value().shape();
    if (s.size() != 3 || s[0] != layers || s[1] != n || s[2] != h) {
        throw shape_error(fmt::format("{}: {} has shape {}; expected ({}, {}, {})", who, what,
                                      shape_string_of(v.value()), layers, n, h));
    }
}

/// Layer l's state (N, H) from a (L, N, H) state, or zeros when it is empty.
template <class T>
Var<T> layer_state(const Var<T>& s, std::size_t l, std::size_t n, std::size_t h) {
    if (!s.defined()) return zeros_var<T>(n, h);
    return reshape(slice(s, 0, l, l + 1), {long(n), long(h)});
}

/// The T consecutive blocks of `n` rows of v (T*n, cols), by halving: slice's VJP pads its
/// cotangent to the sliced value's size, so T slices of v would cost T full-size pads in the
/// backward sweep (O(T^2)); halving costs two per level, O(T log T).
template <class T>
void split_steps(const Var<T>& v, std::size_t steps, std::size_t n, std::vector<Var<T>>& out) {
    if (steps == 1) {
        out.push_back(v);
        return;
    }
    const std::size_t half = steps / 2;
    split_steps(rows(v, 0, half * n), half, n, out);
    split_steps(rows(v, half * n, steps * n), steps - half, n, out);
}

std::string recurrent_repr(const char* name, long in, long hidden, long layers, bool bias) {
    std::string s = fmt::format("{}({}, {}", name, in, hidden);
    if (layers != 1) s += fmt::format(", num_layers={}", layers);
    if (!bias) s += ", bias=False";
    return s + ")";
}

}  // namespace

// --- GRUCell ----------------------------------------------------------------------

template <class T>
GRUCell<T>::GRUCell(const GRUCellOptions& o) : options_(o) {
    check_sizes("GRUCell", o.input_size(), o.hidden_size());
    const std::size_t in = o.input_size(), h = o.hidden_size();
    const double bound = 1.0 / std::sqrt(double(h));
    weight_ih_ = this->register_parameter("weight_ih", draw<T>({3 * h, in}, bound, o.seed(), 0));
    weight_hh_ = this->register_parameter("weight_hh", draw<T>({3 * h, h}, bound, o.seed(), 1));
    if (o.bias()) {
        bias_ih_ = this->register_parameter("bias_ih", draw<T>({3 * h}, bound, o.seed(), 2));
        bias_hh_ = this->register_parameter("bias_hh", draw<T>({3 * h}, bound, o.seed(), 3));
    }
}

template <class T>
Var<T> GRUCell<T>::forward(const Var<T>& x) {
    check_2d(describe(), x, "input", options_.input_size(), "(N, {})");
    return forward(x, zeros_var<T>(x.value().shape()[0], options_.hidden_size()));
}

template <class T>
Var<T> GRUCell<T>::forward(const Var<T>& x, const Var<T>& h) {
    check_2d(describe(), x, "input", options_.input_size(), "(N, {})");
    check_empty(describe(), h, "h");
    check_state(describe(), h, "h", x.value().shape()[0], options_.hidden_size());
    return gru_step(project(x, weight_ih_, bias_ih_), h, weight_hh_, bias_hh_);
}

template <class T>
std::string GRUCell<T>::describe() const {
    return recurrent_repr("GRUCell", options_.input_size(), options_.hidden_size(), 1, options_.bias());
}

// --- LSTMCell ---------------------------------------------------------------------

template <class T>
LSTMCell<T>::LSTMCell(const LSTMCellOptions& o) : options_(o) {
    check_sizes("LSTMCell", o.input_size(), o.hidden_size());
    const std::size_t in = o.input_size(), h = o.hidden_size();
    const double bound = 1.0 / std::sqrt(double(h));
    weight_ih_ = this->register_parameter("weight_ih", draw<T>({4 * h, in}, bound, o.seed(), 0));
    weight_hh_ = this->register_parameter("weight_hh", draw<T>({4 * h, h}, bound, o.seed(), 1));
    if (o.bias()) {
        bias_ih_ = this->register_parameter("bias_ih", draw<T>({4 * h}, bound, o.seed(), 2));
        bias_hh_ = this->register_parameter("bias_hh", draw<T>({4 * h}, bound, o.seed(), 3));
    }
}

template <class T>
Var<T> LSTMCell<T>::forward(const Var<T>& x) {
    check_2d(describe(), x, "input", options_.input_size(), "(N, {})");
    const std::size_t n = x.value().shape()[0], h = options_.hidden_size();
    return forward(x, LSTMState<T>{zeros_var<T>(n, h), zeros_var<T>(n, h)}).h;
}

template <class T>
LSTMState<T> LSTMCell<T>::forward(const Var<T>& x, const LSTMState<T>& state) {
    check_2d(describe(), x, "input", options_.input_size(), "(N, {})");
    check_empty(describe(), state.h, "h");
    check_empty(describe(), state.c, "c");
    const std::size_t n = x.value().shape()[0], h = options_.hidden_size();
    check_state(describe(), state.h, "h", n, h);
    check_state(describe(), state.c, "c", n, h);
    return lstm_step(project(x, weight_ih_, bias_ih_), state, weight_hh_, bias_hh_);
}

template <class T>
std::string LSTMCell<T>::describe() const {
    return recurrent_repr("LSTMCell", options_.input_size(), options_.hidden_size(), 1, options_.bias());
}

// --- GRU, LSTM over a sequence ------------------------------------------------------

/// weight_ih_l<k>, weight_hh_l<k>, bias_ih_l<k>, bias_hh_l<k> for each layer k,
/// the k-th layer's arrays drawn from derive_seed(seed, 4k + 0..3).
#define TAPEGRAD_REGISTER_LAYERS(GATES)                                                                       \
    do {                                                                                                     \
        const std::size_t h = o.hidden_size();                                                               \
        const double bound = 1.0 / std::sqrt(double(h));                                                    \
        for (long l = 0; l < o.num_layers(); ++l) {                                                          \
            const std::size_t in = l == 0 ? std::size_t(o.input_size()) : h;                                 \
            const std::uint64_t k = 4 * std::uint64_t(l);                                                    \
            weight_ih_.push_back(this->register_parameter(fmt::format("weight_ih_l{}", l),                   \
                                                          draw<T>({GATES * h, in}, bound, o.seed(), k)));    \
            weight_hh_.push_back(this->register_parameter(fmt::format("weight_hh_l{}", l),                   \
                                                          draw<T>({GATES * h, h}, bound, o.seed(), k + 1))); \
            if (o.bias()) {                                                                                  \
                bias_ih_.push_back(this->register_parameter(fmt::format("bias_ih_l{}", l),                   \
                                                            draw<T>({GATES * h}, bound, o.seed(), k + 2)));  \
                bias_hh_.push_back(this->register_parameter(fmt::format("bias_hh_l{}", l),                   \
                                                            draw<T>({GATES * h}, bound, o.seed(), k + 3)));  \
            } else {                                                                                         \
                bias_ih_.emplace_back();                                                                     \
                bias_hh_.emplace_back();                                                                     \
            }                                                                                                \
        }                                                                                                    \
    } while (false)

template <class T>
GRU<T>::GRU(const GRUOptions& o) : options_(o) {
    check_sizes("GRU", o.input_size(), o.hidden_size(), o.num_layers());
    TAPEGRAD_REGISTER_LAYERS(std::size_t(3));
}

template <class T>
LSTM<T>::LSTM(const LSTMOptions& o) : options_(o) {
    check_sizes("LSTM", o.input_size(), o.hidden_size(), o.num_layers());
    TAPEGRAD_REGISTER_LAYERS(std::size_t(4));
}

#undef TAPEGRAD_REGISTER_LAYERS

template <class T>
GRUOutput<T> GRU<T>::forward(const Var<T>& x, const Var<T>& h0) {
    const std::string who = describe();
    check_sequence(who, x, options_.input_size());
    const std::size_t steps = x.value().shape()[0], n = x.value().shape()[1], h = options_.hidden_size();
    const std::size_t layers = options_.num_layers();
    check_layers_state(who, h0, "h0", layers, n, h);

    Var<T> input = reshape(x, {long(steps * n), long(options_.input_size())});  // (T*N, I)
    std::vector<Var<T>> last;
    for (std::size_t l = 0; l < layers; ++l) {
        Var<T> gi = project(input, weight_ih_[l], bias_ih_[l]);  // (T*N, 3H): all steps in one GEMM
        // The recurrence as one op: back through time in one pass, W_hh's gradient in one GEMM.
        input = gru_sequence(gi, layer_state(h0, l, n, h), weight_hh_[l], bias_hh_[l]);  // (T*N, H)
        last.push_back(rows(input, (steps - 1) * n, steps * n));
    }
    return {reshape(input, {long(steps), long(n), long(h)}), stack(last, 0)};
}

template <class T>
Var<T> GRU<T>::forward(const Var<T>& x) {
    return forward(x, Var<T>()).output;
}

template <class T>
std::string GRU<T>::describe() const {
    return recurrent_repr("GRU", options_.input_size(), options_.hidden_size(), options_.num_layers(),
                          options_.bias());
}

template <class T>
LSTMOutput<T> LSTM<T>::forward(const Var<T>& x, const Var<T>& h0, const Var<T>& c0) {
    const std::string who = describe();
    check_sequence(who, x, options_.input_size());
    const std::size_t steps = x.value().shape()[0], n = x.value().shape()[1], h = options_.hidden_size();
    const std::size_t layers = options_.num_layers();
    check_layers_state(who, h0, "h0", layers, n, h);
    check_layers_state(who, c0, "c0", layers, n, h);

    Var<T> input = reshape(x, {long(steps * n), long(options_.input_size())});
    std::vector<Var<T>> last_h, last_c;
    for (std::size_t l = 0; l < layers; ++l) {
        Var<T> gi = project(input, weight_ih_[l], bias_ih_[l]);  // (T*N, 4H)
        std::vector<Var<T>> gis;
        split_steps(gi, steps, n, gis);
        LSTMState<T> state{layer_state(h0, l, n, h), layer_state(c0, l, n, h)};
        std::vector<Var<T>> outs;
        outs.reserve(steps);
        for (std::size_t t = 0; t < steps; ++t) {
            state = lstm_step(gis[t], state, weight_hh_[l], bias_hh_[l]);
            outs.push_back(state.h);
        }
        last_h.push_back(state.h);
        last_c.push_back(state.c);
        input = concatenate(outs, 0);
    }
    return {reshape(input, {long(steps), long(n), long(h)}), stack(last_h, 0), stack(last_c, 0)};
}

template <class T>
Var<T> LSTM<T>::forward(const Var<T>& x) {
    return forward(x, Var<T>(), Var<T>()).output;
}

template <class T>
std::string LSTM<T>::describe() const {
    return recurrent_repr("LSTM", options_.input_size(), options_.hidden_size(), options_.num_layers(),
                          options_.bias());
}

template class GRUCell<float>;
template class GRUCell<double>;
template class LSTMCell<float>;
template class LSTMCell<double>;
template class GRU<float>;
template class GRU<double>;
template class LSTM<float>;
template class LSTM<double>;

}  // namespace ad::nn
