// jacobian_chain/<vjp|materialized>/<N>: the gradient dC/dx of C = sum(h3)
// through three dense sigmoid layers h_l = sigma(W_l h_(l-1) + b_l) of width N
// (backprop-math.md section 2), both including the forward pass, float32,
// one BLAS thread:
//   vjp           the tape: three VJPs, each O(N^2) (a matrix-vector product)
//   vjp_hand      the same VJPs by hand, cblas_sgemv into buffers allocated
//                 once: the floor for the tape's vjp
//   materialized  each layer's Jacobian J_l = diag(sigma'(z_l)) W_l (N x N),
//                 J3 J2 J1 by two GEMMs (O(N^3)), then 1^T (J3 J2 J1)
// hessian/<hvp|full>/<n>: a Hessian-vector product (ad::hvp, two sweeps)
// against the full Hessian (ad::hessian, one sweep per input element) of
// f(x) = sum(sigma(W2 sigma(W1 x))), x of size n.

#include <cmath>
#include <random>
#include <vector>

#include <benchmark/benchmark.h>
#include <xtensor-blas/xlinalg.hpp>
#include <xtensor/xadapt.hpp>

#include "autodiff/autodiff.hpp"
#include "bench_common.hpp"
#include "bench_suite.hpp"
#include "nn/random.hpp"

namespace {

constexpr int kLayers = 3;

struct Chain {
    explicit Chain(std::size_t n) : N(n) {
        std::mt19937_64 rng(7 + n);
        const double a = std::sqrt(3.0 / double(n));
        x.resize(N);
        for (auto& v : x) v = float(ad::nn::uniform(rng, -1, 1));
        for (int l = 0; l < kLayers; ++l) {
            W.emplace_back(N * N);
            for (auto& v : W.back()) v = float(ad::nn::uniform(rng, -a, a));
            b.emplace_back(N);
            for (auto& v : b.back()) v = float(ad::nn::uniform(rng, -0.1, 0.1));
        }
    }
    std::size_t N;
    std::vector<float> x;
    std::vector<std::vector<float>> W, b;
};

void vjp_chain(benchmark::State& state) {
    bench::set_blas_threads(1);
    const std::size_t n = std::size_t(state.range(0));
    Chain c(n);
    auto x = ad::param(ad::Array<float>(xt::adapt(c.x, {n})));
    std::vector<ad::Var<float>> W, b;
    for (int l = 0; l < kLayers; ++l) {
        W.push_back(ad::constant(ad::Array<float>(xt::adapt(c.W[l], {n, n}))));
        b.push_back(ad::constant(ad::Array<float>(xt::adapt(c.b[l], {n}))));
    }
    ad::Tape tape;
    auto run = [&] {
        x.zero_grad();
        auto h = x;
        for (int l = 0; l < kLayers; ++l) h = ad::sigmoid(ad::matmul(W[l], h) + b[l]);
        ad::sum(h).backward();
        tape.clear();
    };
    run();
    for (auto _ : state) {
        run();
        benchmark::DoNotOptimize(x.grad().data());
    }
}

/// a_l = sigma(W_l a_(l-1) + b_l) with sgemv into fixed buffers: the forward both hand versions share.
void forward_by_hand(const Chain& c, std::vector<std::vector<float>>& a) {
    const int N = int(c.x.size());
    const float* in = c.x.data();
    for (int l = 0; l < kLayers; ++l) {
        float* z = a[l].data();
        cblas_sgemv(CblasRowMajor, CblasNoTrans, N, N, 1.0f, c.W[l].data(), N, in, 1, 0.0f, z, 1);
        for (int i = 0; i < N; ++i) z[i] = 1.0f / (1.0f + std::exp(-(z[i] + c.b[l][i])));
        in = z;
    }
}

void materialized_chain(benchmark::State& state) {
    bench::set_blas_threads(1);
    const std::size_t n = std::size_t(state.range(0));
    const int N = int(n);
    Chain c(n);
    std::vector<std::vector<float>> a(kLayers, std::vector<float>(n)), J(kLayers, std::vector<float>(n * n));
    std::vector<float> P(n * n), Q(n * n), ones(n, 1.0f), g(n);
    auto run = [&] {
        forward_by_hand(c, a);
        for (int l = 0; l < kLayers; ++l) {
            // J_l = diag(sigma'(z_l)) W_l: row i of W_l scaled by a_i (1 - a_i).
            for (std::size_t i = 0; i < n; ++i) {
                const float s = a[l][i] * (1.0f - a[l][i]);
                const float* w = c.W[l].data() + i * n;
                float* j = J[l].data() + i * n;
                for (std::size_t k = 0; k < n; ++k) j[k] = s * w[k];
            }
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, J[2].data(), N, J[1].data(), N, 0.0f,
                    P.data(), N);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, P.data(), N, J[0].data(), N, 0.0f,
                    Q.data(), N);
        // dC/dx = 1^T (J3 J2 J1): dC/dh3 is all ones for C = sum(h3).
        cblas_sgemv(CblasRowMajor, CblasTrans, N, N, 1.0f, Q.data(), N, ones.data(), 1, 0.0f, g.data(), 1);
    };
    run();
    for (auto _ : state) {
        run();
        benchmark::DoNotOptimize(g.data());
        benchmark::ClobberMemory();
    }
}

