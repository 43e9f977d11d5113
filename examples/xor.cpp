// XOR with the textbook network, in as few lines as it takes: a 2-4-1 sigmoid
// MLP, the half squared error, plain gradient descent.

#include <fmt/format.h>
#include <nn/nn.hpp>

int main() {
    namespace nn = ad::nn;
    ad::Array<double> x{{0, 0}, {0, 1}, {1, 0}, {1, 1}};
    ad::Array<double> y{0, 1, 1, 0};
    y.reshape({4, 1});

    nn::MLP<double> model({2, 4, 1}, nn::Activation::sigmoid, /*seed=*/0);
    nn::SGD<double> optimizer(model, {/*learning_rate=*/2.0});
    ad::Tape tape;
    for (int epoch = 1; epoch <= 5000; ++epoch) {
        optimizer.zero_grad();
        auto loss = nn::half_sse(model(x), y);
        loss.backward();
        optimizer.step();
        tape.clear();  // reuse the tape's storage next epoch
        if (epoch % 1000 == 0) fmt::print("epoch {:>4}  loss {:.6f}\n", epoch, loss.item());
    }

    ad::NoGrad no_grad;
    auto prediction = model(x).value();
    int wrong = 0;
    for (std::size_t i = 0; i < 4; ++i) {
        fmt::print("{} xor {} = {:.3f} (target {})\n", x(i, 0), x(i, 1), prediction(i, 0), y(i, 0));
        wrong += (prediction(i, 0) > 0.5) != (y(i, 0) > 0.5);
    }
    return wrong == 0 ? 0 : 1;
}
