#include "nn/dropout.hpp"

#include <fmt/format.h>

#include "nn/layer_norm.hpp"

namespace ad::nn {

template <class T>
Dropout<T>::Dropout(DropoutOptions options) : options_(options), generator_(options.seed()) {
    if (!(options_.p() >= 0 && options_.p() < 1)) {
        throw value_error(fmt::format("{}: p must lie in [0, 1), got {}", describe(), options_.p()));
    }
}

template <class T>
Var<T> Dropout<T>::forward(const Var<T>& x) {
    if (!x.defined()) throw tape_error(fmt::format("{}: the input is an empty Var", describe()));
    return dropout(x, options_.p(), this->is_training(), generator_);
}

template <class T>
std::string Dropout<T>::describe() const {
    return fmt::format("Dropout(p={}, inplace=False)", python_float(options_.p()));
}

template class Dropout<float>;
template class Dropout<double>;

}  // namespace ad::nn
