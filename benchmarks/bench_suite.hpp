#pragma once
// The suite's registration functions, called from bench_main.cpp in the order
// the benchmarks run. No xtensor, no torch here.

#include <cstddef>
#include <functional>
#include <string>

namespace bench {

void register_mlp_step();       // mlp_step.cpp: sgemm, mlp_step/{tape,hand,textbook}
void register_blas_threads();   // blas_threads.cpp: blas_threads/{mlp_step,sgemm}/...
void register_op_overhead();    // op_overhead.cpp
void register_scalar();         // scalar.cpp: scalar/{chain,rosenbrock,vector_chain}/tape/<n>, then ADOL-C's
void register_jacobian_chain(); // jacobian_chain.cpp: jacobian_chain/*, hessian/*
void register_memory();         // memory.cpp
void register_ops_conv2d();          // ops_conv2d.cpp: ops/conv2d/{tape,gemm}/<shape>
void register_ops_matmul_batched();  // ops_matmul_batched.cpp: ops/matmul_batched/{tape,gemm}
void register_ops_layer_norm();      // ops_layer_norm.cpp: ops/layer_norm/tape
void register_model_step();          // model_step.cpp: model_step/{tape,libtorch}/<model>

// Helpers mlp_step.cpp lends memory.cpp.
std::size_t hand_activation_bytes(const std::string& model);
struct TapeMemory {
    std::size_t held;     // heap bytes alive because of the tape (records, kept values)
    std::size_t storage;  // of which the tape's own record array and arena
};
TapeMemory tape_forward_bytes(const std::string& model);
void tape_xor_steps(std::size_t steps, const std::function<void(std::size_t)>& after_step);

// The libtorch peers (torch_peers.cpp), built only when CMake finds Torch.
#ifdef TAPEGRAD_BENCH_TORCH
void register_torch_mlp_step(const std::string& model, int threads);
void register_torch_op_overhead();
void register_torch_ops_conv2d();      // torch_ops_conv2d.cpp: ops/conv2d/libtorch/<shape>
void register_torch_ops_layer_norm();  // torch_ops_layer_norm.cpp: ops/layer_norm/libtorch
void register_torch_model_step(const std::string& model);  // torch_model_step.cpp
#else
inline void register_torch_mlp_step(const std::string&, int) {}
inline void register_torch_op_overhead() {}
inline void register_torch_ops_conv2d() {}
inline void register_torch_ops_layer_norm() {}
inline void register_torch_model_step(const std::string&) {}
#endif

// The ADOL-C peers (adolc_peers.cpp), built only when CMake finds ADOL-C:
// scalar/{chain,rosenbrock}/adolc_{retape,reuse}/<n>.
#ifdef TAPEGRAD_BENCH_ADOLC
void register_adolc_scalar();
#else
inline void register_adolc_scalar() {}
#endif

}  // namespace bench
