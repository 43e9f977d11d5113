#include "support/test_support.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <string>

#include <fmt/format.h>

using ad::Array;
using ad::Shape;
using ad::Var;
using ad::test::Vars;

namespace {

/// x reduced along `axis` by folding `combine` over every element in turn:
/// the reduction spelled out with loops, independent of xtensor's reducers.
Array<double> reduce_reference(const Array<double>& x, std::size_t axis, bool keepdims, double init,
                               const std::function<double(double, double)>& combine) {
    Shape x_shape = ad::shape_of(x);
    Shape kept = x_shape;
    kept[axis] = 1;
    Array<double> y = Array<double>::from_shape(kept);
    y.fill(init);
    for (std::size_t flat = 0; flat < x.size(); ++flat) {
        Shape index = ad::test::unravel(flat, x_shape);
        index[axis] = 0;
        double& out = y.data()[ad::test::ravel(index, kept)];
        out = combine(out, x.data()[flat]);
    }
    if (!keepdims) {
        kept.erase(kept.begin() + static_cast<long>(axis));
        y.reshape(kept);
    }
    return y;
}

double sum_all(const Array<double>& x) {
    double total = 0;
    for (double v : x) total += v;
    return total;
}

double max_all(const Array<double>& x) {
    double m = -std::numeric_limits<double>::infinity();
    for (double v : x) m = std::max(m, v);
    return m;
}

/// x summed onto `shape` element by element: each element lands where
/// broadcasting `shape` up to x's shape would have read it from.
Array<double> sum_to_reference(const Array<double>& x, const Shape& shape) {
    Shape x_shape = ad::shape_of(x);
    std::size_t lead = x_shape.size() - shape.size();
    Array<double> y = xt::zeros<double>(shape);
    for (std::size_t flat = 0; flat < x.size(); ++flat) {
        Shape index = ad::test::unravel(flat, x_shape);
        Shape target(shape.size());
        for (std::size_t d = 0; d < shape.size(); ++d) target[d] = shape[d] == 1 ? 0 : index[lead + d];
        y.data()[ad::test::ravel(target, shape)] += x.data()[flat];
    }
    return y;
}

using AxisReduction = Var<double> (*)(const Var<double>&, long, bool);

struct AxisCase {
    const char* name;
    AxisReduction op;
    std::function<Array<double>(const Array<double>&, std::size_t, bool)> reference;
};

const AxisCase axis_cases[] = {
    {"sum", [](const Var<double>& x, long axis, bool keep) { return ad::sum(x, axis, keep); },
     [](const Array<double>& x, std::size_t axis, bool keep) {
         return reduce_reference(x, axis, keep, 0.0, [](double a, double b) { return a + b; });
     }},
    {"mean", [](const Var<double>& x, long axis, bool keep) { return ad::mean(x, axis, keep); },
     [](const Array<double>& x, std::size_t axis, bool keep) {
         double n = static_cast<double>(x.shape()[axis]);
         return reduce_reference(x, axis, keep, 0.0, [n](double a, double b) { return a + b / n; });
     }},
    {"max", [](const Var<double>& x, long axis, bool keep) { return ad::max(x, axis, keep); },
     [](const Array<double>& x, std::size_t axis, bool keep) {
         return reduce_reference(x, axis, keep, -std::numeric_limits<double>::infinity(),
                                 [](double a, double b) { return std::max(a, b); });
     }},
};

}  // namespace

TEST_CASE("sum, mean, max over all axes: forward values match loops over random shapes") {
    std::mt19937_64 rng(5);
    for (int round = 0; round < 10; ++round) {
        Shape s = ad::test::random_shape(rng, 0, 4);
        Array<double> x0 = ad::test::uniform(s, rng());
        INFO(fmt::format("shape {}", ad::shape_string(s)));
        auto x = ad::constant(x0);
        auto total = ad::sum(x), average = ad::mean(x), largest = ad::max(x);
        CHECK(total.dim() == 0);
        CHECK(average.dim() == 0);
        CHECK(largest.dim() == 0);
        CHECK(total.item() == doctest::Approx(sum_all(x0)).epsilon(1e-12));
        CHECK(average.item() == doctest::Approx(sum_all(x0) / static_cast<double>(x0.size())).epsilon(1e-12));
        CHECK(largest.item() == max_all(x0));
    }
}

