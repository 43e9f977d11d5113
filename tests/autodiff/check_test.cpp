#include "support/test_support.hpp"

using ad::Array;

TEST_CASE("gradcheck: a correct gradient passes, for scalar and non-scalar outputs") {
    auto scalar_f = [](const ad::test::Vars& in) { return ad::sum(ad::exp(in[0]) * in[1]); };
    auto vector_f = [](const ad::test::Vars& in) { return ad::matmul(in[0], in[1]); };
    CHECK_GRADCHECK(scalar_f, (std::vector<Array<double>>{ad::test::uniform({3}, 1), ad::test::uniform({2, 3}, 2)}));
    CHECK_GRADCHECK(vector_f, (std::vector<Array<double>>{ad::test::uniform({2, 3}, 3), ad::test::uniform({3, 4}, 4)}));
}

TEST_CASE("gradcheck: a wrong VJP fails and the worst element is reported") {
    // cube with the derivative off by a factor of 2 on purpose: 6x^2 instead of 3x^2.
    auto wrong_cube = [](const ad::test::Vars& in) {
        const auto& x = in[1];
        auto cube = ad::make_op("wrong_cube", Array<double>(xt::pow(x.value(), 3)), x,
                                [x](std::size_t, const ad::Var<double>& g, const ad::Var<double>&) {
                                    return g * ad::square(x) * 6.0;
                                });
        return ad::sum(cube + in[0]);
    };
    Array<double> x = {{0.1, -0.2}, {0.9, 0.3}};  // the largest |x| gives the largest error
    auto result = ad::gradcheck(wrong_cube, {Array<double>{1.0}, x});
    CHECK_FALSE(result.ok);
    CHECK(result.input == 1);
    CHECK(result.index == ad::Shape{1, 0});
    CHECK(result.analytic == doctest::Approx(6 * 0.81));
    CHECK(result.numeric == doctest::Approx(3 * 0.81).epsilon(1e-6));
    CHECK(result.message.find("input 1 at (1, 0)") != std::string::npos);
}

TEST_CASE("gradcheck: names the first recorded op whose VJP is wrong, inside a longer function") {
    // exp -> wrong_square -> sigmoid -> sum: the whole function fails, and the
    // record to blame is the second one, not the last.
    auto f = [](const ad::test::Vars& in) {
        auto e = ad::exp(in[0]);
        auto wrong_square = ad::make_op("wrong_square", ad::Array<double>(e.value() * e.value()), e,
                                        [e](std::size_t, const ad::Var<double>& g, const ad::Var<double>&) {
                                            return g * e * 3.0;  // should be 2 e
                                        });
        return ad::sum(ad::sigmoid(wrong_square));
    };
    auto result = ad::gradcheck(f, {ad::test::uniform({2, 3}, 12)});
    CHECK_FALSE(result.ok);
    CHECK(result.bad_op == "wrong_square");
    CHECK(result.bad_record == 1);
    CHECK(result.message.find("first record whose VJP disagrees: #1 wrong_square") != std::string::npos);
}

TEST_CASE("gradgradcheck: correct second derivatives pass; a VJP that is not differentiable fails") {
    auto smooth = [](const ad::test::Vars& in) { return ad::tanh(ad::matmul(in[0], in[1])); };
    auto result = ad::gradgradcheck(smooth, {ad::test::uniform({2, 3}, 13), ad::test::uniform({3, 2}, 14)});
    INFO(result.message);
    CHECK(result.ok);
    // A VJP built from a constant copy of sigmoid's derivative gives right first
    // derivatives but no second derivative through x.
    auto frozen = [](const ad::test::Vars& in) {
        const auto& x = in[0];
        return ad::make_op("frozen_sigmoid", ad::Array<double>(1.0 / (1.0 + xt::exp(-x.value()))), x,
                           [x](std::size_t, const ad::Var<double>& g, const ad::Var<double>& y) {
                               return g * ad::constant(ad::Array<double>(y.value() * (1.0 - y.value())));
                           });
    };
    CHECK_GRADCHECK(frozen, (std::vector<ad::Array<double>>{ad::test::uniform({4}, 15)}));
    CHECK_FALSE(ad::gradgradcheck(frozen, {ad::test::uniform({4}, 15)}).ok);
}

TEST_CASE("gradcheck: an input the function ignores has zero gradient on both sides") {
    auto f = [](const ad::test::Vars& in) { return ad::sum(ad::exp(in[0])); };
    CHECK_GRADCHECK(f, (std::vector<Array<double>>{ad::test::uniform({3}, 7), ad::test::uniform({2}, 8)}));
}

TEST_CASE("gradcheck: stop_gradient makes the tape disagree with finite differences, and gradcheck says so") {
    auto f = [](const ad::test::Vars& in) { return ad::sum(ad::exp(ad::stop_gradient(in[0]))); };
    CHECK_FALSE(ad::gradcheck(f, {ad::test::uniform({3}, 9)}).ok);
}

TEST_CASE("gradcheck and gradgradcheck work inside NoGrad, as the transforms do") {
    // They once recorded nothing there: analytic gradients of 0 and a false failure.
    ad::NoGrad no_grad;
    std::vector<Array<double>> x{ad::test::uniform({2, 3}, 4)};
    auto f = [](const ad::test::Vars& v) { return ad::sigmoid(v[0]) * v[0]; };
    auto first = ad::gradcheck(f, x);
    INFO(first.message);
    CHECK(first.ok);
    CHECK(first.analytic != 0.0);
    auto second = ad::gradgradcheck(f, x);
    INFO(second.message);
    CHECK(second.ok);
    CHECK_FALSE(ad::grad_enabled());  // the caller's scope is left as it was
}
