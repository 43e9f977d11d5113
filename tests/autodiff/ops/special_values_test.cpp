// Special values (NaN, infinities, ties, zero elements) against PyTorch. Every
// expected value below is libtorch 1.13.1's output (C++ API, double), printed
// by a probe program with 17 significant digits: the forward value, and the
// gradient for a cotangent of ones ("ones") or of 1, 2, 3, ... in row-major
// order ("1, 2, ..."). Where libtorch raises an error, tapegrad raises its
// typed error naming the op.

#include "support/test_support.hpp"

#include <cmath>
#include <functional>
#include <limits>
#include <string>

#include <fmt/format.h>

using ad::Array;
using ad::IndexArray;
using ad::Reduction;
using ad::Var;

namespace {

const double inf = std::numeric_limits<double>::infinity();
const double NaN = std::numeric_limits<double>::quiet_NaN();

/// The same shape, and each element the same: both NaN (any sign), the same
/// infinity, or within 1e-12 relative (the last bits of exp and log differ
/// between libraries).
bool same(const Array<double>& actual, const Array<double>& expected) {
    if (actual.shape() != expected.shape()) return false;
    for (std::size_t i = 0; i < actual.size(); ++i) {
        const double a = actual.data()[i], e = expected.data()[i];
        if (std::isnan(e) || std::isnan(a)) {
            if (std::isnan(e) != std::isnan(a)) return false;
        } else if (std::isinf(e) || std::isinf(a)) {
            if (a != e) return false;
        } else if (std::abs(a - e) > 1e-12 * std::max(1.0, std::abs(e))) {
            return false;
        }
    }
    return true;
}

/// The cotangent "1, 2, ...": 1, 2, 3, ... in row-major order, y's shape.
Array<double> counting(const Array<double>& like) {
    Array<double> seed = Array<double>::from_shape(like.shape());
    for (std::size_t i = 0; i < seed.size(); ++i) seed.data()[i] = double(i + 1);
    return seed;
}

enum class Seed { ones, counting };

struct Result {
    Array<double> value;
    Array<double> grad;
};

/// y's shape with a value of zeros, its VJP the identity. backward refuses a
/// value holding NaN or an infinity at its start (a value_error); from this
/// one the sweep carries the cotangent into y's VJP all the same.
Var<double> finite_start(const Var<double>& y) {
    return ad::make_op("finite_start", Array<double>(xt::zeros<double>(y.value().shape())), y,
                       [](std::size_t, const Var<double>& g) { return g; });
}

/// f(x) and the gradient of x for the cotangent `seed`.
Result run(const std::function<Var<double>(const Var<double>&)>& f, const Array<double>& x0, Seed seed = Seed::ones) {
    ad::Tape tape;
    auto x = ad::param(x0);
    Var<double> y = f(x);
    Array<double> g = seed == Seed::ones ? Array<double>(xt::ones<double>(y.value().shape())) : counting(y.value());
    finite_start(y).backward(g);
    return {y.value(), x.grad()};
}

std::string str(const Array<double>& a) {
    std::string s = ad::shape_string_of(a) + " [";
    for (std::size_t i = 0; i < a.size(); ++i) s += (i ? ", " : "") + fmt::format("{}", a.data()[i]);
    return s + "]";
}

/// Checks f(x) and x's gradient against libtorch's; an exception fails the
/// check (and the test case goes on).
void check_op(const std::function<Var<double>(const Var<double>&)>& f, const Array<double>& x, const Array<double>& value,
              const Array<double>& grad, Seed seed = Seed::ones) {
    INFO("x = ", str(x));
    Result r;
    try {
        r = run(f, x, seed);
    } catch (const std::exception& e) {
        FAIL_CHECK((std::string("threw: ") + e.what()));
        return;
    }
    INFO("value = ", str(r.value), " (torch ", str(value), ")\ngrad = ", str(r.grad), " (torch ", str(grad), ")");
    CHECK(same(r.value, value));
    CHECK(same(r.grad, grad));
}

Var<double> softmax_last(const Var<double>& x) { return ad::softmax(x, -1); }
Var<double> log_softmax_last(const Var<double>& x) { return ad::log_softmax(x, -1); }

Array<double> empty(std::initializer_list<std::size_t> shape) { return Array<double>::from_shape(shape); }

}  // namespace

