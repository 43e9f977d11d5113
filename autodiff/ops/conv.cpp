// Convolution and pooling: each forward beside its VJP (g the cotangent of the
// result y). The convolution is bilinear in (x, w), so its three products are
// each other's VJPs, and double backward needs no other op:
//
//   op                  y                                     VJP
//   conv2d              conv(x, w) + b: per batch element     x: conv2d_input_grad(g, w)
//                       and group, W_g (Og, K) im2col(x_ng)   w: conv2d_weight_grad(x, g)
//                       (K = C/groups kh kw, P = OH OW)       b: conv2d_bias_grad(g)
//   conv2d_input_grad   col2im(W_g^T g_ng): the transposed    g: conv2d(h, w)
//                       convolution, (N, C, H, W)             w: conv2d_weight_grad(h, g)
//   conv2d_weight_grad  sum_n g_ng im2col(x_ng)^T,            x: conv2d_input_grad(g, h)
//                       (O, C/groups, kh, kw)                 g: conv2d(x, h)
//   conv2d_bias_grad    sum of g over N, OH, OW               h broadcast to (N, O, OH, OW)
//   conv1d              conv2d of (N, C, 1, L) by             through the reshapes
//                       (O, C/groups, 1, k)
//   max_pool2d          y = x[argmax of each window]          max_pool2d_backward(g): g added at the
//                       (padding -inf; first max on ties,       argmaxes (PyTorch's choice at ties)
//                       NaN wins, as PyTorch)
//   max_pool2d_backward zeros(x.shape); y[argmax] += g        max_pool2d gather of h at the argmaxes
//   avg_pool2d          y = window sum / divisor (kh kw, or   avg_pool2d_backward(g): g / divisor
//                       the real elements without             spread over each window
//                       count_include_pad)
//   avg_pool2d_backward x_bar[i] = sum over windows o         avg_pool2d(h) (the adjoint)
//                       holding i of g[o] / divisor[o]
//
// The three convolution products each have two ways to the same result:
// im2col and GEMMs as written above, or, at stride 1 with few taps per output
// (ConvGeometry::by_taps), the direct path: sums over the taps of the padded
// planes shifted, with no columns matrix (conv2d_input_grad then sums the
// padded g with the flipped w, conv2d_weight_grad takes dot products of g
// with the shifted padded x). The VJPs above are the same either way.
//
// Output sizes are PyTorch's with ceil_mode off:
// out = floor((in + 2 padding - dilation (kernel - 1) - 1) / stride) + 1.
// Errors are checked before anything is recorded.

#include "autodiff/ops/conv.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include <fmt/format.h>
#include <xsimd/xsimd.hpp>

#include "autodiff/blas.hpp"
#include "autodiff/inline.hpp"
#include "autodiff/kernels.hpp"
#include "autodiff/memory/grad_buffers.hpp"
#include "autodiff/ops/all.hpp"

