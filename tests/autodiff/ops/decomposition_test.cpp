#include "support/test_support.hpp"

#include <cmath>
#include <random>

#include <fmt/format.h>
#include <xtensor-blas/xlinalg.hpp>

using ad::Array;
using ad::Shape;
using ad::Var;
using ad::test::Vars;

namespace {

/// A well-conditioned n x n matrix: random entries plus n on the diagonal.
Array<double> conditioned(std::size_t n, std::uint64_t seed) {
    return ad::test::uniform({n, n}, seed) + double(n) * xt::eye<double>(n);
}

/// A symmetric positive definite matrix: M M^T + n I.
Array<double> spd(std::size_t n, std::uint64_t seed) {
    Array<double> m = ad::test::uniform({n, n}, seed);
    return xt::linalg::dot(m, xt::transpose(m)) + double(n) * xt::eye<double>(n);
}

bool close(const Array<double>& a, const Array<double>& b, double tol = 1e-10) {
    return a.shape() == b.shape() && xt::allclose(a, b, tol, tol);
}

}  // namespace

TEST_CASE("solve and solve_triangular: A X = B holds, for matrix and vector right-hand sides") {
    for (std::size_t n : {1, 2, 4}) {
        Array<double> a = conditioned(n, n), b = ad::test::uniform({n, 3}, n + 10), v = ad::test::uniform({n}, n + 20);
        INFO("n = ", n);
        auto x = ad::solve(ad::constant(a), ad::constant(b)).value();
        CHECK(close(xt::linalg::dot(a, x), b));
        auto xv = ad::solve(ad::constant(a), ad::constant(v)).value();
        CHECK(xv.shape() == Array<double>::shape_type{n});
        CHECK(close(xt::linalg::dot(a, xv), v));
        // Only the named triangle is read: the other holds garbage that must not matter.
        Array<double> lower = xt::tril(a), upper = xt::triu(a);
        CHECK(close(xt::linalg::dot(lower, ad::solve_triangular(ad::constant(a), ad::constant(b), false).value()), b));
        CHECK(close(xt::linalg::dot(upper, ad::solve_triangular(ad::constant(a), ad::constant(b), true).value()), b));
        Array<double> unit = xt::tril(a, -1) + xt::eye<double>(n);
        CHECK(close(xt::linalg::dot(unit, ad::solve_triangular(ad::constant(a), ad::constant(v), false, true).value()), v));
    }
}

TEST_CASE("cholesky, inv, det, logabsdet: forward values satisfy their definitions") {
    Array<double> s = spd(4, 3);
    auto l = ad::cholesky(ad::constant(s)).value();
    CHECK(close(xt::linalg::dot(l, xt::transpose(l)), s));
    CHECK(close(l, xt::tril(l)));
    Array<double> a = conditioned(3, 5);
    CHECK(close(xt::linalg::dot(a, ad::inv(ad::constant(a)).value()), xt::eye<double>(3)));
    // det of a 3 x 3 by the rule of Sarrus.
    double sarrus = a(0, 0) * a(1, 1) * a(2, 2) + a(0, 1) * a(1, 2) * a(2, 0) + a(0, 2) * a(1, 0) * a(2, 1) -
                    a(0, 2) * a(1, 1) * a(2, 0) - a(0, 0) * a(1, 2) * a(2, 1) - a(0, 1) * a(1, 0) * a(2, 2);
    CHECK(ad::det(ad::constant(a)).value()() == doctest::Approx(sarrus).epsilon(1e-12));
    Array<double> swapped = a;  // a row swap flips the sign: logabsdet does not see it
    xt::row(swapped, 0) = xt::row(a, 1);
    xt::row(swapped, 1) = xt::row(a, 0);
    CHECK(ad::det(ad::constant(swapped)).value()() == doctest::Approx(-sarrus).epsilon(1e-12));
    CHECK(ad::logabsdet(ad::constant(swapped)).value()() == doctest::Approx(std::log(std::fabs(sarrus))).epsilon(1e-12));
    Array<double> singular = {{1.0, 2.0}, {2.0, 4.0}};
    CHECK(ad::det(ad::constant(singular)).value()() == 0.0);
    CHECK(ad::logabsdet(ad::constant(singular)).value()() == -std::numeric_limits<double>::infinity());
}

