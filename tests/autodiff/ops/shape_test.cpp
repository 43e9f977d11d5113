#include "support/test_support.hpp"

#include <algorithm>
#include <limits>
#include <numeric>
#include <string>

#include <fmt/format.h>
#include <fmt/ranges.h>

using ad::Array;
using ad::Shape;
using ad::Var;
using ad::test::Vars;

namespace {

/// y of `y_shape` whose element at index i is x at source(i): every shape op
/// is such a gather, spelled out here with index arithmetic alone.
template <class Source>
Array<double> gather_reference(const Array<double>& x, const Shape& y_shape, Source source) {
    Array<double> y = Array<double>::from_shape(y_shape);
    Shape x_shape = ad::shape_of(x);
    for (std::size_t flat = 0; flat < y.size(); ++flat) {
        y.data()[flat] = x.data()[ad::test::ravel(source(ad::test::unravel(flat, y_shape)), x_shape)];
    }
    return y;
}

/// Shape ops only move elements: the value must equal the reference exactly.
bool same(const Array<double>& actual, const Array<double>& expected) {
    return actual.shape() == expected.shape() && actual == expected;
}

std::vector<std::size_t> random_permutation(std::size_t rank, std::mt19937_64& rng) {
    std::vector<std::size_t> perm(rank);
    std::iota(perm.begin(), perm.end(), std::size_t{0});
    std::shuffle(perm.begin(), perm.end(), rng);
    return perm;
}

std::vector<std::size_t> random_rows(std::size_t count, std::size_t rows, std::mt19937_64& rng) {
    std::vector<std::size_t> indices(count);
    for (auto& i : indices) i = rng() % rows;
    return indices;
}

}  // namespace

TEST_CASE("reshape: forward keeps the row-major order, infers -1, and the gradient matches finite differences") {
    struct Case {
        Shape from;
        std::vector<long> to;
        Shape expected;
    };
    const Case cases[] = {
        {{2, 3}, {3, 2}, {3, 2}},       {{2, 3}, {-1}, {6}},          {{2, 3, 4}, {4, -1}, {4, 6}},
        {{2, 3, 4}, {-1, 2, 3}, {4, 2, 3}}, {{6}, {1, -1, 1}, {1, 6, 1}}, {{1, 1}, {}, {}},
        {{}, {1, 1, 1}, {1, 1, 1}},     {{}, {-1}, {1}},              {{4, 5}, {2, 5, 2}, {2, 5, 2}},
    };
    std::mt19937_64 rng(1);
    for (const auto& c : cases) {
        INFO(fmt::format("{} into ({})", ad::shape_string(c.from), fmt::join(c.to, ", ")));
        Array<double> x0 = ad::test::uniform(c.from, rng());
        auto y = ad::reshape(ad::constant(x0), c.to);
        REQUIRE(y.shape() == c.expected);
        CHECK(std::equal(x0.begin(), x0.end(), y.value().begin(), y.value().end()));
        std::vector<long> to = c.to;
        CHECK_GRADCHECK(([to](const Vars& v) { return ad::reshape(v[0], to); }), (std::vector<Array<double>>{x0}));
    }
}

TEST_CASE("transpose: both forms permute axes like index arithmetic over random shapes, and gradients match") {
    std::mt19937_64 rng(2);
    for (int round = 0; round < 12; ++round) {
        Shape s = ad::test::random_shape(rng, 0, 4);
        Array<double> x0 = ad::test::uniform(s, rng());
        // The permuted form; result axis i is input axis perm[i].
        auto perm = random_permutation(s.size(), rng);
        INFO(fmt::format("{} by ({})", ad::shape_string(s), fmt::join(perm, ", ")));
        Shape y_shape(s.size());
        for (std::size_t i = 0; i < s.size(); ++i) y_shape[i] = s[perm[i]];
        auto expected = gather_reference(x0, y_shape, [&](const Shape& yi) {
            Shape xi(yi.size());
            for (std::size_t i = 0; i < yi.size(); ++i) xi[perm[i]] = yi[i];
            return xi;
        });
        CHECK(same(ad::transpose(ad::constant(x0), perm).value(), expected));
        CHECK_GRADCHECK(([perm](const Vars& v) { return ad::transpose(v[0], perm); }), (std::vector<Array<double>>{x0}));
        // The plain form reverses the axes.
        Shape reversed(s.rbegin(), s.rend());
        auto reversed_expected = gather_reference(x0, reversed, [](const Shape& yi) { return Shape(yi.rbegin(), yi.rend()); });
        CHECK(same(ad::transpose(ad::constant(x0)).value(), reversed_expected));
        CHECK_GRADCHECK([](const Vars& v) { return ad::transpose(v[0]); }, (std::vector<Array<double>>{x0}));
    }
}

TEST_CASE("broadcast_to: forward repeats along broadcast axes and the gradient sums them back") {
    struct Case {
        Shape from, to;
    };
    const Case cases[] = {
        {{3}, {2, 3}},    {{1, 3}, {4, 3}},       {{2, 1}, {2, 5}},    {{}, {2, 3}},    {{2, 1}, {3, 2, 4}},
        {{1}, {1}},       {{1, 1}, {2, 3, 1}},    {{2, 3}, {2, 3}},    {{3, 1, 2}, {3, 4, 2}},
    };
    std::mt19937_64 rng(3);
    for (const auto& c : cases) {
        INFO(fmt::format("{} to {}", ad::shape_string(c.from), ad::shape_string(c.to)));
        Array<double> x0 = ad::test::uniform(c.from, rng());
        std::size_t lead = c.to.size() - c.from.size();
        Shape from = c.from;
        auto expected = gather_reference(x0, c.to, [&](const Shape& yi) {
            Shape xi(from.size());
            for (std::size_t d = 0; d < from.size(); ++d) xi[d] = from[d] == 1 ? 0 : yi[lead + d];
            return xi;
        });
        CHECK(same(ad::broadcast_to(ad::constant(x0), c.to).value(), expected));
        Shape to = c.to;
        CHECK_GRADCHECK(([to](const Vars& v) { return ad::broadcast_to(v[0], to); }), (std::vector<Array<double>>{x0}));
    }
}

