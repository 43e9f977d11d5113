#include "support/test_support.hpp"

#include <cmath>
#include <string>

#include <fmt/format.h>

using ad::Array;
using ad::Reduction;
using ad::Shape;
using ad::Var;
using ad::test::Vars;

namespace {

/// log sum_j e^x_j along `axis`, kept as an axis of length 1, with loops. The
/// test inputs are small, so the unshifted sum does not overflow.
Array<double> log_sum_exp_reference(const Array<double>& x, std::size_t axis) {
    Shape x_shape = ad::shape_of(x);
    Shape kept = x_shape;
    kept[axis] = 1;
    Array<double> total = xt::zeros<double>(kept);
    for (std::size_t flat = 0; flat < x.size(); ++flat) {
        Shape index = ad::test::unravel(flat, x_shape);
        index[axis] = 0;
        total.data()[ad::test::ravel(index, kept)] += std::exp(x.data()[flat]);
    }
    for (auto& v : total) v = std::log(v);
    return total;
}

/// x - log_sum_exp(x) along axis, element by element.
Array<double> log_softmax_reference(const Array<double>& x, std::size_t axis) {
    Shape x_shape = ad::shape_of(x);
    Shape kept = x_shape;
    kept[axis] = 1;
    Array<double> lse = log_sum_exp_reference(x, axis);
    Array<double> y = Array<double>::from_shape(x_shape);
    for (std::size_t flat = 0; flat < x.size(); ++flat) {
        Shape index = ad::test::unravel(flat, x_shape);
        index[axis] = 0;
        y.data()[flat] = x.data()[flat] - lse.data()[ad::test::ravel(index, kept)];
    }
    return y;
}

double scale_of(Reduction reduction, std::size_t n) { return reduction == Reduction::mean ? 1.0 / static_cast<double>(n) : 1.0; }
const char* name_of(Reduction reduction) { return reduction == Reduction::mean ? "mean" : "sum"; }

/// Rows that are probability distributions (positive, summing to one).
Array<double> random_distributions(std::size_t rows, std::size_t classes, std::uint64_t seed) {
    Array<double> t = ad::test::uniform({rows, classes}, seed, 0.1, 1.0);
    for (std::size_t r = 0; r < rows; ++r) {
        double total = 0;
        for (std::size_t c = 0; c < classes; ++c) total += t(r, c);
        for (std::size_t c = 0; c < classes; ++c) t(r, c) /= total;
    }
    return t;
}

const Reduction both_reductions[] = {Reduction::sum, Reduction::mean};

}  // namespace

TEST_CASE("softmax and log_softmax: forward matches loops along every axis, and softmax sums to one") {
    std::mt19937_64 rng(1);
    for (int round = 0; round < 6; ++round) {
        Shape s = ad::test::random_shape(rng, 1, 4);
        Array<double> x0 = ad::test::uniform(s, rng(), -3, 3);
        long rank = static_cast<long>(s.size());
        for (long axis = -rank; axis < rank; ++axis) {
            INFO(fmt::format("shape {}, axis {}", ad::shape_string(s), axis));
            std::size_t ax = static_cast<std::size_t>(axis < 0 ? axis + rank : axis);
            Array<double> expected = log_softmax_reference(x0, ax);
            auto y = ad::softmax(ad::constant(x0), axis);
            CHECK(ad::test::matches(ad::log_softmax(ad::constant(x0), axis).value(), expected));
            CHECK(ad::test::matches(y.value(), Array<double>(xt::exp(expected))));
            CHECK(xt::allclose(xt::sum(y.value(), {ax}), xt::ones<double>({1}), 1e-12, 1e-12));
        }
    }
    // The default axis is the last one.
    Array<double> x0 = ad::test::uniform({3, 4}, 2);
    CHECK(ad::test::matches(ad::softmax(ad::constant(x0)).value(), Array<double>(xt::exp(log_softmax_reference(x0, 1)))));
    CHECK(ad::test::matches(ad::log_softmax(ad::constant(x0)).value(), log_softmax_reference(x0, 1)));
}

