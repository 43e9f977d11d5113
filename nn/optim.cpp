#include "nn/optim.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include <fmt/format.h>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xnoalias.hpp>

#include "autodiff/kernels.hpp"
#include "autodiff/profile.hpp"

namespace ad::nn {
namespace {

void check_option(const char* who, const char* name, double value, double lo, double hi, bool hi_open) {
    bool ok = std::isfinite(value) && value >= lo && (hi_open ? value < hi : value <= hi);
    if (!ok) {
        throw value_error(fmt::format("{}: {} is {}; it must be finite and in [{}, {}{}", who, name, value, lo, hi,
                                      hi_open ? ")" : "]"));
    }
}

void check_learning_rate(const char* who, double lr) {
    if (!std::isfinite(lr) || lr <= 0) {
        throw value_error(fmt::format("{}: learning rate is {}; it must be finite and positive", who, lr));
    }
}

/// The profile range of an optimizer's zero_grad, by kind(): a literal,
/// since a range keeps the name's pointer (no string made per step).
const char* zero_grad_range(const char* kind) {
    if (std::strcmp(kind, "SGD") == 0) return "SGD.zero_grad";
    if (std::strcmp(kind, "Adam") == 0) return "Adam.zero_grad";
    if (std::strcmp(kind, "AdamW") == 0) return "AdamW.zero_grad";
    return "Optimizer.zero_grad";
}

}  // namespace

template <class T>
Optimizer<T>::Optimizer(const char* who, std::vector<ParameterGroup<T>> groups, double learning_rate,
                        double weight_decay) {
    for (std::size_t g = 0; g < groups.size(); ++g) {
        auto& group = groups[g];
        double lr = group.learning_rate.value_or(learning_rate);
        double wd = group.weight_decay.value_or(weight_decay);
        check_learning_rate(who, lr);
        check_option(who, "weight_decay", wd, 0, HUGE_VAL, true);
        Group made{{}, T(lr), T(wd)};
        for (auto& p : group.parameters) {
            if (!p.var.defined() || !p.var.is_leaf() || !p.var.requires_grad()) {
                throw value_error(fmt::format("{}: parameter '{}' is not a parameter (ad::param)", who, p.name));
            }
            for (const auto& q : parameters_) {
                if (q.var.node_ptr() == p.var.node_ptr()) {
                    throw value_error(fmt::format("{}: parameter '{}' is given twice (also as '{}')", who, p.name, q.name));
                }
            }
            made.members.push_back(parameters_.size());
            group_of_.push_back(g);
            shapes_.emplace_back(p.var.value().shape());
            parameters_.push_back(std::move(p));
        }
        groups_.push_back(std::move(made));
    }
}

template <class T>
void Optimizer<T>::zero_grad() {
    ad::ProfileRange range(zero_grad_range(kind()));
    for (auto& p : parameters_) p.var.zero_grad();
}

template <class T>
void Optimizer<T>::set_learning_rate(T learning_rate) {
    check_learning_rate("optimizer", double(learning_rate));
    for (auto& g : groups_) g.learning_rate = learning_rate;
}

template <class T>
void Optimizer<T>::set_learning_rate(std::size_t group, T learning_rate) {
    check_learning_rate("optimizer", double(learning_rate));
    schedule_learning_rate(group, learning_rate);
}

template <class T>
void Optimizer<T>::schedule_learning_rate(std::size_t group, T learning_rate) {
    if (!std::isfinite(double(learning_rate)) || learning_rate < T(0)) {
        throw value_error(fmt::format("optimizer: scheduled learning rate is {}; it must be finite and not negative",
                                      double(learning_rate)));
    }
    if (group >= groups_.size()) {
        throw value_error(fmt::format("optimizer: no parameter group {} (it has {})", group, groups_.size()));
    }
    groups_[group].learning_rate = learning_rate;
}

template <class T>
void Optimizer<T>::make_state() {
    if (!state_.empty()) return;
    std::size_t slots = slot_names().size();
    std::vector<Array<T>> zeros;
    zeros.reserve(slots * parameters_.size());
    for (std::size_t s = 0; s < slots; ++s) {
        for (const auto& p : parameters_) zeros.push_back(xt::zeros<T>(p.var.value().shape()));
    }
    state_.swap(zeros);
}

template <class T>
std::vector<std::pair<std::string, const Array<T>*>> Optimizer<T>::state_arrays() const {
    std::vector<std::pair<std::string, const Array<T>*>> arrays;
    if (state_.empty()) return arrays;
    auto slots = slot_names();
    for (std::size_t s = 0; s < slots.size(); ++s) {
        for (std::size_t i = 0; i < parameters_.size(); ++i) {
            arrays.emplace_back(parameters_[i].name + "." + slots[s], &state_[s * parameters_.size() + i]);
        }
    }
    return arrays;
}

template <class T>
void Optimizer<T>::restore(std::size_t steps, const std::vector<T>& learning_rates, std::vector<Array<T>> state) {
    if (learning_rates.size() != groups_.size()) {
        throw value_error(fmt::format("{}: {} learning rates for {} parameter groups", kind(), learning_rates.size(),
                                      groups_.size()));
    }
    for (T lr : learning_rates) check_learning_rate(kind(), double(lr));
    const std::size_t slots = slot_names().size();
    if (!state.empty()) {
        if (state.size() != slots * parameters_.size()) {
            throw value_error(fmt::format("{}: {} state arrays for {} parameters and {} slots", kind(), state.size(),
                                          parameters_.size(), slots));
        }
        for (std::size_t k = 0; k < state.size(); ++k) {
            const auto& p = parameters_[k % parameters_.size()];
            if (!equal_shapes(state[k], p.var.value())) {
                throw shape_error(fmt::format("{}: state '{}.{}' has shape {}; the parameter has shape {}", kind(), p.name,
                                              slot_names()[k / parameters_.size()], shape_string_of(state[k]),
                                              shape_string_of(p.var.value())));
            }
        }
    }
    for (std::size_t g = 0; g < groups_.size(); ++g) groups_[g].learning_rate = learning_rates[g];
    steps_ = steps;
    state_ = std::move(state);
}

template <class T>
void Optimizer<T>::check_gradients(const char* who) {
    for (std::size_t i = 0; i < parameters_.size(); ++i) {
        Node& node = *parameters_[i].var.node_ptr();
        const Array<T>& grad = gradient(node);
        // backward() gives the gradient the value's shape; the sizes keep the
        // update in bounds should the value change shape after it. (Two full
        // shape comparisons per parameter took a fortieth of a small model's step.)
        if (!shapes_[i].equals(node.value.shape()) || grad.size() != node.value.size()) reject_shape(who, i);
        if (!kernels::all_finite(grad.data(), grad.size())) reject_not_finite(who, i);
    }
}

template <class T>
void Optimizer<T>::reject_shape(const char* who, std::size_t i) const {
    const auto& p = parameters_[i];
    throw shape_error(fmt::format("{}: parameter '{}' has shape {} and gradient shape {}; the optimizer "
                                  "was made for shape {}",
                                  who, p.name, shape_string(p.var.shape()), shape_string_of(p.var.grad()),
                                  shape_string(shapes_[i].to_shape())));
}

template <class T>
void Optimizer<T>::reject_not_finite(const char* who, std::size_t i) const {
    const auto& p = parameters_[i];
    const Array<T>& grad = p.var.grad();
    const T bad = *std::find_if(grad.data(), grad.data() + grad.size(), [](T g) { return !std::isfinite(g); });
    throw value_error(fmt::format("{}: the gradient of parameter '{}' (shape {}) holds {}; step "
                                  "skipped, parameters unchanged",
                                  who, p.name, shape_string(p.var.shape()), bad));
}

template <class T>
SGD<T>::SGD(std::vector<ParameterGroup<T>> groups, SGDOptions options)
    : Optimizer<T>("SGD", std::move(groups), options.learning_rate, options.weight_decay), options_(options) {
    check_option("SGD", "momentum", options.momentum, 0, 1, true);
}

template <class T>
std::vector<std::string> SGD<T>::slot_names() const {
    if (options_.momentum == 0) return {};
    return {"momentum_buffer"};
}

template <class T>
void SGD<T>::step() {
    // A profile range, so the profiler charges the step to the optimizer,
    // not to the next op.
    ad::ProfileRange range("SGD.step");
    // Once the gradients pass the checks, and the state is made, nothing
    // below can fail: the update runs in place, with no arrays made per step.
    this->check_gradients("SGD::step");
    const T mu = T(options_.momentum);
    const bool use_momentum = options_.momentum != 0;
    if (use_momentum) this->make_state();
    for (std::size_t i = 0; i < this->parameters_.size(); ++i) {
        auto& node = *this->parameters_[i].var.node_ptr();
        const auto& group = this->groups_[this->group_of_[i]];
        const T lr = group.learning_rate, wd = group.weight_decay;
        if (!use_momentum && wd == T(0)) {
            // Plain SGD: one axpy, on OpenBLAS's threads for a large layer;
            // xtensor's assignment cost more than the update itself on a small one.
            kernels::axpy(node.value.size(), -lr, this->gradient(node).data(), node.value.data());
            continue;
        }
        // The velocity starts at zero, so the first step's v = mu 0 + g is g.
        // One loop: g++ vectorises it, and it reads each array once where
        // xtensor's two assignments read the velocity twice.
        const T* grad = this->gradient(node).data();
        T* p = node.value.data();
        T* v = use_momentum ? this->state(0, i).data() : nullptr;
        for (std::size_t k = 0, n = node.value.size(); k < n; ++k) {
            const T g = grad[k] + wd * p[k];
            if (use_momentum) {
                v[k] = mu * v[k] + g;
                p[k] -= lr * v[k];
            } else {
                p[k] -= lr * g;
            }
        }
    }
    ++this->steps_;
}

template <class T>
Adam<T>::Adam(const char* who, std::vector<ParameterGroup<T>> groups, AdamOptions options, bool decoupled)
    : Optimizer<T>(who, std::move(groups), options.learning_rate, options.weight_decay),
      options_(options),
      decoupled_(decoupled) {
    check_option(who, "beta1", options.beta1, 0, 1, true);
    check_option(who, "beta2", options.beta2, 0, 1, true);
    if (!std::isfinite(options.eps) || options.eps <= 0) {
        throw value_error(fmt::format("{}: eps is {}; it must be finite and positive", who, options.eps));
    }
}

template <class T>
void Adam<T>::step() {
    ad::ProfileRange range(decoupled_ ? "AdamW.step" : "Adam.step");
    this->check_gradients(decoupled_ ? "AdamW::step" : "Adam::step");
    // The moments start at zero (the first step's m is then (1 - b1) g), made
    // before anything changes; after that nothing can fail, and each
    // parameter and its moments are updated in place.
    this->make_state();
    const T b1 = T(options_.beta1), b2 = T(options_.beta2), eps = T(options_.eps);
    const double t = double(this->steps_ + 1);
    const T correction1 = T(1 - std::pow(options_.beta1, t));
    const T correction2 = T(1 - std::pow(options_.beta2, t));
    for (std::size_t i = 0; i < this->parameters_.size(); ++i) {
        auto& node = *this->parameters_[i].var.node_ptr();
        const auto& group = this->groups_[this->group_of_[i]];
        const T lr = group.learning_rate, wd = group.weight_decay;
        const Array<T>& grad = this->gradient(node);
        Array<T>& p = node.value;
        Array<T>& m = this->state(0, i);
        Array<T>& v = this->state(1, i);
        // Three vectorised passes into the existing arrays: a fused loop like
        // SGD's took twice as long, as g++ does not vectorise its sqrt (errno).
        auto update = [&](const auto& g) {
            xt::noalias(m) = b1 * m + (T(1) - b1) * g;
            xt::noalias(v) = b2 * v + (T(1) - b2) * g * g;
            xt::noalias(p) -= lr * (m / correction1) / (xt::sqrt(v / correction2) + eps);
        };
        if (decoupled_) {
            if (wd != T(0)) p *= T(1) - lr * wd;
            update(grad);
        } else if (wd != T(0)) {
            update(grad + wd * p);  // read by the first two passes, before p changes
        } else {
            update(grad);  // without decay no pass reads p for 0 p
        }
    }
    ++this->steps_;
}

template class Optimizer<float>;
template class Optimizer<double>;
template class SGD<float>;
template class SGD<double>;
template class Adam<float>;
template class Adam<double>;
template class AdamW<float>;
template class AdamW<double>;

}  // namespace ad::nn
