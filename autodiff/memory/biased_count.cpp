#include "autodiff/memory/biased_count.hpp"

#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

namespace ad::detail {
namespace {

struct Queued {
    NodeBase* node;
    FreeNode free;
};

/// A registered thread's merge queue. Heap-allocated: other threads reach
/// it through the registry while its thread lives.
struct MergeQueue {
    std::atomic<bool> pending{false};
    std::vector<Queued> nodes;  // guarded by the registry's mutex
};

/// Every live registered thread's queue, by token. Never destroyed: threads
/// may end (and deregister) after main's static objects are gone.
struct Registry {
    std::mutex mutex;
    std::unordered_map<std::uint32_t, MergeQueue*> queues;
};

Registry& registry() {
    static Registry* const instance = new Registry;
    return *instance;
}

/// Folds `node`'s owned count into its shared count and marks it merged;
/// true when the sum is zero. Run by the owner, or by any thread once the
/// owner has ended (the registry's mutex orders its last writes before).
bool merge(NodeBase& node) noexcept {
    const auto owned = static_cast<std::int32_t>(node.owned.load(std::memory_order_relaxed));
    node.owned.store(0, std::memory_order_relaxed);
    node.counting_thread.store(counts::no_thread, std::memory_order_relaxed);
    std::int32_t shared = node.shared.load(std::memory_order_relaxed);
    std::int32_t next;
    do {
        next = (((shared >> 2) + owned) * counts::one) | counts::merged;
    } while (!node.shared.compare_exchange_weak(shared, next, std::memory_order_acq_rel, std::memory_order_relaxed));
    return (next >> 2) == 0;
}

void merge_all(std::vector<Queued>& nodes) noexcept {
    for (const Queued& queued : nodes) {
        if (merge(*queued.node)) queued.free(queued.node);
    }
    nodes.clear();
}

/// Ends the calling thread's registration: what is queued for it is merged,
/// and nodes it owns that others drop later are merged by those others.
struct Registration {
    MergeQueue* queue = nullptr;
    ~Registration() {
        if (!queue) return;
        std::vector<Queued> left;
        {
            std::lock_guard lock(registry().mutex);
            registry().queues.erase(counting_token);
            left.swap(queue->nodes);
        }
        merge_pending = nullptr;
        delete queue;
        // Values made from here on (by later thread_local destructors) are
        // born merged: no thread will merge for this one any more.
        counting_token = counts::no_thread;
        merge_all(left);
    }
};

}  // namespace

std::uint32_t register_counting_thread() noexcept {
    // Not called again on this thread: its token is set, and its
    // registration's end sets it to no_thread.
    try {
        thread_local Registration registration;  // constructed here, on the thread's first adopt
        auto queue = std::make_unique<MergeQueue>();
        std::lock_guard lock(registry().mutex);
        const std::uint32_t token = thread_token();  // never 0 (no_thread): it counts from 1
        registry().queues.emplace(token, queue.get());
        merge_pending = &queue->pending;
        registration.queue = queue.release();
        return counting_token = token;
    } catch (...) {
        // Out of memory: this thread's values are born merged, counted
        // with read-modify-writes like any other thread's.
        return counting_token = counts::no_thread;
    }
}

bool give_up_ownership(NodeBase& node) noexcept {
    // First: once merged, the node may be freed by another thread at once.
    node.counting_thread.store(counts::no_thread, std::memory_order_relaxed);
    std::int32_t shared = node.shared.load(std::memory_order_acquire);
    for (;;) {
        if (shared == 0) return true;                  // nobody else holds it
        if (shared & counts::queued) return false;     // the queue's merge decides
        if (node.shared.compare_exchange_weak(shared, shared | counts::merged, std::memory_order_acq_rel,
                                              std::memory_order_acquire)) {
            return false;
        }
    }
}

bool drop_shared(NodeBase& node, FreeNode free) noexcept {
    std::int32_t shared = node.shared.load(std::memory_order_relaxed);
    std::int32_t next;
    bool queue_it;
    do {
        next = shared - counts::one;
        queue_it = !(shared & (counts::merged | counts::queued)) && next < 0;
        if (queue_it) next |= counts::queued;
    } while (!node.shared.compare_exchange_weak(shared, next, std::memory_order_acq_rel, std::memory_order_relaxed));
    if (next == counts::merged) return true;  // merged, and that was the last reference
    if (!queue_it) return false;
    // The owner counted the reference just dropped: only it can tell whether
    // any is left.
    const std::uint32_t owner = node.counting_thread.load(std::memory_order_relaxed);
    {
        std::lock_guard lock(registry().mutex);
        auto found = registry().queues.find(owner);
        if (found != registry().queues.end()) {
            try {
                found->second->nodes.push_back({&node, free});
                found->second->pending.store(true, std::memory_order_relaxed);
                return false;
            } catch (...) {
                // Out of memory: the node stays queued for nobody, and is kept.
                return false;
            }
        }
    }
    // Its owner has ended: its counts are final, and merged here.
    return merge(node);
}

void merge_queued_counts() noexcept {
    std::vector<Queued> nodes;
    {
        std::lock_guard lock(registry().mutex);
        auto found = registry().queues.find(counting_token);
        if (found == registry().queues.end()) return;
        found->second->pending.store(false, std::memory_order_relaxed);
        nodes.swap(found->second->nodes);
    }
    merge_all(nodes);
}

}  // namespace ad::detail
