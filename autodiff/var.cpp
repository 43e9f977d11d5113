#include "autodiff/var.hpp"

#include <cmath>

#include <fmt/format.h>

#include "autodiff/debug.hpp"
#include "autodiff/functional.hpp"
#include "autodiff/input_checks.hpp"
#include "autodiff/kernels.hpp"
#include "autodiff/memory/grad_buffers.hpp"
#include "autodiff/scalar_tape.hpp"

namespace ad {

template <class T>
void Var<T>::throw_empty(const char* accessor) {
    throw tape_error(fmt::format("Var::{}: this handle is empty (default-constructed or moved from)", accessor));
}

template <class T>
Array<T>& Var<T>::checked_grad() const {
    auto& n = node("grad");
    if (!n.is_leaf) {
        throw tape_error(fmt::format(
            "grad: only parameters accumulate a gradient; this value of shape {} was computed by an "
            "op (use ad::grad(loss, {{x}}) for the gradient of an intermediate value)",
            shape_string_of(n.value)));
    }
    if (!n.requires_grad) {
        throw tape_error(fmt::format("grad: this value of shape {} is a constant, it has no gradient",
                                     shape_string_of(n.value)));
    }
    return detail::written_grad(n);
}

template <class T>
void Var<T>::zero_grad() {
    auto& n = node("zero_grad");
    if (n.grad) n.grad_is_zero = true;
}

template <class T>
T Var<T>::item() const {
    const auto& v = node("item").value;
    if (v.size() != 1) {
        throw shape_error(fmt::format("item: the value has shape {}, not one element", shape_string_of(v)));
    }
    return *v.begin();
}

template <class T>
Var<T> Var<T>::detach() const {
    return constant(Array<T>(node("detach").value));
}

template <class T>
void Var<T>::backward(BackwardOptions options) const {
    detail::run_backward<T>("backward", *this, nullptr, {}, options, true);
}

template <class T>
void Var<T>::backward_from(const Array<T>& seed, BackwardOptions options) const {
    Var<T> seed_var = constant(seed);
    detail::run_backward<T>("backward", *this, &seed_var, {}, options, true);
}

// The leaf kinds.

template <class T>
Var<T> param(Array<T> value) {
    Var<T> x = detail::make_value(std::move(value));
    auto& node = *x.node_ptr();
    node.requires_grad = true;
    node.grad = detail::adopt(detail::NodeRecycler<T>::make(node.value.shape()));
    node.grad_is_zero = true;  // zeros written on first read, if a backward has not filled it first
    return x;
}

template <class T>
Var<T> constant(Array<T> value) {
    return detail::make_value(std::move(value));
}

template <class T>
Var<T> scalar(T value) {
    return detail::make_value(Array<T>(value));
}

namespace detail {

void reject(const char* op) {
    throw tape_error(fmt::format(
        "backward: reached the record of {}, which an earlier backward already walked back; pass "
        "retain_graph = true to that backward to walk a graph twice",
        op));
}

void reject_not_fresh(const char* op, const std::string& shape) {
    throw tape_error(fmt::format(
        "{}: the result given to make_op (shape {}) is held elsewhere, a parameter or already recorded; "
        "pass a fresh value (detail::make_uninitialized, or the computed array)",
        op, shape));
}

void reject_first_order(const char* op) {
    throw tape_error(fmt::format(
        "{}: its VJP is declared first-order (ad::first_order), so a sweep that records it for a second "
        "derivative (create_graph, hessian, jvp, gradgradcheck) cannot go through it; write the VJP with "
        "engine ops to differentiate it again",
        op));
}

void reject_empty(const char* op) {
    throw tape_error(fmt::format("{}: an input is an empty Var", op));
}

template <class T>
void reject_other_tape(const char* op, const Var<T>& x, const Tape* tape) {
    std::uint64_t epoch = x.node_ptr()->epoch;
    auto shape = shape_string_of(x.value());
    if (!tape) {
        throw tape_error(fmt::format(
            "{}: the value of shape {} was recorded on a tape, but no tape is current on this thread",
            op, shape));
    }
    if ((epoch >> 32) == tape->id()) {
        throw tape_error(fmt::format(
            "{}: the value of shape {} was recorded on this tape before it was cleared; values do not "
            "survive clear()",
            op, shape));
    }
    throw tape_error(fmt::format(
        "{}: the value of shape {} was recorded on another tape than the current one; values cannot "
        "mix tapes",
        op, shape));
}

template <class T>
void reject_claimed(const char* op, const Var<T>& x) {
    throw tape_error(fmt::format(
        "{}: the parameter of shape {} is being recorded by a tape of another thread; the tapes of one "
        "thread at a time record a parameter (give each thread its own copy of the model, or let the "
        "other thread's tape end first)",
        op, shape_string_of(x.value())));
}

void reject_vjp_shape(const char* op, const Shape& grad, const Shape& input) {
    throw shape_error(fmt::format("{}: the VJP returned a gradient of shape {} for an input of shape {}", op,
                                  shape_string(grad), shape_string(input)));
}

template <class T>
void reject_consumed(const char* fn, const Var<T>& loss) {
    throw tape_error(fmt::format(
        "{}: the graph of this value (shape {}) was already walked back; pass retain_graph = true "
        "to the first backward to walk it twice",
        fn, shape_string_of(loss.value())));
}

template <class T>
void check_backward(const char* fn, const Var<T>& loss, const Var<T>* seed, const std::vector<Var<T>>& wrt) {
    check_defined(fn, loss);
    for (const auto& x : wrt) check_defined(fn, x);
    const auto& value = loss.value();
    if (seed) {
        check_defined(fn, *seed);
        if (!equal_shapes(seed->value(), value)) {
            throw shape_error(fmt::format("{}: the seed has shape {} but the value has shape {}", fn,
                                          shape_string_of(seed->value()), shape_string_of(value)));
        }
    } else if (value.size() != 1) {
        throw shape_error(fmt::format(
            "{}: the value has shape {}; without a seed, backward starts from a scalar (one element)",
            fn, shape_string_of(value)));
    }
    // A vectorised test first: the loop that finds the culprit stops early,
    // which keeps the compiler from vectorising it over a large output.
    const bool finite = kernels::all_finite(value.data(), value.size());
    for (const T* v = value.data(); !finite && v != value.data() + value.size(); ++v) {
        if (!std::isfinite(*v)) {
            // Anomaly mode also says which op computed it, and where.
            const Tape* tape = Tape::current();
            const auto& node = *loss.node_ptr();
            const bool known = anomaly_mode() && tape && !node.is_leaf && node.epoch == tape->epoch() &&
                               !(node.record_index & scalar_record_bit);
            throw value_error(fmt::format("{}: the value of shape {} holds {}{}; its gradients would be "
                                          "meaningless",
                                          fn, shape_string_of(value), std::isnan(*v) ? "nan" : *v > 0 ? "inf" : "-inf",
                                          known ? origin_of(*tape, node.record_index) : std::string()));
        }
    }
    if (!loss.requires_grad()) {
        throw tape_error(fmt::format(
            "{}: the value of shape {} does not require a gradient: it depends on no parameter, or "
            "was computed under NoGrad or with no tape current",
            fn, shape_string_of(value)));
    }
}

}  // namespace detail

template <class T>
std::vector<Var<T>> grad(const Var<T>& loss, const std::vector<Var<T>>& inputs, BackwardOptions options) {
    return detail::run_backward<T>("grad", loss, nullptr, inputs, options, false);
}

template <class T>
std::vector<Var<T>> grad(const Var<T>& output, const std::vector<Var<T>>& inputs, const Var<T>& seed,
                         BackwardOptions options) {
    return detail::run_backward<T>("grad", output, &seed, inputs, options, false);
}

#define AD_INSTANTIATE(T)                                                                               \
    template class Var<T>;                                                                              \
    template Var<T> param(Array<T>);                                                                    \
    template Var<T> constant(Array<T>);                                                                 \
    template Var<T> scalar(T);                                                                          \
    template std::vector<Var<T>> grad(const Var<T>&, const std::vector<Var<T>>&, BackwardOptions);      \
    template std::vector<Var<T>> grad(const Var<T>&, const std::vector<Var<T>>&, const Var<T>&,         \
                                      BackwardOptions);                                                 \
    namespace detail {                                                                                  \
    template void reject_other_tape(const char*, const Var<T>&, const Tape*);                           \
    template void reject_claimed(const char*, const Var<T>&);                                           \
    template void reject_consumed(const char*, const Var<T>&);                                          \
    template void check_backward(const char*, const Var<T>&, const Var<T>*, const std::vector<Var<T>>&); \
    }

AD_INSTANTIATE(float)
AD_INSTANTIATE(double)

}  // namespace ad
