#pragma once
// Convolution and pooling over NCL / NCHW batches, with PyTorch's semantics
// and output sizes (F.conv1d, F.conv2d, F.max_pool2d, F.avg_pool2d).

#include <array>
#include <cstddef>

#include "autodiff/var.hpp"

namespace ad {

/// Of a 2-D convolution: (height, width) pairs, and the channel groups.
struct Conv2dOptions {
    std::array<std::size_t, 2> stride{1, 1};
    std::array<std::size_t, 2> padding{0, 0};  // zeros on both sides
    std::array<std::size_t, 2> dilation{1, 1};
    std::size_t groups = 1;
};

/// The cross-correlation of x (N, C, H, W) with weight (O, C / groups, kh, kw),
/// plus bias (O) (an empty Var for none): y (N, O, Ho, Wo),
/// Ho = (H + 2 padding - dilation (kh - 1) - 1) / stride + 1.
/// By im2col and one GEMM per image and group. VJP: x_bar = conv2d_input_grad
/// (col2im of W^T g), weight_bar = conv2d_weight_grad (g cols^T summed over
/// the batch), bias_bar = g summed over N, Ho, Wo; each of the three is an op
/// whose VJP is written with the others, so conv2d differentiates again.
template <class T>
Var<T> conv2d(const Var<T>& x, const Var<T>& weight, const Var<T>& bias = Var<T>(), const Conv2dOptions& options = {});

/// Of a 1-D convolution.
struct Conv1dOptions {
    std::size_t stride = 1;
    std::size_t padding = 0;
    std::size_t dilation = 1;
    std::size_t groups = 1;
};

/// The cross-correlation of x (N, C, L) with weight (O, C / groups, k), plus
/// bias (O): conv2d over a height of 1.
template <class T>
Var<T> conv1d(const Var<T>& x, const Var<T>& weight, const Var<T>& bias = Var<T>(), const Conv1dOptions& options = {});

/// Of a 2-D pooling window: stride 0 means the kernel size (PyTorch's default).
struct Pool2dOptions {
    std::array<std::size_t, 2> kernel{2, 2};
    std::array<std::size_t, 2> stride{0, 0};
    std::array<std::size_t, 2> padding{0, 0};
    /// avg_pool2d: padded zeros count in the divisor (PyTorch's default).
    bool count_include_pad = true;
};

/// The maximum of each window of x (N, C, H, W) (padding counts as -inf; NaN
/// propagates), y (N, C, Ho, Wo), Ho = (H + 2 padding - kernel) / stride + 1
/// (ceil_mode off). x_bar: g at each window's maximum (the first at ties),
/// summed where windows overlap (index_add, whose VJP is index_select).
template <class T> Var<T> max_pool2d(const Var<T>& x, const Pool2dOptions& options);

/// The mean of each window of x, divided by kh kw (count_include_pad) or by
/// the number of elements of x the window covers. x_bar: g / divisor spread
/// over each window (an op whose VJP is avg_pool2d again).
template <class T> Var<T> avg_pool2d(const Var<T>& x, const Pool2dOptions& options);

namespace detail {
/// The VJPs of conv2d as ops (see conv2d): the gradient with respect to the
/// input, of shape x_shape, and to the weight, of shape w_shape.
template <class T>
Var<T> conv2d_input_grad(const Var<T>& g, const Var<T>& weight, const Shape& x_shape, const Conv2dOptions& options);
template <class T>
Var<T> conv2d_weight_grad(const Var<T>& x, const Var<T>& g, const Shape& w_shape, const Conv2dOptions& options);
}  // namespace detail

}  // namespace ad
