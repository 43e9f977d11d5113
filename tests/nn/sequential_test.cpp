#include "nn_test_support.hpp"

#include <string>

namespace {

using namespace ad;

TEST_CASE("MLP: layers, names like PyTorch's nn.Sequential, activations") {
    nn::MLP<double> model({2, 3, 1});
    CHECK(model.size() == 4);  // Linear, Sigmoid, Linear, Sigmoid
    CHECK(model.describe() == "Sequential(Linear(2, 3), Sigmoid, Linear(3, 1), Sigmoid)");
    auto params = model.named_parameters();
    REQUIRE(params.size() == 4);
    CHECK(params[0].name == "layers.0.weight");
    CHECK(params[1].name == "layers.0.bias");
    CHECK(params[2].name == "layers.2.weight");
    CHECK(params[3].name == "layers.2.bias");
    CHECK(params[2].var.shape() == Shape{1, 3});
    CHECK(model.parameter_count() == 2 * 3 + 3 + 3 + 1);
    CHECK(&model.linear(1) == model.layer(2).get());

    nn::MLP<double> regression({1, 8, 8, 1}, nn::Activation::tanh, 0, nn::Activation::identity);
    CHECK(regression.describe() == "Sequential(Linear(1, 8), Tanh, Linear(8, 8), Tanh, Linear(8, 1), Identity)");

    nn::MLP<double> mixed({4, 5, 6, 2}, {nn::Activation::relu, nn::Activation::tanh, nn::Activation::identity});
    CHECK(mixed.describe() == "Sequential(Linear(4, 5), ReLU, Linear(5, 6), Tanh, Linear(6, 2), Identity)");
    // He initialisation for the ReLU layer: its bound sqrt(6/4) exceeds Xavier's sqrt(6/9).
    CHECK(test::max_abs(mixed.linear(0).weight().value()) <= std::sqrt(6.0 / 4));
    CHECK(test::max_abs(mixed.linear(0).weight().value()) > std::sqrt(6.0 / 9));
}

TEST_CASE("MLP: same seed, same weights; layers draw different weights") {
    nn::MLP<double> a({3, 3, 3}, nn::Activation::sigmoid, 5), b({3, 3, 3}, nn::Activation::sigmoid, 5);
    nn::MLP<double> c({3, 3, 3}, nn::Activation::sigmoid, 6);
    CHECK(a.linear(0).weight().value() == b.linear(0).weight().value());
    CHECK(a.linear(1).weight().value() == b.linear(1).weight().value());
    CHECK(a.linear(0).weight().value() != c.linear(0).weight().value());
    // Same shapes, same bound: only a per-layer seed keeps them apart.
    CHECK(a.linear(0).weight().value() != a.linear(1).weight().value());
}

TEST_CASE("MLP: forward is the composition of its layers") {
    nn::MLP<double> model({2, 3, 1}, nn::Activation::sigmoid, 3);
    Array<double> x{{0.5, -1.0}, {2.0, 0.25}};
    auto& l1 = model.linear(0);
    auto& l2 = model.linear(1);
    auto expected = sigmoid(l2(sigmoid(l1(constant(x)))));
    CHECK(model(x).value() == expected.value());
}

TEST_CASE("Sequential: a Linear followed by a Sigmoid runs as one op, with the layers' values and gradients") {
    nn::MLP<double> model({3, 4, 5, 2}, {nn::Activation::sigmoid, nn::Activation::tanh, nn::Activation::sigmoid}, 11);
    Array<double> x = test::uniform({6, 3}, 12), y = test::uniform({6, 2}, 13);
    std::size_t records = 0;
    auto grads_of = [&](bool by_layers) {
        model.zero_grad();
        Tape tape;
        Var<double> out = constant(x);
        if (by_layers) {
            for (std::size_t i = 0; i < model.size(); ++i) out = model.layer(i)->forward(out);
        } else {
            out = model(out);
        }
        records = tape.size();
        auto loss = nn::half_sse(out, y);
        loss.backward();
        std::vector<Array<double>> g{out.value()};
        for (const auto& p : model.named_parameters()) g.push_back(p.var.grad());
        return g;
    };
    auto layers = grads_of(true);
    CHECK(records == 6);
    auto fused = grads_of(false);
    CHECK(records == 4);  // linear_sigmoid, linear, tanh, linear_sigmoid
    REQUIRE(fused.size() == layers.size());
    for (std::size_t i = 0; i < fused.size(); ++i) CHECK(test::max_abs_diff(fused[i], layers[i]) == 0.0);

    // Fusion follows the layers as they are added.
    nn::Sequential<double> growing;
    growing.add(nn::Linear<double>(3, 2, 1));
    Tape tape;
    (void)growing(constant(x));
    CHECK(tape.size() == 1);
    growing.add(nn::Sigmoid<double>());
    (void)growing(constant(x));
    CHECK(tape.size() == 2);
    growing.add(nn::Sigmoid<double>());  // a Sigmoid after a Sigmoid stays a layer of its own
    (void)growing(constant(x));
    CHECK(tape.size() == 4);
}

TEST_CASE("Sequential: errors name the layer and the shapes, and keep their type") {
    nn::MLP<double> model({2, 3, 1});
    try {
        model(Array<double>(xt::zeros<double>({4, 5})));
        FAIL("no exception");
    } catch (const shape_error& e) {
        std::string m = e.what();
        CHECK(m.find("layers.0 (Linear(2, 3))") == 0);
        CHECK(m.find("(4, 5)") != std::string::npos);
    }
    nn::Sequential<double> broken;
    broken.add(nn::Linear<double>(2, 3)).add(nn::Linear<double>(4, 1));
    try {
        broken(Array<double>(xt::zeros<double>({1, 2})));
        FAIL("no exception");
    } catch (const shape_error& e) {
        std::string m = e.what();
        CHECK(m.find("layers.1 (Linear(4, 1))") == 0);
        CHECK(m.find("(1, 3)") != std::string::npos);
    }
    CHECK_THROWS_AS(model(Array<double>(xt::zeros<double>({0, 2}))), value_error);
    CHECK_THROWS_AS(nn::MLP<double>({3}), value_error);
    CHECK_THROWS_AS(nn::MLP<double>({3, 2}, std::vector<nn::Activation>{}), value_error);
    CHECK_THROWS_AS(broken.add(nn::ModulePtr<double>{}), value_error);
    CHECK_THROWS_WITH_AS(nn::Sequential<double>({std::make_shared<nn::Sigmoid<double>>(), nullptr}),
                         "Sequential: layer 1 is null", value_error);
}

TEST_CASE("MLP: gradients of a deep mixed net match finite differences") {
    Tape tape;
    nn::MLP<double> model({3, 4, 5, 2}, {nn::Activation::tanh, nn::Activation::sigmoid, nn::Activation::identity}, 9);
    Array<double> x = test::uniform({6, 3}, 4);
    Array<double> y = test::uniform({6, 2}, 5);
    auto loss_value = [&] {
        NoGrad no_grad;
        return nn::half_sse(model(x), y).item();
    };
    auto numeric = test::numeric_parameter_grads(model, loss_value);
    nn::half_sse(model(x), y).backward();
    auto params = model.named_parameters();
    for (std::size_t i = 0; i < params.size(); ++i) {
        CAPTURE(params[i].name);
        CHECK(test::max_abs_diff(params[i].var.grad(), numeric[i]) < 1e-7);
    }
    // And with respect to the input, by gradcheck.
    auto shared = std::make_shared<nn::MLP<double>>(model);
    CHECK_GRADCHECK([shared](const test::Vars& in) { return shared->forward(in[0]); }, std::vector<Array<double>>{x});
}

}  // namespace
