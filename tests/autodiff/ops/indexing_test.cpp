#include "support/test_support.hpp"

#include <string>

#include <fmt/format.h>
#include <fmt/ranges.h>

using ad::Array;
using ad::IndexArray;
using ad::Shape;
using ad::Var;
using ad::test::Vars;

namespace {

/// An index array of `shape` with entries drawn from [0, bound).
IndexArray random_index(const Shape& shape, std::size_t bound, std::mt19937_64& rng) {
    IndexArray index = IndexArray::from_shape(shape);
    for (auto& i : index) i = static_cast<std::int64_t>(rng() % bound);
    return index;
}

/// A random axis of a value of rank `rank`, negative half of the time.
long random_axis(std::size_t rank, std::mt19937_64& rng) {
    return static_cast<long>(rng() % (2 * rank)) - static_cast<long>(rank);
}

std::size_t positive(long axis, std::size_t rank) {
    return static_cast<std::size_t>(axis < 0 ? axis + static_cast<long>(rank) : axis);
}

/// Indexing ops only move (or add) elements: equality for moves.
bool same(const Array<double>& actual, const Array<double>& expected) {
    return actual.shape() == expected.shape() && actual == expected;
}

/// torch.gather written with index arithmetic: y[i] = x[i with i_ax := index[i]].
Array<double> gather_reference(const Array<double>& x, std::size_t ax, const IndexArray& index) {
    Shape i_shape = ad::shape_of(index), x_shape = ad::shape_of(x);
    Array<double> y = Array<double>::from_shape(i_shape);
    for (std::size_t flat = 0; flat < index.size(); ++flat) {
        Shape i = ad::test::unravel(flat, i_shape);
        i[ax] = static_cast<std::size_t>(index.data()[flat]);
        y.data()[flat] = x.data()[ad::test::ravel(i, x_shape)];
    }
    return y;
}

/// zeros(shape) with src[i] added at [i with i_ax := index[i]].
Array<double> scatter_reference(const Shape& shape, std::size_t ax, const IndexArray& index, const Array<double>& src) {
    Shape i_shape = ad::shape_of(index);
    Array<double> y = xt::zeros<double>(shape);
    for (std::size_t flat = 0; flat < index.size(); ++flat) {
        Shape i = ad::test::unravel(flat, i_shape);
        i[ax] = static_cast<std::size_t>(index.data()[flat]);
        y.data()[ad::test::ravel(i, shape)] += src.data()[flat];
    }
    return y;
}

/// The slices indices[j] of x along ax.
Array<double> select_reference(const Array<double>& x, std::size_t ax, const std::vector<std::size_t>& indices) {
    Shape x_shape = ad::shape_of(x), y_shape = x_shape;
    y_shape[ax] = indices.size();
    Array<double> y = Array<double>::from_shape(y_shape);
    for (std::size_t flat = 0; flat < y.size(); ++flat) {
        Shape i = ad::test::unravel(flat, y_shape);
        i[ax] = indices[i[ax]];
        y.data()[flat] = x.data()[ad::test::ravel(i, x_shape)];
    }
    return y;
}

Array<double> index_add_reference(const Shape& shape, std::size_t ax, const std::vector<std::size_t>& indices,
                                  const Array<double>& src) {
    Shape s_shape = ad::shape_of(src);
    Array<double> y = xt::zeros<double>(shape);
    for (std::size_t flat = 0; flat < src.size(); ++flat) {
        Shape i = ad::test::unravel(flat, s_shape);
        i[ax] = indices[i[ax]];
        y.data()[ad::test::ravel(i, shape)] += src.data()[flat];
    }
    return y;
}

/// A (1, 1) array holding v (a braced {{v}} is ambiguous for xtensor).
template <class V>
xt::xarray<V> one_by_one(V v) {
    xt::xarray<V> a = xt::xarray<V>::from_shape({1, 1});
    a(0, 0) = v;
    return a;
}

}  // namespace