TEST_CASE("sum, mean, max along one axis: forward values match loops for every axis, negative axes, keepdims both ways") {
    std::mt19937_64 rng(6);
    for (const auto& c : axis_cases) {
        for (int round = 0; round < 4; ++round) {
            Shape s = ad::test::random_shape(rng, 1, 4);
            Array<double> x0 = ad::test::uniform(s, rng());
            long rank = static_cast<long>(s.size());
            for (long axis = -rank; axis < rank; ++axis) {
                for (bool keep : {false, true}) {
                    INFO(fmt::format("{} of {} along {}, keepdims {}", c.name, ad::shape_string(s), axis, keep));
                    std::size_t ax = static_cast<std::size_t>(axis < 0 ? axis + rank : axis);
                    CHECK(ad::test::matches(c.op(ad::constant(x0), axis, keep).value(), c.reference(x0, ax, keep)));
                }
            }
        }
    }
}

TEST_CASE("sum along one axis: narrow and wide rows (fewer and more elements than a vector) match the loops") {
    std::mt19937_64 rng(7);
    for (const Shape& s : {Shape{5, 1}, Shape{5, 3}, Shape{5, 7}, Shape{5, 8}, Shape{5, 17}, Shape{2, 5, 3}, Shape{2, 5, 9}}) {
        Array<double> x0 = ad::test::uniform(s, rng());
        for (std::size_t axis = 0; axis < s.size(); ++axis) {
            INFO(fmt::format("sum of {} along {}", ad::shape_string(s), axis));
            CHECK(ad::test::matches(ad::sum(ad::constant(x0), long(axis)).value(), axis_cases[0].reference(x0, axis, false)));
        }
    }
}

TEST_CASE("sum, mean, max over all axes: gradients match finite differences over random shapes") {
    std::mt19937_64 rng(7);
    for (int round = 0; round < 6; ++round) {
        Shape s = ad::test::random_shape(rng, 0, 4);
        INFO(fmt::format("shape {}", ad::shape_string(s)));
        // max has a kink where two elements tie; distinct magnitudes keep it away.
        std::vector<Array<double>> inputs{ad::test::away_from_zero(s, rng())};
        CHECK_GRADCHECK([](const Vars& v) { return ad::sum(v[0]); }, inputs);
        CHECK_GRADCHECK([](const Vars& v) { return ad::mean(v[0]); }, inputs);
        CHECK_GRADCHECK([](const Vars& v) { return ad::max(v[0]); }, inputs);
        // Through a nonlinearity, so the cotangent reaching the reduction is not constant.
        CHECK_GRADCHECK([](const Vars& v) { return ad::square(ad::max(v[0]) + ad::mean(v[0]) * ad::sum(v[0])); }, inputs);
    }
}

TEST_CASE("sum, mean, max along one axis: gradients match finite differences for every axis and keepdims") {
    int checked = 0;
    for (const auto& c : axis_cases) {
        std::mt19937_64 rng(8);
        for (int round = 0; round < 3; ++round) {
            Shape s = ad::test::random_shape(rng, 1, 3);
            std::vector<Array<double>> inputs{ad::test::away_from_zero(s, rng())};
            long rank = static_cast<long>(s.size());
            for (long axis = -rank; axis < rank; ++axis) {
                for (bool keep : {false, true}) {
                    INFO(fmt::format("{} of {} along {}, keepdims {}", c.name, ad::shape_string(s), axis, keep));
                    AxisReduction op = c.op;
                    CHECK_GRADCHECK(([op, axis, keep](const Vars& v) { return op(v[0], axis, keep); }), inputs);
                    ++checked;
                }
            }
        }
    }
    CHECK(checked >= 3 * 3 * 2);
}

