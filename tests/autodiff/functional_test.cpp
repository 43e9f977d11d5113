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

TEST_CASE("grad: several intermediate values, in any order, repeated, and the loss itself") {
    ad::Tape tape;
    auto x = ad::param(Array<double>{0.5, -1.0});
    auto h = ad::tanh(x);
    auto k = h * h;
    auto loss = ad::sum(k * x);  // dL/dk = x, dL/dh = 2 h x, dL/dx = k + 2 h x (1 - h^2)
    auto grads = ad::grad(loss, {h, loss, k, x, h});
    Array<double> hv = xt::tanh(x.value());
    Array<double> xv = x.value();
    CHECK(xt::allclose(grads[0].value(), 2.0 * hv * xv));
    CHECK(grads[1].value() == Array<double>(1.0));
    CHECK(xt::allclose(grads[2].value(), xv));
    CHECK(xt::allclose(grads[3].value(), hv * hv + 2.0 * hv * xv * (1.0 - hv * hv)));
    CHECK(grads[4].value() == grads[0].value());
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

TEST_CASE("make_op: a sweep that fails after reaching a parameter leaves no cotangent behind") {
    ad::Tape tape;
    auto x = ad::param(Array<double>{1.0, 2.0, 3.0});
    auto w = ad::param(Array<double>{0.5, -1.5});
    auto bad = ad::make_op("bad_op", Array<double>(x.value()), x,
                           [](std::size_t, const ad::Var<double>&, const ad::Var<double>&) {
                               return ad::constant(Array<double>{1.0, 2.0});
                           });
    // Walked backwards, w * w is reached (and w's cotangent set) before bad_op fails.
    auto loss = ad::sum(bad) + ad::sum(w * w);
    CHECK_THROWS_AS(loss.backward({.retain_graph = true}), ad::shape_error);
    CHECK(w.grad() == Array<double>{0.0, 0.0});
    tape.clear();
    ad::sum(w * w).backward();
    CHECK(w.grad() == Array<double>{1.0, -3.0});  // exactly 2w: nothing left over from the failed sweep
}

TEST_CASE("make_op: a result that is not a fresh value is refused, and the tape and the value are untouched") {
    ad::Tape tape;
    auto x = ad::param(Array<double>{1.0, 2.0});
    auto twice = [](std::size_t, const ad::Var<double>& g) { return g * 2.0; };
    const char* message =
        "twice: the result given to make_op (shape (2,)) is held elsewhere, a parameter or already recorded; "
        "pass a fresh value (detail::make_uninitialized, or the computed array)";
    CHECK_THROWS_WITH_AS(ad::make_op("twice", ad::Var<double>(x), x, twice), message, ad::tape_error);
    auto y = x * 3.0;
    auto moved_parameter = ad::param(Array<double>{5.0, 6.0});
    CHECK_THROWS_WITH_AS(ad::make_op("twice", std::move(moved_parameter), x, twice), message, ad::tape_error);
    CHECK_THROWS_WITH_AS(ad::make_op("twice", std::move(y), x, twice), message, ad::tape_error);
    CHECK(tape.size() == 1);  // x * 3 only
    CHECK(x.is_leaf());
    auto fresh = ad::make_op("twice", ad::constant(Array<double>{2.0, 4.0}), x, twice);
    ad::sum(fresh).backward();
    CHECK(x.grad() == Array<double>{2.0, 2.0});
}

// ---- transforms -------------------------------------------------------------

namespace {

/// A small two-layer net, x (2, 3) -> (2, 2): matmul, broadcasting, softmax.
ad::Var<double> small_net(const ad::Var<double>& x) {
    auto w1 = ad::constant(ad::test::uniform({3, 4}, 21));
    auto b1 = ad::constant(ad::test::uniform({4}, 22));
    auto w2 = ad::constant(ad::test::uniform({4, 2}, 23));
    return ad::softmax(ad::matmul(ad::tanh(ad::matmul(x, w1) + b1), w2), 1);
}

ad::Var<double> cubic_sigmoid(const ad::Var<double>& x) {
    auto w = ad::constant(ad::test::uniform({3, 3}, 24));
    return ad::sum(ad::sigmoid(ad::matmul(w, x))) + ad::sum(x * x * x) / 3.0;
}

}  // namespace

TEST_CASE("value_and_grad and vjp agree with backward") {
    Array<double> x0 = ad::test::uniform({3}, 30);
    auto r = ad::value_and_grad<double>(cubic_sigmoid, x0);
    ad::Tape tape;
    auto x = ad::param(x0);
    auto y = cubic_sigmoid(x);
    y.backward();
    CHECK(r.value == y.value());
    CHECK(xt::allclose(r.grad, x.grad(), 1e-14, 0));
    auto v = ad::vjp<double>(cubic_sigmoid, x0, Array<double>(2.0));
    CHECK(xt::allclose(v.grad, 2.0 * x.grad(), 1e-14, 0));
}

TEST_CASE("jacrev equals jacfwd, and both match finite differences, with shape out + in") {
    Array<double> x0 = ad::test::uniform({2, 3}, 31);
    Array<double> jr = ad::jacrev<double>(small_net, x0);
    Array<double> jf = ad::jacfwd<double>(small_net, x0);
    CHECK(ad::shape_of(jr) == ad::Shape{2, 2, 2, 3});
    CHECK(xt::allclose(jr, jf, 1e-12, 1e-14));
    // Column (c, i) by central differences.
    double eps = 1e-6;
    for (std::size_t flat = 0; flat < x0.size(); ++flat) {
        Array<double> plus = x0, minus = x0;
        plus.data()[flat] += eps;
        minus.data()[flat] -= eps;
        ad::NoGrad no_grad;
        Array<double> column = (small_net(ad::constant(plus)).value() - small_net(ad::constant(minus)).value()) / (2 * eps);
        for (std::size_t k = 0; k < column.size(); ++k) {
            CHECK(jr.data()[k * x0.size() + flat] == doctest::Approx(column.data()[k]).epsilon(1e-6));
        }
    }
}

TEST_CASE("jvp is J t and vjp is v^T J for the same Jacobian") {
    Array<double> x0 = ad::test::uniform({2, 3}, 32);
    Array<double> t = ad::test::uniform({2, 3}, 33);
    Array<double> v = ad::test::uniform({2, 2}, 34);
    Array<double> jac = ad::jacrev<double>(small_net, x0);
    Array<double> j2 = jac;
    j2.reshape({4, 6});
    Array<double> t_flat = t, v_flat = v;
    t_flat.reshape({6});
    v_flat.reshape({4});
    auto forward = ad::jvp<double>(small_net, x0, t);
    auto backward = ad::vjp<double>(small_net, x0, v);
    for (std::size_t k = 0; k < 4; ++k) {
        double expected = 0;
        for (std::size_t j = 0; j < 6; ++j) expected += j2(k, j) * t_flat(j);
        CHECK(forward.grad.data()[k] == doctest::Approx(expected).epsilon(1e-12));
    }
    for (std::size_t j = 0; j < 6; ++j) {
        double expected = 0;
        for (std::size_t k = 0; k < 4; ++k) expected += v_flat(k) * j2(k, j);
        CHECK(backward.grad.data()[j] == doctest::Approx(expected).epsilon(1e-12));
    }
    CHECK(forward.value == backward.value);
}

TEST_CASE("hessian: symmetric, right on a known function, and hvp == hessian @ v") {
    Array<double> x0 = ad::test::uniform({3}, 35);
    // sum(x^3)/3 has Hessian diag(2x).
    Array<double> h_cube = ad::hessian<double>([](const ad::Var<double>& x) { return ad::sum(x * x * x) / 3.0; }, x0);
    for (std::size_t i = 0; i < 3; ++i) {
        for (std::size_t j = 0; j < 3; ++j) CHECK(h_cube(i, j) == doctest::Approx(i == j ? 2 * x0(i) : 0.0));
    }
    Array<double> h = ad::hessian<double>(cubic_sigmoid, x0);
    CHECK(xt::allclose(h, xt::transpose(h), 1e-13, 1e-15));
    Array<double> v = ad::test::uniform({3}, 36);
    Array<double> hv = ad::hvp<double>(cubic_sigmoid, x0, v);
    for (std::size_t i = 0; i < 3; ++i) {
        double expected = 0;
        for (std::size_t j = 0; j < 3; ++j) expected += h(i, j) * v(j);
        CHECK(hv(i) == doctest::Approx(expected).epsilon(1e-12));
    }
    // And against finite differences of the gradient.
    double eps = 1e-6;
    Array<double> g_plus = ad::value_and_grad<double>(cubic_sigmoid, Array<double>(x0 + eps * v)).grad;
    Array<double> g_minus = ad::value_and_grad<double>(cubic_sigmoid, Array<double>(x0 - eps * v)).grad;
    for (std::size_t i = 0; i < 3; ++i) CHECK(hv(i) == doctest::Approx((g_plus(i) - g_minus(i)) / (2 * eps)).epsilon(1e-6));
}

TEST_CASE("transforms work inside NoGrad and inside another tape, and respect stop_gradient") {
    Array<double> x0 = ad::test::uniform({3}, 37);
    Array<double> expected = ad::value_and_grad<double>(cubic_sigmoid, x0).grad;
    ad::Tape outer;
    ad::NoGrad no_grad;
    CHECK(xt::allclose(ad::value_and_grad<double>(cubic_sigmoid, x0).grad, expected));
    CHECK(outer.size() == 0);
    CHECK(ad::Tape::current() == &outer);
    // Half of f is cut by stop_gradient: its part of the Jacobian is zero.
    auto half_stopped = [](const ad::Var<double>& x) { return x * 2.0 + ad::stop_gradient(x) * 5.0; };
    Array<double> jac = ad::jacfwd<double>(half_stopped, x0);
    CHECK(xt::allclose(jac, 2.0 * xt::eye<double>(3)));
    CHECK(xt::allclose(ad::jacrev<double>(half_stopped, x0), jac));
}

TEST_CASE("transforms: multi-input forms") {
    auto f = [](const ad::test::Vars& in) { return ad::sum(ad::sigmoid(ad::matmul(in[0], in[1]))); };
    std::vector<Array<double>> xs = {ad::test::uniform({2, 3}, 38), ad::test::uniform({3}, 39)};
    auto vg = ad::value_and_grad<double>(f, xs);
    REQUIRE(vg.grads.size() == 2);
    CHECK(ad::shape_of(vg.grads[1]) == ad::Shape{3});
    std::vector<Array<double>> ts = {ad::test::uniform({2, 3}, 40), ad::test::uniform({3}, 41)};
    // For a scalar f, jvp along t is <grad f, t>.
    double expected = xt::sum(vg.grads[0] * ts[0])() + xt::sum(vg.grads[1] * ts[1])();
    CHECK(ad::jvp<double>(f, xs, ts).grad() == doctest::Approx(expected).epsilon(1e-12));
    auto hv = ad::hvp<double>(f, xs, ts);
    CHECK(ad::shape_of(hv[0]) == ad::Shape{2, 3});
    CHECK_THROWS_WITH_AS(ad::jvp<double>(f, xs, {ts[0]}), "jvp: 1 tangents for 2 inputs", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::hessian<double>(small_net, ad::test::uniform({2, 3}, 1)),
                         "hessian: f must return a scalar, it returned shape (2, 2)", ad::shape_error);
}

TEST_CASE("create_graph to third order through a network") {
    // d^3/dx^3 of tanh at a point: 2 (3 tanh^2 - 1)(1 - tanh^2)... checked by finite differences of the second.
    auto second = [](double x) {
        ad::Tape tape;
        auto v = ad::param(Array<double>(x));
        auto g1 = ad::grad(ad::sum(ad::tanh(v)), {v}, {.create_graph = true})[0];
        auto g2 = ad::grad(ad::sum(g1), {v}, {.create_graph = true})[0];
        auto g3 = ad::grad(ad::sum(g2), {v})[0];
        return std::make_pair(g2.value()(), g3.value()());
    };
    double x = 0.4, eps = 1e-5;
    double numeric = (second(x + eps).first - second(x - eps).first) / (2 * eps);
    CHECK(second(x).second == doctest::Approx(numeric).epsilon(1e-6));
}
