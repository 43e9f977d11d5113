// Fused ops of neural networks: one record each, a stable forward, and a VJP
// written with engine ops (so it can be differentiated again). softmax,
// log_softmax, half_sse and mse compute the same VJP in one pass when the
// sweep records nothing (no create_graph). g is the cotangent of the result
// y; s is 1 for a summed loss and 1/n for a mean.
//
//   op                     y                                  VJP
//   softmax                e^(x - max) / sum e^(x - max)      y (g - sum(g y))
//   log_softmax            x - max - log sum e^(x - max)      g - e^y sum(g)
//   softmax_cross_entropy  -s sum(t log_softmax(z))           z: g s (softmax(z) sum_row(t) - t)   t: -g s log_softmax(z)
//   half_sse               s/2 sum (p - t)^2                  p: g s (p - t)                        t: -g s (p - t)
//   mse                    s sum (p - t)^2                    p: 2 g s (p - t)                      t: -2 g s (p - t)
//   binary_cross_entropy   -s sum(t log p + (1-t) log(1-p))   p: g s (p - t) / (p (1 - p))          t: g s (log(1-p) - log p)
//   huber_loss             s sum h(p - t), h(r) = r^2/2       p: g s clamp(p - t, -d, d)            t: -(that)
//                          (|r| <= d), d (|r| - d/2) beyond
//   l1_loss                s sum |p - t|                      composed: abs (sign, 0 at p = t), sum
//   nll_loss               -s sum_r lp[r, c_r]                composed: gather (scatter_add), sum
//   cross_entropy          (1 - e) nll(log_softmax(z)) -      composed of log_softmax, nll_loss, sum
//                          e/C s sum log_softmax(z)
//
// (sums along the softmax axis; log clamped at -100 and p (1 - p) at 1e-12 as in PyTorch.
// Means: half_sse and the cross-entropies divide by the rows, mse, huber_loss and l1_loss
// by all elements, as PyTorch's losses do; a mean over no rows or elements is NaN, as
// mean() of an empty value and PyTorch's losses are, and a sum over none is 0.)

#include "autodiff/ops/nn.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <fmt/format.h>
#include <xtensor/xmath.hpp>
#include <xtensor/xstrided_view.hpp>
#include <xtensor/xreducer.hpp>
#include <xtensor/xsort.hpp>

#include "autodiff/kernels.hpp"
#include "autodiff/ops/all.hpp"

