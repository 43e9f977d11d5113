#pragma once
// Batch normalisation layers, as torch.nn's: BatchNorm1d over (N, C) or
// (N, C, L), BatchNorm2d over (N, C, H, W), each channel normalised by
//   y = (x - mean_c) / sqrt(var_c + eps) * weight_c + bias_c
// with the batch's statistics in training mode (biased variance; the running
// statistics move towards the batch's mean and unbiased variance by
// `momentum`) and the running statistics in eval mode. ad::batch_norm does
// the math; these layers own the parameters and buffers:
//   weight (C) ones, bias (C) zeros                       when affine
//   running_mean (C) zeros, running_var (C) ones,
//   num_batches_tracked (0-d, training forwards so far)   when track_running_stats
// Without running statistics the batch's are used in eval mode too (PyTorch).

#include <optional>
#include <string>

#include "nn/module.hpp"

namespace ad::nn {

struct BatchNormOptions {
    BatchNormOptions(long num_features) : num_features_(num_features) {}  // NOLINT: implicit, as torch's
    TAPEGRAD_ARG(long, num_features);
    TAPEGRAD_ARG(double, eps) = 1e-5;
    /// std::nullopt: a cumulative average (momentum 1 / num_batches_tracked), as PyTorch's None.
    TAPEGRAD_ARG(std::optional<double>, momentum) = 0.1;
    TAPEGRAD_ARG(bool, affine) = true;
    TAPEGRAD_ARG(bool, track_running_stats) = true;
};

/// What BatchNorm1d and BatchNorm2d share; they differ in the input ranks they accept.
template <class T>
class BatchNormBase : public Module<T> {
public:
    Var<T> forward(const Var<T>& x) override;
    /// "BatchNorm2d(8, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)".
    std::string describe() const override;

    const BatchNormOptions& options() const { return options_; }
    /// Empty Vars when not affine.
    const Var<T>& weight() const { return weight_; }
    const Var<T>& bias() const { return bias_; }
    /// The buffers (null without track_running_stats); load_parameters writes into them.
    const std::shared_ptr<Array<T>>& running_mean() const { return running_mean_; }
    const std::shared_ptr<Array<T>>& running_var() const { return running_var_; }
    const std::shared_ptr<Array<T>>& num_batches_tracked() const { return num_batches_tracked_; }

protected:
    BatchNormBase(BatchNormOptions options, const char* name);
    /// Whether x's rank is one this layer takes, and the shapes it takes in words.
    virtual bool accepts_rank(std::size_t rank) const = 0;
    virtual std::string expected_shape() const = 0;

private:
    BatchNormOptions options_;
    const char* name_;
    Var<T> weight_;
    Var<T> bias_;
    std::shared_ptr<Array<T>> running_mean_;
    std::shared_ptr<Array<T>> running_var_;
    std::shared_ptr<Array<T>> num_batches_tracked_;
};

/// torch.nn.BatchNorm1d: x (N, C) or (N, C, L).
template <class T>
class BatchNorm1d final : public BatchNormBase<T> {
public:
    explicit BatchNorm1d(BatchNormOptions options);
    explicit BatchNorm1d(long num_features) : BatchNorm1d(BatchNormOptions(num_features)) {}

private:
    bool accepts_rank(std::size_t rank) const override { return rank == 2 || rank == 3; }
    std::string expected_shape() const override;
};

/// torch.nn.BatchNorm2d: x (N, C, H, W).
template <class T>
class BatchNorm2d final : public BatchNormBase<T> {
public:
    explicit BatchNorm2d(BatchNormOptions options);
    explicit BatchNorm2d(long num_features) : BatchNorm2d(BatchNormOptions(num_features)) {}

private:
    bool accepts_rank(std::size_t rank) const override { return rank == 4; }
    std::string expected_shape() const override;
};

extern template class BatchNormBase<float>;
extern template class BatchNormBase<double>;
extern template class BatchNorm1d<float>;
extern template class BatchNorm1d<double>;
extern template class BatchNorm2d<float>;
extern template class BatchNorm2d<double>;

}  // namespace ad::nn
