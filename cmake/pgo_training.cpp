// The training run of a profile-guided build (TAPEGRAD_PGO): what users
// typically ask of the engine, for g++ to learn which paths are hot. It is not
// the benchmarks: other sizes, batches, activations, losses and optimizers, in
// float and double, so that the profile describes the library's use rather
// than one measured program.

#include <cstdio>
#include <tuple>
#include <vector>

#include <nn/nn.hpp>
#include <xtensor/xrandom.hpp>

namespace nn = ad::nn;

namespace {

template <class T>
ad::Array<T> uniform(std::vector<std::size_t> shape, unsigned seed) {
    xt::random::seed(seed);
    return xt::random::rand<T>(shape, T(-1), T(1));
}

/// Full-batch steps of an MLP with one loss and one optimizer.
template <class T, class Loss, class Optimizer>
double train(nn::MLP<T>& model, Optimizer& optimizer, const ad::Array<T>& inputs, const ad::Array<T>& targets,
             int steps, Loss loss_of) {
    auto x = ad::constant(inputs), y = ad::constant(targets);
    ad::Tape tape;
    double total = 0;
    for (int step = 0; step < steps; ++step) {
        optimizer.zero_grad();
        auto loss = loss_of(model(x), y);
        loss.backward();
        optimizer.step();
        total += double(loss.item());
        tape.clear();
    }
    return total;
}

template <class T>
double sigmoid_mlps() {
    double total = 0;
    // The textbook's network at a few widths and batches.
    for (auto [sizes, batch, steps] : {std::tuple{std::vector<std::size_t>{3, 5, 2}, 8, 4000},
                                       std::tuple{std::vector<std::size_t>{4, 8, 8, 1}, 16, 3000},
                                       std::tuple{std::vector<std::size_t>{16, 32, 4}, 32, 1500},
                                       std::tuple{std::vector<std::size_t>{64, 48, 10}, 64, 300}}) {
        nn::MLP<T> model(sizes, nn::Activation::sigmoid, 3);
        nn::SGD<T> sgd(model, nn::SGDOptions{0.1, 0, 0});
        auto x = uniform<T>({std::size_t(batch), sizes.front()}, 1);
        auto y = uniform<T>({std::size_t(batch), sizes.back()}, 2);
        total += train(model, sgd, x, y, steps,
                       [](const ad::Var<T>& p, const ad::Var<T>& t) { return nn::half_sse(p, t); });
    }
    return total;
}

template <class T>
double other_models() {
    double total = 0;
    {
        nn::MLP<T> model({8, 16, 16, 1}, nn::Activation::tanh, 4, nn::Activation::identity);
        nn::Adam<T> adam(model, nn::AdamOptions{1e-3});
        total += train(model, adam, uniform<T>({32, 8}, 3), uniform<T>({32, 1}, 4), 800,
                       [](const ad::Var<T>& p, const ad::Var<T>& t) { return nn::mse(p, t); });
    }
    {
        nn::MLP<T> model({10, 24, 5}, nn::Activation::relu, 5, nn::Activation::identity);
        nn::SGD<T> sgd(model, nn::SGDOptions{0.05, 0.9, 1e-4});
        ad::Array<T> targets = xt::zeros<T>({std::size_t(20), std::size_t(5)});
        for (std::size_t i = 0; i < 20; ++i) targets(i, i % 5) = 1;
        total += train(model, sgd, uniform<T>({20, 10}, 6), targets, 800,
                       [](const ad::Var<T>& p, const ad::Var<T>& t) { return nn::softmax_cross_entropy(p, t); });
    }
    // Ops one by one, as custom models write them, and a second derivative.
    ad::Tape tape;
    auto w = ad::param(uniform<T>({6, 6}, 7));
    auto v = ad::constant(uniform<T>({4, 6}, 8));
    for (int step = 0; step < 1500; ++step) {
        auto h = ad::tanh(ad::matmul(v, w, false, true)) * ad::exp(-ad::square(v)) + ad::sigmoid(v);
        auto loss = ad::sum(ad::log(ad::square(h) + T(1))) / T(24);
        ad::BackwardOptions keep_graph;
        keep_graph.create_graph = true;
        auto g = ad::grad(loss, {w}, keep_graph)[0];
        ad::sum(g * g).backward();
        total += double(loss.item());
        tape.clear();
    }
    // Scalar code: a damped pendulum integrated by explicit Euler on 0-d
    // values, its final energy differentiated with respect to its parameters.
    auto k = ad::param(ad::Array<T>(T(1.5)));
    auto c = ad::param(ad::Array<T>(T(0.2)));
    const auto dt = ad::scalar(T(0.01));
    for (int run = 0; run < 300; ++run) {
        auto x = ad::scalar(T(1));
        auto v = ad::scalar(T(0));
        for (int i = 0; i < 100; ++i) {
            auto a = -(k * ad::sin(x)) - c * v;
            x = x + dt * v;
            v = v + dt * a;
        }
        auto energy = T(0.5) * (v * v + k * ad::square(x));
        energy.backward();
        total += double(energy.item()) + double(k.grad()()) + double(c.grad()());
        k.zero_grad();
        c.zero_grad();
        tape.clear();
    }
    return total;
}

}  // namespace

int main() {
    double total = sigmoid_mlps<float>() + sigmoid_mlps<double>() + other_models<float>() + other_models<double>();
    std::printf("%g\n", total);
    return 0;
}
