#pragma once
// Biased reference counts: the part of NodeRef's counting that is not a
// template (memory/node_ref.hpp has the hot path).
//
// For: a read-modify-write on a shared cache line (a `lock`ed instruction)
// costs about as much as a small op's arithmetic, and a training step changes
// counts thousands of times, nearly all on the thread that made the value
// (benchmarks/README.md, where the time goes). So, as in biased reference
// counting (Choi, Shull and Torrellas, PACT 2018; CPython's free-threaded
// build), a node's count is two counts:
//   - `owned`, changed only by the thread that adopted the node, with a plain
//     load and store;
//   - `shared`, changed by every other thread with read-modify-writes. It may
//     go below zero: another thread dropping a reference that the owner
//     counted.
// The node is free when their sum is zero. When the owner's count reaches
// zero it hands the node over (`merged`: from then on every thread counts in
// `shared`). When another thread takes `shared` below zero, only the owner
// can see the sum, so it queues the node for the owner, which merges the two
// counts at its next Tape::clear(), its next new node (NodeRecycler) or its
// exit; an owner that has ended is merged on the spot. Removing it: NodeRef
// counts with fetch_add and fetch_sub alone (std::shared_ptr's way), about 4%
// slower on the xor step and 2% on op_overhead (benchmarks/README.md).

#include <atomic>
#include <cstdint>

#include "autodiff/inline.hpp"
#include "autodiff/memory/node_base.hpp"

namespace ad::detail {

namespace counts {
/// Flags in NodeBase::shared, below the count (which is shared >> 2).
constexpr std::int32_t merged = 1;  // the owner has handed over: `owned` is 0 and unused
constexpr std::int32_t queued = 2;  // waiting in its owner's merge queue
constexpr std::int32_t one = 4;     // one reference
/// NodeBase::counting_thread of a merged node (no thread has it) and the
/// token of a thread that has not adopted a node yet (no node has it).
constexpr std::uint32_t no_thread = 0;
constexpr std::uint32_t unregistered = 0xffffffffu;
}  // namespace counts

/// The calling thread's counting token: counts::unregistered until it first
/// adopts a node (register_counting_thread). A plain thread_local with a
/// constant initial value, so that reading it is one load.
inline thread_local std::uint32_t counting_token = counts::unregistered;

/// Gives the calling thread its token and merge queue; returns the token.
/// counts::no_thread when the thread is ending (its nodes are then born merged).
std::uint32_t register_counting_thread() noexcept;

/// The calling thread's token, registering it first if need be.
AD_INLINE std::uint32_t own_counting_token() noexcept {
    const std::uint32_t token = counting_token;
    return token != counts::unregistered ? token : register_counting_thread();
}

/// How a queued node is freed (its NodeRecycler's recycle, for its type).
using FreeNode = void (*)(NodeBase*) noexcept;

/// The owner's count reached zero: hands the node over to the shared count.
/// True when no reference is left at all (the caller frees it).
bool give_up_ownership(NodeBase& node) noexcept;

/// A thread that does not own `node` drops one reference. True when it was
/// the last (the caller frees it); queues the node for its owner when the
/// shared count goes below zero for the first time.
bool drop_shared(NodeBase& node, FreeNode free) noexcept;

/// Merges the nodes queued for the calling thread, freeing those that no
/// reference holds. Cheap when there are none (one load).
void merge_queued_counts() noexcept;

/// A flag that another thread sets when it queues a node for this one.
inline thread_local std::atomic<bool>* merge_pending = nullptr;

AD_INLINE void merge_if_queued() noexcept {
    if (merge_pending && merge_pending->load(std::memory_order_relaxed)) merge_queued_counts();
}

/// References to `node` (exact while no thread copies or drops one).
inline std::uint32_t count_of(const NodeBase& node) noexcept {
    const std::int32_t shared = node.shared.load(std::memory_order_acquire) >> 2;
    return static_cast<std::uint32_t>(static_cast<std::int32_t>(node.owned.load(std::memory_order_relaxed)) + shared);
}

/// True when the caller's reference is the only one: no other thread holds
/// one to copy, read or drop meanwhile, so the node may be changed in place.
/// False when unsure (a node another live thread counts for).
inline bool held_alone(const NodeBase& node) noexcept {
    const std::uint32_t owner = node.counting_thread.load(std::memory_order_relaxed);
    const std::int32_t shared = node.shared.load(std::memory_order_acquire);
    if (owner == counting_token) return node.owned.load(std::memory_order_relaxed) + std::uint32_t(shared >> 2) == 1;
    return (shared & counts::merged) && (shared >> 2) == 1;
}

}  // namespace ad::detail
