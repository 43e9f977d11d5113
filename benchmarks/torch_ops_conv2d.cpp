// ops/conv2d/libtorch/<shape>: the peer of ops/conv2d/tape/<shape>
// (ops_conv2d.cpp): torch::conv2d with bias on tensors requiring gradients,
// forward and backward from a fixed cotangent, one thread.

#include <string>

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "bench_common.hpp"
#include "bench_suite.hpp"

namespace {

struct ConvShape {
    const char* name;
    int64_t n, c, o, side, k, pad;
    int64_t out() const { return side + 2 * pad - k + 1; }
};

constexpr ConvShape kShapes[] = {{"digits", 64, 1, 8, 8, 3, 1}, {"lenet", 64, 32, 64, 14, 5, 2}};

void conv2d_libtorch(benchmark::State& state, const ConvShape& s) {
    torch::set_num_threads(1);
    torch::manual_seed(0);
    torch::Tensor x = torch::rand({s.n, s.c, s.side, s.side}).requires_grad_();
    torch::Tensor w = torch::rand({s.o, s.c, s.k, s.k}).requires_grad_();
    torch::Tensor b = torch::rand({s.o}).requires_grad_();
    torch::Tensor seed = torch::rand({s.n, s.o, s.out(), s.out()});
    auto iteration = [&] {
        x.mutable_grad() = torch::Tensor();
        w.mutable_grad() = torch::Tensor();
        b.mutable_grad() = torch::Tensor();
        torch::conv2d(x, w, b, 1, s.pad).backward(seed);
    };
    iteration();
    for (auto _ : state) {
        iteration();
        benchmark::DoNotOptimize(x.grad().data_ptr());
        benchmark::DoNotOptimize(w.grad().data_ptr());
        benchmark::DoNotOptimize(b.grad().data_ptr());
    }
}

}  // namespace

namespace bench {

void register_torch_ops_conv2d() {
    for (const ConvShape& s : kShapes) {
        benchmark::RegisterBenchmark((std::string("ops/conv2d/libtorch/") + s.name).c_str(),
                                     [s](benchmark::State& state) { conv2d_libtorch(state, s); })
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
    }
}

}  // namespace bench
