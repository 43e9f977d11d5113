// ops/layer_norm/tape: layer_norm over the last 128 of an (8, 64, 128) float32
// value with weight and bias, forward and backward (input, weight and bias
// gradients), against libtorch's in torch_ops_layer_norm.cpp.

#include <random>

#include <benchmark/benchmark.h>

#include "autodiff/autodiff.hpp"
#include "bench_common.hpp"
#include "bench_suite.hpp"

namespace {

ad::Array<float> uniform(const ad::Shape& shape, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    ad::Array<float> a = ad::Array<float>::from_shape(shape);
    for (auto& v : a) v = dist(rng);
    return a;
}

void layer_norm_tape(benchmark::State& state) {
    bench::set_blas_threads(1);
    ad::Tape tape;
    auto x = ad::param(uniform({8, 64, 128}, 1));
    auto w = ad::param(uniform({128}, 2));
    auto b = ad::param(uniform({128}, 3));
    const ad::Array<float> seed = uniform({8, 64, 128}, 4);
    auto iteration = [&] {
        x.zero_grad();
        w.zero_grad();
        b.zero_grad();
        ad::layer_norm(x, {128}, w, b).backward(seed);
        tape.clear();
    };
    iteration();
    for (auto _ : state) {
        iteration();
        benchmark::DoNotOptimize(x.grad().data());
    }
}

}  // namespace

namespace bench {

void register_ops_layer_norm() {
    benchmark::RegisterBenchmark("ops/layer_norm/tape", layer_norm_tape)->UseRealTime()->Unit(benchmark::kMicrosecond);
}

}  // namespace bench
