// Convolution and pooling: each forward beside its VJP (g the cotangent of y).
//
//   op                  y                                   VJP
//   conv2d              W * x + b (cross-correlation),      x: conv2d_input_grad(g, W)   W: conv2d_weight_grad(x, g)
//                       im2col + a GEMM per image, group    b: g summed over N, Ho, Wo
//   conv2d_input_grad   col2im(W^T g)                       g: conv2d(h, W)              W: conv2d_weight_grad(h, g)
//   conv2d_weight_grad  sum_n g_n cols(x_n)^T               x: conv2d_input_grad(g, k)   g: conv2d(x, k)
//   conv1d              conv2d over a height of 1           (reshape)
//   max_pool2d          max of each window                  g added at each window's first maximum (index_add)
//   avg_pool2d          sum of each window / divisor        avg_pool2d_spread(g)
//   avg_pool2d_spread   g / divisor spread over windows     avg_pool2d(h)
//
// The three convolution ops are the trilinear form <g, W * x> seen from each
// argument, so each one's VJP is the other two: second derivatives need no
// rule of their own. Output sizes are PyTorch's: floor((H + 2p - d (k - 1) - 1) / s) + 1.

#include "autodiff/ops/conv.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include <fmt/format.h>

#include "autodiff/blas.hpp"
#include "autodiff/ops/all.hpp"

