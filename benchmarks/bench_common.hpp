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

/// One model_step workload (model_step.cpp): a float32 model built from nn
/// layers, its input batch, targets and initial parameters by PyTorch name,
/// so the libtorch peer builds the same network from torch::nn modules and
/// starts from the same weights.
///   digits_cnn   (64, 1, 8, 8): conv 3x3 1->16, ReLU, pool 2, conv 3x3 16->32,
///                ReLU, pool 2, flatten, linear 128->10; cross-entropy
///   lenet        (64, 1, 28, 28): conv 5x5 1->32 (padding 2), ReLU, pool 2,
///                conv 5x5 32->64, ReLU, pool 2, linear 3136->128, ReLU,
///                linear 128->10; cross-entropy
///   gru          (25, 16, 32): GRU 32->128, linear 128->32 on every step;
///                cross-entropy over the 400 positions
///   transformer  (64, 8, 128): one post-norm encoder layer, 4 heads, FFN 512,
///                ReLU, no dropout; mean squared error against a target
struct NamedArray {
    std::string name;
    std::vector<std::int64_t> shape;
    std::vector<float> values;
};
struct ModelStepData {
    std::string name;
    std::vector<std::int64_t> input_shape;
    std::vector<float> input;
    std::vector<std::int64_t> labels;  // class per row of the logits (classifiers)
    std::vector<float> target;         // same shape as the output (transformer)
    std::vector<NamedArray> parameters;
    double gemm_flops = 0;             // the step's GEMM FLOPs (forward, backward; the data needs no gradient)
};
const std::vector<std::string>& model_step_names();
const ModelStepData& model_step_data(const std::string& name);

/// Sets OpenBLAS's thread count (every BLAS call of the process: ours and libtorch's).
void set_blas_threads(int threads);

/// Resident set size of this process, from /proc/self/statm.
std::size_t resident_bytes();
/// Bytes of heap (malloc) in use by the process.
std::size_t heap_bytes_in_use();

}  // namespace bench
