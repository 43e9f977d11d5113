#include "nn_test_support.hpp"

#include <cmath>
#include <string>

namespace {

using namespace ad;

TEST_CASE("Linear: shapes and y = x W^T + b") {
    nn::Linear<double> layer(Array<double>{{1, 2, 3}, {4, 5, 6}}, Array<double>{0.5, -0.5});
    CHECK(layer.in_features() == 3);
    CHECK(layer.out_features() == 2);
    CHECK(layer.describe() == "Linear(3, 2)");
    Array<double> x{{1, 0, -1}, {2, 1, 0}};
    auto y = layer(x);
    CHECK(y.value() == Array<double>{{1 - 3 + 0.5, 4 - 6 - 0.5}, {2 + 2 + 0.5, 8 + 5 - 0.5}});
    auto params = layer.named_parameters();
    REQUIRE(params.size() == 2);
    CHECK(params[0].name == "weight");
    CHECK(params[0].var.shape() == Shape{2, 3});
    CHECK(params[1].name == "bias");
    CHECK(params[1].var.shape() == Shape{2});
}

TEST_CASE("Linear: seeded initialisation is reproducible, in bounds, and seed-dependent") {
    nn::Linear<double> a(5, 3, 42), b(5, 3, 42), c(5, 3, 43);
    CHECK(a.weight().value() == b.weight().value());
    CHECK(a.weight().value() != c.weight().value());
    CHECK(a.bias().value() == Array<double>(xt::zeros<double>({3})));
    const double xavier = std::sqrt(6.0 / (5 + 3));
    CHECK(test::max_abs(a.weight().value()) <= xavier);
    // Fifteen draws that all land in the inner half of the range would mean a wrong bound.
    CHECK(test::max_abs(a.weight().value()) > xavier / 2);

    nn::Linear<double> he(5, 3, 42, nn::Init::he_uniform);
    const double he_bound = std::sqrt(6.0 / 5);
    CHECK(test::max_abs(he.weight().value()) <= he_bound);
    // Same draws, scaled by the ratio of the bounds.
    CHECK(test::max_abs_diff(he.weight().value() * (xavier / he_bound), a.weight().value()) < 1e-15);

    // float and double draw the same numbers from a seed.
    nn::Linear<float> f(5, 3, 42);
    for (std::size_t i = 0; i < 15; ++i) {
        CHECK(f.weight().value().flat(i) == static_cast<float>(a.weight().value().flat(i)));
    }
}

TEST_CASE("Linear: the initial weights of seed 0 are pinned (same on any run and platform)") {
    // mt19937_64's output is fixed by the standard and the mapping to [0, 1)
    // is ours, so these numbers must never change.
    std::mt19937_64 rng(0);
    double u = static_cast<double>(rng() >> 11) * (1.0 / 9007199254740992.0);
    nn::Linear<double> layer(1, 1, 0);
    CHECK(layer.weight().value()(0, 0) == -std::sqrt(3.0) + 2 * std::sqrt(3.0) * u);
    CHECK(layer.weight().value()(0, 0) == doctest::Approx(-1.1785103594289699).epsilon(1e-15));
    CHECK(nn::init_weight<double>(1, 1, nn::Init::xavier_uniform, 0)(0, 0) == layer.weight().value()(0, 0));
}

TEST_CASE("Linear: gradients of weight, bias and input") {
    Tape tape;
    nn::Linear<double> layer(4, 3, 1);
    Array<double> x = test::uniform({5, 4}, 2);
    Array<double> v = test::uniform({5, 3}, 3);
    auto y = layer(x);
    sum(y * constant(v)).backward();
    // y = x W^T + b: dW = v^T x, db = column sums of v.
    Array<double> dW = xt::zeros<double>({3, 4});
    for (std::size_t o = 0; o < 3; ++o)
        for (std::size_t i = 0; i < 4; ++i)
            for (std::size_t s = 0; s < 5; ++s) dW(o, i) += v(s, o) * x(s, i);
    CHECK(test::max_abs_diff(layer.weight().grad(), dW) < 1e-14);
    CHECK(test::max_abs_diff(layer.bias().grad(), Array<double>(xt::sum(v, {0}))) < 1e-14);

    // The input's gradient through gradcheck (finite differences).
    auto shared = std::make_shared<nn::Linear<double>>(4, 3, 1);
    CHECK_GRADCHECK([shared](const test::Vars& in) { return shared->forward(in[0]); }, std::vector<Array<double>>{x});

    // The parameters' gradients against finite differences of the loss.
    auto loss_value = [&] {
        NoGrad no_grad;
        return sum(shared->forward(constant(x)) * constant(v)).item();
    };
    auto numeric = test::numeric_parameter_grads(*shared, loss_value);
    shared->zero_grad();
    sum(shared->forward(constant(x)) * constant(v)).backward();
    CHECK(test::max_abs_diff(shared->weight().grad(), numeric[0]) < 1e-8);
    CHECK(test::max_abs_diff(shared->bias().grad(), numeric[1]) < 1e-8);
}

TEST_CASE("Linear: wrong input width, rank or an empty batch is a clear error") {
    nn::Linear<double> layer(3, 2);
    Array<double> before = layer.weight().value();
    try {
        layer(Array<double>(xt::zeros<double>({4, 5})));
        FAIL("no exception");
    } catch (const shape_error& e) {
        std::string m = e.what();
        CHECK(m.find("Linear(3, 2)") != std::string::npos);
        CHECK(m.find("(4, 5)") != std::string::npos);
        CHECK(m.find("(batch, 3)") != std::string::npos);
    }
    CHECK_THROWS_AS(layer(Array<double>{1.0, 2.0, 3.0}), shape_error);  // 1-D: rows are samples
    CHECK_THROWS_AS(layer(Array<double>(xt::zeros<double>({0, 3}))), value_error);
    CHECK(layer.weight().value() == before);
    CHECK_THROWS_AS(nn::Linear<double>(0, 2), value_error);
    CHECK_THROWS_AS(nn::Linear<double>(Array<double>{{1, 2}}, Array<double>{1, 2}), shape_error);
}

}  // namespace
