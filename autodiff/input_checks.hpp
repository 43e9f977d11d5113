#pragma once
// The checks an op makes on its inputs before it records, and the errors
// they throw: every one names the op and shows the shapes, and none leaves
// the tape changed.

#include <string>
#include <vector>

#include "autodiff/grad_mode.hpp"
#include "autodiff/tape.hpp"
#include "autodiff/var.hpp"

namespace ad::detail {

/// Throws the tape_error of check_same_tape.
template <class T>
[[noreturn]] void reject_other_tape(const char* op, const Var<T>& x, const Tape* tape);

/// Throws tape_error naming `op` when `x` was recorded on a tape other than
/// `tape` (the current one), or before it was cleared.
template <class T>
AD_INLINE void check_same_tape(const char* op, const Var<T>& x, const Tape* tape) {
    const auto& node = *x.node_ptr();
    if (node.is_leaf || (tape && node.epoch == tape->epoch())) return;
    reject_other_tape(op, x, tape);
}

/// An op's inputs as make_op passes them: pointers for the fixed-arity ops
/// (no reference counting on the hot path), Vars for the variadic ones.
template <class T>
const Var<T>& input_var(const Var<T>& x) { return x; }
template <class T>
const Var<T>& input_var(const Var<T>* x) { return *x; }

/// The tape an op records on: the current one, when recording is on and an
/// input requires a gradient; nullptr otherwise.
template <class T, class Inputs>
AD_INLINE Tape* recording_tape(const char* op, const Inputs& inputs) {
    for (const auto& x : inputs) check_defined(op, input_var<T>(x));
    if (!recording()) return nullptr;
    Tape* tape = Tape::current();
    bool any = false;
    for (const auto& x : inputs) {
        const Var<T>& v = input_var<T>(x);
        if (v.requires_grad()) {
            check_same_tape(op, v, tape);
            any = true;
        }
    }
    return any ? tape : nullptr;
}

/// Throws the tape_error of a make_op result that is not fresh.
[[noreturn]] void reject_not_fresh(const char* op, const std::string& shape);

/// make_op turns its `result` into the op's output (recorded, not a leaf),
/// so that must be all it is: a value no other handle holds, neither a
/// parameter nor recorded already (an input passed back, say, would be
/// corrupted).
template <class T>
AD_INLINE void check_fresh(const char* op, const Var<T>& result) {
    check_defined(op, result);
    const auto& node = result.node_ptr();
    if (node.use_count() != 1 || !node->is_leaf || node->requires_grad) {
        reject_not_fresh(op, shape_string_of(node->value));
    }
}

/// Throws the tape_error of a parameter that another thread's tapes hold.
template <class T>
[[noreturn]] void reject_claimed(const char* op, const Var<T>& x);

/// The checks of backward() and grad() before they sweep: defined handles,
/// a seed of the loss's shape (or a one-element loss), a finite loss that
/// requires a gradient.
template <class T>
void check_backward(const char* fn, const Var<T>& loss, const Var<T>* seed, const std::vector<Var<T>>& wrt);

/// Throws the tape_error of a loss whose records a sweep consumed already.
template <class T>
[[noreturn]] void reject_consumed(const char* fn, const Var<T>& loss);

/// Throws the shape_error of a VJP whose result cannot be summed to its input's shape.
[[noreturn]] void reject_vjp_shape(const char* op, const Shape& grad, const Shape& input);

/// Throws the tape_error of a backward that reached a record an earlier
/// backward already walked without retain_graph.
[[noreturn]] void reject(const char* op);

}  // namespace ad::detail
