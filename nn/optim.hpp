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
//   AdamW p <- p (1 - lr wd), then Adam with g = grad
// (PyTorch's torch.optim.SGD, Adam with L2 weight decay, and AdamW.) Each
// parameter group has its own learning rate and weight decay.

#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "autodiff/memory/grad_buffers.hpp"
#include "nn/module.hpp"

namespace ad::nn {

/// A set of parameters with its own learning rate and weight decay (PyTorch's
/// parameter groups: e.g. no decay on biases and norms). Unset values take the
/// optimizer's options.
template <class T>
struct ParameterGroup {
    std::vector<NamedParameter<T>> parameters;
    std::optional<double> learning_rate;
    std::optional<double> weight_decay;
};

template <class T>
class Optimizer {
public:
    virtual ~Optimizer() = default;

    /// One update from the current gradients. Throws value_error naming the
    /// parameter when a gradient is not finite, shape_error when a parameter
    /// changed shape since the optimizer was made.
    virtual void step() = 0;
    void zero_grad();
    /// "SGD", "Adam", "AdamW": what a checkpoint records.
    virtual const char* kind() const = 0;

    /// Every parameter, group by group.
    const std::vector<NamedParameter<T>>& parameters() const { return parameters_; }
    std::size_t group_count() const { return groups_.size(); }
    /// The parameters of group g, as indices into parameters().
    const std::vector<std::size_t>& group_members(std::size_t g) const { return groups_.at(g).members; }
    T learning_rate(std::size_t group = 0) const { return groups_.at(group).learning_rate; }
    T weight_decay(std::size_t group = 0) const { return groups_.at(group).weight_decay; }
    /// Sets every group's rate. Throws value_error for a rate that is not finite and positive.
    void set_learning_rate(T learning_rate);
    void set_learning_rate(std::size_t group, T learning_rate);
    /// What a learning-rate schedule sets: finite and not negative (0 is a
    /// point of a warmup), else value_error.
    void schedule_learning_rate(std::size_t group, T learning_rate);
    /// Steps taken.
    std::size_t steps() const { return steps_; }

    /// The optimizer's per-parameter state (momentum, moments), named
    /// "<parameter>.<slot>" ("layers.0.weight.exp_avg"): empty before the first step.
    std::vector<std::pair<std::string, const Array<T>*>> state_arrays() const;
    /// The names of the state arrays a step makes, for every parameter ("exp_avg", "exp_avg_sq").
    virtual std::vector<std::string> slot_names() const = 0;
    /// Restores steps, learning rates and state (all or nothing; `state` empty
    /// or one array per parameter and slot, in state_arrays()' order, with the
    /// parameters' shapes). For checkpoints: see save_checkpoint.
    void restore(std::size_t steps, const std::vector<T>& learning_rates, std::vector<Array<T>> state);

protected:
    Optimizer(const char* who, std::vector<ParameterGroup<T>> groups, double learning_rate, double weight_decay);

    using Node = detail::Node<T>;
    struct Group {
        std::vector<std::size_t> members;
        T learning_rate;
        T weight_decay;
    };
    /// The checks every step makes before it changes anything.
    void check_gradients(const char* who);
    /// A parameter's grad(), read straight from its node: the optimizer's
    /// parameters are parameters (checked when it was made) and never empty,
    /// so grad()'s own checks need not run again for each, every step.
    static const Array<T>& gradient(Node& parameter) {
        return parameter.grad_is_zero ? detail::written_grad(parameter) : parameter.grad->value;
    }
    /// Makes the state (zeros, one array per slot and parameter) if it is not made yet.
    void make_state();
    /// The state array of `slot` for parameter i.
    Array<T>& state(std::size_t slot, std::size_t i) { return state_[slot * parameters_.size() + i]; }
    [[noreturn, gnu::noinline]] void reject_shape(const char* who, std::size_t i) const;
    [[noreturn, gnu::noinline]] void reject_not_finite(const char* who, std::size_t i) const;

    std::vector<NamedParameter<T>> parameters_;
    std::vector<std::size_t> group_of_;  // parameter i's group
    std::vector<Group> groups_;
    std::vector<detail::SavedShape> shapes_;  // at construction
    std::vector<Array<T>> state_;             // slot-major; empty before the first step
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
    SGD(std::vector<ParameterGroup<T>> groups, SGDOptions options = {});
    SGD(std::vector<NamedParameter<T>> parameters, SGDOptions options = {})
        : SGD(std::vector<ParameterGroup<T>>{{std::move(parameters), {}, {}}}, options) {}
    SGD(const Module<T>& model, SGDOptions options = {}) : SGD(model.named_parameters(), options) {}
    void step() override;
    const char* kind() const override { return "SGD"; }
    std::vector<std::string> slot_names() const override;
    const SGDOptions& options() const { return options_; }

private:
    SGDOptions options_;
};

struct AdamOptions {
    double learning_rate = 1e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0;
};

/// AdamW's defaults differ from Adam's in the weight decay only (PyTorch's 1e-2).
struct AdamWOptions : AdamOptions {
    AdamWOptions() { weight_decay = 1e-2; }
};

template <class T>
class Adam : public Optimizer<T> {
public:
    Adam(std::vector<ParameterGroup<T>> groups, AdamOptions options = {}) : Adam("Adam", std::move(groups), options, false) {}
    Adam(std::vector<NamedParameter<T>> parameters, AdamOptions options = {})
        : Adam(std::vector<ParameterGroup<T>>{{std::move(parameters), {}, {}}}, options) {}
    Adam(const Module<T>& model, AdamOptions options = {}) : Adam(model.named_parameters(), options) {}
    void step() override;
    const char* kind() const override { return decoupled_ ? "AdamW" : "Adam"; }
    std::vector<std::string> slot_names() const override { return {"exp_avg", "exp_avg_sq"}; }
    const AdamOptions& options() const { return options_; }

protected:
    /// decoupled: AdamW's decay, p <- p (1 - lr wd) before the Adam update,
    /// instead of Adam's L2 term wd p added to the gradient.
    Adam(const char* who, std::vector<ParameterGroup<T>> groups, AdamOptions options, bool decoupled);

private:
    AdamOptions options_;
    bool decoupled_;
};

/// Adam with decoupled weight decay (Loshchilov & Hutter; torch.optim.AdamW):
///   p <- p (1 - lr wd);  then Adam's update with the gradient alone.
template <class T>
class AdamW final : public Adam<T> {
public:
    AdamW(std::vector<ParameterGroup<T>> groups, AdamWOptions options = {})
        : Adam<T>("AdamW", std::move(groups), options, true) {}
    AdamW(std::vector<NamedParameter<T>> parameters, AdamWOptions options = {})
        : AdamW(std::vector<ParameterGroup<T>>{{std::move(parameters), {}, {}}}, options) {}
    AdamW(const Module<T>& model, AdamWOptions options = {}) : AdamW(model.named_parameters(), options) {}
};

extern template class Optimizer<float>;
extern template class Optimizer<double>;
extern template class SGD<float>;
extern template class SGD<double>;
extern template class Adam<float>;
extern template class Adam<double>;
extern template class AdamW<float>;
extern template class AdamW<double>;

}  // namespace ad::nn
