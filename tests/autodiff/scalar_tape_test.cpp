#include "support/test_support.hpp"

#include <cmath>
#include <functional>
#include <stdexcept>

#include "autodiff/scalar_tape.hpp"

using ad::Array;
using V = ad::Var<double>;

namespace {

V zero_d(double v) { return ad::param(Array<double>(v)); }
/// The same number as a 1-element vector: the general path of every op.
V one_element(double v) { return ad::param(Array<double>{v}); }

struct UnaryCase {
    const char* name;
    std::function<V(const V&)> f;
    double x;
};

std::vector<UnaryCase> unary_cases() {
    return {
        {"neg", [](const V& x) { return -x; }, 0.7},
        {"exp", [](const V& x) { return ad::exp(x); }, 0.7},
        {"log", [](const V& x) { return ad::log(x); }, 1.7},
        {"sqrt", [](const V& x) { return ad::sqrt(x); }, 1.3},
        {"square", [](const V& x) { return ad::square(x); }, -0.4},
        {"sigmoid", [](const V& x) { return ad::sigmoid(x); }, -0.9},
        {"tanh", [](const V& x) { return ad::tanh(x); }, 0.6},
        {"sin", [](const V& x) { return ad::sin(x); }, 0.8},
        {"cos", [](const V& x) { return ad::cos(x); }, 0.8},
        {"affine", [](const V& x) { return ad::affine(x, 3.0, 2.0); }, 0.5},
        {"scale", [](const V& x) { return 2.5 * x; }, 0.5},
        {"shift", [](const V& x) { return x + 1.5; }, 0.5},
        {"rsub", [](const V& x) { return 1.0 - x; }, 0.5},
    };
}

struct BinaryCase {
    const char* name;
    std::function<V(const V&, const V&)> f;
};

std::vector<BinaryCase> binary_cases() {
    return {
        {"add", [](const V& a, const V& b) { return a + b; }},
        {"sub", [](const V& a, const V& b) { return a - b; }},
        {"mul", [](const V& a, const V& b) { return a * b; }},
        {"div", [](const V& a, const V& b) { return a / b; }},
    };
}

/// Central difference of a function of doubles.
double numeric_derivative(const std::function<double(double)>& f, double x) {
    const double h = 1e-6;
    return (f(x + h) - f(x - h)) / (2 * h);
}

}  // namespace

TEST_CASE("scalar tape: a 0-d op records one entry, with the general path's value and gradient") {
    for (const auto& c : unary_cases()) {
        CAPTURE(c.name);
        double value, gradient;
        {
            ad::Tape tape;
            V x = zero_d(c.x);
            V y = c.f(x);
            CHECK(tape.ops() == 1);
            CHECK(tape.size() == 1);  // one run of the scalar stream
            CHECK(y.dim() == 0);
            y.backward();
            value = y.item();
            gradient = x.grad()();
        }
        ad::Tape tape;
        V x = one_element(c.x);
        V y = c.f(x);
        y.backward();
        CHECK(value == doctest::Approx(y.item()).epsilon(1e-15));
        CHECK(gradient == doctest::Approx(x.grad()(0)).epsilon(1e-15));
        const double numeric = numeric_derivative(
            [&](double v) {
                ad::NoGrad no_grad;
                return c.f(ad::constant(Array<double>(v))).item();
            },
            c.x);
        CHECK(gradient == doctest::Approx(numeric).epsilon(1e-8));
    }
}

TEST_CASE("scalar tape: binary ops send each operand its cotangent, constants none") {
    const double a0 = 1.3, b0 = -0.7;
    for (const auto& c : binary_cases()) {
        CAPTURE(c.name);
        for (int which = 0; which < 3; ++which) {  // both parameters, a only, b only
            CAPTURE(which);
            ad::Tape tape;
            V a = which != 2 ? zero_d(a0) : ad::constant(Array<double>(a0));
            V b = which != 1 ? zero_d(b0) : ad::constant(Array<double>(b0));
            V y = c.f(a, b);
            CHECK(tape.ops() == 1);
            y.backward();
            auto partial = [&](int i) {
                return numeric_derivative(
                    [&](double v) {
                        ad::NoGrad no_grad;
                        auto x = [](double u) { return ad::constant(Array<double>(u)); };
                        return (i == 0 ? c.f(x(v), x(b0)) : c.f(x(a0), x(v))).item();
                    },
                    i == 0 ? a0 : b0);
            };
            if (which != 2) CHECK(a.grad()() == doctest::Approx(partial(0)).epsilon(1e-8));
            if (which != 1) CHECK(b.grad()() == doctest::Approx(partial(1)).epsilon(1e-8));
        }
    }
}

