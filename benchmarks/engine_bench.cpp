// The engine's own overhead, side by side with the array arithmetic it wraps.
//
// array/N        : y = x * w; y = y + x; y = sigmoid-like y * (1 - y), each step
//                  evaluated into a new xt::xarray (what one VJP does without a tape)
// var_no_grad/N  : the same steps as Var ops inside NoGrad (how the first-order
//                  backward runs every VJP): the cost over array/N is the engine's
// var_recorded/N : the same steps recorded on a tape, then walked back
//
// The ratio var_no_grad / array is the number that matters: it should stay
// near 1 for large N, and bounded by a few allocations for N = 1.

#include <benchmark/benchmark.h>

#include "autodiff/autodiff.hpp"

namespace {

constexpr int kSteps = 10;

ad::Array<float> filled(std::size_t n, float v) { return ad::Array<float>(xt::ones<float>({n}) * v); }

void array_chain(benchmark::State& state) {
    std::size_t n = static_cast<std::size_t>(state.range(0));
    ad::Array<float> x = filled(n, 0.5f), w = filled(n, 0.9f);
    for (auto _ : state) {
        ad::Array<float> y = x;
        for (int i = 0; i < kSteps; ++i) {
            ad::Array<float> a = y * w;
            ad::Array<float> b = a + x;
            ad::Array<float> c = 1.0f - b;
            y = b * c;
        }
        benchmark::DoNotOptimize(y.data());
    }
    state.SetItemsProcessed(state.iterations() * kSteps * 4);
}

void var_no_grad_chain(benchmark::State& state) {
    std::size_t n = static_cast<std::size_t>(state.range(0));
    auto x = ad::constant(filled(n, 0.5f)), w = ad::constant(filled(n, 0.9f));
    ad::NoGrad no_grad;
    for (auto _ : state) {
        auto y = x;
        for (int i = 0; i < kSteps; ++i) {
            auto b = y * w + x;
            y = b * (1.0f - b);
        }
        benchmark::DoNotOptimize(y.value().data());
    }
    state.SetItemsProcessed(state.iterations() * kSteps * 4);
}

void var_recorded_chain(benchmark::State& state) {
    std::size_t n = static_cast<std::size_t>(state.range(0));
    auto x = ad::param(filled(n, 0.5f)), w = ad::param(filled(n, 0.9f));
    ad::Tape tape;
    for (auto _ : state) {
        auto y = x;
        for (int i = 0; i < kSteps; ++i) {
            auto b = y * w + x;
            y = b * (1.0f - b);
        }
        ad::sum(y).backward();
        tape.clear();
    }
    state.SetItemsProcessed(state.iterations() * kSteps * 4);
}

}  // namespace

BENCHMARK(array_chain)->Name("array")->RangeMultiplier(64)->Range(1, 1 << 18);
BENCHMARK(var_no_grad_chain)->Name("var_no_grad")->RangeMultiplier(64)->Range(1, 1 << 18);
BENCHMARK(var_recorded_chain)->Name("var_recorded")->RangeMultiplier(64)->Range(1, 1 << 18);
