#include "nn/sequential.hpp"

#include <fmt/format.h>

#include "nn/random.hpp"

namespace ad::nn {

template <class T>
Sequential<T>::Sequential(std::vector<ModulePtr<T>> layers) {
    for (std::size_t i = 0; i < layers.size(); ++i) {
        if (!layers[i]) throw value_error(fmt::format("Sequential: layer {} is null", i));
    }
    for (auto& layer : layers) add(std::move(layer));
}

template <class T>
Sequential<T>& Sequential<T>::add(ModulePtr<T> layer) {
    if (!layer) throw value_error("Sequential::add: the module is null");
    list_->push_back(layer);
    layers_.push_back(std::move(layer));
    find_fusions();
    return *this;
}

template <class T>
void Sequential<T>::find_fusions() {
    fused_with_next_.assign(layers_.size(), false);
    for (std::size_t i = 0; i + 1 < layers_.size(); ++i) {
        fused_with_next_[i] = dynamic_cast<const Linear<T>*>(layers_[i].get()) != nullptr &&
                              dynamic_cast<const Sigmoid<T>*>(layers_[i + 1].get()) != nullptr;
    }
}

namespace {

template <class E>
[[noreturn]] void rethrow_with(const E&, const std::string& message) {
    throw E(message);
}

}  // namespace

template <class T>
Var<T> Sequential<T>::forward(const Var<T>& x) {
    if (layers_.empty()) return x;
    // Each layer reads the previous one's output through `in`: starting from
    // a copy of x would count a reference to the data every step, with an
    // atomic operation for a constant (NodeRef).
    const Var<T>* in = &x;
    Var<T> a;
    for (std::size_t i = 0; i < layers_.size(); ++i, in = &a) {
        // The context string is built only on the error path: forward runs every step.
        auto where = [&] { return fmt::format("layers.{} ({})", i, layers_[i]->describe()); };
        try {
            // While a summary watches module calls, each layer runs as its own
            // call, so the Sigmoid shows as a row of its own.
            if (fused_with_next_[i] && !(ad::detail::recording_state.observe & ad::detail::observe_modules)) {
                // The Sigmoid cannot fail, so an error here is the Linear's: i stays its index.
                auto& linear = static_cast<Linear<T>&>(*layers_[i]);
                a = linear.call([&] { return linear.forward_sigmoid(*in); });
                ++i;
            } else {
                Module<T>& layer = *layers_[i];
                a = layer.call([&] { return layer.forward(*in); });
            }
        } catch (const shape_error& e) {
            rethrow_with(e, where() + ": " + e.what());
        } catch (const value_error& e) {
            rethrow_with(e, where() + ": " + e.what());
        } catch (const tape_error& e) {
            rethrow_with(e, where() + ": " + e.what());
        }
    }
    return a;
}

template <class T>
std::string Sequential<T>::describe() const {
    std::string s = "Sequential(";
    for (std::size_t i = 0; i < layers_.size(); ++i) {
        if (i) s += ", ";
        s += layers_[i]->describe();
    }
    return s + ")";
}

namespace {

std::vector<Activation> repeat(std::size_t layers, Activation activation, std::optional<Activation> output) {
    std::vector<Activation> acts(layers, activation);
    if (output && !acts.empty()) acts.back() = *output;
    return acts;
}

std::size_t layer_count(const std::vector<std::size_t>& sizes) {
    if (sizes.size() < 2) {
        throw value_error(fmt::format("MLP: needs at least an input and an output size, got {} sizes", sizes.size()));
    }
    return sizes.size() - 1;
}

}  // namespace

template <class T>
MLP<T>::MLP(const std::vector<std::size_t>& sizes, Activation activation, std::uint64_t seed,
            std::optional<Activation> output_activation)
    : MLP(sizes, repeat(layer_count(sizes), activation, output_activation), seed) {}

template <class T>
MLP<T>::MLP(const std::vector<std::size_t>& sizes, const std::vector<Activation>& activations, std::uint64_t seed)
    : sizes_(sizes), activations_(activations) {
    std::size_t layers = layer_count(sizes);
    if (activations.size() != layers) {
        throw value_error(fmt::format("MLP: {} sizes make {} layers but {} activations were given", sizes.size(),
                                      layers, activations.size()));
    }
    for (std::size_t l = 0; l < layers; ++l) {
        Init init = activations[l] == Activation::relu ? Init::he_uniform : Init::xavier_uniform;
        this->add(std::make_shared<Linear<T>>(sizes[l], sizes[l + 1], derive_seed(seed, l), init));
        this->add(make_activation<T>(activations[l]));
    }
}

template <class T>
Linear<T>& MLP<T>::linear(std::size_t l) const {
    return static_cast<Linear<T>&>(*this->layer(2 * l));
}

template class Sequential<float>;
template class Sequential<double>;
template class MLP<float>;
template class MLP<double>;

}  // namespace ad::nn
