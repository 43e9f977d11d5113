#include "support/test_support.hpp"

#include <cmath>
#include <limits>
#include <random>
#include <functional>
#include <string>
#include <utility>

#include <fmt/format.h>
#include <xtensor/xbroadcast.hpp>

using ad::Array;
using ad::Shape;
using ad::Var;
using ad::test::Vars;

namespace {

using Unary = std::function<Var<double>(const Var<double>&)>;
using BinaryOp = Var<double> (*)(const Var<double>&, const Var<double>&);

/// Where an op's inputs are drawn: kinks and poles are kept out of reach of
/// gradcheck's finite differences, and log/sqrt/pow see a positive base.
enum class Domain { real, away_from_zero, positive, unit };

Array<double> draw(Domain domain, const Shape& shape, std::uint64_t seed) {
    switch (domain) {
        case Domain::away_from_zero: return ad::test::away_from_zero(shape, seed, 0.3);
        case Domain::positive: return ad::test::uniform(shape, seed, 0.3, 2.0);
        case Domain::unit: return ad::test::uniform(shape, seed, -0.9, 0.9);  // inside asin's domain, away from tan's poles
        case Domain::real: break;
    }
    return ad::test::uniform(shape, seed, -2.0, 2.0);
}

/// Moves values that lie within `margin` of a kink to 2 margin beyond it, so
/// that a finite difference never straddles the kink.
Array<double> away_from(Array<double> x, const std::vector<double>& kinks, double margin = 0.05) {
    for (auto& v : x) {
        for (double k : kinks) {
            if (std::abs(v - k) < margin) v = k + (v < k ? -2 * margin : 2 * margin);
        }
    }
    return x;
}

/// f applied to a and b broadcast by hand (NumPy's rule), one scalar at a time:
/// what a binary op must compute, without the engine's broadcasting helpers.
template <class F>
Array<double> binary_reference(const Array<double>& a, const Array<double>& b, F f) {
    std::size_t rank = std::max(a.dimension(), b.dimension());
    Shape out(rank);
    for (std::size_t i = 0; i < rank; ++i) {
        std::size_t da = i + a.dimension() < rank ? 1 : a.shape()[i + a.dimension() - rank];
        std::size_t db = i + b.dimension() < rank ? 1 : b.shape()[i + b.dimension() - rank];
        out[i] = std::max(da, db);
    }
    Array<double> wide_a = xt::broadcast(a, out);
    Array<double> wide_b = xt::broadcast(b, out);
    Array<double> y = Array<double>::from_shape(out);
    for (std::size_t i = 0; i < y.size(); ++i) y.data()[i] = f(wide_a.data()[i], wide_b.data()[i]);
    return y;
}

template <class F>
Array<double> unary_reference(Array<double> x, F f) {
    for (auto& v : x) v = f(v);
    return x;
}

/// The ways two operands broadcast against each other.
enum class Broadcast { same, row, column, scalar, single, leading, leading_ones, both };
const Broadcast all_broadcasts[] = {Broadcast::same,   Broadcast::row,     Broadcast::column,       Broadcast::scalar,
                                    Broadcast::single, Broadcast::leading, Broadcast::leading_ones, Broadcast::both};

const char* name_of(Broadcast kind) {
    switch (kind) {
        case Broadcast::same: return "same shape";
        case Broadcast::row: return "row";
        case Broadcast::column: return "column";
        case Broadcast::scalar: return "0-d scalar";
        case Broadcast::single: return "one element, not 0-d";
        case Broadcast::leading: return "leading dims";
        case Broadcast::leading_ones: return "leading dims of length 1, the result's rank or above it";
        case Broadcast::both: return "both sides";
    }
    return "?";
}

/// Operand shapes of a random size that broadcast the way `kind` says. Sides
/// are at least 2 where the other operand is stretched, so the VJP really has
/// to sum.
std::pair<Shape, Shape> operand_shapes(Broadcast kind, std::mt19937_64& rng) {
    std::size_t m = 2 + rng() % 3, n = 2 + rng() % 3, k = 2 + rng() % 2;
    switch (kind) {
        case Broadcast::same: {
            Shape s = ad::test::random_shape(rng, 0, 3);
            return {s, s};
        }
        case Broadcast::row: return {{m, n}, rng() % 2 ? Shape{n} : Shape{1, n}};
        case Broadcast::column: return {{m, n}, {m, 1}};
        case Broadcast::scalar: return {ad::test::random_shape(rng, 1, 3), {}};
        case Broadcast::single: return {{m, n}, rng() % 2 ? Shape{1, 1} : Shape{1}};
        case Broadcast::leading: return {{k, m, n}, rng() % 2 ? Shape{m, n} : Shape{n}};
        case Broadcast::leading_ones: return rng() % 2 ? std::pair<Shape, Shape>{{k, m, n}, {1, m, n}}
                                                       : std::pair<Shape, Shape>{{m, n}, {1, 1, n}};
        case Broadcast::both: return rng() % 2 ? std::pair<Shape, Shape>{{m, 1}, {1, n}}
                                               : std::pair<Shape, Shape>{{k, 1, n}, {m, 1}};
    }
    return {};
}

struct BinaryCase {
    const char* name;
    BinaryOp op;
    double (*reference)(double, double);
    Domain a_domain, b_domain;
};

const BinaryCase binary_cases[] = {
    {"add", [](const Var<double>& a, const Var<double>& b) { return ad::add(a, b); },
     [](double a, double b) { return a + b; }, Domain::real, Domain::real},
    {"sub", [](const Var<double>& a, const Var<double>& b) { return ad::sub(a, b); },
     [](double a, double b) { return a - b; }, Domain::real, Domain::real},
    {"mul", [](const Var<double>& a, const Var<double>& b) { return ad::mul(a, b); },
     [](double a, double b) { return a * b; }, Domain::real, Domain::real},
    {"div", [](const Var<double>& a, const Var<double>& b) { return ad::div(a, b); },
     [](double a, double b) { return a / b; }, Domain::real, Domain::away_from_zero},
    {"pow", [](const Var<double>& a, const Var<double>& b) { return ad::pow(a, b); },
     [](double a, double b) { return std::pow(a, b); }, Domain::positive, Domain::real},
    {"maximum", [](const Var<double>& a, const Var<double>& b) { return ad::maximum(a, b); },
     [](double a, double b) { return a > b ? a : b; }, Domain::real, Domain::real},
    {"minimum", [](const Var<double>& a, const Var<double>& b) { return ad::minimum(a, b); },
     [](double a, double b) { return a < b ? a : b; }, Domain::real, Domain::real},
};

struct UnaryCase {
    const char* name;
    Unary op;
    double (*reference)(double);
    Domain domain;
};

const UnaryCase unary_cases[] = {
    {"neg", [](const Var<double>& x) { return ad::neg(x); }, [](double v) { return -v; }, Domain::real},
    {"exp", [](const Var<double>& x) { return ad::exp(x); }, [](double v) { return std::exp(v); }, Domain::real},
    {"log", [](const Var<double>& x) { return ad::log(x); }, [](double v) { return std::log(v); }, Domain::positive},
    {"sqrt", [](const Var<double>& x) { return ad::sqrt(x); }, [](double v) { return std::sqrt(v); }, Domain::positive},
    {"square", [](const Var<double>& x) { return ad::square(x); }, [](double v) { return v * v; }, Domain::real},
    {"abs", [](const Var<double>& x) { return ad::abs(x); }, [](double v) { return std::fabs(v); },
     Domain::away_from_zero},
    {"sigmoid", [](const Var<double>& x) { return ad::sigmoid(x); }, [](double v) { return 1 / (1 + std::exp(-v)); },
     Domain::real},
    {"tanh", [](const Var<double>& x) { return ad::tanh(x); }, [](double v) { return std::tanh(v); }, Domain::real},
    {"relu", [](const Var<double>& x) { return ad::relu(x); }, [](double v) { return v > 0 ? v : 0.0; },
     Domain::away_from_zero},
    {"softplus", [](const Var<double>& x) { return ad::softplus(x); }, [](double v) { return std::log(1 + std::exp(v)); },
     Domain::real},
    {"pow(x, 3)", [](const Var<double>& x) { return ad::pow(x, 3.0); }, [](double v) { return v * v * v; }, Domain::real},
    {"pow(x, 0.5)", [](const Var<double>& x) { return ad::pow(x, 0.5); }, [](double v) { return std::sqrt(v); },
     Domain::positive},
    {"pow(x, -1.5)", [](const Var<double>& x) { return ad::pow(x, -1.5); }, [](double v) { return std::pow(v, -1.5); },
     Domain::positive},
    {"scale", [](const Var<double>& x) { return ad::scale(x, -2.5); }, [](double v) { return v * -2.5; }, Domain::real},
    {"shift", [](const Var<double>& x) { return ad::shift(x, 0.75); }, [](double v) { return v + 0.75; }, Domain::real},
    {"affine", [](const Var<double>& x) { return ad::affine(x, -1.5, 0.25); }, [](double v) { return -1.5 * v + 0.25; },
     Domain::real},
    {"affine with a = 1", [](const Var<double>& x) { return ad::affine(x, 1.0, -3.0); }, [](double v) { return v - 3.0; },
     Domain::real},
    // Operators with a scalar on either side.
    {"x + s", [](const Var<double>& x) { return x + 1.5; }, [](double v) { return v + 1.5; }, Domain::real},
    {"s + x", [](const Var<double>& x) { return 1.5 + x; }, [](double v) { return 1.5 + v; }, Domain::real},
    {"x - s", [](const Var<double>& x) { return x - 1.5; }, [](double v) { return v - 1.5; }, Domain::real},
    {"s - x", [](const Var<double>& x) { return 1.5 - x; }, [](double v) { return 1.5 - v; }, Domain::real},
    {"x * s", [](const Var<double>& x) { return x * 3.0; }, [](double v) { return v * 3.0; }, Domain::real},
    {"s * x", [](const Var<double>& x) { return 3.0 * x; }, [](double v) { return 3.0 * v; }, Domain::real},
    {"x / s", [](const Var<double>& x) { return x / 4.0; }, [](double v) { return v / 4.0; }, Domain::real},
    {"s / x", [](const Var<double>& x) { return 4.0 / x; }, [](double v) { return 4.0 / v; }, Domain::away_from_zero},
    {"-x", [](const Var<double>& x) { return -x; }, [](double v) { return -v; }, Domain::real},
    {"sin", [](const Var<double>& x) { return ad::sin(x); }, [](double v) { return std::sin(v); }, Domain::real},
    {"cos", [](const Var<double>& x) { return ad::cos(x); }, [](double v) { return std::cos(v); }, Domain::real},
    {"tan", [](const Var<double>& x) { return ad::tan(x); }, [](double v) { return std::tan(v); }, Domain::unit},
    {"asin", [](const Var<double>& x) { return ad::asin(x); }, [](double v) { return std::asin(v); }, Domain::unit},
    {"acos", [](const Var<double>& x) { return ad::acos(x); }, [](double v) { return std::acos(v); }, Domain::unit},
    {"atan", [](const Var<double>& x) { return ad::atan(x); }, [](double v) { return std::atan(v); }, Domain::real},
    {"sinh", [](const Var<double>& x) { return ad::sinh(x); }, [](double v) { return std::sinh(v); }, Domain::real},
    {"cosh", [](const Var<double>& x) { return ad::cosh(x); }, [](double v) { return std::cosh(v); }, Domain::real},
    {"log1p", [](const Var<double>& x) { return ad::log1p(x); }, [](double v) { return std::log(1 + v); }, Domain::unit},
    {"expm1", [](const Var<double>& x) { return ad::expm1(x); }, [](double v) { return std::exp(v) - 1; }, Domain::real},
    {"erf", [](const Var<double>& x) { return ad::erf(x); }, [](double v) { return std::erf(v); }, Domain::real},
    {"reciprocal", [](const Var<double>& x) { return ad::reciprocal(x); }, [](double v) { return 1 / v; },
     Domain::away_from_zero},
    {"rsqrt", [](const Var<double>& x) { return ad::rsqrt(x); }, [](double v) { return 1 / std::sqrt(v); },
     Domain::positive},
};

constexpr double clamp_lo = -0.5, clamp_hi = 0.7;

}  // namespace