void vjp_hand_chain(benchmark::State& state) {
    bench::set_blas_threads(1);
    const std::size_t n = std::size_t(state.range(0));
    const int N = int(n);
    Chain c(n);
    std::vector<std::vector<float>> a(kLayers, std::vector<float>(n));
    std::vector<float> g(n), t(n);
    auto run = [&] {
        forward_by_hand(c, a);
        // g = dC/dh3 = 1; through layer l: g <- W_l^T (g * sigma'(z_l)).
        for (auto& v : g) v = 1.0f;
        for (int l = kLayers - 1; l >= 0; --l) {
            for (std::size_t i = 0; i < n; ++i) t[i] = g[i] * a[l][i] * (1.0f - a[l][i]);
            cblas_sgemv(CblasRowMajor, CblasTrans, N, N, 1.0f, c.W[l].data(), N, t.data(), 1, 0.0f, g.data(), 1);
        }
    };
    run();
    for (auto _ : state) {
        run();
        benchmark::DoNotOptimize(g.data());
        benchmark::ClobberMemory();
    }
}

struct SmallNet {
    explicit SmallNet(std::size_t n) {
        std::mt19937_64 rng(11 + n);
        const double a = std::sqrt(3.0 / double(n));
        auto draw = [&](std::vector<std::size_t> shape, double lo, double hi) {
            ad::Array<float> v(shape);
            for (auto& e : v) e = float(ad::nn::uniform(rng, lo, hi));
            return v;
        };
        W1 = ad::constant(draw({n, n}, -a, a));
        W2 = ad::constant(draw({n, n}, -a, a));
        x = draw({n}, -1, 1);
        v = draw({n}, -1, 1);
    }
    ad::Var<float> f(const ad::Var<float>& in) const {
        return ad::sum(ad::sigmoid(ad::matmul(W2, ad::sigmoid(ad::matmul(W1, in)))));
    }
    ad::Var<float> W1, W2;
    ad::Array<float> x, v;
};

void hvp_bench(benchmark::State& state) {
    bench::set_blas_threads(1);
    SmallNet net(std::size_t(state.range(0)));
    auto f = [&net](const ad::Var<float>& in) { return net.f(in); };
    for (auto _ : state) benchmark::DoNotOptimize(ad::hvp<float>(f, net.x, net.v).data());
}

void hessian_bench(benchmark::State& state) {
    bench::set_blas_threads(1);
    SmallNet net(std::size_t(state.range(0)));
    auto f = [&net](const ad::Var<float>& in) { return net.f(in); };
    for (auto _ : state) benchmark::DoNotOptimize(ad::hessian<float>(f, net.x).data());
}

}  // namespace

namespace bench {

void register_jacobian_chain() {
    for (long n : {64, 128, 256, 512, 1024}) {
        benchmark::RegisterBenchmark("jacobian_chain/vjp", vjp_chain)->Arg(n)->UseRealTime()->Unit(benchmark::kMicrosecond);
    }
    for (long n : {64, 128, 256, 512, 1024}) {
        benchmark::RegisterBenchmark("jacobian_chain/vjp_hand", vjp_hand_chain)
            ->Arg(n)
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
    }
    for (long n : {64, 128, 256, 512, 1024}) {
        benchmark::RegisterBenchmark("jacobian_chain/materialized", materialized_chain)
            ->Arg(n)
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
    }
    for (long n : {8, 16, 32, 64}) {
        benchmark::RegisterBenchmark("hessian/hvp", hvp_bench)->Arg(n)->UseRealTime()->Unit(benchmark::kMicrosecond);
        benchmark::RegisterBenchmark("hessian/full", hessian_bench)->Arg(n)->UseRealTime()->Unit(benchmark::kMicrosecond);
    }
}

}  // namespace bench
