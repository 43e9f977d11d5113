#pragma once
// What every benchmark of the suite shares: the three MLP workloads (sizes,
// batch, data and initial weights as plain float vectors, so the libtorch
// translation unit needs neither xtensor nor the engine), the thread budget,
// FLOP counts and resident memory. No xtensor, no torch in this header.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace bench {

/// One MLP workload: layer sizes (n0, n1, ..., nL), sigmoid on every layer
/// (the textbook's network), loss 1/2 sum (A^L - Y)^2.
struct ModelSpec {
    std::string name;
    std::vector<std::size_t> sizes;
    std::size_t batch;
};

/// xor (2-3-1, batch 4), mnist (784-256-256-10, batch 128), wide (2048-2048-2048-10, batch 256).
const std::vector<ModelSpec>& models();

/// Inputs, targets and initial weights, row-major; identical for every
/// implementation. weights[l] is (sizes[l+1], sizes[l]) as in nn::Linear.
struct ModelData {
    ModelSpec spec;
    std::vector<float> x;                        // (batch, n0)
    std::vector<float> y;                        // (batch, nL)
    std::vector<std::vector<float>> weights;     // per layer, (n_out, n_in)
    std::vector<std::vector<float>> biases;      // per layer, (n_out)
};

/// Drawn once per model (weights from nn::MLP's own Xavier initialisation, seed 0).
const ModelData& model_data(const std::string& name);

/// The learning rate every implementation's SGD uses.
constexpr float kLearningRate = 0.01f;

/// Repetitions of the benchmarks whose iteration takes microseconds (the xor
/// step, the op chain), whatever --benchmark_repetitions says. On this shared
/// machine their repetitions spread by 20-25% (cv), and the median of 5 or 9
/// moved tape/hand by 10% and more between runs; 15 cost a few seconds.
constexpr int kShortRepetitions = 15;

/// GEMM FLOPs of one training step (2 m n k per GEMM): per layer the forward
/// GEMM and the weight-gradient GEMM, and the input-gradient GEMM for every
/// layer but the first (the data needs no gradient, so no implementation
/// computes it).
double step_gemm_flops(const ModelSpec& spec);

/// Sets OpenBLAS's thread count (every BLAS call of the process: ours and libtorch's).
void set_blas_threads(int threads);

/// Resident set size of this process, from /proc/self/statm.
std::size_t resident_bytes();
/// Bytes of heap (malloc) in use by the process.
std::size_t heap_bytes_in_use();

}  // namespace bench
