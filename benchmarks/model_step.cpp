// model_step/tape/<model>: one training step (forward, loss, backward, SGD)
// of a model built from nn layers, float32, BLAS on one thread. The models
// are bench::ModelStepData's (bench_common.hpp); model_step/libtorch/<model>
// (torch_model_step.cpp) runs the same network, built from torch::nn
// modules with the same initial weights, in the same process.
//
// Counters: first_loss (the loss of the first step: equal in both
// implementations when they compute the same thing), gemm_flops and GFLOPS
// (the step's GEMM work; report.py turns it into the step's GEMM share at
// the sgemm/1024 rate of the same run).
//
// Goals (benchmarks/report.py): tape/libtorch <= 0.3 for digits_cnn, 0.8 for
// lenet, 0.5 for gru, 0.8 for transformer.

#include <map>
#include <random>
#include <stdexcept>

#include <benchmark/benchmark.h>

#include "bench_common.hpp"
#include "bench_suite.hpp"
#include "nn/nn.hpp"

namespace nn = ad::nn;

namespace {

// ------------------------------------------------------------ the models

/// The model's forward from input to what the loss reads: logits (rows, classes)
/// for the classifiers, the layer's output for the transformer.
struct StepModel : nn::Module<float> {
    virtual ad::Var<float> output(const ad::Var<float>& x) = 0;
};

struct ConvNet final : StepModel {
    ConvNet(long channels1, long channels2, long kernel, long side, long hidden)
        : flat(channels2 * (side / 4) * (side / 4)), hidden(hidden) {
        const long padding = kernel / 2;
        conv1 = register_module("conv1", nn::Conv2d<float>(nn::Conv2dOptions(1, channels1, kernel).padding(padding).seed(1)));
        conv2 = register_module("conv2",
                                nn::Conv2d<float>(nn::Conv2dOptions(channels1, channels2, kernel).padding(padding).seed(2)));
        fc1 = register_module("fc1", nn::Linear<float>(std::size_t(flat), std::size_t(hidden > 0 ? hidden : 10), 3));
        if (hidden > 0) fc2 = register_module("fc2", nn::Linear<float>(std::size_t(hidden), 10, 4));
    }
    ad::Var<float> output(const ad::Var<float>& x) override {
        ad::Var<float> h = ad::max_pool2d(ad::relu((*conv1)(x)), 2);
        h = ad::max_pool2d(ad::relu((*conv2)(h)), 2);
        h = (*fc1)(ad::reshape(h, {-1, flat}));
        return hidden > 0 ? (*fc2)(ad::relu(h)) : h;
    }
    long flat, hidden;
    std::shared_ptr<nn::Conv2d<float>> conv1, conv2;
    std::shared_ptr<nn::Linear<float>> fc1, fc2;
};

struct GruNet final : StepModel {
    static constexpr long input = 32, hidden = 128;
    ad::Var<float> output(const ad::Var<float>& x) override {
        ad::Var<float> h = gru->forward(x, ad::Var<float>()).output;  // (T, N, hidden)
        return (*head)(ad::reshape(h, {-1, hidden}));
    }
    std::shared_ptr<nn::GRU<float>> gru = register_module("gru", nn::GRU<float>(nn::GRUOptions(input, hidden).seed(1)));
    std::shared_ptr<nn::Linear<float>> head = register_module("head", nn::Linear<float>(hidden, input, 2));
};

struct TransformerNet final : StepModel {
    ad::Var<float> output(const ad::Var<float>& x) override { return layer->forward(x); }
    std::shared_ptr<nn::TransformerEncoderLayer<float>> layer = register_module(
        "layer",
        nn::TransformerEncoderLayer<float>(nn::TransformerEncoderLayerOptions(128, 4).dim_feedforward(512).dropout(0.0).seed(1)));
};

std::shared_ptr<StepModel> make_model(const std::string& name) {
    if (name == "digits_cnn") return std::make_shared<ConvNet>(16, 32, 3, 8, 0);
    if (name == "lenet") return std::make_shared<ConvNet>(32, 64, 5, 28, 128);
    if (name == "gru") return std::make_shared<GruNet>();
    if (name == "transformer") return std::make_shared<TransformerNet>();
    throw std::invalid_argument("bench::model_step: unknown model " + name);
}

// ------------------------------------------------------------ GEMM FLOPs

/// 2 m n k per GEMM; `times` is 3 for a product whose operands both need
/// gradients (forward, and one GEMM per operand in backward), 2 where one
/// operand is data.
double gemm(double m, double n, double k, double times) { return times * 2.0 * m * n * k; }

double conv_flops(double batch, double in, double out, double kernel, double side, double times) {
    return gemm(out, side * side, in * kernel * kernel, times) * batch;
}

double step_flops(const std::string& name) {
    if (name == "digits_cnn") {
        return conv_flops(64, 1, 16, 3, 8, 2) + conv_flops(64, 16, 32, 3, 4, 3) + gemm(64, 10, 128, 3);
    }
    if (name == "lenet") {
        return conv_flops(64, 1, 32, 5, 28, 2) + conv_flops(64, 32, 64, 5, 14, 3) + gemm(64, 128, 3136, 3) +
               gemm(64, 10, 128, 3);
    }
    if (name == "gru") {
        const double rows = 25 * 16;
        return gemm(rows, 3 * 128, 32, 2) + gemm(rows, 3 * 128, 128, 3) + gemm(rows, 32, 128, 3);
    }
    // transformer: in_proj (its input is data), Q K^T and A V over every head,
    // out_proj and the two feed-forward products.
    const double rows = 64 * 8, d = 128, t = 64, batch = 8, ffn = 512;
    return gemm(rows, 3 * d, d, 2) + 2 * batch * gemm(t, t, d, 3) + gemm(rows, d, d, 3) + 2 * gemm(rows, ffn, d, 3);
}

// ------------------------------------------------------------ data

std::vector<float> uniform_values(std::size_t n, std::uint64_t seed, double lo, double hi) {
    std::mt19937_64 rng(seed);
    std::vector<float> v(n);
    for (auto& x : v) x = static_cast<float>(nn::uniform(rng, lo, hi));
    return v;
}

std::size_t element_count(const std::vector<std::int64_t>& shape) {
    std::size_t n = 1;
    for (auto d : shape) n *= std::size_t(d);
    return n;
}

bench::ModelStepData make_data(const std::string& name) {
    bench::ModelStepData d;
    d.name = name;
    if (name == "digits_cnn") d.input_shape = {64, 1, 8, 8};
    if (name == "lenet") d.input_shape = {64, 1, 28, 28};
    if (name == "gru") d.input_shape = {25, 16, 32};
    if (name == "transformer") d.input_shape = {64, 8, 128};
    auto model = make_model(name);
    d.input = uniform_values(element_count(d.input_shape), 11, name == "transformer" ? -1.0 : 0.0, 1.0);
    std::mt19937_64 rng(12);
    if (name == "transformer") {
        d.target = uniform_values(d.input.size(), 13, -1.0, 1.0);
    } else {
        const std::size_t rows = name == "gru" ? 25 * 16 : 64, classes = name == "gru" ? 32 : 10;
        for (std::size_t r = 0; r < rows; ++r) d.labels.push_back(std::int64_t(nn::uniform_index(rng, classes)));
    }
    for (const auto& p : model->named_parameters()) {
        const auto& value = p.var.value();
        d.parameters.push_back({p.name, std::vector<std::int64_t>(value.shape().begin(), value.shape().end()),
                                std::vector<float>(value.begin(), value.end())});
    }
    d.gemm_flops = step_flops(name);
    return d;
}

ad::Array<float> to_array(const std::vector<float>& v, const std::vector<std::int64_t>& shape) {
    ad::Array<float> a = ad::Array<float>::from_shape(ad::Shape(shape.begin(), shape.end()));
    std::copy(v.begin(), v.end(), a.begin());
    return a;
}

// ------------------------------------------------------------ the step

void tape_step(benchmark::State& state, const std::string& name) {
    bench::set_blas_threads(1);
    const bench::ModelStepData& d = bench::model_step_data(name);
    auto model = make_model(name);
    for (const auto& p : model->named_parameters()) {
        for (const auto& saved : d.parameters) {
            if (saved.name == p.name) p.var.mutable_value() = to_array(saved.values, saved.shape);
        }
    }
    const ad::Var<float> x = ad::constant(to_array(d.input, d.input_shape));
    const ad::Var<float> target = d.target.empty() ? ad::Var<float>() : ad::constant(to_array(d.target, d.input_shape));
    const std::vector<std::size_t> classes(d.labels.begin(), d.labels.end());
    nn::SGD<float> sgd(*model, nn::SGDOptions{bench::kLearningRate, 0, 0});
    ad::Tape tape;
    auto step = [&] {
        sgd.zero_grad();
        ad::Var<float> out = model->output(x);
        ad::Var<float> loss = classes.empty() ? nn::mse(out, target) : nn::softmax_cross_entropy(out, classes);
        loss.backward();
        sgd.step();
        const float value = loss.item();
        tape.clear();
        return value;
    };
    const float first = step();  // warm-up: the tape's storage, recycled nodes, workspaces
    for (auto _ : state) benchmark::DoNotOptimize(step());
    state.counters["first_loss"] = double(first);
    state.counters["gemm_flops"] = d.gemm_flops;
    state.counters["GFLOPS"] =
        benchmark::Counter(d.gemm_flops * 1e-9 * double(state.iterations()), benchmark::Counter::kIsRate);
}

}  // namespace

namespace bench {

const std::vector<std::string>& model_step_names() {
    static const std::vector<std::string> names{"digits_cnn", "lenet", "gru", "transformer"};
    return names;
}

const ModelStepData& model_step_data(const std::string& name) {
    static std::map<std::string, ModelStepData> cache;
    auto it = cache.find(name);
    if (it == cache.end()) it = cache.emplace(name, make_data(name)).first;
    return it->second;
}

void register_model_step() {
    for (const std::string& name : model_step_names()) {
        benchmark::RegisterBenchmark(("model_step/tape/" + name).c_str(), tape_step, name)
            ->UseRealTime()
            ->Unit(benchmark::kMillisecond);
        register_torch_model_step(name);
    }
}

}  // namespace bench
