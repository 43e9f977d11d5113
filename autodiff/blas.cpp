#include "autodiff/blas.hpp"

#include <atomic>
#include <mutex>
#include <stdexcept>
#include <string>

#include <fmt/format.h>

#include "autodiff/errors.hpp"

// OpenBLAS's own thread controls, declared here: <cblas.h>, which declares
// them, cannot share a file with xtensor-blas's headers.
extern "C" void openblas_set_num_threads(int);
extern "C" int openblas_get_num_threads(void);

namespace ad::blas {
namespace {

std::atomic<ThreadPolicy> policy{ThreadPolicy::by_size};
// The count large calls use; 0 until the engine's first call reads OpenBLAS's.
std::atomic<int> large_count{0};
// The count the engine itself set last (0: none yet). OpenBLAS reporting
// another one means someone else set it: that is the new large count.
std::atomic<int> engine_count{0};
// The engine's changes of the count, one at a time, each with its
// engine_count: another thread never sees one without the other.
std::mutex changing;

void change_threads(bool small) {
    std::lock_guard<std::mutex> lock(changing);
    const int now = openblas_get_num_threads();
    if (now != engine_count.load(std::memory_order_relaxed)) {
        large_count.store(now, std::memory_order_relaxed);
        engine_count.store(now, std::memory_order_relaxed);
    }
    const int wanted = small ? 1 : large_count.load(std::memory_order_relaxed);
    if (now != wanted) {
        engine_count.store(wanted, std::memory_order_relaxed);
        openblas_set_num_threads(wanted);
    }
}

}  // namespace

void reject_beyond_int(const char* op, std::size_t n) {
    throw shape_error(fmt::format("{}: dimension {} is beyond BLAS's int", op, n));
}

void detail::fit_threads(bool small) {
    if (policy.load(std::memory_order_relaxed) != ThreadPolicy::by_size) return;
    // The hot path: OpenBLAS runs the count the engine set, and the call wants it.
    const int now = openblas_get_num_threads();
    if (now == engine_count.load(std::memory_order_relaxed) &&
        now == (small ? 1 : large_count.load(std::memory_order_relaxed))) {
        return;
    }
    change_threads(small);
}

void set_thread_policy(ThreadPolicy p) { policy.store(p, std::memory_order_relaxed); }

ThreadPolicy thread_policy() { return policy.load(std::memory_order_relaxed); }

void set_threads(int threads) {
    if (threads < 1) throw std::invalid_argument("blas::set_threads: " + std::to_string(threads) + " threads");
    std::lock_guard<std::mutex> lock(changing);
    large_count.store(threads, std::memory_order_relaxed);
    engine_count.store(threads, std::memory_order_relaxed);
    openblas_set_num_threads(threads);
}

int threads() {
    const int large = large_count.load(std::memory_order_relaxed);
    return large != 0 ? large : openblas_get_num_threads();
}

}  // namespace ad::blas