TEST_CASE("special values: softmax and log_softmax with infinities and NaN, as libtorch's") {
    // libtorch: torch::softmax(x, -1) and torch::log_softmax(x, -1); gradients for the cotangent 1, 2, ...
    const Seed c = Seed::counting;
    check_op(softmax_last, {1, inf}, {NaN, NaN}, {NaN, NaN}, c);
    check_op(log_softmax_last, {1, inf}, {NaN, NaN}, {NaN, NaN}, c);
    check_op(softmax_last, {1, -inf}, {1, 0}, {0, 0}, c);
    check_op(log_softmax_last, {1, -inf}, {0, -inf}, {-2, 2}, c);
    check_op(log_softmax_last, {1, -inf}, {0, -inf}, {-1, 1});
    check_op(softmax_last, {-inf, -inf}, {NaN, NaN}, {NaN, NaN}, c);
    check_op(log_softmax_last, {-inf, -inf}, {NaN, NaN}, {NaN, NaN}, c);
    check_op(softmax_last, {inf, inf}, {NaN, NaN}, {NaN, NaN}, c);
    check_op(log_softmax_last, {inf, inf}, {NaN, NaN}, {NaN, NaN}, c);
    check_op(softmax_last, {1, NaN}, {NaN, NaN}, {NaN, NaN}, c);
    check_op(log_softmax_last, {1, NaN}, {NaN, NaN}, {NaN, NaN}, c);
    check_op(softmax_last, {inf, -inf}, {NaN, NaN}, {NaN, NaN}, c);
    check_op(log_softmax_last, {inf, -inf}, {NaN, NaN}, {NaN, NaN}, c);
    check_op(softmax_last, {-inf, 2, 3}, {0, 0.26894142136999516, 0.7310585786300049},
             {0, -0.19661193324148196, 0.1966119332414816}, c);
    check_op(log_softmax_last, {-inf, 2, 3}, {-inf, -1.3132616875182228, -0.31326168751822286},
             {1, 0.38635147178002938, -1.3863514717800294}, c);
    check_op(log_softmax_last, {-inf, 2, 3}, {-inf, -1.3132616875182228, -0.31326168751822286},
             {1, 0.19317573589001469, -1.1931757358900148});
    // Along axis 0 of a (2, 3): columns [1, 2], [-inf, -inf] (a whole row of -inf) and [inf, 1].
    const Array<double> x23{{1, -inf, inf}, {2, -inf, 1}};
    check_op([](const Var<double>& x) { return ad::softmax(x, 0); }, x23,
             {{0.2689414213699951, NaN, NaN}, {0.7310585786300049, NaN, NaN}},
             {{-0.58983579972444555, NaN, NaN}, {0.58983579972444544, NaN, NaN}}, c);
    check_op([](const Var<double>& x) { return ad::log_softmax(x, 0); }, x23,
             {{-1.3132616875182228, NaN, NaN}, {-0.31326168751822286, NaN, NaN}},
             {{-0.34470710684997552, NaN, NaN}, {0.34470710684997552, NaN, NaN}}, c);
}

TEST_CASE("special values: max and min over all axes share the gradient among ties and among NaNs, as torch.max()") {
    // libtorch: x.max(), x.min() (evenly_distribute_backward: a NaN result shares among the NaNs).
    auto max_all = [](const Var<double>& x) { return ad::max(x); };
    auto min_all = [](const Var<double>& x) { return ad::min(x); };
    const Array<double> nan_first{NaN, 1}, nan_last{1, NaN};
    check_op(max_all, nan_first, NaN, {1, 0});
    check_op(max_all, nan_last, NaN, {0, 1});
    check_op(min_all, nan_first, NaN, {1, 0});
    check_op(min_all, nan_last, NaN, {0, 1});
    check_op(max_all, {3, NaN, 1, NaN}, NaN, {0, 0.5, 0, 0.5});
    check_op(min_all, {3, NaN, 1, NaN}, NaN, {0, 0.5, 0, 0.5});
    check_op(max_all, {{1, NaN, 3}, {3, NaN, NaN}, {2, 2, 1}}, NaN,
             {{0, 0.33333333333333331, 0}, {0, 0.33333333333333331, 0.33333333333333331}, {0, 0, 0}});
    check_op(max_all, {1, 3, 3}, 3.0, {0, 0.5, 0.5});
    check_op(min_all, {1, 3, 3}, 1.0, {1, 0, 0});
    check_op(max_all, {-inf, -inf}, -inf, {0.5, 0.5});
    check_op(min_all, {-inf, -inf}, -inf, {0.5, 0.5});
    check_op(max_all, {inf, 1, inf}, inf, {0.5, 0, 0.5});
    check_op(min_all, {inf, 1, inf}, 1.0, {0, 1, 0});
    check_op(max_all, {1, 1, 1}, 1.0, {0.33333333333333331, 0.33333333333333331, 0.33333333333333331});
}