TEST_CASE("gather and scatter_add: forward matches index arithmetic on random shapes and axes, and gradients match") {
    std::mt19937_64 rng(31);
    for (int round = 0; round < 16; ++round) {
        Shape s = ad::test::random_shape(rng, 1, 4);
        long axis = random_axis(s.size(), rng);
        std::size_t ax = positive(axis, s.size());
        // index: no longer than x outside the axis, any length (here up to 5) along it.
        Shape i_shape = s;
        for (std::size_t d = 0; d < s.size(); ++d) i_shape[d] = d == ax ? rng() % 6 : 1 + rng() % s[d];
        IndexArray index = random_index(i_shape, s[ax], rng);
        INFO(fmt::format("gather along {} of {} by {}", axis, ad::shape_string(s), ad::shape_string(i_shape)));
        Array<double> x0 = ad::test::uniform(s, rng());
        CHECK(same(ad::gather(ad::constant(x0), axis, index).value(), gather_reference(x0, ax, index)));
        CHECK_GRADCHECK(([axis, index](const Vars& v) { return ad::gather(v[0], axis, index); }),
                        (std::vector<Array<double>>{x0}));

        Array<double> src = ad::test::uniform(i_shape, rng());
        CHECK(xt::allclose(ad::scatter_add(s, axis, index, ad::constant(src)).value(),
                           scatter_reference(s, ax, index, src), 1e-14, 1e-14));
        CHECK(ad::scatter_add(s, axis, index, ad::constant(src)).shape() == s);
        CHECK_GRADCHECK(([s, axis, index](const Vars& v) { return ad::scatter_add(s, axis, index, v[0]); }),
                        (std::vector<Array<double>>{src}));
    }
}

TEST_CASE("gather: an element picked k times receives k times its cotangent; a size-0 index gives an empty result") {
    ad::Tape tape;
    auto x = ad::param(Array<double>{{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}});
    // Row 0 picks columns 2, 2, 0; row 1 picks 1, 1, 1.
    auto y = ad::gather(x, -1, IndexArray{{2, 2, 0}, {1, 1, 1}});
    CHECK(y.value() == Array<double>{{3.0, 3.0, 1.0}, {5.0, 5.0, 5.0}});
    ad::sum(y).backward();
    CHECK(x.grad() == Array<double>{{1.0, 0.0, 2.0}, {0.0, 3.0, 0.0}});

    auto empty = ad::gather(ad::constant(Array<double>{{1.0, 2.0}}), 1, IndexArray::from_shape({1, 0}));
    CHECK(empty.shape() == Shape{1, 0});
    CHECK_GRADCHECK([](const Vars& v) { return ad::sum(ad::gather(v[0], 0, IndexArray::from_shape({0, 2}))) + ad::sum(v[0]); },
                    (std::vector<Array<double>>{ad::test::uniform({3, 2}, 32)}));
    // size_t arrays convert to IndexArray.
    xt::xarray<std::size_t> unsigned_index{1, 0, 1};
    CHECK(ad::gather(ad::constant(Array<double>{7.0, 8.0}), 0, unsigned_index).value() == Array<double>{8.0, 7.0, 8.0});
}

TEST_CASE("index_select and index_add: forward matches loops with repeated indices on every axis, and gradients match") {
    std::mt19937_64 rng(33);
    for (int round = 0; round < 16; ++round) {
        Shape s = ad::test::random_shape(rng, 1, 4);
        long axis = random_axis(s.size(), rng);
        std::size_t ax = positive(axis, s.size());
        // More picks than slices (some repeat, their gradients add up); sometimes none.
        std::size_t count = round % 5 == 4 ? 0 : s[ax] + 1 + rng() % 3;
        std::vector<std::size_t> indices(count);
        for (auto& i : indices) i = rng() % s[ax];
        IndexArray index = IndexArray::from_shape({count});
        std::copy(indices.begin(), indices.end(), index.begin());
        INFO(fmt::format("index_select ({}) along {} of {}", fmt::join(indices, ", "), axis, ad::shape_string(s)));
        Array<double> x0 = ad::test::uniform(s, rng());
        Array<double> expected = select_reference(x0, ax, indices);
        CHECK(same(ad::index_select(ad::constant(x0), axis, index).value(), expected));
        CHECK(same(ad::index_select(ad::constant(x0), axis, indices).value(), expected));
        CHECK_GRADCHECK(([axis, index](const Vars& v) { return ad::index_select(v[0], axis, index); }),
                        (std::vector<Array<double>>{x0}));
        CHECK_GRADCHECK(([axis, indices](const Vars& v) { return ad::index_select(v[0], axis, indices); }),
                        (std::vector<Array<double>>{x0}));

        Array<double> src = ad::test::uniform(ad::shape_of(expected), rng());
        CHECK(xt::allclose(ad::index_add(s, axis, index, ad::constant(src)).value(),
                           index_add_reference(s, ax, indices, src), 1e-14, 1e-14));
        CHECK_GRADCHECK(([s, axis, index](const Vars& v) { return ad::index_add(s, axis, index, v[0]); }),
                        (std::vector<Array<double>>{src}));
    }
}

