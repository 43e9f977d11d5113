#include "nn_test_support.hpp"

#include <cmath>
#include <memory>
#include <string>

namespace {

using namespace ad;

TEST_CASE("Embedding: PyTorch's weight (V, D) drawn N(0, 1), seeded") {
    nn::Embedding<double> table(nn::EmbeddingOptions(200, 50).seed(3));
    auto params = table.named_parameters();
    REQUIRE(params.size() == 1);
    CHECK(params[0].name == "weight");
    CHECK(params[0].var.shape() == Shape{200, 50});
    CHECK(table.describe() == "Embedding(200, 50)");
    // 10,000 standard normal draws: mean within 4 standard errors (0.04) of 0, variance near 1, tails present.
    const Array<double>& w = table.weight().value();
    const double mean = xt::mean(w)();
    const double var = xt::mean(xt::square(w - mean))();
    CHECK(std::abs(mean) < 0.04);
    CHECK(std::abs(var - 1) < 0.06);
    CHECK(test::max_abs(w) > 3);
    CHECK(test::max_abs(w) < 6);

    nn::Embedding<double> same(nn::EmbeddingOptions(200, 50).seed(3));
    nn::Embedding<double> other(nn::EmbeddingOptions(200, 50).seed(4));
    CHECK(same.weight().value() == w);
    CHECK(other.weight().value() != w);
    nn::Embedding<float> as_float(nn::EmbeddingOptions(200, 50).seed(3));
    CHECK(as_float.weight().value().flat(17) == static_cast<float>(w.flat(17)));
    CHECK(nn::Embedding<double>(4, 2).weight().shape() == Shape{4, 2});
    CHECK_THROWS_AS(nn::Embedding<double>(0, 2), value_error);
}

TEST_CASE("Embedding: tokens of any shape pick rows, and repeated tokens add their gradients") {
    nn::Embedding<double> table(5, 3);
    IndexArray tokens{{4, 0, 4}, {2, 2, 2}};
    Tape tape;
    auto y = table(tokens);
    CHECK(y.shape() == Shape{2, 3, 3});
    for (std::size_t i = 0; i < 2; ++i)
        for (std::size_t j = 0; j < 3; ++j)
            for (std::size_t d = 0; d < 3; ++d) CHECK(y.value()(i, j, d) == table.weight().value()(tokens(i, j), d));
    CHECK(table(IndexArray{1}).shape() == Shape{1, 3});
    CHECK(table(IndexArray(std::int64_t(3))).shape() == Shape{3});  // a 0-d token gives one vector

    Array<double> v = test::uniform({2, 3, 3}, 1);
    sum(y * constant(v)).backward();
    // Row 4 gets v[0, 0] + v[0, 2], row 2 the three of v[1], rows 1 and 3 nothing.
    Array<double> want = xt::zeros<double>({5, 3});
    for (std::size_t i = 0; i < 2; ++i)
        for (std::size_t j = 0; j < 3; ++j)
            for (std::size_t d = 0; d < 3; ++d) want(tokens(i, j), d) += v(i, j, d);
    CHECK(test::max_abs_diff(table.weight().grad(), want) < 1e-15);

    // And against finite differences.
    auto shared = std::make_shared<nn::Embedding<double>>(5, 3);
    auto loss = [&] { return sum(shared->forward(tokens) * constant(v)); };
    auto numeric = test::numeric_parameter_grads(*shared, [&] {
        NoGrad no_grad;
        return loss().item();
    });
    loss().backward();
    CHECK(test::max_abs_diff(shared->weight().grad(), numeric[0]) < 1e-8);
}

TEST_CASE("Embedding: a token outside 0..V-1 names the layer, the token and V, and records nothing") {
    nn::Embedding<double> table(5, 3);
    Tape tape;
    CHECK_THROWS_WITH_AS(table(IndexArray{{1, 2}, {7, 0}}),
                         "Embedding(5, 3): token 7 (at flat position 2 of tokens (2, 2)) is out of range [0, 5)",
                         value_error);
    CHECK_THROWS_WITH_AS(table(IndexArray{5}), doctest::Contains("Embedding(5, 3): token 5"), value_error);
    CHECK_THROWS_WITH_AS(table(IndexArray{-1}), doctest::Contains("token -1"), value_error);
    CHECK(tape.size() == 0);
    // It takes indices, not values.
    CHECK_THROWS_WITH_AS(table(Array<double>{1.0}), doctest::Contains("Embedding(5, 3)"), value_error);
}

}  // namespace