TEST_CASE("slice and pad: forward matches index arithmetic on random axes and ranges, and gradients match") {
    std::mt19937_64 rng(4);
    int checked = 0;
    for (int round = 0; round < 12; ++round) {
        Shape s = ad::test::random_shape(rng, 1, 3, 5);
        long rank = static_cast<long>(s.size());
        long axis = static_cast<long>(rng() % (2 * s.size())) - rank;  // negative axes too
        std::size_t ax = static_cast<std::size_t>(axis < 0 ? axis + rank : axis);
        std::size_t begin = rng() % (s[ax] + 1);
        std::size_t end = begin + rng() % (s[ax] - begin + 1);
        INFO(fmt::format("[{}, {}) of axis {} of {}", begin, end, axis, ad::shape_string(s)));
        Array<double> x0 = ad::test::uniform(s, rng());

        Shape y_shape = s;
        y_shape[ax] = end - begin;
        auto sliced = gather_reference(x0, y_shape, [&](Shape yi) {
            yi[ax] += begin;
            return yi;
        });
        CHECK(same(ad::slice(ad::constant(x0), axis, begin, end).value(), sliced));
        CHECK_GRADCHECK(([axis, begin, end](const Vars& v) { return ad::slice(v[0], axis, begin, end); }),
                        (std::vector<Array<double>>{x0}));

        // pad puts x back at `begin` of a longer axis of zeros.
        std::size_t size = s[ax] + begin + rng() % 3;
        Shape padded_shape = s;
        padded_shape[ax] = size;
        Array<double> padded = xt::zeros<double>(padded_shape);
        for (std::size_t flat = 0; flat < x0.size(); ++flat) {
            Shape xi = ad::test::unravel(flat, s);
            xi[ax] += begin;
            padded.data()[ad::test::ravel(xi, padded_shape)] = x0.data()[flat];
        }
        CHECK(same(ad::pad(ad::constant(x0), axis, begin, size).value(), padded));
        CHECK_GRADCHECK(([axis, begin, size](const Vars& v) { return ad::pad(v[0], axis, begin, size); }),
                        (std::vector<Array<double>>{x0}));
        checked += 2;
    }
    CHECK(checked == 24);
}

TEST_CASE("rows: a contiguous block of rows, with the gradient of a slice of axis 0") {
    Array<double> x0 = ad::test::uniform({5, 3}, 5);
    auto y = ad::rows(ad::constant(x0), 1, 4);
    REQUIRE(y.shape() == Shape{3, 3});
    for (std::size_t r = 0; r < 3; ++r) {
        for (std::size_t c = 0; c < 3; ++c) CHECK(y.value()(r, c) == x0(r + 1, c));
    }
    CHECK(ad::rows(ad::constant(x0), 2, 2).shape() == Shape{0, 3});
    CHECK_GRADCHECK([](const Vars& v) { return ad::rows(v[0], 1, 4); }, (std::vector<Array<double>>{x0}));
    CHECK_GRADCHECK([](const Vars& v) { return ad::rows(v[0], 0, 1); }, (std::vector<Array<double>>{ad::test::uniform({2}, 6)}));
}

TEST_CASE("take_rows and scatter_add_rows: forward matches loops with repeated indices, and gradients match") {
    std::mt19937_64 rng(6);
    for (int round = 0; round < 8; ++round) {
        Shape s = ad::test::random_shape(rng, 1, 3);
        std::size_t n = s[0];
        // More picks than rows, so some rows repeat and their gradients must add up.
        auto indices = random_rows(n + 2 + rng() % 3, n, rng);
        INFO(fmt::format("rows ({}) of {}", fmt::join(indices, ", "), ad::shape_string(s)));
        Array<double> x0 = ad::test::uniform(s, rng());
        std::size_t row = x0.size() / n;

        Shape taken_shape = s;
        taken_shape[0] = indices.size();
        Array<double> taken = Array<double>::from_shape(taken_shape);
        for (std::size_t i = 0; i < indices.size(); ++i) {
            for (std::size_t j = 0; j < row; ++j) taken.data()[i * row + j] = x0.data()[indices[i] * row + j];
        }
        CHECK(same(ad::take_rows(ad::constant(x0), indices).value(), taken));
        CHECK_GRADCHECK(([indices](const Vars& v) { return ad::take_rows(v[0], indices); }), (std::vector<Array<double>>{x0}));

        // scatter_add_rows takes the taken rows back, adding where indices repeat.
        Array<double> scattered = xt::zeros<double>(s);
        for (std::size_t i = 0; i < indices.size(); ++i) {
            for (std::size_t j = 0; j < row; ++j) scattered.data()[indices[i] * row + j] += taken.data()[i * row + j];
        }
        CHECK(xt::allclose(ad::scatter_add_rows(ad::constant(taken), indices, n).value(), scattered, 1e-14, 1e-14));
        CHECK_GRADCHECK(([indices, n](const Vars& v) { return ad::scatter_add_rows(v[0], indices, n); }),
                        (std::vector<Array<double>>{taken}));
    }
}

TEST_CASE("take_rows: a row picked k times receives k times its cotangent") {
    // d/dx sum(take_rows(x, {2, 0, 2, 2})) counts each row's picks: rows 0, 1, 2 get 1, 0, 3.
    ad::Tape tape;
    auto x = ad::param(Array<double>{{1.0, 2.0}, {3.0, 4.0}, {5.0, 6.0}});
    ad::sum(ad::take_rows(x, {2, 0, 2, 2})).backward();
    CHECK(x.grad() == Array<double>{{1.0, 1.0}, {0.0, 0.0}, {3.0, 3.0}});
}

