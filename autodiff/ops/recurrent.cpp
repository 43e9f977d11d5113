// Fused recurrent cells, each forward beside its VJP (g the cotangent of the
// new state h').
//
//   op              h'                                   VJP
//   gru_cell_gates  r = sigmoid(gi_r + gh_r)             dn = g (1 - z) (1 - n^2), dz = g (h - n) z (1 - z),
//                   z = sigmoid(gi_z + gh_z)             dr = dn gh_n r (1 - r);
//                   n = tanh(gi_n + r gh_n)              gi: [dr, dz, dn], gh: [dr, dz, dn r], h: g z
//                   h' = (1 - z) n + z h
//   gru_sequence    h_t = gru_cell_gates(gi_t,           back through time: g_t + the carry from step t + 1
//                     h_{t-1} W_hh^T + b_hh, h_{t-1})    through the cell, carry = h_bar + gh_bar W_hh;
//                   for t = 1..T                         W_hh: sum_t gh_bar_t^T h_{t-1}, b_hh: sum of gh_bar
//
// Unless the sweep records, one pass gives every input's cotangent; a
// recording sweep (create_graph) gets them from engine ops, so that they
// differentiate again.

#include "autodiff/ops/recurrent.hpp"

#include <array>
#include <limits>

#include <fmt/format.h>

#include "autodiff/blas.hpp"
#include "autodiff/kernels.hpp"
#include "autodiff/memory/grad_buffers.hpp"
#include "autodiff/ops/all.hpp"

namespace ad {
namespace {

/// One step's gates for `rows` rows of width hs: gi and gh (rows, 3 hs), h
/// (rows, hs) in; the planes r, z, n (each rows x hs, z right after r) and
/// the new state y out.
template <class T>
void gates_forward(const T* gi, const T* gh, const T* h, std::size_t rows, std::size_t hs, T* r, T* y) {
    const std::size_t plane = rows * hs;
    if (plane == 0) return;
    T* z = r + plane;
    T* n = z + plane;
    // r and z hold the sums, then one sigmoid call covers both planes.
    for (std::size_t b = 0; b < rows; ++b) {
        const T* gib = gi + 3 * b * hs;
        const T* ghb = gh + 3 * b * hs;
        for (std::size_t j = 0; j < hs; ++j) r[b * hs + j] = gib[j] + ghb[j];
        for (std::size_t j = 0; j < hs; ++j) z[b * hs + j] = gib[hs + j] + ghb[hs + j];
    }
    kernels::sigmoid(r, r, 2 * plane);
    for (std::size_t b = 0; b < rows; ++b) {
        const T* gib = gi + 3 * b * hs + 2 * hs;
        const T* ghb = gh + 3 * b * hs + 2 * hs;
        for (std::size_t j = 0; j < hs; ++j) n[b * hs + j] = gib[j] + r[b * hs + j] * ghb[j];
    }
    kernels::tanh(n, n, plane);
    for (std::size_t k = 0; k < plane; ++k) y[k] = n[k] + z[k] * (h[k] - n[k]);
}

/// One step's cotangents from g (rows, hs), the planes r, z, n of
/// gates_forward, gh (rows, 3 hs: its n block is read) and h: [dr, dz, dn]
/// into dgi, [dr, dz, dn r] into dgh (both (rows, 3 hs)), g z into dh. Any
/// of the three may be null.
template <class T>
void gates_backward(const T* g, const T* r, const T* gh, const T* h, std::size_t rows, std::size_t hs, T* dgi,
                    T* dgh, T* dh) {
    const std::size_t plane = rows * hs;
    const T* z = r + plane;
    const T* n = z + plane;
    T* d = dgi ? dgi : dgh;  // where [dr, dz, dn] go first
    for (std::size_t b = 0; b < rows; ++b) {
        const std::size_t k = b * hs;
        if (d) {
            T* dr = d + 3 * k;
            T* dz = dr + hs;
            T* dn = dz + hs;
            const T* gh_n = gh + 3 * k + 2 * hs;
            for (std::size_t j = 0; j < hs; ++j) {
                const T gj = g[k + j], rj = r[k + j], zj = z[k + j], nj = n[k + j];
                const T dnj = gj * (T(1) - zj) * (T(1) - nj * nj);
                dn[j] = dnj;
                dz[j] = gj * (h[k + j] - nj) * zj * (T(1) - zj);
                dr[j] = dnj * gh_n[j] * rj * (T(1) - rj);
            }
            if (dgh) {  // the same but dn r in the n block; in place when d is dgh
                T* out = dgh + 3 * k;
                if (out != dr) std::copy_n(dr, 2 * hs, out);
                for (std::size_t j = 0; j < hs; ++j) out[2 * hs + j] = dn[j] * r[k + j];
            }
        }
        if (dh) {
            for (std::size_t j = 0; j < hs; ++j) dh[k + j] = g[k + j] * z[k + j];
        }
    }
}

/// The cell's cotangents (gi, gh, h) from engine ops on its inputs, the
/// gates recomputed: what a recording sweep differentiates again.
template <class T>
std::array<Var<T>, 3> recorded_gate_cotangents(const Var<T>& gi, const Var<T>& gh, const Var<T>& h, const Var<T>& g) {
    std::vector<Var<T>> a = chunk(gi, 3, 1), b = chunk(gh, 3, 1);
    Var<T> r = sigmoid(a[0] + b[0]);
    Var<T> z = sigmoid(a[1] + b[1]);
    Var<T> n = tanh(a[2] + r * b[2]);
    Var<T> dn = g * (T(1) - z) * (T(1) - n * n);
    Var<T> dz = g * (h - n) * z * (T(1) - z);
    Var<T> dr = dn * b[2] * r * (T(1) - r);
    return {concatenate({dr, dz, dn}, 1), concatenate({dr, dz, dn * r}, 1), g * z};
}

/// The cotangents a fused VJP computed together, handed out one per call.
/// The record calls the VJP once per input that wants a gradient, in the
/// same sweep with the same g: the first call computes them all. `from_`
/// holds that g, so its node cannot be another sweep's g; a sweep that
/// stopped part-way leaves stale ones for this check.
template <class T, std::size_t K>
class PendingCotangents {
public:
    explicit PendingCotangents(std::array<bool, K> wanted) : wanted_(wanted) {}