TEST_CASE("special values: max and min along an axis are torch.amax and torch.amin: ties share, a NaN slice's gradient is NaN") {
    // libtorch: x.amax(dim), x.amin(dim) (a slice holding a NaN has a NaN gradient throughout).
    auto max0 = [](const Var<double>& x) { return ad::max(x, 0); };
    auto min0 = [](const Var<double>& x) { return ad::min(x, 0); };
    check_op(max0, {NaN, 1}, NaN, {NaN, NaN});
    check_op(max0, {1, NaN}, NaN, {NaN, NaN});
    check_op(min0, {1, NaN}, NaN, {NaN, NaN});
    check_op(max0, {3, NaN, 1, NaN}, NaN, {NaN, NaN, NaN, NaN});
    check_op(max0, {1, 3, 3}, 3.0, {0, 0.5, 0.5});
    check_op(min0, {1, 3, 3}, 1.0, {1, 0, 0});
    check_op(max0, {-inf, -inf}, -inf, {0.5, 0.5});
    check_op(max0, {inf, 1, inf}, inf, {0.5, 0, 0.5});
    const Array<double> m{{1, NaN, 3}, {3, NaN, NaN}, {2, 2, 1}};
    check_op([](const Var<double>& x) { return ad::max(x, 1); }, m, {NaN, NaN, 2},
             {{NaN, NaN, NaN}, {NaN, NaN, NaN}, {0.5, 0.5, 0}});
    check_op([](const Var<double>& x) { return ad::min(x, 1); }, m, {NaN, NaN, 1},
             {{NaN, NaN, NaN}, {NaN, NaN, NaN}, {0, 0, 1}});
    check_op([](const Var<double>& x) { return ad::max(x, 0); }, m, {3, NaN, NaN},
             {{0, NaN, NaN}, {1, NaN, NaN}, {0, NaN, NaN}});
}

TEST_CASE("special values: argmax and argmin take the first NaN, else the first of tied extremes, as libtorch's") {
    auto c = [](const Array<double>& x) { return ad::constant(x); };
    CHECK(ad::argmax(c({NaN, 1}))() == 0);
    CHECK(ad::argmin(c({NaN, 1}))() == 0);
    CHECK(ad::argmax(c({1, NaN}))() == 1);
    CHECK(ad::argmin(c({1, NaN}))() == 1);
    CHECK(ad::argmax(c({3, NaN, 1, NaN}))() == 1);
    CHECK(ad::argmin(c({3, NaN, 1, NaN}))() == 1);
    CHECK(ad::argmax(c({1, 3, 3}))() == 1);
    CHECK(ad::argmin(c({1, 3, 3}))() == 0);
    CHECK(ad::argmax(c({inf, 1, inf}))() == 0);
    CHECK(ad::argmin(c({-inf, -inf}))() == 0);
    const Array<double> m{{1, NaN, 3}, {3, NaN, NaN}, {2, 2, 1}};
    CHECK(ad::argmax(c(m), 1) == IndexArray{1, 1, 0});
    CHECK(ad::argmin(c(m), 1) == IndexArray{1, 1, 2});
    CHECK(ad::argmax(c(m), 0) == IndexArray{1, 0, 1});
    CHECK(ad::argmax(c(m))() == 1);
}

