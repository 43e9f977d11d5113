#include "nn/layer_norm.hpp"

#include <cmath>

#include <fmt/format.h>

namespace ad::nn {

std::string python_float(double value) {
    if (std::isfinite(value) && value == std::floor(value) && std::abs(value) < 1e16) {
        return fmt::format("{:.1f}", value);
    }
    return fmt::format("{}", value);  // shortest round trip; fmt writes 1e-05 as Python does
}

template <class T>
LayerNorm<T>::LayerNorm(LayerNormOptions options) : options_(std::move(options)) {
    const Shape& shape = options_.normalized_shape();
    if (shape.empty()) {
        throw value_error(fmt::format("{}: normalized_shape must have at least one dimension", describe()));
    }
    for (std::size_t d : shape) {
        if (d == 0) throw value_error(fmt::format("{}: normalized_shape has no elements", describe()));
    }
    if (!(options_.eps() >= 0)) {
        throw value_error(fmt::format("{}: eps must not be negative", describe()));
    }
    if (options_.elementwise_affine()) {
        weight_ = this->register_parameter("weight", Array<T>(xt::ones<T>(shape)));
        bias_ = this->register_parameter("bias", Array<T>(xt::zeros<T>(shape)));
    }
}

template <class T>
LayerNorm<T>::LayerNorm(std::vector<std::size_t> normalized_shape, double eps)
    : LayerNorm(LayerNormOptions(std::move(normalized_shape)).eps(eps)) {}

template <class T>
Var<T> LayerNorm<T>::forward(const Var<T>& x) {
    if (!x.defined()) throw tape_error(fmt::format("{}: the input is an empty Var", describe()));
    const auto& s = x.value().shape();
    const Shape& n = options_.normalized_shape();
    bool fits = s.size() >= n.size();
    for (std::size_t i = 0; fits && i < n.size(); ++i) fits = s[s.size() - n.size() + i] == n[i];
    if (!fits) {
        throw shape_error(fmt::format("{}: input has shape {}; expected (*, {}) ending in normalized_shape",
                                      describe(), shape_string_of(x.value()), fmt::join(n, ", ")));
    }
    return layer_norm(x, n, weight_, bias_, static_cast<T>(options_.eps()));
}

template <class T>
std::string LayerNorm<T>::describe() const {
    return fmt::format("LayerNorm({}, eps={}, elementwise_affine={})", shape_string(options_.normalized_shape()),
                       python_float(options_.eps()), options_.elementwise_affine() ? "True" : "False");
}

template class LayerNorm<float>;
template class LayerNorm<double>;

}  // namespace ad::nn