    /// Input i's cotangent; `compute(pending)` fills every wanted one.
    template <class Compute>
    Var<T> take(std::size_t i, const Var<T>& g, Compute&& compute) {
        if (!pending_[i].defined() || from_.node_ptr().get() != g.node_ptr().get()) {
            wanted_[i] = true;  // asked for, so wanted even if it needed no gradient when recorded
            for (auto& p : pending_) p = Var<T>();
            compute(pending_);
            from_ = g;
        }
        Var<T> out = std::move(pending_[i]);
        pending_[i] = Var<T>();
        bool any = false;
        for (const auto& p : pending_) any = any || p.defined();
        if (!any) from_ = Var<T>();
        return out;
    }

    bool wanted(std::size_t i) const { return wanted_[i]; }

private:
    std::array<bool, K> wanted_;
    std::array<Var<T>, K> pending_;
    Var<T> from_;
};

/// A shape_error unless gi and gh are (N, 3H) and h is (N, H).
template <class T>
void check_cell(const Var<T>& gi, const Var<T>& gh, const Var<T>& h) {
    for (const auto* v : {&gi, &gh, &h}) detail::check_defined("gru_cell_gates", *v);
    const auto& a = gi.value().shape();
    const auto& b = gh.value().shape();
    const auto& s = h.value().shape();
    if (gi.dim() != 2 || gh.dim() != 2 || h.dim() != 2 || a[0] != s[0] || b[0] != s[0] || a[1] != 3 * s[1] ||
        b[1] != 3 * s[1]) {
        throw shape_error(fmt::format("gru_cell_gates: gi {}, gh {} and h {} do not fit (N, 3H), (N, 3H), (N, H)",
                                      shape_string_of(gi.value()), shape_string_of(gh.value()),
                                      shape_string_of(h.value())));
    }
}

/// gru_cell_gates' VJP: inputs gi, gh and h; the gates' planes kept from the forward.
template <class T>
class GruGatesVjp {
public:
    GruGatesVjp(const Var<T>& gi, const Var<T>& gh, const Var<T>& h, Var<T> gates)
        : gi_(detail::kept(gi)),
          gh_(detail::kept(gh)),
          h_(detail::kept(h)),
          gates_(std::move(gates)),
          pending_({gi.requires_grad(), gh.requires_grad(), h.requires_grad()}) {}

