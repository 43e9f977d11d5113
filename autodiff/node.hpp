#pragma once
// The node behind a Var: its value and what the tape knows of it.
//
// A leaf is a parameter (requires_grad: its cotangent is summed into grad()
// at the end of each backward sweep) or a constant (no gradient). Any other
// node is an op's result: it records the index of the record that made it on
// the tape whose epoch it carries, and its cotangent accumulates in that
// record's slot (tape.hpp).

#include <cstddef>
#include <cstdint>
#include <utility>

#include "autodiff/memory/array_cache.hpp"
#include "autodiff/memory/node_base.hpp"
#include "autodiff/memory/node_ref.hpp"
#include "autodiff/tensor.hpp"

namespace ad::detail {

struct Uninitialized {};

template <class T>
struct Node : NodeBase {
    explicit Node(Array<T>&& v) : value(std::move(v)) {}
    /// Builds the value in place: moving an xarray costs as much as a small op.
    template <class S>
    Node(Uninitialized, const S& shape) : value(new_array<T>(shape)) {}
    ~Node() { ArrayCache<T>::give(value); }
    Node(const Node&) = delete;
    Node& operator=(const Node&) = delete;

    /// Back to the state of a fresh node, value aside (a recycled node's
    /// value is overwritten by the op that takes it).
    void reset() noexcept {
        grad.reset();
        grad_is_zero = false;
        cotangent.reset();
        epoch = 0;
        record_index = 0;
        requires_grad = false;
        is_leaf = true;
    }

    // What every op reads or writes first, on the node's first cache line
    // with the reference count: a sweep over many parameters then touches
    // fewer lines of each.
    std::uint64_t epoch = 0;              // tape epoch of the record that made it (0: leaf)
    std::size_t record_index = 0;         // that record's index on the tape
    // Parameters only: a node whose value is grad(), accumulated across
    // backward calls. A node, not an array, so that a sweep can lend it to a
    // VJP as that VJP's result (detail::lend_grad_buffer).
    NodeRef<T> grad;
    NodeRef<T> cotangent;                 // parameters only: d loss / d value during a sweep
    // zero_grad() is lazy: it sets this instead of writing zeros, so that the
    // next backward can hand its cotangent buffer over instead of adding it
    // to zeros (for a big layer, two passes over its weights saved per step).
    bool grad_is_zero = false;
    bool requires_grad = false;
    bool is_leaf = true;
    Array<T> value;
};

}  // namespace ad::detail
