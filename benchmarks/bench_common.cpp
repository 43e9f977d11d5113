#include "bench_common.hpp"

#include <fstream>
#include <map>
#include <stdexcept>

#include <malloc.h>
#include <unistd.h>

#include "autodiff/blas.hpp"
#include "nn/nn.hpp"

namespace bench {

const std::vector<ModelSpec>& models() {
    static const std::vector<ModelSpec> specs{
        {"xor", {2, 3, 1}, 4},
        {"mnist", {784, 256, 256, 10}, 128},
        {"wide", {2048, 2048, 2048, 10}, 256},
    };
    return specs;
}

namespace {

ModelData make_data(const ModelSpec& spec) {
    ModelData d;
    d.spec = spec;
    const std::size_t n0 = spec.sizes.front(), nL = spec.sizes.back(), B = spec.batch;
    if (spec.name == "xor") {
        d.x = {0, 0, 0, 1, 1, 0, 1, 1};
        d.y = {0, 1, 1, 0};
    } else {
        // Pixel-like inputs in [0, 1), one-hot targets.
        std::mt19937_64 rng(42);
        d.x.resize(B * n0);
        for (auto& v : d.x) v = static_cast<float>(ad::nn::uniform01(rng));
        d.y.assign(B * nL, 0.0f);
        for (std::size_t r = 0; r < B; ++r) d.y[r * nL + ad::nn::uniform_index(rng, nL)] = 1.0f;
    }
    ad::nn::MLP<float> model(spec.sizes, ad::nn::Activation::sigmoid, 0);
    for (std::size_t l = 0; l < model.depth(); ++l) {
        const auto& W = model.linear(l).weight().value();
        const auto& b = model.linear(l).bias().value();
        d.weights.emplace_back(W.begin(), W.end());
        d.biases.emplace_back(b.begin(), b.end());
    }
    return d;
}

}  // namespace

const ModelData& model_data(const std::string& name) {
    static std::map<std::string, ModelData> cache;
    auto it = cache.find(name);
    if (it != cache.end()) return it->second;
    for (const auto& spec : models()) {
        if (spec.name == name) return cache.emplace(name, make_data(spec)).first->second;
    }
    throw std::invalid_argument("bench::model_data: unknown model " + name);
}

double step_gemm_flops(const ModelSpec& spec) {
    double flops = 0;
    const double B = double(spec.batch);
    for (std::size_t l = 0; l + 1 < spec.sizes.size(); ++l) {
        const double per_gemm = 2.0 * B * double(spec.sizes[l]) * double(spec.sizes[l + 1]);
        flops += (l == 0 ? 2.0 : 3.0) * per_gemm;
    }
    return flops;
}

// Through the engine, so that its large calls use this count too (autodiff/blas.hpp).
void set_blas_threads(int threads) { ad::blas::set_threads(threads); }

std::size_t heap_bytes_in_use() {
    // glibc's own count: small blocks in use plus mmap-ed large blocks, so
    // nothing escapes whatever size the arrays have.
    struct mallinfo2 info = mallinfo2();
    return info.uordblks + info.hblkhd;
}

std::size_t resident_bytes() {
    std::ifstream statm("/proc/self/statm");
    std::size_t size = 0, resident = 0;
    statm >> size >> resident;
    return resident * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace bench
