#include "nn/optim.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

#include <fmt/format.h>
#include <xtensor/xmath.hpp>
#include <xtensor/xnoalias.hpp>

#include "autodiff/kernels.hpp"

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

}  // namespace

template <class T>
Optimizer<T>::Optimizer(std::vector<NamedParameter<T>> parameters) : parameters_(std::move(parameters)) {
    for (const auto& p : parameters_) {
        if (!p.var.defined() || !p.var.is_leaf() || !p.var.requires_grad()) {
            throw value_error(fmt::format("optimizer: parameter '{}' is not a parameter (ad::param)", p.name));
        }
        shapes_.push_back(p.var.shape());
    }
    checked_gradients_.reserve(parameters_.size());
}

template <class T>
void Optimizer<T>::zero_grad() {
    for (auto& p : parameters_) p.var.zero_grad();
}

template <class T>
void Optimizer<T>::set_learning_rate(T learning_rate) {
    check_learning_rate("optimizer", double(learning_rate));
    learning_rate_ = learning_rate;
}

template <class T>
const std::vector<const Array<T>*>& Optimizer<T>::check_gradients(const char* who) {
    checked_gradients_.clear();
    for (std::size_t i = 0; i < parameters_.size(); ++i) {
        const auto& p = parameters_[i];
        const Array<T>& grad = p.var.grad();
        // Not p.var.shape(): that builds a Shape, every step.
        if (!same_extents(p.var.value().shape(), shapes_[i]) || !equal_shapes(grad, p.var.value())) {
            throw shape_error(fmt::format("{}: parameter '{}' has shape {} and gradient shape {}; the optimizer "
                                          "was made for shape {}",
                                          who, p.name, shape_string(p.var.shape()), shape_string_of(grad),
                                          shape_string(shapes_[i])));
        }
        if (kernels::all_finite(grad.data(), grad.size())) {
            checked_gradients_.push_back(&grad);
            continue;
        }
        const T bad = *std::find_if(grad.data(), grad.data() + grad.size(), [](T g) { return !std::isfinite(g); });
        throw value_error(fmt::format("{}: the gradient of parameter '{}' (shape {}) holds {}; step "
                                      "skipped, parameters unchanged",
                                      who, p.name, shape_string(p.var.shape()), bad));
    }
    return checked_gradients_;
}

template <class T>
void Optimizer<T>::commit(std::vector<Array<T>>& values) noexcept {
    for (std::size_t i = 0; i < parameters_.size(); ++i) std::swap(parameters_[i].var.mutable_value(), values[i]);
    ++steps_;
}

template <class T>
SGD<T>::SGD(std::vector<NamedParameter<T>> parameters, SGDOptions options)
    : Optimizer<T>(std::move(parameters)), options_(options) {
    check_learning_rate("SGD", options.learning_rate);
    check_option("SGD", "momentum", options.momentum, 0, 1, true);
    check_option("SGD", "weight_decay", options.weight_decay, 0, HUGE_VAL, true);
    this->learning_rate_ = T(options.learning_rate);
}

template <class T>
void SGD<T>::step() {
    // Once the gradients pass the checks nothing below can fail (short of
    // memory), so the update runs in place: no new parameter arrays per step.
    const auto& grads = this->check_gradients("SGD::step");
    const T lr = this->learning_rate_, mu = T(options_.momentum), wd = T(options_.weight_decay);
    const bool use_momentum = options_.momentum != 0;
    if (!use_momentum && wd == T(0)) {
        // Plain SGD: one axpy per parameter (shapes checked above), on
        // OpenBLAS's threads for a large layer; xtensor's assignment cost
        // more than the update itself on a small one.
        for (std::size_t i = 0; i < grads.size(); ++i) {
            Array<T>& value = this->parameters_[i].var.mutable_value();
            kernels::axpy(value.size(), -lr, grads[i]->data(), value.data());
        }
        ++this->steps_;
        return;
    }
    NoGrad no_grad;  // nothing an optimizer computes belongs on a tape
    const bool first_step = velocity_.empty();
    if (use_momentum && first_step) velocity_.resize(this->parameters_.size());
    for (std::size_t i = 0; i < this->parameters_.size(); ++i) {
        Array<T>& value = this->parameters_[i].var.mutable_value();
        Array<T> direction = *grads[i] + wd * value;
        if (use_momentum) {
            if (first_step) {
                velocity_[i] = direction;
            } else {
                xt::noalias(velocity_[i]) = mu * velocity_[i] + direction;
            }
            xt::noalias(value) -= lr * velocity_[i];
        } else {
            xt::noalias(value) -= lr * direction;
        }
    }
    ++this->steps_;
}

template <class T>
Adam<T>::Adam(std::vector<NamedParameter<T>> parameters, AdamOptions options)
    : Optimizer<T>(std::move(parameters)), options_(options) {
    check_learning_rate("Adam", options.learning_rate);
    check_option("Adam", "beta1", options.beta1, 0, 1, true);
    check_option("Adam", "beta2", options.beta2, 0, 1, true);
    check_option("Adam", "weight_decay", options.weight_decay, 0, HUGE_VAL, true);
    if (!std::isfinite(options.eps) || options.eps <= 0) {
        throw value_error(fmt::format("Adam: eps is {}; it must be finite and positive", options.eps));
    }
    this->learning_rate_ = T(options.learning_rate);
}

template <class T>
void Adam<T>::step() {
    const auto& grads = this->check_gradients("Adam::step");
    NoGrad no_grad;
    const T lr = this->learning_rate_, b1 = T(options_.beta1), b2 = T(options_.beta2), eps = T(options_.eps),
            wd = T(options_.weight_decay);
    const double t = double(this->steps_ + 1);
    const T correction1 = T(1 - std::pow(options_.beta1, t));
    const T correction2 = T(1 - std::pow(options_.beta2, t));
    std::vector<Array<T>> values, m, v;
    for (std::size_t i = 0; i < this->parameters_.size(); ++i) {
        const auto& p = this->parameters_[i].var;
        Array<T> g = wd != T(0) ? Array<T>(*grads[i] + wd * p.value()) : *grads[i];
        if (m_.empty()) {
            m.push_back((T(1) - b1) * g);
            v.push_back((T(1) - b2) * g * g);
        } else {
            m.push_back(b1 * m_[i] + (T(1) - b1) * g);
            v.push_back(b2 * v_[i] + (T(1) - b2) * g * g);
        }
        values.push_back(p.value() - lr * (m.back() / correction1) / (xt::sqrt(v.back() / correction2) + eps));
    }
    this->commit(values);
    m_.swap(m);
    v_.swap(v);
}

template class Optimizer<float>;
template class Optimizer<double>;
template class SGD<float>;
template class SGD<double>;
template class Adam<float>;
template class Adam<double>;

}  // namespace ad::nn
