#pragma once
// The node behind a Var (its value and what the tape knows of it), and the
// per-thread recycling of small nodes.
//
// On small arrays, making an xarray costs more than everything else an op
// does: its shape, strides and backstrides vectors, then its storage, and
// as much again to free them (most of a small op's cost: benchmarks/README.md,
// op_overhead). A node whose value is small is therefore not destroyed when
// its last Var goes: it waits, value and all, on its thread's list, and the
// next op that needs a value of that size takes it and writes into it. A
// training step makes the same values every step, so after the first one
// its small values cost a list pop each. Large values are not kept here
// (ArrayCache keeps the storage of the largest ones).

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <utility>
#include <vector>

#include "autodiff/array_cache.hpp"
#include "autodiff/block_pool.hpp"
#include "autodiff/inline.hpp"
#include "autodiff/node_base.hpp"
#include "autodiff/tensor.hpp"

namespace ad::detail {

struct Uninitialized {};

template <class T>
struct Node;
template <class T>
class NodeRecycler;

/// A counted reference to a node: what a Var, a cotangent slot and a record
/// hold. The count lives in the node (an intrusive count, like PyTorch's
/// intrusive_ptr): a shared_ptr's separately allocated control block cost a
/// pool allocation, two virtual calls and a second cache line per value,
/// about a tenth of a small op. Copies and releases change it atomically,
/// as std::shared_ptr's do, so that any Var may be copied and dropped on any
/// thread. When the count drops to zero the node goes back to the releasing
/// thread's NodeRecycler.
template <class T>
class NodeRef {
public:
    NodeRef() noexcept {}  // user-provided: records built with {} are then not zeroed whole first
    AD_INLINE NodeRef(const NodeRef& other) noexcept : node_(other.node_) {
        if (node_) add_count(node_);
    }
    NodeRef(NodeRef&& other) noexcept : node_(std::exchange(other.node_, nullptr)) {}
    NodeRef& operator=(const NodeRef& other) noexcept {
        NodeRef(other).swap(*this);
        return *this;
    }
    NodeRef& operator=(NodeRef&& other) noexcept {
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

template <class T>
class NodeRecycler {
public:
    /// Values up to this size are kept (256 floats); bigger ones cost
    /// enough to compute that making their array is a small part of it.
    static constexpr std::size_t max_value_bytes = 1024;
    /// At most this many nodes per thread (with their values, at most about
    /// 5 MiB): room for the small values of a step of some thousand ops.
    static constexpr std::size_t max_nodes = 4096;
    /// How far down the list take() looks for a value of the right size.
    static constexpr std::size_t search_depth = 8;

    /// A fresh node whose value has `shape` and unspecified elements.
    template <class S>
    AD_INLINE static Node<T>* make(const S& shape) {
        if (Node<T>* node = take(shape)) return node;
        return construct(Uninitialized{}, shape);
    }

    /// A fresh node that owns `value`'s elements.
    static Node<T>* make(Array<T>&& value) {
        if (Node<T>* node = take(value.shape())) {
            // Trade storage only: `value` leaves with the node's old buffer.
            // Moving the whole array would move its shape, strides and
            // backstrides element by element, which costs more.
            std::swap(node->value.storage(), value.storage());
            return node;
        }
        return construct(std::move(value));
    }

    /// Where a node goes when its last Var does: on top of the list if its
    /// value is small, else destroyed. A full list first destroys its older
    /// half: nodes of a computation that is over (another model's sizes)
    /// must not keep the current one from recycling. Out of line: inlined
    /// into every NodeRef release it grew their callers and slowed the op chain.
    [[gnu::noinline]] static void recycle(Node<T>* node) noexcept {
        node->reset();  // first: releasing its cotangent may recycle other nodes
        std::vector<Node<T>*>* nodes = live_list();
        if (nodes && nodes->size() < max_nodes && node->value.size() * sizeof(T) <= max_value_bytes) {
            nodes->push_back(node);  // within the reserved capacity: cannot throw
            return;
        }
        recycle_slowly(node);
    }

    /// Destroys the kept nodes of the calling thread.
    static void release() noexcept {
        if (closed()) return;
        auto& nodes = local().nodes;
        while (!nodes.empty()) {
            Node<T>* node = nodes.back();
            nodes.pop_back();
            destroy(node);
        }
    }

    /// Bytes of the kept nodes' values on the calling thread.
    static std::size_t value_bytes() noexcept {
        if (closed()) return 0;
        std::size_t bytes = 0;
        for (const Node<T>* node : local().nodes) bytes += node->value.size() * sizeof(T);
        return bytes;
    }

private:
    using Pool = BlockPool<sizeof(Node<T>)>;
    static_assert(alignof(Node<T>) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);

    template <class... Args>
    static Node<T>* construct(Args&&... args) {
        void* memory = Pool::allocate();
        try {
            return new (memory) Node<T>(std::forward<Args>(args)...);
        } catch (...) {
            Pool::deallocate(memory);
            throw;
        }
    }

    static void destroy(Node<T>* node) noexcept {
        node->~Node();
        Pool::deallocate(node);
    }

    /// recycle() when its list is full or not made yet, or the value is large.
    [[gnu::noinline]] static void recycle_slowly(Node<T>* node) noexcept {
        if (node->value.size() * sizeof(T) <= max_value_bytes && !closed()) {
            try {
                auto& nodes = local().nodes;  // its first use on a thread allocates, and may throw
                if (nodes.size() == max_nodes) {
                    const auto older_half = nodes.begin() + static_cast<std::ptrdiff_t>(max_nodes / 2);
                    for (auto it = nodes.begin(); it != older_half; ++it) destroy(*it);
                    nodes.erase(nodes.begin(), older_half);
                }
                nodes.push_back(node);  // within the reserved capacity
                return;
            } catch (...) {
                // Out of memory: the node is simply destroyed.
            }
        }
        destroy(node);
    }

    template <class S>
    AD_INLINE static Node<T>* take(const S& shape) {
        std::size_t size = 1;
        for (auto extent : shape) size *= static_cast<std::size_t>(extent);
        if (size * sizeof(T) > max_value_bytes) return nullptr;
        std::vector<Node<T>*>* live = live_list();
        if (!live) {
            if (closed()) return nullptr;
            live = &local().nodes;  // the first use on this thread
        }
        auto& nodes = *live;
        const std::size_t stop = nodes.size() > search_depth ? nodes.size() - search_depth : 0;
        // The same shape if there is one, else the same size reshaped (which
        // reallocates nothing but recomputes strides: a small op's worth).
        auto pop = [&nodes](std::size_t i) {
            Node<T>* node = nodes[i];
            nodes[i] = nodes.back();
            nodes.pop_back();
            return node;
        };
        const std::size_t none = nodes.size();
        std::size_t same_size = none;
        for (std::size_t i = nodes.size(); i-- > stop;) {
            const auto& value = nodes[i]->value;
            if (value.size() != size) continue;
            if (same_extents(value.shape(), shape)) return pop(i);
            if (same_size == none) same_size = i;
        }
        if (same_size == none) return nullptr;
        Node<T>* node = pop(same_size);
        node->value.resize(shape);
        return node;
    }

    struct Local {
        Local() {
            nodes.reserve(max_nodes);
            live_list() = &nodes;
        }
        ~Local() {
            closed() = true;  // nodes that die later on this thread are destroyed at once
            live_list() = nullptr;
            // The block pool of this thread may be gone already: free to the heap.
            for (Node<T>* node : nodes) {
                node->~Node();
                ::operator delete(node);
            }
        }
        std::vector<Node<T>*> nodes;
    };

    static Local& local() { return PerThread<Local>::get(); }
    static bool& closed() noexcept { return PerThread<Local>::ended(); }
    /// The calling thread's list while it lives, else nullptr. A plain
    /// pointer: reading it needs no check that the list was made, which a
    /// thread_local object with a constructor costs on every access, and
    /// recycle() and take() run for every value.
    static std::vector<Node<T>*>*& live_list() noexcept {
        thread_local std::vector<Node<T>*>* nodes = nullptr;
        return nodes;
    }
};

/// The first reference to a node fresh from the recycler.
template <class T>
NodeRef<T> adopt(Node<T>* node) noexcept {
    return NodeRef<T>::adopt(node);
}

}  // namespace ad::detail