TEST_CASE("concatenate and stack: forward matches index arithmetic on several axes, and gradients match") {
    std::mt19937_64 rng(7);
    for (int round = 0; round < 8; ++round) {
        Shape s = ad::test::random_shape(rng, 1, 3);
        long rank = static_cast<long>(s.size());
        long axis = static_cast<long>(rng() % (2 * s.size())) - rank;
        std::size_t ax = static_cast<std::size_t>(axis < 0 ? axis + rank : axis);
        // Three inputs of different lengths along the axis.
        std::vector<Array<double>> parts;
        std::vector<std::size_t> offsets;
        Shape y_shape = s;
        y_shape[ax] = 0;
        for (int i = 0; i < 3; ++i) {
            Shape si = s;
            si[ax] = 1 + rng() % 3;
            offsets.push_back(y_shape[ax]);
            y_shape[ax] += si[ax];
            parts.push_back(ad::test::uniform(si, rng()));
        }
        INFO(fmt::format("concatenate along {} into {}", axis, ad::shape_string(y_shape)));
        Array<double> expected = Array<double>::from_shape(y_shape);
        for (std::size_t i = 0; i < parts.size(); ++i) {
            Shape pi = ad::shape_of(parts[i]);
            for (std::size_t flat = 0; flat < parts[i].size(); ++flat) {
                Shape index = ad::test::unravel(flat, pi);
                index[ax] += offsets[i];
                expected.data()[ad::test::ravel(index, y_shape)] = parts[i].data()[flat];
            }
        }
        Vars constants;
        for (const auto& p : parts) constants.push_back(ad::constant(p));
        CHECK(same(ad::concatenate(constants, axis).value(), expected));
        CHECK_GRADCHECK(([axis](const Vars& v) { return ad::concatenate(v, axis); }), parts);

        // stack: equal shapes joined along a new axis, which may be one past the last.
        long stack_axis = static_cast<long>(rng() % (2 * s.size() + 2)) - (rank + 1);
        std::size_t sax = static_cast<std::size_t>(stack_axis < 0 ? stack_axis + rank + 1 : stack_axis);
        std::vector<Array<double>> same_shape{ad::test::uniform(s, rng()), ad::test::uniform(s, rng()),
                                              ad::test::uniform(s, rng())};
        Shape stacked_shape = s;
        stacked_shape.insert(stacked_shape.begin() + static_cast<long>(sax), 3);
        Array<double> stacked = Array<double>::from_shape(stacked_shape);
        for (std::size_t flat = 0; flat < stacked.size(); ++flat) {
            Shape index = ad::test::unravel(flat, stacked_shape);
            std::size_t which = index[sax];
            index.erase(index.begin() + static_cast<long>(sax));
            stacked.data()[flat] = same_shape[which].data()[ad::test::ravel(index, s)];
        }
        INFO(fmt::format("stack along {} into {}", stack_axis, ad::shape_string(stacked_shape)));
        Vars stack_inputs;
        for (const auto& p : same_shape) stack_inputs.push_back(ad::constant(p));
        CHECK(same(ad::stack(stack_inputs, stack_axis).value(), stacked));
        CHECK_GRADCHECK(([stack_axis](const Vars& v) { return ad::stack(v, stack_axis); }), same_shape);
    }
}

TEST_CASE("concatenate and stack: one input used twice gets both slices of the gradient") {
    Array<double> x0 = ad::test::uniform({2, 3}, 8);
    CHECK_GRADCHECK([](const Vars& v) { return ad::concatenate(Vars{v[0], ad::tanh(v[0]), v[0]}, 1); },
                    (std::vector<Array<double>>{x0}));
    CHECK_GRADCHECK([](const Vars& v) { return ad::stack(Vars{v[0], ad::square(v[0])}, -1); }, (std::vector<Array<double>>{x0}));
    // 0-d values stack into a vector.
    CHECK_GRADCHECK([](const Vars& v) { return ad::stack(Vars{v[0], v[1], v[0]}); },
                    (std::vector<Array<double>>{Array<double>(0.5), Array<double>(-1.5)}));
}

TEST_CASE("reshape: extents whose product overflows are a shape_error, even for an empty value") {
    // Found by tests/fuzz/program_fuzzer: (2^32, 2^32) multiplied to 0 in
    // size_t, matched the count of an empty value, and xtensor's strides then
    // overflowed a long (UBSan: signed-integer-overflow).
    auto x = ad::constant(Array<double>::from_shape({0}));
    const long big = long(1) << 32;
    CHECK_THROWS_WITH_AS(ad::reshape(x, {big, big}), "reshape: cannot reshape (0,) into (4294967296, 4294967296)",
                         ad::shape_error);
    CHECK_THROWS_AS(ad::reshape(x, {0, big, big}), ad::shape_error);
    CHECK_THROWS_AS(ad::reshape(x, {-1, big, big}), ad::shape_error);
    CHECK_THROWS_AS(ad::reshape(x, {0, std::numeric_limits<long>::max(), 2}), ad::shape_error);
    // A large extent beside a zero is a valid empty shape.
    CHECK(ad::reshape(x, {0, big}).shape() == Shape{0, std::size_t(big)});
    CHECK(ad::reshape(x, {big, -1}).shape() == Shape{std::size_t(big), 0});
}

