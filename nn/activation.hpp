#pragma once
// Elementwise activations as modules, and a name for each so models can be
// described by data (an MLP's activation, a reference case's "tanh").

#include <string>

#include "nn/module.hpp"

namespace ad::nn {

enum class Activation { sigmoid, tanh, relu, identity };

/// "sigmoid", "tanh", "relu", "identity".
std::string activation_name(Activation activation);
/// The inverse of activation_name; throws value_error for an unknown name.
Activation parse_activation(const std::string& name);

/// sigma(z) = 1 / (1 + e^-z): the textbook's activation.
template <class T>
class Sigmoid final : public Module<T> {
public:
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override { return "Sigmoid"; }
};

template <class T>
class Tanh final : public Module<T> {
public:
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override { return "Tanh"; }
};

template <class T>
class ReLU final : public Module<T> {
public:
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override { return "ReLU"; }
};

/// Passes its input through: the output layer of a regression net.
template <class T>
class Identity final : public Module<T> {
public:
    Var<T> forward(const Var<T>& x) override { return x; }
    std::string describe() const override { return "Identity"; }
};

template <class T>
ModulePtr<T> make_activation(Activation activation);

extern template class Sigmoid<float>;
extern template class Sigmoid<double>;
extern template class Tanh<float>;
extern template class Tanh<double>;
extern template class ReLU<float>;
extern template class ReLU<double>;

}  // namespace ad::nn