TEST_CASE("softmax and log_softmax: large logits neither overflow nor lose the differences") {
    // Shifting by a constant leaves softmax unchanged; e^1000 overflows in a naive forward.
    Array<double> x0 = {{1000.0, 1001.0, 999.0}, {-1000.0, -1002.0, -1001.0}};
    Array<double> shifted = {{0.0, 1.0, -1.0}, {0.0, -2.0, -1.0}};
    auto y = ad::softmax(ad::constant(x0));
    auto l = ad::log_softmax(ad::constant(x0));
    CHECK(xt::all(xt::isfinite(y.value())));
    CHECK(xt::all(xt::isfinite(l.value())));
    CHECK(xt::allclose(y.value(), xt::exp(log_softmax_reference(shifted, 1)), 1e-12, 1e-12));
    CHECK(xt::allclose(l.value(), log_softmax_reference(shifted, 1), 1e-12, 1e-12));
    CHECK_GRADCHECK([](const Vars& v) { return ad::log_softmax(v[0]); }, (std::vector<Array<double>>{x0}));
    CHECK_GRADCHECK([](const Vars& v) { return ad::softmax(v[0], 0); }, (std::vector<Array<double>>{x0}));
}

TEST_CASE("softmax and log_softmax: gradients match finite differences on several axes over random shapes") {
    std::mt19937_64 rng(3);
    int checked = 0;
    for (int round = 0; round < 5; ++round) {
        Shape s = ad::test::random_shape(rng, 1, 3);
        std::vector<Array<double>> inputs{ad::test::uniform(s, rng(), -2, 2)};
        long rank = static_cast<long>(s.size());
        for (long axis = -rank; axis < rank; ++axis) {
            INFO(fmt::format("shape {}, axis {}", ad::shape_string(s), axis));
            CHECK_GRADCHECK(([axis](const Vars& v) { return ad::softmax(v[0], axis); }), inputs);
            CHECK_GRADCHECK(([axis](const Vars& v) { return ad::log_softmax(v[0], axis); }), inputs);
            checked += 2;
        }
    }
    CHECK(checked >= 10);
}

TEST_CASE("softmax and log_softmax: the fused backward of a plain sweep equals the recorded VJP of a create_graph sweep") {
    // A sweep that records nothing takes the one-pass VJPs; under create_graph
    // the VJPs are built from engine ops: y (g - sum(g y)) and g - e^y sum(g).
    std::mt19937_64 rng(11);
    for (int round = 0; round < 6; ++round) {
        Shape s = ad::test::random_shape(rng, 1, 4);
        long rank = static_cast<long>(s.size());
        for (long axis = -rank; axis < rank; ++axis) {
            for (bool log : {false, true}) {
                INFO(fmt::format("{}, shape {}, axis {}", log ? "log_softmax" : "softmax", ad::shape_string(s), axis));
                ad::Tape tape;
                auto x = ad::param(ad::test::uniform(s, rng(), -3, 3));
                auto y = log ? ad::log_softmax(x, axis) : ad::softmax(x, axis);
                auto seed = ad::constant(ad::test::uniform(s, rng(), -1, 1));
                ad::BackwardOptions kept;
                kept.retain_graph = true;
                Array<double> fused = ad::grad(y, {x}, seed, kept)[0].value();
                ad::BackwardOptions recorded;
                recorded.create_graph = true;
                Array<double> composed = ad::grad(y, {x}, seed, recorded)[0].value();
                CHECK(xt::allclose(fused, composed, 1e-14, 1e-15));
            }
        }
    }
}