TEST_CASE("index_select: a slice picked k times receives k times its cotangent") {
    ad::Tape tape;
    auto x = ad::param(Array<double>{{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}});
    auto y = ad::index_select(x, 1, IndexArray{0, 2, 0, 0});
    CHECK(y.value() == Array<double>{{1.0, 3.0, 1.0, 1.0}, {4.0, 6.0, 4.0, 4.0}});
    ad::sum(y).backward();
    CHECK(x.grad() == Array<double>{{3.0, 0.0, 1.0}, {3.0, 0.0, 1.0}});
}

TEST_CASE("embedding: rows of the table for tokens of any shape, and rows used often add up their gradients") {
    std::mt19937_64 rng(35);
    const Shape token_shapes[] = {{}, {1}, {5}, {2, 3}, {2, 1, 4}, {0}, {3, 0}};
    for (const Shape& ts : token_shapes) {
        Shape table_shape{1 + rng() % 5, 1 + rng() % 4};
        IndexArray tokens = random_index(ts, table_shape[0], rng);
        INFO(fmt::format("tokens {} into table {}", ad::shape_string(ts), ad::shape_string(table_shape)));
        Array<double> table = ad::test::uniform(table_shape, rng());
        Shape y_shape = ts;
        y_shape.push_back(table_shape[1]);
        Array<double> expected = Array<double>::from_shape(y_shape);
        for (std::size_t t = 0; t < tokens.size(); ++t) {
            for (std::size_t d = 0; d < table_shape[1]; ++d) {
                expected.data()[t * table_shape[1] + d] = table(static_cast<std::size_t>(tokens.data()[t]), d);
            }
        }
        CHECK(same(ad::embedding(ad::constant(table), tokens).value(), expected));
        CHECK_GRADCHECK(([tokens](const Vars& v) { return ad::embedding(v[0], tokens); }),
                        (std::vector<Array<double>>{table}));
    }
    ad::Tape tape;
    auto table = ad::param(Array<double>{{1.0, 2.0}, {3.0, 4.0}, {5.0, 6.0}});
    ad::sum(ad::embedding(table, IndexArray{{2, 0}, {2, 2}})).backward();
    CHECK(table.grad() == Array<double>{{1.0, 1.0}, {0.0, 0.0}, {3.0, 3.0}});
}

TEST_CASE("indexing ops: out-of-range indices are value_errors naming the op, the index and the bound") {
    auto x = ad::constant(Array<double>::from_shape({2, 5}));
    CHECK_THROWS_WITH_AS(ad::gather(x, 1, IndexArray{{0, 7}}), "gather: index 7 out of range [0, 5) along axis 1",
                         ad::value_error);
    CHECK_THROWS_WITH_AS(ad::gather(x, -2, one_by_one<std::int64_t>(-1)), "gather: index -1 out of range [0, 2) along axis -2",
                         ad::value_error);
    CHECK_THROWS_WITH_AS(ad::gather(x, 2, one_by_one<std::int64_t>(0)), "gather: axis 2 is out of range for a value of rank 2",
                         ad::value_error);
    CHECK_THROWS_WITH_AS(ad::scatter_add({2, 5}, 0, one_by_one<std::int64_t>(2), ad::constant(one_by_one(1.0))),
                         "scatter_add: index 2 out of range [0, 2) along axis 0", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::index_select(x, 0, IndexArray{1, 2}), "index_select: index 2 out of range [0, 2) along axis 0",
                         ad::value_error);
    CHECK_THROWS_WITH_AS(ad::index_select(x, -1, IndexArray{-3}), "index_select: index -3 out of range [0, 5) along axis -1",
                         ad::value_error);
    CHECK_THROWS_WITH_AS(ad::index_select(x, 1, std::vector<std::size_t>{4, 5}),
                         "index_select: index 5 out of range [0, 5) along axis 1", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::index_add({2, 5}, 1, IndexArray{9}, ad::constant(Array<double>::from_shape({2, 1}))),
                         "index_add: index 9 out of range [0, 5) along axis 1", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::embedding(x, IndexArray{{0, 1}, {2, 1}}), "embedding: token 2 out of range [0, 2) for table (2, 5)",
                         ad::value_error);
    CHECK_THROWS_WITH_AS(ad::embedding(x, IndexArray{-1}), "embedding: token -1 out of range [0, 2) for table (2, 5)",
                         ad::value_error);
}

