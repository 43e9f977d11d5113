// memory/tape_bytes/<model>: heap bytes (glibc mallinfo2) that one forward
//   and loss of the model leaves alive when the caller holds only the loss:
//   the tape's records and arena and every value they keep for the backward
//   sweep; against the activations A^1..A^L the hand-derived backward keeps
//   (counters tape_bytes, tape_storage_bytes, hand_bytes, ratio).
// memory/rss/xor: resident memory (/proc/self/statm) after step 1000 and
//   step 10000 of one xor training run on one tape: it should stay flat.

#include <benchmark/benchmark.h>

#include "bench_common.hpp"
#include "bench_suite.hpp"

namespace {

void tape_bytes(benchmark::State& state, const std::string& model) {
    bench::set_blas_threads(1);
    bench::TapeMemory memory{};
    for (auto _ : state) memory = bench::tape_forward_bytes(model);
    const std::size_t bytes = memory.held;
    const std::size_t hand = bench::hand_activation_bytes(model);
    state.counters["tape_bytes"] = double(bytes);
    state.counters["tape_storage_bytes"] = double(memory.storage);
    state.counters["hand_bytes"] = double(hand);
    state.counters["ratio"] = double(bytes) / double(hand);
}

void rss_flat(benchmark::State& state) {
    bench::set_blas_threads(1);
    std::size_t at1000 = 0, at10000 = 0;
    for (auto _ : state) {
        bench::tape_xor_steps(10000, [&](std::size_t step) {
            if (step == 1000) at1000 = bench::resident_bytes();
            if (step == 10000) at10000 = bench::resident_bytes();
        });
    }
    state.counters["rss_step1000_kB"] = double(at1000) / 1024.0;
    state.counters["rss_step10000_kB"] = double(at10000) / 1024.0;
    state.counters["rss_growth_kB"] = (double(at10000) - double(at1000)) / 1024.0;
}

}  // namespace

namespace bench {

void register_memory() {
    for (const char* model : {"xor", "mnist"}) {
        benchmark::RegisterBenchmark((std::string("memory/tape_bytes/") + model).c_str(), tape_bytes,
                                     std::string(model))
            ->Iterations(3)
            ->Unit(benchmark::kMillisecond);
    }
    benchmark::RegisterBenchmark("memory/rss/xor", rss_flat)->Iterations(1)->Unit(benchmark::kMillisecond);
}

}  // namespace bench
