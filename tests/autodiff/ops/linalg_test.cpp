#include "support/test_support.hpp"

#include <algorithm>
#include <string>
#include <utility>

#include <fmt/format.h>

using ad::Array;
using ad::Shape;
using ad::Var;
using ad::test::Vars;

namespace {

/// The textbook triple loop: c(i, j) = sum_k a(i, k) b(k, j).
Array<double> naive_matmul(const Array<double>& a, const Array<double>& b) {
    std::size_t m = a.shape()[0], k = a.shape()[1], n = b.shape()[1];
    Array<double> c = xt::zeros<double>({m, n});
    for (std::size_t i = 0; i < m; ++i) {
        for (std::size_t j = 0; j < n; ++j) {
            for (std::size_t p = 0; p < k; ++p) c(i, j) += a(i, p) * b(p, j);
        }
    }
    return c;
}

Array<double> naive_transpose(const Array<double>& a) {
    Array<double> t = Array<double>::from_shape({a.shape()[1], a.shape()[0]});
    for (std::size_t i = 0; i < a.shape()[0]; ++i) {
        for (std::size_t j = 0; j < a.shape()[1]; ++j) t(j, i) = a(i, j);
    }
    return t;
}

/// Operands stored so that op(a) is m x k and op(b) is k x n, with op(a) op(b)
/// by the triple loop.
struct TransposedProduct {
    Array<double> a, b, expected;
};

TransposedProduct transposed_product(std::size_t m, std::size_t k, std::size_t n, bool ta, bool tb, std::mt19937_64& rng) {
    Array<double> a = ad::test::uniform(ta ? Shape{k, m} : Shape{m, k}, rng());
    Array<double> b = ad::test::uniform(tb ? Shape{n, k} : Shape{k, n}, rng());
    Array<double> expected = naive_matmul(ta ? naive_transpose(a) : a, tb ? naive_transpose(b) : b);
    return {a, b, expected};
}

}  // namespace

TEST_CASE("matmul: forward matches the triple loop for 2-D x 2-D, 2-D x 1-D, 1-D x 2-D and 1-D x 1-D") {
    std::mt19937_64 rng(1);
    for (int round = 0; round < 6; ++round) {
        std::size_t m = 1 + rng() % 5, k = 1 + rng() % 5, n = 1 + rng() % 5;
        INFO(fmt::format("m {}, k {}, n {}", m, k, n));
        Array<double> a = ad::test::uniform({m, k}, rng());
        Array<double> b = ad::test::uniform({k, n}, rng());
        Array<double> u = ad::test::uniform({k}, rng());
        Array<double> w = ad::test::uniform({k}, rng());
        Array<double> expected = naive_matmul(a, b);
        CHECK(ad::test::matches(ad::matmul(ad::constant(a), ad::constant(b)).value(), expected));

        // A vector on the right is a column: the result is a vector of length m.
        Array<double> column = u;
        column.reshape({k, 1});
        Array<double> av = naive_matmul(a, column);
        av.reshape({m});
        CHECK(ad::test::matches(ad::matmul(ad::constant(a), ad::constant(u)).value(), av));

        // A vector on the left is a row: the result is a vector of length n.
        Array<double> row = u;
        row.reshape({1, k});
        Array<double> vb = naive_matmul(row, b);
        vb.reshape({n});
        CHECK(ad::test::matches(ad::matmul(ad::constant(u), ad::constant(b)).value(), vb));

        // Two vectors: their dot product, 0-d.
        double dot = 0;
        for (std::size_t p = 0; p < k; ++p) dot += u(p) * w(p);
        auto uw = ad::matmul(ad::constant(u), ad::constant(w));
        CHECK(uw.dim() == 0);
        CHECK(uw.item() == doctest::Approx(dot).epsilon(1e-12));
    }
}

TEST_CASE("matmul with transpose flags: forward matches the triple loop for all four combinations") {
    std::mt19937_64 rng(2);
    for (int round = 0; round < 4; ++round) {
        std::size_t m = 1 + rng() % 5, k = 1 + rng() % 5, n = 1 + rng() % 5;
        for (bool ta : {false, true}) {
            for (bool tb : {false, true}) {
                INFO(fmt::format("m {}, k {}, n {}, transpose_a {}, transpose_b {}", m, k, n, ta, tb));
                auto [a, b, expected] = transposed_product(m, k, n, ta, tb, rng);
                CHECK(ad::test::matches(ad::matmul(ad::constant(a), ad::constant(b), ta, tb).value(), expected));
            }
        }
    }
}

TEST_CASE("matmul: empty inner or outer dimensions give zeros of the right shape") {
    auto c = ad::matmul(ad::constant(Array<double>::from_shape({3, 0})), ad::constant(Array<double>::from_shape({0, 2})));
    CHECK(c.shape() == Shape{3, 2});
    CHECK(c.value() == Array<double>(xt::zeros<double>({3, 2})));
    CHECK(ad::matmul(ad::constant(Array<double>::from_shape({0, 4})), ad::constant(Array<double>::from_shape({4, 2})))
              .shape() == Shape{0, 2});
}

TEST_CASE("matmul: gradients match finite differences for every operand rank over random sizes") {
    std::mt19937_64 rng(3);
    int checked = 0;
    for (int round = 0; round < 6; ++round) {
        std::size_t m = 1 + rng() % 4, k = 1 + rng() % 4, n = 1 + rng() % 4;
        INFO(fmt::format("m {}, k {}, n {}", m, k, n));
        auto mm = [](const Vars& v) { return ad::matmul(v[0], v[1]); };
        CHECK_GRADCHECK(mm, (std::vector<Array<double>>{ad::test::uniform({m, k}, rng()), ad::test::uniform({k, n}, rng())}));
        CHECK_GRADCHECK(mm, (std::vector<Array<double>>{ad::test::uniform({m, k}, rng()), ad::test::uniform({k}, rng())}));
        CHECK_GRADCHECK(mm, (std::vector<Array<double>>{ad::test::uniform({k}, rng()), ad::test::uniform({k, n}, rng())}));
        CHECK_GRADCHECK(mm, (std::vector<Array<double>>{ad::test::uniform({k}, rng()), ad::test::uniform({k}, rng())}));
        checked += 4;
    }
    CHECK(checked == 24);
}

