#include "nn_test_support.hpp"

#include <cmath>
#include <string>

namespace {

using namespace ad;


TEST_CASE("LayerNorm: parameters, initialisation and description as PyTorch's") {
    nn::LayerNorm<double> norm(nn::LayerNormOptions({64}));
    CHECK(norm.describe() == "LayerNorm((64,), eps=1e-05, elementwise_affine=True)");
    auto params = norm.named_parameters();
    REQUIRE(params.size() == 2);
    CHECK(params[0].name == "weight");
    CHECK(params[0].var.shape() == Shape{64});
    CHECK(params[0].var.value() == Array<double>(xt::ones<double>({64})));
    CHECK(params[1].name == "bias");
    CHECK(params[1].var.shape() == Shape{64});
    CHECK(params[1].var.value() == Array<double>(xt::zeros<double>({64})));

    nn::LayerNorm<double> two({3, 4}, 1e-6);
    CHECK(two.describe() == "LayerNorm((3, 4), eps=1e-06, elementwise_affine=True)");
    CHECK(two.weight().shape() == Shape{3, 4});

    nn::LayerNorm<float> plain(nn::LayerNormOptions({8}).eps(0.001).elementwise_affine(false));
    CHECK(plain.describe() == "LayerNorm((8,), eps=0.001, elementwise_affine=False)");
    CHECK(plain.named_parameters().empty());
    CHECK_THROWS_WITH_AS(nn::LayerNorm<double>(nn::LayerNormOptions({})),
                         "LayerNorm((), eps=1e-05, elementwise_affine=True): normalized_shape must have at least one dimension",
                         value_error);
}

TEST_CASE("LayerNorm: forward against loops, over one and two trailing dimensions") {
    Tape tape;
    Array<double> x = test::uniform({2, 3, 4}, 1, -2, 2);
    nn::LayerNorm<double> norm({4});
    norm.weight().mutable_value() = test::uniform({4}, 2);
    norm.bias().mutable_value() = test::uniform({4}, 3);
    CHECK(test::matches(norm(x).value(), test::reference_layer_norm(x, 4, norm.weight().value(), norm.bias().value(), 1e-5)));

    nn::LayerNorm<double> wide(nn::LayerNormOptions({3, 4}).eps(0.1));
    wide.weight().mutable_value() = test::uniform({3, 4}, 4);
    wide.bias().mutable_value() = test::uniform({3, 4}, 5);
    CHECK(test::matches(wide(x).value(), test::reference_layer_norm(x, 12, wide.weight().value(), wide.bias().value(), 0.1)));

    // Hand-computed: (1, 3) has mean 2, variance 1; eps 0 gives (-1, 1).
    nn::LayerNorm<double> exact(nn::LayerNormOptions({2}).eps(0));
    CHECK(exact(Array<double>{{1, 3}}).value() == Array<double>{{-1, 1}});

    nn::LayerNorm<double> plain(nn::LayerNormOptions({4}).elementwise_affine(false));
    CHECK(test::matches(plain(x).value(), test::reference_layer_norm(x, 4, xt::ones<double>({4}), xt::zeros<double>({4}), 1e-5)));
}

TEST_CASE("LayerNorm: gradients of input, weight and bias") {
    auto norm = std::make_shared<nn::LayerNorm<double>>(std::vector<std::size_t>{3});
    norm->weight().mutable_value() = test::uniform({3}, 6);
    norm->bias().mutable_value() = test::uniform({3}, 7);
    Array<double> x = test::uniform({4, 3}, 8);
    CHECK_GRADCHECK([norm](const test::Vars& in) { return norm->forward(in[0]); }, std::vector<Array<double>>{x});

    Array<double> v = test::uniform({4, 3}, 9);
    auto loss_value = [&] {
        NoGrad no_grad;
        return sum(norm->forward(constant(x)) * constant(v)).item();
    };
    auto numeric = test::numeric_parameter_grads(*norm, loss_value);
    Tape tape;
    norm->zero_grad();
    sum(norm->forward(constant(x)) * constant(v)).backward();
    CHECK(test::max_abs_diff(norm->weight().grad(), numeric[0]) < 1e-8);
    CHECK(test::max_abs_diff(norm->bias().grad(), numeric[1]) < 1e-8);
}

TEST_CASE("LayerNorm: an input not ending in normalized_shape is a shape_error before anything is recorded") {
    Tape tape;
    nn::LayerNorm<double> norm({3, 4});
    Var<double> x = param(Array<double>(xt::zeros<double>({2, 4, 3})));
    const std::size_t before = tape.size();
    CHECK_THROWS_WITH_AS(norm(x),
                         "LayerNorm((3, 4), eps=1e-05, elementwise_affine=True): input has shape (2, 4, 3); "
                         "expected (*, 3, 4) ending in normalized_shape",
                         shape_error);
    CHECK_THROWS_AS(norm(Array<double>(xt::zeros<double>({4}))), shape_error);
    CHECK(tape.size() == before);
}

TEST_CASE("LayerNorm: float agrees with double") {
    Array<double> x = test::uniform({3, 5}, 10);
    nn::LayerNorm<double> d({5});
    nn::LayerNorm<float> f({5});
    Array<float> xf = xt::cast<float>(x);
    CHECK(test::float_matches_double(f(xf).value(), d(x).value()));
}

}  // namespace