TEST_CASE("softmax_cross_entropy: forward matches loops for one-hot, probability and class-index targets, sum and mean") {
    std::mt19937_64 rng(4);
    for (int round = 0; round < 4; ++round) {
        std::size_t n = 1 + rng() % 4, c = 2 + rng() % 4;
        Array<double> z = ad::test::uniform({n, c}, rng(), -3, 3);
        std::vector<std::size_t> classes(n);
        for (auto& k : classes) k = rng() % c;
        Array<double> one_hot = xt::zeros<double>({n, c});
        for (std::size_t r = 0; r < n; ++r) one_hot(r, classes[r]) = 1.0;
        Array<double> probabilities = random_distributions(n, c, rng());
        Array<double> lse = log_sum_exp_reference(z, 1);
        for (Reduction reduction : both_reductions) {
            INFO(fmt::format("{} rows, {} classes, {}", n, c, name_of(reduction)));
            double s = scale_of(reduction, n);
            // -log softmax(z_r)[c_r] = log sum_j e^z_rj - z_r,c_r
            double by_class = 0, by_distribution = 0;
            for (std::size_t r = 0; r < n; ++r) {
                by_class += lse(r, 0) - z(r, classes[r]);
                for (std::size_t k = 0; k < c; ++k) by_distribution += probabilities(r, k) * (lse(r, 0) - z(r, k));
            }
            auto logits = ad::constant(z);
            CHECK(ad::softmax_cross_entropy(logits, classes, reduction).item() == doctest::Approx(s * by_class).epsilon(1e-12));
            CHECK(ad::softmax_cross_entropy(logits, ad::constant(one_hot), reduction).item() ==
                  doctest::Approx(s * by_class).epsilon(1e-12));
            CHECK(ad::softmax_cross_entropy(logits, ad::constant(probabilities), reduction).item() ==
                  doctest::Approx(s * by_distribution).epsilon(1e-12));
        }
        // The default reduction is the mean.
        CHECK(ad::softmax_cross_entropy(ad::constant(z), classes).item() ==
              doctest::Approx(ad::softmax_cross_entropy(ad::constant(z), classes, Reduction::mean).item()).epsilon(1e-15));
    }
}

TEST_CASE("softmax_cross_entropy: gradients match finite differences for logits and targets, each reduction") {
    std::mt19937_64 rng(5);
    int checked = 0;
    for (int round = 0; round < 4; ++round) {
        std::size_t n = 1 + rng() % 4, c = 2 + rng() % 4;
        Array<double> z = ad::test::uniform({n, c}, rng(), -3, 3);
        std::vector<std::size_t> classes(n);
        for (auto& k : classes) k = rng() % c;
        Array<double> probabilities = random_distributions(n, c, rng());
        for (Reduction reduction : both_reductions) {
            INFO(fmt::format("{} rows, {} classes, {}", n, c, name_of(reduction)));
            CHECK_GRADCHECK(([classes, reduction](const Vars& v) { return ad::softmax_cross_entropy(v[0], classes, reduction); }),
                            (std::vector<Array<double>>{z}));
            // Both arguments differentiable: the targets' gradient is -s log_softmax(z).
            CHECK_GRADCHECK(([reduction](const Vars& v) { return ad::softmax_cross_entropy(v[0], v[1], reduction); }),
                            (std::vector<Array<double>>{z, probabilities}));
            // Targets whose rows do not sum to one (e.g. label smoothing gone wrong) still get the exact gradient.
            CHECK_GRADCHECK(([reduction](const Vars& v) { return ad::softmax_cross_entropy(v[0], v[1], reduction); }),
                            (std::vector<Array<double>>{z, ad::test::uniform({n, c}, rng(), 0, 1)}));
            checked += 3;
        }
    }
    CHECK(checked == 24);
}