    Var<T> operator()(std::size_t i, const Var<T>& g) {
        if (detail::recording()) return recorded_gate_cotangents(gi_, gh_, h_, g)[i];
        return pending_.take(i, g, [&](std::array<Var<T>, 3>& out) {
            const auto& shape = h_.value().shape();
            const std::array<std::size_t, 2> gate_shape{shape[0], 3 * shape[1]};
            for (std::size_t k = 0; k < 2; ++k) {
                if (pending_.wanted(k)) out[k] = detail::make_uninitialized<T>(gate_shape);
            }
            if (pending_.wanted(2)) out[2] = detail::make_uninitialized<T>(shape);
            auto data = [](Var<T>& v) { return v.defined() ? v.mutable_value().data() : nullptr; };
            gates_backward(g.value().data(), gates_.value().data(), gh_.value().data(), h_.value().data(), shape[0],
                           shape[1], data(out[0]), data(out[1]), data(out[2]));
        });
    }

private:
    detail::Kept<T> gi_, gh_, h_;
    Var<T> gates_;  // (3, N, H): the planes r, z, n
    PendingCotangents<T, 3> pending_;
};

/// A shape_error unless gi is (T N, 3H), h0 (N, H), w_hh (3H, H) and b_hh
/// (3H) or empty; the number of steps T.
template <class T>
std::size_t check_sequence(const Var<T>& gi, const Var<T>& h0, const Var<T>& w_hh, const Var<T>& b_hh) {
    for (const auto* v : {&gi, &h0, &w_hh}) detail::check_defined("gru_sequence", *v);
    const auto& a = gi.value().shape();
    const auto& s = h0.value().shape();
    const auto& w = w_hh.value().shape();
    bool fits = gi.dim() == 2 && h0.dim() == 2 && w_hh.dim() == 2 && a[1] == 3 * s[1] && w[0] == 3 * s[1] &&
                w[1] == s[1] && (s[0] == 0 ? a[0] == 0 : a[0] % s[0] == 0);
    if (b_hh.defined()) fits = fits && b_hh.dim() == 1 && b_hh.value().shape()[0] == 3 * s[1];
    if (!fits) {
        throw shape_error(fmt::format(
            "gru_sequence: gi {}, h0 {}, w_hh {} and b_hh {} do not fit (T N, 3H), (N, H), (3H, H), (3H,)",
            shape_string_of(gi.value()), shape_string_of(h0.value()), shape_string_of(w_hh.value()),
            b_hh.defined() ? shape_string_of(b_hh.value()) : std::string("(none)")));
    }
    return s[0] == 0 ? 0 : a[0] / s[0];
}

/// x W^T (+ b), for the recorded VJP.
template <class T>
Var<T> hidden_projection(const Var<T>& x, const Var<T>& w, const Var<T>& b) {
    return b.defined() ? linear(x, w, b) : matmul(x, w, false, true);
}

/// gru_sequence's VJP: inputs gi, h0, w_hh and (when given) b_hh.
template <class T>
class GruSequenceVjp {
public:
    GruSequenceVjp(const Var<T>& gi, const Var<T>& h0, const Var<T>& w_hh, const Var<T>& b_hh, Var<T> gh,
                   Var<T> gates, std::size_t steps)
        : gi_(detail::kept(gi)),
          h0_(detail::kept(h0)),
          w_(detail::kept(w_hh)),
          b_(b_hh.defined() ? detail::kept(b_hh) : detail::Kept<T>()),
          gh_(std::move(gh)),
          gates_(std::move(gates)),
          steps_(steps),
          pending_({gi.requires_grad(), h0.requires_grad(), w_hh.requires_grad(),
                    b_hh.defined() && b_hh.requires_grad()}) {}