TEST_CASE("scalar tape: a value used many times sums its cotangents; x^n by a loop") {
    for (int n = 2; n <= 7; ++n) {
        ad::Tape tape;
        V x = zero_d(1.1);
        V y = x;
        for (int i = 1; i < n; ++i) y = y * x;
        y.backward();
        CHECK(x.grad()() == doctest::Approx(n * std::pow(1.1, n - 1)).epsilon(1e-14));
    }
}

TEST_CASE("scalar tape: entries and general records pass cotangents both ways") {
    // s = x^2 (entry), w = v s (general: a vector times a 0-d value), t = sum(w)
    // (general, 0-d), u = t x (entry reading a general record and a
    // parameter), loss = exp(u) + s.
    auto loss_of = [](const V& x, const V& v) {
        V s = x * x;
        V t = ad::sum(v * s);
        V u = t * x;
        return ad::exp(u) + s;
    };
    const double x0 = 0.4;
    const Array<double> v0{0.3, -0.2, 0.5};
    ad::Tape tape;
    V x = zero_d(x0);
    V v = ad::param(v0);
    V loss = loss_of(x, v);
    CHECK(tape.ops() == 6);
    loss.backward();
    // loss = exp(x^3 S) + x^2 with S = sum(v): d/dx = 3 x^2 S e^u + 2x, d/dv_i = x^3 e^u.
    const double S = xt::sum(v0)(), u = x0 * x0 * x0 * S;
    CHECK(x.grad()() == doctest::Approx(3 * x0 * x0 * S * std::exp(u) + 2 * x0).epsilon(1e-14));
    for (std::size_t i = 0; i < 3; ++i) {
        CHECK(v.grad()(i) == doctest::Approx(x0 * x0 * x0 * std::exp(u)).epsilon(1e-14));
    }
}

TEST_CASE("scalar tape: double backward goes through each op's own VJP") {
    // f = x^3 + sin(x) exp(x) / x: f' and f'' against their formulas.
    auto f = [](const V& x) { return x * x * x + ad::sin(x) * ad::exp(x) / x; };
    const double x0 = 0.9;
    auto h = [](double x) { return std::sin(x) * std::exp(x) / x; };
    ad::Tape tape;
    V x = zero_d(x0);
    V y = f(x);
    V dy = ad::grad(y, {x}, {.create_graph = true})[0];
    CHECK(dy.requires_grad());
    const double dh = numeric_derivative(h, x0);
    CHECK(dy.item() == doctest::Approx(3 * x0 * x0 + dh).epsilon(1e-8));
    dy.backward();
    const double d2h = numeric_derivative([&](double u) { return numeric_derivative(h, u); }, x0);
    CHECK(x.grad()() == doctest::Approx(6 * x0 + d2h).epsilon(1e-4));
    // Exactly, on a polynomial: d2/dx2 of x^3 + 2x^2 is 6x + 4.
    V z = zero_d(0.7);
    V p = z * z * z + ad::scale(z * z, 2.0);
    V dp = ad::grad(p, {z}, {.create_graph = true})[0];
    V d2p = ad::grad(dp, {z})[0];
    CHECK(dp.item() == doctest::Approx(3 * 0.49 + 4 * 0.7).epsilon(1e-15));
    CHECK(d2p.item() == doctest::Approx(6 * 0.7 + 4).epsilon(1e-15));
}

TEST_CASE("scalar tape: the transforms see 0-d functions as any others") {
    auto f = [](const V& x) { return ad::tanh(x) * x + ad::log(x); };
    const Array<double> x0(0.8);
    Array<double> hess = ad::hessian<double>(f, x0);
    const double t = std::tanh(0.8);
    // d2/dx2 [x tanh x + log x] = 2 sech^2 x - 2 x tanh x sech^2 x - 1/x^2
    const double sech2 = 1 - t * t;
    CHECK(hess.size() == 1);
    CHECK(*hess.begin() == doctest::Approx(2 * sech2 - 2 * 0.8 * t * sech2 - 1 / 0.64).epsilon(1e-13));
}

TEST_CASE("scalar tape: grad of an intermediate 0-d value") {
    ad::Tape tape;
    V x = zero_d(0.5);
    V m = ad::exp(x);                 // entry
    V loss = ad::square(m) + m * 3.0;  // d loss / d m = 2m + 3
    auto grads = ad::grad(loss, {m, x});
    CHECK(grads[0].item() == doctest::Approx(2 * std::exp(0.5) + 3).epsilon(1e-15));
    CHECK(grads[1].item() == doctest::Approx((2 * std::exp(0.5) + 3) * std::exp(0.5)).epsilon(1e-15));
    CHECK(x.grad()() == 0.0);  // grad() accumulates nothing
}