TEST_CASE("half_sse, mse, binary_cross_entropy: forward matches loops over random shapes, each reduction") {
    std::mt19937_64 rng(6);
    for (int round = 0; round < 6; ++round) {
        Shape s = ad::test::random_shape(rng, 0, 3);
        Array<double> p = ad::test::uniform(s, rng(), 0.05, 0.95);
        Array<double> t = ad::test::uniform(s, rng(), 0.0, 1.0);
        double squares = 0, cross_entropy = 0;
        for (std::size_t i = 0; i < p.size(); ++i) {
            double pi = p.data()[i], ti = t.data()[i];
            squares += (pi - ti) * (pi - ti);
            cross_entropy -= ti * std::log(pi) + (1 - ti) * std::log(1 - pi);
        }
        std::size_t batch = s.empty() ? 1 : s[0];
        auto pv = ad::constant(p), tv = ad::constant(t);
        for (Reduction reduction : both_reductions) {
            INFO(fmt::format("shape {}, {}", ad::shape_string(s), name_of(reduction)));
            // half_sse averages over rows (the batch), mse and binary_cross_entropy over all elements.
            CHECK(ad::half_sse(pv, tv, reduction).item() == doctest::Approx(0.5 * squares * scale_of(reduction, batch)).epsilon(1e-12));
            CHECK(ad::mse(pv, tv, reduction).item() == doctest::Approx(squares * scale_of(reduction, p.size())).epsilon(1e-12));
            CHECK(ad::binary_cross_entropy(pv, tv, reduction).item() ==
                  doctest::Approx(cross_entropy * scale_of(reduction, p.size())).epsilon(1e-12));
        }
        // Defaults: half_sse sums, the others average.
        CHECK(ad::half_sse(pv, tv).item() == ad::half_sse(pv, tv, Reduction::sum).item());
        CHECK(ad::mse(pv, tv).item() == ad::mse(pv, tv, Reduction::mean).item());
        CHECK(ad::binary_cross_entropy(pv, tv).item() == ad::binary_cross_entropy(pv, tv, Reduction::mean).item());
    }
}

TEST_CASE("half_sse, mse, binary_cross_entropy: gradients match finite differences for both arguments, each reduction") {
    std::mt19937_64 rng(7);
    int checked = 0;
    for (int round = 0; round < 5; ++round) {
        Shape s = ad::test::random_shape(rng, 0, 3);
        // p stays inside (0, 1) under finite differences, away from the clamped logs.
        std::vector<Array<double>> inputs{ad::test::uniform(s, rng(), 0.05, 0.95), ad::test::uniform(s, rng(), 0.0, 1.0)};
        for (Reduction reduction : both_reductions) {
            INFO(fmt::format("shape {}, {}", ad::shape_string(s), name_of(reduction)));
            CHECK_GRADCHECK(([reduction](const Vars& v) { return ad::half_sse(v[0], v[1], reduction); }), inputs);
            CHECK_GRADCHECK(([reduction](const Vars& v) { return ad::mse(v[0], v[1], reduction); }), inputs);
            CHECK_GRADCHECK(([reduction](const Vars& v) { return ad::binary_cross_entropy(v[0], v[1], reduction); }), inputs);
            // Composed with the op that usually feeds each loss.
            CHECK_GRADCHECK(([reduction](const Vars& v) {
                                return ad::binary_cross_entropy(ad::sigmoid(v[0] * 4.0 - 2.0), v[1], reduction);
                            }),
                            inputs);
            checked += 4;
        }
    }
    CHECK(checked == 40);
}

TEST_CASE("binary_cross_entropy: probabilities of exactly 0 or 1 give a finite loss and gradient") {
    // With log clamped at -100, each element of p = (0, 1), t = (1, 0) costs 100.
    ad::Tape tape;
    auto p = ad::param(Array<double>{0.0, 1.0});
    auto t = ad::param(Array<double>{1.0, 0.0});
    auto loss = ad::binary_cross_entropy(p, t);
    CHECK(loss.item() == 100.0);
    loss.backward();
    CHECK(xt::all(xt::isfinite(p.grad())));
    CHECK(xt::all(xt::isfinite(t.grad())));
    // Descent moves each p toward its target: the gradient is negative at p = 0 (t = 1), positive at p = 1 (t = 0).
    CHECK(p.grad()(0) < 0);
    CHECK(p.grad()(1) > 0);
}

