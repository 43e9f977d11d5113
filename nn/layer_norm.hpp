#pragma once
// LayerNorm: torch.nn.LayerNorm. Normalises each sample over its trailing
// dimensions `normalized_shape` (biased variance), then scales and shifts:
//   y = (x - mean) / sqrt(var + eps) * weight + bias
// weight (ones) and bias (zeros) have normalized_shape; forward is ad::layer_norm.

#include <string>
#include <vector>

#include "nn/module.hpp"

namespace ad::nn {

struct LayerNormOptions {
    LayerNormOptions(std::vector<std::size_t> normalized_shape) : normalized_shape_(std::move(normalized_shape)) {}
    TAPEGRAD_ARG(std::vector<std::size_t>, normalized_shape);
    TAPEGRAD_ARG(double, eps) = 1e-5;
    TAPEGRAD_ARG(bool, elementwise_affine) = true;
};

template <class T>
class LayerNorm final : public Module<T> {
public:
    explicit LayerNorm(LayerNormOptions options);
    /// LayerNorm(normalized_shape, eps), as torch.nn.LayerNorm(normalized_shape, eps).
    LayerNorm(std::vector<std::size_t> normalized_shape, double eps = 1e-5);

    /// x (..., *normalized_shape) -> the same shape.
    Var<T> forward(const Var<T>& x) override;
    /// `LayerNorm((64,), eps=1e-05, elementwise_affine=True)`.
    std::string describe() const override;

    const LayerNormOptions& options() const { return options_; }
    /// Empty Vars without elementwise_affine.
    const Var<T>& weight() const { return weight_; }
    const Var<T>& bias() const { return bias_; }

private:
    LayerNormOptions options_;
    Var<T> weight_;
    Var<T> bias_;
};

/// A double as Python's repr prints it (1e-05, 0.1, 1.0): for describe().
std::string python_float(double value);

extern template class LayerNorm<float>;
extern template class LayerNorm<double>;

}  // namespace ad::nn