TEST_CASE("elementwise binary ops: forward values match scalar arithmetic over broadcast shapes") {
    std::mt19937_64 rng(11);
    for (const auto& c : binary_cases) {
        for (Broadcast kind : all_broadcasts) {
            for (int swap = 0; swap < 2; ++swap) {
                auto [sa, sb] = operand_shapes(kind, rng);
                if (swap) std::swap(sa, sb);  // the broadcast operand on the left, too
                Array<double> a = draw(c.a_domain, sa, rng()), b = draw(c.b_domain, sb, rng());
                INFO(fmt::format("{}: {} by {} ({})", c.name, ad::shape_string(sa), ad::shape_string(sb), name_of(kind)));
                auto y = c.op(ad::constant(a), ad::constant(b));
                CHECK(ad::test::matches(y.value(), binary_reference(a, b, c.reference)));
            }
        }
    }
}

TEST_CASE("elementwise binary operators: a + b, a - b, a * b, a / b are add, sub, mul, div") {
    Array<double> a = ad::test::uniform({2, 3}, 1);
    Array<double> b = ad::test::away_from_zero({3}, 2);
    auto x = ad::constant(a), y = ad::constant(b);
    CHECK(ad::test::matches((x + y).value(), binary_reference(a, b, [](double p, double q) { return p + q; })));
    CHECK(ad::test::matches((x - y).value(), binary_reference(a, b, [](double p, double q) { return p - q; })));
    CHECK(ad::test::matches((x * y).value(), binary_reference(a, b, [](double p, double q) { return p * q; })));
    CHECK(ad::test::matches((x / y).value(), binary_reference(a, b, [](double p, double q) { return p / q; })));
}

