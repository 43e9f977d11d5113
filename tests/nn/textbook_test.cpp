#include "nn_test_support.hpp"

#include <sstream>
#include <string>

namespace {

using namespace ad;

Array<double> xor_inputs() { return Array<double>{{0, 0}, {0, 1}, {1, 0}, {1, 1}}; }
Array<double> xor_targets() {
    Array<double> y{0, 1, 1, 0};
    y.reshape({4, 1});
    return y;
}

TEST_CASE("textbook: equations (3) and (5) match the tape to 1e-12, summed and averaged, 2 to 4 layers") {
    std::vector<std::vector<std::size_t>> shapes{{2, 3, 1}, {4, 5, 3}, {3, 6, 4, 2}, {5, 4, 4, 3, 2}};
    for (const auto& sizes : shapes) {
        nn::MLP<double> model(sizes, nn::Activation::sigmoid, sizes.size() * 7);
        Array<double> x = test::uniform({6, sizes.front()}, 1, -2, 2);
        Array<double> y = test::uniform({6, sizes.back()}, 2, 0, 1);
        for (auto reduction : {Reduction::sum, Reduction::mean}) {
            CAPTURE(sizes.size());
            CAPTURE(int(reduction));
            auto c = nn::compare_with_textbook(model, x, y, reduction);
            CHECK(c.rows.size() == 2 * (sizes.size() - 1));
            CHECK(c.max_abs() <= 1e-12);
            CHECK(c.max_rel() <= 1e-10);
            CHECK(c.tape_loss == doctest::Approx(c.hand_loss).epsilon(1e-14));
        }
    }
}

TEST_CASE("textbook: hand gradients agree with finite differences, independently of the tape") {
    nn::MLP<double> model({3, 4, 2}, nn::Activation::sigmoid, 3);
    Array<double> x = test::uniform({5, 3}, 3);
    Array<double> y = test::uniform({5, 2}, 4, 0, 1);
    for (auto reduction : {Reduction::sum, Reduction::mean}) {
        auto hand = nn::textbook_backward(model, x, y, reduction);
        auto numeric = test::numeric_parameter_grads(model, [&] {
            return double(nn::textbook_backward(model, x, y, reduction).loss);
        });
        CHECK(test::max_abs_diff(hand.weight_grads[0], numeric[0]) < 1e-8);
        CHECK(test::max_abs_diff(hand.bias_grads[0], numeric[1]) < 1e-8);
        CHECK(test::max_abs_diff(hand.weight_grads[1], numeric[2]) < 1e-8);
        CHECK(test::max_abs_diff(hand.bias_grads[1], numeric[3]) < 1e-8);
        CHECK(hand.equations == std::vector<std::string>{"(5)", "(3)"});
    }
}

TEST_CASE("textbook: one sample, two layers, written out as in backprop-math.md") {
    // W^1 (2x2), b^1, W^2 (1x2), b^2; x = (1, 0.5), y = 1.
    Array<double> W1{{0.1, 0.2}, {-0.3, 0.4}}, b1{0.05, -0.05}, W2{{0.7, -0.6}}, b2{0.1};
    Array<double> x{{1.0, 0.5}};
    Array<double> y = xt::ones<double>({1, 1});
    auto sig = [](double z) { return 1 / (1 + std::exp(-z)); };
    double a1_0 = sig(0.1 * 1 + 0.2 * 0.5 + 0.05), a1_1 = sig(-0.3 * 1 + 0.4 * 0.5 - 0.05);
    double a2 = sig(0.7 * a1_0 - 0.6 * a1_1 + 0.1);
    double delta2 = (a2 - 1.0) * a2 * (1 - a2);                  // (3)
    double delta1_0 = 0.7 * delta2 * a1_0 * (1 - a1_0);         // (5)
    double delta1_1 = -0.6 * delta2 * a1_1 * (1 - a1_1);
    auto g = nn::textbook_backward<double>({W1, W2}, {b1, b2}, x, y);
    CHECK(g.loss == doctest::Approx(0.5 * (a2 - 1) * (a2 - 1)).epsilon(1e-15));
    CHECK(g.weight_grads[1](0, 0) == doctest::Approx(delta2 * a1_0).epsilon(1e-14));
    CHECK(g.weight_grads[1](0, 1) == doctest::Approx(delta2 * a1_1).epsilon(1e-14));
    CHECK(g.bias_grads[1](0) == doctest::Approx(delta2).epsilon(1e-14));
    CHECK(g.weight_grads[0](0, 1) == doctest::Approx(delta1_0 * 0.5).epsilon(1e-14));
    CHECK(g.weight_grads[0](1, 0) == doctest::Approx(delta1_1 * 1.0).epsilon(1e-14));
    CHECK(g.bias_grads[0](1) == doctest::Approx(delta1_1).epsilon(1e-14));
}

TEST_CASE("textbook: the printed table names the equation of every hand gradient") {
    nn::MLP<double> model({2, 3, 1}, nn::Activation::sigmoid, 1);
    auto c = nn::compare_with_textbook(model, xor_inputs(), xor_targets());
    REQUIRE(c.rows.size() == 4);
    CHECK(c.rows[0].parameter == "layers.0.weight");
    CHECK(c.rows[0].symbol == "dC/dW^1");
    CHECK(c.rows[0].shape == Shape{3, 2});
    CHECK(c.rows[0].equation.rfind("(5)", 0) == 0);
    CHECK(c.rows[3].symbol == "dC/db^2");
    CHECK(c.rows[3].equation.rfind("(3)", 0) == 0);
    std::ostringstream out;
    nn::print_comparison(out, c);
    std::string table = out.str();
    CHECK(table.find("layers.2.weight") != std::string::npos);
    CHECK(table.find("(3) (Delta^2)^T A^1") != std::string::npos);
    CHECK(table.find("(5) (Delta^1)^T A^0") != std::string::npos);
    // The model's own gradients are untouched by the comparison.
    CHECK(test::max_abs(model.linear(0).weight().grad()) == 0.0);
    // It records its own tape, even inside a NoGrad scope.
    NoGrad no_grad;
    CHECK(nn::compare_with_textbook(model, xor_inputs(), xor_targets()).max_abs() <= 1e-12);
}

TEST_CASE("textbook: float runs; non-sigmoid models and bad shapes are rejected") {
    nn::MLP<float> model({2, 3, 1}, nn::Activation::sigmoid, 1);
    auto c = nn::compare_with_textbook(model, Array<float>(xt::cast<float>(xor_inputs())),
                                       Array<float>(xt::cast<float>(xor_targets())));
    CHECK(c.max_abs() < 1e-6);
    nn::MLP<double> tanh_model({2, 3, 1}, nn::Activation::tanh);
    CHECK_THROWS_AS(nn::textbook_backward(tanh_model, xor_inputs(), xor_targets()), value_error);
    nn::MLP<double> sig({2, 3, 1});
    CHECK_THROWS_AS(nn::textbook_backward(sig, xor_inputs(), Array<double>(xt::zeros<double>({4, 2}))), shape_error);
    CHECK_THROWS_AS(nn::textbook_backward(sig, Array<double>(xt::zeros<double>({4, 3})), xor_targets()), shape_error);
}

}  // namespace