TEST_CASE("max: tied maxima share the gradient evenly") {
    // Over all axes: three elements tie at 3, so each receives 1/3 of the cotangent.
    ad::Tape tape;
    auto x = ad::param(Array<double>{{3.0, 1.0, 3.0}, {-2.0, 3.0, 0.0}});
    ad::max(x).backward();
    CHECK(xt::allclose(x.grad(), Array<double>{{1.0 / 3, 0.0, 1.0 / 3}, {0.0, 1.0 / 3, 0.0}}));
    // Along rows: row 0 ties twice (1/2 each), row 1 has one maximum. The
    // cotangent (1, 10) of the two row maxima scales each row's share.
    auto y = ad::param(Array<double>{{3.0, 1.0, 3.0}, {-2.0, 3.0, 0.0}});
    ad::sum(ad::max(y, 1) * ad::constant(Array<double>{1.0, 10.0})).backward();
    CHECK(xt::allclose(y.grad(), Array<double>{{0.5, 0.0, 0.5}, {0.0, 10.0, 0.0}}));
    // Along columns with keepdims: column 0 and 2 have one maximum each; column 1 ties.
    auto z = ad::param(Array<double>{{3.0, 1.0, 3.0}, {-2.0, 1.0, 4.0}});
    ad::sum(ad::max(z, -2, true)).backward();
    CHECK(xt::allclose(z.grad(), Array<double>{{1.0, 0.5, 0.0}, {0.0, 0.5, 1.0}}));
}

TEST_CASE("sum_to_shape: forward sums over broadcast axes and the gradient matches finite differences") {
    struct Case {
        Shape from, to;
    };
    const Case cases[] = {
        {{2, 3}, {2, 3}}, {{2, 3}, {3}},       {{2, 3}, {1, 3}},       {{2, 3}, {2, 1}},    {{2, 3}, {}},
        {{2, 3}, {1, 1}}, {{4, 2, 3}, {2, 3}}, {{4, 2, 3}, {4, 1, 3}}, {{4, 2, 3}, {1, 1}}, {{3, 1, 2}, {1, 2}},
        {{}, {}},         {{5}, {1}},
    };
    std::mt19937_64 rng(9);
    for (const auto& c : cases) {
        INFO(fmt::format("{} to {}", ad::shape_string(c.from), ad::shape_string(c.to)));
        Array<double> x0 = ad::test::uniform(c.from, rng());
        CHECK(ad::test::matches(ad::sum_to_shape(ad::constant(x0), c.to).value(), sum_to_reference(x0, c.to)));
        Shape to = c.to;
        CHECK_GRADCHECK(([to](const Vars& v) { return ad::sum_to_shape(v[0], to); }), (std::vector<Array<double>>{x0}));
    }
}

TEST_CASE("reduce ops: a bad axis is a value_error naming the op, the axis and the rank") {
    auto x = ad::constant(Array<double>::from_shape({2, 3}));
    CHECK_THROWS_WITH_AS(ad::sum(x, 2), "sum: axis 2 is out of range for a value of rank 2", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::sum(x, -3, true), "sum: axis -3 is out of range for a value of rank 2", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::mean(x, 5), "mean: axis 5 is out of range for a value of rank 2", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::max(x, -3), "max: axis -3 is out of range for a value of rank 2", ad::value_error);
    auto s = ad::constant(Array<double>(1.0));
    CHECK_THROWS_WITH_AS(ad::sum(s, 0), "sum: axis 0 is out of range for a value of rank 0", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::max(s, -1), "max: axis -1 is out of range for a value of rank 0", ad::value_error);
}

TEST_CASE("reduce ops: the mean of nothing is NaN, as torch's; the max of nothing is a value_error naming the op and the shape") {
    auto empty = ad::constant(Array<double>::from_shape({0, 3}));
    CHECK(std::isnan(ad::mean(empty).item()));
    CHECK_THROWS_WITH_AS(ad::max(empty), "max: the value is empty (shape (0, 3))", ad::value_error);
    const Array<double> means = ad::mean(empty, 0).value();
    CHECK(means.shape() == Shape{3});
    CHECK(std::all_of(means.begin(), means.end(), [](double v) { return std::isnan(v); }));
    CHECK_THROWS_WITH_AS(ad::max(empty, -2, true), "max: axis -2 of shape (0, 3) is empty", ad::value_error);
}

