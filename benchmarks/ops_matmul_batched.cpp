// ops/matmul_batched/<impl>: a batch of 32 (64 x 64) x (64 x 64) float32
// products, forward and backward, BLAS on one thread:
//
//   tape  ad::matmul on two (32, 64, 64) parameters, the result's cotangent
//         seeded with a fixed array, the tape cleared after every iteration
//   gemm  the same 32 forward GEMMs (C = A B) and 64 backward ones
//         (A_bar = G B^T, B_bar = A^T G) called directly, into buffers
//         allocated once: the floor for any tape
//
// Goal: tape within 1.2x of gemm. The tape's products are the same GEMMs
// (its backward ones go into the parameters' lent gradient nodes); what it
// adds is backward(seed)'s copy of the seed and the result's node, 512 KiB
// arrays each: below array_cache's 1 MiB bound, they go back to malloc, and
// when glibc trims its heap they come back as fresh pages, page-faulted on
// the first write (up to half the tape's time on this machine). With
// GLIBC_TUNABLES=glibc.malloc.trim_threshold=67108864:glibc.malloc.mmap_threshold=4194304
// the gap is the tape's own work alone.

#include <random>
#include <vector>

#include <benchmark/benchmark.h>

#include "autodiff/autodiff.hpp"
#include "autodiff/blas.hpp"
#include "bench_common.hpp"
#include "bench_suite.hpp"

namespace {

constexpr std::size_t kBatch = 32, kSide = 64;
constexpr std::size_t kMatrix = kSide * kSide;

std::vector<float> uniform_values(std::size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    std::vector<float> values(n);
    for (auto& v : values) v = dist(rng);
    return values;
}

ad::Array<float> batch_array(unsigned seed) {
    ad::Array<float> a = ad::Array<float>::from_shape({kBatch, kSide, kSide});
    std::vector<float> values = uniform_values(a.size(), seed);
    std::copy(values.begin(), values.end(), a.begin());
    return a;
}

// 32 forward GEMMs and 64 backward ones of 2 n^3 FLOPs each.
void set_counters(benchmark::State& state) {
    const double flops = 3.0 * double(kBatch) * 2.0 * double(kSide * kSide * kSide);
    state.counters["gemm_flops"] = flops;
    state.counters["GFLOPS"] = benchmark::Counter(flops * 1e-9 * double(state.iterations()), benchmark::Counter::kIsRate);
}

void matmul_batched_tape(benchmark::State& state) {
    bench::set_blas_threads(1);
    ad::Tape tape;
    auto a = ad::param(batch_array(1));
    auto b = ad::param(batch_array(2));
    const ad::Array<float> seed = batch_array(3);
    auto iteration = [&] {
        a.zero_grad();
        b.zero_grad();
        ad::matmul(a, b).backward(seed);
        tape.clear();
    };
    iteration();  // warm-up: the tape's storage and the recycled nodes are sized by the first step
    for (auto _ : state) {
        iteration();
        benchmark::DoNotOptimize(a.grad().data());
        benchmark::DoNotOptimize(b.grad().data());
    }
    set_counters(state);
}

void matmul_batched_gemm(benchmark::State& state) {
    bench::set_blas_threads(1);
    const std::vector<float> a = uniform_values(kBatch * kMatrix, 1), b = uniform_values(kBatch * kMatrix, 2),
                             g = uniform_values(kBatch * kMatrix, 3);
    std::vector<float> c(kBatch * kMatrix), a_bar(kBatch * kMatrix), b_bar(kBatch * kMatrix);
    const int n = int(kSide);
    for (auto _ : state) {
        for (std::size_t p = 0; p < kBatch; ++p) {
            ad::blas::gemm(false, false, n, n, n, 1.0f, a.data() + p * kMatrix, n, b.data() + p * kMatrix, n, 0.0f,
                           c.data() + p * kMatrix);
        }
        for (std::size_t p = 0; p < kBatch; ++p) {
            ad::blas::gemm(false, true, n, n, n, 1.0f, g.data() + p * kMatrix, n, b.data() + p * kMatrix, n, 0.0f,
                           a_bar.data() + p * kMatrix);
            ad::blas::gemm(true, false, n, n, n, 1.0f, a.data() + p * kMatrix, n, g.data() + p * kMatrix, n, 0.0f,
                           b_bar.data() + p * kMatrix);
        }
        benchmark::DoNotOptimize(c.data());
        benchmark::DoNotOptimize(a_bar.data());
        benchmark::DoNotOptimize(b_bar.data());
        benchmark::ClobberMemory();
    }
    set_counters(state);
}

}  // namespace

namespace bench {

void register_ops_matmul_batched() {
    benchmark::RegisterBenchmark("ops/matmul_batched/tape", matmul_batched_tape)->UseRealTime()->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark("ops/matmul_batched/gemm", matmul_batched_gemm)->UseRealTime()->Unit(benchmark::kMicrosecond);
}

}  // namespace bench
