#include "nn_test_support.hpp"

#include <cmath>

namespace {

using namespace ad;

TEST_CASE("activations compute their functions") {
    Array<double> x{{-2.0, 0.0, 3.0}};
    auto in = constant(x);
    CHECK(nn::Sigmoid<double>()(in).value()(0, 0) == doctest::Approx(1 / (1 + std::exp(2.0))).epsilon(1e-15));
    CHECK(nn::Sigmoid<double>()(in).value()(0, 1) == 0.5);
    CHECK(nn::Tanh<double>()(in).value()(0, 2) == doctest::Approx(std::tanh(3.0)).epsilon(1e-15));
    CHECK(nn::ReLU<double>()(in).value() == Array<double>{{0.0, 0.0, 3.0}});
    CHECK(nn::Identity<double>()(in).value() == x);
    CHECK(nn::Sigmoid<float>()(constant(Array<float>{0.0f})).value()(0) == 0.5f);
}

TEST_CASE("activations: gradients match finite differences (gradcheck)") {
    Array<double> x = test::away_from_zero({3, 4}, 11);
    for (auto kind : {nn::Activation::sigmoid, nn::Activation::tanh, nn::Activation::relu, nn::Activation::identity}) {
        CAPTURE(nn::activation_name(kind));
        auto module = nn::make_activation<double>(kind);
        CHECK_GRADCHECK([module](const test::Vars& in) { return module->forward(in[0]); }, std::vector<Array<double>>{x});
    }
}

TEST_CASE("activations: the sigmoid's gradient is sigma (1 - sigma), as the textbook uses") {
    Tape tape;
    auto z = param(Array<double>{-1.5, 0.25, 2.0});
    auto a = nn::Sigmoid<double>()(z);
    sum(a).backward();
    Array<double> expected = a.value() * (1.0 - a.value());
    CHECK(test::max_abs_diff(z.grad(), expected) == 0.0);
}

TEST_CASE("activation names round-trip and unknown names are rejected") {
    for (auto kind : {nn::Activation::sigmoid, nn::Activation::tanh, nn::Activation::relu, nn::Activation::identity}) {
        CHECK(nn::parse_activation(nn::activation_name(kind)) == kind);
    }
    CHECK_THROWS_AS(nn::parse_activation("softsign"), value_error);
    CHECK(nn::make_activation<double>(nn::Activation::tanh)->describe() == "Tanh");
}

}  // namespace