TEST_CASE("reduce ops: empty values reduce to zeros or to empty values, and gradients flow through them") {
    // Summing nothing gives 0, like NumPy; reducing along a non-empty axis of an empty value gives an empty value.
    auto empty = ad::constant(Array<double>::from_shape({0, 3}));
    CHECK(ad::sum(empty).item() == 0.0);
    CHECK(ad::test::matches(ad::sum(empty, 0).value(), Array<double>{0.0, 0.0, 0.0}));
    CHECK(ad::test::matches(ad::sum(empty, -2, true).value(), Array<double>(xt::zeros<double>({1, 3}))));
    CHECK(ad::sum(empty, 1).shape() == Shape{0});
    CHECK(ad::mean(empty, 1, true).shape() == Shape{0, 1});
    CHECK(ad::max(empty, 1).shape() == Shape{0});
    CHECK(ad::test::matches(ad::sum_to_shape(empty, {3}).value(), Array<double>{0.0, 0.0, 0.0}));
    CHECK(ad::sum_to_shape(empty, {0, 1}).shape() == Shape{0, 1});
    // An empty batch broadcast against a parameter: the parameter's gradient is the sum of nothing.
    ad::Tape tape;
    auto b = ad::param(Array<double>{1.0, 2.0, 3.0});
    ad::sum(ad::sum(empty + b, 0) + ad::max(empty * b, 1, true)).backward();
    CHECK(b.grad() == Array<double>{0.0, 0.0, 0.0});
}

TEST_CASE("sum_to_shape: a shape that does not broadcast to the value's is a shape_error") {
    auto x = ad::constant(Array<double>::from_shape({2, 3}));
    CHECK_THROWS_WITH_AS(ad::sum_to_shape(x, {4}), "sum_to_shape: cannot sum (2, 3) to (4,)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::sum_to_shape(x, {3, 2}), "sum_to_shape: cannot sum (2, 3) to (3, 2)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::sum_to_shape(x, {1, 2, 3}), "sum_to_shape: cannot sum (2, 3) to (1, 2, 3)", ad::shape_error);
}

TEST_CASE("reduce ops: a throwing op leaves the tape as it was") {
    ad::Tape tape;
    Array<double> x0 = ad::test::uniform({3, 4}, 12);
    auto x = ad::param(x0);
    auto y = ad::square(x);
    std::size_t before = tape.size();
    CHECK_THROWS_AS(ad::sum(y, 2), ad::value_error);
    CHECK_THROWS_AS(ad::mean(y, -3, true), ad::value_error);
    CHECK_THROWS_AS(ad::max(y, 7), ad::value_error);
    CHECK_THROWS_AS(ad::sum_to_shape(y, {4, 3}), ad::shape_error);
    CHECK_THROWS_AS(ad::max(ad::param(Array<double>::from_shape({0}))), ad::value_error);
    CHECK(tape.size() == before);
    ad::mean(y).backward();
    // d/dx mean(x^2) = 2x / n.
    CHECK(xt::allclose(x.grad(), 2.0 * x0 / 12.0));
}

TEST_CASE("reduce ops: float gradients agree with double ones") {
    Array<float> xf = xt::cast<float>(ad::test::away_from_zero({3, 4, 2}, 13));
    auto gradient = [](const auto& x0) {
        ad::Tape tape;
        auto x = ad::param(x0);
        auto w = ad::tanh(x);
        auto z = ad::sum(ad::max(w, 1) * ad::mean(w, -2)) + ad::sum(ad::square(ad::sum(w, 0, true))) +
                 ad::max(w) * ad::mean(w) + ad::sum(ad::sum_to_shape(w * w, {1, 2}));
        z.backward();
        return x.grad();
    };
    auto gf = gradient(xf);
    auto gd = gradient(Array<double>(xt::cast<double>(xf)));
    CHECK(ad::test::float_matches_double(gf, gd));
}

