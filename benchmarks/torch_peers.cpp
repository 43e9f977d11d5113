// The libtorch peers of mlp_step and op_overhead, in a translation unit of
// their own (libtorch brings its own compile flags and headers; the rest of
// the suite never sees them). Same data and initial weights as our
// implementations (bench::model_data).
//
// Threads: OpenBLAS gets the benchmark's budget (1 or 2) exactly as our
// implementations do, and libtorch's intra-op pool is held at 1 thread: our
// engine's elementwise work is single-threaded too, and on this 2-core
// machine torch's OpenMP pool and OpenBLAS's threads fight over the cores
// when both are 2 (toolchain-notes.md), which only makes libtorch slower.

#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "bench_common.hpp"
#include "bench_suite.hpp"

namespace {

torch::Tensor tensor_of(const std::vector<float>& v, std::vector<int64_t> shape) {
    return torch::from_blob(const_cast<float*>(v.data()), shape, torch::kFloat32).clone();
}

void torch_step(benchmark::State& state, const std::string& name, int threads) {
    bench::set_blas_threads(threads);
    torch::set_num_threads(1);
    const bench::ModelData& d = bench::model_data(name);
    const auto& s = d.spec.sizes;
    const int64_t B = int64_t(d.spec.batch);
    torch::Tensor x = tensor_of(d.x, {B, int64_t(s.front())});
    torch::Tensor y = tensor_of(d.y, {B, int64_t(s.back())});
    std::vector<torch::Tensor> W, b, params;
    for (std::size_t l = 0; l + 1 < s.size(); ++l) {
        W.push_back(tensor_of(d.weights[l], {int64_t(s[l + 1]), int64_t(s[l])}).requires_grad_(true));
        b.push_back(tensor_of(d.biases[l], {int64_t(s[l + 1])}).requires_grad_(true));
        params.push_back(W.back());
        params.push_back(b.back());
    }
    torch::optim::SGD sgd(params, torch::optim::SGDOptions(bench::kLearningRate));
    auto step = [&] {
        sgd.zero_grad();
        torch::Tensor h = x;
        for (std::size_t l = 0; l < W.size(); ++l) h = torch::sigmoid(torch::addmm(b[l], h, W[l].t()));
        torch::Tensor loss = 0.5 * (h - y).pow(2).sum();
        loss.backward();
        sgd.step();
        return loss.item<float>();
    };
    const float first = step();
    for (auto _ : state) benchmark::DoNotOptimize(step());
    state.counters["first_loss"] = double(first);
    state.counters["gemm_flops"] = bench::step_gemm_flops(d.spec);
    state.counters["GFLOPS"] = benchmark::Counter(bench::step_gemm_flops(d.spec) * 1e-9 * double(state.iterations()),
                                                  benchmark::Counter::kIsRate);
}

void torch_chain(benchmark::State& state) {
    torch::set_num_threads(1);
    bench::set_blas_threads(1);
    constexpr int kOps = 100;
    torch::Tensor x = torch::full({1}, 0.5f, torch::requires_grad());
    torch::Tensor a = torch::full({1}, 1.0001f), c = torch::full({1}, 0.001f);
    auto run = [&] {
        torch::Tensor y = x;
        for (int i = 0; i < kOps; ++i) y = (i % 2 == 0) ? y * a : y + c;
        y.backward();
    };
    run();
    for (auto _ : state) {
        run();
        benchmark::DoNotOptimize(x.grad().data_ptr());
    }
    state.SetItemsProcessed(state.iterations() * kOps);
    state.counters["ops"] = kOps;
}

}  // namespace

namespace bench {

void register_torch_mlp_step(const std::string& model, int threads) {
    auto* b = benchmark::RegisterBenchmark(
        ("mlp_step/libtorch/" + model + "/threads:" + std::to_string(threads)).c_str(), torch_step, model, threads);
    b->UseRealTime()->Unit(model == "xor" ? benchmark::kMicrosecond : benchmark::kMillisecond);
    if (model == "wide") b->MinTime(0.3);
    if (model == "xor") b->Repetitions(kShortRepetitions);
}

void register_torch_op_overhead() {
    benchmark::RegisterBenchmark("op_overhead/libtorch", torch_chain)
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond)
        ->Repetitions(kShortRepetitions);
}

}  // namespace bench
