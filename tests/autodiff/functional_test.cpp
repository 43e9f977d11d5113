#include "support/test_support.hpp"

using ad::Array;

TEST_CASE("grad: gradients of parameters and of intermediate values, leaving grad() untouched") {
    ad::Tape tape;
    auto x = ad::param(Array<double>{0.5, -1.0});
    auto h = ad::tanh(x);
    auto loss = ad::sum(h * h);  // dL/dh = 2h, dL/dx = 2h (1 - h^2)
    auto grads = ad::grad(loss, {x, h});
    Array<double> hv = xt::tanh(x.value());
    CHECK(xt::allclose(grads[1].value(), 2.0 * hv));
    CHECK(xt::allclose(grads[0].value(), 2.0 * hv * (1.0 - hv * hv)));
    CHECK(x.grad() == Array<double>{0.0, 0.0});
}

TEST_CASE("grad: an input the loss does not depend on gets zeros of its shape") {
    ad::Tape tape;
    auto x = ad::param(Array<double>{1.0, 2.0});
    auto unused = ad::param(Array<double>{{1.0, 2.0, 3.0}});
    auto grads = ad::grad(ad::sum(ad::exp(x)), {unused});
    CHECK(grads[0].value() == Array<double>(xt::zeros<double>({1, 3})));
}

TEST_CASE("grad: with create_graph the gradient is a value that can be differentiated again") {
    ad::Tape tape;
    auto x = ad::param(Array<double>{0.7, -1.2});
    auto y = ad::sum(x * x * x);  // y' = 3x^2, y'' = 6x, y''' = 6
    auto first = ad::grad(y, {x}, {.create_graph = true})[0];
    CHECK(first.requires_grad());
    CHECK(xt::allclose(first.value(), 3.0 * x.value() * x.value()));
    auto second = ad::grad(ad::sum(first), {x}, {.create_graph = true})[0];
    CHECK(xt::allclose(second.value(), 6.0 * x.value()));
    auto third = ad::grad(ad::sum(second), {x})[0];
    CHECK(xt::allclose(third.value(), Array<double>{6.0, 6.0}));
}

TEST_CASE("grad: second derivatives of sigmoid through create_graph match finite differences") {
    // d/dx sum(sigmoid'(x)) computed by double backward vs central differences of sigmoid'.
    Array<double> x0 = ad::test::uniform({5}, 11, -2, 2);
    ad::Tape tape;
    auto x = ad::param(x0);
    auto g = ad::grad(ad::sum(ad::sigmoid(x)), {x}, {.create_graph = true})[0];
    auto h = ad::grad(ad::sum(g), {x})[0];
    auto dsig = [](double v) { double s = 1 / (1 + std::exp(-v)); return s * (1 - s); };
    for (std::size_t i = 0; i < 5; ++i) {
        double eps = 1e-6;
        double numeric = (dsig(x0(i) + eps) - dsig(x0(i) - eps)) / (2 * eps);
        CHECK(h.value()(i) == doctest::Approx(numeric).epsilon(1e-6));
    }
}

namespace {

/// A user's own op: swish(x) = x sigmoid(x), one record with a hand-written
/// VJP, x_bar = g (s + x s (1 - s)), expressed with engine ops so it can be
/// differentiated again.
ad::Var<double> swish(const ad::Var<double>& x) {
    Array<double> s = 1.0 / (1.0 + xt::exp(-x.value()));
    return ad::make_op("swish", Array<double>(x.value() * s), x,
                       [x](std::size_t, const ad::Var<double>& g, const ad::Var<double>&) {
                           auto s = ad::sigmoid(x);
                           return g * (s + x * s * (1.0 - s));
                       });
}

}  // namespace

TEST_CASE("make_op: a custom op records like a built-in and passes gradcheck") {
    ad::Tape tape;
    auto x = ad::param(Array<double>{0.3, -0.8});
    auto y = swish(x);
    CHECK(tape.size() == 1);
    CHECK_GRADCHECK([](const ad::test::Vars& in) { return swish(in[0]); }, (std::vector<Array<double>>{ad::test::uniform({3, 4}, 5, -2, 2)}));
    // Its VJP is written with engine ops: double backward works.
    CHECK_GRADCHECK(
        [](const ad::test::Vars& in) { return ad::grad(ad::sum(swish(in[0])), {in[0]}, {.create_graph = true})[0]; },
        (std::vector<Array<double>>{ad::test::uniform({4}, 6, -2, 2)}));
    (void)y;
}

TEST_CASE("make_op: a VJP that returns a gradient of the wrong shape is reported by the op's name") {
    ad::Tape tape;
    auto x = ad::param(Array<double>{1.0, 2.0, 3.0});
    auto bad = ad::make_op("bad_op", Array<double>(x.value()), x,
                           [](std::size_t, const ad::Var<double>&, const ad::Var<double>&) {
                               return ad::constant(Array<double>{1.0, 2.0});
                           });
    CHECK_THROWS_WITH_AS(ad::sum(bad).backward(),
                         "bad_op: the VJP returned a gradient of shape (2,) for an input of shape (3,)", ad::shape_error);
    CHECK(x.grad() == Array<double>{0.0, 0.0, 0.0});  // nothing accumulated from the failed sweep
}
