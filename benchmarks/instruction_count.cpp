// instruction_count <chain|xor> <N>: N runs of op_overhead's 100-op chain, or
// N xor training steps of the textbook network (nn: MLP, half_sse, SGD), for
// counting instructions under callgrind, which gives the same count on every
// run where timings on a loaded machine do not. scripts/count-instructions
// runs it at two N and prints the count per chain op and per step.

#include <cstdlib>
#include <string>

#include <fmt/format.h>

#include "autodiff/autodiff.hpp"
#include "nn/nn.hpp"

int main(int argc, char** argv) {
    if (argc != 3) {
        fmt::print(stderr, "usage: instruction_count <chain|xor> <N>\n");
        return 2;
    }
    const std::string what = argv[1];
    const long n = std::atol(argv[2]);
    float sink = 0;
    if (what == "chain") {
        auto x = ad::param<float>({0.5f});
        auto a = ad::constant<float>({1.0001f});
        auto c = ad::constant<float>({0.001f});
        ad::Tape tape;
        for (long s = 0; s < n; ++s) {
            auto y = x;
            for (int i = 0; i < 100; ++i) y = (i % 2 == 0) ? y * a : y + c;
            y.backward();
            tape.clear();
            sink += x.grad()(0);
        }
    } else if (what == "xor") {
        ad::nn::MLP<float> model({2, 3, 1}, ad::nn::Activation::sigmoid, 0);
        ad::Array<float> inputs = xt::zeros<float>({4, 2}), targets = xt::zeros<float>({4, 1});
        inputs(1, 1) = inputs(2, 0) = inputs(3, 0) = inputs(3, 1) = 1;
        targets(1, 0) = targets(2, 0) = 1;
        auto x = ad::constant(inputs);
        auto y = ad::constant(targets);
        ad::nn::SGD<float> sgd(model, ad::nn::SGDOptions{0.5, 0, 0});
        ad::Tape tape;
        for (long s = 0; s < n; ++s) {
            sgd.zero_grad();
            auto loss = ad::nn::half_sse(model(x), y);
            loss.backward();
            sgd.step();
            sink += loss.item();
            tape.clear();
        }
    } else {
        fmt::print(stderr, "instruction_count: unknown workload '{}' (chain or xor)\n", what);
        return 2;
    }
    return sink > 1e30f ? 1 : 0;
}