TEST_CASE("special values: maximum and minimum propagate NaN from either side and split the gradient at ties") {
    // libtorch: torch::maximum(a, b), torch::minimum(a, b), a cotangent of ones.
    struct Case {
        double a, b, max, min, max_ga, max_gb, min_ga, min_gb;
    };
    const Case cases[] = {
        {NaN, 1, NaN, NaN, 1, 1, 1, 1},    {1, NaN, NaN, NaN, 1, 1, 1, 1},       {2, 2, 2, 2, 0.5, 0.5, 0.5, 0.5},
        {NaN, NaN, NaN, NaN, 1, 1, 1, 1},  {inf, inf, inf, inf, 0.5, 0.5, 0.5, 0.5}, {-inf, 1, 1, -inf, 0, 1, 1, 0},
        {3, 1, 3, 1, 1, 0, 0, 1},
    };
    for (const Case& k : cases) {
        INFO("a = ", k.a, ", b = ", k.b);
        for (bool larger : {true, false}) {
            ad::Tape tape;
            auto a = ad::param(Array<double>{k.a}), b = ad::param(Array<double>{k.b});
            auto y = larger ? ad::maximum(a, b) : ad::minimum(a, b);
            finite_start(y).backward(Array<double>{1.0});
            CHECK(same(y.value(), Array<double>{larger ? k.max : k.min}));
            CHECK(same(a.grad(), Array<double>{larger ? k.max_ga : k.min_ga}));
            CHECK(same(b.grad(), Array<double>{larger ? k.max_gb : k.min_gb}));
        }
    }
}

TEST_CASE("special values: norm of order infinity shares among the tied and NaN magnitudes, times sign (0 at NaN)") {
    // libtorch: torch::linalg_vector_norm(x, ord), a cotangent of ones.
    check_op([](const Var<double>& x) { return ad::norm(x, inf); }, {-3, 3, 1}, 3.0, {-0.5, 0.5, 0});
    check_op([](const Var<double>& x) { return ad::norm(x, inf); }, {-3, NaN, 1, NaN}, NaN, {0, 0, 0, 0});
    check_op([](const Var<double>& x) { return ad::norm(x, inf, 0); }, {-3, NaN, 1, NaN}, NaN, {0, 0, 0, 0});
    check_op([](const Var<double>& x) { return ad::norm(x, 2); }, {-3, NaN, 1}, NaN, {NaN, NaN, NaN});
    check_op([](const Var<double>& x) { return ad::norm(x, 2); }, {-3, inf, 1}, inf, {0, NaN, 0});
    check_op([](const Var<double>& x) { return ad::norm(x, 1); }, {-3, -inf, 1}, inf, {-1, -1, 1});
}

TEST_CASE("special values: logsumexp with infinities and NaN, as libtorch's") {
    // libtorch: torch::logsumexp(x, 0), a cotangent of ones.
    auto lse = [](const Var<double>& x) { return ad::logsumexp(x, 0); };
    check_op(lse, {inf, 1}, inf, {NaN, 0});
    check_op(lse, {-inf, -inf}, -inf, {NaN, NaN});
    check_op(lse, {inf, inf}, inf, {NaN, NaN});
    check_op(lse, {NaN, 1}, NaN, {NaN, NaN});
    check_op(lse, {inf, -inf}, inf, {NaN, 0});
    check_op(lse, {-inf, 1}, 1.0, {0, 1});
    check_op(lse, {inf, NaN}, NaN, {NaN, NaN});
    check_op(lse, {-inf}, -inf, {NaN});
    check_op(lse, {1, 2, 3}, 3.4076059644443806, {0.090030573170380435, 0.24472847105479759, 0.66524095577482167});
    check_op([](const Var<double>& x) { return ad::logsumexp(x); }, {-inf, -inf}, -inf, {NaN, NaN});
}

TEST_CASE("special values: cumsum through infinities and NaN, as libtorch's") {
    // libtorch: torch::cumsum(x, dim), gradients for the cotangent 1, 2, ...
    auto cumsum0 = [](const Var<double>& x) { return ad::cumsum(x, 0); };
    check_op(cumsum0, {1, inf, -inf, 2}, {1, inf, NaN, NaN}, {10, 9, 7, 4}, Seed::counting);
    check_op(cumsum0, {1, NaN, 2}, {1, NaN, NaN}, {6, 5, 3}, Seed::counting);
    check_op([](const Var<double>& x) { return ad::cumsum(x, 1); }, {{1, 2, 3}, {4, 5, 6}}, {{1, 3, 6}, {4, 9, 15}},
             {{6, 5, 3}, {15, 11, 6}}, Seed::counting);
}