TEST_CASE("elementwise binary ops: gradients match finite differences over random broadcast shapes") {
    int checked = 0;
    for (const auto& c : binary_cases) {
        std::mt19937_64 rng(2024);
        for (Broadcast kind : all_broadcasts) {
            for (int round = 0; round < 3; ++round) {
                auto [sa, sb] = operand_shapes(kind, rng);
                if (round == 1) std::swap(sa, sb);  // the broadcast operand on the left, too
                Array<double> a = draw(c.a_domain, sa, rng()), b = draw(c.b_domain, sb, rng());
                INFO(fmt::format("{}: {} by {} ({})", c.name, ad::shape_string(sa), ad::shape_string(sb), name_of(kind)));
                BinaryOp op = c.op;
                CHECK_GRADCHECK([op](const Vars& v) { return op(v[0], v[1]); }, (std::vector<Array<double>>{a, b}));
                ++checked;
            }
        }
    }
    CHECK(checked == 7 * 8 * 3);  // cases, broadcast kinds, rounds
}

TEST_CASE("elementwise binary ops: an operand used twice gets both contributions") {
    // d/dx (x * x) = 2x and d/dx (x / x) = 0: the record's two inputs share one node.
    Array<double> x0 = ad::test::away_from_zero({3, 2}, 5);
    CHECK_GRADCHECK([](const Vars& v) { return v[0] * v[0]; }, (std::vector<Array<double>>{x0}));
    CHECK_GRADCHECK([](const Vars& v) { return ad::div(v[0], v[0]) + ad::pow(ad::abs(v[0]), v[0]); },
                    (std::vector<Array<double>>{x0}));
}

