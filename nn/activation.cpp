#include "nn/activation.hpp"

#include <fmt/format.h>

namespace ad::nn {

std::string activation_name(Activation activation) {
    switch (activation) {
        case Activation::sigmoid: return "sigmoid";
        case Activation::tanh: return "tanh";
        case Activation::relu: return "relu";
        case Activation::identity: return "identity";
    }
    return "unknown";
}

Activation parse_activation(const std::string& name) {
    for (Activation a : {Activation::sigmoid, Activation::tanh, Activation::relu, Activation::identity}) {
        if (activation_name(a) == name) return a;
    }
    throw value_error(fmt::format(
        "parse_activation: unknown activation '{}' (expected sigmoid, tanh, relu or identity)", name));
}

template <class T>
Var<T> Sigmoid<T>::forward(const Var<T>& x) { return sigmoid(x); }
template <class T>
Var<T> Tanh<T>::forward(const Var<T>& x) { return ad::tanh(x); }
template <class T>
Var<T> ReLU<T>::forward(const Var<T>& x) { return relu(x); }

template <class T>
ModulePtr<T> make_activation(Activation activation) {
    switch (activation) {
        case Activation::sigmoid: return std::make_shared<Sigmoid<T>>();
        case Activation::tanh: return std::make_shared<Tanh<T>>();
        case Activation::relu: return std::make_shared<ReLU<T>>();
        case Activation::identity: return std::make_shared<Identity<T>>();
    }
    throw value_error("make_activation: unknown activation");
}

template class Sigmoid<float>;
template class Sigmoid<double>;
template class Tanh<float>;
template class Tanh<double>;
template class ReLU<float>;
template class ReLU<double>;
template ModulePtr<float> make_activation(Activation);
template ModulePtr<double> make_activation(Activation);

}  // namespace ad::nn