TEST_CASE("special values: prod with zeros, NaN and infinities, as libtorch's") {
    // libtorch: x.prod(), x.prod(1), a cotangent of ones.
    auto prod_all = [](const Var<double>& x) { return ad::prod(x); };
    check_op(prod_all, {2, 0, 3}, 0.0, {0, 6, 0});
    check_op(prod_all, {0, 0, 3}, 0.0, {0, 0, 0});
    check_op(prod_all, {2, 3, 4}, 24.0, {12, 8, 6});
    check_op(prod_all, {2, NaN, 0}, NaN, {NaN, 0, NaN});
    check_op(prod_all, {inf, 0, 2}, NaN, {0, inf, NaN});
    check_op([](const Var<double>& x) { return ad::prod(x, 1); }, {{2, 0, 3}, {0, 0, 5}}, {0, 0}, {{0, 6, 0}, {0, 0, 0}});
    // libtorch gives [NaN, -inf] for {-inf, 2}: without a zero it divides y by x (-inf / -inf).
    // tapegrad's exclusive products give the derivative itself, 2, there.
    check_op(prod_all, {-inf, 2}, -inf, {2, -inf});
}

TEST_CASE("special values: var and std with NaN, infinities and too few values, as libtorch's") {
    // libtorch: x.var(), x.std(), torch::var(x, nullopt, correction 0), a cotangent of ones.
    check_op([](const Var<double>& x) { return ad::var(x); }, {2, NaN, 2}, NaN, {NaN, NaN, NaN});
    check_op([](const Var<double>& x) { return ad::var(x); }, {2, inf, 2}, NaN, {-inf, NaN, -inf});
    check_op([](const Var<double>& x) { return ad::std(x); }, {2, 2, 2}, 0.0, {0, 0, 0});
    check_op([](const Var<double>& x) { return ad::var(x, std::nullopt, 0); }, {2}, 0.0, {0});
    // n <= correction: libtorch divides by max(0, n - correction), so one value gives NaN and
    // [1, 3] with correction 3 inf (their gradients over all axes are an internal error of
    // libtorch 1.13.1 at n = correction, and use n - correction < 0 below it: not compared).
    CHECK(std::isnan(ad::var(ad::constant(Array<double>{2})).item()));
    CHECK(std::isnan(ad::std(ad::constant(Array<double>{2})).item()));
    CHECK(std::isnan(ad::var(ad::constant(Array<double>{{1, 2, 3}}), 0).value()(1)));
    CHECK(ad::var(ad::constant(Array<double>{1, 3}), std::nullopt, 3).item() == inf);
    // libtorch: torch::var and torch::std of [[1, 3], [2, 2]] along dim 1 with correction 2, and
    // torch::var of [[1, 2, 3]] along dim 0 with correction 1: 2 g (x - mean) / 0.
    const Array<double> pairs{{1, 3}, {2, 2}};
    check_op([](const Var<double>& x) { return ad::var(x, 1, 2); }, pairs, {inf, NaN}, {{-inf, inf}, {NaN, NaN}});
    check_op([](const Var<double>& x) { return ad::std(x, 1, 2); }, pairs, {inf, NaN}, {{NaN, NaN}, {NaN, NaN}});
    check_op([](const Var<double>& x) { return ad::var(x, 0, 1); }, {{1, 2, 3}}, {NaN, NaN, NaN}, {{NaN, NaN, NaN}});
}

TEST_CASE("special values: reductions over zero elements give libtorch's identity, NaN, or an error naming the op") {
    // libtorch, for x of shape (0), (0, 3) and (2, 0): sum 0, prod 1, logsumexp -inf, norm of
    // order 1 or 2 0; mean, var and std NaN; max, min, argmax, argmin and norm of order inf an
    // error. Gradients are empty, x's shape.
    for (const Array<double>& x : {empty({0}), empty({0, 3}), empty({2, 0})}) {
        const std::string s = ad::shape_string_of(x);
        INFO("x of shape ", s);
        check_op([](const Var<double>& v) { return ad::sum(v); }, x, 0.0, x);
        check_op([](const Var<double>& v) { return ad::prod(v); }, x, 1.0, x);
        check_op([](const Var<double>& v) { return ad::logsumexp(v); }, x, -inf, x);
        check_op([](const Var<double>& v) { return ad::norm(v, 2); }, x, 0.0, x);
        check_op([](const Var<double>& v) { return ad::norm(v, 1); }, x, 0.0, x);
        check_op([](const Var<double>& v) { return ad::mean(v); }, x, NaN, x);
        check_op([](const Var<double>& v) { return ad::var(v); }, x, NaN, x);
        check_op([](const Var<double>& v) { return ad::std(v); }, x, NaN, x);
        check_op([](const Var<double>& v) { return ad::var(v, std::nullopt, 0); }, x, NaN, x);
        const auto c = ad::constant(x);
        CHECK_THROWS_WITH_AS(ad::max(c), ("max: the value is empty (shape " + s + ")").c_str(), ad::value_error);
        CHECK_THROWS_WITH_AS(ad::min(c), ("min: the value is empty (shape " + s + ")").c_str(), ad::value_error);
        CHECK_THROWS_WITH_AS(ad::argmax(c), ("argmax: the value is empty (shape " + s + ")").c_str(), ad::value_error);
        CHECK_THROWS_WITH_AS(ad::argmin(c), ("argmin: the value is empty (shape " + s + ")").c_str(), ad::value_error);
        CHECK_THROWS_WITH_AS(ad::norm(c, inf), ("norm: the value is empty (shape " + s + ")").c_str(), ad::value_error);
    }
}