TEST_CASE("elementwise unary ops and scalar operators: forward values match the scalar functions") {
    std::mt19937_64 rng(3);
    for (const auto& c : unary_cases) {
        for (int round = 0; round < 3; ++round) {
            Shape s = ad::test::random_shape(rng, 0, 4);
            Array<double> x = draw(c.domain, s, rng());
            INFO(fmt::format("{} of shape {}", c.name, ad::shape_string(s)));
            CHECK(ad::test::matches(c.op(ad::constant(x)).value(), unary_reference(x, c.reference)));
        }
    }
}

TEST_CASE("elementwise: sigmoid and softplus stay finite and exact far from zero") {
    Array<double> x = {-800.0, -40.0, 0.0, 40.0, 800.0};
    auto s = ad::sigmoid(ad::constant(x)).value();
    auto p = ad::softplus(ad::constant(x)).value();
    CHECK(xt::all(xt::isfinite(s)));
    CHECK(xt::all(xt::isfinite(p)));
    CHECK(s(0) == 0.0);
    CHECK(s(2) == 0.5);
    CHECK(s(4) == 1.0);
    // 1/(1+e^40) = e^-40 (1 - e^-40 + ...): a naive 1 - 1/(1+e^-x) would lose it entirely.
    CHECK(std::abs(s(1) / std::exp(-40.0) - 1) < 1e-12);
    CHECK(p(0) == 0.0);  // log(1 + e^-800) underflows to 0
    CHECK(p(4) == 800.0);  // log(1 + e^800) = 800 + log(1 + e^-800), where e^800 overflows
    CHECK(std::abs(p(1) / std::exp(-40.0) - 1) < 1e-12);  // log(1 + u) = u for tiny u
}

TEST_CASE("elementwise unary ops and scalar operators: gradients match finite differences over random shapes") {
    int checked = 0;
    for (const auto& c : unary_cases) {
        std::mt19937_64 rng(77);
        for (int round = 0; round < 4; ++round) {
            Shape s = ad::test::random_shape(rng, 0, 3);
            Array<double> x = draw(c.domain, s, rng());
            INFO(fmt::format("{} of shape {}", c.name, ad::shape_string(s)));
            Unary op = c.op;
            CHECK_GRADCHECK([op](const Vars& v) { return op(v[0]); }, (std::vector<Array<double>>{x}));
            ++checked;
        }
    }
    CHECK(checked == 39 * 4);
}

TEST_CASE("clamp: forward limits to [lo, hi] and the gradient vanishes outside") {
    std::mt19937_64 rng(8);
    for (int round = 0; round < 5; ++round) {
        Shape s = ad::test::random_shape(rng, 1, 3, 5);
        // Wide enough that some values fall on each side; none near a bound.
        Array<double> x = away_from(ad::test::uniform(s, rng(), -1.5, 1.5), {clamp_lo, clamp_hi});
        INFO(fmt::format("clamp of shape {}", ad::shape_string(s)));
        auto y = ad::clamp(ad::constant(x), clamp_lo, clamp_hi);
        auto clamped = [](double v) { return v < clamp_lo ? clamp_lo : v > clamp_hi ? clamp_hi : v; };
        CHECK(ad::test::matches(y.value(), unary_reference(x, clamped)));
        CHECK_GRADCHECK([](const Vars& v) { return ad::clamp(v[0], clamp_lo, clamp_hi); }, (std::vector<Array<double>>{x}));
    }
    // A degenerate interval is a constant function wherever x is off the point.
    ad::Tape tape;
    auto x = ad::param(Array<double>{-1.0, 2.0});
    ad::sum(ad::clamp(x, 0.5, 0.5)).backward();
    CHECK(x.grad() == Array<double>{0.0, 0.0});
}

TEST_CASE("relu and abs: the gradient is the slope on each side of the kink") {
    // relu' = [x > 0] and |x|' = sign(x), derived by hand; at 0 both give 0 (a subgradient).
    ad::Tape tape;
    auto x = ad::param(Array<double>{-2.0, -0.5, 0.0, 0.5, 3.0});
    ad::sum(ad::relu(x) + ad::abs(x) * 10.0).backward();
    CHECK(x.grad() == Array<double>{-10.0, -10.0, 0.0, 11.0, 11.0});
}

TEST_CASE("relu: the one-pass VJP of a plain sweep equals the recorded g * [x > 0] of a create_graph sweep") {
    // Both multiply, so a NaN or infinite cotangent on the flat side gives NaN in both.
    const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
    ad::Tape tape;
    auto x = ad::param(Array<double>{{-2.0, -0.5, 0.0}, {0.5, 3.0, -1.0}});
    auto y = ad::relu(x);
    for (const Array<double>& g : {Array<double>{{1.5, -2.0, 3.0}, {-4.0, 0.25, 7.0}},
                                   Array<double>{{nan, inf, 1.0}, {nan, -inf, -inf}}}) {
        ad::BackwardOptions kept;
        kept.retain_graph = true;
        Array<double> fused = ad::grad(y, {x}, ad::constant(g), kept)[0].value();
        ad::BackwardOptions recorded;
        recorded.create_graph = true;
        Array<double> composed = ad::grad(y, {x}, ad::constant(g), recorded)[0].value();
        Array<double> by_hand = g * Array<double>{{0.0, 0.0, 0.0}, {1.0, 1.0, 0.0}};
        CHECK(xt::all(xt::isclose(fused, by_hand, 0.0, 0.0, true)));
        CHECK(xt::all(xt::isclose(composed, by_hand, 0.0, 0.0, true)));
    }
}

