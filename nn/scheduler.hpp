#pragma once
// Learning-rate schedules: each sets every parameter group's rate to its
// rate at the schedule's start times a factor of the step count, like
// torch.optim.lr_scheduler. Call step() after each optimizer step (or epoch,
// whichever the schedule counts); the factor of step 0 applies from the start.
//
//   StepLR            gamma^floor(t / step_size)
//   WarmupCosineLR    t / warmup during warmup, then min + (1 - min) (1 + cos(pi p)) / 2,
//                     p = (t - warmup) / (total - warmup), held at min after total
//   LambdaLR          f(t), a function of the user's

#include <cstddef>
#include <functional>
#include <vector>

#include "nn/optim.hpp"

namespace ad::nn {

template <class T>
class LRScheduler {
public:
    virtual ~LRScheduler() = default;
    LRScheduler(const LRScheduler&) = delete;
    LRScheduler& operator=(const LRScheduler&) = delete;

    /// Counts one step and sets the rates for it.
    void step() { set_last_step(last_step_ + 1); }
    /// Steps counted so far.
    std::size_t last_step() const { return last_step_; }
    /// Sets the count (a checkpoint resuming) and the rates for it.
    void set_last_step(std::size_t t);
    /// The factor at step t, which multiplies each group's base rate.
    virtual double factor(std::size_t t) const = 0;
    /// Each group's rate when the schedule was made.
    const std::vector<double>& base_learning_rates() const { return base_; }

protected:
    explicit LRScheduler(Optimizer<T>& optimizer);

private:
    Optimizer<T>& optimizer_;
    std::vector<double> base_;
    std::size_t last_step_ = 0;
};

/// The rate times gamma every step_size steps (torch's StepLR).
template <class T>
class StepLR final : public LRScheduler<T> {
public:
    StepLR(Optimizer<T>& optimizer, std::size_t step_size, double gamma = 0.1);
    double factor(std::size_t t) const override;

private:
    std::size_t step_size_;
    double gamma_;
};

/// Linear warmup from 0 over `warmup` steps, then a cosine from the base rate
/// down to min_factor times it at `total` steps (the transformer schedule).
template <class T>
class WarmupCosineLR final : public LRScheduler<T> {
public:
    WarmupCosineLR(Optimizer<T>& optimizer, std::size_t warmup, std::size_t total, double min_factor = 0);
    double factor(std::size_t t) const override;

private:
    std::size_t warmup_, total_;
    double min_factor_;
};

/// The factor is the user's function of the step (torch's LambdaLR); a factor
/// that is negative or not finite is a value_error naming the step.
template <class T>
class LambdaLR final : public LRScheduler<T> {
public:
    LambdaLR(Optimizer<T>& optimizer, std::function<double(std::size_t)> factor);
    double factor(std::size_t t) const override;

private:
    std::function<double(std::size_t)> factor_;
};

extern template class LRScheduler<float>;
extern template class LRScheduler<double>;
extern template class StepLR<float>;
extern template class StepLR<double>;
extern template class WarmupCosineLR<float>;
extern template class WarmupCosineLR<double>;
extern template class LambdaLR<float>;
extern template class LambdaLR<double>;

}  // namespace ad::nn