TEST_CASE("linear algebra ops: gradients match finite differences") {
    std::mt19937_64 rng(8);
    for (int round = 0; round < 3; ++round) {
        const std::size_t n = 2 + round;
        Array<double> a = conditioned(n, rng()), b = ad::test::uniform({n, 2}, rng()), v = ad::test::uniform({n}, rng());
        INFO("n = ", n);
        CHECK_GRADCHECK([](const Vars& x) { return ad::solve(x[0], x[1]); }, (std::vector<Array<double>>{a, b}));
        CHECK_GRADCHECK([](const Vars& x) { return ad::solve(x[0], x[1]); }, (std::vector<Array<double>>{a, v}));
        CHECK_GRADCHECK([](const Vars& x) { return ad::solve_triangular(x[0], x[1], false); }, (std::vector<Array<double>>{a, b}));
        CHECK_GRADCHECK([](const Vars& x) { return ad::solve_triangular(x[0], x[1], true, true); }, (std::vector<Array<double>>{a, v}));
        CHECK_GRADCHECK([](const Vars& x) { return ad::inv(x[0]); }, (std::vector<Array<double>>{a}));
        CHECK_GRADCHECK([](const Vars& x) { return ad::det(x[0]); }, (std::vector<Array<double>>{a}));
        CHECK_GRADCHECK([](const Vars& x) { return ad::logabsdet(x[0]); }, (std::vector<Array<double>>{a}));
        // cholesky of a symmetric matrix built from a free one, so that finite differences stay symmetric.
        Array<double> m = ad::test::uniform({n, n}, rng());
        CHECK_GRADCHECK([n](const Vars& x) {
            return ad::cholesky(ad::matmul(x[0], x[0], false, true) + ad::constant(Array<double>(double(n) * xt::eye<double>(n))));
        }, (std::vector<Array<double>>{m}));
    }
}

TEST_CASE("cholesky: the gradient is symmetric, and its two triangles sum to the gradient through the lower one") {
    ad::Tape tape;
    auto a = ad::param(spd(3, 4));
    ad::sum(ad::cholesky(a) * ad::constant(ad::test::uniform({3, 3}, 9))).backward();
    CHECK(close(a.grad(), xt::transpose(a.grad())));
}

TEST_CASE("linear algebra ops: bad shapes, singular and indefinite matrices are typed errors; the tape is unchanged") {
    ad::Tape tape;
    auto rect = ad::param(Array<double>::from_shape({2, 3}));
    auto sq = ad::param(conditioned(3, 1));
    std::size_t before = tape.size();
    CHECK_THROWS_WITH_AS(ad::inv(rect), "inv: the matrix (2, 3) is not square (n, n)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::det(rect), "det: the matrix (2, 3) is not square (n, n)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::solve(sq, ad::param(Array<double>::from_shape({2, 2}))),
                         "solve: the right-hand side (2, 2) does not have the 3 rows of the matrix (3, 3) (expects (n,) or (n, k))",
                         ad::shape_error);
    auto singular = ad::param(Array<double>{{1.0, 2.0}, {2.0, 4.0}});
    CHECK_THROWS_WITH_AS(ad::inv(singular), "inv: the matrix (2, 2) is singular (pivot 2 is zero)", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::solve(singular, ad::param(Array<double>{1.0, 1.0})),
                         "solve: the matrix (2, 2) is singular (pivot 2 is zero)", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::solve_triangular(ad::param(Array<double>{{1.0, 0.0}, {3.0, 0.0}}), ad::param(Array<double>{1.0, 1.0}), false),
                         "solve_triangular: the triangular matrix (2, 2) is singular (diagonal element 2 is zero)",
                         ad::value_error);
    auto indefinite = ad::param(Array<double>{{1.0, 0.0, 0.0}, {0.0, -1.0, 0.0}, {0.0, 0.0, 1.0}});
    CHECK_THROWS_WITH_AS(ad::cholesky(indefinite),
                         "cholesky: the matrix (3, 3) is not positive definite (leading minor 2 is not)", ad::value_error);
    CHECK(tape.size() == before);
}

TEST_CASE("linear algebra ops: float gradients agree with double ones") {
    auto gradients = [](const auto& a0) {
        using T = typename std::decay_t<decltype(a0)>::value_type;
        ad::Tape tape;
        auto a = ad::param(a0);
        auto rhs = ad::constant(Array<T>{T(1), T(-2), T(0.5)});
        auto z = ad::sum(ad::solve(a, rhs)) + ad::sum(ad::inv(a)) + ad::det(a) + ad::logabsdet(a) +
                 ad::sum(ad::solve_triangular(a, rhs, true)) + ad::sum(ad::cholesky(ad::matmul(a, a, false, true)));
        z.backward();
        return a.grad();
    };
    Array<float> af = xt::cast<float>(conditioned(3, 12));
    CHECK(ad::test::float_matches_double(gradients(af), gradients(Array<double>(xt::cast<double>(af)))));
}