TEST_CASE("elementwise ops: operands that do not broadcast are refused, naming the op and both shapes") {
    auto a = ad::constant(Array<double>::from_shape({2, 3}));
    auto b = ad::constant(Array<double>::from_shape({4}));
    CHECK_THROWS_WITH_AS(ad::add(a, b), "add: cannot broadcast (2, 3) with (4,)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::sub(a, b), "sub: cannot broadcast (2, 3) with (4,)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::mul(b, a), "mul: cannot broadcast (4,) with (2, 3)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::div(a, b), "div: cannot broadcast (2, 3) with (4,)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::pow(a, b), "pow: cannot broadcast (2, 3) with (4,)", ad::shape_error);
    CHECK_THROWS_WITH_AS(a + b, "add: cannot broadcast (2, 3) with (4,)", ad::shape_error);
    CHECK_THROWS_WITH_AS(a * b, "mul: cannot broadcast (2, 3) with (4,)", ad::shape_error);
    auto c = ad::constant(Array<double>::from_shape({3, 1, 2}));
    auto d = ad::constant(Array<double>::from_shape({4, 3}));
    CHECK_THROWS_WITH_AS(a - d, "sub: cannot broadcast (2, 3) with (4, 3)", ad::shape_error);
    CHECK_THROWS_WITH_AS(c / d, "div: cannot broadcast (3, 1, 2) with (4, 3)", ad::shape_error);
}

TEST_CASE("clamp: empty bounds are refused with a value_error naming clamp") {
    auto x = ad::constant(Array<double>{1.0, 2.0});
    CHECK_THROWS_WITH_AS(ad::clamp(x, 1.0, -1.0), "clamp: the bounds [1, -1] are empty", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::clamp(x, std::nan(""), 1.0), "clamp: the bounds [nan, 1] are empty", ad::value_error);
}

TEST_CASE("elementwise ops: a value from before clear() is refused by the op's name") {
    ad::Tape tape;
    auto x = ad::param(Array<double>{1.0, 2.0});
    auto y = ad::exp(x);
    tape.clear();
    CHECK_THROWS_WITH_AS(ad::mul(y, x), doctest::Contains("mul: the value of shape (2,) was recorded on this tape before it was cleared"),
                         ad::tape_error);
    CHECK_THROWS_WITH_AS(ad::tanh(y), doctest::Contains("tanh: the value of shape (2,) was recorded on this tape"), ad::tape_error);
    CHECK_THROWS_WITH_AS(ad::clamp(y, 0.0, 1.0), doctest::Contains("clamp: the value of shape (2,)"), ad::tape_error);
    CHECK(tape.size() == 0);
}

TEST_CASE("elementwise ops: a throwing op leaves the tape as it was") {
    ad::Tape tape;
    Array<double> x0 = ad::test::uniform({2, 3}, 4);
    auto x = ad::param(x0);
    auto y = ad::sigmoid(x) * x;
    std::size_t before = tape.size();
    CHECK_THROWS_AS(ad::add(y, ad::param(Array<double>::from_shape({4}))), ad::shape_error);
    CHECK_THROWS_AS(y * ad::param(Array<double>::from_shape({3, 2})), ad::shape_error);
    CHECK_THROWS_AS(ad::clamp(y, 1.0, 0.0), ad::value_error);
    CHECK(tape.size() == before);
    ad::sum(y).backward();
    // d/dx x s(x) = s + x s (1 - s), by the product rule.
    Array<double> s = 1.0 / (1.0 + xt::exp(-x0));
    CHECK(xt::allclose(x.grad(), s + x0 * s * (1.0 - s)));
}

TEST_CASE("elementwise ops: float gradients agree with double ones") {
    Array<float> xf = xt::cast<float>(ad::test::uniform({3, 4}, 21, 0.2, 1.5));
    Array<float> yf = xt::cast<float>(ad::test::uniform({4}, 22, -1.0, 1.0));
    auto gradients = [](const auto& x0, const auto& y0) {
        using T = typename std::decay_t<decltype(x0)>::value_type;
        ad::Tape tape;
        auto x = ad::param(x0);
        auto y = ad::param(y0);
        auto z = ad::sigmoid(x * y) + ad::tanh(x - y) / (ad::exp(y) + 1.0) + ad::softplus(-x) * ad::sqrt(x) +
                 ad::pow(x, y) - ad::log(x) * ad::square(y) + ad::abs(y) * 0.5 + ad::relu(y) +
                 ad::clamp(x, T(0.5), T(1.0)) + ad::pow(x, T(1.5)) + 2.0 / x - ad::neg(y) +
                 ad::affine(y, T(-0.5), T(2.0)) * ad::scale(x, T(3.0)) + ad::shift(y, T(1.0)) * (1.0 - x);
        ad::sum(z).backward();
        return std::make_pair(x.grad(), y.grad());
    };
    auto [gxf, gyf] = gradients(xf, yf);
    auto [gxd, gyd] = gradients(Array<double>(xt::cast<double>(xf)), Array<double>(xt::cast<double>(yf)));
    CHECK(ad::test::float_matches_double(gxf, gxd));
    CHECK(ad::test::float_matches_double(gyf, gyd));
}