TEST_CASE("nn ops: an empty batch gives an empty softmax, a summed loss of zero, and a mean that is NaN like mean()'s") {
    auto z = ad::constant(Array<double>::from_shape({0, 3}));
    CHECK(ad::softmax(z).shape() == Shape{0, 3});
    CHECK(ad::log_softmax(z, 0).shape() == Shape{0, 3});
    CHECK(ad::softmax_cross_entropy(z, std::vector<std::size_t>{}, Reduction::sum).item() == 0.0);
    CHECK(ad::softmax_cross_entropy(z, z, Reduction::sum).item() == 0.0);
    CHECK(ad::mse(z, z, Reduction::sum).item() == 0.0);
    ad::Tape tape;
    auto b = ad::param(Array<double>{1.0, 2.0, 3.0});
    ad::softmax_cross_entropy(z + b, std::vector<std::size_t>{}, Reduction::sum).backward();
    CHECK(b.grad() == Array<double>{0.0, 0.0, 0.0});
    // Every loss alike, as mean() of an empty value and PyTorch's losses: 0 / 0.
    CHECK(std::isnan(ad::softmax_cross_entropy(z, std::vector<std::size_t>{}).item()));
    CHECK(std::isnan(ad::mse(z, z).item()));
    CHECK(std::isnan(ad::half_sse(z, z, Reduction::mean).item()));
    CHECK(std::isnan(ad::binary_cross_entropy(z, z).item()));
    CHECK(std::isnan(ad::huber_loss(z, z).item()));
    CHECK(std::isnan(ad::l1_loss(z, z).item()));
    CHECK(std::isnan(ad::nll_loss(z, ad::IndexArray::from_shape({0})).item()));
    CHECK(std::isnan(ad::cross_entropy(z, ad::IndexArray::from_shape({0})).item()));
    CHECK(std::isnan(ad::mean(z).item()));
}

TEST_CASE("softmax and log_softmax along an axis before a size-0 axis: an empty result, as torch's") {
    // Found by tests/fuzz/program_fuzzer: softmax divided by the size of its
    // (empty) lanes, an integer division by zero.
    ad::Tape tape;
    auto x = ad::param(Array<double>::from_shape({2, 0, 3}));
    auto y = ad::softmax(x, 0);
    CHECK(y.shape() == Shape{2, 0, 3});
    CHECK(ad::log_softmax(x, 1).shape() == Shape{2, 0, 3});
    ad::sum(y).backward();
    CHECK(x.grad().shape() == x.shape());
}

TEST_CASE("nn ops: bad shapes are shape_errors naming the op and the shapes") {
    auto z = ad::constant(Array<double>::from_shape({2, 3}));
    auto z24 = ad::constant(Array<double>::from_shape({2, 4}));
    auto v3 = ad::constant(Array<double>::from_shape({3}));
    CHECK_THROWS_WITH_AS(ad::softmax_cross_entropy(z, z24), "softmax_cross_entropy: prediction (2, 3) and target (2, 4) differ in shape",
                         ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::softmax_cross_entropy(v3, v3), "softmax_cross_entropy: logits must be 2-D (rows are samples), got (3,)",
                         ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::softmax_cross_entropy(z, std::vector<std::size_t>{0, 1, 2}),
                         "softmax_cross_entropy: logits (2, 3) do not match 3 class indices (one per row)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::softmax_cross_entropy(v3, std::vector<std::size_t>{0, 1, 2}),
                         "softmax_cross_entropy: logits (3,) do not match 3 class indices (one per row)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::half_sse(z, z24), "half_sse: prediction (2, 3) and target (2, 4) differ in shape", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::mse(v3, z), "mse: prediction (3,) and target (2, 3) differ in shape", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::binary_cross_entropy(z, v3), "binary_cross_entropy: prediction (2, 3) and target (3,) differ in shape",
                         ad::shape_error);
}