TEST_CASE("matmul with transpose flags: gradients match finite differences for all four combinations") {
    std::mt19937_64 rng(4);
    int checked = 0;
    for (int round = 0; round < 4; ++round) {
        std::size_t m = 1 + rng() % 4, k = 1 + rng() % 4, n = 1 + rng() % 4;
        for (bool ta : {false, true}) {
            for (bool tb : {false, true}) {
                INFO(fmt::format("m {}, k {}, n {}, transpose_a {}, transpose_b {}", m, k, n, ta, tb));
                Array<double> a = ad::test::uniform(ta ? Shape{k, m} : Shape{m, k}, rng());
                Array<double> b = ad::test::uniform(tb ? Shape{n, k} : Shape{k, n}, rng());
                CHECK_GRADCHECK(([ta, tb](const Vars& v) { return ad::matmul(v[0], v[1], ta, tb); }),
                                (std::vector<Array<double>>{a, b}));
                ++checked;
            }
        }
    }
    CHECK(checked == 16);
}

TEST_CASE("matmul: one operand used on both sides gets both contributions") {
    // d/dA sum(A A^T W) involves A through both factors; the flags form must route each.
    Array<double> a = ad::test::uniform({3, 2}, 5);
    Array<double> w = ad::test::uniform({3, 3}, 6);
    CHECK_GRADCHECK([](const Vars& v) { return ad::matmul(ad::matmul(v[0], v[0], false, true), v[1]); },
                    (std::vector<Array<double>>{a, w}));
    CHECK_GRADCHECK([](const Vars& v) { return ad::matmul(v[0], v[0], true, false); }, (std::vector<Array<double>>{a}));
}