TEST_CASE("shape ops: bad shapes are shape_errors naming the op and the shapes") {
    auto x = ad::constant(Array<double>::from_shape({2, 3}));
    CHECK_THROWS_WITH_AS(ad::reshape(x, {4, -1}), "reshape: cannot reshape (2, 3) into (4, -1)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::reshape(x, {4, 2}), "reshape: cannot reshape (2, 3) into (4, 2)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::reshape(x, {-1, -1}), "reshape: cannot reshape (2, 3) into (-1, -1)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::reshape(x, {-2, -3}), "reshape: cannot reshape (2, 3) into (-2, -3)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::transpose(x, {0, 0}), "transpose: (0, 0) is not a permutation of the axes of (2, 3)",
                         ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::transpose(x, {2, 0, 1}), "transpose: (2, 0, 1) is not a permutation of the axes of (2, 3)",
                         ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::broadcast_to(x, {3, 2}), "broadcast_to: cannot broadcast (2, 3) to (3, 2)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::broadcast_to(x, {3}), "broadcast_to: cannot broadcast (2, 3) to (3,)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::slice(x, 1, 3, 2), "slice: [3, 2) is out of range for axis 1 of (2, 3)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::slice(x, -1, 0, 4), "slice: [0, 4) is out of range for axis -1 of (2, 3)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::rows(x, 1, 3), "rows: [1, 3) is out of range for the 2 rows of (2, 3)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::rows(x, 2, 1), "rows: [2, 1) is out of range for the 2 rows of (2, 3)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::rows(ad::scalar(1.0), 0, 0), "rows: a 0-d value has no rows", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::pad(x, 1, 2, 4), "pad: (2, 3) does not fit at 2 of an axis of length 4", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::pad(x, 0, 0, 1), "pad: (2, 3) does not fit at 0 of an axis of length 1", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::take_rows(ad::scalar(1.0), {0}), "take_rows: a 0-d value has no rows", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::scatter_add_rows(x, {0, 1, 1}, 4), "scatter_add_rows: 2 rows of (2, 3) for 3 indices",
                         ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::scatter_add_rows(ad::scalar(1.0), {}, 4), "scatter_add_rows: 0 rows of () for 0 indices",
                         ad::shape_error);
    auto y = ad::constant(Array<double>::from_shape({3, 3}));
    auto v = ad::constant(Array<double>::from_shape({3}));
    CHECK_THROWS_WITH_AS(ad::concatenate(Vars{}), "concatenate: no values to join", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::concatenate(Vars{x, y}, 1), "concatenate: shapes (2, 3), (3, 3) differ outside axis 1",
                         ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::concatenate(Vars{x, v}), "concatenate: shapes (2, 3), (3,) differ outside axis 0",
                         ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::stack(Vars{}), "stack: no values to join", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::stack(Vars{x, x, y}), "stack: shapes (2, 3), (2, 3), (3, 3) are not all the same",
                         ad::shape_error);
}

TEST_CASE("shape ops: bad axes and row indices are value_errors naming the op") {
    auto x = ad::constant(Array<double>::from_shape({2, 3}));
    CHECK_THROWS_WITH_AS(ad::slice(x, 2, 0, 1), "slice: axis 2 is out of range for a value of rank 2", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::pad(x, -3, 0, 4), "pad: axis -3 is out of range for a value of rank 2", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::concatenate(Vars{x, x}, 2), "concatenate: axis 2 is out of range for a value of rank 2",
                         ad::value_error);
    CHECK_THROWS_WITH_AS(ad::stack(Vars{x, x}, -4), "stack: axis -4 is out of range for a value of rank 3", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::take_rows(x, {0, 2}), "take_rows: row index 2 is out of range for 2 rows (shape (2, 3))",
                         ad::value_error);
    CHECK_THROWS_WITH_AS(ad::scatter_add_rows(x, {0, 5}, 4),
                         "scatter_add_rows: row index 5 is out of range for 4 rows (shape (2, 3))", ad::value_error);
}

TEST_CASE("shape ops: a throwing op leaves the tape as it was") {
    ad::Tape tape;
    Array<double> x0 = ad::test::uniform({2, 3}, 9);
    auto x = ad::param(x0);
    auto y = ad::exp(x);
    auto other = ad::param(Array<double>::from_shape({3, 2}));
    std::size_t before = tape.size();
    CHECK_THROWS_AS(ad::reshape(y, {4, -1}), ad::shape_error);
    CHECK_THROWS_AS(ad::transpose(y, {1, 1}), ad::shape_error);
    CHECK_THROWS_AS(ad::broadcast_to(y, {2, 2}), ad::shape_error);
    CHECK_THROWS_AS(ad::slice(y, 0, 1, 3), ad::shape_error);
    CHECK_THROWS_AS(ad::rows(y, 0, 3), ad::shape_error);
    CHECK_THROWS_AS(ad::pad(y, 0, 1, 2), ad::shape_error);
    CHECK_THROWS_AS(ad::take_rows(y, {0, 7}), ad::value_error);
    CHECK_THROWS_AS(ad::scatter_add_rows(y, {0, 7}, 3), ad::value_error);
    CHECK_THROWS_AS(ad::concatenate(Vars{y, y, other}), ad::shape_error);
    // The inputs before the odd one out are valid: nothing of them may be recorded either.
    CHECK_THROWS_AS(ad::stack(Vars{y, y, other}), ad::shape_error);
    CHECK(tape.size() == before);
    ad::sum(y).backward();
    CHECK(xt::allclose(x.grad(), xt::exp(x0)));  // d/dx sum(e^x) = e^x
}

