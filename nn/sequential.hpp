#pragma once
// Sequential: modules applied in order; MLP: the Sequential of Linear layers
// and activations that the textbook draws. Parameters are named
// "layers.<i>.<name>" by the index of the module that owns them, as PyTorch's
// nn.Sequential names them, so layers.0 is the textbook's W^1 and layers.2 its W^2.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "nn/activation.hpp"
#include "nn/linear.hpp"
#include "nn/module.hpp"

namespace ad::nn {

template <class T>
class Sequential : public Module<T> {
public:
    Sequential() = default;
    explicit Sequential(std::vector<ModulePtr<T>> layers);

    /// Appends a module (shared: the same module can sit in two models).
    Sequential& add(ModulePtr<T> layer);
    template <class M, class = std::enable_if_t<std::is_base_of_v<Module<T>, std::decay_t<M>>>>
    Sequential& add(M&& layer) {
        return add(std::make_shared<std::decay_t<M>>(std::forward<M>(layer)));
    }

    /// Runs the layers in order. An error inside a layer is rethrown, same
    /// type, with the layer's name in front: "layers.2 (Linear(3, 1)): ...".
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override;

    std::size_t size() const { return layers_.size(); }
    const ModulePtr<T>& layer(std::size_t i) const { return layers_.at(i); }
    const std::vector<ModulePtr<T>>& layers() const { return layers_; }

private:
    std::vector<ModulePtr<T>> layers_;
    // The same modules, registered as the child "layers": what names them.
    std::shared_ptr<ModuleList<T>> list_ = this->register_module("layers", std::make_shared<ModuleList<T>>());
    // fused_with_next_[i]: layer i is a Linear and layer i + 1 a Sigmoid, run
    // as one op (Linear::forward_sigmoid). Found when layers are added, not
    // in every forward.
    std::vector<bool> fused_with_next_;
    void find_fusions();
};

/// The multi-layer perceptron: Linear(sizes[0], sizes[1]), activation,
/// Linear(sizes[1], sizes[2]), activation, ... The textbook's network is
/// MLP<double>({n0, n1, n2}): sigmoid on every layer, the output included.
template <class T>
class MLP : public Sequential<T> {
public:
    /// `activation` after every layer; `output_activation`, when given, after
    /// the last one instead (Activation::identity for regression). Weights
    /// are Xavier uniform, He uniform for ReLU layers, from `seed`.
    explicit MLP(const std::vector<std::size_t>& sizes, Activation activation = Activation::sigmoid,
                 std::uint64_t seed = 0, std::optional<Activation> output_activation = std::nullopt);
    /// One activation per layer (activations.size() == sizes.size() - 1).
    MLP(const std::vector<std::size_t>& sizes, const std::vector<Activation>& activations,
        std::uint64_t seed = 0);

    const std::vector<std::size_t>& sizes() const { return sizes_; }
    const std::vector<Activation>& activations() const { return activations_; }
    /// The Linear layer l (0-based): Sequential index 2 l.
    Linear<T>& linear(std::size_t l) const;
    std::size_t depth() const { return activations_.size(); }

private:
    std::vector<std::size_t> sizes_;
    std::vector<Activation> activations_;
};

extern template class Sequential<float>;
extern template class Sequential<double>;
extern template class MLP<float>;
extern template class MLP<double>;

}  // namespace ad::nn
