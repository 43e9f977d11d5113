#pragma once
// BlockPool: recycled memory for the nodes behind Vars.
//
// For: every op makes a node, and a backward sweep makes about as many
// cotangents; Tape::clear() then frees them all at once, far more than
// glibc's per-thread cache keeps, so most node allocations would take
// malloc's slow paths, a large share of a small op's cost (benchmarks/README.md,
// op_overhead). Freed blocks go onto a per-thread list threaded through the
// blocks themselves, so recycling allocates nothing. Removing it: nodes come
// from operator new and go back to it; only speed changes.

#include <cstddef>
#include <memory>
#include <new>

namespace ad::detail {

/// Blocks of `Size` bytes. A block may be freed on another thread than the
/// one that allocated it: it joins that thread's list.
template <std::size_t Size>
class BlockPool {
    static_assert(Size >= sizeof(void*));

public:
    static void* allocate() {
        Local& local = local_list();
        if (local.head) {
            FreeBlock* block = local.head;
            local.head = block->next;
            --local.count;
            return block;
        }
        return ::operator new(Size);
    }

    static void deallocate(void* p) noexcept {
        Local& local = local_list();
        if (local.closed || local.count == max_kept_) {
            ::operator delete(p);
            return;
        }
        local.head = new (p) FreeBlock{local.head};
        ++local.count;
    }

private:
    struct FreeBlock {
        FreeBlock* next;
    };
    // Enough for the graphs of a training step; beyond it, blocks go back to malloc.
    static constexpr std::size_t max_kept_ = 1 << 14;

    struct Local {
        FreeBlock* head = nullptr;
        std::size_t count = 0;
        bool closed = false;

        ~Local() {
            // The thread ends: later frees on it go straight to the heap.
            closed = true;
            while (head) {
                FreeBlock* next = head->next;
                ::operator delete(head);
                head = next;
            }
            count = 0;
        }
    };

    static Local& local_list() {
        thread_local Local local;
        return local;
    }
};

}  // namespace ad::detail