TEST_CASE("nn ops: bad axes, classes and probabilities are value_errors naming the op") {
    auto z = ad::constant(Array<double>::from_shape({2, 3}));
    CHECK_THROWS_WITH_AS(ad::softmax(z, 2), "softmax: axis 2 is out of range for a value of rank 2", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::log_softmax(z, -3), "log_softmax: axis -3 is out of range for a value of rank 2", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::softmax(ad::scalar(1.0)), "softmax: axis -1 is out of range for a value of rank 0", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::softmax_cross_entropy(z, std::vector<std::size_t>{0, 3}),
                         "softmax_cross_entropy: class 3 of row 1 is out of range for 3 classes", ad::value_error);
    auto t = ad::constant(Array<double>{0.0, 1.0});
    CHECK_THROWS_WITH_AS(ad::binary_cross_entropy(ad::constant(Array<double>{0.5, 1.5}), t),
                         "binary_cross_entropy: probabilities of shape (2,) must lie in [0, 1], found 1.5", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::binary_cross_entropy(ad::constant(Array<double>{-0.25, 0.5}), t),
                         "binary_cross_entropy: probabilities of shape (2,) must lie in [0, 1], found -0.25", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::binary_cross_entropy(ad::constant(Array<double>{0.5, std::nan("")}), t),
                         "binary_cross_entropy: probabilities of shape (2,) must lie in [0, 1], found nan", ad::value_error);
}

TEST_CASE("nn ops: a throwing op leaves the tape as it was") {
    ad::Tape tape;
    Array<double> z0 = ad::test::uniform({2, 3}, 8);
    auto z = ad::param(z0);
    auto h = ad::tanh(z);
    auto wrong = ad::param(Array<double>::from_shape({3, 2}));
    std::size_t before = tape.size();
    CHECK_THROWS_AS(ad::softmax(h, 2), ad::value_error);
    CHECK_THROWS_AS(ad::log_softmax(h, -3), ad::value_error);
    CHECK_THROWS_AS(ad::softmax_cross_entropy(h, wrong), ad::shape_error);
    CHECK_THROWS_AS(ad::softmax_cross_entropy(h, std::vector<std::size_t>{1, 5}), ad::value_error);
    CHECK_THROWS_AS(ad::half_sse(h, wrong), ad::shape_error);
    CHECK_THROWS_AS(ad::mse(h, wrong), ad::shape_error);
    CHECK_THROWS_AS(ad::binary_cross_entropy(h, ad::param(Array<double>(xt::zeros<double>({2, 3})))), ad::value_error);
    CHECK(tape.size() == before);
    ad::mse(h, ad::constant(Array<double>(xt::zeros<double>({2, 3})))).backward();
    // d/dz mean(tanh(z)^2) = 2 tanh(z) (1 - tanh(z)^2) / 6.
    Array<double> th = xt::tanh(z0);
    CHECK(xt::allclose(z.grad(), 2.0 * th * (1.0 - th * th) / 6.0));
}

TEST_CASE("nn ops: float gradients agree with double ones") {
    Array<float> zf = xt::cast<float>(ad::test::uniform({3, 4}, 9, -2, 2));
    Array<float> tf = xt::cast<float>(random_distributions(3, 4, 10));
    auto gradients = [](const auto& z0, const auto& t0) {
        using T = typename std::decay_t<decltype(z0)>::value_type;
        ad::Tape tape;
        auto z = ad::param(z0);
        auto t = ad::param(t0);
        auto p = ad::softmax(z, 0);
        auto loss = ad::softmax_cross_entropy(z, t) + ad::softmax_cross_entropy(z, std::vector<std::size_t>{3, 0, 0}, ad::Reduction::sum) +
                    ad::sum(ad::log_softmax(z, 0) * t) + ad::half_sse(p, t, ad::Reduction::mean) + ad::mse(ad::tanh(z), t) +
                    ad::binary_cross_entropy(ad::sigmoid(z), t) * T(0.5);
        loss.backward();
        return std::vector{z.grad(), t.grad()};
    };
    auto gf = gradients(zf, tf);
    auto gd = gradients(Array<double>(xt::cast<double>(zf)), Array<double>(xt::cast<double>(tf)));
    ad::test::check_float_matches_double(gf, gd);
}