TEST_CASE("shape ops: float gradients agree with double ones") {
    Array<float> xf = xt::cast<float>(ad::test::uniform({3, 4}, 10));
    auto gradient = [](const auto& x0) {
        ad::Tape tape;
        auto x = ad::param(x0);
        auto w = ad::tanh(x);
        auto parts = ad::concatenate(std::vector{ad::slice(w, 1, 1, 3), ad::transpose(ad::rows(w, 0, 2))}, 0);
        auto z = ad::sum(ad::square(ad::reshape(parts, {-1, 7}))) +
                 ad::sum(ad::broadcast_to(ad::take_rows(w, {2, 2, 0, 1}), {2, 4, 4}) *
                         ad::transpose(ad::take_rows(w, {0, 1, 2, 2}), {1, 0})) +
                 ad::sum(ad::exp(ad::stack(std::vector{w, ad::pad(ad::slice(w, 0, 1, 2), 0, 2, 3)}, 1))) +
                 ad::sum(ad::scatter_add_rows(w, {1, 1, 0}, 2) * ad::rows(w, 1, 3));
        z.backward();
        return x.grad();
    };
    auto gf = gradient(xf);
    auto gd = gradient(Array<double>(xt::cast<double>(xf)));
    CHECK(ad::test::float_matches_double(gf, gd));
}

namespace {

long random_axis_of(std::size_t rank, std::mt19937_64& rng) {
    return static_cast<long>(rng() % (2 * rank)) - static_cast<long>(rank);
}

std::size_t positive_axis(long axis, std::size_t rank) {
    return static_cast<std::size_t>(axis < 0 ? axis + static_cast<long>(rank) : axis);
}

}  // namespace

TEST_CASE("flip: forward reverses the chosen axes like index arithmetic over random shapes, and gradients match") {
    std::mt19937_64 rng(11);
    for (int round = 0; round < 14; ++round) {
        Shape s = ad::test::random_shape(rng, 0, 4);
        // A random subset of the axes, each named positive or negative.
        std::vector<long> axes;
        std::vector<bool> flipped(s.size(), false);
        for (std::size_t d = 0; d < s.size(); ++d) {
            if (rng() % 2) continue;
            flipped[d] = true;
            axes.push_back(rng() % 2 ? static_cast<long>(d) : static_cast<long>(d) - static_cast<long>(s.size()));
        }
        std::shuffle(axes.begin(), axes.end(), rng);
        INFO(fmt::format("flip ({}) of {}", fmt::join(axes, ", "), ad::shape_string(s)));
        Array<double> x0 = ad::test::uniform(s, rng());
        auto expected = gather_reference(x0, s, [&](Shape yi) {
            for (std::size_t d = 0; d < s.size(); ++d) {
                if (flipped[d]) yi[d] = s[d] - 1 - yi[d];
            }
            return yi;
        });
        CHECK(same(ad::flip(ad::constant(x0), axes).value(), expected));
        CHECK_GRADCHECK(([axes](const Vars& v) { return ad::flip(v[0], axes); }), (std::vector<Array<double>>{x0}));
    }
    CHECK(ad::flip(ad::constant(Array<double>::from_shape({2, 0})), {0, 1}).shape() == Shape{2, 0});
}

TEST_CASE("repeat and tile: forward tiles like index arithmetic, with leading axes and zero repeats, and gradients match") {
    std::mt19937_64 rng(12);
    for (int round = 0; round < 14; ++round) {
        Shape s = ad::test::random_shape(rng, 0, 3, 3);
        std::size_t extra = rng() % 3;
        std::vector<std::size_t> repeats(s.size() + extra);
        for (auto& r : repeats) r = round % 7 == 6 ? rng() % 4 : 1 + rng() % 3;  // sometimes 0
        std::size_t lead = extra;
        Shape y_shape(repeats.size());
        for (std::size_t d = 0; d < repeats.size(); ++d) y_shape[d] = repeats[d] * (d < lead ? 1 : s[d - lead]);
        INFO(fmt::format("repeat ({}) of {}", fmt::join(repeats, ", "), ad::shape_string(s)));
        Array<double> x0 = ad::test::uniform(s, rng());
        auto expected = gather_reference(x0, y_shape, [&](const Shape& yi) {
            Shape xi(s.size());
            for (std::size_t d = 0; d < s.size(); ++d) xi[d] = yi[lead + d] % s[d];
            return xi;
        });
        CHECK(same(ad::repeat(ad::constant(x0), repeats).value(), expected));
        CHECK_GRADCHECK(([repeats](const Vars& v) { return ad::repeat(v[0], repeats); }), (std::vector<Array<double>>{x0}));
        // tile takes the same reps, and shorter ones padded with leading 1s.
        CHECK(same(ad::tile(ad::constant(x0), repeats).value(), expected));
        if (!s.empty()) {
            std::vector<std::size_t> short_reps(repeats.end() - 1, repeats.end());  // the last axis only
            Shape tiled_shape = s;
            tiled_shape.back() *= short_reps[0];
            auto tiled = gather_reference(x0, tiled_shape, [&](Shape yi) {
                yi.back() %= s.back();
                return yi;
            });
            CHECK(same(ad::tile(ad::constant(x0), short_reps).value(), tiled));
            CHECK_GRADCHECK(([short_reps](const Vars& v) { return ad::tile(v[0], short_reps); }),
                            (std::vector<Array<double>>{x0}));
        }
    }
}

TEST_CASE("repeat: each element's gradient is the sum of its copies' cotangents") {
    ad::Tape tape;
    auto x = ad::param(Array<double>{1.0, 2.0});
    auto y = ad::repeat(x, {2, 3});  // (2, 6): [1 2 1 2 1 2] twice
    CHECK(y.value() == Array<double>{{1.0, 2.0, 1.0, 2.0, 1.0, 2.0}, {1.0, 2.0, 1.0, 2.0, 1.0, 2.0}});
    ad::sum(y * ad::constant(Array<double>{{1.0, 10.0, 100.0, 1000.0, 1e4, 1e5}, {1.0, 1.0, 1.0, 1.0, 1.0, 1.0}})).backward();
    CHECK(x.grad() == Array<double>{1.0 + 100.0 + 1e4 + 3.0, 10.0 + 1000.0 + 1e5 + 3.0});
}