TEST_CASE("elementwise ops: create_graph gradients differentiate again (second derivatives match finite differences)") {
    std::mt19937_64 rng(99);
    struct Case {
        const char* name;
        ad::Function f;
        std::vector<Domain> domains;
    };
    const Case cases[] = {
        {"sigmoid", [](const Vars& v) { return ad::sigmoid(v[0]); }, {Domain::real}},
        {"tanh", [](const Vars& v) { return ad::tanh(v[0]); }, {Domain::real}},
        {"exp", [](const Vars& v) { return ad::exp(v[0]); }, {Domain::real}},
        {"log", [](const Vars& v) { return ad::log(v[0]); }, {Domain::positive}},
        {"sqrt", [](const Vars& v) { return ad::sqrt(v[0]); }, {Domain::positive}},
        {"softplus", [](const Vars& v) { return ad::softplus(v[0]); }, {Domain::real}},
        {"square", [](const Vars& v) { return ad::square(v[0]); }, {Domain::real}},
        {"pow(x, p)", [](const Vars& v) { return ad::pow(v[0], 2.5); }, {Domain::positive}},
        {"mul", [](const Vars& v) { return ad::mul(v[0], v[1]) * v[0]; }, {Domain::real, Domain::real}},
        {"div", [](const Vars& v) { return ad::div(v[0], v[1]); }, {Domain::real, Domain::away_from_zero}},
        {"pow", [](const Vars& v) { return ad::pow(v[0], v[1]); }, {Domain::positive, Domain::real}},
    };
    for (const auto& c : cases) {
        // gradgradcheck differentiates the gradient with respect to every operand
        // again, so one check covers all second derivatives, mixed ones included.
        for (int round = 0; round < 2; ++round) {
            Shape s = ad::test::random_shape(rng, 0, 2);
            std::vector<Array<double>> inputs;
            for (std::size_t i = 0; i < c.domains.size(); ++i) {
                // The second operand of a binary op is a row: its gradient is summed, twice.
                Shape si = (i == 1 && !s.empty()) ? Shape{s.back()} : s;
                inputs.push_back(draw(c.domains[i], si, rng()));
            }
            INFO(fmt::format("{} of shape {}", c.name, ad::shape_string(s)));
            CHECK_GRADGRADCHECK(c.f, inputs);
        }
    }
}

TEST_CASE("sigmoid: the sum of a create_graph gradient backpropagates to the second derivative") {
    // s' = s (1 - s), so s'' = s' (1 - s) - s s' = s (1 - s) (1 - 2 s).
    Array<double> x0 = ad::test::uniform({5}, 31, -3, 3);
    ad::Tape tape;
    auto x = ad::param(x0);
    auto g = ad::grad(ad::sum(ad::sigmoid(x)), {x}, {.create_graph = true});
    REQUIRE(g.size() == 1);
    CHECK(g[0].requires_grad());
    ad::sum(g[0]).backward();
    Array<double> s = 1.0 / (1.0 + xt::exp(-x0));
    CHECK(xt::allclose(g[0].value(), s * (1.0 - s)));
    CHECK(xt::allclose(x.grad(), s * (1.0 - s) * (1.0 - 2.0 * s)));
}

TEST_CASE("sigmoid_backward: g y (1 - y) in one pass, differentiable in both arguments") {
    Array<double> g = ad::test::uniform({3, 4}, 91), y = ad::test::uniform({3, 4}, 92, 0.05, 0.95);
    auto out = ad::sigmoid_backward(ad::constant(g), ad::constant(y));
    for (std::size_t i = 0; i < g.size(); ++i) {
        CHECK(out.value().data()[i] == doctest::Approx(g.data()[i] * y.data()[i] * (1 - y.data()[i])).epsilon(1e-15));
    }
    CHECK_GRADCHECK([](const Vars& v) { return ad::sigmoid_backward(v[0], v[1]); }, (std::vector<Array<double>>{g, y}));
    CHECK_THROWS_WITH_AS(ad::sigmoid_backward(ad::constant(g), ad::constant(Array<double>{1.0, 2.0})),
                         "sigmoid_backward: cotangent (3, 4) and result (2,) differ in shape", ad::shape_error);
}

TEST_CASE("sigmoid: the sweep overwrites a cotangent in place only when nothing else holds it") {
    Array<double> x0 = ad::test::uniform({3, 4}, 85), c = ad::test::uniform({3, 4}, 86);
    auto x = ad::param(x0);
    ad::Tape tape;
    auto y = ad::sigmoid(x);
    const Array<double> s = y.value();
    const Array<double> expected = c * s * (1.0 - s);
    auto seed = ad::constant(c);  // a seed the caller holds
    auto by_seed = ad::grad(y, {x}, seed, {.retain_graph = true});
    CHECK(seed.value() == c);
    CHECK(ad::test::matches(by_seed[0].value(), expected));
    auto by_loss = ad::grad(ad::sum(y * ad::constant(c)), {y, x});  // y's cotangent, read during the sweep
    CHECK(by_loss[0].value() == c);
    CHECK(ad::test::matches(by_loss[1].value(), expected));
    // add's VJP hands the same cotangent to both sigmoids: the first to run must not overwrite it.
    auto shared = ad::grad(ad::sum((ad::sigmoid(x) + ad::sigmoid(x)) * ad::constant(c)), {x});
    CHECK(ad::test::matches(shared[0].value(), Array<double>(2.0 * expected)));
}

