// blas_threads/...: what OpenBLAS's threads cost small products, and what the
// engine's thread policy (autodiff/blas.hpp: one thread below a measured
// amount of work, OpenBLAS's count above) saves. A benchmark of several modes
// runs them in alternating blocks, each iteration starting one mode further,
// so that all see the same phases of this shared machine's load; it reports
// each mode's time per step and their ratios as counters, and its own time is
// one block of every mode.
//
//   blas_threads/mlp_step/<model>/load:<n>  a float32 training step of a small
//       sigmoid MLP (forward, 1/2 sum of squares, backward, SGD): `policy`
//       (the engine's default, OpenBLAS at 2 threads) against `threads:1`
//       (the policy off, OpenBLAS on one thread). load:2 runs two threads
//       spinning in the background meanwhile: a busy 2-core machine.
//   blas_threads/mlp_step/<model>/load:<n>/threads:2  the same step with the
//       policy off and OpenBLAS on 2 threads: its own limits decide, as before
//       the policy. A benchmark of its own: OpenBLAS's worker spins for ~0.1 s
//       after a threaded call, and a block that followed one paid for that.
//     Models:
//         8-16-16-1_b32    a small model: no call reaches OpenBLAS's
//                          own limits, so no mode threads anything
//         64-128-128-1_b32 a GEMM of 32 x 128 x 128 (above OpenBLAS's 262,144
//                          m n k) and SGD's AXPY over 16,384 weights (above its
//                          10,000) run threaded at threads:2
//         8-16-16-1_b1024  GEMVs of 1024 x 16 (above its 9,216) and a GER
//                          (above its 8,192) run threaded at threads:2
//   blas_threads/sgemm/1024  a 1024^3 float GEMM through ad::blas::gemm,
//       `policy` against `threads:2`: a large product keeps its threads.
//
// Counters: <mode>_us (time per step or product in that mode), and
// policy_over_one, policy_over_two (ratios of summed times).

#include <atomic>
#include <chrono>
#include <cstddef>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <benchmark/benchmark.h>

#include "autodiff/blas.hpp"
#include "bench_suite.hpp"
#include "nn/nn.hpp"

namespace {

using Clock = std::chrono::steady_clock;

/// How the engine's BLAS calls get their threads in one mode.
struct Mode {
    const char* name;
    ad::blas::ThreadPolicy policy;
    int threads;
};
const Mode kPolicy{"policy", ad::blas::ThreadPolicy::by_size, 2};
const Mode kOneThread{"threads:1", ad::blas::ThreadPolicy::openblas, 1};
const Mode kTwoThreads{"threads:2", ad::blas::ThreadPolicy::openblas, 2};

void enter(const Mode& mode) {
    ad::blas::set_thread_policy(mode.policy);
    ad::blas::set_threads(mode.threads);
}

/// Threads that spin while it lives: a busy machine, inside the benchmark.
class Load {
public:
    explicit Load(int threads) {
        for (int i = 0; i < threads; ++i) {
            spinners_.emplace_back([this] {
                unsigned long count = 0;
                while (!stop_.load(std::memory_order_relaxed)) benchmark::DoNotOptimize(++count);
            });
        }
    }
    ~Load() {
        stop_ = true;
        for (auto& t : spinners_) t.join();
    }

private:
    std::atomic<bool> stop_{false};
    std::vector<std::thread> spinners_;
};

ad::Array<float> uniform(std::size_t rows, std::size_t cols, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(0, 1);
    ad::Array<float> a = ad::Array<float>::from_shape({rows, cols});
    for (auto& v : a) v = dist(rng);
    return a;
}

struct SmallModel {
    SmallModel(std::size_t in, std::size_t width, std::size_t batch)
        : model({in, width, width, 1}, ad::nn::Activation::sigmoid, 0),
          x(ad::constant(uniform(batch, in, 1))),
          y(ad::constant(uniform(batch, 1, 2))),
          sgd(model, ad::nn::SGDOptions{0.01f, 0, 0}) {}

    float step() {
        sgd.zero_grad();
        auto loss = ad::nn::half_sse(model(x), y);
        loss.backward();
        sgd.step();
        const float value = loss.item();
        tape.clear();
        return value;
    }