namespace {

/// A reduction of the second set, with its loop reference along one axis.
struct SliceReduction {
    const char* name;
    std::function<Var<double>(const Var<double>&, long, bool)> op;
    std::function<Array<double>(const Array<double>&, std::size_t, bool)> reference;
};

/// f applied to each slice along `axis` (as a vector), the slices' results in the reduced shape.
Array<double> per_slice(const Array<double>& x, std::size_t axis, bool keepdims,
                        const std::function<double(const std::vector<double>&)>& f) {
    Shape x_shape = ad::shape_of(x);
    Shape kept = x_shape;
    kept[axis] = 1;
    Array<double> y = Array<double>::from_shape(kept);
    for (std::size_t out = 0; out < y.size(); ++out) {
        Shape index = ad::test::unravel(out, kept);
        std::vector<double> slice;
        for (std::size_t k = 0; k < x_shape[axis]; ++k) {
            index[axis] = k;
            slice.push_back(x.data()[ad::test::ravel(index, x_shape)]);
        }
        y.data()[out] = f(slice);
    }
    if (!keepdims) {
        kept.erase(kept.begin() + static_cast<long>(axis));
        y.reshape(kept);
    }
    return y;
}

double mean_of(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / double(v.size()); }
double var_of(const std::vector<double>& v, std::size_t c) {
    double m = mean_of(v), s = 0;
    for (double e : v) s += (e - m) * (e - m);
    return s / double(v.size() - c);
}

const std::vector<SliceReduction>& axis_reductions() {
    static const std::vector<SliceReduction> table = {
        {"min", [](const Var<double>& x, long a, bool k) { return ad::min(x, a, k); },
         [](const Array<double>& x, std::size_t a, bool k) {
             return per_slice(x, a, k, [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); });
         }},
        {"prod", [](const Var<double>& x, long a, bool k) { return ad::prod(x, a, k); },
         [](const Array<double>& x, std::size_t a, bool k) {
             return per_slice(x, a, k, [](const std::vector<double>& v) {
                 return std::accumulate(v.begin(), v.end(), 1.0, std::multiplies<double>());
             });
         }},
        {"logsumexp", [](const Var<double>& x, long a, bool k) { return ad::logsumexp(x, a, k); },
         [](const Array<double>& x, std::size_t a, bool k) {
             return per_slice(x, a, k, [](const std::vector<double>& v) {
                 double s = 0;
                 for (double e : v) s += std::exp(e);
                 return std::log(s);
             });
         }},
        {"var c1", [](const Var<double>& x, long a, bool k) { return ad::var(x, a, 1, k); },
         [](const Array<double>& x, std::size_t a, bool k) {
             return per_slice(x, a, k, [](const std::vector<double>& v) { return var_of(v, 1); });
         }},
        {"var c0", [](const Var<double>& x, long a, bool k) { return ad::var(x, a, 0, k); },
         [](const Array<double>& x, std::size_t a, bool k) {
             return per_slice(x, a, k, [](const std::vector<double>& v) { return var_of(v, 0); });
         }},
        {"std", [](const Var<double>& x, long a, bool k) { return ad::std(x, a, 1, k); },
         [](const Array<double>& x, std::size_t a, bool k) {
             return per_slice(x, a, k, [](const std::vector<double>& v) { return std::sqrt(var_of(v, 1)); });
         }},
        {"norm 1", [](const Var<double>& x, long a, bool k) { return ad::norm(x, 1, a, k); },
         [](const Array<double>& x, std::size_t a, bool k) {
             return per_slice(x, a, k, [](const std::vector<double>& v) {
                 double s = 0;
                 for (double e : v) s += std::fabs(e);
                 return s;
             });
         }},
        {"norm 2", [](const Var<double>& x, long a, bool k) { return ad::norm(x, 2, a, k); },
         [](const Array<double>& x, std::size_t a, bool k) {
             return per_slice(x, a, k, [](const std::vector<double>& v) {
                 double s = 0;
                 for (double e : v) s += e * e;
                 return std::sqrt(s);
             });
         }},
        {"norm inf", [](const Var<double>& x, long a, bool k) { return ad::norm(x, INFINITY, a, k); },
         [](const Array<double>& x, std::size_t a, bool k) {
             return per_slice(x, a, k, [](const std::vector<double>& v) {
                 double m = 0;
                 for (double e : v) m = std::max(m, std::fabs(e));
                 return m;
             });
         }},
    };
    return table;
}

}  // namespace

