#pragma once
// What an op records, and how the record turns its output's cotangent into
// its inputs' (the other half, the sweep that runs the records, is
// backward.cpp).
//
// An op computes its result, then calls make_op(op, result, inputs..., vjp).
// When a tape is current and an input requires a gradient, make_op appends an
// OpRecord holding: the VJP, `vjp(i, grad) -> input i's cotangent`; for each
// input, the slot its cotangent goes to and its shape; and the slot of the
// op's own output cotangent, which the result points to by its record index.
//
// Leaves are of two kinds. A parameter (param()) requires a gradient: its
// cotangent slot is in its node, and the sweep adds it into grad() at its
// end. A constant (constant()) requires none: no cotangent goes to it.
//
// During the sweep a record runs when every record that read its output has
// run, so its slot holds the output's complete cotangent. It calls the VJP
// for each input that requires a gradient, sums the returned cotangent back
// to the input's shape (undoing broadcasting), and adds it into the input's
// slot. The slot's value goes with the record's run: it is dead afterwards.
//
// A record holds cotangent slots, not values: a value stays alive only while
// a handle or a VJP that reads it holds it.

#include <array>
#include <cstddef>
#include <utility>
#include <vector>

#include "autodiff/grad_mode.hpp"
#include "autodiff/input_checks.hpp"
#include "autodiff/memory/kept.hpp"
#include "autodiff/memory/saved_shape.hpp"
#include "autodiff/observe.hpp"
#include "autodiff/tape.hpp"
#include "autodiff/var.hpp"
#include "autodiff/vjp.hpp"

namespace ad::detail {

/// Where a value's cotangent accumulates during a sweep: in the record of
/// the op that made it, or in the node of a parameter. Itself a value, so
/// that create_graph can record through it.
template <class T>
using CotangentSlot = NodeRef<T>;

/// What a record knows of one input: where to send its cotangent and the
/// shape to sum it back to; not its value, which the VJP captures if it reads it.
template <class T>
struct InputSlot {
    CotangentSlot<T>* slot = nullptr;  // nullptr: no gradient flows to this input
    Node<T>* parameter = nullptr;      // a parameter's node, whose grad() takes the sum
    SavedShape shape;
};

/// The parameters the running sweeps have reached, in the order their first
/// cotangent arrived: the sweep adds their cotangents into grad() at its end.
/// Sweeps nest (a create_graph sweep may run inside a VJP); each owns the
/// part of the list past where it started.
template <class T>
std::vector<Node<T>*>& reached_parameters() {
    thread_local std::vector<Node<T>*> reached;  // function-local: destroyed at thread exit
    return reached;
}

/// In a node's record_index: the value was recorded on the tape's scalar
/// stream, as the entry of that index (scalar_tape.hpp).
constexpr std::size_t scalar_record_bit = std::size_t(1) << (8 * sizeof(std::size_t) - 1);
template <class T>
CotangentSlot<T>& scalar_slot(const Tape& tape, std::size_t entry);

/// The slot that x's cotangent accumulates in on `tape`, or nullptr when x
/// does not require a gradient.
template <class T>
AD_INLINE CotangentSlot<T>* slot_of(const Var<T>& x, const Tape& tape) {
    auto& node = *x.node_ptr();
    if (!node.requires_grad) return nullptr;
    if (node.is_leaf) return &node.cotangent;
    if (node.record_index & scalar_record_bit) return &scalar_slot<T>(tape, node.record_index & ~scalar_record_bit);
    return &tape.slot<CotangentSlot<T>>(node.record_index);
}

template <class T>
AD_INLINE InputSlot<T> input_slot(const char* op, const Var<T>& x, Tape& tape) {
    CotangentSlot<T>* slot = slot_of(x, tape);
    if (!slot) return {};
    const auto& node = x.node_ptr();
    return {slot, node->is_leaf ? pin_parameter(op, x, tape, Tape::no_record) : nullptr, SavedShape(node->value.shape())};
}

template <class T, std::size_t N, std::size_t... I>
std::array<InputSlot<T>, N> input_slots(const char* op, const std::array<const Var<T>*, N>& xs, Tape& tape,
                                        std::index_sequence<I...>) {
    return {input_slot(op, *xs[I], tape)...};  // built in place: no default slot to overwrite
}
template <class T, std::size_t N>
std::array<InputSlot<T>, N> input_slots(const char* op, const std::array<const Var<T>*, N>& xs, Tape& tape) {
    return input_slots(op, xs, tape, std::make_index_sequence<N>());
}

template <class T>
std::vector<InputSlot<T>> input_slots(const char* op, const std::vector<Var<T>>& xs, Tape& tape) {
    std::vector<InputSlot<T>> slots;
    slots.reserve(xs.size());
    for (const auto& x : xs) slots.push_back(input_slot(op, x, tape));
    return slots;
}

/// Reduces a VJP's result to its input's shape (undoing broadcasting), or
/// rejects a VJP that returned a shape its input cannot have come from.
template <class T>
Var<T> fit_broadcast_gradient(const char* op, Var<T> grad, const SavedShape& input_shape);
template <class T>
AD_INLINE void fit_gradient(const char* op, Var<T>& grad, const SavedShape& input_shape) {
    if (input_shape.equals(grad.value().shape())) return;  // the common case
    grad = fit_broadcast_gradient(op, std::move(grad), input_shape);
}

/// Adds `g` into a slot that holds a cotangent already: in place when
/// nothing records and nobody else holds the sum, else by the op add (which
/// a create_graph sweep records).
template <class T>
void add_to_cotangent(CotangentSlot<T>& slot, Var<T> g);

/// Adds `g` into a cotangent slot. The first cotangent to arrive, the common
/// case, is simply moved in.
template <class T>
AD_INLINE void accumulate_cotangent(CotangentSlot<T>& slot, Var<T>&& g) {
    if (!slot) {
        slot = std::move(g).node_ptr();
        return;
    }
    add_to_cotangent(slot, std::move(g));
}

/// The running sum an AccumulatingVjp adds into (zeros when no cotangent has
/// arrived yet); nullptr when the sweep records or another value shares it.
template <class T>
Array<T>* running_sum(CotangentSlot<T>& slot, const SavedShape& shape);

/// The record an op appends. Its VJP is called only for inputs that require a
/// gradient; it may keep a broadcast shape, which is summed back here.
template <class T, class Inputs, class Vjp>
struct OpRecord {
    const char* op;
    CotangentSlot<T> slot;
    Var<T> result;  // kept only when the VJP reads it, or TapeOptions::keep_results
    Inputs inputs;
    Vjp vjp;

