#pragma once
// Linear: the fully connected layer, rows are samples.
//   y = x W^T + b        x: (batch, in), W: (out, in), b: (out), y: (batch, out)
// W is stored (out, in) as PyTorch and the textbook do; the product is one
// GEMM with BLAS's transpose flag, never a materialised transpose.

#include <cstdint>
#include <string>

#include "nn/module.hpp"

namespace ad::nn {

/// How a layer's weights are drawn. Biases start at zero.
enum class Init {
    /// Glorot & Bengio: U(-a, a), a = sqrt(6 / (in + out)); keeps sigmoid and
    /// tanh activations' variance steady through the layers.
    xavier_uniform,
    /// He et al.: U(-a, a), a = sqrt(6 / in); for ReLU, which zeroes half its inputs.
    he_uniform,
};

template <class T>
class Linear final : public Module<T> {
public:
    /// Weights drawn from `init` with `seed`: the same seed gives the same
    /// weights on every run and platform.
    Linear(std::size_t in, std::size_t out, std::uint64_t seed = 0, Init init = Init::xavier_uniform);
    /// A layer holding the given weight (out, in) and bias (out).
    Linear(Array<T> weight, Array<T> bias);

    Var<T> forward(const Var<T>& x) override;
    /// sigmoid(forward(x)) as one op (ad::linear_sigmoid): what Sequential
    /// runs for this layer when a Sigmoid follows it.
    Var<T> forward_sigmoid(const Var<T>& x);
    std::string describe() const override;

    std::size_t in_features() const { return in_; }
    std::size_t out_features() const { return out_; }
    const Var<T>& weight() const { return weight_; }
    const Var<T>& bias() const { return bias_; }

private:
    void check_input(const Var<T>& x) const;

    std::size_t in_;
    std::size_t out_;
    Var<T> weight_;
    Var<T> bias_;
};

/// A (rows, cols) array drawn from `init` for a layer with `cols` inputs and `rows` outputs.
template <class T>
Array<T> init_weight(std::size_t rows, std::size_t cols, Init init, std::uint64_t seed);

extern template class Linear<float>;
extern template class Linear<double>;

}  // namespace ad::nn
