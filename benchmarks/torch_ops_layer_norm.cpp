// ops/layer_norm/libtorch: the same layer norm as ops_layer_norm.cpp's, in
// libtorch (torch::layer_norm with autograd), torch on one thread.

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "bench_common.hpp"
#include "bench_suite.hpp"

namespace {

void layer_norm_torch(benchmark::State& state) {
    bench::set_blas_threads(1);
    torch::set_num_threads(1);
    torch::manual_seed(0);
    torch::Tensor x = torch::rand({8, 64, 128}).mul(2).sub(1).requires_grad_();
    torch::Tensor w = torch::rand({128}).requires_grad_();
    torch::Tensor b = torch::rand({128}).requires_grad_();
    torch::Tensor seed = torch::rand({8, 64, 128});
    auto iteration = [&] {
        x.mutable_grad() = torch::Tensor();
        w.mutable_grad() = torch::Tensor();
        b.mutable_grad() = torch::Tensor();
        torch::layer_norm(x, {128}, w, b).backward(seed);
    };
    iteration();
    for (auto _ : state) {
        iteration();
        benchmark::DoNotOptimize(x.grad().data_ptr());
    }
}

}  // namespace

namespace bench {

void register_torch_ops_layer_norm() {
    benchmark::RegisterBenchmark("ops/layer_norm/libtorch", layer_norm_torch)->UseRealTime()->Unit(benchmark::kMicrosecond);
}

}  // namespace bench