TEST_CASE("min, prod, logsumexp, var, std, norm along one axis: forward values match loops, gradients match finite differences") {
    std::mt19937_64 rng(17);
    for (const auto& r : axis_reductions()) {
        for (int round = 0; round < 4; ++round) {
            Shape s = ad::test::random_shape(rng, 1, 3);
            s[0] = std::max<std::size_t>(s[0], 2);  // var needs two values per slice along axis 0
            for (auto& d : s) d = std::max<std::size_t>(d, 2);
            Array<double> x = ad::test::away_from_zero(s, rng(), 0.2);
            long axis = static_cast<long>(rng() % s.size()) - (round % 2 ? static_cast<long>(s.size()) : 0);
            bool keepdims = round % 3 == 0;
            std::size_t ax = ad::normalize_axis("test", axis, s.size());
            INFO(fmt::format("{} of {} along axis {} (keepdims {})", r.name, ad::shape_string(s), axis, keepdims));
            CHECK(ad::test::matches(r.op(ad::constant(x), axis, keepdims).value(), r.reference(x, ax, keepdims)));
            auto op = r.op;
            auto f = [op, axis, keepdims](const Vars& v) { return op(v[0], axis, keepdims); };
            CHECK_GRADCHECK(f, (std::vector<Array<double>>{x}));
        }
    }
}

TEST_CASE("min, prod, logsumexp, var, std, norm over all axes: forward values match loops, gradients match finite differences") {
    Array<double> x = ad::test::away_from_zero({3, 4}, 23, 0.2);
    Array<double> flat = x;
    flat.reshape({x.size()});
    struct Whole {
        const char* name;
        std::function<Var<double>(const Var<double>&)> op;
        const char* reduction;  // the axis reduction of the table whose reference gives it
    };
    const Whole wholes[] = {
        {"min", [](const Var<double>& v) { return ad::min(v); }, "min"},
        {"prod", [](const Var<double>& v) { return ad::prod(v); }, "prod"},
        {"logsumexp", [](const Var<double>& v) { return ad::logsumexp(v); }, "logsumexp"},
        {"var", [](const Var<double>& v) { return ad::var(v); }, "var c1"},
        {"var biased", [](const Var<double>& v) { return ad::var(v, std::nullopt, 0); }, "var c0"},
        {"std", [](const Var<double>& v) { return ad::std(v); }, "std"},
        {"norm 1", [](const Var<double>& v) { return ad::norm(v, 1); }, "norm 1"},
        {"norm 2", [](const Var<double>& v) { return ad::norm(v); }, "norm 2"},
        {"norm inf", [](const Var<double>& v) { return ad::norm(v, INFINITY); }, "norm inf"},
    };
    for (const auto& w : wholes) {
        INFO(w.name);
        const auto& table = axis_reductions();
        auto it = std::find_if(table.begin(), table.end(), [&](const SliceReduction& r) { return std::string(r.name) == w.reduction; });
        REQUIRE(it != table.end());
        Array<double> expected = it->reference(flat, 0, false);
        CHECK(ad::test::matches(w.op(ad::constant(x)).value(), expected));
        auto op = w.op;
        CHECK_GRADCHECK([op](const Vars& v) { return op(v[0]); }, (std::vector<Array<double>>{x}));
    }
}