TEST_CASE("squeeze and unsqueeze: shapes like PyTorch's, the row-major order kept, and gradients match") {
    struct Case {
        Shape from;
        Shape all_squeezed;
    };
    const Case cases[] = {{{1, 3, 1, 2}, {3, 2}}, {{1}, {}}, {{}, {}}, {{2, 3}, {2, 3}}, {{1, 1, 1}, {}}, {{0, 1}, {0}}};
    std::mt19937_64 rng(13);
    for (const auto& c : cases) {
        INFO(ad::shape_string(c.from));
        Array<double> x0 = ad::test::uniform(c.from, rng());
        auto all = ad::squeeze(ad::constant(x0));
        REQUIRE(all.shape() == c.all_squeezed);
        CHECK(std::equal(x0.begin(), x0.end(), all.value().begin(), all.value().end()));
        CHECK_GRADCHECK([](const Vars& v) { return ad::squeeze(v[0]); }, (std::vector<Array<double>>{x0}));
        long rank = static_cast<long>(c.from.size());
        for (long axis = -std::max(rank, 1L); axis < std::max(rank, 1L); ++axis) {
            // One axis: dropped when of length 1, else x itself.
            Shape expected = c.from;
            if (!expected.empty() && expected[positive_axis(axis, expected.size())] == 1) {
                expected.erase(expected.begin() + static_cast<long>(positive_axis(axis, expected.size())));
            }
            auto y = ad::squeeze(ad::constant(x0), axis);
            CHECK(y.shape() == expected);
            CHECK(std::equal(x0.begin(), x0.end(), y.value().begin(), y.value().end()));
            CHECK_GRADCHECK(([axis](const Vars& v) { return ad::squeeze(v[0], axis); }), (std::vector<Array<double>>{x0}));
        }
        for (long axis = -rank - 1; axis <= rank; ++axis) {
            Shape expected = c.from;
            expected.insert(expected.begin() + static_cast<long>(positive_axis(axis, c.from.size() + 1)), 1);
            auto y = ad::unsqueeze(ad::constant(x0), axis);
            CHECK(y.shape() == expected);
            CHECK(std::equal(x0.begin(), x0.end(), y.value().begin(), y.value().end()));
            CHECK_GRADCHECK(([axis](const Vars& v) { return ad::unsqueeze(v[0], axis); }), (std::vector<Array<double>>{x0}));
        }
    }
}

TEST_CASE("permute: negative axes allowed, the same as transpose by index arithmetic, and gradients match") {
    std::mt19937_64 rng(14);
    for (int round = 0; round < 10; ++round) {
        Shape s = ad::test::random_shape(rng, 0, 4);
        auto perm = random_permutation(s.size(), rng);
        std::vector<long> named;
        for (std::size_t p : perm) named.push_back(rng() % 2 ? static_cast<long>(p) : static_cast<long>(p) - static_cast<long>(s.size()));
        INFO(fmt::format("{} by ({})", ad::shape_string(s), fmt::join(named, ", ")));
        Array<double> x0 = ad::test::uniform(s, rng());
        Shape y_shape(s.size());
        for (std::size_t i = 0; i < s.size(); ++i) y_shape[i] = s[perm[i]];
        auto expected = gather_reference(x0, y_shape, [&](const Shape& yi) {
            Shape xi(yi.size());
            for (std::size_t i = 0; i < yi.size(); ++i) xi[perm[i]] = yi[i];
            return xi;
        });
        CHECK(same(ad::permute(ad::constant(x0), named).value(), expected));
        CHECK_GRADCHECK(([named](const Vars& v) { return ad::permute(v[0], named); }), (std::vector<Array<double>>{x0}));
    }
}

TEST_CASE("split and chunk: parts like PyTorch's, each equal to its slice, and their cotangents add up in x") {
    std::mt19937_64 rng(15);
    for (int round = 0; round < 12; ++round) {
        Shape s = ad::test::random_shape(rng, 1, 3, 6);
        long axis = random_axis_of(s.size(), rng);
        std::size_t ax = positive_axis(axis, s.size());
        std::size_t n = s[ax];
        Array<double> x0 = ad::test::uniform(s, rng());
        std::size_t split_size = 1 + rng() % (n + 1);
        std::size_t chunks = 1 + rng() % (n + 1);
        // The lengths PyTorch gives, worked out independently of split's loop.
        std::vector<std::size_t> by_size(n / split_size, split_size);
        if (n % split_size) by_size.push_back(n % split_size);
        std::size_t chunk_size = (n + chunks - 1) / chunks;
        std::vector<std::size_t> by_chunks(n / chunk_size, chunk_size);
        if (n % chunk_size) by_chunks.push_back(n % chunk_size);
        std::vector<std::size_t> sizes;
        for (std::size_t left = n; left > 0;) {
            std::size_t k = rng() % (left + 1);  // zero-length parts too
            sizes.push_back(k);
            left -= k;
        }
        INFO(fmt::format("{} along {}: split_size {}, chunks {}, sizes ({})", ad::shape_string(s), axis, split_size, chunks,
                         fmt::join(sizes, ", ")));
        auto check_parts = [&](const std::vector<Var<double>>& parts, const std::vector<std::size_t>& lengths) {
            REQUIRE(parts.size() == lengths.size());
            std::size_t begin = 0;
            for (std::size_t k = 0; k < parts.size(); ++k) {
                Shape part_shape = s;
                part_shape[ax] = lengths[k];
                auto expected = gather_reference(x0, part_shape, [&](Shape yi) {
                    yi[ax] += begin;
                    return yi;
                });
                CHECK(same(parts[k].value(), expected));
                begin += lengths[k];
            }
        };
        check_parts(ad::split(ad::constant(x0), split_size, axis), by_size);
        check_parts(ad::chunk(ad::constant(x0), chunks, axis), by_chunks);
        check_parts(ad::split(ad::constant(x0), sizes, axis), sizes);
        // Every part weighted differently: x's gradient gathers each part's.
        auto weighted = [axis](const std::vector<Var<double>>& parts) {
            Vars scaled;
            for (std::size_t k = 0; k < parts.size(); ++k) scaled.push_back(parts[k] * double(k + 1));
            return ad::concatenate(scaled, axis);
        };
        CHECK_GRADCHECK(([=](const Vars& v) { return weighted(ad::split(v[0], split_size, axis)); }),
                        (std::vector<Array<double>>{x0}));
        CHECK_GRADCHECK(([=](const Vars& v) { return weighted(ad::chunk(v[0], chunks, axis)); }),
                        (std::vector<Array<double>>{x0}));
        CHECK_GRADCHECK(([=](const Vars& v) { return weighted(ad::split(v[0], sizes, axis)); }),
                        (std::vector<Array<double>>{x0}));
    }
    // An empty axis: one empty part from split, `chunks` empty parts from chunk (PyTorch's rule).
    auto empty = ad::constant(Array<double>::from_shape({2, 0}));
    CHECK(ad::split(empty, 3, 1).size() == 1);
    CHECK(ad::chunk(empty, 3, -1).size() == 3);
    CHECK(ad::chunk(empty, 3, -1)[2].shape() == Shape{2, 0});
    // chunk may give fewer parts than asked: 6 into 4 is 2, 2, 2.
    CHECK(ad::chunk(ad::constant(Array<double>::from_shape({6})), 4).size() == 3);
}

