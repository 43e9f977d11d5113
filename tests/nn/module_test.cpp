#include "nn_test_support.hpp"

namespace {

using namespace ad;

/// A user's own module: y = a * x with one learnable scalar per column.
struct ColumnScale final : nn::Module<double> {
    Var<double> a = param(Array<double>{2.0, -1.0});
    Var<double> forward(const Var<double>& x) override { return x * a; }
    std::vector<nn::NamedParameter<double>> parameters() const override { return {{"a", a}}; }
    std::string describe() const override { return "ColumnScale"; }
};

TEST_CASE("Module: a user's module plugs into parameters, zero_grad and Sequential naming") {
    Tape tape;
    auto scale = std::make_shared<ColumnScale>();
    nn::Sequential<double> model;
    model.add(std::make_shared<nn::Identity<double>>()).add(scale);

    auto params = model.parameters();
    REQUIRE(params.size() == 1);
    CHECK(params[0].name == "layers.1.a");
    CHECK(model.parameter_count() == 2);

    Array<double> x{{1.0, 2.0}, {3.0, 4.0}};
    auto y = model(x);  // an Array is taken as a constant batch
    CHECK(y.value() == Array<double>{{2.0, -2.0}, {6.0, -4.0}});

    sum(y).backward();
    // d sum(x a) / d a_j = column sums of x.
    CHECK(scale->a.grad() == Array<double>{4.0, 6.0});
    model.zero_grad();
    CHECK(scale->a.grad() == Array<double>{0.0, 0.0});
}

TEST_CASE("Module: parameters are shared handles, not copies") {
    nn::Linear<double> layer(3, 2, 7);
    auto p = layer.parameters();
    p[0].var.mutable_value().fill(0.5);
    CHECK(layer.weight().value() == Array<double>(xt::full_like(layer.weight().value(), 0.5)));
}

}  // namespace