TEST_CASE("special values: reductions along an empty axis, and along a full axis of an empty value, as libtorch's") {
    // Along the empty axis: libtorch's sum(d) 0, prod(d) 1, logsumexp(d) -inf, norm 2 0, mean,
    // var, std NaN, one per remaining element; amax, amin, argmax, argmin, norm inf an error.
    const Array<double> x = empty({0, 3});
    check_op([](const Var<double>& v) { return ad::sum(v, 0); }, x, {0, 0, 0}, x);
    check_op([](const Var<double>& v) { return ad::prod(v, 0); }, x, {1, 1, 1}, x);
    check_op([](const Var<double>& v) { return ad::logsumexp(v, 0); }, x, {-inf, -inf, -inf}, x);
    check_op([](const Var<double>& v) { return ad::norm(v, 2, 0); }, x, {0, 0, 0}, x);
    check_op([](const Var<double>& v) { return ad::mean(v, 0); }, x, {NaN, NaN, NaN}, x);
    check_op([](const Var<double>& v) { return ad::var(v, 0); }, x, {NaN, NaN, NaN}, x);
    check_op([](const Var<double>& v) { return ad::std(v, 0); }, x, {NaN, NaN, NaN}, x);
    const Array<double> x20 = empty({2, 0});
    check_op([](const Var<double>& v) { return ad::mean(v, 1); }, x20, {NaN, NaN}, x20);
    check_op([](const Var<double>& v) { return ad::logsumexp(v, -1); }, x20, {-inf, -inf}, x20);
    const auto c = ad::constant(x);
    CHECK_THROWS_WITH_AS(ad::max(c, 0), "max: axis 0 of shape (0, 3) is empty", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::min(c, 0), "min: axis 0 of shape (0, 3) is empty", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::argmax(c, 0), "argmax: axis 0 of shape (0, 3) is empty", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::argmin(c, 0), "argmin: axis 0 of shape (0, 3) is empty", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::norm(c, inf, 0), "norm: axis 0 of shape (0, 3) is empty", ad::value_error);
    // Along the full axis 1 of (0, 3): every reduction gives an empty (0,).
    for (auto f : std::vector<std::function<Var<double>(const Var<double>&)>>{
             [](const Var<double>& v) { return ad::sum(v, 1); }, [](const Var<double>& v) { return ad::mean(v, 1); },
             [](const Var<double>& v) { return ad::prod(v, 1); }, [](const Var<double>& v) { return ad::max(v, 1); },
             [](const Var<double>& v) { return ad::min(v, 1); }, [](const Var<double>& v) { return ad::var(v, 1); },
             [](const Var<double>& v) { return ad::std(v, 1); }, [](const Var<double>& v) { return ad::logsumexp(v, 1); },
             [](const Var<double>& v) { return ad::norm(v, 2, 1); }, [](const Var<double>& v) { return ad::norm(v, inf, 1); },
             [](const Var<double>& v) { return ad::cumsum(v, 1); }, [](const Var<double>& v) { return ad::softmax(v, 1); },
             [](const Var<double>& v) { return ad::log_softmax(v, 0); }}) {
        const Result r = run(f, x);
        CHECK(r.value.size() == 0);
        CHECK(r.grad.shape() == x.shape());
    }
    CHECK(ad::argmax(c, 1).shape() == ad::Shape{0});
}

