// ops/conv2d/<impl>/<shape>: one float32 conv2d with bias, forward and
// backward (input, weight and bias gradients), BLAS on one thread:
//
//   digits  batch 64, 1 -> 8 channels, 8x8, 3x3 kernel, padding 1
//   lenet   batch 64, 32 -> 64 channels, 14x14, 5x5 kernel, padding 2
//
//   tape  ad::conv2d on parameters x, w, b, the result's cotangent seeded with
//         a fixed array, the tape cleared after every iteration
//   gemm  the op's GEMMs alone, called directly into buffers allocated once:
//         per batch element Y_n = W cols_n (forward), cols = W^T G_n (input
//         gradient) and W_bar += G_n cols_n^T (weight gradient); no im2col
//
// Goals (benchmarks/report.py): digits tape/libtorch <= 0.3, lenet
// tape/libtorch <= 1.0 and lenet tape within 1.3x of its GEMMs' time at the
// sgemm/1024 rate.

#include <random>
#include <vector>

#include <benchmark/benchmark.h>

#include "autodiff/autodiff.hpp"
#include "autodiff/blas.hpp"
#include "bench_common.hpp"
#include "bench_suite.hpp"

namespace {

struct ConvShape {
    const char* name;
    std::size_t n, c, o, side, k, pad;
    std::size_t out() const { return side + 2 * pad - k + 1; }
    std::size_t cols_rows() const { return c * k * k; }
    std::size_t cols_width() const { return out() * out(); }
};

constexpr ConvShape kShapes[] = {{"digits", 64, 1, 8, 8, 3, 1}, {"lenet", 64, 32, 64, 14, 5, 2}};

ad::Array<float> uniform_array(const ad::Shape& shape, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    ad::Array<float> a = ad::Array<float>::from_shape(shape);
    for (auto& v : a) v = dist(rng);
    return a;
}

// Three GEMMs a batch element of 2 O K P FLOPs each.
void set_counters(benchmark::State& state, const ConvShape& s) {
    const double flops = 3.0 * double(s.n) * 2.0 * double(s.o * s.cols_rows() * s.cols_width());
    state.counters["gemm_flops"] = flops;
    state.counters["GFLOPS"] = benchmark::Counter(flops * 1e-9 * double(state.iterations()), benchmark::Counter::kIsRate);
}

void conv2d_tape(benchmark::State& state, const ConvShape& s) {
    bench::set_blas_threads(1);
    ad::Tape tape;
    auto x = ad::param(uniform_array({s.n, s.c, s.side, s.side}, 1));
    auto w = ad::param(uniform_array({s.o, s.c, s.k, s.k}, 2));
    auto b = ad::param(uniform_array({s.o}, 3));
    const ad::Array<float> seed = uniform_array({s.n, s.o, s.out(), s.out()}, 4);
    const long pad = static_cast<long>(s.pad);
    auto iteration = [&] {
        x.zero_grad();
        w.zero_grad();
        b.zero_grad();
        ad::conv2d(x, w, b, 1, pad).backward(seed);
        tape.clear();
    };
    iteration();  // warm-up: the tape's storage, the recycled nodes and the im2col workspace
    for (auto _ : state) {
        iteration();
        benchmark::DoNotOptimize(x.grad().data());
        benchmark::DoNotOptimize(w.grad().data());
        benchmark::DoNotOptimize(b.grad().data());
    }
    set_counters(state, s);
}

void conv2d_gemm(benchmark::State& state, const ConvShape& s) {
    bench::set_blas_threads(1);
    const std::size_t K = s.cols_rows(), P = s.cols_width(), O = s.o;
    const ad::Array<float> w = uniform_array({O, K}, 2), cols = uniform_array({s.n, K, P}, 1),
                           g = uniform_array({s.n, O, P}, 4);
    std::vector<float> y(s.n * O * P), cols_bar(K * P), w_bar(O * K);
    const int o = int(O), k = int(K), p = int(P);
    for (auto _ : state) {
        for (std::size_t n = 0; n < s.n; ++n) {
            ad::blas::gemm(false, false, o, p, k, 1.0f, w.data(), k, cols.data() + n * K * P, p, 0.0f,
                           y.data() + n * O * P);
        }
        for (std::size_t n = 0; n < s.n; ++n) {
            ad::blas::gemm(true, false, k, p, o, 1.0f, w.data(), k, g.data() + n * O * P, p, 0.0f, cols_bar.data());
            benchmark::DoNotOptimize(cols_bar.data());
        }
        for (std::size_t n = 0; n < s.n; ++n) {
            ad::blas::gemm(false, true, o, k, p, 1.0f, g.data() + n * O * P, p, cols.data() + n * K * P, p,
                           n == 0 ? 0.0f : 1.0f, w_bar.data());
        }
        benchmark::DoNotOptimize(y.data());
        benchmark::DoNotOptimize(w_bar.data());
        benchmark::ClobberMemory();
    }
    set_counters(state, s);
}

}  // namespace

namespace bench {

void register_ops_conv2d() {
    for (const ConvShape& s : kShapes) {
        benchmark::RegisterBenchmark((std::string("ops/conv2d/tape/") + s.name).c_str(),
                                     [s](benchmark::State& state) { conv2d_tape(state, s); })
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
        benchmark::RegisterBenchmark((std::string("ops/conv2d/gemm/") + s.name).c_str(),
                                     [s](benchmark::State& state) { conv2d_gemm(state, s); })
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
    }
}

}  // namespace bench