TEST_CASE("nn ops: create_graph gradients differentiate again (second derivatives match finite differences)") {
    std::mt19937_64 rng(11);
    for (int round = 0; round < 2; ++round) {
        std::size_t n = 1 + rng() % 3, c = 2 + rng() % 3;
        INFO(fmt::format("{} rows, {} classes", n, c));
        Array<double> z = ad::test::uniform({n, c}, rng(), -2, 2);
        Array<double> t = random_distributions(n, c, rng());
        Array<double> p = ad::test::uniform({n, c}, rng(), 0.1, 0.9);
        std::vector<std::size_t> classes(n);
        for (auto& k : classes) k = rng() % c;
        // softmax's second derivative is not constant, so weight the outputs to see all of it.
        // Each check differentiates the gradient with respect to every input again.
        CHECK_GRADGRADCHECK([](const Vars& v) { return ad::softmax(v[0]) * v[1]; }, (std::vector<Array<double>>{z, t}));
        CHECK_GRADGRADCHECK([](const Vars& v) { return ad::softmax(v[0], 0) * v[1]; }, (std::vector<Array<double>>{z, t}));
        CHECK_GRADGRADCHECK([](const Vars& v) { return ad::square(ad::log_softmax(v[0], 0)); }, (std::vector<Array<double>>{z}));
        CHECK_GRADGRADCHECK([](const Vars& v) { return ad::softmax_cross_entropy(v[0], v[1], Reduction::sum); },
                            (std::vector<Array<double>>{z, t}));
        CHECK_GRADGRADCHECK([](const Vars& v) { return ad::mse(v[0], v[1]); }, (std::vector<Array<double>>{z, t}));
        CHECK_GRADGRADCHECK([](const Vars& v) { return ad::half_sse(v[0], v[1], Reduction::mean); }, (std::vector<Array<double>>{z, t}));
        CHECK_GRADGRADCHECK([](const Vars& v) { return ad::binary_cross_entropy(v[0], v[1]); }, (std::vector<Array<double>>{p, t}));
        CHECK_GRADGRADCHECK([classes](const Vars& v) { return ad::softmax_cross_entropy(v[0], classes); }, (std::vector<Array<double>>{z}));
    }
}

TEST_CASE("huber_loss and l1_loss: values by their definitions, means over all elements, gradients match finite differences") {
    Array<double> p = ad::test::uniform({3, 4}, 61, -2, 2), t = ad::test::uniform({3, 4}, 62, -2, 2);
    double huber = 0, l1 = 0;
    for (std::size_t i = 0; i < p.size(); ++i) {
        double r = std::fabs(p.data()[i] - t.data()[i]);
        huber += r <= 0.7 ? 0.5 * r * r : 0.7 * (r - 0.35);
        l1 += r;
    }
    CHECK(ad::huber_loss(ad::constant(p), ad::constant(t), 0.7).item() == doctest::Approx(huber / 12).epsilon(1e-12));
    CHECK(ad::huber_loss(ad::constant(p), ad::constant(t), 0.7, ad::Reduction::sum).item() == doctest::Approx(huber).epsilon(1e-12));
    CHECK(ad::l1_loss(ad::constant(p), ad::constant(t)).item() == doctest::Approx(l1 / 12).epsilon(1e-12));
    CHECK_GRADCHECK([](const Vars& v) { return ad::huber_loss(v[0], v[1], 0.7); }, (std::vector<Array<double>>{p, t}));
    CHECK_GRADCHECK([](const Vars& v) { return ad::l1_loss(v[0], v[1], ad::Reduction::sum); }, (std::vector<Array<double>>{p, t}));
    ad::Tape tape;
    auto equal = ad::param(Array<double>{1.0, 2.0});
    ad::l1_loss(equal, ad::constant(Array<double>{1.0, 0.0})).backward();
    CHECK(equal.grad() == Array<double>{0.0, 0.5});  // sign(0) = 0, as PyTorch's
}