TEST_CASE("special values: losses over zero elements are NaN for a mean and 0 for a sum, as libtorch's") {
    // libtorch: F::mse_loss, l1_loss, huber_loss, binary_cross_entropy of (0) and (0, 3);
    // F::cross_entropy and nll_loss of (0, 3) logits and no classes, with and without label
    // smoothing 0.1; F::cross_entropy of (0, 3) and (2, 0) logits against probabilities.
    using Loss = std::function<Var<double>(const Var<double>&, Reduction)>;
    for (const Array<double>& x : {empty({0}), empty({0, 3})}) {
        INFO("x of shape ", ad::shape_string_of(x));
        const auto t = ad::constant(x);
        for (const Loss& loss : std::vector<Loss>{
                 [t](const Var<double>& p, Reduction r) { return ad::mse(p, t, r); },
                 [t](const Var<double>& p, Reduction r) { return ad::l1_loss(p, t, r); },
                 [t](const Var<double>& p, Reduction r) { return ad::huber_loss(p, t, 1.0, r); },
                 [t](const Var<double>& p, Reduction r) { return ad::binary_cross_entropy(p, t, r); },
                 [t](const Var<double>& p, Reduction r) { return ad::half_sse(p, t, r); }}) {
            check_op([&](const Var<double>& p) { return loss(p, Reduction::mean); }, x, NaN, x);
            check_op([&](const Var<double>& p) { return loss(p, Reduction::sum); }, x, 0.0, x);
        }
    }
    const Array<double> logits = empty({0, 3});
    const IndexArray none = IndexArray::from_shape({0});
    for (const Loss& loss : std::vector<Loss>{
             [none](const Var<double>& z, Reduction r) { return ad::cross_entropy(z, none, r); },
             [none](const Var<double>& z, Reduction r) { return ad::cross_entropy(z, none, r, 0.1); },
             [none](const Var<double>& z, Reduction r) { return ad::nll_loss(z, none, r); },
             [](const Var<double>& z, Reduction r) { return ad::softmax_cross_entropy(z, std::vector<std::size_t>{}, r); },
             [](const Var<double>& z, Reduction r) {
                 return ad::softmax_cross_entropy(z, ad::constant(Array<double>::from_shape(z.shape())), r);
             }}) {
        check_op([&](const Var<double>& z) { return loss(z, Reduction::mean); }, logits, NaN, logits);
        check_op([&](const Var<double>& z) { return loss(z, Reduction::sum); }, logits, 0.0, logits);
    }
    // (2, 0) logits: against probabilities NaN for a mean and -0 for a sum; against classes
    // libtorch's "Target 0 is out of bounds".
    const Array<double> no_classes = empty({2, 0});
    const auto probs = ad::constant(no_classes);
    check_op([&](const Var<double>& z) { return ad::softmax_cross_entropy(z, probs); }, no_classes, NaN, no_classes);
    check_op([&](const Var<double>& z) { return ad::softmax_cross_entropy(z, probs, Reduction::sum); }, no_classes, 0.0,
             no_classes);
    CHECK_THROWS_WITH_AS(ad::cross_entropy(ad::constant(no_classes), IndexArray{0, 0}),
                         "cross_entropy: class 0 of row 0 is out of range for 0 classes", ad::value_error);
    // backward from the NaN mean of an empty batch is the value_error of any NaN loss; the
    // losses' VJPs themselves send back an empty gradient, so a parameter before them gets zeros.
    ad::Tape tape;
    auto b = ad::param(Array<double>{1.0, 2.0, 3.0});
    auto z = ad::constant(logits) + b;
    auto loss = ad::cross_entropy(z, none, Reduction::mean, 0.1) + ad::mse(z, ad::constant(logits));
    CHECK(std::isnan(loss.item()));
    CHECK_THROWS_WITH_AS(loss.backward(), "backward: the value of shape () holds nan; its gradients would be meaningless",
                         ad::value_error);
    finite_start(loss).backward();
    CHECK(b.grad() == Array<double>{0.0, 0.0, 0.0});
}

TEST_CASE("special values: cross-entropy with infinite and NaN logits, as libtorch's") {
    // libtorch: F::cross_entropy(logits, classes) and against probabilities [1, 0], a cotangent of ones.
    auto ce = [](std::int64_t cls) {
        return [cls](const Var<double>& z) { return ad::cross_entropy(z, IndexArray{cls}); };
    };
    check_op(ce(0), {{1, inf}}, NaN, {{NaN, NaN}});
    check_op(ce(0), {{1, -inf}}, 0.0, {{0, 0}});
    check_op(ce(1), {{1, -inf}}, inf, {{1, -1}});
    check_op(ce(0), {{-inf, -inf}}, NaN, {{NaN, NaN}});
    check_op([](const Var<double>& z) { return ad::softmax_cross_entropy(z, ad::constant(Array<double>{{1, 0}})); },
             {{1, -inf}}, NaN, {{0, 0}});
}