    /// `states` is the op's result: h_1 .. h_T, (T N, H).
    Var<T> operator()(std::size_t i, const Var<T>& g, const Var<T>& states) {
        if (detail::recording()) return recorded(i, g);
        return pending_.take(i, g, [&](std::array<Var<T>, 4>& out) { fused(g, states.value().data(), out); });
    }

private:
    /// Back through time in one pass: per step the cell's cotangents, the
    /// carry's product with W_hh; then W_hh's and b_hh's over all steps at once.
    void fused(const Var<T>& g, const T* states, std::array<Var<T>, 4>& out) {
        const char* op = "gru_sequence";
        const std::size_t rows = h0_.value().shape()[0], hs = h0_.value().shape()[1], plane = rows * hs;
        const std::size_t all = steps_ * rows;
        if (pending_.wanted(0)) out[0] = detail::make_uninitialized<T>(std::array<std::size_t, 2>{all, 3 * hs});
        Var<T> dgh = detail::make_uninitialized<T>(std::array<std::size_t, 2>{all, 3 * hs});
        Var<T> carry = detail::make_uninitialized<T>(h0_.value().shape());
        Var<T> step_g = detail::make_uninitialized<T>(h0_.value().shape());
        T* c = carry.mutable_value().data();
        T* sg = step_g.mutable_value().data();
        std::fill_n(c, plane, T(0));
        const T* gv = g.value().data();
        const T* ghv = gh_.value().data();
        const T* gates = gates_.value().data();
        const T* w = w_.value().data();
        T* dgi = pending_.wanted(0) ? out[0].mutable_value().data() : nullptr;
        T* dghv = dgh.mutable_value().data();
        const int n = blas::checked_int(op, rows), h = blas::checked_int(op, hs), h3 = blas::checked_int(op, 3 * hs);
        for (std::size_t t = steps_; t-- > 0;) {
            const T* prev = t == 0 ? h0_.value().data() : states + (t - 1) * plane;
            for (std::size_t k = 0; k < plane; ++k) sg[k] = gv[t * plane + k] + c[k];
            gates_backward(sg, gates + 3 * t * plane, ghv + 3 * t * plane, prev, rows, hs,
                           dgi ? dgi + 3 * t * plane : nullptr, dghv + 3 * t * plane, c);
            if (plane > 0) blas::gemm(false, false, n, h, h3, T(1), dghv + 3 * t * plane, h3, w, h, T(1), c);
        }
        if (pending_.wanted(1)) out[1] = std::move(carry);
        if (pending_.wanted(2)) {
            // sum_t gh_bar_t^T h_{t-1}: h0 for the first step, the states before the last for the rest.
            Var<T> dw = detail::lend_grad_buffer(w_);
            if (!detail::fits(dw, w_.value().shape())) dw = detail::make_uninitialized<T>(w_.value().shape());
            T* dwv = dw.mutable_value().data();
            if (plane == 0 || steps_ == 0) {
                std::fill_n(dwv, dw.size(), T(0));
            } else {
                blas::gemm(true, false, h3, h, n, T(1), dghv, h3, h0_.value().data(), h, T(0), dwv);
                if (steps_ > 1) {
                    blas::gemm(true, false, h3, h, blas::checked_int(op, (steps_ - 1) * rows), T(1), dghv + 3 * plane, h3,
                               states, h, T(1), dwv);
                }
            }
            out[2] = std::move(dw);
        }
        if (pending_.wanted(3)) out[3] = detail::column_sums(dgh, detail::lend_grad_buffer(b_));
    }

    /// The same from engine ops: the forward recomputed step by step, then back through time.
    Var<T> recorded(std::size_t i, const Var<T>& g) const {
        if (steps_ == 0) {  // no step reads the inputs
            const Var<T>& input = i == 0 ? gi_ : i == 1 ? h0_ : i == 2 ? w_ : b_;
            return constant(Array<T>(xt::zeros<T>(input.value().shape())));
        }
        const std::size_t rows = h0_.value().shape()[0];
        std::vector<Var<T>> gis, ghs, prevs;
        Var<T> h = h0_;
        for (std::size_t t = 0; t < steps_; ++t) {
            gis.push_back(ad::rows(gi_, t * rows, (t + 1) * rows));
            ghs.push_back(hidden_projection(h, w_, b_));
            prevs.push_back(h);
            h = gru_cell_gates(gis.back(), ghs.back(), h);
        }
        Var<T> carry;
        std::vector<Var<T>> dgi(steps_), dgh(steps_);
        for (std::size_t t = steps_; t-- > 0;) {
            Var<T> gt = ad::rows(g, t * rows, (t + 1) * rows);
            if (carry.defined()) gt = gt + carry;
            std::array<Var<T>, 3> d = recorded_gate_cotangents(gis[t], ghs[t], prevs[t], gt);
            dgi[t] = d[0];
            dgh[t] = d[1];
            carry = d[2] + matmul(d[1], w_);
        }
        if (i == 0) return concatenate(dgi, 0);
        if (i == 1) return carry;
        Var<T> all_dgh = concatenate(dgh, 0);
        if (i == 2) return matmul(all_dgh, concatenate(prevs, 0), true, false);
        return sum(all_dgh, 0);
    }

