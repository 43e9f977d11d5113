#pragma once
// NodeRef: the counted reference to a value's node that Vars, cotangent slots
// and records hold.
//
// For: the count lives in the node itself (an intrusive count, like PyTorch's
// intrusive_ptr), so a value is one allocation, not a node plus a
// std::shared_ptr control block with its own cache line and virtual calls.
// Counts change atomically, as std::shared_ptr's do, so any Var may be copied
// and dropped on any thread. Removing it: a std::shared_ptr<Node> does the same
// job, at the cost of that second allocation per value and slower copies in
// every op (benchmarks/README.md, where the time goes).

#include <atomic>
#include <cstdint>
#include <utility>

#include "autodiff/inline.hpp"
#include "autodiff/memory/node_base.hpp"

namespace ad::detail {

template <class T>
struct Node;
template <class T>
class NodeRecycler;

/// A counted reference to a node: what a Var, a cotangent slot and a record
/// hold. When the count drops to zero the node goes back to the releasing
/// thread's NodeRecycler.
template <class T>
class NodeRef {
public:
    NodeRef() noexcept {}  // user-provided: records built with {} are then not zeroed whole first
    AD_INLINE NodeRef(const NodeRef& other) noexcept : node_(other.node_) {
        if (node_) add_count(node_);
    }
    AD_INLINE NodeRef(NodeRef&& other) noexcept : node_(std::exchange(other.node_, nullptr)) {}
    AD_INLINE NodeRef& operator=(const NodeRef& other) noexcept {
        NodeRef(other).swap(*this);
        return *this;
    }
    AD_INLINE NodeRef& operator=(NodeRef&& other) noexcept {
        NodeRef(std::move(other)).swap(*this);
        return *this;
    }
    AD_INLINE ~NodeRef() { release(); }

    /// Takes the first reference to a node that no NodeRef holds yet.
    static NodeRef adopt(Node<T>* node) noexcept {
        node->refs.store(1, std::memory_order_relaxed);
        NodeRef ref;
        ref.node_ = node;
        return ref;
    }

    /// A reference that counts nothing, to a node that something else holds
    /// for longer (a tape's pin: detail::Kept). forget() must end it, not
    /// its destructor.
    static NodeRef borrow(Node<T>* node) noexcept {
        NodeRef ref;
        ref.node_ = node;
        return ref;
    }
    /// Lets go of the node without dropping a count (see borrow).
    void forget() noexcept { node_ = nullptr; }

    Node<T>* get() const noexcept { return node_; }
    Node<T>& operator*() const noexcept { return *node_; }
    Node<T>* operator->() const noexcept { return node_; }
    explicit operator bool() const noexcept { return node_ != nullptr; }
    /// How many NodeRefs hold the node (0 when empty). 1 means this one
    /// alone, which no other thread can then change.
    std::uint32_t use_count() const noexcept { return node_ ? node_->refs.load(std::memory_order_acquire) : 0; }
    void reset() noexcept {
        release();
        node_ = nullptr;
    }
    void swap(NodeRef& other) noexcept { std::swap(node_, other.node_); }
    friend bool operator==(const NodeRef& a, const NodeRef& b) noexcept { return a.node_ == b.node_; }
    friend bool operator!=(const NodeRef& a, const NodeRef& b) noexcept { return a.node_ != b.node_; }

    /// A copy of `other`, whose node no other thread can reach (a
    /// parameter's gradient node, which only its parameter's sweeps hand
    /// out): its count changes without a read-modify-write. Atomic drops of
    /// such a copy stay correct.
    static NodeRef copy_local(const NodeRef& other) noexcept {
        other.node_->refs.store(other.node_->refs.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        return borrow(other.node_);
    }
    /// Drops a reference made by copy_local while another one remains.
    void release_local() noexcept {
        node_->refs.store(node_->refs.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
        node_ = nullptr;
    }

    /// A tape's pin of the node (memory/pins.hpp): one count while it lasts.
    static void hold_pin(NodeBase* node) noexcept { add_count(static_cast<Node<T>*>(node)); }
    static void release_pin(NodeBase* node) noexcept { drop_count(static_cast<Node<T>*>(node)); }

    /// One count more or less, for a holder that is not a NodeRef: a tape's
    /// pin (Tape::pin).
    AD_INLINE static void add_count(Node<T>* node) noexcept { node->refs.fetch_add(1, std::memory_order_relaxed); }
    AD_INLINE static void drop_count(Node<T>* node) noexcept {
        // The sole holder needs no read-modify-write: no other thread holds
        // a reference it could copy or drop meanwhile (the check that
        // libstdc++'s shared_ptr makes too). Otherwise acq_rel: whoever
        // recycles the node sees every write the other holders made before
        // they let go (the usual reference count order).
        if (node->refs.load(std::memory_order_acquire) == 1 ||
            node->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
            NodeRecycler<T>::recycle(node);
        }
    }

private:
    AD_INLINE void release() noexcept {
        if (node_) drop_count(node_);
    }

    Node<T>* node_ = nullptr;
};


/// The first reference to a node fresh from the recycler.
template <class T>
NodeRef<T> adopt(Node<T>* node) noexcept {
    return NodeRef<T>::adopt(node);
}

}  // namespace ad::detail
