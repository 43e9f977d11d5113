#pragma once
// NodeRecycler: small values' nodes, kept per thread for the next op.
//
// For: on small arrays, making an xarray (its shape, strides and
// backstrides vectors, then its storage, and as much again to free them)
// costs more than the arithmetic of the op (benchmarks/README.md,
// op_overhead). A node whose value is small is therefore not destroyed when
// its last reference goes: it waits, value and all, on its thread's list, and
// the next op that needs a value of that size takes it and writes into it. A
// training step makes the same values every step, so after the first one its
// small values cost a list pop each. Removing it: every op allocates and frees
// a node and an xarray again, which on a small model's step is most of its
// time; nothing else changes.

#include <cstddef>
#include <new>
#include <utility>
#include <vector>

#include "autodiff/inline.hpp"
#include "autodiff/memory/array_cache.hpp"
#include "autodiff/memory/block_pool.hpp"
#include "autodiff/node.hpp"

namespace ad::detail {

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
        // A thread that makes values for others (a data loader) may never
        // clear a tape: its allocations free what the others dropped.
        merge_if_queued();
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

}  // namespace ad::detail