namespace ad {
namespace {

/// x seen as row-major (outer, n, inner) blocks around `axis`: n values along
/// the axis for each of the outer x inner lanes.
struct Lanes {
    std::size_t outer = 1, n = 1, inner = 1;
    std::size_t block() const { return n * inner; }
};

template <class S>
Lanes lanes_of(const S& shape, std::size_t axis) {
    Lanes l;
    l.n = shape[axis];
    for (std::size_t d = 0; d < axis; ++d) l.outer *= shape[d];
    for (std::size_t d = axis + 1; d < shape.size(); ++d) l.inner *= shape[d];
    return l;
}

/// Scratch numbers (one per lane, or a block's), reused by the thread: a
/// fresh array for every softmax over a trailing axis would cost more than
/// its arithmetic.
template <class T, int Slot = 0>
T* lane_scratch(std::size_t inner) {
    thread_local std::vector<T> scratch;
    if (scratch.size() < inner) scratch.resize(inner);
    return scratch.data();
}

/// The stable pieces of softmax along the lanes: shifted = x - max per lane,
/// e = e^shifted (by kernels::exp, whose bits do not depend on where the
/// arrays sit) and sums = the sum of e per lane. `shifted` may be null
/// (softmax needs only e: it lands in e). With `e_one_block`, e holds one
/// block, overwritten by each (log_softmax needs only the sums of e). NaN
/// propagates through the max.
template <class T>
void softmax_pieces(const T* x, const Lanes& l, T* shifted, T* e, T* sums, bool e_one_block = false) {
    const std::size_t inner = l.inner, n = l.n, block = l.block();
    if (block == 0) {
        std::fill_n(sums, l.outer * inner, T(0));
        return;
    }
    if (inner == 1) {  // the last axis: one row at a time, while it is in cache
        for (std::size_t r = 0; r < l.outer; ++r) {
            const T* in = x + r * n;
            T* ex = e_one_block ? e : e + r * n;
            T* sh = shifted ? shifted + r * n : ex;
            const T max = kernels::max_or_nan(in, n);
            for (std::size_t k = 0; k < n; ++k) sh[k] = in[k] - max;
            kernels::exp(sh, ex, n);
            sums[r] = kernels::interleaved_sum<T>(n, [ex](std::size_t k) { return ex[k]; });
        }
        return;
    }
    for (std::size_t o = 0; o < l.outer; ++o) {
        const T* in = x + o * block;
        T* ex = e_one_block ? e : e + o * block;
        T* lane_sums = sums + o * inner;
        // The lanes' maxima, kept in `lane_sums` until the sums replace them.
        std::copy(in, in + inner, lane_sums);
        for (std::size_t k = 1; k < n; ++k) {
            for (std::size_t i = 0; i < inner; ++i) {
                const T v = in[k * inner + i];
                if (v > lane_sums[i] || std::isnan(v)) lane_sums[i] = v;
            }
        }
        T* sh = shifted ? shifted + o * block : ex;
        for (std::size_t k = 0; k < n; ++k) {
            for (std::size_t i = 0; i < inner; ++i) sh[k * inner + i] = in[k * inner + i] - lane_sums[i];
        }
        kernels::exp(sh, ex, block);
        std::copy(ex, ex + inner, lane_sums);
        for (std::size_t k = 1; k < n; ++k) {
            for (std::size_t i = 0; i < inner; ++i) lane_sums[i] += ex[k * inner + i];
        }
    }
}

/// The VJP of softmax or log_softmax along `axis` when nothing records, in
/// one pass per block into a fresh node (through engine ops it is four ops
/// and three temporaries, and the broadcast subtraction walks strides):
/// `per_block(l, g, y, out, lane_sums)` fills one block of the output, with
/// one zeroed number per lane in the thread's scratch.
template <class T, class PerBlock>
Var<T> lanewise_backward(const Var<T>& g, const Var<T>& y, std::size_t axis, PerBlock per_block) {
    const Lanes l = lanes_of(y.value().shape(), axis);
    Var<T> out = detail::make_uninitialized<T>(y.value().shape());
    T* o = out.mutable_value().data();
    const T* gv = g.value().data();
    const T* yv = y.value().data();
    T* lane_sums = lane_scratch<T>(l.inner);
    for (std::size_t b = 0, block = l.block(); b < l.outer; ++b, gv += block, yv += block, o += block) {
        std::fill_n(lane_sums, l.inner, T(0));
        per_block(l, gv, yv, o, lane_sums);
    }
    return out;
}

/// softmax's VJP y (g - sum(g y)).
template <class T>
Var<T> softmax_backward(const Var<T>& g, const Var<T>& y, std::size_t axis) {
    return lanewise_backward(g, y, axis, [](const Lanes& l, const T* gv, const T* yv, T* o, T* dots) {
        if (l.inner == 1) {  // the last axis: a dot product per row
            const T dot = kernels::interleaved_sum<T>(l.n, [gv, yv](std::size_t k) { return gv[k] * yv[k]; });
            for (std::size_t k = 0; k < l.n; ++k) o[k] = yv[k] * (gv[k] - dot);
            return;
        }
        for (std::size_t k = 0; k < l.n; ++k) {
            for (std::size_t i = 0; i < l.inner; ++i) dots[i] += gv[k * l.inner + i] * yv[k * l.inner + i];
        }
        for (std::size_t k = 0; k < l.n; ++k) {
            for (std::size_t i = 0; i < l.inner; ++i) {
                o[k * l.inner + i] = yv[k * l.inner + i] * (gv[k * l.inner + i] - dots[i]);
            }
        }
    });
}

/// log_softmax's VJP g - e^y sum(g).
template <class T>
Var<T> log_softmax_backward(const Var<T>& g, const Var<T>& y, std::size_t axis) {
    return lanewise_backward(g, y, axis, [](const Lanes& l, const T* gv, const T* yv, T* o, T* sums) {
        for (std::size_t k = 0; k < l.n; ++k) {
            for (std::size_t i = 0; i < l.inner; ++i) sums[i] += gv[k * l.inner + i];
        }
        kernels::exp(yv, o, l.block());
        for (std::size_t k = 0; k < l.n; ++k) {
            for (std::size_t i = 0; i < l.inner; ++i) o[k * l.inner + i] = gv[k * l.inner + i] - o[k * l.inner + i] * sums[i];
        }
    });
}

/// x - max along axis, and log sum exp of that (kept as a 1).
template <class T>
std::pair<Array<T>, Array<T>> shifted_and_log_norm(const Array<T>& x, std::size_t axis) {
    const Lanes l = lanes_of(shape_of(x), axis);
    Shape kept = shape_of(x);
    kept[axis] = 1;
    Array<T> shifted = Array<T>::from_shape(x.shape());
    Array<T> log_norm = Array<T>::from_shape(kept);
    softmax_pieces(x.data(), l, shifted.data(), lane_scratch<T, 1>(l.block()), log_norm.data(), true);
    kernels::log(log_norm.data(), log_norm.data(), log_norm.size());
    return {std::move(shifted), std::move(log_norm)};
}

template <class T>
[[noreturn, gnu::noinline]] void reject_shapes(const char* op, const Var<T>& pred, const Var<T>& target) {
    throw shape_error(fmt::format("{}: prediction {} and target {} differ in shape", op,
                                  shape_string_of(pred.value()), shape_string_of(target.value())));
}

/// Inline (every loss runs it), with the throw out of line: AD_INLINE would
/// otherwise copy the message's formatting into every loss.
template <class T>
AD_INLINE void check_same_shape(const char* op, const Var<T>& pred, const Var<T>& target) {
    detail::check_defined(op, pred);
    detail::check_defined(op, target);
    if (!equal_shapes(pred.value(), target.value())) reject_shapes(op, pred, target);
}

/// 1 for a sum, 1 / n for a mean of the n elements or rows of the input. A
/// mean over none is 1 / 0: the loss is 0 inf = NaN, as torch's losses give
/// (and the input's gradient is empty).
template <class T>
T reduction_scale(Reduction reduction, std::size_t n) {
    return reduction == Reduction::sum ? T(1) : T(1) / T(n);
}

/// A value_error unless every class index lies in [0, n_classes).
void check_classes(const char* op, const IndexArray& classes, std::size_t n_classes) {
    for (std::size_t r = 0; r < classes.size(); ++r) {
        if (classes(r) < 0 || static_cast<std::size_t>(classes(r)) >= n_classes) {
            throw value_error(fmt::format("{}: class {} of row {} is out of range for {} classes", op, classes(r), r, n_classes));
        }
    }
}

template <class T>
std::size_t batch_size(const Var<T>& x) {
    const auto& shape = x.value().shape();
    return shape.empty() ? 1 : shape[0];
}

/// sum (p - t)^2 in one pass (xtensor's reducer costs microseconds on a
/// handful of elements), as a 0-d value.
template <class T>
AD_INLINE Var<T> scaled_squared_error(const Var<T>& pred, const Var<T>& target, T scale) {
    T total = 0;
    const T* p = pred.value().data();
    const T* t = target.value().data();
    for (std::size_t i = 0, n = pred.size(); i < n; ++i) total += (p[i] - t[i]) * (p[i] - t[i]);
    Var<T> loss = detail::make_uninitialized<T>(std::array<std::size_t, 0>{});
    loss.mutable_value().data()[0] = scale * total;
    return loss;
}

/// (p - t) c in one pass into a fresh node: the VJP of half_sse and mse when
/// nothing records (a sweep without create_graph). Through engine ops it is
/// three ops and two temporaries, a twentieth of a small model's step.
template <class T>
Var<T> scaled_difference(const Var<T>& pred, const Var<T>& target, T c) {
    Var<T> out = detail::make_uninitialized<T>(pred.value().shape());
    const T* p = pred.value().data();
    const T* t = target.value().data();
    T* o = out.mutable_value().data();
    for (std::size_t i = 0, n = pred.size(); i < n; ++i) o[i] = (p[i] - t[i]) * c;
    return out;
}

/// The VJP of a loss c sum (p - t)^2 (c = `scale` for p, -`scale` for t),
/// given the loss's one-element cotangent g.
template <class T>
AD_INLINE Var<T> squared_error_vjp(const Var<T>& pred, const Var<T>& target, const Var<T>& g, T scale) {
    if (!detail::recording()) return scaled_difference(pred, target, g.value().data()[0] * scale);
    return (pred - target) * (g * scale);
}

}  // namespace

template <class T>
Var<T> softmax(const Var<T>& x, long axis) {
    detail::check_defined("softmax", x);
    std::size_t ax = normalize_axis("softmax", axis, x.dim());
    const Lanes l = lanes_of(x.value().shape(), ax);
    Var<T> y = detail::make_uninitialized<T>(x.value().shape());
    T* out = y.mutable_value().data();
    T* sums = lane_scratch<T>(l.outer * l.inner);
    softmax_pieces<T>(x.value().data(), l, nullptr, out, sums);
    // y = e^shifted / sum, lane by lane.
    if (l.inner == 1) {
        for (std::size_t r = 0; r < l.outer; ++r, out += l.n) {
            const T sum = sums[r];
            for (std::size_t k = 0; k < l.n; ++k) out[k] /= sum;
        }
    }
    for (std::size_t o = 0; l.inner != 1 && o < l.outer; ++o) {
        const T* lane_sums = sums + o * l.inner;
        for (std::size_t k = 0; k < l.n; ++k, out += l.inner) {
            for (std::size_t i = 0; i < l.inner; ++i) out[i] /= lane_sums[i];
        }
    }
    return make_op("softmax", std::move(y), x, [ax](std::size_t, const Var<T>& g, const Var<T>& y) {
        if (!detail::recording()) return softmax_backward(g, y, ax);
        return y * (g - sum(g * y, static_cast<long>(ax), true));
    });
}

template <class T>
Var<T> log_softmax(const Var<T>& x, long axis) {
    detail::check_defined("log_softmax", x);
    std::size_t ax = normalize_axis("log_softmax", axis, x.dim());
    const Lanes l = lanes_of(x.value().shape(), ax);
    Var<T> y = detail::make_uninitialized<T>(x.value().shape());
    T* out = y.mutable_value().data();
    T* log_norm = lane_scratch<T>(l.outer * l.inner);
    softmax_pieces<T>(x.value().data(), l, out, lane_scratch<T, 1>(l.block()), log_norm, true);
    kernels::log(log_norm, log_norm, l.outer * l.inner);
    // y = shifted - log sum e^shifted, lane by lane.
    for (std::size_t o = 0; o < l.outer; ++o) {
        const T* lane_norms = log_norm + o * l.inner;
        for (std::size_t k = 0; k < l.n; ++k, out += l.inner) {
            for (std::size_t i = 0; i < l.inner; ++i) out[i] -= lane_norms[i];
        }
    }
    return make_op("log_softmax", std::move(y), x, [ax](std::size_t, const Var<T>& g, const Var<T>& y) {
        if (!detail::recording()) return log_softmax_backward(g, y, ax);
        return g - exp(y) * sum(g, static_cast<long>(ax), true);
    });
}

template <class T>
Var<T> softmax_cross_entropy(const Var<T>& logits, const Var<T>& targets, Reduction reduction) {
    check_same_shape("softmax_cross_entropy", logits, targets);
    if (logits.dim() != 2) {
        throw shape_error(fmt::format("softmax_cross_entropy: logits must be 2-D (rows are samples), got {}",
                                      shape_string_of(logits.value())));
    }
    auto [shifted, log_norm] = shifted_and_log_norm(logits.value(), 1);
    // A mean over logits with no elements is NaN even with rows (torch's, for (N, 0) logits).
    T s = reduction_scale<T>(reduction, logits.size() == 0 ? 0 : logits.value().shape()[0]);
    Array<T> loss = -s * xt::sum(targets.value() * (shifted - log_norm))();
    return make_op("softmax_cross_entropy", std::move(loss), logits, targets,
                   [logits, targets = detail::kept(targets), s](std::size_t i, const Var<T>& g) {
                       if (i == 0) return (softmax(logits, 1) * sum(targets, 1, true) - targets) * (g * s);
                       return log_softmax(logits, 1) * (g * -s);
                   });
}

template <class T>
Var<T> softmax_cross_entropy(const Var<T>& logits, const std::vector<std::size_t>& classes, Reduction reduction) {
    detail::check_defined("softmax_cross_entropy", logits);
    if (logits.dim() != 2 || logits.value().shape()[0] != classes.size()) {
        throw shape_error(fmt::format("softmax_cross_entropy: logits {} do not match {} class indices (one per row)",
                                      shape_string_of(logits.value()), classes.size()));
    }
    std::size_t n_classes = logits.value().shape()[1];
    Array<T> one_hot = xt::zeros<T>(logits.value().shape());
    for (std::size_t r = 0; r < classes.size(); ++r) {
        if (classes[r] >= n_classes) {
            throw value_error(fmt::format("softmax_cross_entropy: class {} of row {} is out of range for {} classes",
                                          classes[r], r, n_classes));
        }
        one_hot(r, classes[r]) = T(1);
    }
    return softmax_cross_entropy(logits, constant(std::move(one_hot)), reduction);
}

template <class T>
Var<T> half_sse(const Var<T>& pred, const Var<T>& target, Reduction reduction) {
    check_same_shape("half_sse", pred, target);
    T s = reduction_scale<T>(reduction, batch_size(pred));
    return detail::record_op("half_sse", scaled_squared_error(pred, target, T(0.5) * s),
                             std::array<const Var<T>*, 2>{&pred, &target},
                             [pred, target = detail::kept(target), s](std::size_t i, const Var<T>& g) {
                                 return squared_error_vjp(pred, target, g, i == 0 ? s : -s);
                             });
}

template <class T>
Var<T> mse(const Var<T>& pred, const Var<T>& target, Reduction reduction) {
    check_same_shape("mse", pred, target);
    T s = reduction_scale<T>(reduction, pred.size());
    return detail::record_op("mse", scaled_squared_error(pred, target, s), std::array<const Var<T>*, 2>{&pred, &target},
                             [pred, target = detail::kept(target), s](std::size_t i, const Var<T>& g) {
                                 return squared_error_vjp(pred, target, g, i == 0 ? 2 * s : -2 * s);
                             });
}

template <class T>
Var<T> binary_cross_entropy(const Var<T>& p, const Var<T>& target, Reduction reduction) {
    check_same_shape("binary_cross_entropy", p, target);
    for (T v : p.value()) {
        if (!(v >= 0 && v <= 1)) {
            throw value_error(fmt::format("binary_cross_entropy: probabilities of shape {} must lie in [0, 1], found {}",
                                          shape_string_of(p.value()), v));
        }
    }
    const T log_floor = -100;
    const T inf = std::numeric_limits<T>::infinity();
    T s = reduction_scale<T>(reduction, p.size());
    auto clamped_log = [log_floor](T v) { return std::max(std::log(v), log_floor); };
    T total = 0;
    const T* pv = p.value().data();
    const T* tv = target.value().data();
    for (std::size_t i = 0, n = p.size(); i < n; ++i) {
        total += tv[i] * clamped_log(pv[i]) + (T(1) - tv[i]) * clamped_log(T(1) - pv[i]);
    }
    Array<T> loss(-s * total);
    return make_op("binary_cross_entropy", std::move(loss), p, target,
                   [p, target = detail::kept(target), s, inf, log_floor](std::size_t i, const Var<T>& g) {
                       if (i == 0) return (p - target) / clamp(p * (T(1) - p), T(1e-12), inf) * (g * s);
                       return (clamp(log(T(1) - p), log_floor, inf) - clamp(log(p), log_floor, inf)) * (g * s);
                   });
}

template <class T>
Var<T> huber_loss(const Var<T>& pred, const Var<T>& target, same_t<T> delta, Reduction reduction) {
    check_same_shape("huber_loss", pred, target);
    const T d = delta;
    if (!(d > 0)) throw value_error(fmt::format("huber_loss: delta must be positive, got {}", d));
    const T s = reduction_scale<T>(reduction, pred.size());
    T total = 0;
    const T* p = pred.value().data();
    const T* t = target.value().data();
    for (std::size_t i = 0, n = pred.size(); i < n; ++i) {
        const T r = std::abs(p[i] - t[i]);
        total += r <= d ? T(0.5) * r * r : d * (r - T(0.5) * d);
    }
    return make_op("huber_loss", Array<T>(s * total), pred, target,
                   [pred, target = detail::kept(target), s, d](std::size_t i, const Var<T>& g) {
                       Var<T> slope = clamp(pred - target, -d, d) * (g * s);
                       return i == 0 ? slope : -slope;
                   });
}

template <class T>
Var<T> l1_loss(const Var<T>& pred, const Var<T>& target, Reduction reduction) {
    check_same_shape("l1_loss", pred, target);
    return sum(abs(pred - target)) * reduction_scale<T>(reduction, pred.size());
}

template <class T>
Var<T> nll_loss(const Var<T>& log_probs, const IndexArray& classes, Reduction reduction) {
    detail::check_defined("nll_loss", log_probs);
    if (log_probs.dim() != 2 || classes.dimension() != 1 || log_probs.value().shape()[0] != classes.size()) {
        throw shape_error(fmt::format("nll_loss: log-probabilities {} do not match class indices {} (one per row)",
                                      shape_string_of(log_probs.value()), shape_string_of(classes)));
    }
    const std::size_t rows = classes.size();
    check_classes("nll_loss", classes, log_probs.value().shape()[1]);
    const IndexArray column = xt::reshape_view(classes, {rows, std::size_t(1)});
    return sum(gather(log_probs, 1, column)) * -reduction_scale<T>(reduction, rows);
}

template <class T>
Var<T> nll_loss(const Var<T>& log_probs, const std::vector<std::size_t>& classes, Reduction reduction) {
    IndexArray indices = IndexArray::from_shape({classes.size()});
    for (std::size_t r = 0; r < classes.size(); ++r) indices(r) = static_cast<std::int64_t>(classes[r]);
    return nll_loss(log_probs, indices, reduction);
}

template <class T>
Var<T> cross_entropy(const Var<T>& logits, const IndexArray& classes, Reduction reduction, same_t<T> label_smoothing) {
    detail::check_defined("cross_entropy", logits);
    const T eps = label_smoothing;
    if (!(eps >= 0 && eps <= 1)) {
        throw value_error(fmt::format("cross_entropy: label_smoothing must lie in [0, 1], got {}", eps));
    }
    if (logits.dim() != 2) {
        throw shape_error(fmt::format("cross_entropy: logits must be 2-D (rows are samples), got {}",
                                      shape_string_of(logits.value())));
    }
    if (classes.dimension() != 1 || logits.value().shape()[0] != classes.size()) {
        throw shape_error(fmt::format("cross_entropy: logits {} do not match class indices {} (one per row)",
                                      shape_string_of(logits.value()), shape_string_of(classes)));
    }
    check_classes("cross_entropy", classes, logits.value().shape()[1]);
    Var<T> log_probs = log_softmax(logits, 1);
    Var<T> loss = nll_loss(log_probs, classes, reduction);
    if (eps == T(0)) return loss;
    const T n_classes = T(logits.value().shape()[1]);
    const T s = reduction_scale<T>(reduction, logits.value().shape()[0]);
    return loss * (T(1) - eps) + sum(log_probs) * (-s * eps / n_classes);
}

#define AD_INSTANTIATE(T)                                                                                  \
    template Var<T> softmax(const Var<T>&, long);                                                          \
    template Var<T> log_softmax(const Var<T>&, long);                                                      \
    template Var<T> softmax_cross_entropy(const Var<T>&, const Var<T>&, Reduction);                        \
    template Var<T> softmax_cross_entropy(const Var<T>&, const std::vector<std::size_t>&, Reduction);      \
    template Var<T> half_sse(const Var<T>&, const Var<T>&, Reduction);                                     \
    template Var<T> mse(const Var<T>&, const Var<T>&, Reduction);                                          \
    template Var<T> binary_cross_entropy(const Var<T>&, const Var<T>&, Reduction);                         \
    template Var<T> huber_loss(const Var<T>&, const Var<T>&, same_t<T>, Reduction);                        \
    template Var<T> l1_loss(const Var<T>&, const Var<T>&, Reduction);                                      \
    template Var<T> nll_loss(const Var<T>&, const IndexArray&, Reduction);                                 \
    template Var<T> nll_loss(const Var<T>&, const std::vector<std::size_t>&, Reduction);                   \
    template Var<T> cross_entropy(const Var<T>&, const IndexArray&, Reduction, same_t<T>);

AD_INSTANTIATE(float)
AD_INSTANTIATE(double)

}  // namespace ad
