#include "nn_test_support.hpp"

#include <cmath>
#include <limits>

namespace {

using namespace ad;

/// Two parameters whose gradients are g1 and g2, as backward() leaves them.
std::vector<Var<double>> with_grads(const Array<double>& g1, const Array<double>& g2) {
    Tape tape;
    auto a = param(Array<double>(xt::zeros_like(g1))), b = param(Array<double>(xt::zeros_like(g2)));
    (sum(a * constant(g1)) + sum(b * constant(g2))).backward();
    return {a, b};
}

TEST_CASE("clip_grad_norm: the global 2-norm over all gradients, scaled down to max_norm, never up") {
    auto p = with_grads(Array<double>{3.0, 0.0}, Array<double>{{0.0, 4.0}});  // global norm 5
    double norm = nn::clip_grad_norm(p, 2.5);
    CHECK(norm == doctest::Approx(5.0).epsilon(1e-15));
    const double scale = 2.5 / (5.0 + 1e-6);
    CHECK(p[0].grad()(0) == doctest::Approx(3.0 * scale).epsilon(1e-15));
    CHECK(p[1].grad()(0, 1) == doctest::Approx(4.0 * scale).epsilon(1e-15));

    auto q = with_grads(Array<double>{3.0, 0.0}, Array<double>{{0.0, 4.0}});
    CHECK(nn::clip_grad_norm(q, 10.0) == doctest::Approx(5.0));
    CHECK(q[0].grad() == Array<double>{3.0, 0.0});  // under the bound: unchanged

    auto r = with_grads(Array<double>{3.0, -7.0}, Array<double>{{0.0, 4.0}});
    CHECK(nn::clip_grad_norm(r, 3.5, std::numeric_limits<double>::infinity()) == 7.0);
    CHECK(r[0].grad()(1) == doctest::Approx(-3.5).epsilon(1e-6));
    CHECK(nn::clip_grad_norm(with_grads(Array<double>{1.0, -2.0}, Array<double>{{2.0, 0.0}}), 100.0, 1.0) == 5.0);
}

TEST_CASE("clip_grad_norm: a non-finite gradient is a value_error, every gradient unchanged") {
    auto p = with_grads(Array<double>{3.0, 0.0}, Array<double>{{0.0, 1.0}});
    p[1].mutable_grad()(0, 1) = std::numeric_limits<double>::quiet_NaN();  // as an overflow would leave it
    CHECK_THROWS_WITH_AS(nn::clip_grad_norm(p, 1.0),
                         "clip_grad_norm: parameter 1 (shape (1, 2)) has a gradient holding nan; gradients unchanged",
                         value_error);
    CHECK(p[0].grad() == Array<double>{3.0, 0.0});
    CHECK_THROWS_AS(nn::clip_grad_norm(p, -1.0), value_error);
    CHECK_THROWS_AS(nn::clip_grad_norm(p, 1.0, 0.5), value_error);
}

TEST_CASE("clip_grad_value: clamps each element; a model's parameters are reached through the module") {
    Tape tape;
    nn::MLP<double> model({2, 3, 1}, nn::Activation::tanh, 1);
    sum(model(Array<double>{{10.0, -20.0}}) * 100.0).backward();
    CHECK(test::max_abs(model.linear(1).weight().grad()) > 0.5);
    nn::clip_grad_value(model, 0.5);
    for (const auto& p : model.parameters()) CHECK(test::max_abs(p.grad()) <= 0.5);
    CHECK(nn::clip_grad_norm(model, 1e-3) > 1e-3);
    double after = 0;
    for (const auto& p : model.parameters()) after += double(xt::sum(p.grad() * p.grad())());
    CHECK(std::sqrt(after) == doctest::Approx(1e-3).epsilon(1e-5));
}

}  // namespace
