#include "nn/linear.hpp"

#include <cmath>

#include <fmt/format.h>

#include "nn/random.hpp"

namespace ad::nn {

template <class T>
Array<T> init_weight(std::size_t rows, std::size_t cols, Init init, std::uint64_t seed) {
    double fan = init == Init::he_uniform ? double(cols) : double(cols + rows);
    double bound = std::sqrt(6.0 / fan);
    std::mt19937_64 rng(seed);
    Array<T> w = Array<T>::from_shape({rows, cols});
    for (auto& v : w) v = static_cast<T>(uniform(rng, -bound, bound));
    return w;
}

template <class T>
Linear<T>::Linear(std::size_t in, std::size_t out, std::uint64_t seed, Init init) : in_(in), out_(out) {
    if (in == 0 || out == 0) {
        throw value_error(fmt::format("Linear({}, {}): a layer needs at least one input and one output", in, out));
    }
    weight_ = this->register_parameter("weight", init_weight<T>(out, in, init, seed));
    bias_ = this->register_parameter("bias", Array<T>(xt::zeros<T>({out})));
}

template <class T>
Linear<T>::Linear(Array<T> weight, Array<T> bias) {
    if (weight.dimension() != 2 || bias.dimension() != 1 || bias.shape()[0] != weight.shape()[0] ||
        weight.size() == 0) {
        throw shape_error(fmt::format("Linear: weight {} and bias {} do not make a layer; expected (out, in) and (out)",
                                      shape_string_of(weight), shape_string_of(bias)));
    }
    out_ = weight.shape()[0];
    in_ = weight.shape()[1];
    weight_ = this->register_parameter("weight", std::move(weight));
    bias_ = this->register_parameter("bias", std::move(bias));
}

template <class T>
void Linear<T>::check_input(const Var<T>& x) const {
    if (!x.defined()) throw tape_error(fmt::format("{}: the input is an empty Var", describe()));
    const auto& s = x.value().shape();  // not x.shape(): that builds a vector, every step
    if (s.size() != 2 || s[1] != in_) {
        throw shape_error(fmt::format("{}: input has shape {}; expected (batch, {}) with rows as samples",
                                      describe(), shape_string_of(x.value()), in_));
    }
    if (s[0] == 0) {
        throw value_error(fmt::format("{}: empty batch (input has shape {})", describe(), shape_string_of(x.value())));
    }
}

template <class T>
Var<T> Linear<T>::forward(const Var<T>& x) {
    check_input(x);
    return linear(x, weight_, bias_);
}

template <class T>
Var<T> Linear<T>::forward_sigmoid(const Var<T>& x) {
    check_input(x);
    return linear_sigmoid(x, weight_, bias_);
}

template <class T>
std::string Linear<T>::describe() const {
    return fmt::format("Linear({}, {})", in_, out_);
}

template class Linear<float>;
template class Linear<double>;
template Array<float> init_weight(std::size_t, std::size_t, Init, std::uint64_t);
template Array<double> init_weight(std::size_t, std::size_t, Init, std::uint64_t);

}  // namespace ad::nn
