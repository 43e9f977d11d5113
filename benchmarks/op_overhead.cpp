// op_overhead/<impl>: a chain of 100 ops on 1-element arrays, alternately
// y = y * a and y = y + c, recorded, then walked back (forward + backward).
// Time per op = time / 100 (items_per_second counts ops). libtorch's peer is
// in torch_peers.cpp; xarray_floor is the same chain's arrays without a tape.

#include <benchmark/benchmark.h>

#include "autodiff/autodiff.hpp"
#include "bench_common.hpp"
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

/// The floor of any tape whose values are xarrays: the chain's arrays and
/// nothing else. Forward makes each op's result as a new array (an op cannot
/// write into its input: a record or the caller may hold it), built the way
/// the engine's arithmetic builds it: an uninitialised array of the input's
/// shape and a raw loop. Backward makes the seed and scales it in place for
/// each y * a (as the sweep does with a cotangent nothing else holds; the
/// cotangent of y + c passes through as it is). No records, no closures, no
/// reference counts: op_overhead/tape minus this is what the tape itself costs.
void xarray_floor(benchmark::State& state) {
    const ad::Array<float> a{1.0001f}, c{0.001f};
    auto apply = [](const ad::Array<float>& in, auto f) {
        ad::Array<float> out = ad::Array<float>::from_shape(in.shape());
        for (std::size_t i = 0; i < in.size(); ++i) out.data()[i] = f(in.data()[i]);
        return out;
    };
    for (auto _ : state) {
        ad::Array<float> y{0.5f};
        for (int i = 0; i < kOps; ++i) {
            ad::Array<float> next = i % 2 == 0 ? apply(y, [&](float v) { return v * a(0); })
                                               : apply(y, [&](float v) { return v + c(0); });
            std::swap(y.storage(), next.storage());  // the old value dies with `next`
        }
        ad::Array<float> g = apply(y, [](float) { return 1.0f; });
        for (int i = kOps - 1; i >= 0; --i) {
            if (i % 2 != 0) continue;
            for (std::size_t k = 0; k < g.size(); ++k) g.data()[k] *= a(0);
            benchmark::ClobberMemory();  // one product per op, not folded into one
        }
        benchmark::DoNotOptimize(y.data());
        benchmark::DoNotOptimize(g.data());
    }
    state.SetItemsProcessed(state.iterations() * kOps);
    state.counters["ops"] = kOps;
}

}  // namespace

namespace bench {

void register_op_overhead() {
    for (auto* b : {benchmark::RegisterBenchmark("op_overhead/tape", tape_chain),
                    benchmark::RegisterBenchmark("op_overhead/xarray_floor", xarray_floor)}) {
        b->UseRealTime()->Unit(benchmark::kMicrosecond)->Repetitions(kShortRepetitions);
    }
    register_torch_op_overhead();
}

}  // namespace bench
