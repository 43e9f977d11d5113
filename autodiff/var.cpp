#include "autodiff/var.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <optional>
#include <utility>

#include <fmt/format.h>

#include "autodiff/debug.hpp"
#include "autodiff/functional.hpp"
#include "autodiff/ops/elementwise.hpp"
#include "autodiff/ops/reduce.hpp"
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

template <class T>
Var<T> fit_broadcast_gradient(const char* op, Var<T> grad, const SavedShape& input_shape) {
    const auto& g = grad.value();
    Shape want = input_shape.to_shape();
    if (broadcasts_to(want, shape_of(g))) return sum_to_shape(grad, want);
    throw shape_error(fmt::format("{}: the VJP returned a gradient of shape {} for an input of shape {}",
                                  op, shape_string_of(g), shape_string(want)));
}

template <class T>
void add_to_cotangent(CotangentSlot<T>& slot, Var<T> g) {
    // Not recording and nobody else holds the running sum: add in place.
    if (!grad_enabled() && slot.use_count() == 1) {
        slot->value += g.value();
        return;
    }
    slot = add(Var<T>(slot), g).node_ptr();
}

template <class T>
Array<T>* running_sum(CotangentSlot<T>& slot, const SavedShape& shape) {
    if (grad_enabled()) return nullptr;
    if (!slot) {
        Array<T> zeros = new_array<T>(shape.to_shape());
        std::fill(zeros.begin(), zeros.end(), T(0));
        slot = constant(std::move(zeros)).node_ptr();
    } else if (slot.use_count() != 1) {
        return nullptr;
    }
    return &slot->value;
}

template <class T>
Array<T>& written_grad(Node<T>& parameter) {
    Array<T>& grad = parameter.grad->value;
    if (parameter.grad_is_zero) {
        // A failed sweep may have left a cotangent in the node (lend_grad_buffer).
        if (equal_shapes(grad, parameter.value)) {
            grad.fill(T(0));
        } else {
            grad = xt::zeros<T>(parameter.value.shape());
        }
        parameter.grad_is_zero = false;
    }
    return grad;
}

template <class T>
Array<T>& grad_to_overwrite(const Var<T>& parameter) {
    Node<T>& node = *parameter.node_ptr();
    Array<T>& grad = node.grad->value;
    if (!equal_shapes(grad, node.value)) grad = Array<T>::from_shape(node.value.shape());
    node.grad_is_zero = false;
    return grad;
}

/// Adds a parameter's summed cotangent into its grad() (end of a sweep).
template <class T>
AD_INLINE void accumulate_grad(Node<T>& parameter, CotangentSlot<T>& cotangent) {
    // A VJP computed it into the gradient's own node (lend_grad_buffer).
    if (cotangent == parameter.grad) {
        parameter.grad_is_zero = false;
        return;
    }
    // Nobody else sees the cotangent's buffer (the slot is its only owner),
    // so after a zero_grad() it can simply become the gradient.
    Array<T>& grad = parameter.grad->value;
    if (parameter.grad_is_zero && cotangent.use_count() == 1 && equal_shapes(cotangent->value, parameter.value) &&
        equal_shapes(grad, cotangent->value)) {
        // Trading the storage alone is a few pointer moves; swapping the
        // whole arrays also swaps their shape vectors element by element.
        std::swap(grad.storage(), cotangent->value.storage());
        parameter.grad_is_zero = false;
        return;
    }
    written_grad(parameter) += cotangent->value;
}

template <class T>
Array<T>& finish_gradient(const Var<T>& parameter) {
    Node<T>& node = *parameter.node_ptr();
    if (!node.cotangent) return written_grad(node);
    accumulate_grad(node, node.cotangent);
    if (node.cotangent == node.grad) {
        node.cotangent.release_local();  // lent by lend_grad_buffer: the node holds it still
    } else {
        node.cotangent.reset();
    }
    return node.grad->value;
}