TEST_CASE("prod: the gradient is the product of the others, exact where x has zeros") {
    ad::Tape tape;
    auto one_zero = ad::param(Array<double>{2.0, 0.0, 3.0, 4.0});
    ad::prod(one_zero).backward();
    CHECK(one_zero.grad() == Array<double>{0.0, 24.0, 0.0, 0.0});
    auto two_zeros = ad::param(Array<double>{{2.0, 0.0, 0.0}, {1.0, 2.0, 3.0}});
    ad::sum(ad::prod(two_zeros, 1)).backward();
    CHECK(two_zeros.grad() == Array<double>{{0.0, 0.0, 0.0}, {6.0, 3.0, 2.0}});
    CHECK(ad::prod(ad::constant(Array<double>(xt::zeros<double>({0})))).value()() == 1.0);  // the product of nothing
    // A second derivative at a zero is refused rather than returned wrong.
    auto z = ad::param(Array<double>{2.0, 0.0});
    CHECK_THROWS_WITH_AS(ad::grad(ad::prod(z), {z}, {.create_graph = true}),
                         "prod: a second derivative through a product of (2,) with zeros in it is not supported", ad::tape_error);
}

TEST_CASE("prod: a second derivative through the product of an empty value") {
    // Found by tests/fuzz/program_fuzzer: the recorded VJP looked for zeros
    // with xtensor's reducer, whose end pointer on an empty array is an
    // offset from a null pointer (UBSan: pointer-overflow). The product of
    // nothing is 1; its gradients are empty.
    ad::Tape tape;
    auto x = ad::param(Array<double>::from_shape({0, 2}));
    auto y = ad::prod(x);
    CHECK(y.item() == 1.0);
    auto g = ad::grad(y, {x}, {/*retain_graph=*/true, /*create_graph=*/true});
    REQUIRE(g.size() == 1);
    CHECK(g[0].shape() == Shape{0, 2});
    auto gg = ad::grad(ad::sum(g[0]), {x});
    CHECK(gg[0].shape() == Shape{0, 2});
    CHECK(ad::prod(x, 1, true).shape() == Shape{0, 1});
}

TEST_CASE("logsumexp: stable for large values and -inf") {
    const double inf = std::numeric_limits<double>::infinity();
    auto big = ad::logsumexp(ad::constant(Array<double>{1000.0, 1000.0})).value()();
    CHECK(big == doctest::Approx(1000.0 + std::log(2.0)));
    auto rows = ad::logsumexp(ad::constant(Array<double>{{-inf, -inf}, {0.0, -inf}}), 1).value();
    CHECK(rows(0) == -inf);
    CHECK(rows(1) == 0.0);
    ad::Tape tape;
    auto x = ad::param(Array<double>{1.0, 2.0, 3.0});
    ad::logsumexp(x).backward();
    Array<double> e = xt::exp(Array<double>{1.0, 2.0, 3.0});
    CHECK(ad::test::matches(x.grad(), Array<double>(e / xt::sum(e)())));  // softmax
}

TEST_CASE("std and the 2-norm: a zero gradient where the root is zero, as PyTorch's") {
    ad::Tape tape;
    auto constant_row = ad::param(Array<double>{{2.0, 2.0, 2.0}, {1.0, 2.0, 3.0}});
    ad::sum(ad::std(constant_row, 1)).backward();
    CHECK(constant_row.grad()(0, 0) == 0.0);
    CHECK(constant_row.grad()(0, 2) == 0.0);
    CHECK(constant_row.grad()(1, 0) == doctest::Approx(-0.5));  // (x - mean) / ((n - 1) std) = -1 / (2 * 1)
    auto zero = ad::param(Array<double>{0.0, 0.0});
    ad::norm(zero).backward();
    CHECK(zero.grad() == Array<double>{0.0, 0.0});
}