namespace ad {
namespace {

std::vector<long> as_long(const Shape& shape) { return std::vector<long>(shape.begin(), shape.end()); }

std::string pair_string(const std::array<std::size_t, 2>& p) { return fmt::format("({}, {})", p[0], p[1]); }

/// The sizes of a convolution, checked.
struct ConvGeometry {
    std::size_t n, c, h, w;  // input
    std::size_t o, kh, kw;   // weight
    std::size_t ho, wo;      // output
    std::size_t groups, cg, og;
    Conv2dOptions opt;
    std::size_t k() const { return cg * kh * kw; }  // rows of one group's im2col matrix
    std::size_t spatial() const { return ho * wo; }
    Shape y_shape() const { return {n, o, ho, wo}; }
};

ConvGeometry conv_geometry(const char* op, const Shape& x, const Shape& w, const Conv2dOptions& opt) {
    if (x.size() != 4) throw shape_error(fmt::format("{}: the input {} is not (N, C, H, W)", op, shape_string(x)));
    if (w.size() != 4) throw shape_error(fmt::format("{}: the weight {} is not (O, C / groups, kh, kw)", op, shape_string(w)));
    for (std::size_t a = 0; a < 2; ++a) {
        if (opt.stride[a] == 0 || opt.dilation[a] == 0) {
            throw value_error(fmt::format("{}: stride {} and dilation {} must be positive", op, pair_string(opt.stride),
                                          pair_string(opt.dilation)));
        }
    }
    ConvGeometry g{x[0], x[1], x[2], x[3], w[0], w[2], w[3], 0, 0, opt.groups, 0, 0, opt};
    if (g.groups == 0 || g.c % g.groups != 0 || g.o % g.groups != 0) {
        throw value_error(fmt::format("{}: groups {} must divide the {} input channels of {} and the {} output channels of weight {}",
                                      op, g.groups, g.c, shape_string(x), g.o, shape_string(w)));
    }
    g.cg = g.c / g.groups;
    g.og = g.o / g.groups;
    if (w[1] != g.cg) {
        throw shape_error(fmt::format("{}: weight {} expects {} input channels per group, input {} has {} (groups {})", op,
                                      shape_string(w), w[1], shape_string(x), g.cg, g.groups));
    }
    if (g.kh == 0 || g.kw == 0) throw shape_error(fmt::format("{}: the weight {} has an empty kernel", op, shape_string(w)));
    const std::size_t eh = opt.dilation[0] * (g.kh - 1) + 1, ew = opt.dilation[1] * (g.kw - 1) + 1;
    if (g.h + 2 * opt.padding[0] < eh || g.w + 2 * opt.padding[1] < ew) {
        throw shape_error(fmt::format("{}: the kernel ({}, {}) (dilated to ({}, {})) is larger than the input {} padded by {}",
                                      op, g.kh, g.kw, eh, ew, shape_string(x), pair_string(opt.padding)));
    }
    g.ho = (g.h + 2 * opt.padding[0] - eh) / opt.stride[0] + 1;
    g.wo = (g.w + 2 * opt.padding[1] - ew) / opt.stride[1] + 1;
    return g;
}

/// The input offset of output position `out` and kernel tap `tap` along one
/// axis; negative or past `extent` in the padding.
inline long input_at(std::size_t out, std::size_t tap, std::size_t stride, std::size_t dilation, std::size_t padding) {
    return static_cast<long>(out * stride + tap * dilation) - static_cast<long>(padding);
}

/// Group `gi` of one image (C, H, W) as the (k, Ho Wo) matrix whose column is
/// the receptive field of one output position (zeros in the padding).
template <class T>
void im2col(const ConvGeometry& g, const T* image, std::size_t gi, T* cols) {
    const auto& o = g.opt;
    for (std::size_t c = 0; c < g.cg; ++c) {
        const T* plane = image + (gi * g.cg + c) * g.h * g.w;
        for (std::size_t i = 0; i < g.kh; ++i) {
            for (std::size_t j = 0; j < g.kw; ++j) {
                T* dst = cols + ((c * g.kh + i) * g.kw + j) * g.spatial();
                for (std::size_t oh = 0; oh < g.ho; ++oh) {
                    T* row = dst + oh * g.wo;
                    const long ih = input_at(oh, i, o.stride[0], o.dilation[0], o.padding[0]);
                    if (ih < 0 || ih >= static_cast<long>(g.h)) {
                        std::fill(row, row + g.wo, T(0));
                        continue;
                    }
                    const T* src = plane + static_cast<std::size_t>(ih) * g.w;
                    for (std::size_t ow = 0; ow < g.wo; ++ow) {
                        const long iw = input_at(ow, j, o.stride[1], o.dilation[1], o.padding[1]);
                        row[ow] = iw >= 0 && iw < static_cast<long>(g.w) ? src[iw] : T(0);
                    }
                }
            }
        }
    }
}

/// im2col's transpose: adds each column back onto the image positions it was read from.
template <class T>
void col2im(const ConvGeometry& g, const T* cols, std::size_t gi, T* image) {
    const auto& o = g.opt;
    for (std::size_t c = 0; c < g.cg; ++c) {
        T* plane = image + (gi * g.cg + c) * g.h * g.w;
        for (std::size_t i = 0; i < g.kh; ++i) {
            for (std::size_t j = 0; j < g.kw; ++j) {
                const T* src = cols + ((c * g.kh + i) * g.kw + j) * g.spatial();
                for (std::size_t oh = 0; oh < g.ho; ++oh) {
                    const long ih = input_at(oh, i, o.stride[0], o.dilation[0], o.padding[0]);
                    if (ih < 0 || ih >= static_cast<long>(g.h)) continue;
                    T* dst = plane + static_cast<std::size_t>(ih) * g.w;
                    const T* row = src + oh * g.wo;
                    for (std::size_t ow = 0; ow < g.wo; ++ow) {
                        const long iw = input_at(ow, j, o.stride[1], o.dilation[1], o.padding[1]);
                        if (iw >= 0 && iw < static_cast<long>(g.w)) dst[iw] += row[ow];
                    }
                }
            }
        }
    }
}

int blas_size(std::size_t n) {
    if (n > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
        throw value_error(fmt::format("conv2d: a matrix side of {} is beyond BLAS's int", n));
    }
    return static_cast<int>(n);
}

template <class T>
Array<T> conv_forward(const ConvGeometry& g, const Array<T>& x, const Array<T>& w) {
    Array<T> y = xt::zeros<T>(g.y_shape());
    if (y.size() == 0 || g.k() == 0) return y;
    std::vector<T> cols(g.k() * g.spatial());
    const int m = blas_size(g.og), n = blas_size(g.spatial()), k = blas_size(g.k());
    for (std::size_t b = 0; b < g.n; ++b) {
        for (std::size_t gi = 0; gi < g.groups; ++gi) {
            im2col(g, x.data() + b * g.c * g.h * g.w, gi, cols.data());
            blas::gemm(false, false, m, n, k, T(1), w.data() + gi * g.og * g.k(), k, cols.data(), n, T(0),
                       y.data() + (b * g.o + gi * g.og) * g.spatial());
        }
    }
    return y;
}

template <class T>
Array<T> conv_input_grad(const ConvGeometry& g, const Array<T>& grad, const Array<T>& w) {
    Array<T> dx = xt::zeros<T>({g.n, g.c, g.h, g.w});
    if (grad.size() == 0 || g.k() == 0 || dx.size() == 0) return dx;
    std::vector<T> cols(g.k() * g.spatial());
    const int m = blas_size(g.k()), n = blas_size(g.spatial()), k = blas_size(g.og);
    for (std::size_t b = 0; b < g.n; ++b) {
        for (std::size_t gi = 0; gi < g.groups; ++gi) {
            blas::gemm(true, false, m, n, k, T(1), w.data() + gi * g.og * g.k(), m,
                       grad.data() + (b * g.o + gi * g.og) * g.spatial(), n, T(0), cols.data());
            col2im(g, cols.data(), gi, dx.data() + b * g.c * g.h * g.w);
        }
    }
    return dx;
}

template <class T>
Array<T> conv_weight_grad(const ConvGeometry& g, const Array<T>& x, const Array<T>& grad) {
    Array<T> dw = xt::zeros<T>({g.o, g.cg, g.kh, g.kw});
    if (grad.size() == 0 || dw.size() == 0) return dw;
    std::vector<T> cols(g.k() * g.spatial());
    const int m = blas_size(g.og), n = blas_size(g.k()), k = blas_size(g.spatial());
    for (std::size_t b = 0; b < g.n; ++b) {
        for (std::size_t gi = 0; gi < g.groups; ++gi) {
            im2col(g, x.data() + b * g.c * g.h * g.w, gi, cols.data());
            blas::gemm(false, true, m, n, k, T(1), grad.data() + (b * g.o + gi * g.og) * g.spatial(), k, cols.data(), k,
                       T(1), dw.data() + gi * g.og * g.k());
        }
    }
    return dw;
}

/// g (N, O, Ho, Wo) summed to the bias's (O).
template <class T>
Var<T> bias_grad(const Var<T>& g) {
    const Shape s = g.shape();
    Var<T> per_image = sum(reshape(g, {static_cast<long>(s[0]), static_cast<long>(s[1]), -1}), 2);
    return sum(per_image, 0);
}

// --- Pooling ---

struct PoolGeometry {
    std::size_t n, c, h, w;
    std::size_t kh, kw, sh, sw, ph, pw;
    std::size_t ho, wo;
    bool count_include_pad;
    Shape y_shape() const { return {n, c, ho, wo}; }
};

PoolGeometry pool_geometry(const char* op, const Shape& x, const Pool2dOptions& opt) {
    if (x.size() != 4) throw shape_error(fmt::format("{}: the input {} is not (N, C, H, W)", op, shape_string(x)));
    if (opt.kernel[0] == 0 || opt.kernel[1] == 0) {
        throw value_error(fmt::format("{}: the kernel {} is empty", op, pair_string(opt.kernel)));
    }
    PoolGeometry g{x[0], x[1], x[2], x[3], opt.kernel[0], opt.kernel[1],
                   opt.stride[0] ? opt.stride[0] : opt.kernel[0], opt.stride[1] ? opt.stride[1] : opt.kernel[1],
                   opt.padding[0], opt.padding[1], 0, 0, opt.count_include_pad};
    if (2 * g.ph > g.kh || 2 * g.pw > g.kw) {
        throw value_error(fmt::format("{}: padding {} is more than half the kernel {}", op, pair_string(opt.padding),
                                      pair_string(opt.kernel)));
    }
    if (g.h + 2 * g.ph < g.kh || g.w + 2 * g.pw < g.kw) {
        throw shape_error(fmt::format("{}: the window {} is larger than the input {} padded by {}", op,
                                      pair_string(opt.kernel), shape_string(x), pair_string(opt.padding)));
    }
    g.ho = (g.h + 2 * g.ph - g.kh) / g.sh + 1;
    g.wo = (g.w + 2 * g.pw - g.kw) / g.sw + 1;
    return g;
}

/// Calls f(oh, ow, h0, h1, w0, w1, divisor) for each output position: the
/// window's rows [h0, h1) and columns [w0, w1) inside the input.
template <class F>
void for_each_window(const PoolGeometry& g, F f) {
    for (std::size_t oh = 0; oh < g.ho; ++oh) {
        const long hs = static_cast<long>(oh * g.sh) - static_cast<long>(g.ph);
        const std::size_t h0 = static_cast<std::size_t>(std::max(hs, 0L));
        const std::size_t h1 = static_cast<std::size_t>(std::min(hs + static_cast<long>(g.kh), static_cast<long>(g.h)));
        for (std::size_t ow = 0; ow < g.wo; ++ow) {
            const long ws = static_cast<long>(ow * g.sw) - static_cast<long>(g.pw);
            const std::size_t w0 = static_cast<std::size_t>(std::max(ws, 0L));
            const std::size_t w1 = static_cast<std::size_t>(std::min(ws + static_cast<long>(g.kw), static_cast<long>(g.w)));
            const std::size_t divisor = g.count_include_pad ? g.kh * g.kw : (h1 - h0) * (w1 - w0);
            f(oh, ow, h0, h1, w0, w1, divisor);
        }
    }
}

template <class T>
Var<T> avg_pool2d_spread(const Var<T>& g, const PoolGeometry& geo, const Pool2dOptions& options);

template <class T>
Var<T> avg_pool2d_with(const Var<T>& x, const PoolGeometry& geo, const Pool2dOptions& options) {
    Array<T> y = Array<T>::from_shape(geo.y_shape());
    const T* in = x.value().data();
    for (std::size_t p = 0; p < geo.n * geo.c; ++p) {
        const T* plane = in + p * geo.h * geo.w;
        T* out = y.data() + p * geo.ho * geo.wo;
        for_each_window(geo, [&](std::size_t oh, std::size_t ow, std::size_t h0, std::size_t h1, std::size_t w0,
                                 std::size_t w1, std::size_t divisor) {
            T total = 0;
            for (std::size_t ih = h0; ih < h1; ++ih) {
                for (std::size_t iw = w0; iw < w1; ++iw) total += plane[ih * geo.w + iw];
            }
            out[oh * geo.wo + ow] = total / T(divisor);
        });
    }
    return make_op("avg_pool2d", std::move(y), x,
                   [geo, options](std::size_t, const Var<T>& g) { return avg_pool2d_spread(g, geo, options); });
}

template <class T>
Var<T> avg_pool2d_spread(const Var<T>& g, const PoolGeometry& geo, const Pool2dOptions& options) {
    Array<T> dx = xt::zeros<T>({geo.n, geo.c, geo.h, geo.w});
    const T* in = g.value().data();
    for (std::size_t p = 0; p < geo.n * geo.c; ++p) {
        T* plane = dx.data() + p * geo.h * geo.w;
        const T* grad = in + p * geo.ho * geo.wo;
        for_each_window(geo, [&](std::size_t oh, std::size_t ow, std::size_t h0, std::size_t h1, std::size_t w0,
                                 std::size_t w1, std::size_t divisor) {
            const T share = grad[oh * geo.wo + ow] / T(divisor);
            for (std::size_t ih = h0; ih < h1; ++ih) {
                for (std::size_t iw = w0; iw < w1; ++iw) plane[ih * geo.w + iw] += share;
            }
        });
    }
    return make_op("avg_pool2d_spread", std::move(dx), g,
                   [geo, options](std::size_t, const Var<T>& h) { return avg_pool2d_with(h, geo, options); });
}

}  // namespace

namespace detail {

template <class T>
Var<T> conv2d_input_grad(const Var<T>& g, const Var<T>& weight, const Shape& x_shape, const Conv2dOptions& options) {
    check_defined("conv2d_input_grad", g);
    check_defined("conv2d_input_grad", weight);
    const Shape w_shape = weight.shape();
    const ConvGeometry geo = conv_geometry("conv2d_input_grad", x_shape, w_shape, options);
    if (g.shape() != geo.y_shape()) {
        throw shape_error(fmt::format("conv2d_input_grad: the cotangent {} is not the output shape {}",
                                      shape_string_of(g.value()), shape_string(geo.y_shape())));
    }
    return make_op("conv2d_input_grad", conv_input_grad(geo, g.value(), weight.value()), g, weight,
                   [g, weight, w_shape, options](std::size_t i, const Var<T>& h) {
                       return i == 0 ? conv2d(h, weight, Var<T>(), options) : conv2d_weight_grad(h, g, w_shape, options);
                   });
}

template <class T>
Var<T> conv2d_weight_grad(const Var<T>& x, const Var<T>& g, const Shape& w_shape, const Conv2dOptions& options) {
    check_defined("conv2d_weight_grad", x);
    check_defined("conv2d_weight_grad", g);
    const Shape x_shape = x.shape();
    const ConvGeometry geo = conv_geometry("conv2d_weight_grad", x_shape, w_shape, options);
    if (g.shape() != geo.y_shape()) {
        throw shape_error(fmt::format("conv2d_weight_grad: the cotangent {} is not the output shape {}",
                                      shape_string_of(g.value()), shape_string(geo.y_shape())));
    }
    return make_op("conv2d_weight_grad", conv_weight_grad(geo, x.value(), g.value()), x, g,
                   [x, g, x_shape, options](std::size_t i, const Var<T>& k) {
                       return i == 0 ? conv2d_input_grad(g, k, x_shape, options) : conv2d(x, k, Var<T>(), options);
                   });
}

}  // namespace detail

template <class T>
Var<T> conv2d(const Var<T>& x, const Var<T>& weight, const Var<T>& bias, const Conv2dOptions& options) {
    detail::check_defined("conv2d", x);
    detail::check_defined("conv2d", weight);
    const Shape x_shape = x.shape(), w_shape = weight.shape();
    const ConvGeometry geo = conv_geometry("conv2d", x_shape, w_shape, options);
    if (bias.defined() && bias.shape() != Shape{geo.o}) {
        throw shape_error(fmt::format("conv2d: bias {} does not match the {} output channels of weight {}",
                                      shape_string_of(bias.value()), geo.o, shape_string(w_shape)));
    }
    Array<T> y = conv_forward(geo, x.value(), weight.value());
    auto vjp = [x = detail::kept_for(x, weight), weight = detail::kept_for(weight, x), x_shape, w_shape, options](
                   std::size_t i, const Var<T>& g) {
        if (i == 0) return detail::conv2d_input_grad(g, weight, x_shape, options);
        if (i == 1) return detail::conv2d_weight_grad(x, g, w_shape, options);
        return bias_grad(g);
    };
    if (!bias.defined()) return make_op("conv2d", std::move(y), x, weight, std::move(vjp));
    const T* b = bias.value().data();
    for (std::size_t n = 0; n < geo.n; ++n) {
        for (std::size_t o = 0; o < geo.o; ++o) {
            T* out = y.data() + (n * geo.o + o) * geo.spatial();
            for (std::size_t s = 0; s < geo.spatial(); ++s) out[s] += b[o];
        }
    }
    return make_op("conv2d", std::move(y), x, weight, bias, std::move(vjp));
}

template <class T>
Var<T> conv1d(const Var<T>& x, const Var<T>& weight, const Var<T>& bias, const Conv1dOptions& options) {
    detail::check_defined("conv1d", x);
    detail::check_defined("conv1d", weight);
    const Shape xs = x.shape(), ws = weight.shape();
    if (xs.size() != 3) throw shape_error(fmt::format("conv1d: the input {} is not (N, C, L)", shape_string(xs)));
    if (ws.size() != 3) throw shape_error(fmt::format("conv1d: the weight {} is not (O, C / groups, k)", shape_string(ws)));
    Conv2dOptions o2{{1, options.stride}, {0, options.padding}, {1, options.dilation}, options.groups};
    auto as_2d = [](const Shape& s) { return std::vector<long>{long(s[0]), long(s[1]), 1, long(s[2])}; };
    // Checked before anything is recorded, so that a failure leaves the tape as it was.
    try {
        const std::vector<long> x_long = as_2d(xs), w_long = as_2d(ws);
        const Shape x2(x_long.begin(), x_long.end()), w2(w_long.begin(), w_long.end());
        const ConvGeometry geo = conv_geometry("conv2d", x2, w2, o2);
        if (bias.defined() && bias.shape() != Shape{geo.o}) {
            throw shape_error(fmt::format("bias {} does not match the {} output channels", shape_string_of(bias.value()), geo.o));
        }
    } catch (const shape_error& e) {
        throw shape_error(fmt::format("conv1d (as conv2d over a height of 1) of input {} and weight {}: {}",
                                      shape_string(xs), shape_string(ws), e.what()));
    } catch (const value_error& e) {
        throw value_error(fmt::format("conv1d (as conv2d over a height of 1) of input {} and weight {}: {}",
                                      shape_string(xs), shape_string(ws), e.what()));
    }
    Var<T> y = conv2d(reshape(x, as_2d(xs)), reshape(weight, as_2d(ws)), bias, o2);
    const Shape ys = y.shape();
    return reshape(y, {long(ys[0]), long(ys[1]), long(ys[3])});
}

template <class T>
Var<T> max_pool2d(const Var<T>& x, const Pool2dOptions& options) {
    detail::check_defined("max_pool2d", x);
    const Shape x_shape = x.shape();
    const PoolGeometry geo = pool_geometry("max_pool2d", x_shape, options);
    Array<T> y = Array<T>::from_shape(geo.y_shape());
    IndexArray argmax = IndexArray::from_shape({y.size()});
    const T* in = x.value().data();
    for (std::size_t p = 0; p < geo.n * geo.c; ++p) {
        const std::size_t base = p * geo.h * geo.w;
        T* out = y.data() + p * geo.ho * geo.wo;
        std::int64_t* at = argmax.data() + p * geo.ho * geo.wo;
        for_each_window(geo, [&](std::size_t oh, std::size_t ow, std::size_t h0, std::size_t h1, std::size_t w0,
                                 std::size_t w1, std::size_t) {
            std::size_t best = base + h0 * geo.w + w0;
            for (std::size_t ih = h0; ih < h1 && !std::isnan(in[best]); ++ih) {
                for (std::size_t iw = w0; iw < w1; ++iw) {
                    const std::size_t i = base + ih * geo.w + iw;
                    if (in[i] > in[best] || std::isnan(in[i])) {
                        best = i;
                        if (std::isnan(in[i])) break;
                    }
                }
            }
            out[oh * geo.wo + ow] = in[best];
            at[oh * geo.wo + ow] = static_cast<std::int64_t>(best);
        });
    }
    return make_op("max_pool2d", std::move(y), x, [argmax = std::move(argmax), x_shape](std::size_t, const Var<T>& g) {
        return reshape(index_add(Shape{element_count(x_shape)}, 0, argmax, reshape(g, {-1})), as_long(x_shape));
    });
}

template <class T>
Var<T> avg_pool2d(const Var<T>& x, const Pool2dOptions& options) {
    detail::check_defined("avg_pool2d", x);
    return avg_pool2d_with(x, pool_geometry("avg_pool2d", x.shape(), options), options);
}

#define AD_INSTANTIATE(T)                                                                                        \
    template Var<T> conv2d(const Var<T>&, const Var<T>&, const Var<T>&, const Conv2dOptions&);                   \
    template Var<T> conv1d(const Var<T>&, const Var<T>&, const Var<T>&, const Conv1dOptions&);                   \
    template Var<T> max_pool2d(const Var<T>&, const Pool2dOptions&);                                             \
    template Var<T> avg_pool2d(const Var<T>&, const Pool2dOptions&);                                             \
    template Var<T> detail::conv2d_input_grad(const Var<T>&, const Var<T>&, const Shape&, const Conv2dOptions&); \
    template Var<T> detail::conv2d_weight_grad(const Var<T>&, const Var<T>&, const Shape&, const Conv2dOptions&);

AD_INSTANTIATE(float)
AD_INSTANTIATE(double)

}  // namespace ad