TEST_CASE("scalar tape: retain_graph walks the entries twice; without it, the second walk is refused") {
    ad::Tape tape;
    V x = zero_d(2.0);
    V y = x * x + x;
    y.backward({.retain_graph = true});
    y.backward();
    CHECK(x.grad()() == doctest::Approx(2 * 5.0));
    CHECK_THROWS_AS(y.backward(), ad::tape_error);
}

TEST_CASE("scalar tape: a rejected op leaves the tape as it was") {
    ad::Tape tape;
    V x = zero_d(1.0);
    V stale;
    {
        V y = x * x;
        stale = y;
    }
    tape.clear();
    V fresh = x * x;
    const std::size_t ops = tape.ops(), records = tape.size();
    CHECK_THROWS_WITH_AS(stale * x, doctest::Contains("mul: the value of shape () was recorded on this tape before"),
                         ad::tape_error);
    CHECK_THROWS_WITH_AS(ad::exp(V()), doctest::Contains("exp"), ad::tape_error);
    CHECK(tape.ops() == ops);
    CHECK(tape.size() == records);
    fresh.backward();
    CHECK(x.grad()() == 2.0);
}

TEST_CASE("scalar tape: nothing is recorded without a gradient to carry") {
    ad::Tape tape;
    V c = ad::scalar(2.0);
    V y = ad::exp(c) * c;
    CHECK(tape.ops() == 0);
    V x = zero_d(1.0);
    {
        ad::NoGrad no_grad;
        V z = x * x;
        CHECK_FALSE(z.requires_grad());
    }
    CHECK(tape.ops() == 0);
    (void)y;
}

TEST_CASE("scalar tape: a failed sweep leaves no cotangent behind") {
    ad::Tape tape;
    V x = zero_d(0.5);
    V s = x * x;
    // A custom op whose VJP fails, between two stretches of entries.
    V bad = ad::make_op("failing", Array<double>(s.value()), s,
                        [](std::size_t, const V&) -> V { throw std::runtime_error("failing VJP"); });
    V loss = ad::exp(bad) + s;
    CHECK_THROWS_AS(loss.backward(), std::runtime_error);
    CHECK(x.grad()() == 0.0);
    // The same entries, walked again by another loss: only its cotangents arrive.
    V other = s * 3.0;
    other.backward();
    CHECK(x.grad()() == doctest::Approx(3 * 2 * 0.5).epsilon(1e-15));
}

TEST_CASE("scalar tape: an entry costs 40 bytes; a long run adds no records") {
    static_assert(sizeof(ad::detail::ScalarEntry<double>) == 40);
    static_assert(sizeof(ad::detail::ScalarEntry<float>) == 28);
    ad::Tape tape;
    V x = zero_d(0.5);
    V c = ad::scalar(1.0001);
    V y = x;
    const std::size_t n = std::size_t(1) << 16;
    for (std::size_t i = 0; i < n; ++i) y = y * c;
    CHECK(tape.ops() == n);
    CHECK(tape.size() == 1);
    CHECK(static_cast<double>(tape.bytes()) / n <= 41.0);
    y.backward();
    CHECK(x.grad()() == doctest::Approx(std::pow(1.0001, double(n))).epsilon(1e-10));
}

TEST_CASE("scalar tape: a parameter's first reader is the run that holds its entries") {
    ad::Tape tape;
    V w = ad::param(Array<double>{1.0, 2.0});
    V t = ad::sum(w);  // record 0
    V x = zero_d(0.5);
    V y = t * x;       // record 1: a run
    V z = y * x;       // the same run
    CHECK(tape.size() == 2);
    CHECK(tape.first_record_of(x.node_ptr().get()) == 1);
    CHECK(tape.first_record_of(w.node_ptr().get()) == 0);
    (void)z;
}

TEST_CASE("scalar tape: float values take the scalar path too") {
    ad::Tape tape;
    auto x = ad::param(Array<float>(0.5f));
    auto y = ad::sigmoid(x * x);
    CHECK(tape.ops() == 2);
    y.backward();
    const float s = 1 / (1 + std::exp(-0.25f));
    CHECK(x.grad()() == doctest::Approx(s * (1 - s) * 2 * 0.5f).epsilon(1e-6));
}