TEST_CASE("mul and scale: the sweep scales a cotangent in place only when nothing else holds it") {
    Array<double> x0 = ad::test::uniform({3, 4}, 87), c = ad::test::uniform({3, 4}, 88), d = ad::test::uniform({3, 4}, 89);
    auto x = ad::param(x0);
    ad::Tape tape;
    auto y = x * ad::constant(c);
    auto seed = ad::constant(d);  // a seed the caller holds
    auto by_seed = ad::grad(y, {x}, seed, {.retain_graph = true});
    CHECK(seed.value() == d);
    CHECK(ad::test::matches(by_seed[0].value(), Array<double>(d * c)));
    auto by_loss = ad::grad(ad::sum(y * ad::constant(d)), {y, x});  // y's cotangent, read during the sweep
    CHECK(by_loss[0].value() == d);
    CHECK(ad::test::matches(by_loss[1].value(), Array<double>(d * c)));
    // add's VJP hands the same cotangent to both products: the first to run must not scale it.
    auto shared = ad::grad(ad::sum(x * ad::constant(c) + ad::constant(d) * x), {x});
    CHECK(ad::test::matches(shared[0].value(), Array<double>(c + d)));
    // A one-element factor, on either side; and a factor of the other's shape that broadcasts.
    auto three = ad::constant(Array<double>{3.0});
    auto by_scalar = ad::grad(ad::sum((three * x) * ad::constant(d) * three), {x});
    CHECK(ad::test::matches(by_scalar[0].value(), Array<double>(9.0 * d)));
    auto row = ad::param(Array<double>(xt::view(x0, 0)));
    auto by_row = ad::grad(ad::sum(row * ad::constant(c)), {row});
    CHECK(ad::test::matches(by_row[0].value(), Array<double>(xt::sum(c, {0}))));
    // scale (x * s, an affine op) the same way.
    auto scaled = x * 2.0;
    auto by_scaled_seed = ad::grad(scaled, {x}, seed, {.retain_graph = true});
    CHECK(seed.value() == d);
    CHECK(ad::test::matches(by_scaled_seed[0].value(), Array<double>(2.0 * d)));
    auto by_two_scales = ad::grad(ad::sum((x * 2.0 + x * 3.0) * ad::constant(d)), {x});
    CHECK(ad::test::matches(by_two_scales[0].value(), Array<double>(5.0 * d)));
}

TEST_CASE("sign, floor, ceil, round: PyTorch's values (round half to even) and a zero gradient") {
    ad::Tape tape;
    auto x = ad::param(Array<double>{-2.5, -1.5, -0.4, 0.0, 0.5, 1.5, 2.5, 3.7});
    CHECK(ad::sign(x).value() == Array<double>{-1, -1, -1, 0, 1, 1, 1, 1});
    CHECK(ad::floor(x).value() == Array<double>{-3, -2, -1, 0, 0, 1, 2, 3});
    CHECK(ad::ceil(x).value() == Array<double>{-2, -1, -0.0, 0, 1, 2, 3, 4});
    CHECK(ad::round(x).value() == Array<double>{-2, -2, -0.0, 0, 0, 2, 2, 4});
    ad::sum(ad::sign(x) + ad::floor(x) + ad::ceil(x) + ad::round(x) + x).backward();
    CHECK(x.grad() == Array<double>(xt::ones<double>({8})));  // only the identity term contributes
    CHECK(ad::sign(ad::constant(Array<double>{std::nan("")})).value()(0) == 0.0);  // libtorch 1.13.1's sign(nan)
}

TEST_CASE("pow with broadcasting: zeros, infinities and NaN give std::pow's values") {
    // Found by tests/fuzz/program_fuzzer: the broadcast path evaluated
    // xtensor's batched pow, whose exp converts -inf to an integer
    // (UBSan: float-cast-overflow).
    const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
    const Array<double> bases{0.0, 2.0, inf, -inf, nan, 0.5, -1.0, 0.0};
    // (8,) against (1, 8): shapes that differ but broadcast trivially, which xtensor evaluates in batches.
    const Array<double> twos = xt::full_like(Array<double>::from_shape({1, 8}), 2.0);
    auto y = ad::pow(ad::constant(bases), ad::constant(twos));
    auto z = ad::pow(ad::constant(twos), ad::constant(bases));
    for (std::size_t i = 0; i < bases.size(); ++i) {
        INFO("base ", bases(i));
        const double yi = y.value()(0, i), zi = z.value()(0, i);
        CHECK((std::isnan(yi) ? std::isnan(std::pow(bases(i), 2.0)) : yi == std::pow(bases(i), 2.0)));
        CHECK((std::isnan(zi) ? std::isnan(std::pow(2.0, bases(i))) : zi == std::pow(2.0, bases(i))));
    }
}