TEST_CASE("cumsum: running sums along an axis; the gradient is the running sums of g from the end") {
    ad::Tape tape;
    auto x = ad::param(Array<double>{{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}});
    auto y = ad::cumsum(x, -1);
    CHECK(y.value() == Array<double>{{1.0, 3.0, 6.0}, {4.0, 9.0, 15.0}});
    CHECK(ad::cumsum(x, 0).value() == Array<double>{{1.0, 2.0, 3.0}, {5.0, 7.0, 9.0}});
    y.backward(Array<double>{{1.0, 10.0, 100.0}, {1.0, 1.0, 1.0}});
    CHECK(x.grad() == Array<double>{{111.0, 110.0, 100.0}, {3.0, 2.0, 1.0}});
    CHECK_GRADCHECK([](const Vars& v) { return ad::cumsum(v[0], 1); }, (std::vector<Array<double>>{ad::test::uniform({2, 3, 2}, 3)}));
}

TEST_CASE("argmax and argmin: the first index at ties, NaN counts as the extreme, along an axis or flat") {
    auto x = ad::constant(Array<double>{{1.0, 5.0, 5.0}, {7.0, -2.0, -2.0}});
    CHECK(ad::argmax(x)() == 3);
    CHECK(ad::argmin(x)() == 4);
    CHECK(ad::argmax(x, 1) == ad::IndexArray{1, 0});
    CHECK(ad::argmin(x, -1) == ad::IndexArray{0, 1});
    CHECK(ad::argmax(x, 0, true) == ad::IndexArray{{1, 0, 0}});
    auto with_nan = ad::constant(Array<double>{1.0, std::nan(""), 9.0});
    CHECK(ad::argmax(with_nan)() == 1);
    CHECK(ad::argmin(with_nan)() == 1);
    CHECK_THROWS_WITH_AS(ad::argmax(ad::constant(Array<double>(xt::zeros<double>({0})))), "argmax: the value is empty (shape (0,))",
                         ad::value_error);
}

TEST_CASE("max and min: NaN propagates whatever its position, as in PyTorch") {
    const double nan = std::nan("");
    CHECK(std::isnan(ad::max(ad::constant(Array<double>{nan, 1.0})).value()()));
    CHECK(std::isnan(ad::max(ad::constant(Array<double>{1.0, nan})).value()()));
    CHECK(std::isnan(ad::min(ad::constant(Array<double>{1.0, nan})).value()()));
    auto rows = ad::max(ad::constant(Array<double>{{1.0, nan}, {3.0, 2.0}}), 1).value();
    CHECK(std::isnan(rows(0)));
    CHECK(rows(1) == 3.0);
}

TEST_CASE("reductions of the second set: bad arguments are typed errors naming the op, and the tape is unchanged") {
    ad::Tape tape;
    auto x = ad::param(Array<double>{{1.0, 2.0, 3.0}});
    std::size_t before = tape.size();
    CHECK_THROWS_WITH_AS(ad::norm(x, 3.0), "norm: order 3 is not 1, 2 or infinity (value of shape (1, 3))", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::min(x, 2), "min: axis 2 is out of range for a value of rank 2", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::logsumexp(x, 2), "logsumexp: axis 2 is out of range for a value of rank 2", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::var(x, -3), "var: axis -3 is out of range for a value of rank 2", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::std(x, 2), "std: axis 2 is out of range for a value of rank 2", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::cumsum(x, -3), "cumsum: axis -3 is out of range for a value of rank 2", ad::value_error);
    CHECK(tape.size() == before);
}

TEST_CASE("reductions of the second set: float gradients agree with double ones") {
    auto gradients = [](const auto& x0) {
        ad::Tape tape;
        auto x = ad::param(x0);
        auto z = ad::min(x) + ad::sum(ad::prod(x, 1)) + ad::logsumexp(x) + ad::var(x) + ad::sum(ad::std(x, 0)) +
                 ad::norm(x) + ad::norm(x, 1) + ad::sum(ad::cumsum(x, 1) * x);
        z.backward();
        return x.grad();
    };
    Array<float> xf = xt::cast<float>(ad::test::away_from_zero({3, 4}, 51, 0.3));
    CHECK(ad::test::float_matches_double(gradients(xf), gradients(Array<double>(xt::cast<double>(xf)))));
}