    detail::Kept<T> gi_, h0_, w_, b_;
    Var<T> gh_;      // (T N, 3H): h_{t-1} W_hh^T + b_hh of every step
    Var<T> gates_;   // (T, 3, N, H): each step's planes r, z, n
    std::size_t steps_;
    PendingCotangents<T, 4> pending_;
};

}  // namespace

template <class T>
Var<T> gru_cell_gates(const Var<T>& gi, const Var<T>& gh, const Var<T>& h) {
    check_cell(gi, gh, h);
    const auto& shape = h.value().shape();
    Var<T> gates = detail::make_uninitialized<T>(std::array<std::size_t, 3>{3, shape[0], shape[1]});
    Var<T> result = detail::make_uninitialized<T>(shape);
    gates_forward(gi.value().data(), gh.value().data(), h.value().data(), shape[0], shape[1],
                  gates.mutable_value().data(), result.mutable_value().data());
    return make_op("gru_cell_gates", std::move(result), gi, gh, h, GruGatesVjp<T>(gi, gh, h, std::move(gates)));
}

template <class T>
Var<T> gru_sequence(const Var<T>& gi, const Var<T>& h0, const Var<T>& w_hh, const Var<T>& b_hh) {
    const char* op = "gru_sequence";
    const std::size_t steps = check_sequence(gi, h0, w_hh, b_hh);
    const std::size_t rows = h0.value().shape()[0], hs = h0.value().shape()[1], plane = rows * hs;
    Var<T> states = detail::make_uninitialized<T>(std::array<std::size_t, 2>{steps * rows, hs});
    Var<T> gh = detail::make_uninitialized<T>(std::array<std::size_t, 2>{steps * rows, 3 * hs});
    Var<T> gates = detail::make_uninitialized<T>(std::array<std::size_t, 4>{steps, 3, rows, hs});
    T* y = states.mutable_value().data();
    T* ghv = gh.mutable_value().data();
    T* gv = gates.mutable_value().data();
    const T* giv = gi.value().data();
    const T* w = w_hh.value().data();
    const int n = blas::checked_int(op, rows), h = blas::checked_int(op, hs), h3 = blas::checked_int(op, 3 * hs);
    for (std::size_t t = 0; t < steps && plane > 0; ++t) {
        const T* prev = t == 0 ? h0.value().data() : y + (t - 1) * plane;
        T* step_gh = ghv + 3 * t * plane;
        // Each row starts as the bias (or zeros), then the GEMM adds h_{t-1} W_hh^T.
        for (std::size_t b = 0; b < rows; ++b) {
            T* row = step_gh + 3 * b * hs;
            if (b_hh.defined()) {
                std::copy_n(b_hh.value().data(), 3 * hs, row);
            } else {
                std::fill_n(row, 3 * hs, T(0));
            }
        }
        blas::gemm(false, true, n, h3, h, T(1), prev, h, w, h, T(1), step_gh);
        gates_forward(giv + 3 * t * plane, step_gh, prev, rows, hs, gv + 3 * t * plane, y + t * plane);
    }
    GruSequenceVjp<T> vjp(gi, h0, w_hh, b_hh, std::move(gh), std::move(gates), steps);
    if (b_hh.defined()) {
        return detail::record_op(op, std::move(states), std::array<const Var<T>*, 4>{&gi, &h0, &w_hh, &b_hh},
                                 std::move(vjp));
    }
    return detail::record_op(op, std::move(states), std::array<const Var<T>*, 3>{&gi, &h0, &w_hh}, std::move(vjp));
}

#define AD_INSTANTIATE(T)                                                                \
    template Var<T> gru_cell_gates(const Var<T>&, const Var<T>&, const Var<T>&); \
    template Var<T> gru_sequence(const Var<T>&, const Var<T>&, const Var<T>&, const Var<T>&);

AD_INSTANTIATE(float)
AD_INSTANTIATE(double)

}  // namespace ad
