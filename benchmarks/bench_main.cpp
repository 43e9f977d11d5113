// The suite's entry point: registers every benchmark in a fixed order, then
// hands over to Google Benchmark (all its --benchmark_* flags work).

#include <fstream>
#include <string>

#include <benchmark/benchmark.h>

#include "bench_suite.hpp"

extern "C" char* openblas_get_corename(void);

namespace {

std::string cpu_model() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("model name", 0) == 0) {
            auto colon = line.find(':');
            return colon == std::string::npos ? line : line.substr(colon + 2);
        }
    }
    return "unknown";
}

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::AddCustomContext("cpu_model", cpu_model());
    // The kernels OpenBLAS runs: its own choice for the CPU, or the one
    // OPENBLAS_CORETYPE names (Haswell in this machine kind's environment,
    // also on CPUs with AVX-512): the GEMM rates depend on it.
    benchmark::AddCustomContext("openblas_core", openblas_get_corename());
#ifdef TAPEGRAD_BENCH_PGO
    benchmark::AddCustomContext("engine_build", "profile-guided (TAPEGRAD_PGO)");
#else
    benchmark::AddCustomContext("engine_build", "plain (TAPEGRAD_PGO off)");
#endif
#ifdef TAPEGRAD_BENCH_TORCH
    benchmark::AddCustomContext("libtorch", "yes");
#else
    benchmark::AddCustomContext("libtorch", "no (Torch not found at configure time)");
#endif
#ifdef TAPEGRAD_BENCH_ADOLC
    benchmark::AddCustomContext("adolc", "yes");
#else
    benchmark::AddCustomContext("adolc", "no (ADOL-C not found at configure time)");
#endif
    bench::register_mlp_step();
    bench::register_blas_threads();
    bench::register_op_overhead();
    bench::register_scalar();
    bench::register_jacobian_chain();
    bench::register_memory();
    bench::register_ops_conv2d();
    bench::register_torch_ops_conv2d();
    bench::register_ops_matmul_batched();
    bench::register_ops_layer_norm();
    bench::register_torch_ops_layer_norm();
    bench::register_model_step();
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