TEST_CASE("maximum and minimum: ties split the gradient, NaN propagates (torch.maximum)") {
    ad::Tape tape;
    auto a = ad::param(Array<double>{1.0, 2.0, 3.0, std::nan("")});
    auto b = ad::param(Array<double>{1.0, 5.0, -1.0, 0.0});
    auto hi = ad::maximum(a, b);
    CHECK(hi.value()(0) == 1.0);
    CHECK(hi.value()(1) == 5.0);
    CHECK(hi.value()(2) == 3.0);
    CHECK(std::isnan(hi.value()(3)));
    CHECK(std::isnan(ad::minimum(b, a).value()(3)));  // whichever side holds it
    ad::sum(ad::slice(ad::maximum(a, b), 0, 0, 3)).backward();  // the NaN element is left out of the loss
    CHECK(a.grad() == Array<double>{0.5, 0.0, 1.0, 0.0});
    CHECK(b.grad() == Array<double>{0.5, 1.0, 0.0, 0.0});
}

TEST_CASE("where: picks a or b by a broadcast mask, and sends the cotangent to the operand picked") {
    std::mt19937_64 rng(31);
    for (int round = 0; round < 4; ++round) {
        Array<double> a = ad::test::uniform({2, 3}, rng()), b = ad::test::uniform({3}, rng());
        ad::Mask mask = ad::Mask::from_shape(round % 2 ? ad::Shape{2, 3} : ad::Shape{2, 1});
        for (std::size_t i = 0; i < mask.size(); ++i) mask.data()[i] = (rng() % 2) == 1;
        auto y = ad::where(mask, ad::constant(a), ad::constant(b));
        Array<double> expected = Array<double>::from_shape({2, 3});
        for (std::size_t i = 0; i < 2; ++i) {
            for (std::size_t j = 0; j < 3; ++j) {
                bool pick = mask.dimension() == 2 && mask.shape()[1] == 3 ? mask(i, j) : mask(i, 0);
                expected(i, j) = pick ? a(i, j) : b(j);
            }
        }
        CHECK(ad::test::matches(y.value(), expected));
        CHECK_GRADCHECK([mask](const Vars& v) { return ad::where(mask, v[0], v[1]); }, (std::vector<Array<double>>{a, b}));
    }
    auto x = ad::constant(Array<double>::from_shape({2, 3}));
    CHECK_THROWS_WITH_AS(ad::where(ad::Mask{true, false}, x, x),
                         "where: cannot broadcast the condition (2,) with the values (2, 3) and (2, 3)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::where(ad::Mask{true}, x, ad::constant(Array<double>{1.0, 2.0})),
                         "where: cannot broadcast (2, 3) with (2,)", ad::shape_error);
}

TEST_CASE("comparisons: masks with broadcasting, against a scalar too, and shapes that do not broadcast refused") {
    auto a = ad::constant(Array<double>{{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}});
    auto b = ad::constant(Array<double>{2.0, 2.0, 7.0});
    CHECK(ad::greater(a, b) == ad::Mask{{false, false, false}, {true, true, false}});
    CHECK(ad::greater_equal(a, b) == ad::Mask{{false, true, false}, {true, true, false}});
    CHECK(ad::less(a, b) == ad::Mask{{true, false, true}, {false, false, true}});
    CHECK(ad::less_equal(a, b) == ad::Mask{{true, true, true}, {false, false, true}});
    CHECK(ad::equal(a, b) == ad::Mask{{false, true, false}, {false, false, false}});
    CHECK(ad::not_equal(a, b) == ad::Mask{{true, false, true}, {true, true, true}});
    CHECK(ad::greater(a, 4.5) == ad::Mask{{false, false, false}, {false, true, true}});
    CHECK(ad::equal(ad::constant(Array<float>{1.0f, 2.0f}), 2.0f) == ad::Mask{false, true});
    CHECK_THROWS_WITH_AS(ad::less(a, ad::constant(Array<double>{1.0, 2.0})), "less: cannot broadcast (2, 3) with (2,)",
                         ad::shape_error);
}

TEST_CASE("elementwise math: float gradients agree with double ones") {
    auto gradients = [](const auto& x0) {
        ad::Tape tape;
        auto x = ad::param(x0);
        auto z = ad::sin(x) * ad::cos(x) + ad::tan(x) + ad::asin(x) - ad::acos(x) + ad::atan(x) + ad::sinh(x) * ad::cosh(x) +
                 ad::log1p(x) + ad::expm1(x) + ad::erf(x) + ad::reciprocal(x + 2.0) + ad::rsqrt(x + 2.0) +
                 ad::maximum(x, ad::sin(x)) + ad::minimum(x, ad::cos(x));
        ad::sum(z).backward();
        return x.grad();
    };
    Array<float> xf = xt::cast<float>(ad::test::uniform({3, 4}, 41, -0.8, 0.8));
    CHECK(ad::test::float_matches_double(gradients(xf), gradients(Array<double>(xt::cast<double>(xf)))));
}

TEST_CASE("elementwise math: a throwing op leaves the tape as it was") {
    ad::Tape tape;
    auto x = ad::param(ad::test::uniform({2, 3}, 4));
    auto y = ad::sin(x);
    std::size_t before = tape.size();
    CHECK_THROWS_AS(ad::maximum(y, ad::param(Array<double>::from_shape({4}))), ad::shape_error);
    CHECK_THROWS_AS(ad::where(ad::Mask{true, false, true, true}, y, y), ad::shape_error);
    CHECK(tape.size() == before);
}
