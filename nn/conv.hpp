#pragma once
// Convolution layers, pooling and Flatten, as torch.nn's (names, shapes,
// defaults, initialisation): thin wrappers over the engine's conv1d, conv2d,
// max_pool2d, avg_pool2d and reshape that check the input and name the layer
// in their errors.
//
//   Conv2d   x (N, C, H, W) -> (N, O, OH, OW)   weight (O, C/groups, kh, kw), bias (O)
//   Conv1d   x (N, C, L)    -> (N, O, OL)       weight (O, C/groups, k),      bias (O)
//   MaxPool2d, AvgPool2d   (N, C, H, W) or (C, H, W), no parameters
//   Flatten  dims start_dim..end_dim merged into one (channel-major, C order)
//
// OH = floor((H + 2 padding - dilation (kernel - 1) - 1) / stride) + 1.
// Weight and bias start U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in =
// C/groups * kernel area: PyTorch's kaiming_uniform(a = sqrt 5) and its bias rule.

#include <cstdint>
#include <string>

#include "nn/module.hpp"

namespace ad::nn {

struct Conv2dOptions {
    Conv2dOptions(long in_channels, long out_channels, Size2 kernel_size)
        : in_channels_(in_channels), out_channels_(out_channels), kernel_size_(kernel_size) {}
    TAPEGRAD_ARG(long, in_channels);
    TAPEGRAD_ARG(long, out_channels);
    TAPEGRAD_ARG(Size2, kernel_size);
    TAPEGRAD_ARG(Size2, stride) = 1;
    TAPEGRAD_ARG(Size2, padding) = 0;
    TAPEGRAD_ARG(Size2, dilation) = 1;
    TAPEGRAD_ARG(long, groups) = 1;
    TAPEGRAD_ARG(bool, bias) = true;
    /// Seeds the initial weight (nn::derive_seed(seed, 0)) and bias (derive_seed(seed, 1)).
    TAPEGRAD_ARG(std::uint64_t, seed) = 0;
};

/// torch.nn.Conv2d: y = conv2d(x, weight, bias) (ad::conv2d).
template <class T>
class Conv2d final : public Module<T> {
public:
    explicit Conv2d(Conv2dOptions options);
    Conv2d(long in_channels, long out_channels, Size2 kernel_size);

    /// x (N, C, H, W) with C = in_channels -> (N, out_channels, OH, OW).
    Var<T> forward(const Var<T>& x) override;
    /// "Conv2d(1, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))", as PyTorch prints it.
    std::string describe() const override;

    const Var<T>& weight() const { return weight_; }
    /// An empty Var when the layer has no bias.
    const Var<T>& bias() const { return bias_; }
    const Conv2dOptions& options() const { return options_; }

private:
    Conv2dOptions options_;
    Var<T> weight_;
    Var<T> bias_;
};

struct Conv1dOptions {
    Conv1dOptions(long in_channels, long out_channels, long kernel_size)
        : in_channels_(in_channels), out_channels_(out_channels), kernel_size_(kernel_size) {}
    TAPEGRAD_ARG(long, in_channels);
    TAPEGRAD_ARG(long, out_channels);
    TAPEGRAD_ARG(long, kernel_size);
    TAPEGRAD_ARG(long, stride) = 1;
    TAPEGRAD_ARG(long, padding) = 0;
    TAPEGRAD_ARG(long, dilation) = 1;
    TAPEGRAD_ARG(long, groups) = 1;
    TAPEGRAD_ARG(bool, bias) = true;
    TAPEGRAD_ARG(std::uint64_t, seed) = 0;
};

/// torch.nn.Conv1d: y = conv1d(x, weight, bias) (ad::conv1d).
template <class T>
class Conv1d final : public Module<T> {
public:
    explicit Conv1d(Conv1dOptions options);
    Conv1d(long in_channels, long out_channels, long kernel_size);

    /// x (N, C, L) with C = in_channels -> (N, out_channels, OL).
    Var<T> forward(const Var<T>& x) override;
    /// "Conv1d(4, 8, kernel_size=(3,), stride=(1,))".
    std::string describe() const override;

    const Var<T>& weight() const { return weight_; }
    const Var<T>& bias() const { return bias_; }
    const Conv1dOptions& options() const { return options_; }

private:
    Conv1dOptions options_;
    Var<T> weight_;
    Var<T> bias_;
};

struct MaxPool2dOptions {
    MaxPool2dOptions(Size2 kernel_size) : kernel_size_(kernel_size) {}  // NOLINT: implicit, as torch's
    TAPEGRAD_ARG(Size2, kernel_size);
    /// std::nullopt (the default): the kernel size.
    TAPEGRAD_ARG(PoolStride, stride) = std::nullopt;
    TAPEGRAD_ARG(Size2, padding) = 0;
};

/// torch.nn.MaxPool2d (dilation 1, ceil_mode off): the max of each window (ad::max_pool2d).
template <class T>
class MaxPool2d final : public Module<T> {
public:
    explicit MaxPool2d(MaxPool2dOptions options);
    explicit MaxPool2d(Size2 kernel_size) : MaxPool2d(MaxPool2dOptions(kernel_size)) {}

    /// x (N, C, H, W) or (C, H, W).
    Var<T> forward(const Var<T>& x) override;
    /// "MaxPool2d(kernel_size=2, stride=2, padding=0)".
    std::string describe() const override;
    const MaxPool2dOptions& options() const { return options_; }

private:
    MaxPool2dOptions options_;
};

struct AvgPool2dOptions {
    AvgPool2dOptions(Size2 kernel_size) : kernel_size_(kernel_size) {}  // NOLINT: implicit, as torch's
    TAPEGRAD_ARG(Size2, kernel_size);
    TAPEGRAD_ARG(PoolStride, stride) = std::nullopt;
    TAPEGRAD_ARG(Size2, padding) = 0;
    /// Padding counts as zeros in each window's divisor (true) or is left out.
    TAPEGRAD_ARG(bool, count_include_pad) = true;
};

/// torch.nn.AvgPool2d (ceil_mode off, no divisor_override): the mean of each window (ad::avg_pool2d).
template <class T>
class AvgPool2d final : public Module<T> {
public:
    explicit AvgPool2d(AvgPool2dOptions options);
    explicit AvgPool2d(Size2 kernel_size) : AvgPool2d(AvgPool2dOptions(kernel_size)) {}

    /// x (N, C, H, W) or (C, H, W).
    Var<T> forward(const Var<T>& x) override;
    /// "AvgPool2d(kernel_size=2, stride=2, padding=0)".
    std::string describe() const override;
    const AvgPool2dOptions& options() const { return options_; }

private:
    AvgPool2dOptions options_;
};

/// torch.nn.Flatten: axes start_dim..end_dim (negative count from the end)
/// merged into one, in C order; a reshape, so its VJP is a reshape back.
template <class T>
class Flatten final : public Module<T> {
public:
    explicit Flatten(long start_dim = 1, long end_dim = -1);

    Var<T> forward(const Var<T>& x) override;
    /// "Flatten(start_dim=1, end_dim=-1)".
    std::string describe() const override;
    long start_dim() const { return start_dim_; }
    long end_dim() const { return end_dim_; }

private:
    long start_dim_;
    long end_dim_;
};

extern template class Conv2d<float>;
extern template class Conv2d<double>;
extern template class Conv1d<float>;
extern template class Conv1d<double>;
extern template class MaxPool2d<float>;
extern template class MaxPool2d<double>;
extern template class AvgPool2d<float>;
extern template class AvgPool2d<double>;
extern template class Flatten<float>;
extern template class Flatten<double>;

}  // namespace ad::nn
