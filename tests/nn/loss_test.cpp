#include "nn_test_support.hpp"

#include <cmath>
#include <limits>
#include <string>

namespace {

using namespace ad;

const Array<double> pred{{0.2, 0.7}, {0.9, 0.4}, {0.5, 0.1}};
const Array<double> target{{0.0, 1.0}, {1.0, 0.0}, {1.0, 0.0}};

TEST_CASE("half_sse and mse: values and gradients by formula, sum and mean") {
    Array<double> d = pred - target;
    double sse = xt::sum(d * d)();
    Tape tape;
    for (auto reduction : {Reduction::sum, Reduction::mean}) {
        CAPTURE(int(reduction));
        auto p = param(pred);
        auto loss = nn::half_sse(p, target, reduction);
        double divide = reduction == Reduction::mean ? 3.0 : 1.0;  // the batch size: 3 rows
        CHECK(loss.item() == doctest::Approx(0.5 * sse / divide).epsilon(1e-15));
        loss.backward();
        CHECK(test::max_abs_diff(p.grad(), d / divide) < 1e-15);

        auto q = param(pred);
        auto m = nn::mse(q, target, reduction);
        double elements = reduction == Reduction::mean ? 6.0 : 1.0;  // mean over all elements
        CHECK(m.item() == doctest::Approx(sse / elements).epsilon(1e-15));
        m.backward();
        CHECK(test::max_abs_diff(q.grad(), 2.0 * d / elements) < 1e-15);
    }
}

TEST_CASE("softmax_cross_entropy: one-hot and class indices agree; gradient softmax - y") {
    Array<double> logits{{1.0, 2.0, 0.5}, {-1.0, 0.0, 3.0}};
    Array<double> onehot{{0, 1, 0}, {1, 0, 0}};
    std::vector<std::size_t> classes{1, 0};
    Tape tape;
    auto z1 = param(logits);
    auto a = nn::softmax_cross_entropy(z1, onehot);
    auto z2 = param(logits);
    auto b = nn::softmax_cross_entropy(z2, classes);
    CHECK(a.item() == doctest::Approx(b.item()).epsilon(1e-15));
    // By hand: -log softmax(z)_class, averaged over the 2 rows.
    double expected = 0;
    Array<double> soft = xt::zeros<double>({2, 3});
    for (std::size_t r = 0; r < 2; ++r) {
        double total = 0;
        for (std::size_t c = 0; c < 3; ++c) total += std::exp(logits(r, c));
        for (std::size_t c = 0; c < 3; ++c) soft(r, c) = std::exp(logits(r, c)) / total;
        expected -= std::log(soft(r, classes[r])) / 2;
    }
    CHECK(a.item() == doctest::Approx(expected).epsilon(1e-14));
    a.backward();
    b.backward();
    CHECK(test::max_abs_diff(z1.grad(), (soft - onehot) / 2.0) < 1e-15);
    CHECK(test::max_abs_diff(z2.grad(), (soft - onehot) / 2.0) < 1e-15);

    auto summed = nn::softmax_cross_entropy(param(logits), classes, Reduction::sum);
    CHECK(summed.item() == doctest::Approx(2 * expected).epsilon(1e-14));
}

TEST_CASE("binary_cross_entropy: value and gradient by formula") {
    Tape tape;
    auto p = param(pred);
    auto loss = nn::binary_cross_entropy(p, target);
    Array<double> per = -(target * xt::log(pred) + (1.0 - target) * xt::log(1.0 - pred));
    CHECK(loss.item() == doctest::Approx(xt::mean(per)()).epsilon(1e-14));
    loss.backward();
    Array<double> expected = (pred - target) / (pred * (1.0 - pred)) / 6.0;
    CHECK(test::max_abs_diff(p.grad(), expected) < 1e-14);
}

TEST_CASE("losses: gradcheck against finite differences") {
    Array<double> y = test::uniform({4, 3}, 21, 0.1, 0.9);
    Array<double> x = test::uniform({4, 3}, 22, 0.1, 0.9);
    for (auto reduction : {Reduction::sum, Reduction::mean}) {
        CHECK_GRADCHECK([=](const test::Vars& in) { return nn::half_sse(in[0], y, reduction); },
                        std::vector<Array<double>>{x});
        CHECK_GRADCHECK([=](const test::Vars& in) { return nn::mse(in[0], y, reduction); },
                        std::vector<Array<double>>{x});
        CHECK_GRADCHECK([=](const test::Vars& in) { return nn::binary_cross_entropy(in[0], y, reduction); },
                        std::vector<Array<double>>{x});
        CHECK_GRADCHECK([=](const test::Vars& in) { return nn::softmax_cross_entropy(in[0], y, reduction); },
                        std::vector<Array<double>>{x});
    }
}

TEST_CASE("losses: wrong target shapes, empty batches, bad classes and NaN are clear errors") {
    auto p = constant(pred);
    try {
        nn::half_sse(p, Array<double>(xt::zeros<double>({3, 1})));
        FAIL("no exception");
    } catch (const shape_error& e) {
        std::string m = e.what();
        CHECK(m.find("half_sse") == 0);
        CHECK(m.find("(3, 2)") != std::string::npos);
        CHECK(m.find("(3, 1)") != std::string::npos);
    }
    CHECK_THROWS_AS(nn::mse(p, Array<double>{1.0, 2.0}), shape_error);
    CHECK_THROWS_AS(nn::binary_cross_entropy(p, Array<double>{1.0}), shape_error);
    CHECK_THROWS_AS(nn::softmax_cross_entropy(p, std::vector<std::size_t>{0, 1}), shape_error);
    CHECK_THROWS_AS(nn::softmax_cross_entropy(p, std::vector<std::size_t>{0, 1, 2}), value_error);
    Array<double> empty = xt::zeros<double>({0, 2});
    CHECK_THROWS_AS(nn::half_sse(constant(empty), empty), value_error);
    Array<double> with_nan = pred;
    with_nan(1, 1) = std::numeric_limits<double>::quiet_NaN();
    try {
        nn::half_sse(constant(with_nan), target);
        FAIL("no exception");
    } catch (const value_error& e) {
        CHECK(std::string(e.what()).find("half_sse: the loss is nan") == 0);
    }
}

TEST_CASE("losses work in float") {
    Tape tape;
    auto p = param(Array<float>{{0.25f, 0.75f}});
    auto loss = nn::half_sse(p, Array<float>{{0.0f, 1.0f}});
    CHECK(loss.item() == doctest::Approx(0.0625f));
    loss.backward();
    CHECK(p.grad() == Array<float>{{0.25f, -0.25f}});
}

}  // namespace

