#pragma once
// NodeRef: the counted reference to a value's node that Vars, cotangent slots
// and records hold.
//
// For: the count lives in the node itself (an intrusive count, like PyTorch's
// intrusive_ptr), so a value is one allocation, not a node plus a
// std::shared_ptr control block with its own cache line and virtual calls.
// Any Var may be copied and dropped on any thread, as a std::shared_ptr may;
// the count is biased towards the thread that made the node, which changes it
// without read-modify-writes (memory/biased_count.hpp). Removing it: a
// std::shared_ptr<Node> does the same job, at the cost of that second
// allocation per value and a locked instruction per copy and drop in every op
// (benchmarks/README.md, where the time goes).

#include <atomic>
#include <cstdint>
#include <utility>

#include "autodiff/inline.hpp"
#include "autodiff/memory/biased_count.hpp"
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

    /// Takes the first reference to a node that no NodeRef holds yet: the
    /// calling thread owns its count from now on.
    AD_INLINE static NodeRef adopt(Node<T>* node) noexcept {
        const std::uint32_t token = own_counting_token();
        // A thread that is ending counts nothing of its own (no_thread): its
        // nodes are born merged, counted in `shared` alone.
        const bool owned = token != counts::no_thread;
        node->counting_thread.store(token, std::memory_order_relaxed);
        node->owned.store(owned, std::memory_order_relaxed);
        node->shared.store(owned ? 0 : counts::one | counts::merged, std::memory_order_relaxed);
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
    /// How many NodeRefs hold the node (0 when empty); exact while no
    /// thread copies or drops one.
    std::uint32_t use_count() const noexcept { return node_ ? count_of(*node_) : 0; }
    /// True when this is the only NodeRef to the node, which no other thread
    /// can then read or change: the node may be written in place.
    bool held_alone() const noexcept { return node_ && detail::held_alone(*node_); }
    void reset() noexcept {
        release();
        node_ = nullptr;
    }
    void swap(NodeRef& other) noexcept { std::swap(node_, other.node_); }
    friend bool operator==(const NodeRef& a, const NodeRef& b) noexcept { return a.node_ == b.node_; }
    friend bool operator!=(const NodeRef& a, const NodeRef& b) noexcept { return a.node_ != b.node_; }

    /// A tape's pin of the node (memory/pins.hpp): one count while it lasts.
    static void hold_pin(NodeBase* node) noexcept { add_count(static_cast<Node<T>*>(node)); }
    static void release_pin(NodeBase* node) noexcept { drop_count(static_cast<Node<T>*>(node)); }

    /// One count more or less, for a holder that is not a NodeRef: a tape's
    /// pin (Tape::pin).
    AD_INLINE static void add_count(Node<T>* node) noexcept {
        if (node->counting_thread.load(std::memory_order_relaxed) == counting_token) {
            node->owned.store(node->owned.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        } else {
            node->shared.fetch_add(counts::one, std::memory_order_relaxed);
        }
    }
    AD_INLINE static void drop_count(Node<T>* node) noexcept {
        if (node->counting_thread.load(std::memory_order_relaxed) == counting_token) {
            const std::uint32_t left = node->owned.load(std::memory_order_relaxed) - 1;
            node->owned.store(left, std::memory_order_relaxed);
            // acquire: the writes of other threads that held it and let go
            // are seen by whoever recycles it (the usual reference count order).
            if (left == 0 && (node->shared.load(std::memory_order_acquire) == 0 || give_up_ownership(*node))) {
                NodeRecycler<T>::recycle(node);
            }
        } else if (drop_shared(*node, &free_node)) {
            NodeRecycler<T>::recycle(node);
        }
    }

private:
    static void free_node(NodeBase* node) noexcept { NodeRecycler<T>::recycle(static_cast<Node<T>*>(node)); }
    AD_INLINE void release() noexcept {
        if (node_) drop_count(node_);
    }

    Node<T>* node_ = nullptr;
};


/// The first reference to a node fresh from the recycler.
template <class T>
AD_INLINE NodeRef<T> adopt(Node<T>* node) noexcept {
    return NodeRef<T>::adopt(node);
}

}  // namespace ad::detail