TEST_CASE("slice: a sweep that records nothing adds each slice's cotangent into x's in place, as the recorded sweep adds pads") {
    // x is sliced into overlapping and unused blocks along each axis and also
    // used whole, before and after the slices, as a parameter and as a
    // computed value: backward() (in place) must give exactly the gradient of
    // a create_graph sweep (pads added as values) and of the index arithmetic.
    std::mt19937_64 rng(31);
    for (int round = 0; round < 8; ++round) {
        Shape s = ad::test::random_shape(rng, 1, 3, 5);
        long axis = random_axis_of(s.size(), rng);
        std::size_t ax = positive_axis(axis, s.size());
        std::size_t n = s[ax];
        Array<double> x0 = ad::test::uniform(s, rng());
        std::vector<std::pair<std::size_t, std::size_t>> ranges;
        for (int k = 0; k < 3; ++k) {
            std::size_t a = rng() % (n + 1), b = rng() % (n + 1);
            ranges.emplace_back(std::min(a, b), std::max(a, b));
        }
        INFO(fmt::format("{} along {}", ad::shape_string(s), axis));
        for (bool computed : {false, true}) {
            auto loss_of = [&](const Var<double>& p) {
                Var<double> x = computed ? p * 2.0 : p;
                Var<double> loss = ad::sum(x * x);
                for (std::size_t k = 0; k < ranges.size(); ++k) {
                    Var<double> part = ad::slice(x, axis, ranges[k].first, ranges[k].second);
                    loss = loss + ad::sum(ad::sin(part) * double(k + 1));
                }
                return loss + ad::sum(x) * 0.5;
            };
            Array<double> in_place, recorded;
            {
                ad::Tape tape;
                auto p = ad::param(x0);
                loss_of(p).backward();
                in_place = p.grad();
            }
            {
                ad::Tape tape;
                auto p = ad::param(x0);
                loss_of(p).backward({false, true});
                recorded = p.grad();
            }
            // The gradient by hand: c dx/dp (2 x + 0.5 + sum_k (k+1) cos x on block k).
            const double c = computed ? 2.0 : 1.0;
            Array<double> x = c * x0;
            Array<double> expected = 2.0 * x + 0.5;
            for (std::size_t k = 0; k < ranges.size(); ++k) {
                for (std::size_t flat = 0; flat < x.size(); ++flat) {
                    std::size_t i = ad::test::unravel(flat, s)[ax];
                    if (i >= ranges[k].first && i < ranges[k].second) expected.data()[flat] += double(k + 1) * std::cos(x.data()[flat]);
                }
            }
            expected *= c;
            CHECK(xt::allclose(in_place, expected, 1e-13, 1e-13));
            CHECK(xt::allclose(recorded, expected, 1e-13, 1e-13));
        }
    }
}

