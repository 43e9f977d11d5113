#pragma once
// Optimizers: step a model's parameters in place from the gradients that
// backward() accumulated. A step is all or nothing: the gradients are
// checked and the optimizer's state is made before any parameter changes,
// and the update that follows, in place (no arrays made per step), cannot
// fail; a step that throws leaves model and optimizer as they were.
//
//   SGD   g = grad + wd p;  v = mu v + g (v = g on the first step);  p <- p - lr v
//   Adam  g = grad + wd p;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
//         p <- p - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
// (PyTorch's torch.optim.SGD and Adam, with L2 weight decay.)

#include <cstddef>
#include <vector>

#include "nn/module.hpp"

namespace ad::nn {

template <class T>
class Optimizer {
public:
    explicit Optimizer(std::vector<NamedParameter<T>> parameters);
    virtual ~Optimizer() = default;

    /// One update from the current gradients. Throws value_error naming the
    /// parameter when a gradient is not finite, shape_error when a parameter
    /// changed shape since the optimizer was made.
    virtual void step() = 0;
    void zero_grad();

    const std::vector<NamedParameter<T>>& parameters() const { return parameters_; }
    T learning_rate() const { return learning_rate_; }
    /// Throws value_error for a rate that is not finite and positive.
    void set_learning_rate(T learning_rate);
    /// Steps taken.
    std::size_t steps() const { return steps_; }

protected:
    using Node = detail::Node<T>;
    /// The checks every step makes before it changes anything.
    void check_gradients(const char* who);
    /// A parameter's grad(), read straight from its node: the optimizer's
    /// parameters are parameters (checked when it was made) and never empty,
    /// so grad()'s own checks need not run again for each, every step.
    static const Array<T>& gradient(Node& parameter) {
        return parameter.grad_is_zero ? detail::written_grad(parameter) : parameter.grad->value;
    }
    /// Zeros of each parameter's shape: the optimizers' state before their first step.
    std::vector<Array<T>> zeros_like_parameters() const;
    [[noreturn, gnu::noinline]] void reject_shape(const char* who, std::size_t i) const;
    [[noreturn, gnu::noinline]] void reject_not_finite(const char* who, std::size_t i) const;

    std::vector<NamedParameter<T>> parameters_;
    std::vector<detail::SavedShape> shapes_;  // at construction
    T learning_rate_ = T(0);
    std::size_t steps_ = 0;
};

struct SGDOptions {
    double learning_rate = 0.1;
    double momentum = 0;
    double weight_decay = 0;
};

template <class T>
class SGD final : public Optimizer<T> {
public:
    SGD(std::vector<NamedParameter<T>> parameters, SGDOptions options = {});
    SGD(const Module<T>& model, SGDOptions options = {}) : SGD(model.named_parameters(), options) {}
    void step() override;
    const SGDOptions& options() const { return options_; }

private:
    SGDOptions options_;
    std::vector<Array<T>> velocity_;  // empty until the first step with momentum
};

struct AdamOptions {
    double learning_rate = 1e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0;
};

template <class T>
class Adam final : public Optimizer<T> {
public:
    Adam(std::vector<NamedParameter<T>> parameters, AdamOptions options = {});
    Adam(const Module<T>& model, AdamOptions options = {}) : Adam(model.named_parameters(), options) {}
    void step() override;
    const AdamOptions& options() const { return options_; }

private:
    AdamOptions options_;
    std::vector<Array<T>> m_;  // first moments
    std::vector<Array<T>> v_;  // second moments
};

extern template class Optimizer<float>;
extern template class Optimizer<double>;
extern template class SGD<float>;
extern template class SGD<double>;
extern template class Adam<float>;
extern template class Adam<double>;

}  // namespace ad::nn