namespace ad {
namespace {

using Index = std::ptrdiff_t;

// --- geometry and checks ----------------------------------------------------------

struct ConvGeometry {
    std::size_t n = 0, c = 0, h = 0, w = 0, o = 0, kh = 1, kw = 1, groups = 1;
    std::size_t sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1, oh = 0, ow = 0;
    std::size_t cg() const { return c / groups; }
    std::size_t og() const { return o / groups; }
    std::size_t k() const { return cg() * kh * kw; }
    std::size_t p() const { return oh * ow; }
    /// A 1x1 kernel at stride 1 without padding: the im2col of x is x itself.
    bool direct() const { return kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0; }
    /// Whether the products go by sums of shifted planes (the direct path
    /// below) rather than im2col and GEMMs. Only at stride 1, where a shift is
    /// a contiguous run. With few taps per output (K small, as with one or two
    /// input channels) a GEMM is as long as the image but only K deep, so
    /// BLAS packs its operands for a handful of multiply-adds each and the
    /// im2col and col2im copies cost as much as the products; the direct path
    /// reads each padded plane in place and keeps a plane's sums in
    /// registers. Deep enough K lets BLAS's blocking reuse each loaded number
    /// many times, which a tap-by-tap sum does not, and then GEMMs win.
    bool by_taps() const { return sh == 1 && sw == 1 && !direct() && k() <= 64; }
    /// The samples each chunked GEMM takes: as many as keep the chunk's
    /// columns within 2^18 elements (1 MiB in float, about L2), at least one.
    std::size_t chunk() const {
        return std::max<std::size_t>(1, (std::size_t(1) << 18) / std::max<std::size_t>(1, groups * k() * p()));
    }
    Shape x_shape() const { return {n, c, h, w}; }
    Shape w_shape() const { return {o, cg(), kh, kw}; }
    Shape y_shape() const { return {n, o, oh, ow}; }
};
using SharedConv = std::shared_ptr<const ConvGeometry>;

/// "(a, b)" for a 2-D op, "b" for a 1-D one (its h entry is fixed).
std::string sizes(std::size_t spatial, long a, long b) {
    return spatial == 2 ? fmt::format("({}, {})", a, b) : fmt::format("{}", b);
}

void check_positive(const char* op, const char* what, std::size_t spatial, Size2 s) {
    if (s.h < 1 || s.w < 1) throw value_error(fmt::format("{}: {} {} must be positive", op, what, sizes(spatial, s.h, s.w)));
}

void check_non_negative(const char* op, const char* what, std::size_t spatial, Size2 s) {
    if (s.h < 0 || s.w < 0) {
        throw value_error(fmt::format("{}: {} {} must be non-negative", op, what, sizes(spatial, s.h, s.w)));
    }
}

std::size_t out_size(std::size_t in, std::size_t pad, std::size_t dilated, std::size_t stride) {
    return (in + 2 * pad - dilated) / stride + 1;
}

/// The geometry of conv1d (spatial 1: x (N, C, L), w (O, C/groups, k)) or
/// conv2d (spatial 2), checked; errors show the shapes as given.
ConvGeometry conv_geometry(const char* op, std::size_t spatial, const Shape& xs, const Shape& ws, const Shape* bs,
                           Size2 stride, Size2 padding, Size2 dilation, long groups) {
    const std::size_t rank = spatial + 2;
    if (xs.size() != rank) {
        throw shape_error(fmt::format("{}: input {} must be {}-D {}", op, shape_string(xs), rank,
                                      spatial == 2 ? "(N, C, H, W)" : "(N, C, L)"));
    }
    if (ws.size() != rank) {
        throw shape_error(fmt::format("{}: weight {} must be {}-D {}", op, shape_string(ws), rank,
                                      spatial == 2 ? "(O, C/groups, kh, kw)" : "(O, C/groups, k)"));
    }
    if (groups < 1) throw value_error(fmt::format("{}: groups {} must be positive", op, groups));
    check_positive(op, "stride", spatial, stride);
    check_non_negative(op, "padding", spatial, padding);
    check_positive(op, "dilation", spatial, dilation);
    ConvGeometry g;
    g.groups = static_cast<std::size_t>(groups);
    g.n = xs[0];
    g.c = xs[1];
    g.h = spatial == 2 ? xs[2] : 1;
    g.w = xs[rank - 1];
    g.o = ws[0];
    g.kh = spatial == 2 ? ws[2] : 1;
    g.kw = ws[rank - 1];
    if (g.c % g.groups != 0) {
        throw shape_error(fmt::format("{}: groups {} do not divide the {} channels of input {}", op, groups, g.c,
                                      shape_string(xs)));
    }
    if (g.o % g.groups != 0) {
        throw shape_error(fmt::format("{}: groups {} do not divide the {} output channels of weight {}", op, groups,
                                      g.o, shape_string(ws)));
    }
    if (ws[1] != g.cg()) {
        throw shape_error(fmt::format("{}: weight {} expects {} input channels per group, input {} has {}{}", op,
                                      shape_string(ws), ws[1], shape_string(xs), g.cg(),
                                      groups == 1 ? "" : fmt::format(" ({} channels in {} groups)", g.c, groups)));
    }
    if (bs && (bs->size() != 1 || (*bs)[0] != g.o)) {
        throw shape_error(fmt::format("{}: bias {} must be ({}), one per output channel of weight {}", op,
                                      shape_string(*bs), g.o, shape_string(ws)));
    }
    g.sh = static_cast<std::size_t>(stride.h);
    g.sw = static_cast<std::size_t>(stride.w);
    g.ph = static_cast<std::size_t>(padding.h);
    g.pw = static_cast<std::size_t>(padding.w);
    g.dh = static_cast<std::size_t>(dilation.h);
    g.dw = static_cast<std::size_t>(dilation.w);
    const std::size_t span_h = g.dh * (g.kh - 1) + 1, span_w = g.dw * (g.kw - 1) + 1;
    const std::size_t padded_h = g.h + 2 * g.ph, padded_w = g.w + 2 * g.pw;
    if (g.kh == 0 || g.kw == 0) {
        throw shape_error(fmt::format("{}: weight {} has an empty kernel", op, shape_string(ws)));
    }
    if (span_h > padded_h || span_w > padded_w) {
        const long kh = static_cast<long>(g.kh), kw = static_cast<long>(g.kw);
        const std::string dilated = dilation.h == 1 && dilation.w == 1
                                        ? std::string()
                                        : fmt::format(" dilated by {} spans {},", sizes(spatial, dilation.h, dilation.w),
                                                      sizes(spatial, static_cast<long>(span_h), static_cast<long>(span_w)));
        throw shape_error(fmt::format("{}: kernel {} of weight {}{} larger than the padded input {} of input {}", op,
                                      sizes(spatial, kh, kw), shape_string(ws), dilated.empty() ? " is" : dilated,
                                      sizes(spatial, static_cast<long>(padded_h), static_cast<long>(padded_w)),
                                      shape_string(xs)));
    }
    g.oh = out_size(g.h, g.ph, span_h, g.sh);
    g.ow = out_size(g.w, g.pw, span_w, g.sw);
    return g;
}

// --- im2col and col2im ------------------------------------------------------------

/// [lo, hi): the output positions q in [0, out) whose input position
/// q s + off lies in [0, in).
inline void valid_range(Index off, Index s, Index in, Index out, Index& lo, Index& hi) {
    lo = off >= 0 ? 0 : (-off + s - 1) / s;
    hi = in - off <= 0 ? 0 : (in - off + s - 1) / s;
    hi = std::min(hi, out);
    lo = std::min(lo, hi);
}

/// The (K, P) columns of one batch element's group, rows `ld` apart: row
/// (c, i, j), column (p, q) holds x[c, p sh - ph + i dh, q sw - pw + j dw] (zero outside).
// Rows of a small image are a few elements: plain loops, which g++ would
// otherwise turn into a memset / memmove call each (most of the time then).
#if defined(__GNUC__) && !defined(__clang__)
#define AD_CONV_PLAIN_LOOPS __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define AD_CONV_PLAIN_LOOPS
#endif

template <class T>
AD_CONV_PLAIN_LOOPS void im2col(const ConvGeometry& g, const T* x, T* cols, Index ld) {
    const Index H = Index(g.h), W = Index(g.w), OH = Index(g.oh), OW = Index(g.ow), P = OH * OW;
    const Index sh = Index(g.sh), sw = Index(g.sw), ph = Index(g.ph), pw = Index(g.pw);
    const Index dh = Index(g.dh), dw = Index(g.dw);
    T* row = cols;
    for (Index c = 0; c < Index(g.cg()); ++c) {
        const T* plane = x + c * H * W;
        for (Index i = 0; i < Index(g.kh); ++i) {
            Index y_lo, y_hi;
            valid_range(i * dh - ph, sh, H, OH, y_lo, y_hi);
            for (Index j = 0; j < Index(g.kw); ++j, row += ld) {
                const Index off = j * dw - pw;
                Index x_lo, x_hi;
                valid_range(off, sw, W, OW, x_lo, x_hi);
                for (Index q = 0; q < y_lo * OW; ++q) row[q] = T(0);
                for (Index p = y_lo; p < y_hi; ++p) {
                    T* out = row + p * OW;
                    const T* src = plane + (p * sh - ph + i * dh) * W;
                    for (Index q = 0; q < x_lo; ++q) out[q] = T(0);
                    if (sw == 1) {
                        for (Index q = x_lo; q < x_hi; ++q) out[q] = src[q + off];
                    } else {
                        for (Index q = x_lo; q < x_hi; ++q) out[q] = src[q * sw + off];
                    }
                    for (Index q = x_hi; q < OW; ++q) out[q] = T(0);
                }
                for (Index q = y_hi * OW; q < P; ++q) row[q] = T(0);
            }
        }
    }
}

/// The transpose of im2col: adds each column entry back to where it came from.
template <class T>
AD_CONV_PLAIN_LOOPS void col2im(const ConvGeometry& g, const T* cols, T* x, Index ld) {
    const Index H = Index(g.h), W = Index(g.w), OH = Index(g.oh), OW = Index(g.ow);
    const Index sh = Index(g.sh), sw = Index(g.sw), ph = Index(g.ph), pw = Index(g.pw);
    const Index dh = Index(g.dh), dw = Index(g.dw);
    const T* row = cols;
    for (Index c = 0; c < Index(g.cg()); ++c) {
        T* plane = x + c * H * W;
        for (Index i = 0; i < Index(g.kh); ++i) {
            Index y_lo, y_hi;
            valid_range(i * dh - ph, sh, H, OH, y_lo, y_hi);
            for (Index j = 0; j < Index(g.kw); ++j, row += ld) {
                const Index off = j * dw - pw;
                Index x_lo, x_hi;
                valid_range(off, sw, W, OW, x_lo, x_hi);
                for (Index p = y_lo; p < y_hi; ++p) {
                    const T* in = row + p * OW;
                    T* dst = plane + (p * sh - ph + i * dh) * W;
                    if (sw == 1) {
                        for (Index q = x_lo; q < x_hi; ++q) dst[q + off] += in[q];
                    } else {
                        for (Index q = x_lo; q < x_hi; ++q) dst[q * sw + off] += in[q];
                    }
                }
            }
        }
    }
}

/// A per-thread buffer for one group's columns (reused: a fresh large array
/// every call costs page faults).
template <class T, int Slot = 0>
T* workspace(std::size_t count) {
    thread_local std::vector<T> buffer;
    if (buffer.size() < count) buffer.resize(count);
    return buffer.data();
}

int blas_int(std::size_t n) { return blas::checked_int("conv2d", n); }

// --- the direct path: sums of shifted planes ---------------------------------------
//
// At stride 1 an output plane is a sum over the taps (c, i, j) of w[o, c, i, j]
// times the zero-padded input plane c shifted by (i dh, j dw). With the padded
// planes stored row after row, Wp wide, every shift is a contiguous run of the
// padded buffer starting at c Hp Wp + i dh Wp + j dw, and the whole output plane
// is one flat run of OH Wp numbers (row p at p Wp; its last Wp - OW columns wrap
// into the next row and are dropped). So each tap is one scalar times one run:
// a loop of vector FMAs with the output's accumulators in registers, no index
// arithmetic and no columns matrix. The input gradient is the same sum on the
// cotangent padded by the kernel's span less the padding, with the weight
// flipped and its channels transposed; the weight gradient is dot products of
// the cotangent, laid out in the same flat rows with zeros in the dropped
// columns, with the shifted runs of the padded input.

template <class T>
using Batch = xsimd::batch<T>;

/// f(std::integral_constant<std::size_t, n>()) for 1 <= n <= Max, nothing
/// otherwise: a count known at run time as a template argument, so that a
/// kernel's loops over it unroll and its accumulators stay in registers.
template <std::size_t Max, class F>
AD_INLINE void with_count(std::size_t n, F&& f) {
    if constexpr (Max > 0) {
        if (n == Max) return f(std::integral_constant<std::size_t, Max>());
        with_count<Max - 1>(n, f);
    }
}

/// out[v] = init + sum_t coef[t] in[off[t] + v] for the B batches from v = 0.
template <class T, std::size_t B>
AD_INLINE void taps_block(const T* in, const Index* off, const T* coef, std::size_t taps, T* out, T init) {
    constexpr std::size_t L = Batch<T>::size;
    Batch<T> acc[B];
#pragma GCC unroll 16
    for (std::size_t b = 0; b < B; ++b) acc[b] = Batch<T>(init);
    for (std::size_t t = 0; t < taps; ++t) {
        const Batch<T> c(coef[t]);
        const T* src = in + off[t];
#pragma GCC unroll 16
        for (std::size_t b = 0; b < B; ++b) acc[b] = xsimd::fma(c, Batch<T>::load_unaligned(src + b * L), acc[b]);
    }
#pragma GCC unroll 16
    for (std::size_t b = 0; b < B; ++b) acc[b].store_unaligned(out + b * L);
}

/// The most batches of one output run kept in registers at once (with the
/// tap's scalar and the loaded batch, within AVX2's 16 registers).
constexpr std::size_t kTapsBlock = 12;

/// out[v] = init + sum_t coef[t] in[off[t] + v] for v < `batches` batches: a
/// run of at most kTapsBlock batches in one pass over the taps, a longer one
/// in passes of 8. Reads up to the end of the last batch.
template <class T>
void sum_taps(const T* in, const Index* off, const T* coef, std::size_t taps, T* out, std::size_t batches, T init) {
    constexpr std::size_t L = Batch<T>::size;
    for (; batches > kTapsBlock; batches -= 8, in += 8 * L, out += 8 * L) taps_block<T, 8>(in, off, coef, taps, out, init);
    with_count<kTapsBlock>(batches, [&](auto b) { taps_block<T, decltype(b)::value>(in, off, coef, taps, out, init); });
}

/// part + o ps (a batch of lane-wise partial sums) += the products of the
/// run x with the run g + o gs, for o < OB, over `batches` batches.
template <class T, std::size_t OB>
AD_INLINE void dots_block(const T* x, const T* g, std::size_t gs, std::size_t batches, T* part, std::size_t ps) {
    constexpr std::size_t L = Batch<T>::size;
    Batch<T> acc[OB];
#pragma GCC unroll 8
    for (std::size_t o = 0; o < OB; ++o) acc[o] = Batch<T>::load_unaligned(part + o * ps);
    for (std::size_t v = 0; v < batches; ++v) {
        const Batch<T> xv = Batch<T>::load_unaligned(x + v * L);
#pragma GCC unroll 8
        for (std::size_t o = 0; o < OB; ++o) {
            acc[o] = xsimd::fma(Batch<T>::load_unaligned(g + o * gs + v * L), xv, acc[o]);
        }
    }
#pragma GCC unroll 8
    for (std::size_t o = 0; o < OB; ++o) acc[o].store_unaligned(part + o * ps);
}

/// dots_block for o < og, in blocks of up to 8 outputs: each batch of x is
/// loaded once per block.
template <class T>
void sum_dots(const T* x, const T* g, std::size_t gs, std::size_t og, std::size_t batches, T* part, std::size_t ps) {
    for (; og >= 8; og -= 8, g += 8 * gs, part += 8 * ps) dots_block<T, 8>(x, g, gs, batches, part, ps);
    with_count<7>(og, [&](auto b) { dots_block<T, decltype(b)::value>(x, g, gs, batches, part, ps); });
}

/// to[0..n) = from[0..n) (not overlapping): whole batches, the last one
/// ending at n (rewriting a few numbers with the same values), so that a row
/// of a small image is a load and a store or two rather than a loop.
template <class T>
AD_INLINE AD_CONV_PLAIN_LOOPS void copy_row(const T* from, T* to, Index n) {
    constexpr Index L = Index(Batch<T>::size);
    if (n < L) {
        for (Index c = 0; c < n; ++c) to[c] = from[c];
        return;
    }
    for (Index c = 0; c + L < n; c += L) Batch<T>::load_unaligned(from + c).store_unaligned(to + c);
    Batch<T>::load_unaligned(from + n - L).store_unaligned(to + n - L);
}

/// Copies a (rows, cols) plane into a (drows, dcols) buffer with its corner
/// at (top, left), clipped to the buffer; the rest of the buffer is untouched.
template <class T>
void place(const T* src, Index rows, Index cols, T* dst, Index drows, Index dcols, Index top, Index left) {
    const Index r0 = std::max<Index>(0, -top), r1 = std::min(rows, drows - top);
    const Index c0 = std::max<Index>(0, -left), c1 = std::min(cols, dcols - left);
    for (Index r = r0; r < r1; ++r) copy_row(src + r * cols + c0, dst + (r + top) * dcols + left + c0, c1 - c0);
}

/// The (rows, cols) plane at the start of each row `stride` apart of a flat run.
template <class T>
void unflatten(const T* run, Index stride, Index rows, Index cols, T* plane) {
    for (Index r = 0; r < rows; ++r) copy_row(run + r * stride, plane + r * cols, cols);
}

/// The flat layout of one direct product: `planes` padded planes of (rows,
/// cols) read by runs of `len` numbers (`batches` batches) from the offsets
/// of the taps; the buffer holds them with room for the last run's overreach.
struct TapsLayout {
    std::size_t rows = 0, cols = 0, planes = 0, len = 0, batches = 0;
    std::size_t plane() const { return rows * cols; }
    template <class T>
    std::size_t buffer() const {
        return planes * plane() + cols + batches * Batch<T>::size;
    }
};

template <class T>
TapsLayout taps_layout(std::size_t rows, std::size_t cols, std::size_t planes, std::size_t out_rows) {
    TapsLayout l;
    l.rows = rows;
    l.cols = cols;
    l.planes = planes;
    l.len = out_rows * cols;
    l.batches = (l.len + Batch<T>::size - 1) / Batch<T>::size;
    return l;
}

/// The offsets of the taps (c, i, j), c < planes, in a buffer of layout l.
void tap_offsets(const ConvGeometry& G, const TapsLayout& l, Index* off) {
    for (std::size_t c = 0; c < l.planes; ++c) {
        for (std::size_t i = 0; i < G.kh; ++i) {
            for (std::size_t j = 0; j < G.kw; ++j) *off++ = Index(c * l.plane() + i * G.dh * l.cols + j * G.dw);
        }
    }
}

/// The layout of one group's zero-padded input planes (the forward's and
/// the weight gradient's), read by runs of OH rows.
template <class T>
TapsLayout input_layout(const ConvGeometry& G) {
    return taps_layout<T>(G.h + 2 * G.ph, G.w + 2 * G.pw, G.cg(), G.oh);
}

/// Copies the input planes of sample n's group grp into the interiors of pad.
template <class T>
void pad_inputs(const ConvGeometry& G, const TapsLayout& l, const T* x, std::size_t n, std::size_t grp, T* pad) {
    const std::size_t Cg = G.cg(), HW = G.h * G.w;
    for (std::size_t c = 0; c < Cg; ++c) {
        place(x + (n * G.c + grp * Cg + c) * HW, Index(G.h), Index(G.w), pad + c * l.plane(), Index(l.rows),
              Index(l.cols), Index(G.ph), Index(G.pw));
    }
}

/// conv2d's forward by the direct path: y (N, O, OH, OW), the bias added if given.
template <class T>
void direct_forward(const ConvGeometry& G, const T* x, const T* w, const T* bias, T* y) {
    const std::size_t K = G.k(), Og = G.og(), P = G.p();
    const TapsLayout l = input_layout<T>(G);
    T* pad = workspace<T>(l.buffer<T>());
    T* run = workspace<T, 1>(l.batches * Batch<T>::size);
    Index* off = workspace<Index>(K);
    std::fill_n(pad, l.buffer<T>(), T(0));  // the padding: each plane's copy overwrites only its interior
    tap_offsets(G, l, off);
    for (std::size_t n = 0; n < G.n; ++n) {
        for (std::size_t grp = 0; grp < G.groups; ++grp) {
            pad_inputs(G, l, x, n, grp, pad);
            for (std::size_t o = grp * Og; o < (grp + 1) * Og; ++o) {
                sum_taps(pad, off, w + o * K, K, run, l.batches, bias ? bias[o] : T(0));
                unflatten(run, Index(l.cols), Index(G.oh), Index(G.ow), y + (n * G.o + o) * P);
            }
        }
    }
}

/// conv2d_input_grad by the direct path: x_bar (N, C, H, W) from g (N, O, OH, OW).
/// x_bar[c] = sum_{o, i, j} w[o, c, kh-1-i, kw-1-j] times g[o] padded by the
/// span less the padding ((kh-1) dh - ph rows above, which may be negative:
/// the rows of g that no input row reaches are cut) and shifted by (i dh, j dw).
template <class T>
void direct_input_grad(const ConvGeometry& G, const T* g, const T* w, T* out) {
    const std::size_t Og = G.og(), Cg = G.cg(), HW = G.h * G.w, P = G.p(), KK = G.kh * G.kw, taps = Og * KK;
    const std::size_t span_h = (G.kh - 1) * G.dh, span_w = (G.kw - 1) * G.dw;
    const TapsLayout l = taps_layout<T>(G.h + span_h, G.w + span_w, Og, G.h);
    T* pad = workspace<T>(l.buffer<T>());
    T* run = workspace<T, 1>(l.batches * Batch<T>::size);
    Index* off = workspace<Index>(taps);
    T* flipped = workspace<T, 2>(G.c * taps);  // per input channel c: w[o, c, kh-1-i, kw-1-j] over (o, i, j)
    std::fill_n(pad, l.buffer<T>(), T(0));
    tap_offsets(G, l, off);
    for (std::size_t grp = 0; grp < G.groups; ++grp) {
        for (std::size_t c = 0; c < Cg; ++c) {
            T* to = flipped + (grp * Cg + c) * taps;
            for (std::size_t o = 0; o < Og; ++o) {
                const T* from = w + ((grp * Og + o) * Cg + c) * KK;
                for (std::size_t t = 0; t < KK; ++t) to[o * KK + t] = from[KK - 1 - t];
            }
        }
    }
    const Index top = Index(span_h) - Index(G.ph), left = Index(span_w) - Index(G.pw);
    for (std::size_t n = 0; n < G.n; ++n) {
        for (std::size_t grp = 0; grp < G.groups; ++grp) {
            for (std::size_t o = 0; o < Og; ++o) {
                place(g + (n * G.o + grp * Og + o) * P, Index(G.oh), Index(G.ow), pad + o * l.plane(), Index(l.rows),
                      Index(l.cols), top, left);
            }
            for (std::size_t c = grp * Cg; c < (grp + 1) * Cg; ++c) {
                sum_taps(pad, off, flipped + c * taps, taps, run, l.batches, T(0));
                unflatten(run, Index(l.cols), Index(G.h), Index(G.w), out + (n * G.c + c) * HW);
            }
        }
    }
}

/// conv2d_weight_grad by the direct path: w_bar[o, c, i, j] = the sum over n
/// of the dot product of g[n, o] (in flat rows of the padded input's width,
/// zeros in the dropped columns) with the run of the padded x[n, c] at the
/// tap's offset. The dropped columns multiply those zeros by real inputs: an
/// infinite or NaN input would make them NaN, so the caller takes this path
/// for finite x only.
template <class T>
void direct_weight_grad(const ConvGeometry& G, const T* x, const T* g, T* out) {
    constexpr std::size_t L = Batch<T>::size;
    const std::size_t K = G.k(), Og = G.og(), P = G.p();
    const TapsLayout l = input_layout<T>(G);
    const std::size_t gs = l.batches * L;  // the stride of g's flat runs
    T* pad = workspace<T>(l.buffer<T>());
    T* runs = workspace<T, 1>(Og * gs);
    Index* off = workspace<Index>(K);
    T* part = workspace<T, 2>(G.o * K * L);  // per (o, tap) a batch of lane-wise partial sums
    std::fill_n(pad, l.buffer<T>(), T(0));
    std::fill_n(runs, Og * gs, T(0));  // the dropped columns and the tails of the runs
    std::fill_n(part, G.o * K * L, T(0));
    tap_offsets(G, l, off);
    for (std::size_t n = 0; n < G.n; ++n) {
        for (std::size_t grp = 0; grp < G.groups; ++grp) {
            pad_inputs(G, l, x, n, grp, pad);
            for (std::size_t o = 0; o < Og; ++o) {
                place(g + (n * G.o + grp * Og + o) * P, Index(G.oh), Index(G.ow), runs + o * gs, Index(G.oh),
                      Index(l.cols), 0, 0);
            }
            for (std::size_t t = 0; t < K; ++t) {
                sum_dots(pad + off[t], runs, gs, Og, l.batches, part + (grp * Og * K + t) * L, K * L);
            }
        }
    }
    for (std::size_t i = 0; i < G.o * K; ++i) {
        T s = 0;
        for (std::size_t j = 0; j < L; ++j) s += part[i * L + j];
        out[i] = s;
    }
}

// --- the three products -----------------------------------------------------------

template <class T> Var<T> conv_forward(const SharedConv& geom, const Var<T>& x, const Var<T>& w, const Var<T>* bias);
template <class T> Var<T> conv_input_grad(const SharedConv& geom, const Var<T>& g, const Var<T>& w);
template <class T>
using SharedCols = std::shared_ptr<const std::vector<T>>;
template <class T>
Var<T> conv_weight_grad(const SharedConv& geom, Var<T> buffer, const Var<T>& x, const Var<T>& g,
                        const SharedCols<T>& cols = nullptr);
template <class T> Var<T> conv_bias_grad(const SharedConv& geom, const Var<T>& g);

/// The parameter's free gradient node to compute into (see lend_grad_buffer), if any.
template <class T>
Var<T> lend(const Var<T>& w) {
    return w.defined() && w.requires_grad() && w.is_leaf() ? detail::lend_grad_buffer(w) : Var<T>();
}

/// Samples [n0, n0 + nb) of g (N, O, P) as (O, nb P) rows, in a workspace:
/// the layout of the chunked GEMMs.
template <class T>
T* to_chunk_rows(const ConvGeometry& G, const T* g, std::size_t n0, std::size_t nb) {
    const std::size_t P = G.p(), NP = nb * P;
    T* gt = workspace<T, 1>(G.o * G.chunk() * P);
    for (std::size_t n = 0; n < nb; ++n) {
        for (std::size_t o = 0; o < G.o; ++o) std::copy_n(g + ((n0 + n) * G.o + o) * P, P, gt + o * NP + n * P);
    }
    return gt;
}

/// The columns of samples [n0, n0 + nb), each group's (K, nb P) side by side.
template <class T>
void chunk_im2col(const ConvGeometry& G, const T* x, std::size_t n0, std::size_t nb, T* cols) {
    const std::size_t K = G.k(), NP = nb * G.p(), HW = G.h * G.w;
    for (std::size_t grp = 0; grp < G.groups; ++grp) {
        for (std::size_t n = 0; n < nb; ++n) {
            im2col(G, x + ((n0 + n) * G.c + grp * G.cg()) * HW, cols + grp * K * NP + n * G.p(), Index(NP));
        }
    }
}

// Each product takes the batch in chunks of G.chunk() samples: per chunk and
// group one GEMM over the chunk's columns (K, nb P), wide enough for BLAS to
// run near its peak even on small images; a 1x1 kernel at stride 1 (direct)
// reads x itself as its columns, one GEMM a sample.

template <class T>
Var<T> conv_forward(const SharedConv& geom, const Var<T>& x, const Var<T>& w, const Var<T>* bias) {
    const ConvGeometry& G = *geom;
    const std::size_t P = G.p(), K = G.k(), Og = G.og(), Cg = G.cg(), HW = G.h * G.w;
    Var<T> y = detail::make_uninitialized<T>(G.y_shape());
    T* out = y.mutable_value().data();
    const T* xin = x.value().data();
    const T* win = w.value().data();
    const bool add_bias = bias != nullptr;
    const bool compute = K != 0 && Og != 0 && G.n != 0;
    const bool taps = compute && G.by_taps();
    if (taps) {
        direct_forward(G, xin, win, add_bias ? bias->value().data() : nullptr, out);
    } else if (add_bias) {
        const T* b = bias->value().data();
        for (std::size_t n = 0; n < G.n; ++n) {
            for (std::size_t o = 0; o < G.o; ++o) std::fill_n(out + (n * G.o + o) * P, P, b[o]);
        }
    } else if (!compute || !G.direct()) {
        std::fill_n(out, G.n * G.o * P, T(0));  // the chunked products add into it
    }
    // The whole batch in one chunk: its columns are kept for the weight gradient.
    std::shared_ptr<std::vector<T>> kept_cols;
    if (compute && G.direct()) {
        for (std::size_t n = 0; n < G.n; ++n) {
            for (std::size_t grp = 0; grp < G.groups; ++grp) {
                blas::gemm(false, false, blas_int(Og), blas_int(P), blas_int(K), T(1), win + grp * Og * K, blas_int(K),
                           xin + (n * G.c + grp * Cg) * HW, blas_int(P), add_bias ? T(1) : T(0),
                           out + (n * G.o + grp * Og) * P);
            }
        }
    } else if (compute && !taps) {
        const std::size_t chunk = G.chunk();
        if (chunk >= G.n && w.requires_grad() && detail::recording()) {
            kept_cols = std::make_shared<std::vector<T>>(G.groups * K * G.n * P);
        }
        T* cols = kept_cols ? kept_cols->data() : workspace<T>(G.groups * K * chunk * P);
        T* yt = workspace<T, 1>(G.o * chunk * P);
        for (std::size_t n0 = 0; n0 < G.n; n0 += chunk) {
            const std::size_t nb = std::min(chunk, G.n - n0), NP = nb * P;
            chunk_im2col(G, xin, n0, nb, cols);
            for (std::size_t grp = 0; grp < G.groups; ++grp) {
                blas::gemm(false, false, blas_int(Og), blas_int(NP), blas_int(K), T(1), win + grp * Og * K,
                           blas_int(K), cols + grp * K * NP, blas_int(NP), T(0), yt + grp * Og * NP);
            }
            for (std::size_t n = 0; n < nb; ++n) {
                for (std::size_t o = 0; o < G.o; ++o) {
                    T* to = out + ((n0 + n) * G.o + o) * P;
                    const T* from = yt + o * NP + n * P;
                    for (std::size_t p = 0; p < P; ++p) to[p] += from[p];
                }
            }
        }
    }
    auto vjp = [geom, x = detail::kept_for(x, w), w = detail::kept(w),
                cols = SharedCols<T>(std::move(kept_cols))](std::size_t i, const Var<T>& g) -> Var<T> {
        if (i == 0) return conv_input_grad(geom, g, w);
        if (i == 1) return conv_weight_grad(geom, lend(w), x, g, cols);
        return conv_bias_grad(geom, g);
    };
    if (bias) return make_op("conv2d", std::move(y), x, w, *bias, std::move(vjp));
    return make_op("conv2d", std::move(y), x, w, std::move(vjp));
}

template <class T>
Var<T> conv_input_grad(const SharedConv& geom, const Var<T>& g, const Var<T>& w) {
    const ConvGeometry& G = *geom;
    const std::size_t P = G.p(), K = G.k(), Og = G.og(), Cg = G.cg(), HW = G.h * G.w;
    Var<T> xb = detail::make_uninitialized<T>(G.x_shape());
    T* out = xb.mutable_value().data();
    const T* gin = g.value().data();
    const T* win = w.value().data();
    const bool compute = K != 0 && Og != 0 && G.n != 0, taps = compute && G.by_taps();
    if (!compute || (!G.direct() && !taps)) std::fill_n(out, G.n * G.c * HW, T(0));
    if (taps) {
        direct_input_grad(G, gin, win, out);
    } else if (compute && G.direct()) {
        for (std::size_t n = 0; n < G.n; ++n) {
            for (std::size_t grp = 0; grp < G.groups; ++grp) {
                blas::gemm(true, false, blas_int(K), blas_int(P), blas_int(Og), T(1), win + grp * Og * K, blas_int(K),
                           gin + (n * G.o + grp * Og) * P, blas_int(P), T(0), out + (n * G.c + grp * Cg) * HW);
            }
        }
    } else if (compute) {
        const std::size_t chunk = G.chunk();
        T* cols = workspace<T>(K * chunk * P);
        for (std::size_t n0 = 0; n0 < G.n; n0 += chunk) {
            const std::size_t nb = std::min(chunk, G.n - n0), NP = nb * P;
            const T* gt = to_chunk_rows(G, gin, n0, nb);
            for (std::size_t grp = 0; grp < G.groups; ++grp) {
                blas::gemm(true, false, blas_int(K), blas_int(NP), blas_int(Og), T(1), win + grp * Og * K, blas_int(K),
                           gt + grp * Og * NP, blas_int(NP), T(0), cols);
                for (std::size_t n = 0; n < nb; ++n) {
                    col2im(G, cols + n * P, out + ((n0 + n) * G.c + grp * Cg) * HW, Index(NP));
                }
            }
        }
    }
    if (!detail::recording()) return xb;
    return make_op("conv2d_input_grad", std::move(xb), g, w,
                   [geom, g = detail::kept_for(g, w), w = detail::kept_for(w, g)](std::size_t i, const Var<T>& h) {
                       if (i == 0) return conv_forward<T>(geom, h, w, nullptr);
                       return conv_weight_grad(geom, lend(w), h, g);
                   });
}

template <class T>
Var<T> conv_weight_grad(const SharedConv& geom, Var<T> buffer, const Var<T>& x, const Var<T>& g,
                        const SharedCols<T>& kept_cols) {
    const ConvGeometry& G = *geom;
    const std::size_t P = G.p(), K = G.k(), Og = G.og(), Cg = G.cg(), HW = G.h * G.w;
    const Shape w_shape = G.w_shape();
    Var<T> wb = detail::fits(buffer, w_shape) ? std::move(buffer) : detail::make_uninitialized<T>(w_shape);
    T* out = wb.mutable_value().data();
    const T* xin = x.value().data();
    const T* gin = g.value().data();
    const bool compute = K != 0 && Og != 0 && G.n != 0;
    if (!compute) std::fill_n(out, G.o * K, T(0));
    if (compute && G.by_taps() && kernels::all_finite(xin, G.n * G.c * HW)) {
        direct_weight_grad(G, xin, gin, out);
    } else if (compute && G.direct()) {
        for (std::size_t n = 0; n < G.n; ++n) {
            for (std::size_t grp = 0; grp < G.groups; ++grp) {
                blas::gemm(false, true, blas_int(Og), blas_int(K), blas_int(P), T(1), gin + (n * G.o + grp * Og) * P,
                           blas_int(P), xin + (n * G.c + grp * Cg) * HW, blas_int(P), n == 0 ? T(0) : T(1),
                           out + grp * Og * K);
            }
        }
    } else if (compute) {
        const std::size_t chunk = kept_cols ? G.n : G.chunk();
        T* fresh = kept_cols ? nullptr : workspace<T>(G.groups * K * chunk * P);
        for (std::size_t n0 = 0; n0 < G.n; n0 += chunk) {
            const std::size_t nb = std::min(chunk, G.n - n0), NP = nb * P;
            const T* gt = to_chunk_rows(G, gin, n0, nb);
            if (fresh) chunk_im2col(G, xin, n0, nb, fresh);
            const T* cols = fresh ? fresh : kept_cols->data();
            for (std::size_t grp = 0; grp < G.groups; ++grp) {
                blas::gemm(false, true, blas_int(Og), blas_int(K), blas_int(NP), T(1), gt + grp * Og * NP, blas_int(NP),
                           cols + grp * K * NP, blas_int(NP), n0 == 0 ? T(0) : T(1), out + grp * Og * K);
            }
        }
    }
    if (!detail::recording()) return wb;
    return make_op("conv2d_weight_grad", std::move(wb), x, g,
                   [geom, x = detail::kept_for(x, g), g = detail::kept_for(g, x)](std::size_t i, const Var<T>& h) {
                       if (i == 0) return conv_input_grad(geom, g, h);
                       return conv_forward<T>(geom, x, h, nullptr);
                   });
}

/// b_bar[o] = the sum of g[:, o, :, :]. VJP: h broadcast over N, OH, OW.
template <class T>
Var<T> conv_bias_grad(const SharedConv& geom, const Var<T>& g) {
    const ConvGeometry& G = *geom;
    const std::size_t P = G.p();
    Var<T> bb = detail::make_uninitialized<T>(Shape{G.o});
    T* out = bb.mutable_value().data();
    const T* in = g.value().data();
    // Lane-wise partial sums over every plane of channel o, then across the
    // lanes: a scalar sum would wait on each addition before the next.
    constexpr std::size_t L = Batch<T>::size;
    const std::size_t whole = P / L * L;
    for (std::size_t o = 0; o < G.o; ++o) {
        Batch<T> acc(T(0));
        T tail = 0;
        for (std::size_t n = 0; n < G.n; ++n) {
            const T* plane = in + (n * G.o + o) * P;
            for (std::size_t p = 0; p < whole; p += L) acc += Batch<T>::load_unaligned(plane + p);
            for (std::size_t p = whole; p < P; ++p) tail += plane[p];
        }
        alignas(Batch<T>) T lanes[L];
        acc.store_aligned(lanes);
        for (std::size_t j = 0; j < L; ++j) tail += lanes[j];
        out[o] = tail;
    }
    if (!detail::recording()) return bb;
    return make_op("conv2d_bias_grad", std::move(bb), g, [geom](std::size_t, const Var<T>& h) {
        const ConvGeometry& G = *geom;
        return broadcast_to(reshape(h, {1, static_cast<long>(G.o), 1, 1}), G.y_shape());
    });
}

// --- pooling ----------------------------------------------------------------------

struct PoolGeometry {
    Shape x_shape, y_shape;
    std::size_t planes = 0, h = 0, w = 0, kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0, oh = 0, ow = 0;
    bool count_include_pad = true;
};
using SharedPool = std::shared_ptr<const PoolGeometry>;
using SharedArgmax = std::shared_ptr<const std::vector<std::size_t>>;

PoolGeometry pool_geometry(const char* op, const Shape& xs, Size2 kernel, PoolStride stride, Size2 padding) {
    if (xs.size() != 3 && xs.size() != 4) {
        throw shape_error(fmt::format("{}: x {} must be 3-D (C, H, W) or 4-D (N, C, H, W)", op, shape_string(xs)));
    }
    Size2 s = stride.value.value_or(kernel);
    check_positive(op, "kernel", 2, kernel);
    check_positive(op, "stride", 2, s);
    check_non_negative(op, "padding", 2, padding);
    if (padding.h > kernel.h / 2 || padding.w > kernel.w / 2) {
        throw value_error(fmt::format("{}: padding ({}, {}) must be at most half the kernel ({}, {})", op, padding.h,
                                      padding.w, kernel.h, kernel.w));
    }
    PoolGeometry g;
    g.x_shape = xs;
    const std::size_t r = xs.size();
    g.h = xs[r - 2];
    g.w = xs[r - 1];
    g.planes = xs[r - 3] * (r == 4 ? xs[0] : 1);
    if (g.h == 0 || g.w == 0) {
        throw shape_error(fmt::format("{}: x {} has empty planes (H and W must be at least 1)", op, shape_string(xs)));
    }
    g.kh = static_cast<std::size_t>(kernel.h);
    g.kw = static_cast<std::size_t>(kernel.w);
    g.sh = static_cast<std::size_t>(s.h);
    g.sw = static_cast<std::size_t>(s.w);
    g.ph = static_cast<std::size_t>(padding.h);
    g.pw = static_cast<std::size_t>(padding.w);
    if (g.kh > g.h + 2 * g.ph || g.kw > g.w + 2 * g.pw) {
        throw shape_error(fmt::format("{}: kernel ({}, {}) is larger than the padded input ({}, {}) of x {}", op, g.kh,
                                      g.kw, g.h + 2 * g.ph, g.w + 2 * g.pw, shape_string(xs)));
    }
    g.oh = out_size(g.h, g.ph, g.kh, g.sh);
    g.ow = out_size(g.w, g.pw, g.kw, g.sw);
    g.y_shape = xs;
    g.y_shape[r - 2] = g.oh;
    g.y_shape[r - 1] = g.ow;
    return g;
}

/// Calls f(p, q, y0, y1, x0, x1, divisor) for every output position: the
/// window clipped to the input is rows [y0, y1) and columns [x0, x1).
template <class F>
void for_each_window(const PoolGeometry& g, F f) {
    const Index H = Index(g.h), W = Index(g.w);
    for (Index p = 0; p < Index(g.oh); ++p) {
        const Index ys = p * Index(g.sh) - Index(g.ph), ye = std::min(ys + Index(g.kh), H + Index(g.ph));
        const Index y0 = std::max<Index>(ys, 0), y1 = std::min(ye, H);
        for (Index q = 0; q < Index(g.ow); ++q) {
            const Index xs = q * Index(g.sw) - Index(g.pw), xe = std::min(xs + Index(g.kw), W + Index(g.pw));
            const Index x0 = std::max<Index>(xs, 0), x1 = std::min(xe, W);
            const Index divisor = g.count_include_pad ? (ye - ys) * (xe - xs) : (y1 - y0) * (x1 - x0);
            f(p, q, y0, y1, x0, x1, divisor);
        }
    }
}

template <class T> Var<T> pool_gather(const SharedPool& geom, const SharedArgmax& argmax, const Var<T>& x);
template <class T> Var<T> pool_scatter(const SharedPool& geom, const SharedArgmax& argmax, const Var<T>& g);

template <class T>
Var<T> pool_gather(const SharedPool& geom, const SharedArgmax& argmax, const Var<T>& x) {
    const PoolGeometry& G = *geom;
    const std::size_t P = G.oh * G.ow, HW = G.h * G.w;
    Var<T> y = detail::make_uninitialized<T>(G.y_shape);
    T* out = y.mutable_value().data();
    const T* in = x.value().data();
    const std::size_t* at = argmax->data();
    for (std::size_t pl = 0; pl < G.planes; ++pl) {
        for (std::size_t i = 0; i < P; ++i) out[pl * P + i] = in[pl * HW + at[pl * P + i]];
    }
    return make_op("max_pool2d", std::move(y), x, [geom, argmax](std::size_t, const Var<T>& g) {
        return pool_scatter(geom, argmax, g);
    });
}

template <class T>
Var<T> pool_scatter(const SharedPool& geom, const SharedArgmax& argmax, const Var<T>& g) {
    const PoolGeometry& G = *geom;
    const std::size_t P = G.oh * G.ow, HW = G.h * G.w;
    Var<T> xb = detail::make_uninitialized<T>(G.x_shape);
    T* out = xb.mutable_value().data();
    std::fill_n(out, G.planes * HW, T(0));
    const T* in = g.value().data();
    const std::size_t* at = argmax->data();
    for (std::size_t pl = 0; pl < G.planes; ++pl) {
        for (std::size_t i = 0; i < P; ++i) out[pl * HW + at[pl * P + i]] += in[pl * P + i];
    }
    if (!detail::recording()) return xb;
    return make_op("max_pool2d_backward", std::move(xb), g, [geom, argmax](std::size_t, const Var<T>& h) {
        return pool_gather(geom, argmax, h);
    });
}

template <class T> Var<T> avg_forward(const SharedPool& geom, const Var<T>& x);
template <class T> Var<T> avg_backward(const SharedPool& geom, const Var<T>& g);

template <class T>
Var<T> avg_forward(const SharedPool& geom, const Var<T>& x) {
    const PoolGeometry& G = *geom;
    const std::size_t P = G.oh * G.ow, HW = G.h * G.w;
    Var<T> y = detail::make_uninitialized<T>(G.y_shape);
    T* out = y.mutable_value().data();
    const T* in = x.value().data();
    const Index W = Index(G.w), OW = Index(G.ow);
    for (std::size_t pl = 0; pl < G.planes; ++pl) {
        const T* plane = in + pl * HW;
        T* o = out + pl * P;
        for_each_window(G, [&](Index p, Index q, Index y0, Index y1, Index x0, Index x1, Index divisor) {
            T s = 0;
            for (Index a = y0; a < y1; ++a) {
                for (Index b = x0; b < x1; ++b) s += plane[a * W + b];
            }
            o[p * OW + q] = s / T(divisor);
        });
    }
    return make_op("avg_pool2d", std::move(y), x, [geom](std::size_t, const Var<T>& g) { return avg_backward(geom, g); });
}

template <class T>
Var<T> avg_backward(const SharedPool& geom, const Var<T>& g) {
    const PoolGeometry& G = *geom;
    const std::size_t P = G.oh * G.ow, HW = G.h * G.w;
    Var<T> xb = detail::make_uninitialized<T>(G.x_shape);
    T* out = xb.mutable_value().data();
    std::fill_n(out, G.planes * HW, T(0));
    const T* in = g.value().data();
    const Index W = Index(G.w), OW = Index(G.ow);
    for (std::size_t pl = 0; pl < G.planes; ++pl) {
        T* plane = out + pl * HW;
        const T* gp = in + pl * P;
        for_each_window(G, [&](Index p, Index q, Index y0, Index y1, Index x0, Index x1, Index divisor) {
            const T v = gp[p * OW + q] / T(divisor);
            for (Index a = y0; a < y1; ++a) {
                for (Index b = x0; b < x1; ++b) plane[a * W + b] += v;
            }
        });
    }
    if (!detail::recording()) return xb;
    return make_op("avg_pool2d_backward", std::move(xb), g,
                   [geom](std::size_t, const Var<T>& h) { return avg_forward(geom, h); });
}

}  // namespace

template <class T>
Var<T> conv2d(const Var<T>& x, const Var<T>& weight, const Var<T>& bias, Size2 stride, Size2 padding, Size2 dilation,
              long groups) {
    detail::check_defined("conv2d", x);
    detail::check_defined("conv2d", weight);
    Shape bs = bias.defined() ? bias.shape() : Shape();
    auto geom = std::make_shared<const ConvGeometry>(conv_geometry("conv2d", 2, x.shape(), weight.shape(),
                                                                   bias.defined() ? &bs : nullptr, stride, padding,
                                                                   dilation, groups));
    return conv_forward(geom, x, weight, bias.defined() ? &bias : nullptr);
}

template <class T>
Var<T> conv1d(const Var<T>& x, const Var<T>& weight, const Var<T>& bias, long stride, long padding, long dilation,
              long groups) {
    detail::check_defined("conv1d", x);
    detail::check_defined("conv1d", weight);
    Shape bs = bias.defined() ? bias.shape() : Shape();
    const Shape xs = x.shape(), ws = weight.shape();
    auto geom = std::make_shared<const ConvGeometry>(conv_geometry("conv1d", 1, xs, ws, bias.defined() ? &bs : nullptr,
                                                                   {1, stride}, {0, padding}, {1, dilation}, groups));
    const auto l = [](std::size_t v) { return static_cast<long>(v); };
    Var<T> y = conv_forward(geom, reshape(x, {l(xs[0]), l(xs[1]), 1, l(xs[2])}),
                            reshape(weight, {l(ws[0]), l(ws[1]), 1, l(ws[2])}), bias.defined() ? &bias : nullptr);
    return reshape(y, {l(geom->n), l(geom->o), l(geom->ow)});
}

template <class T>
Var<T> max_pool2d(const Var<T>& x, Size2 kernel, PoolStride stride, Size2 padding) {
    detail::check_defined("max_pool2d", x);
    auto geom = std::make_shared<const PoolGeometry>(pool_geometry("max_pool2d", x.shape(), kernel, stride, padding));
    const PoolGeometry& G = *geom;
    const std::size_t P = G.oh * G.ow, HW = G.h * G.w;
    auto argmax = std::make_shared<std::vector<std::size_t>>(G.planes * P);
    const T* in = x.value().data();
    const Index W = Index(G.w), OW = Index(G.ow);
    if (G.kh == 2 && G.kw == 2 && G.sh == 2 && G.sw == 2 && G.ph == 0 && G.pw == 0) {
        // The common 2x2 window at stride 2, whole in the input: its four
        // numbers in the same scan order, each step a select rather than a
        // branch (which data without order would mispredict half the time).
        const Index OH = Index(G.oh);
        for (std::size_t pl = 0; pl < G.planes; ++pl) {
            const T* plane = in + pl * HW;
            std::size_t* at = argmax->data() + pl * P;
            for (Index p = 0; p < OH; ++p) {
                for (Index q = 0; q < OW; ++q) {
                    const Index first = 2 * p * W + 2 * q;
                    const Index window[4] = {first, first + 1, first + W, first + W + 1};
                    Index best = first;
                    T value = -std::numeric_limits<T>::infinity();
                    for (Index i : window) {
                        const T v = plane[i];
                        const bool take = v > value || v != v;
                        value = take ? v : value;
                        best = take ? i : best;
                    }
                    at[p * OW + q] = static_cast<std::size_t>(best);
                }
            }
        }
        return pool_gather<T>(geom, std::move(argmax), x);
    }
    for (std::size_t pl = 0; pl < G.planes; ++pl) {
        const T* plane = in + pl * HW;
        std::size_t* at = argmax->data() + pl * P;
        for_each_window(G, [&](Index p, Index q, Index y0, Index y1, Index x0, Index x1, Index) {
            // PyTorch's scan: the first strict maximum, a NaN replacing any value.
            Index best = y0 * W + x0;
            T value = -std::numeric_limits<T>::infinity();
            for (Index a = y0; a < y1; ++a) {
                for (Index b = x0; b < x1; ++b) {
                    const T v = plane[a * W + b];
                    if (v > value || std::isnan(v)) {
                        value = v;
                        best = a * W + b;
                    }
                }
            }
            at[p * OW + q] = static_cast<std::size_t>(best);
        });
    }
    return pool_gather<T>(geom, std::move(argmax), x);
}

template <class T>
Var<T> avg_pool2d(const Var<T>& x, Size2 kernel, PoolStride stride, Size2 padding, bool count_include_pad) {
    detail::check_defined("avg_pool2d", x);
    PoolGeometry g = pool_geometry("avg_pool2d", x.shape(), kernel, stride, padding);
    g.count_include_pad = count_include_pad;
    return avg_forward(std::make_shared<const PoolGeometry>(std::move(g)), x);
}

#define AD_INSTANTIATE(T)                                                                                   \
    template Var<T> conv2d(const Var<T>&, const Var<T>&, const Var<T>&, Size2, Size2, Size2, long);          \
    template Var<T> conv1d(const Var<T>&, const Var<T>&, const Var<T>&, long, long, long, long);             \
    template Var<T> max_pool2d(const Var<T>&, Size2, PoolStride, Size2);                          \
    template Var<T> avg_pool2d(const Var<T>&, Size2, PoolStride, Size2, bool);

AD_INSTANTIATE(float)
AD_INSTANTIATE(double)

}  // namespace ad
