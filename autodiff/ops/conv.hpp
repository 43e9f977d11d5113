#pragma once
// Convolution and pooling over NCL / NCHW batches, with PyTorch's semantics
// (F.conv1d, F.conv2d, F.max_pool2d, F.avg_pool2d; ceil_mode off) and output
// sizes: out = floor((in + 2 padding - dilation (kernel - 1) - 1) / stride) + 1.

#include <optional>

#include "autodiff/memory/kept.hpp"
#include "autodiff/record.hpp"

namespace ad {

/// A per-axis size of a 2-D op (stride, padding, dilation, kernel): one int
/// for both axes, or {h, w}.
struct Size2 {
    long h = 0, w = 0;
    Size2(long both) : h(both), w(both) {}  // NOLINT: implicit, as PyTorch takes an int or a pair
    Size2(long h_, long w_) : h(h_), w(w_) {}
};

/// A pooling stride: like Size2, or std::nullopt (the default) for the kernel.
struct PoolStride {
    std::optional<Size2> value;
    PoolStride() = default;
    PoolStride(std::nullopt_t) {}                       // NOLINT: implicit, as PyTorch's stride=None
    PoolStride(long both) : value(Size2(both)) {}       // NOLINT
    PoolStride(long h, long w) : value(Size2(h, w)) {}
    PoolStride(Size2 s) : value(s) {}                   // NOLINT
};

/// F.conv2d: x (N, C, H, W), weight (O, C/groups, kh, kw), bias (O) or an
/// empty Var; y (N, O, OH, OW) with
///   y[n, o, p, q] = b[o] + sum_{c, i, j} w[o, c, i, j] x[n, g C/groups + c, p sh - ph + i dh, q sw - pw + j dw]
/// (g = o / (O/groups); x is zero outside). GEMMs on the im2col of x, or at
/// stride 1 with few taps per output a direct sum of shifted planes. VJP: x_bar = the transposed convolution of g by w
/// (col2im of w^T g); w_bar = sum_n g_n cols_n^T; b_bar = sum of g over N, OH, OW.
template <class T>
Var<T> conv2d(const Var<T>& x, const Var<T>& weight, const Var<T>& bias = Var<T>(), Size2 stride = 1,
              Size2 padding = 0, Size2 dilation = 1, long groups = 1);

/// F.conv1d: x (N, C, L), weight (O, C/groups, k), bias (O) or empty; conv2d
/// with H = 1 (reshaped). VJP: conv2d's.
template <class T>
Var<T> conv1d(const Var<T>& x, const Var<T>& weight, const Var<T>& bias = Var<T>(), long stride = 1,
              long padding = 0, long dilation = 1, long groups = 1);

/// F.max_pool2d: x (N, C, H, W) or (C, H, W); y = the max of each window
/// (padding is -inf); stride defaults to the kernel; padding <= kernel / 2.
/// NaN wins (PyTorch). VJP: x_bar = g scattered to each window's argmax (the
/// first max on ties, as PyTorch), an op whose VJP gathers at the argmaxes.
template <class T>
Var<T> max_pool2d(const Var<T>& x, Size2 kernel, PoolStride stride = std::nullopt, Size2 padding = 0);

/// F.avg_pool2d: y = the sum of each window / divisor, the divisor kh kw
/// (count_include_pad, padding counts as zeros) or the number of real
/// elements in the window. VJP: x_bar[i] = sum over windows holding i of g / divisor.
template <class T>
Var<T> avg_pool2d(const Var<T>& x, Size2 kernel, PoolStride stride = std::nullopt, Size2 padding = 0,
                  bool count_include_pad = true);

}  // namespace ad