TEST_CASE("shape ops (flip, repeat, squeeze, permute, split): bad arguments are typed errors naming the op and the shapes") {
    auto x = ad::constant(Array<double>::from_shape({2, 3}));
    CHECK_THROWS_WITH_AS(ad::flip(x, {0, -2}), "flip: axis -2 appears twice in (0, -2) for (2, 3)", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::flip(x, {2}), "flip: axis 2 is out of range for a value of rank 2", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::repeat(x, {2}), "repeat: 1 repeats (2) for (2, 3): at least one per axis", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::squeeze(x, 2), "squeeze: axis 2 is out of range for a value of rank 2", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::squeeze(ad::scalar(1.0), 1), "squeeze: axis 1 is out of range for a 0-d value (0 or -1)",
                         ad::value_error);
    CHECK_THROWS_WITH_AS(ad::unsqueeze(x, -4), "unsqueeze: axis -4 is out of range for a value of rank 3", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::permute(x, {0, -2}), "permute: (0, -2) is not a permutation of the axes of (2, 3)",
                         ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::permute(x, {0, 1, 2}), "permute: (0, 1, 2) is not a permutation of the axes of (2, 3)",
                         ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::permute(x, {0, 2}), "permute: (0, 2) is not a permutation of the axes of (2, 3)",
                         ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::split(x, std::vector<std::size_t>{1, 1}, 1),
                         "split: sizes (1, 1) add up to 2, not to the length 3 of axis 1 of (2, 3)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::split(x, 0, -1), "split: split_size 0 for axis -1 of length 3 of (2, 3)", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::split(ad::scalar(1.0), 1), "split: a 0-d value has no axis to split", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::split(x, 1, 2), "split: axis 2 is out of range for a value of rank 2", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::chunk(x, 0, 1), "chunk: 0 chunks of (2, 3)", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::chunk(ad::scalar(1.0), 2), "chunk: a 0-d value has no axis to split", ad::shape_error);
}

TEST_CASE("shape ops (flip, repeat, squeeze, permute, split): a throwing op leaves the tape as it was") {
    ad::Tape tape;
    Array<double> x0 = ad::test::uniform({2, 3}, 16);
    auto x = ad::param(x0);
    auto y = ad::exp(x);
    std::size_t before = tape.size();
    CHECK_THROWS_AS(ad::flip(y, {1, 1}), ad::value_error);
    CHECK_THROWS_AS(ad::repeat(y, {3}), ad::shape_error);
    CHECK_THROWS_AS(ad::squeeze(y, -3), ad::value_error);
    CHECK_THROWS_AS(ad::unsqueeze(y, 3), ad::value_error);
    CHECK_THROWS_AS(ad::permute(y, {1, 1}), ad::shape_error);
    // Valid parts come before the bad total: none may be recorded.
    CHECK_THROWS_AS(ad::split(y, std::vector<std::size_t>{1, 1, 2}, 1), ad::shape_error);
    CHECK_THROWS_AS(ad::chunk(y, 0, 0), ad::value_error);
    CHECK(tape.size() == before);
    ad::sum(y).backward();
    CHECK(xt::allclose(x.grad(), xt::exp(x0)));  // d/dx sum(e^x) = e^x
}

TEST_CASE("shape ops (flip, repeat, squeeze, permute, split): float gradients agree with double ones") {
    Array<float> xf = xt::cast<float>(ad::test::uniform({3, 4}, 17));
    auto gradient = [](const auto& x0) {
        ad::Tape tape;
        auto x = ad::param(x0);
        auto w = ad::tanh(x);
        auto parts = ad::split(w, 3, 1);
        auto chunks = ad::chunk(w, 2, 0);
        auto z = ad::sum(ad::square(ad::flip(w, {-1, 0}) * w)) + ad::sum(ad::exp(ad::repeat(w, {2, 1, 2}))) +
                 ad::sum(ad::square(ad::tile(w, {2}))) + ad::sum(ad::squeeze(ad::unsqueeze(w, 1)) * w) +
                 ad::sum(ad::square(ad::squeeze(ad::slice(w, 0, 1, 2), 0))) +
                 ad::sum(ad::permute(w, {-1, 0}) * ad::transpose(w)) + ad::sum(ad::square(parts[0])) +
                 ad::sum(ad::exp(parts[1])) + ad::sum(ad::square(chunks[1]) * 3.0f);
        z.backward();
        return x.grad();
    };
    auto gf = gradient(xf);
    auto gd = gradient(Array<double>(xt::cast<double>(xf)));
    CHECK(ad::test::float_matches_double(gf, gd));
}

TEST_CASE("shape ops on values with a size-0 axis: the shapes PyTorch gives, zero gradients, no pointer arithmetic on empty storage") {
    // Under UBSan these once offset a null pointer (the storage of an empty array).
    ad::Tape tape;
    auto empty_rows = ad::param(Array<double>(xt::zeros<double>({0, 2})));
    auto other = ad::param(Array<double>(xt::zeros<double>({0, 1})));
    auto padded = ad::pad(empty_rows, 1, 1, 3);
    CHECK(padded.shape() == Shape{0, 3});
    auto joined = ad::concatenate({empty_rows, other}, 1);
    CHECK(joined.shape() == Shape{0, 3});
    auto stacked = ad::stack({empty_rows, empty_rows}, 0);
    CHECK(stacked.shape() == Shape{2, 0, 2});
    auto sliced = ad::slice(empty_rows, 1, 0, 1);
    CHECK(sliced.shape() == Shape{0, 1});
    CHECK(ad::flip(empty_rows, {0, 1}).shape() == Shape{0, 2});
    CHECK(ad::transpose(empty_rows).shape() == Shape{2, 0});
    CHECK(ad::permute(ad::param(Array<double>(xt::zeros<double>({2, 0, 3}))), {2, 0, 1}).shape() == Shape{3, 2, 0});
    auto sliced_empty = ad::slice(ad::param(Array<double>{1.0, 2.0}), 0, 1, 1);
    CHECK(sliced_empty.shape() == Shape{0});
    ad::sum(padded).backward({.retain_graph = true});
    ad::sum(joined).backward({.retain_graph = true});
    ad::sum(stacked).backward({.retain_graph = true});
    ad::sum(sliced).backward();
    CHECK(empty_rows.grad().shape() == Array<double>::shape_type{0, 2});
    CHECK(other.grad().shape() == Array<double>::shape_type{0, 1});
    // A non-empty value padded along an axis and joined with empty parts keeps its values.
    auto x = ad::param(Array<double>{{1.0, 2.0}});
    auto y = ad::concatenate({ad::param(Array<double>(xt::zeros<double>({1, 0}))), x}, 1);
    CHECK(y.value() == Array<double>{{1.0, 2.0}});
}

TEST_CASE("pad: a placement past the end of size_t is a shape_error, not a wrapped sum") {
    auto x = ad::constant(Array<double>{{1.0, 2.0}});
    const std::size_t huge = std::numeric_limits<std::size_t>::max();
    CHECK_THROWS_WITH_AS(ad::pad(x, 1, huge - 1, 3), doctest::Contains("pad: (1, 2) does not fit at"), ad::shape_error);
    CHECK_THROWS_AS(ad::pad(x, 1, 2, 3), ad::shape_error);
    CHECK(ad::pad(x, 1, 1, 3).value() == Array<double>{{0.0, 1.0, 2.0}});
}