TEST_CASE("indexing ops: bad shapes are shape_errors naming the op and the shapes") {
    auto x = ad::constant(Array<double>::from_shape({2, 5}));
    CHECK_THROWS_WITH_AS(ad::gather(x, 1, IndexArray{0, 1}), "gather: index (2,) has rank 1, x (2, 5) has rank 2",
                         ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::gather(x, 1, IndexArray::from_shape({3, 1})),
                         "gather: index (3, 1) is longer than x (2, 5) along axis 0 (only axis 1 may be)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::scatter_add({2, 5}, 1, IndexArray{{0, 1}}, ad::constant(one_by_one(1.0))),
                         "scatter_add: src (1, 1) must have the shape of index (1, 2)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::index_select(x, 0, one_by_one<std::int64_t>(0)), "index_select: indices (1, 1) must be 1-D", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::index_add({2, 5}, 0, IndexArray{0, 1, 1}, ad::constant(Array<double>::from_shape({2, 5}))),
                         "index_add: src (2, 5) must be (3, 5) for 3 indices into (2, 5) along axis 0", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::embedding(ad::constant(Array<double>{1.0, 2.0}), IndexArray{0}),
                         "embedding: table (2,) must be 2-D (V, D)", ad::shape_error);
}

TEST_CASE("indexing ops: a throwing op leaves the tape as it was") {
    ad::Tape tape;
    Array<double> x0 = ad::test::uniform({2, 3}, 36);
    auto x = ad::param(x0);
    auto y = ad::exp(x);
    std::size_t before = tape.size();
    CHECK_THROWS_AS(ad::gather(y, 1, IndexArray{{0, 3}}), ad::value_error);
    CHECK_THROWS_AS(ad::gather(y, 1, IndexArray{{0, 1}, {1, 1}, {0, 0}}), ad::shape_error);
    CHECK_THROWS_AS(ad::scatter_add({2, 3}, 0, IndexArray{{0, 5}}, y), ad::shape_error);
    CHECK_THROWS_AS(ad::scatter_add({2, 3}, 0, IndexArray{{0, 5, 1}, {1, 1, 1}}, y), ad::value_error);
    CHECK_THROWS_AS(ad::index_select(y, 0, IndexArray{0, 2}), ad::value_error);
    CHECK_THROWS_AS(ad::index_select(y, 1, std::vector<std::size_t>{3}), ad::value_error);
    CHECK_THROWS_AS(ad::index_add({4, 3}, 0, IndexArray{0, 4}, y), ad::value_error);
    CHECK_THROWS_AS(ad::embedding(y, IndexArray{0, 2}), ad::value_error);
    CHECK(tape.size() == before);
    ad::sum(y).backward();
    CHECK(xt::allclose(x.grad(), xt::exp(x0)));  // d/dx sum(e^x) = e^x
}

TEST_CASE("indexing ops: float gradients agree with double ones") {
    Array<float> xf = xt::cast<float>(ad::test::uniform({3, 4}, 37));
    auto gradient = [](const auto& x0) {
        ad::Tape tape;
        auto x = ad::param(x0);
        auto w = ad::tanh(x);
        auto z = ad::sum(ad::square(ad::gather(w, 1, IndexArray{{3, 0, 3}, {1, 1, 2}}))) +
                 ad::sum(ad::exp(ad::index_select(w, -2, IndexArray{2, 0, 2}))) +
                 ad::sum(ad::square(ad::index_select(w, 1, std::vector<std::size_t>{1, 1}))) +
                 ad::sum(ad::square(ad::embedding(w, IndexArray{{0, 2}, {2, 1}, {1, 1}}))) +
                 ad::sum(ad::square(ad::scatter_add(Shape{3, 4}, 0, IndexArray{{2, 2}}, ad::gather(w, 0, IndexArray{{1, 0}})))) +
                 ad::sum(ad::square(ad::index_add(Shape{2, 4}, 0, IndexArray{1, 1, 0}, w)));
        z.backward();
        return x.grad();
    };
    auto gf = gradient(xf);
    auto gd = gradient(Array<double>(xt::cast<double>(xf)));
    CHECK(ad::test::float_matches_double(gf, gd));
}