TEST_CASE("matmul: shapes that do not multiply are shape_errors naming matmul and both shapes") {
    auto a34 = ad::constant(Array<double>::from_shape({3, 4}));
    auto a52 = ad::constant(Array<double>::from_shape({5, 2}));
    auto v3 = ad::constant(Array<double>::from_shape({3}));
    auto v5 = ad::constant(Array<double>::from_shape({5}));
    CHECK_THROWS_WITH_AS(ad::matmul(a34, a52), "matmul: cannot multiply (3, 4) by (5, 2)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::matmul(a34, v3), "matmul: cannot multiply (3, 4) by (3,)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::matmul(v3, a52), "matmul: cannot multiply (3,) by (5, 2)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::matmul(v3, v5), "matmul: cannot multiply (3,) by (5,)", ad::shape_error);
    // A batched operand multiplies like torch.matmul: (3, 4) by (4, 2, 2) has inner dimensions 4 and 2.
    CHECK_THROWS_WITH_AS(ad::matmul(a34, ad::constant(Array<double>::from_shape({4, 2, 2}))),
                         "matmul: cannot multiply (3, 4) by (4, 2, 2)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::matmul(ad::scalar(2.0), v3),
                         "matmul: cannot multiply () by (3,) (expects operands of rank 1 or more)", ad::shape_error);
    // The flags form names the transposes it was asked for.
    CHECK_THROWS_WITH_AS(ad::matmul(a34, a52, true, false), "matmul: cannot multiply (3, 4)^T by (5, 2)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::matmul(a34, a52, false, true), "matmul: cannot multiply (3, 4) by (5, 2)^T", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::matmul(a34, a52, true, true), "matmul: cannot multiply (3, 4)^T by (5, 2)^T", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::matmul(a34, v3, true, false),
                         "matmul: cannot multiply (3, 4) by (3,) (expects operands of rank 2 or more here)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::matmul(a34, Var<double>()), "matmul: an input is an empty Var", ad::tape_error);
}

TEST_CASE("matmul: a throwing matmul leaves the tape as it was") {
    ad::Tape tape;
    Array<double> a0 = ad::test::uniform({2, 3}, 7);
    Array<double> b0 = ad::test::uniform({3, 4}, 8);
    auto a = ad::param(a0);
    auto b = ad::param(b0);
    auto c = ad::matmul(a, b);
    std::size_t before = tape.size();
    CHECK_THROWS_AS(ad::matmul(c, b), ad::shape_error);
    CHECK_THROWS_AS(ad::matmul(ad::param(Array<double>::from_shape({5})), b), ad::shape_error);
    CHECK_THROWS_AS(ad::matmul(b, ad::param(Array<double>::from_shape({5}))), ad::shape_error);
    CHECK_THROWS_AS(ad::matmul(c, a, false, false), ad::shape_error);
    CHECK(tape.size() == before);
    ad::sum(c).backward();
    // d/dA sum(A B) = 1 B^T: each row holds B's row sums; d/dB = A^T 1: each column holds A's column sums.
    Array<double> ones = xt::ones<double>({2, 4});
    CHECK(ad::test::matches(a.grad(), naive_matmul(ones, naive_transpose(b0))));
    CHECK(ad::test::matches(b.grad(), naive_matmul(naive_transpose(a0), ones)));
}

TEST_CASE("matmul: float gradients agree with double ones") {
    Array<float> af = xt::cast<float>(ad::test::uniform({3, 4}, 9));
    Array<float> bf = xt::cast<float>(ad::test::uniform({4, 2}, 10));
    Array<float> vf = xt::cast<float>(ad::test::uniform({4}, 11));
    auto gradients = [](const auto& a0, const auto& b0, const auto& v0) {
        ad::Tape tape;
        auto a = ad::param(a0);
        auto b = ad::param(b0);
        auto v = ad::param(v0);
        auto h = ad::tanh(ad::matmul(a, b));
        auto z = ad::sum(ad::matmul(h, b, false, true) * a) + ad::sum(ad::square(ad::matmul(a, v))) +
                 ad::matmul(v, v) * ad::sum(ad::matmul(v, b)) + ad::sum(ad::matmul(a, h, true, false));
        z.backward();
        return std::vector{a.grad(), b.grad(), v.grad()};
    };
    auto gf = gradients(af, bf, vf);
    auto gd = gradients(Array<double>(xt::cast<double>(af)), Array<double>(xt::cast<double>(bf)),
                        Array<double>(xt::cast<double>(vf)));
    ad::test::check_float_matches_double(gf, gd);
}

TEST_CASE("matmul: create_graph gradients differentiate again (second derivatives match finite differences)") {
    std::mt19937_64 rng(12);
    for (int round = 0; round < 3; ++round) {
        std::size_t m = 1 + rng() % 3, k = 1 + rng() % 3, n = 1 + rng() % 3;
        INFO(fmt::format("m {}, k {}, n {}", m, k, n));
        std::vector<Array<double>> inputs{ad::test::uniform({m, k}, rng()), ad::test::uniform({k, n}, rng())};
        // Bilinear: d/dA is linear in B, so only the mixed second derivative is nonzero.
        ad::Function plain = [](const Vars& v) { return ad::matmul(v[0], v[1]); };
        // Through tanh the second derivative with respect to the same operand is nonzero too.
        ad::Function curved = [](const Vars& v) { return ad::tanh(ad::matmul(v[0], v[1], false, false)); };
        ad::Function flagged = [](const Vars& v) { return ad::sigmoid(ad::matmul(v[1], v[0], true, true)); };
        // Each check differentiates the gradient with respect to both operands again.
        CHECK_GRADGRADCHECK(plain, inputs);
        CHECK_GRADGRADCHECK(curved, inputs);
        CHECK_GRADGRADCHECK(flagged, inputs);
    }
}

TEST_CASE("linear: y = x W^T + b matches matmul plus bias, and its gradients match finite differences") {
    std::mt19937_64 rng(77);
    for (int round = 0; round < 8; ++round) {
        std::size_t batch = 1 + rng() % 5, in = 1 + rng() % 5, out = 1 + rng() % 5;
        INFO(fmt::format("batch {}, in {}, out {}", batch, in, out));
        Array<double> x = ad::test::uniform({batch, in}, rng()), w = ad::test::uniform({out, in}, rng()),
                      b = ad::test::uniform({out}, rng());
        Array<double> expected = Array<double>::from_shape({batch, out});
        for (std::size_t r = 0; r < batch; ++r) {
            for (std::size_t o = 0; o < out; ++o) {
                double acc = b(o);
                for (std::size_t k = 0; k < in; ++k) acc += x(r, k) * w(o, k);
                expected(r, o) = acc;
            }
        }
        CHECK(ad::test::matches(ad::linear(ad::constant(x), ad::constant(w), ad::constant(b)).value(), expected));
        CHECK_GRADCHECK([](const Vars& v) { return ad::linear(v[0], v[1], v[2]); },
                        (std::vector<Array<double>>{x, w, b}));
    }
}

TEST_CASE("matmul and linear: one row, one column or k = 1 (GEMV and GER paths) match the loops and finite differences") {
    std::mt19937_64 rng(78);
    // (m, k, n): outer products with and without a vector side, and vector results.
    for (auto [m, k, n] : std::vector<std::array<std::size_t, 3>>{{4, 1, 3}, {1, 1, 3}, {4, 1, 1}, {1, 1, 1}, {4, 3, 1}, {1, 3, 4}}) {
        for (bool ta : {false, true}) {
            for (bool tb : {false, true}) {
                INFO(fmt::format("m {}, k {}, n {}, transpose_a {}, transpose_b {}", m, k, n, ta, tb));
                auto [a, b, expected] = transposed_product(m, k, n, ta, tb, rng);
                CHECK(ad::test::matches(ad::matmul(ad::constant(a), ad::constant(b), ta, tb).value(), expected));
                CHECK_GRADCHECK(([ta, tb](const Vars& v) { return ad::matmul(v[0], v[1], ta, tb); }),
                                (std::vector<Array<double>>{a, b}));
            }
        }
    }
    // (batch, in, out): one output, one row, both.
    for (auto [batch, in, out] : std::vector<std::array<std::size_t, 3>>{{4, 3, 1}, {1, 3, 4}, {1, 3, 1}, {4, 1, 1}}) {
        INFO(fmt::format("batch {}, in {}, out {}", batch, in, out));
        Array<double> x = ad::test::uniform({batch, in}, rng()), w = ad::test::uniform({out, in}, rng()),
                      b = ad::test::uniform({out}, rng());
        Array<double> expected = naive_matmul(x, naive_transpose(w)) + b;
        CHECK(ad::test::matches(ad::linear(ad::constant(x), ad::constant(w), ad::constant(b)).value(), expected));
        CHECK_GRADCHECK([](const Vars& v) { return ad::linear(v[0], v[1], v[2]); }, (std::vector<Array<double>>{x, w, b}));
    }
}

TEST_CASE("linear, linear_sigmoid: operands that do not make a layer are rejected with their shapes, and record nothing") {
    using Layer = Var<double> (*)(const Var<double>&, const Var<double>&, const Var<double>&);
    for (auto [name, layer] : {std::pair<std::string, Layer>{"linear", ad::linear<double>},
                               std::pair<std::string, Layer>{"linear_sigmoid", ad::linear_sigmoid<double>}}) {
        INFO(name);
        ad::Tape tape;
        auto x = ad::param(ad::test::uniform({4, 3}, 1));
        auto w = ad::param(ad::test::uniform({2, 5}, 2));
        auto b = ad::param(ad::test::uniform({2}, 3));
        CHECK_THROWS_WITH_AS(layer(x, w, b),
                             (name + ": input (4, 3), weight (2, 5) and bias (2,) do not fit y = x W^T + b (expects "
                                     "(batch, in), (out, in), (out,))")
                                 .c_str(),
                             ad::shape_error);
        CHECK(tape.size() == 0);
    }
}

TEST_CASE("linear_sigmoid: sigmoid(linear) in one record, same values and gradients, and finite differences agree") {
    std::mt19937_64 rng(79);
    // (batch, in, out): GEMM, one output (GEMV), one row (GEMV), both.
    for (auto [batch, in, out] : std::vector<std::array<std::size_t, 3>>{{4, 3, 5}, {4, 3, 1}, {1, 3, 4}, {1, 3, 1}}) {
        INFO(fmt::format("batch {}, in {}, out {}", batch, in, out));
        Array<double> x = ad::test::uniform({batch, in}, rng()), w = ad::test::uniform({out, in}, rng()),
                      b = ad::test::uniform({out}, rng()), c = ad::test::uniform({batch, out}, rng());
        auto grads_of = [&](bool fused, std::size_t& records) {
            auto xv = ad::param(x), wv = ad::param(w), bv = ad::param(b);
            ad::Tape tape;
            auto y = fused ? ad::linear_sigmoid(xv, wv, bv) : ad::sigmoid(ad::linear(xv, wv, bv));
            records = tape.size();
            ad::sum(y * ad::constant(c)).backward();
            return std::vector<Array<double>>{y.value(), xv.grad(), wv.grad(), bv.grad()};
        };
        std::size_t fused_records = 0, plain_records = 0;
        auto fused = grads_of(true, fused_records);
        auto plain = grads_of(false, plain_records);
        CHECK(fused_records == 1);
        CHECK(plain_records == 2);
        for (std::size_t i = 0; i < fused.size(); ++i) CHECK(ad::test::matches(fused[i], plain[i]));
        CHECK_GRADCHECK([](const Vars& v) { return ad::linear_sigmoid(v[0], v[1], v[2]); },
                        (std::vector<Array<double>>{x, w, b}));
    }
}

TEST_CASE("linear_sigmoid: the cotangent is overwritten in place only when nothing else holds it") {
    Array<double> x = ad::test::uniform({3, 2}, 81), w = ad::test::uniform({4, 2}, 82), b = ad::test::uniform({4}, 83),
                  c = ad::test::uniform({3, 4}, 84);
    auto xv = ad::param(x), wv = ad::param(w), bv = ad::param(b);
    ad::Tape tape;
    auto y = ad::linear_sigmoid(xv, wv, bv);
    const Array<double> s = y.value();
    const Array<double> expected_x = naive_matmul(Array<double>(c * s * (1.0 - s)), w);
    // A seed the caller holds.
    auto seed = ad::constant(c);
    auto by_seed = ad::grad(y, {xv}, seed, {.retain_graph = true});
    CHECK(seed.value() == c);
    CHECK(ad::test::matches(by_seed[0].value(), expected_x));
    // The cotangent of y itself, read while the sweep runs.
    auto by_loss = ad::grad(ad::sum(y * ad::constant(c)), {y, xv});
    CHECK(by_loss[0].value() == c);
    CHECK(ad::test::matches(by_loss[1].value(), expected_x));
}

TEST_CASE("linear_sigmoid: a small layer's weight and bias gradients land in their own buffers every step") {
    // The xor model's layer: no gradient array is made per step, and ad::grad,
    // which leaves grad() alone, gets arrays of its own.
    ad::Tape tape;
    Array<double> x = ad::test::uniform({4, 2}, 41), y = ad::test::uniform({4, 3}, 42);
    auto w = ad::param(ad::test::uniform({3, 2}, 43));
    auto b = ad::param(ad::test::uniform({3}, 44));
    auto loss = [&] { return ad::half_sse(ad::linear_sigmoid(ad::constant(x), w, b), ad::constant(y)); };
    // d = (s - y) s (1 - s) for s = sigmoid(x W^T + b); dW = d^T x, db = column sums of d.
    auto expected = [&] {
        Array<double> s = 1.0 / (1.0 + xt::exp(-(naive_matmul(x, naive_transpose(w.value())) + b.value())));
        Array<double> d = (s - y) * s * (1.0 - s);
        return std::pair<Array<double>, Array<double>>{naive_matmul(naive_transpose(d), x), xt::sum(d, {0})};
    };
    loss().backward();
    const double* w_buffer = w.grad().data();
    const double* b_buffer = b.grad().data();
    for (int step = 0; step < 3; ++step) {
        w.zero_grad();
        b.zero_grad();
        loss().backward();
        auto [dw, db] = expected();
        CHECK(ad::test::matches(w.grad(), dw));
        CHECK(ad::test::matches(b.grad(), db));
        CHECK(w.grad().data() == w_buffer);
        CHECK(b.grad().data() == b_buffer);
        tape.clear();
    }
    w.zero_grad();
    auto grads = ad::grad(loss(), {w, b});
    CHECK(grads[0].value().data() != w_buffer);
    CHECK(grads[1].value().data() != b_buffer);
    auto [dw, db] = expected();
    CHECK(ad::test::matches(grads[0].value(), dw));
    CHECK(w.grad() == Array<double>(xt::zeros<double>({3, 2})));  // the pending zero_grad()
    CHECK(ad::test::matches(grads[0].value(), dw));             // and the result does not see it
}

TEST_CASE("linear and matmul: a weight gradient is computed into the parameter's own buffer, right in every path") {
    // After zero_grad() the gradient GEMM writes into grad()'s buffer instead
    // of a new array (detail::lend_grad_buffer). Whatever path the buffer takes, the gradients
    // must equal the formulas: loss = sum(c * y), so dW = c^T x for
    // y = x W^T + b, and dB = op(A)^T c for C = op(A) op(B).
    ad::Tape tape;
    const std::size_t side = 96;
    Array<double> x = ad::test::uniform({4, side}, 21), c = ad::test::uniform({4, side}, 22);
    Array<double> expected = naive_matmul(naive_transpose(c), x);
    auto w = ad::param(ad::test::uniform({side, side}, 23));
    auto b = ad::param(ad::test::uniform({side}, 24));
    auto loss = [&] { return ad::sum(ad::linear(ad::constant(x), w, b) * ad::constant(c)); };

    loss().backward();  // a new parameter's gradient is free too
    CHECK(ad::test::matches(w.grad(), expected));
    const double* buffer = w.grad().data();
    for (int step = 0; step < 3; ++step) {
        w.zero_grad();
        loss().backward();
        CHECK(ad::test::matches(w.grad(), expected));
        CHECK(w.grad().data() == buffer);  // no new gradient array per step
    }
    loss().backward();  // no zero_grad: accumulates into the same buffer
    CHECK(ad::test::matches(w.grad(), 2.0 * expected));

    SUBCASE("a weight used twice sums both contributions") {
        w.zero_grad();
        ad::sum((ad::linear(ad::constant(x), w, b) + ad::linear(ad::constant(x), w, b)) * ad::constant(c)).backward();
        CHECK(ad::test::matches(w.grad(), 2.0 * expected));
    }
    SUBCASE("ad::grad returns the gradient and leaves grad() zero") {
        w.zero_grad();
        auto g = ad::grad(loss(), {w});
        CHECK(ad::test::matches(g[0].value(), expected));
        CHECK(w.grad() == Array<double>(xt::zeros<double>({side, side})));
        loss().backward();
        CHECK(ad::test::matches(w.grad(), expected));
    }
    SUBCASE("a sweep that fails after the weight's VJP leaves grad() zero") {
        w.zero_grad();
        // Recorded before linear, so the sweep reaches it after linear's VJP has run.
        auto x_param = ad::param(x);
        auto broken = ad::make_op("broken", Array<double>(x), x_param, [](std::size_t, const Var<double>& g) -> Var<double> {
            throw ad::value_error(fmt::format("broken: no gradient for shape {}", ad::shape_string_of(g.value())));
        });
        CHECK_THROWS_AS(ad::sum(ad::linear(broken, w, b) * ad::constant(c)).backward(), ad::value_error);
        CHECK(w.grad() == Array<double>(xt::zeros<double>({side, side})));
        loss().backward();
        CHECK(ad::test::matches(w.grad(), expected));
    }
    SUBCASE("matmul lends to either operand, transposed or not") {
        std::size_t m = side, k = side + 1, n = side + 2;
        for (bool ta : {false, true}) {
            for (bool tb : {false, true}) {
                INFO(fmt::format("transpose_a {}, transpose_b {}", ta, tb));
                Array<double> a = ad::test::uniform(ta ? Shape{k, m} : Shape{m, k}, 31);
                Array<double> bm = ad::test::uniform(tb ? Shape{n, k} : Shape{k, n}, 32);
                Array<double> cm = ad::test::uniform({m, n}, 33);
                Array<double> op_a = ta ? naive_transpose(a) : a, op_b = tb ? naive_transpose(bm) : bm;
                Array<double> da = naive_matmul(cm, naive_transpose(op_b));  // d/d op(A)
                Array<double> db = naive_matmul(naive_transpose(op_a), cm);  // d/d op(B)
                auto pa = ad::param(a), pb = ad::param(bm);
                const double* buffer_a = pa.grad().data();
                const double* buffer_b = pb.grad().data();
                for (int step = 0; step < 2; ++step) {
                    pa.zero_grad();
                    pb.zero_grad();
                    ad::sum(ad::matmul(pa, pb, ta, tb) * ad::constant(cm)).backward();
                    CHECK(ad::test::matches(pa.grad(), ta ? naive_transpose(da) : da));
                    CHECK(ad::test::matches(pb.grad(), tb ? naive_transpose(db) : db));
                    CHECK(pa.grad().data() == buffer_a);
                    CHECK(pb.grad().data() == buffer_b);
                }
            }
        }
    }
}

// ---------------------------------------------------------------- batched matmul, outer, dot, trace

namespace {

/// torch.matmul of operands of rank >= 2 by loops: the batch axes (all but
/// the last two) aligned on the right and broadcast, a missing or size-1 axis
/// reused; op(x) swaps x's last two axes when its flag is set.
Array<double> naive_batched_matmul(const Array<double>& a, const Array<double>& b, bool ta = false, bool tb = false) {
    Shape sa(a.shape().begin(), a.shape().end()), sb(b.shape().begin(), b.shape().end());
    std::size_t ra = sa.size(), rb = sb.size(), rank = std::max(ra, rb) - 2;
    std::size_t m = ta ? sa[ra - 1] : sa[ra - 2], k = ta ? sa[ra - 2] : sa[ra - 1];
    std::size_t n = tb ? sb[rb - 2] : sb[rb - 1];
    Shape out(rank + 2);
    for (std::size_t d = 0; d < rank; ++d) {
        std::size_t da = d + ra - 2 >= rank ? sa[d + ra - 2 - rank] : 1;
        std::size_t db = d + rb - 2 >= rank ? sb[d + rb - 2 - rank] : 1;
        out[d] = da == 1 ? db : da;
    }
    out[rank] = m;
    out[rank + 1] = n;
    Array<double> c = xt::zeros<double>(out);
    for (std::size_t flat = 0; flat < c.size(); ++flat) {
        Shape index = ad::test::unravel(flat, out);
        Shape ia(ra), ib(rb);
        for (std::size_t d = 0; d + 2 < ra; ++d) ia[d] = sa[d] == 1 ? 0 : index[d + rank - (ra - 2)];
        for (std::size_t d = 0; d + 2 < rb; ++d) ib[d] = sb[d] == 1 ? 0 : index[d + rank - (rb - 2)];
        double acc = 0;
        for (std::size_t p = 0; p < k; ++p) {
            ia[ra - 2] = ta ? p : index[rank];
            ia[ra - 1] = ta ? index[rank] : p;
            ib[rb - 2] = tb ? index[rank + 1] : p;
            ib[rb - 1] = tb ? p : index[rank + 1];
            acc += a.data()[ad::test::ravel(ia, sa)] * b.data()[ad::test::ravel(ib, sb)];
        }
        c.data()[flat] = acc;
    }
    return c;
}

Array<double> reshaped(Array<double> x, const Shape& shape) {
    x.reshape(shape);
    return x;
}

/// op(a) and op(b) shapes (m, k) and (k, n) with batch axes in front; stored
/// with the last two axes swapped where a flag asks.
Shape stored(Shape logical, bool transposed) {
    if (transposed) std::swap(logical[logical.size() - 2], logical[logical.size() - 1]);
    return logical;
}

struct ShapePair {
    Shape a, b;
};

/// Pairs of rank >= 2 (the logical shapes of op(a), op(b)): equal batches,
/// broadcast batches, one side 2-D, rank 5, a single matrix with leading ones
/// on the right (the folded path), and size-0 batch, outer and inner dimensions.
const std::vector<ShapePair>& batched_pairs() {
    static const std::vector<ShapePair> pairs = {
        {{2, 3, 4}, {2, 4, 5}},       {{2, 1, 3, 4}, {5, 4, 6}}, {{3, 4}, {2, 4, 5}},
        {{2, 3, 4}, {4, 5}},          {{1, 3, 2}, {2, 2, 2, 3}}, {{2, 2, 3, 4}, {1, 1, 4, 2}},
        {{2, 1, 2, 3, 2}, {3, 1, 2, 2}}, {{3, 1, 4}, {3, 4, 1}}, {{2, 3, 1}, {1, 2}},
        {{0, 3, 4}, {4, 5}},          {{2, 3, 0}, {2, 0, 5}},    {{2, 0, 4}, {2, 4, 5}},
        {{2, 3, 4}, {1, 4, 0}},       {{3, 4}, {0, 4, 2}},       {{2, 0, 3, 4}, {0, 4, 2}},
    };
    return pairs;
}

bool has_zero(const Shape& s) { return std::find(s.begin(), s.end(), 0) != s.end(); }

}  // namespace

TEST_CASE("matmul batched: forward matches the loops over broadcast batches, with every transpose flag") {
    std::uint64_t seed = 200;
    int checked = 0;
    for (const auto& [la, lb] : batched_pairs()) {
        for (bool ta : {false, true}) {
            for (bool tb : {false, true}) {
                INFO(fmt::format("op(a) {}, op(b) {}, transpose_a {}, transpose_b {}", ad::shape_string(la),
                                 ad::shape_string(lb), ta, tb));
                Array<double> a = ad::test::uniform(stored(la, ta), ++seed);
                Array<double> b = ad::test::uniform(stored(lb, tb), ++seed);
                Array<double> expected = naive_batched_matmul(a, b, ta, tb);
                CHECK(ad::test::matches(ad::matmul(ad::constant(a), ad::constant(b), ta, tb).value(), expected));
                if (!ta && !tb) CHECK(ad::test::matches(ad::matmul(ad::constant(a), ad::constant(b)).value(), expected));
                ++checked;
            }
        }
    }
    CHECK(checked == 60);
    // The shape of the example.
    CHECK(ad::matmul(ad::constant(Array<double>(xt::ones<double>({2, 1, 3, 4}))),
                     ad::constant(Array<double>(xt::ones<double>({5, 4, 6}))))
              .shape() == Shape{2, 5, 3, 6});
}

TEST_CASE("matmul batched: a 1-D operand is a row on the left and a column on the right, the added axis removed") {
    std::uint64_t seed = 300;
    // (vector length, batched operand's shape)
    for (const auto& [k, batched] : std::vector<std::pair<std::size_t, Shape>>{
             {4, {2, 4, 5}}, {3, {2, 1, 3, 2}}, {1, {3, 1, 2}}, {2, {0, 2, 3}}, {0, {2, 0, 3}}}) {
        INFO(fmt::format("vector ({},), batched {}", k, ad::shape_string(batched)));
        Array<double> v = ad::test::uniform({k}, ++seed);
        Array<double> left = ad::test::uniform(batched, ++seed);  // (..., k, n): v on its left
        Shape right_shape = batched;                              // (..., n, k): v on its right
        std::swap(right_shape[right_shape.size() - 2], right_shape[right_shape.size() - 1]);
        Array<double> right = ad::test::uniform(right_shape, ++seed);

        Array<double> row_product = naive_batched_matmul(reshaped(v, {1, k}), left);
        Shape vb_shape = batched;
        vb_shape.erase(vb_shape.end() - 2);
        CHECK(ad::test::matches(ad::matmul(ad::constant(v), ad::constant(left)).value(), reshaped(row_product, vb_shape)));

        Array<double> column_product = naive_batched_matmul(right, reshaped(v, {k, 1}));
        Shape bv_shape = right_shape;
        bv_shape.pop_back();
        CHECK(ad::test::matches(ad::matmul(ad::constant(right), ad::constant(v)).value(), reshaped(column_product, bv_shape)));

        if (k != 0 && !has_zero(batched)) {
            auto mm = [](const Vars& x) { return ad::matmul(x[0], x[1]); };
            CHECK_GRADCHECK(mm, (std::vector<Array<double>>{v, left}));
            CHECK_GRADCHECK(mm, (std::vector<Array<double>>{right, v}));
        }
    }
}

TEST_CASE("matmul batched: gradients match finite differences over broadcast batches and every transpose flag") {
    std::uint64_t seed = 400;
    int checked = 0;
    for (const auto& [la, lb] : batched_pairs()) {
        for (bool ta : {false, true}) {
            for (bool tb : {false, true}) {
                INFO(fmt::format("op(a) {}, op(b) {}, transpose_a {}, transpose_b {}", ad::shape_string(la),
                                 ad::shape_string(lb), ta, tb));
                std::vector<Array<double>> inputs{ad::test::uniform(stored(la, ta), ++seed),
                                                  ad::test::uniform(stored(lb, tb), ++seed)};
                CHECK_GRADCHECK(([ta, tb](const Vars& v) { return ad::matmul(v[0], v[1], ta, tb); }), inputs);
                // One operand a constant: the other's gradient alone (the VJP keeps only what it reads).
                Array<double> b = inputs[1];
                CHECK_GRADCHECK(([ta, tb, b](const Vars& v) { return ad::matmul(v[0], ad::constant(b), ta, tb); }),
                                (std::vector<Array<double>>{inputs[0]}));
                ++checked;
            }
        }
    }
    CHECK(checked == 60);
}

TEST_CASE("matmul batched: gradients of size-0 operands are zeros of the operands' shapes") {
    for (const auto& [la, lb] : batched_pairs()) {
        if (!has_zero(la) && !has_zero(lb)) continue;
        INFO(fmt::format("a {}, b {}", ad::shape_string(la), ad::shape_string(lb)));
        ad::Tape tape;
        auto a = ad::param(ad::test::uniform(la, 1));
        auto b = ad::param(ad::test::uniform(lb, 2));
        ad::sum(ad::matmul(a, b)).backward();
        CHECK(a.grad() == Array<double>(xt::zeros<double>(la)));
        CHECK(b.grad() == Array<double>(xt::zeros<double>(lb)));
    }
}

TEST_CASE("matmul batched: second derivatives match finite differences (create_graph through the batched VJP)") {
    for (const auto& [la, lb] : std::vector<ShapePair>{{{2, 1, 2, 3}, {3, 3, 2}}, {{2, 2, 3}, {3, 2}}, {{3, 2}, {2, 2, 3}},
                                                       {{1, 2, 3}, {2, 1, 3, 2}}}) {
        for (bool ta : {false, true}) {
            INFO(fmt::format("op(a) {}, op(b) {}, transpose_a {}", ad::shape_string(la), ad::shape_string(lb), ta));
            std::vector<Array<double>> inputs{ad::test::uniform(stored(la, ta), 5), ad::test::uniform(lb, 6)};
            CHECK_GRADGRADCHECK(([ta](const Vars& v) { return ad::tanh(ad::matmul(v[0], v[1], ta, false)); }), inputs);
            CHECK_GRADGRADCHECK(([ta](const Vars& v) { return ad::matmul(v[0], v[1], ta, false); }), inputs);
        }
    }
}

TEST_CASE("matmul batched: shapes that do not multiply or batches that do not broadcast are shape_errors, recording nothing") {
    ad::Tape tape;
    auto p = [](const Shape& s) { return ad::param(Array<double>(xt::zeros<double>(s))); };
    auto kept = ad::matmul(p({2, 3, 4}), p({2, 4, 5}));  // something on the tape
    const std::size_t before = tape.size();
    CHECK_THROWS_WITH_AS(ad::matmul(p({2, 3, 4}), p({2, 5, 6})), "matmul: cannot multiply (2, 3, 4) by (2, 5, 6)",
                         ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::matmul(p({2, 3, 4}), p({3, 4, 6})),
                         "matmul: cannot multiply (2, 3, 4) by (3, 4, 6) (batch dimensions (2,) and (3,) do not broadcast)",
                         ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::matmul(p({2, 3, 3, 4}), p({4, 4, 5})),
                         "matmul: cannot multiply (2, 3, 3, 4) by (4, 4, 5) (batch dimensions (2, 3) and (4,) do not broadcast)",
                         ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::matmul(p({5}), p({2, 4, 6})), "matmul: cannot multiply (5,) by (2, 4, 6)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::matmul(p({2, 3, 4}), p({3})), "matmul: cannot multiply (2, 3, 4) by (3,)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::matmul(p({2, 3, 4}), p({2, 5, 4}), true, true),
                         "matmul: cannot multiply (2, 3, 4)^T by (2, 5, 4)^T", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::matmul(p({2, 3, 4}), p({3, 3, 5}), true, false),
                         "matmul: cannot multiply (2, 3, 4)^T by (3, 3, 5) (batch dimensions (2,) and (3,) do not broadcast)",
                         ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::matmul(p({2, 3, 4}), p({4}), false, false),
                         "matmul: cannot multiply (2, 3, 4) by (4,) (expects operands of rank 2 or more here)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::matmul(ad::scalar(1.0), p({2, 3, 4})),
                         "matmul: cannot multiply () by (2, 3, 4) (expects operands of rank 1 or more)", ad::shape_error);
    CHECK(tape.size() == before);
}

TEST_CASE("matmul batched: float gradients agree with double ones") {
    Array<double> a0 = ad::test::uniform({2, 1, 3, 4}, 21), b0 = ad::test::uniform({3, 4, 2}, 22),
                  w0 = ad::test::uniform({4, 3}, 23), v0 = ad::test::uniform({4}, 24);
    auto gradients = [](const auto& a_, const auto& b_, const auto& w_, const auto& v_) {
        ad::Tape tape;
        auto a = ad::param(a_), b = ad::param(b_), w = ad::param(w_), v = ad::param(v_);
        auto h = ad::tanh(ad::matmul(a, b));                           // (2, 3, 3, 2), a broadcast
        auto z = ad::sum(ad::matmul(h, b, false, true)) +              // b transposed
                 ad::sum(ad::square(ad::matmul(a, w))) +               // a single matrix on the right (folded)
                 ad::sum(ad::matmul(v, b)) + ad::sum(ad::matmul(a, v)); // 1-D on either side
        z.backward();
        return std::vector{a.grad(), b.grad(), w.grad(), v.grad()};
    };
    auto as_float = [](const Array<double>& x) { return Array<float>(xt::cast<float>(x)); };
    auto as_double = [](const Array<float>& x) { return Array<double>(xt::cast<double>(x)); };
    Array<float> af = as_float(a0), bf = as_float(b0), wf = as_float(w0), vf = as_float(v0);
    auto gf = gradients(af, bf, wf, vf);
    auto gd = gradients(as_double(af), as_double(bf), as_double(wf), as_double(vf));
    ad::test::check_float_matches_double(gf, gd);
    // And the float forward against the loops.
    CHECK(xt::allclose(xt::cast<double>(ad::matmul(ad::constant(af), ad::constant(bf)).value()),
                       naive_batched_matmul(as_double(af), as_double(bf)), 1e-5, 1e-6));
}

TEST_CASE("outer, dot, trace: forward values match the loops") {
    std::uint64_t seed = 500;
    for (auto [m, n] : std::vector<std::pair<std::size_t, std::size_t>>{{3, 4}, {1, 1}, {5, 2}, {0, 3}, {2, 0}, {0, 0}}) {
        INFO(fmt::format("m {}, n {}", m, n));
        Array<double> a = ad::test::uniform({m}, ++seed), b = ad::test::uniform({n}, ++seed);
        Array<double> expected = Array<double>::from_shape({m, n});
        for (std::size_t i = 0; i < m; ++i) {
            for (std::size_t j = 0; j < n; ++j) expected(i, j) = a(i) * b(j);
        }
        CHECK(ad::test::matches(ad::outer(ad::constant(a), ad::constant(b)).value(), expected));

        Array<double> c = ad::test::uniform({m}, ++seed);
        double dot = 0;
        for (std::size_t i = 0; i < m; ++i) dot += a(i) * c(i);
        auto d = ad::dot(ad::constant(a), ad::constant(c));
        CHECK(d.dim() == 0);
        CHECK(d.item() == doctest::Approx(dot).epsilon(1e-12));

        Array<double> x = ad::test::uniform({m, n}, ++seed);
        double diagonal = 0;
        for (std::size_t i = 0; i < std::min(m, n); ++i) diagonal += x(i, i);
        auto t = ad::trace(ad::constant(x));
        CHECK(t.dim() == 0);
        CHECK(t.item() == doctest::Approx(diagonal).epsilon(1e-12));
    }
    // A closed form: the trace of the (3, 5) matrix with x_ij = 10 i + j is 0 + 11 + 22.
    Array<double> x = Array<double>::from_shape({3, 5});
    for (std::size_t i = 0; i < 3; ++i) {
        for (std::size_t j = 0; j < 5; ++j) x(i, j) = 10.0 * double(i) + double(j);
    }
    CHECK(ad::trace(ad::constant(x)).item() == 33.0);
    CHECK(ad::trace(ad::constant(Array<double>(xt::transpose(x)))).item() == 33.0);
}

TEST_CASE("outer, dot, trace: gradients match finite differences; trace's is g on the diagonal") {
    std::uint64_t seed = 600;
    for (auto [m, n] : std::vector<std::pair<std::size_t, std::size_t>>{{3, 4}, {1, 1}, {5, 2}, {2, 6}}) {
        INFO(fmt::format("m {}, n {}", m, n));
        Array<double> a = ad::test::uniform({m}, ++seed), b = ad::test::uniform({n}, ++seed),
                      c = ad::test::uniform({m}, ++seed), x = ad::test::uniform({m, n}, ++seed);
        CHECK_GRADCHECK([](const Vars& v) { return ad::outer(v[0], v[1]); }, (std::vector<Array<double>>{a, b}));
        CHECK_GRADCHECK([](const Vars& v) { return ad::dot(v[0], v[1]); }, (std::vector<Array<double>>{a, c}));
        CHECK_GRADCHECK([](const Vars& v) { return ad::dot(v[0], v[0]); }, (std::vector<Array<double>>{a}));
        CHECK_GRADCHECK([](const Vars& v) { return ad::trace(v[0]); }, (std::vector<Array<double>>{x}));
        CHECK_GRADCHECK([](const Vars& v) { return ad::square(ad::trace(ad::outer(v[0], v[1]))); },
                        (std::vector<Array<double>>{a, b}));

        ad::Tape tape;
        auto px = ad::param(x);
        ad::scale(ad::trace(px), 2.5).backward();
        Array<double> expected = xt::zeros<double>({m, n});
        for (std::size_t i = 0; i < std::min(m, n); ++i) expected(i, i) = 2.5;
        CHECK(px.grad() == expected);
    }
    // Size 0: zero gradients of the operands' shapes.
    ad::Tape tape;
    auto e = ad::param(Array<double>::from_shape({0}));
    auto f = ad::param(ad::test::uniform({3}, 1));
    auto z = ad::param(Array<double>::from_shape({0, 3}));
    (ad::sum(ad::outer(e, f)) + ad::dot(e, e) + ad::trace(z)).backward();
    CHECK(e.grad().shape() == std::vector<std::size_t>{0});
    CHECK(f.grad() == Array<double>(xt::zeros<double>({3})));
    CHECK(z.grad().shape() == std::vector<std::size_t>{0, 3});
}

TEST_CASE("outer, dot, trace: second derivatives match finite differences") {
    Array<double> a = ad::test::uniform({3}, 1), b = ad::test::uniform({2}, 2), c = ad::test::uniform({3}, 3),
                  x = ad::test::uniform({2, 3}, 4);
    CHECK_GRADGRADCHECK([](const Vars& v) { return ad::tanh(ad::outer(v[0], v[1])); }, (std::vector<Array<double>>{a, b}));
    CHECK_GRADGRADCHECK([](const Vars& v) { return ad::tanh(ad::dot(v[0], v[1])); }, (std::vector<Array<double>>{a, c}));
    CHECK_GRADGRADCHECK([](const Vars& v) { return ad::square(ad::trace(v[0])); }, (std::vector<Array<double>>{x}));
}

TEST_CASE("outer, dot, trace: bad operands are shape_errors naming the op and the shapes, recording nothing") {
    ad::Tape tape;
    auto p = [](const Shape& s) { return ad::param(Array<double>(xt::zeros<double>(s))); };
    auto kept = ad::outer(p({2}), p({3}));
    const std::size_t before = tape.size();
    CHECK_THROWS_WITH_AS(ad::outer(p({2, 3}), p({3})), "outer: expects two 1-D operands, got (2, 3) and (3,)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::outer(p({2}), ad::scalar(1.0)), "outer: expects two 1-D operands, got (2,) and ()",
                         ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::dot(p({3}), p({4})), "dot: expects two 1-D operands of one length, got (3,) and (4,)",
                         ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::dot(p({2, 2}), p({4})), "dot: expects two 1-D operands of one length, got (2, 2) and (4,)",
                         ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::trace(p({3})), "trace: expects a 2-D operand, got (3,)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::trace(p({2, 2, 2})), "trace: expects a 2-D operand, got (2, 2, 2)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::dot(p({3}), ad::Var<double>()), "dot: an input is an empty Var", ad::tape_error);
    CHECK(tape.size() == before);
}

TEST_CASE("outer, dot, trace: float gradients agree with double ones") {
    Array<float> af = xt::cast<float>(ad::test::uniform({4}, 31));
    Array<float> bf = xt::cast<float>(ad::test::uniform({3}, 32));
    Array<float> xf = xt::cast<float>(ad::test::uniform({3, 4}, 33));
    auto gradients = [](const auto& a_, const auto& b_, const auto& x_) {
        ad::Tape tape;
        auto a = ad::param(a_), b = ad::param(b_), x = ad::param(x_);
        auto o = ad::outer(b, a);                                      // (3, 4)
        auto z = ad::square(ad::trace(ad::tanh(o) * x)) + ad::dot(a, a) * ad::trace(x);
        z.backward();
        return std::vector{a.grad(), b.grad(), x.grad()};
    };
    auto gf = gradients(af, bf, xf);
    auto gd = gradients(Array<double>(xt::cast<double>(af)), Array<double>(xt::cast<double>(bf)),
                        Array<double>(xt::cast<double>(xf)));
    ad::test::check_float_matches_double(gf, gd);
}

TEST_CASE("matmul batched: gradients are computed into the parameters' own buffers, right in every path") {
    Array<double> a0 = ad::test::uniform({2, 3, 4}, 41), b0 = ad::test::uniform({2, 4, 5}, 42),
                  w0 = ad::test::uniform({4, 5}, 43), c0 = ad::test::uniform({2, 3, 5}, 44);
    auto a = ad::param(a0), b = ad::param(b0), w = ad::param(w0);
    const double* buffer_b = b.grad().data();
    const double* buffer_w = w.grad().data();
    for (int step = 0; step < 2; ++step) {
        ad::Tape tape;
        a.zero_grad();
        b.zero_grad();
        w.zero_grad();
        // d/dA sum(A B * C + A W * C) = C B^T + C W^T; d/dB = A^T C; d/dW = sum over the batch of A^T C.
        (ad::sum(ad::matmul(a, b) * ad::constant(c0)) + ad::sum(ad::matmul(a, w) * ad::constant(c0))).backward();
        Array<double> da = naive_batched_matmul(c0, b0, false, true) + naive_batched_matmul(c0, w0, false, true);
        CHECK(ad::test::matches(a.grad(), da));
        CHECK(ad::test::matches(b.grad(), naive_batched_matmul(a0, c0, true, false)));
        CHECK(ad::test::matches(w.grad(), naive_batched_matmul(reshaped(a0, {6, 4}), reshaped(c0, {6, 5}), true, false)));
        CHECK(b.grad().data() == buffer_b);  // a's gets two contributions: the second is added
        CHECK(w.grad().data() == buffer_w);
    }
    // One operand on both sides: X X^T gets both contributions, d/dX sum(X X^T * C) = (C + C^T) X.
    Array<double> x0 = ad::test::uniform({2, 3, 4}, 45), s0 = ad::test::uniform({2, 3, 3}, 46);
    auto x = ad::param(x0);
    for (int step = 0; step < 2; ++step) {
        ad::Tape tape;
        x.zero_grad();
        ad::sum(ad::matmul(x, x, false, true) * ad::constant(s0)).backward();
        Array<double> expected = naive_batched_matmul(s0, x0) + naive_batched_matmul(s0, x0, true, false);
        CHECK(ad::test::matches(x.grad(), expected));
    }
}