TEST_CASE("nll_loss and cross_entropy: values by their definitions, label smoothing, gradients match finite differences") {
    Array<double> logits = ad::test::uniform({4, 5}, 71, -2, 2);
    ad::IndexArray classes = {3, 0, 4, 0};
    const double eps = 0.2;
    double nll = 0, smoothed = 0;
    for (std::size_t r = 0; r < 4; ++r) {
        double m = -1e300, s = 0;
        for (std::size_t c = 0; c < 5; ++c) m = std::max(m, logits(r, c));
        for (std::size_t c = 0; c < 5; ++c) s += std::exp(logits(r, c) - m);
        auto log_p = [&](std::size_t c) { return logits(r, c) - m - std::log(s); };
        nll -= log_p(std::size_t(classes(r)));
        for (std::size_t c = 0; c < 5; ++c) smoothed -= ((std::int64_t(c) == classes(r) ? 1 - eps : 0) + eps / 5) * log_p(c);
    }
    auto log_probs = ad::log_softmax(ad::constant(logits), 1);
    CHECK(ad::nll_loss(log_probs, classes).item() == doctest::Approx(nll / 4).epsilon(1e-12));
    CHECK(ad::nll_loss(log_probs, std::vector<std::size_t>{3, 0, 4, 0}, ad::Reduction::sum).item() == doctest::Approx(nll).epsilon(1e-12));
    CHECK(ad::cross_entropy(ad::constant(logits), classes).item() == doctest::Approx(nll / 4).epsilon(1e-12));
    CHECK(ad::cross_entropy(ad::constant(logits), classes, ad::Reduction::mean, eps).item() == doctest::Approx(smoothed / 4).epsilon(1e-12));
    CHECK_GRADCHECK([classes](const Vars& v) { return ad::cross_entropy(v[0], classes, ad::Reduction::sum, 0.1); },
                    (std::vector<Array<double>>{logits}));
    CHECK_GRADCHECK([classes](const Vars& v) { return ad::nll_loss(v[0], classes); }, (std::vector<Array<double>>{logits}));
}

TEST_CASE("losses of the second set: bad classes, shapes and arguments are typed errors; the tape is unchanged") {
    ad::Tape tape;
    auto logits = ad::param(Array<double>::from_shape({2, 3}));
    std::size_t before = tape.size();
    CHECK_THROWS_WITH_AS(ad::nll_loss(logits, ad::IndexArray{0, 3}), "nll_loss: class 3 of row 1 is out of range for 3 classes",
                         ad::value_error);
    CHECK_THROWS_WITH_AS(ad::nll_loss(logits, ad::IndexArray{0, -1}), "nll_loss: class -1 of row 1 is out of range for 3 classes",
                         ad::value_error);
    CHECK_THROWS_WITH_AS(ad::nll_loss(logits, ad::IndexArray{0}),
                         "nll_loss: log-probabilities (2, 3) do not match class indices (1,) (one per row)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::huber_loss(logits, logits, 0.0), "huber_loss: delta must be positive, got 0", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::l1_loss(logits, ad::param(Array<double>{1.0})), "l1_loss: prediction (2, 3) and target (1,) differ in shape",
                         ad::shape_error);
    CHECK(tape.size() == before);
    CHECK_THROWS_WITH_AS(ad::cross_entropy(logits, ad::IndexArray{0, 1}, ad::Reduction::mean, 1.5),
                         "cross_entropy: label_smoothing must lie in [0, 1], got 1.5", ad::value_error);
}
