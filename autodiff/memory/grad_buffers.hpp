#pragma once
// Gradient buffers: how a sweep's cotangent of a parameter becomes its grad()
// without a copy.
//
// For: zero_grad() is lazy (Node::grad_is_zero), so the next backward may
// hand its result over instead of adding it to zeros. A VJP may compute a
// parameter's cotangent straight into the parameter's gradient node, lent to
// it (lend_grad_buffer); otherwise the summed cotangent's storage is swapped
// into grad(). A training step then makes no gradient arrays: on a large
// layer a fresh array every step page-faults on its new memory, and on a
// small model taking, filling and freeing one is a few percent of a step.
// Removing it: add_to_grad would zero-fill grad() and add the cotangent to
// it, two passes over every weight per step, and VJPs would always allocate.

#include "autodiff/grad_mode.hpp"
#include "autodiff/var.hpp"

namespace ad::detail {

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

/// Lends a VJP x's gradient node, for the VJP to compute x's cotangent into
/// and return, when that node's contents are dead: x is a parameter,
/// zero_grad() is pending, no cotangent has reached x yet in this sweep, and
/// the sweep is a backward() that does not record. The cotangent is then
/// grad() already at the end of the sweep (add_to_grad). Returns an empty
/// Var when there is nothing to lend; a sweep that fails leaves the node's
/// zero_grad() pending, so grad() still reads zeros.
template <class T>
AD_INLINE Var<T> lend_grad_buffer(const Var<T>& x) {
    const Node<T>& node = *x.node_ptr();
    if (!recording_state.lending_grads || !node.grad || !node.grad_is_zero || node.cotangent || grad_enabled() ||
        !equal_shapes(node.grad->value, node.value)) {
        return Var<T>();
    }
    return Var<T>(node.grad);
}

/// Whether `buffer` (from lend_grad_buffer, possibly empty) has `shape`.
template <class T, class S>
AD_INLINE bool fits(const Var<T>& buffer, const S& shape) {
    return buffer.defined() && same_extents(buffer.value().shape(), shape);
}

/// Adds a parameter's summed cotangent into its grad() and empties its
/// cotangent (the end of a sweep). A pending zero_grad() makes the
/// cotangent the gradient.
template <class T>
void add_to_grad(Node<T>& parameter);

/// During a backward sweep that has run Tape::first_record_of(parameter):
/// adds the cotangent the sweep summed into the parameter's grad() now, as
/// the sweep's end would, and returns grad(); the sweep adds nothing more.
/// For SweepListeners that send gradients elsewhere while the sweep goes on
/// (DistributedDataParallel).
template <class T>
Array<T>& finish_gradient(const Var<T>& parameter);

/// The parameter's grad() array, of the parameter's shape, for the caller to
/// overwrite whole: a pending zero_grad() is dropped, not carried out.
template <class T>
Array<T>& grad_to_overwrite(const Var<T>& parameter);

/// The parameter's grad() with a pending zero_grad() carried out.
template <class T>
Array<T>& written_grad(Node<T>& parameter);

}  // namespace ad::detail