    void operator()(Pass pass) {
        if (pass == Pass::backward) return backward();
        if (pass == Pass::describe) return describe_record(slot, sizeof(*this), result, inputs);
        if (pass == Pass::reject_reached) {
            if (slot) reject(op);
            return;
        }
        slot.reset();  // Pass::discard
        for (auto& in : inputs) {
            if (in.parameter) in.parameter->cotangent.reset();
        }
    }

    void backward() {
        if (!slot) return;  // no cotangent reached this op's output
        if constexpr (FirstOrder<Vjp>::value) {
            if (recording()) reject_first_order(op);
        }
        Var<T> grad(std::move(slot));
        const bool check = recording_state.observe & observe_anomaly;
        if constexpr (IsStagedVjp<Vjp>::value) {
            Var<T> through = vjp.through(grad, result);  // once, for every input's part
            if (check) check_cotangent(op, std::size_t(-1), grad.value(), through.value());
            grad = std::move(through);
        }
        for (std::size_t i = 0; i < inputs.size(); ++i) {
            auto& in = inputs[i];
            if (!in.slot) continue;
            if (in.parameter && !*in.slot) reached_parameters<T>().push_back(in.parameter);
            if constexpr (IsAccumulatingVjp<Vjp>::value) {
                if (Array<T>* sum = running_sum(*in.slot, in.shape)) {
                    vjp.add_into(i, grad, *sum);
                    if (check) check_cotangent(op, i, grad.value(), *sum);
                    continue;
                }
            }
            Var<T> input_grad = call_vjp(vjp, i, grad, result);
            if (check) check_cotangent(op, i, grad.value(), input_grad.value());
            fit_gradient(op, input_grad, in.shape);
            accumulate_cotangent(*in.slot, std::move(input_grad));
        }
    }
};

/// make_op for a result that is already a fresh, unrecorded value.
template <class T, class Inputs, class Vjp>
Var<T> record_op(const char* op, Var<T> result, const Inputs& inputs, Vjp&& vjp) {
    Tape* tape = recording_tape<T>(op, inputs);
    if (recording_state.observe) observe_op(op, result, inputs, tape);  // a debugging tool is on
    if (!tape) return result;
    using Record = OpRecord<T, decltype(input_slots(op, inputs, *tape)), std::decay_t<Vjp>>;
    Var<T> kept = reads_result<T, std::decay_t<Vjp>> || tape->keeps_results() ? result : Var<T>();
    tape->record_in_place<Record>([&](void* memory) {
        return new (memory) Record{op, {}, std::move(kept), input_slots(op, inputs, *tape), std::forward<Vjp>(vjp)};
    });
    auto& node = *result.node_ptr();
    node.requires_grad = true;
    node.is_leaf = false;
    node.epoch = tape->epoch();
    node.record_index = tape->size() - 1;
    if (recording_state.observe) note_record(*tape, result);
    return result;
}

}  // namespace ad::detail