/// Sets whether VJPs may take parameters' gradient nodes for the scope of a
/// sweep (nested sweeps run inside VJPs).
class LendingGrads {
public:
    explicit LendingGrads(bool lend) noexcept : previous_(recording_state.lending_grads) {
        recording_state.lending_grads = lend;
    }
    ~LendingGrads() { recording_state.lending_grads = previous_; }
    LendingGrads(const LendingGrads&) = delete;
    LendingGrads& operator=(const LendingGrads&) = delete;

private:
    bool previous_;
};

/// The default seed: ones of x's shape, in a (recycled) node.
template <class T>
AD_INLINE Var<T> ones_like(const Var<T>& x) {
    Var<T> ones = make_uninitialized<T>(x.value().shape());
    ones.mutable_value().fill(T(1));
    return ones;
}

template <class T>
std::vector<Var<T>> run_backward(const char* fn, const Var<T>& loss, const Var<T>* seed,
                                 const std::vector<Var<T>>& wrt, BackwardOptions options,
                                 bool accumulate) {
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
    for (const T* v = value.data(); v != value.data() + value.size(); ++v) {
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
    auto& loss_node = *loss.node_ptr();
    // A 0-d loss of the scalar stream, swept without recording, is seeded in
    // its entry: no seed value, no slot.
    const bool seed_entry =
        !seed && !options.create_graph && !loss_node.is_leaf && (loss_node.record_index & scalar_record_bit);
    Var<T> seed_var = seed ? *seed : seed_entry ? Var<T>() : ones_like(loss);

    if (loss.is_leaf()) {
        // Nothing to walk: the loss is a parameter itself.
        std::vector<Var<T>> grads;
        for (const auto& x : wrt) {
            grads.push_back(x.node_ptr() == loss.node_ptr() ? seed_var
                                                            : constant(Array<T>(xt::zeros<T>(x.value().shape()))));
        }
        if (accumulate) detail::written_grad(loss_node) += seed_var.value();
        return grads;
    }

    Tape* tape = Tape::current();
    check_same_tape(fn, loss, tape);
    for (const auto& x : wrt) check_same_tape(fn, x, tape);
    const std::size_t loss_record = record_of(*tape, loss_node);
    std::size_t end = loss_record + 1;
    if (loss_record < tape->consumed_end()) {
        throw tape_error(fmt::format(
            "{}: the graph of this value (shape {}) was already walked back; pass retain_graph = true "
            "to the first backward to walk it twice",
            fn, shape_string_of(value)));
    }
    std::size_t first = tape->consumed_end();

    // A value of `wrt` computed in [first, end) has its cotangent complete
    // once every later record has run, and its own record drops it: the
    // sweep stops above each such record to read it.
    std::vector<Var<T>> grads(wrt.size());
    // A value of the scalar stream instead has its entry leave its cotangent
    // in its slot (scalar_keep).
    std::vector<std::pair<std::size_t, std::size_t>> stops;  // (record index, position in wrt)
    std::vector<std::size_t> kept_scalars;                    // positions in wrt
    for (std::size_t i = 0; i < wrt.size(); ++i) {
        const auto& node = *wrt[i].node_ptr();
        if (!node.requires_grad || node.is_leaf) continue;
        const std::size_t record = record_of(*tape, node);
        if (record < first || record >= end) continue;
        if (node.record_index & scalar_record_bit) {
            slot_of(wrt[i], *tape);  // makes the slot the entry leaves its cotangent in
            scalar_entry(*tape, node).flags |= scalar_keep;
            kept_scalars.push_back(i);
        } else {
            stops.emplace_back(node.record_index, i);
        }
    }
    std::sort(stops.begin(), stops.end(), std::greater<>());
    auto take_kept_scalars = [&](bool read) noexcept {
        for (std::size_t i : kept_scalars) {
            const auto& node = *wrt[i].node_ptr();
            scalar_entry(*tape, node).flags &= ~scalar_keep;
            CotangentSlot<T>& slot = *slot_of(wrt[i], *tape);
            if (read && slot) grads[i] = Var<T>(slot);
            slot.reset();
        }
    };

    auto& reached = reached_parameters<T>();
    const std::size_t reached_before = reached.size();
    auto drop_reached_cotangents = [&]() noexcept {
        for (std::size_t k = reached_before; k < reached.size(); ++k) reached[k]->cotangent.reset();
        reached.resize(reached_before);
    };
    // A backward() may be watched (SweepListener): record by record then. Not
    // the sweeps nested in its VJPs, which see no listener while it runs.
    SweepListener* const listener = accumulate ? sweep_listener() : nullptr;
    struct Unlisten {
        SweepListener* listener;
        ~Unlisten() {
            if (listener) listen_to_sweeps(listener);
        }
    } unlisten{listener ? listen_to_sweeps(nullptr) : nullptr};
    auto sweep = [&](std::size_t from, std::size_t to) {
        if (!listener) return tape->run(from, to, Pass::backward);
        for (std::size_t i = to; i-- > from;) {
            tape->run(i, i + 1, Pass::backward);
            listener->record_done(i);
        }
    };
    {
        std::optional<NoGrad> no_grad;
        std::optional<EnableGrad> enable_grad;
        if (options.create_graph) enable_grad.emplace(); else no_grad.emplace();
        // Gradient nodes are lent only to a sweep that ends in them: grad()
        // leaves them alone, and would hand the user a parameter's buffer.
        LendingGrads lending(accumulate && !options.create_graph);
        if (seed_entry) {
            ScalarEntry<T>& entry = scalar_entry(*tape, loss_node);
            entry.adjoint = T(1);
            entry.flags |= scalar_reached;
        } else {
            *slot_of(loss, *tape) = seed_var.node_ptr();
        }
        try {
            if (listener) listener->sweep_begins(*tape, first, end);
            std::size_t top = end;
            for (auto [index, position] : stops) {
                sweep(index + 1, top);
                top = index + 1;
                if (const auto& slot = tape->slot<CotangentSlot<T>>(index)) grads[position] = Var<T>(slot);
            }
            sweep(first, top);
            take_kept_scalars(true);
            if (first > 0) tape->run(0, first, Pass::reject_reached);
            for (std::size_t i = 0; i < wrt.size(); ++i) {
                if (grads[i].defined()) continue;
                const CotangentSlot<T>* slot = wrt[i].is_leaf() ? slot_of(wrt[i], *tape) : nullptr;
                grads[i] = slot && *slot ? Var<T>(*slot) : constant(Array<T>(xt::zeros<T>(wrt[i].value().shape())));
            }
        } catch (...) {
            take_kept_scalars(false);
            tape->run(0, end, Pass::discard);
            drop_reached_cotangents();
            if (listener) listener->sweep_failed();
            throw;
        }
    }
    if (accumulate) {
        try {
            for (std::size_t k = reached_before; k < reached.size(); ++k) {
                Node<T>& parameter = *reached[k];
                // No cotangent: a SweepListener folded it in already (finish_gradient).
                if (parameter.grad && parameter.cotangent) accumulate_grad(parameter, parameter.cotangent);
                if (parameter.cotangent == parameter.grad) {
                    parameter.cotangent.release_local();  // lent by lend_grad_buffer: the node holds it still
                } else {
                    parameter.cotangent.reset();
                }
            }
        } catch (...) {
            drop_reached_cotangents();
            if (listener) listener->sweep_failed();
            throw;
        }
        reached.resize(reached_before);  // their cotangents are reset already
    } else {
        drop_reached_cotangents();
    }
    if (!options.retain_graph && !options.create_graph) tape->consume(end);
    if (listener) listener->sweep_ends();
    return grads;
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
    template Var<T> fit_broadcast_gradient(const char*, Var<T>, const SavedShape&);                      \
    template void add_to_cotangent(CotangentSlot<T>&, Var<T>);                                          \
    template Array<T>* running_sum(CotangentSlot<T>&, const SavedShape&);                               \
    template Array<T>& written_grad(Node<T>&);                                                          \
    template Array<T>& finish_gradient(const Var<T>&);                                                 \
    template Array<T>& grad_to_overwrite(const Var<T>&);                                                          \
    template std::vector<Var<T>> run_backward(const char*, const Var<T>&, const Var<T>*,              \
                                              const std::vector<Var<T>>&, BackwardOptions, bool);       \
    }

AD_INSTANTIATE(float)
AD_INSTANTIATE(double)

}  // namespace ad
