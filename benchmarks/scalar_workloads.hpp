#pragma once
// The scalar workloads (scalar.cpp, adolc_peers.cpp): their
// sizes, inputs, operation counts and hand-derived gradients, and the
// counters every scalar/ benchmark reports. No xtensor, no ADOL-C here.

#include <chrono>
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "bench_common.hpp"

namespace bench::scalar {

/// Chain: y = x, then n ops alternating y = y * a and y = y + c (as
/// op_overhead, in double).
inline constexpr double kChainX = 0.5;
inline constexpr double kChainA = 1.0001;
inline constexpr double kChainC = 0.001;
inline const std::vector<long> kChainOps = {10, 1000, 100000, 1000000};

/// dy/dx of the chain of n ops: a to the number of multiplications, as the
/// reverse sweep forms it (one multiplication after the other).
inline double chain_gradient(long ops) {
    double g = 1.0;
    for (long i = 0; i < ops; i += 2) g *= kChainA;
    return g;
}

/// Extended Rosenbrock: f(x) = sum_{i=0}^{n-2} 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2,
/// recorded as 8 scalar ops per term from f = 0:
///   t = x_i * x_i; u = x_{i+1} - t; v = 1 - x_i; f = f + 100 * u * u + v * v
/// (mul, sub, sub, mul, mul, add, mul, add).
inline const std::vector<long> kRosenbrockN = {10, 1000, 100000};
inline constexpr long kRosenbrockOpsPerTerm = 8;
inline long rosenbrock_ops(long n) { return kRosenbrockOpsPerTerm * (n - 1); }
inline double rosenbrock_x(long i) { return 0.5 + 0.01 * static_cast<double>(i % 7); }

/// df/dx_i = -400 x_i (x_{i+1} - x_i^2) - 2 (1 - x_i)   (for i < n-1)
///         + 200 (x_i - x_{i-1}^2)                    (for i > 0)
inline std::vector<double> rosenbrock_gradient(const std::vector<double>& x) {
    const std::size_t n = x.size();
    std::vector<double> g(n, 0.0);
    for (std::size_t i = 0; i + 1 < n; ++i) {
        g[i] += -400.0 * x[i] * (x[i + 1] - x[i] * x[i]) - 2.0 * (1.0 - x[i]);
        g[i + 1] += 200.0 * (x[i + 1] - x[i] * x[i]);
    }
    return g;
}

/// Vector chain: the chain over vectors of this many elements.
inline constexpr std::size_t kVectorSize = 64;
inline const std::vector<long> kVectorChainOps = {10, 1000, 100000};

/// The worst relative difference of `got` from `want` (relative to the larger
/// magnitude, absolute below 1).
inline double max_relative_error(const double* got, const std::vector<double>& want) {
    double worst = 0.0;
    for (std::size_t i = 0; i < want.size(); ++i) {
        double scale = std::fmax(1.0, std::fmax(std::fabs(got[i]), std::fabs(want[i])));
        worst = std::fmax(worst, std::fabs(got[i] - want[i]) / scale);
    }
    return worst;
}
inline constexpr double kGradientTolerance = 1e-12;

/// Skips the benchmark with a message when the gradient is off; true when it is not.
inline bool check_gradient(benchmark::State& state, const double* got, const std::vector<double>& want) {
    double err = max_relative_error(got, want);
    if (err <= kGradientTolerance) return true;
    std::string message = "gradient differs from the hand formula: relative error " + std::to_string(err);
    state.SkipWithError(message.c_str());
    return false;
}

/// Runs body() once per iteration of the benchmark loop; returns the loop's
/// wall-clock seconds (for set_counters).
template <class Body>
double timed_loop(benchmark::State& state, Body body) {
    const auto start = std::chrono::steady_clock::now();
    for (auto _ : state) body();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// The counters of every scalar/ benchmark, from the loop's `seconds`:
///   ns_per_op          time per scalar op (per vector op for vector_chain), in ns
///   ops                scalar ops per iteration
///   tape_bytes_per_op  the tape's bytes after recording, over ops
inline void set_counters(benchmark::State& state, long ops, double tape_bytes, double seconds) {
    const double n = static_cast<double>(ops);
    state.counters["ns_per_op"] = seconds * 1e9 / (static_cast<double>(state.iterations()) * n);
    state.counters["ops"] = n;
    state.counters["tape_bytes_per_op"] = tape_bytes / n;
}

/// Registers `name/<n>` for every n of `sizes`: run(state, n), in real time.
/// At n = 10 an iteration takes microseconds: kShortRepetitions, as op_overhead.
template <class Run>
void register_sizes(const std::string& name, const std::vector<long>& sizes, Run run) {
    for (long n : sizes) {
        auto* b = benchmark::RegisterBenchmark((name + "/" + std::to_string(n)).c_str(),
                                               [run, n](benchmark::State& state) { run(state, n); });
        b->UseRealTime()->Unit(benchmark::kMicrosecond);
        if (n <= 10) b->Repetitions(kShortRepetitions);
    }
}

}  // namespace bench::scalar