    ad::nn::MLP<float> model;
    ad::Var<float> x, y;
    ad::nn::SGD<float> sgd;
    ad::Tape tape;
};

/// Runs `work` `block` times in every mode, in turn, per iteration; sets the counters.
template <class Work>
void alternate(benchmark::State& state, const std::vector<Mode>& modes, int block, Work work) {
    std::vector<Clock::duration> spent(modes.size());
    for (const Mode& mode : modes) {  // warm-up: the tape's storage, OpenBLAS's buffers, its threads
        enter(mode);
        work();
    }
    std::size_t first = 0;
    for (auto _ : state) {
        // Each iteration starts one mode further: none always follows the same one.
        first = (first + 1) % modes.size();
        for (std::size_t i = 0; i < modes.size(); ++i) {
            const std::size_t m = (first + i) % modes.size();
            enter(modes[m]);
            // Untimed: the first step after a switch finds the data in the other core's cache.
            work();
            const auto start = Clock::now();
            for (int i = 0; i < block; ++i) work();
            spent[m] += Clock::now() - start;
        }
    }
    enter(kPolicy);  // the default for whatever runs next
    auto seconds = [&](const Mode& mode) {
        for (std::size_t m = 0; m < modes.size(); ++m) {
            if (std::string(modes[m].name) == mode.name) return std::chrono::duration<double>(spent[m]).count();
        }
        return 0.0;
    };
    const double steps = double(state.iterations()) * block;
    for (const Mode& mode : modes) state.counters[std::string(mode.name) + "_us"] = seconds(mode) / steps * 1e6;
    const double policy = seconds(kPolicy), one = seconds(kOneThread), two = seconds(kTwoThreads);
    if (policy > 0 && one > 0) state.counters["policy_over_one"] = policy / one;
    if (policy > 0 && two > 0) state.counters["policy_over_two"] = policy / two;
}

void mlp_step(benchmark::State& state, const std::vector<Mode>& modes, std::size_t in, std::size_t width,
              std::size_t batch, int block, int load) {
    SmallModel model(in, width, batch);
    Load busy(load);
    alternate(state, modes, block, [&] { benchmark::DoNotOptimize(model.step()); });
}

void sgemm(benchmark::State& state, int n) {
    const std::size_t size = std::size_t(n) * std::size_t(n);
    std::vector<float> a(size, 0.5f), b(size, 0.25f), c(size, 0.0f);
    alternate(state, {kPolicy, kTwoThreads}, 1, [&] {
        ad::blas::gemm(false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data());
        benchmark::DoNotOptimize(c.data());
        benchmark::ClobberMemory();
    });
    state.counters["gemm_flops"] = 2.0 * double(n) * double(n) * double(n);
}

}  // namespace

namespace bench {

void register_blas_threads() {
    struct Small {
        const char* name;
        std::size_t in, width, batch;
        int block;  // steps per block: ~1 ms on one thread
    };
    for (const Small& s : {Small{"8-16-16-1_b32", 8, 16, 32, 256}, Small{"64-128-128-1_b32", 64, 128, 32, 16},
                           Small{"8-16-16-1_b1024", 8, 16, 1024, 12}}) {
        for (int load : {0, 2}) {
            const std::string name = "blas_threads/mlp_step/" + std::string(s.name) + "/load:" + std::to_string(load);
            // Two threads in a benchmark of their own (see the top): alternating with them, the same
            // single-threaded mode measured 60 or 100 us depending on its place in the rotation.
            for (const auto& [suffix, modes] : {std::pair<std::string, std::vector<Mode>>{"", {kPolicy, kOneThread}},
                                                std::pair<std::string, std::vector<Mode>>{"/threads:2", {kTwoThreads}}}) {
                auto* b = benchmark::RegisterBenchmark((name + suffix).c_str(), mlp_step, modes, s.in, s.width,
                                                       s.batch, s.block, load);
                b->UseRealTime()->Unit(benchmark::kMillisecond);
                // Under the spinning threads the modes' ratios move by 10-20% between repetitions: more blocks.
                if (load > 0) b->MinTime(1.5);
            }
        }
    }
    benchmark::RegisterBenchmark("blas_threads/sgemm/1024", sgemm, 1024)->UseRealTime()->Unit(benchmark::kMillisecond);
}

}  // namespace bench
