#pragma once
// Kept: how an op's VJP captures an input it reads.
//
// For: a leaf's node (a parameter's, a constant's) is borrowed from the tape,
// which pins it once for as long as steps use it (memory/pins.hpp), instead of
// counted by every record that reads it; any other value is counted as a Var
// is. Removing it: ops would capture plain Vars, and every record would
// change the counts of the parameters and data it reads, twice per step
// (atomically, for data made on another thread; benchmarks/README.md, where
// the time goes).

#include <utility>

#include "autodiff/input_checks.hpp"
#include "autodiff/observe.hpp"
#include "autodiff/tape.hpp"
#include "autodiff/var.hpp"

namespace ad::detail {

/// A Var that a record keeps for its VJP. A Var in every use; copies are
/// counted Vars.
template <class T>
class Kept : public Var<T> {
public:
    Kept() = default;
    explicit Kept(const Var<T>& x) {
        const NodeRef<T>& ref = x.node_ptr();
        Tape* tape = Tape::current();
        // A parameter another thread's tapes hold is counted here; the op's
        // record then rejects it (input_slot).
        if (ref && ref->is_leaf && tape && grad_enabled() &&
            tape->pin(ref.get(), &NodeRef<T>::hold_pin, &NodeRef<T>::release_pin, ref->requires_grad)) {
            Var<T>::operator=(Var<T>(NodeRef<T>::borrow(ref.get())));
            borrowed_ = true;
        } else {
            Var<T>::operator=(x);
        }
        if (recording_state.observe && ref) note_kept(ref->value.size() * sizeof(T));
    }
    Kept(Kept&& other) noexcept : Var<T>(std::move(other)), borrowed_(std::exchange(other.borrowed_, false)) {}
    Kept(const Kept& other) : Var<T>(other) {}
    Kept& operator=(const Kept&) = delete;
    Kept& operator=(Kept&&) = delete;
    ~Kept() {
        if (borrowed_) std::move(*this).node_ptr().forget();
    }

private:
    bool borrowed_ = false;
};

/// Pins parameter x to `tape` for the record `reader`, which then borrows
/// it, and claims it for this thread (memory/pins.hpp).
template <class T>
AD_INLINE Node<T>* pin_parameter(const char* op, const Var<T>& x, Tape& tape, std::size_t reader) {
    Node<T>* node = x.node_ptr().get();
    if (!tape.pin(node, &NodeRef<T>::hold_pin, &NodeRef<T>::release_pin, true, reader)) reject_claimed(op, x);
    return node;
}

template <class T>
Kept<T> kept(const Var<T>& x) {
    return Kept<T>(x);
}

/// x for a VJP that reads it only to give `other` its gradient: empty when
/// `other` needs none, so that the record does not keep x alive (nor count a
/// reference to it) for nothing.
template <class T>
Kept<T> kept_for(const Var<T>& x, const Var<T>& other) {
    return other.requires_grad() ? Kept<T>(x) : Kept<T>();
}

}  // namespace ad::detail
