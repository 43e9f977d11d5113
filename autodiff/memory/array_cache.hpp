#pragma once
// ArrayCache: large arrays the engine frees wait, per thread, for the next op
// that needs an array of the same size.
//
// For: a training step makes the same arrays every step. glibc hands an array
// of 128 KiB or more (its mmap threshold) back to the kernel when it is freed,
// and trims the heap's top once more than 128 KiB of it is free, so the next
// step's array of the same size would take a page fault on every 4 KiB it
// writes: on a small CNN step (activations of 256 KiB) a third of the step's
// time (benchmarks/README.md, where the time goes). Arrays of 128 KiB and more
// that die with their node come here instead, up to a bound, and ops that
// make their result with new_array take them back. Smaller arrays are left to
// malloc, whose free lists reuse them without the kernel. Removing it:
// new_array becomes Array::from_shape, and large steps page-fault again.

#include <cstddef>
#include <utility>
#include <vector>

#include "autodiff/tensor.hpp"

namespace ad {

/// Frees the arrays kept for reuse on the calling thread, large ones here
/// and small ones with their nodes (node.hpp), like PyTorch's
/// torch.cuda.empty_cache(). Nothing else changes: later ops allocate anew.
void release_cached_arrays() noexcept;

/// Bytes of the arrays kept for reuse on the calling thread (both kinds).
std::size_t cached_array_bytes() noexcept;

namespace detail {

/// A thread's instance of `Local`, made on first use, and whether it has
/// ended with its thread: objects destroyed after it on that thread (other
/// thread_locals' contents) must not touch it then.
template <class Local>
struct PerThread {
    static Local& get() {
        thread_local Local local;
        return local;
    }
    static bool& ended() noexcept {
        thread_local bool is_ended = false;  // trivially destructible: readable until the thread ends
        return is_ended;
    }
};

template <class T>
class ArrayCache {
public:
    static constexpr std::size_t min_bytes = std::size_t(128) << 10;  // glibc's default M_MMAP_THRESHOLD
    static constexpr std::size_t max_arrays = 64;
    static constexpr std::size_t max_bytes = std::size_t(256) << 20;

    static bool worth_keeping(std::size_t size) noexcept { return size * sizeof(T) >= min_bytes; }

    /// An array of `shape`: a kept one of the same size if there is one.
    template <class S>
    static Array<T> take(const S& shape) {
        std::size_t size = 1;
        for (auto extent : shape) size *= static_cast<std::size_t>(extent);
        if (worth_keeping(size) && !closed()) {
            auto& kept = local().arrays;
            for (std::size_t i = kept.size(); i-- > 0;) {
                if (kept[i].size() != size) continue;
                Array<T> array = std::move(kept[i]);
                kept.erase(kept.begin() + static_cast<std::ptrdiff_t>(i));
                local().bytes -= size * sizeof(T);
                array.resize(shape);  // the same number of elements: the storage stays
                return array;
            }
        }
        return Array<T>::from_shape(shape);
    }

    /// Keeps `array`'s storage if it is worth keeping and the bound allows,
    /// leaving `array` empty; otherwise leaves it to be freed as usual.
    static void give(Array<T>& array) noexcept {
        if (!worth_keeping(array.size()) || closed()) return;
        try {
            Local& cache = local();  // its first use on a thread allocates, and may throw
            const std::size_t bytes = array.size() * sizeof(T);
            if (cache.arrays.size() == max_arrays || cache.bytes + bytes > max_bytes) return;
            cache.arrays.push_back(std::move(array));  // within the reserved capacity
            cache.bytes += bytes;
        } catch (...) {
            // Out of memory: the array is simply freed.
        }
    }

    static void release() noexcept {
        if (closed()) return;
        local().arrays.clear();
        local().bytes = 0;
    }

    static std::size_t bytes() noexcept { return closed() ? 0 : local().bytes; }

private:
    struct Local {
        Local() { arrays.reserve(max_arrays); }
        ~Local() { closed() = true; }  // nodes destroyed later on this thread free their arrays themselves
        std::vector<Array<T>> arrays;
        std::size_t bytes = 0;
    };

    static Local& local() { return PerThread<Local>::get(); }
    static bool& closed() noexcept { return PerThread<Local>::ended(); }
};

/// A new uninitialised array of `shape`, from the calling thread's cache when
/// it keeps one of that size. Ops make large results with it.
template <class T, class S>
Array<T> new_array(const S& shape) {
    return ArrayCache<T>::take(shape);
}

}  // namespace detail
}  // namespace ad
