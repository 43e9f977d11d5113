#pragma once
// Recurrent layers with PyTorch's semantics, names, shapes and gate orders:
// GRUCell (gate rows r, z, n), LSTMCell (i, f, g, o), and GRU / LSTM over a
// (T, N, I) sequence with stacked layers. Every weight and bias starts
// U(-1/sqrt(hidden), 1/sqrt(hidden)), drawn with nn::uniform from the seed.
// Each step takes one GEMM for the hidden projection over all gates; the
// sequence layers take one GEMM for the input projection of all steps.

#include <cstdint>
#include <string>
#include <vector>

#include "nn/module.hpp"

namespace ad::nn {

struct GRUCellOptions {
    GRUCellOptions(long input_size, long hidden_size) : input_size_(input_size), hidden_size_(hidden_size) {}
    TAPEGRAD_ARG(long, input_size);
    TAPEGRAD_ARG(long, hidden_size);
    TAPEGRAD_ARG(bool, bias) = true;
    TAPEGRAD_ARG(std::uint64_t, seed) = 0;
};

struct LSTMCellOptions {
    LSTMCellOptions(long input_size, long hidden_size) : input_size_(input_size), hidden_size_(hidden_size) {}
    TAPEGRAD_ARG(long, input_size);
    TAPEGRAD_ARG(long, hidden_size);
    TAPEGRAD_ARG(bool, bias) = true;
    TAPEGRAD_ARG(std::uint64_t, seed) = 0;
};

struct GRUOptions {
    GRUOptions(long input_size, long hidden_size) : input_size_(input_size), hidden_size_(hidden_size) {}
    TAPEGRAD_ARG(long, input_size);
    TAPEGRAD_ARG(long, hidden_size);
    TAPEGRAD_ARG(long, num_layers) = 1;
    TAPEGRAD_ARG(bool, bias) = true;
    TAPEGRAD_ARG(std::uint64_t, seed) = 0;
};

struct LSTMOptions {
    LSTMOptions(long input_size, long hidden_size) : input_size_(input_size), hidden_size_(hidden_size) {}
    TAPEGRAD_ARG(long, input_size);
    TAPEGRAD_ARG(long, hidden_size);
    TAPEGRAD_ARG(long, num_layers) = 1;
    TAPEGRAD_ARG(bool, bias) = true;
    TAPEGRAD_ARG(std::uint64_t, seed) = 0;
};

/// torch.nn.GRUCell: x (N, I), h (N, H) -> h' (N, H).
///   r = sigma(x W_ir^T + b_ir + h W_hr^T + b_hr), z likewise,
///   n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn)), h' = (1 - z) * n + z * h.
/// Parameters "weight_ih" (3H, I), "weight_hh" (3H, H), "bias_ih" (3H), "bias_hh" (3H).
template <class T>
class GRUCell final : public Module<T> {
public:
    explicit GRUCell(const GRUCellOptions& options);
    GRUCell(long input_size, long hidden_size) : GRUCell(GRUCellOptions(input_size, hidden_size)) {}

    /// From h = 0.
    Var<T> forward(const Var<T>& x) override;
    Var<T> forward(const Var<T>& x, const Var<T>& h);
    std::string describe() const override;

    const GRUCellOptions& options() const { return options_; }
    const Var<T>& weight_ih() const { return weight_ih_; }
    const Var<T>& weight_hh() const { return weight_hh_; }
    const Var<T>& bias_ih() const { return bias_ih_; }
    const Var<T>& bias_hh() const { return bias_hh_; }

private:
    GRUCellOptions options_;
    Var<T> weight_ih_, weight_hh_, bias_ih_, bias_hh_;
};

template <class T>
struct LSTMState {
    Var<T> h;
    Var<T> c;
};

/// torch.nn.LSTMCell: gate rows i, f, g, o; c' = f c + i g, h' = o tanh(c').
/// Parameters "weight_ih" (4H, I), "weight_hh" (4H, H), "bias_ih" (4H), "bias_hh" (4H).
template <class T>
class LSTMCell final : public Module<T> {
public:
    explicit LSTMCell(const LSTMCellOptions& options);
    LSTMCell(long input_size, long hidden_size) : LSTMCell(LSTMCellOptions(input_size, hidden_size)) {}

    /// h' from the zero state (h = c = 0); the cell state is dropped.
    Var<T> forward(const Var<T>& x) override;
    LSTMState<T> forward(const Var<T>& x, const LSTMState<T>& state);
    std::string describe() const override;

    const LSTMCellOptions& options() const { return options_; }
    const Var<T>& weight_ih() const { return weight_ih_; }
    const Var<T>& weight_hh() const { return weight_hh_; }
    const Var<T>& bias_ih() const { return bias_ih_; }
    const Var<T>& bias_hh() const { return bias_hh_; }

private:
    LSTMCellOptions options_;
    Var<T> weight_ih_, weight_hh_, bias_ih_, bias_hh_;
};

template <class T>
struct GRUOutput {
    Var<T> output;  ///< (T, N, H): every step of the last layer
    Var<T> h_n;     ///< (num_layers, N, H)
};

template <class T>
struct LSTMOutput {
    Var<T> output, h_n, c_n;
};

/// torch.nn.GRU (seq-first): x (T, N, I); parameters "weight_ih_l<k>", "weight_hh_l<k>",
/// "bias_ih_l<k>", "bias_hh_l<k>" for each layer k.
template <class T>
class GRU final : public Module<T> {
public:
    explicit GRU(const GRUOptions& options);
    GRU(long input_size, long hidden_size) : GRU(GRUOptions(input_size, hidden_size)) {}

    /// h0 (num_layers, N, H); an empty Var is zeros.
    GRUOutput<T> forward(const Var<T>& x, const Var<T>& h0);
    /// The output (T, N, H) from h0 = 0.
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override;
    const GRUOptions& options() const { return options_; }

private:
    GRUOptions options_;
    std::vector<Var<T>> weight_ih_, weight_hh_, bias_ih_, bias_hh_;
};

/// torch.nn.LSTM (seq-first), parameters named as GRU's.
template <class T>
class LSTM final : public Module<T> {
public:
    explicit LSTM(const LSTMOptions& options);
    LSTM(long input_size, long hidden_size) : LSTM(LSTMOptions(input_size, hidden_size)) {}

    /// h0, c0 (num_layers, N, H); empty Vars are zeros.
    LSTMOutput<T> forward(const Var<T>& x, const Var<T>& h0, const Var<T>& c0);
    /// The output (T, N, H) from the zero state.
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override;
    const LSTMOptions& options() const { return options_; }

private:
    LSTMOptions options_;
    std::vector<Var<T>> weight_ih_, weight_hh_, bias_ih_, bias_hh_;
};

extern template class GRUCell<float>;
extern template class GRUCell<double>;
extern template class LSTMCell<float>;
extern template class LSTMCell<double>;
extern template class GRU<float>;
extern template class GRU<double>;
extern template class LSTM<float>;
extern template class LSTM<double>;

}  // namespace ad::nn
