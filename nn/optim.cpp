#include "nn/optim.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

#include <fmt/format.h>
#include <xtensor/xbuilder.hpp>
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
        shapes_.emplace_back(p.var.value().shape());
    }
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
std::vector<Array<T>> Optimizer<T>::zeros_like_parameters() const {
    std::vector<Array<T>> zeros;
    zeros.reserve(parameters_.size());
    for (const auto& p : parameters_) zeros.push_back(xt::zeros<T>(p.var.value().shape()));
    return zeros;
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
    // Once the gradients pass the checks, and the state is made, nothing
    // below can fail: the update runs in place, with no arrays made per step.
    this->check_gradients("SGD::step");
    const T lr = this->learning_rate_, mu = T(options_.momentum), wd = T(options_.weight_decay);
    const bool use_momentum = options_.momentum != 0;
    if (!use_momentum && wd == T(0)) {
        // Plain SGD: one axpy per parameter (shapes checked above), on
        // OpenBLAS's threads for a large layer; xtensor's assignment cost
        // more than the update itself on a small one.
        for (const auto& parameter : this->parameters_) {
            auto& node = *parameter.var.node_ptr();
            kernels::axpy(node.value.size(), -lr, this->gradient(node).data(), node.value.data());
        }
        ++this->steps_;
        return;
    }
    // The velocity starts at zero, so the first step's v = mu 0 + g is g.
    // One loop per parameter: g++ vectorises it, and it took two thirds of
    // the time of xtensor's two assignments (mnist, momentum and decay).
    if (use_momentum && velocity_.empty()) velocity_ = this->zeros_like_parameters();
    for (std::size_t i = 0; i < this->parameters_.size(); ++i) {
        auto& node = *this->parameters_[i].var.node_ptr();
        const T* grad = this->gradient(node).data();
        Array<T>& value = node.value;
        T* p = value.data();
        T* v = use_momentum ? velocity_[i].data() : nullptr;
        for (std::size_t k = 0, n = value.size(); k < n; ++k) {
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
    this->check_gradients("Adam::step");
    // The moments start at zero (the first step's m is then (1 - b1) g), made
    // before anything changes; after that nothing can fail, and each
    // parameter and its moments are updated in place.
    if (m_.empty()) {
        std::vector<Array<T>> m = this->zeros_like_parameters(), v = this->zeros_like_parameters();
        m_.swap(m);
        v_.swap(v);
    }
    const T lr = this->learning_rate_, b1 = T(options_.beta1), b2 = T(options_.beta2), eps = T(options_.eps),
            wd = T(options_.weight_decay);
    const double t = double(this->steps_ + 1);
    const T correction1 = T(1 - std::pow(options_.beta1, t));
    const T correction2 = T(1 - std::pow(options_.beta2, t));
    for (std::size_t i = 0; i < this->parameters_.size(); ++i) {
        auto& node = *this->parameters_[i].var.node_ptr();
        const Array<T>& grad = this->gradient(node);
        Array<T>& p = node.value;
        Array<T>& m = m_[i];
        Array<T>& v = v_[i];
        // Three vectorised passes into the existing arrays: a fused loop like
        // SGD's took twice as long, as g++ does not vectorise its sqrt (errno).
        auto update = [&](const auto& g) {
            xt::noalias(m) = b1 * m + (T(1) - b1) * g;
            xt::noalias(v) = b2 * v + (T(1) - b2) * g * g;
            xt::noalias(p) -= lr * (m / correction1) / (xt::sqrt(v / correction2) + eps);
        };
        // Without weight decay g is the gradient itself: no pass reads p for 0 p.
        if (wd != T(0)) {
            update(grad + wd * p);  // read by the first two passes, before p changes
        } else {
            update(grad);
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

}  // namespace ad::nn