namespace unqualified {

using namespace ad::nn;  // what a user's training code may well write

TEST_CASE("losses: after using namespace ad::nn, an unqualified call is nn's loss, not an ambiguity") {
    // The engine has ops of the same names (ad::half_sse...), found by
    // argument-dependent lookup; nn's are the ones that reject a NaN loss.
    Array<double> with_nan = pred;
    with_nan(0, 0) = std::numeric_limits<double>::quiet_NaN();
    const auto bad = ad::constant(with_nan), good = ad::constant(pred), y = ad::constant(target);
    CHECK_THROWS_WITH_AS(half_sse(bad, y), doctest::Contains("half_sse: the loss is nan"), ad::value_error);
    CHECK_THROWS_WITH_AS(mse(bad, y), doctest::Contains("mse: the loss is nan"), ad::value_error);
    const auto no_rows = ad::constant(Array<double>(xt::zeros<double>({0, 2})));
    CHECK_THROWS_WITH_AS(binary_cross_entropy(no_rows, no_rows), doctest::Contains("binary_cross_entropy: empty batch"),
                         ad::value_error);
    CHECK_THROWS_WITH_AS(softmax_cross_entropy(bad, y), doctest::Contains("softmax_cross_entropy: the loss is nan"),
                         ad::value_error);
    CHECK_THROWS_WITH_AS(softmax_cross_entropy(bad, std::vector<std::size_t>{1, 0, 0}),
                         doctest::Contains("softmax_cross_entropy: the loss is nan"), ad::value_error);
    CHECK(half_sse(good, y).item() == doctest::Approx(ad::half_sse(good, y).item()));
    const auto good_float = ad::constant(Array<float>(pred)), y_float = ad::constant(Array<float>(target));
    CHECK(mse(good_float, y_float).item() == doctest::Approx(ad::mse(good_float, y_float).item()));
}

}  // namespace unqualified
