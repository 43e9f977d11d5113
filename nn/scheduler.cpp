#include "nn/scheduler.hpp"

#include <cmath>

#include <fmt/format.h>

namespace ad::nn {

template <class T>
LRScheduler<T>::LRScheduler(Optimizer<T>& optimizer) : optimizer_(optimizer) {
    for (std::size_t g = 0; g < optimizer.group_count(); ++g) base_.push_back(double(optimizer.learning_rate(g)));
}

template <class T>
void LRScheduler<T>::set_last_step(std::size_t t) {
    const double f = factor(t);
    if (!std::isfinite(f) || f < 0) {
        throw value_error(fmt::format("learning-rate schedule: the factor at step {} is {}; it must be finite and "
                                      "not negative",
                                      t, f));
    }
    // A rate of 0 is a valid point of a schedule (the first warmup step).
    for (std::size_t g = 0; g < base_.size(); ++g) optimizer_.schedule_learning_rate(g, T(base_[g] * f));
    last_step_ = t;
}

template <class T>
StepLR<T>::StepLR(Optimizer<T>& optimizer, std::size_t step_size, double gamma)
    : LRScheduler<T>(optimizer), step_size_(step_size), gamma_(gamma) {
    if (step_size == 0) throw value_error("StepLR: step_size is 0");
    if (!std::isfinite(gamma) || gamma <= 0) {
        throw value_error(fmt::format("StepLR: gamma is {}; it must be finite and positive", gamma));
    }
    this->set_last_step(0);
}

template <class T>
double StepLR<T>::factor(std::size_t t) const {
    return std::pow(gamma_, double(t / step_size_));
}

template <class T>
WarmupCosineLR<T>::WarmupCosineLR(Optimizer<T>& optimizer, std::size_t warmup, std::size_t total, double min_factor)
    : LRScheduler<T>(optimizer), warmup_(warmup), total_(total), min_factor_(min_factor) {
    if (total <= warmup) {
        throw value_error(fmt::format("WarmupCosineLR: total ({}) must exceed warmup ({})", total, warmup));
    }
    if (!(min_factor >= 0 && min_factor <= 1)) {
        throw value_error(fmt::format("WarmupCosineLR: min_factor is {}; it must be in [0, 1]", min_factor));
    }
    this->set_last_step(0);
}

template <class T>
double WarmupCosineLR<T>::factor(std::size_t t) const {
    if (t < warmup_) return double(t) / double(warmup_);
    if (t >= total_) return min_factor_;
    const double progress = double(t - warmup_) / double(total_ - warmup_);
    return min_factor_ + (1 - min_factor_) * 0.5 * (1 + std::cos(M_PI * progress));
}

template <class T>
LambdaLR<T>::LambdaLR(Optimizer<T>& optimizer, std::function<double(std::size_t)> factor)
    : LRScheduler<T>(optimizer), factor_(std::move(factor)) {
    if (!factor_) throw value_error("LambdaLR: the factor function is empty");
    this->set_last_step(0);
}

template <class T>
double LambdaLR<T>::factor(std::size_t t) const {
    return factor_(t);
}

template class LRScheduler<float>;
template class LRScheduler<double>;
template class StepLR<float>;
template class StepLR<double>;
template class WarmupCosineLR<float>;
template class WarmupCosineLR<double>;
template class LambdaLR<float>;
template class LambdaLR<double>;

}  // namespace ad::nn
