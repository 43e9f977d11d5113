// op_overhead/<impl>: a chain of 100 ops on 1-element arrays, alternately
// y = y * a and y = y + c, recorded, then walked back (forward + backward).
// Time per op = time / 100 (items_per_second counts ops). libtorch's peer is
// in torch_peers.cpp.

#include <benchmark/benchmark.h>

#include "autodiff/autodiff.hpp"
#include "bench_suite.hpp"

namespace {

constexpr int kOps = 100;

void tape_chain(benchmark::State& state) {
    auto x = ad::param<float>({0.5f});
    auto a = ad::constant<float>({1.0001f});
    auto c = ad::constant<float>({0.001f});
    ad::Tape tape;
    auto run = [&] {
        auto y = x;
        for (int i = 0; i < kOps; ++i) y = (i % 2 == 0) ? y * a : y + c;
        y.backward();
        tape.clear();
    };
    run();
    for (auto _ : state) {
        run();
        benchmark::DoNotOptimize(x.grad().data());
    }
    x.zero_grad();
    state.SetItemsProcessed(state.iterations() * kOps);
    state.counters["ops"] = kOps;
}

}  // namespace

namespace bench {

void register_op_overhead() {
    benchmark::RegisterBenchmark("op_overhead/tape", tape_chain)->UseRealTime()->Unit(benchmark::kMicrosecond);
    register_torch_op_overhead();
}

}  // namespace bench
