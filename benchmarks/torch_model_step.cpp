// model_step/libtorch/<model>: the peer of model_step/tape/<model>
// (model_step.cpp): the same network from torch::nn modules (Conv2d,
// MaxPool2d, Linear, GRU, TransformerEncoderLayer), its parameters copied by
// name from bench::model_step_data, the same batch and loss, SGD; one thread
// for libtorch's pool and for OpenBLAS.

#include <stdexcept>
#include <string>

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "bench_common.hpp"
#include "bench_suite.hpp"

namespace {

torch::Tensor tensor_of(const std::vector<float>& v, const std::vector<int64_t>& shape) {
    return torch::from_blob(const_cast<float*>(v.data()), shape, torch::kFloat32).clone();
}

struct ConvNetImpl : torch::nn::Module {
    ConvNetImpl(int64_t channels1, int64_t channels2, int64_t kernel, int64_t side, int64_t hidden)
        : flat(channels2 * (side / 4) * (side / 4)), hidden(hidden) {
        namespace tnn = torch::nn;
        const int64_t padding = kernel / 2;
        conv1 = register_module("conv1", tnn::Conv2d(tnn::Conv2dOptions(1, channels1, kernel).padding(padding)));
        conv2 = register_module("conv2", tnn::Conv2d(tnn::Conv2dOptions(channels1, channels2, kernel).padding(padding)));
        fc1 = register_module("fc1", tnn::Linear(flat, hidden > 0 ? hidden : 10));
        if (hidden > 0) fc2 = register_module("fc2", tnn::Linear(hidden, 10));
    }
    torch::Tensor forward(const torch::Tensor& x) {
        torch::Tensor h = torch::max_pool2d(torch::relu(conv1->forward(x)), 2);
        h = torch::max_pool2d(torch::relu(conv2->forward(h)), 2);
        h = fc1->forward(h.reshape({-1, flat}));
        return hidden > 0 ? fc2->forward(torch::relu(h)) : h;
    }
    int64_t flat, hidden;
    torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
    torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(ConvNet);

struct GruNetImpl : torch::nn::Module {
    GruNetImpl() {
        register_module("gru", gru);
        register_module("head", head);
    }
    torch::Tensor forward(const torch::Tensor& x) {
        return head->forward(std::get<0>(gru->forward(x)).reshape({-1, 128}));
    }
    torch::nn::GRU gru{torch::nn::GRUOptions(32, 128)};
    torch::nn::Linear head{128, 32};
};
TORCH_MODULE(GruNet);

struct TransformerNetImpl : torch::nn::Module {
    TransformerNetImpl() { register_module("layer", layer); }
    torch::Tensor forward(const torch::Tensor& x) { return layer->forward(x); }
    torch::nn::TransformerEncoderLayer layer{
        torch::nn::TransformerEncoderLayerOptions(128, 4).dim_feedforward(512).dropout(0.0)};
};
TORCH_MODULE(TransformerNet);

/// Copies every parameter of `module` from `d` by name; a name on one side
/// only is a bug in the benchmark, not a result.
void copy_parameters(torch::nn::Module& module, const bench::ModelStepData& d) {
    torch::NoGradGuard no_grad;
    auto params = module.named_parameters();
    if (params.size() != d.parameters.size()) {
        throw std::logic_error("model_step/libtorch/" + d.name + ": " + std::to_string(params.size()) +
                               " parameters, the tape model has " + std::to_string(d.parameters.size()));
    }
    for (const auto& saved : d.parameters) {
        torch::Tensor* p = params.find(saved.name);
        if (p == nullptr) throw std::logic_error("model_step/libtorch/" + d.name + ": no parameter " + saved.name);
        p->copy_(tensor_of(saved.values, saved.shape));
    }
}

template <class Net>
void torch_step(benchmark::State& state, const bench::ModelStepData& d, Net net) {
    bench::set_blas_threads(1);
    torch::set_num_threads(1);
    copy_parameters(*net, d);
    const torch::Tensor x = tensor_of(d.input, d.input_shape);
    const torch::Tensor target = d.target.empty() ? torch::Tensor() : tensor_of(d.target, d.input_shape);
    const torch::Tensor labels =
        torch::from_blob(const_cast<int64_t*>(d.labels.data()), {int64_t(d.labels.size())}, torch::kInt64).clone();
    torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(bench::kLearningRate));
    auto step = [&] {
        sgd.zero_grad();
        torch::Tensor out = net->forward(x);
        torch::Tensor loss = d.labels.empty() ? torch::mse_loss(out, target) : torch::cross_entropy_loss(out, labels);
        loss.backward();
        sgd.step();
        return loss.item<float>();
    };
    const float first = step();
    for (auto _ : state) benchmark::DoNotOptimize(step());
    state.counters["first_loss"] = double(first);
    state.counters["gemm_flops"] = d.gemm_flops;
    state.counters["GFLOPS"] =
        benchmark::Counter(d.gemm_flops * 1e-9 * double(state.iterations()), benchmark::Counter::kIsRate);
}

void run(benchmark::State& state, const std::string& name) {
    const bench::ModelStepData& d = bench::model_step_data(name);
    if (name == "digits_cnn") return torch_step(state, d, ConvNet(16, 32, 3, 8, 0));
    if (name == "lenet") return torch_step(state, d, ConvNet(32, 64, 5, 28, 128));
    if (name == "gru") return torch_step(state, d, GruNet());
    if (name == "transformer") return torch_step(state, d, TransformerNet());
    throw std::invalid_argument("model_step/libtorch: unknown model " + name);
}

}  // namespace

namespace bench {

void register_torch_model_step(const std::string& name) {
    benchmark::RegisterBenchmark(("model_step/libtorch/" + name).c_str(), run, name)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
}

}  // namespace bench