TEST_CASE("special values: activations at NaN and infinities, as libtorch's") {
    // libtorch: torch::relu, leaky_relu(x, 0.01), elu, hardtanh, clamp(x, -1, 1), sigmoid, softplus,
    // tanh, abs, sign, log_sigmoid of x = [nan, inf, -inf, 0, -1, 2], a cotangent of ones.
    const Array<double> x{NaN, inf, -inf, 0, -1, 2};
    check_op([](const Var<double>& v) { return ad::relu(v); }, x, {NaN, inf, 0, 0, 0, 2}, {1, 1, 0, 0, 0, 1});
    check_op([](const Var<double>& v) { return ad::leaky_relu(v, 0.01); }, x, {NaN, inf, -inf, 0, -0.01, 2},
             {0.01, 1, 0.01, 0.01, 0.01, 1});
    check_op([](const Var<double>& v) { return ad::elu(v); }, x, {NaN, inf, -1, 0, -0.63212055882855767, 2},
             {1, 1, 0, 1, 0.36787944117144233, 1});
    check_op([](const Var<double>& v) { return ad::hardtanh(v); }, x, {NaN, 1, -1, 0, -1, 1}, {1, 0, 0, 1, 0, 0});
    check_op([](const Var<double>& v) { return ad::clamp(v, -1.0, 1.0); }, x, {NaN, 1, -1, 0, -1, 1}, {0, 0, 0, 1, 1, 0});
    check_op([](const Var<double>& v) { return ad::sigmoid(v); }, x,
             {NaN, 1, 0, 0.5, 0.2689414213699951, 0.88079707797788231},
             {NaN, 0, 0, 0.25, 0.19661193324148185, 0.10499358540350662});
    check_op([](const Var<double>& v) { return ad::softplus(v); }, x,
             {NaN, inf, 0, 0.69314718055994529, 0.31326168751822286, 2.1269280110429727},
             {NaN, 1, 0, 0.5, 0.2689414213699951, 0.88079707797788243});
    check_op([](const Var<double>& v) { return ad::tanh(v); }, x,
             {NaN, 1, -1, 0, -0.76159415595576485, 0.9640275800758169},
             {NaN, 0, 0, 1, 0.41997434161402614, 0.070650824853164429});
    check_op([](const Var<double>& v) { return ad::abs(v); }, x, {NaN, inf, inf, 0, 1, 2}, {0, 1, -1, 0, -1, 1});
    check_op([](const Var<double>& v) { return ad::sign(v); }, x, {0, 1, -1, 0, -1, 1}, {0, 0, 0, 0, 0, 0});
    check_op([](const Var<double>& v) { return ad::log_sigmoid(v); }, x,
             {NaN, 0, -inf, -0.69314718055994529, -1.3132616875182228, -0.12692801104297249},
             {NaN, 0, 1, 0.5, 0.7310585786300049, 0.11920292202211755});
    // libtorch: torch::gelu, silu, mish (at -inf, x times a vanishing factor is -inf * 0 = NaN in both).
    check_op([](const Var<double>& v) { return ad::gelu(v); }, x,
             {NaN, inf, NaN, 0, -0.15865525393145702, 1.9544997361036416},
             {NaN, NaN, NaN, 0.5, -0.083315470587686347, 1.0852318010781969});
    check_op([](const Var<double>& v) { return ad::silu(v); }, x,
             {NaN, inf, NaN, 0, -0.2689414213699951, 1.7615941559557646},
             {NaN, NaN, NaN, 0.5, 0.072329488128513253, 1.0907842487848955});
    check_op([](const Var<double>& v) { return ad::mish(v); }, x,
             {NaN, inf, NaN, 0, -0.30340146137410895, 1.9439589595339946},
             {NaN, NaN, NaN, 0.59999999999999998, 0.059216755877395014, 1.0693179342794896});
    // libtorch's softsign is composed (x / (1 + |x|)), so its gradient at +-inf is inf / inf = NaN;
    // tapegrad's fused 1 / (1 + |x|)^2 gives the limit 0 there. The other elements agree.
    check_op([](const Var<double>& v) { return ad::softsign(v); }, x, {NaN, NaN, NaN, 0, -0.5, 0.66666666666666663},
             {NaN, 0, 0, 1, 0.25, 0.1111111111111111});
}