namespace ad {

/// Makes `result` (a fresh Var that an op wrote its output into) the result
/// of op `op` of these inputs; when recording, appends the record whose VJP
/// is `vjp(i, grad)`: the cotangent of input i given the cotangent `grad` of
/// the result (or another form: vjp.hpp). Capture by value only what the VJP
/// reads (Vars, evaluated arrays): the tape holds that until the sweep. The
/// engine's ops capture their inputs as detail::kept(x) (memory/kept.hpp).
/// Write the VJP with engine ops and it supports double backward too.
template <class T, class Vjp>
Var<T> make_op(const char* op, Var<T>&& result, const Var<T>& x, Vjp vjp) {
    detail::check_fresh(op, result);
    return detail::record_op(op, std::move(result), std::array<const Var<T>*, 1>{&x}, std::move(vjp));
}
template <class T, class Vjp>
Var<T> make_op(const char* op, Var<T>&& result, const Var<T>& a, const Var<T>& b, Vjp vjp) {
    detail::check_fresh(op, result);
    return detail::record_op(op, std::move(result), std::array<const Var<T>*, 2>{&a, &b}, std::move(vjp));
}
template <class T, class Vjp>
Var<T> make_op(const char* op, Var<T>&& result, const Var<T>& a, const Var<T>& b, const Var<T>& c, Vjp vjp) {
    detail::check_fresh(op, result);
    return detail::record_op(op, std::move(result), std::array<const Var<T>*, 3>{&a, &b, &c}, std::move(vjp));
}

/// The same from the op's computed array `value` (the common way). An op
/// that can write its output in place gets `result` from
/// detail::make_uninitialized(shape) instead.
template <class T, class Vjp>
Var<T> make_op(const char* op, Array<T>&& value, const Var<T>& x, Vjp vjp) {
    return make_op(op, detail::make_value(std::move(value)), x, std::move(vjp));
}
template <class T, class Vjp>
Var<T> make_op(const char* op, Array<T>&& value, const Var<T>& a, const Var<T>& b, Vjp vjp) {
    return make_op(op, detail::make_value(std::move(value)), a, b, std::move(vjp));
}
template <class T, class Vjp>
Var<T> make_op(const char* op, Array<T>&& value, const Var<T>& a, const Var<T>& b, const Var<T>& c, Vjp vjp) {
    return make_op(op, detail::make_value(std::move(value)), a, b, c, std::move(vjp));
}

/// The same for ops with a variable number of inputs (concatenate, stack).
template <class T, class Vjp>
Var<T> make_op(const char* op, Array<T>&& value, std::vector<Var<T>> inputs, Vjp vjp) {
    return detail::record_op(op, detail::make_value(std::move(value)), std::move(inputs), std::move(vjp));
}

}  // namespace ad
