// One training step of a small model through the installed headers and libraries.
#include <cmath>

#include <autodiff/autodiff.hpp>
#include <nn/nn.hpp>

int main() {
    ad::nn::MLP<double> model({2, 3, 1}, ad::nn::Activation::sigmoid, 0);
    ad::Array<double> x{{0.0, 1.0}, {1.0, 0.0}};
    ad::Array<double> y{1.0, 1.0};
    y.reshape({2, 1});
    ad::Tape tape;
    auto loss = ad::nn::half_sse(model(x), y);
    loss.backward();
    auto check = ad::gradcheck([](const std::vector<ad::Var<double>>& in) { return ad::sum(ad::tanh(in[0])); },
                               {ad::Array<double>{0.1, -0.2}});
    return check.ok && std::isfinite(loss.item()) ? 0 : 1;
}
