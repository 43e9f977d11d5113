#include "support/test_support.hpp"

#include <cmath>
#include <random>

#include <fmt/format.h>

using ad::Array;
using ad::Shape;
using ad::Var;
using ad::test::Vars;

namespace {

/// layer_norm spelled out: each row of width `width` normalised with its biased variance.
Array<double> layer_norm_reference(const Array<double>& x, std::size_t width, const Array<double>& w, const Array<double>& b,
                                   double eps) {
    Array<double> y = x;
    for (std::size_t r = 0; r < x.size() / width; ++r) {
        double mean = 0, var = 0;
        for (std::size_t k = 0; k < width; ++k) mean += x.data()[r * width + k];
        mean /= double(width);
        for (std::size_t k = 0; k < width; ++k) var += std::pow(x.data()[r * width + k] - mean, 2);
        var /= double(width);
        for (std::size_t k = 0; k < width; ++k) {
            y.data()[r * width + k] = (x.data()[r * width + k] - mean) / std::sqrt(var + eps) * w.data()[k] + b.data()[k];
        }
    }
    return y;
}

}  // namespace

TEST_CASE("layer_norm: forward matches the definition over trailing dimensions, with and without weight and bias") {
    Array<double> x = ad::test::uniform({2, 3, 4}, 1, -2, 2);
    Array<double> w = ad::test::uniform({3, 4}, 2), b = ad::test::uniform({3, 4}, 3);
    auto y = ad::layer_norm(ad::constant(x), {3, 4}, ad::constant(w), ad::constant(b), 1e-3);
    CHECK(ad::test::matches(y.value(), layer_norm_reference(x, 12, w, b, 1e-3)));
    auto plain = ad::layer_norm(ad::constant(x), {4});
    CHECK(ad::test::matches(plain.value(), layer_norm_reference(x, 4, xt::ones<double>({4}), xt::zeros<double>({4}), 1e-5)));
}

TEST_CASE("layer_norm: gradients match finite differences; the fused first-order VJP and the recorded one agree") {
    Array<double> x = ad::test::uniform({3, 5}, 4, -2, 2), w = ad::test::uniform({5}, 5), b = ad::test::uniform({5}, 6);
    CHECK_GRADCHECK([](const Vars& v) { return ad::layer_norm(v[0], {5}, v[1], v[2]); }, (std::vector<Array<double>>{x, w, b}));
    CHECK_GRADCHECK([](const Vars& v) { return ad::layer_norm(v[0], {2, 2}); },
                    (std::vector<Array<double>>{ad::test::uniform({3, 2, 2}, 7)}));
    ad::Tape tape;
    auto xp = ad::param(x);
    Array<double> seed = ad::test::uniform({3, 5}, 8);
    auto y = ad::layer_norm(xp, {5}, ad::constant(w), ad::constant(b));
    auto first = ad::grad(ad::sum(y * ad::constant(seed)), {xp}, {.retain_graph = true})[0].value();     // fused loop
    auto recorded = ad::grad(ad::sum(y * ad::constant(seed)), {xp}, {.create_graph = true})[0].value();  // engine ops
    CHECK(xt::allclose(first, recorded, 1e-12, 1e-12));
}

TEST_CASE("batch_norm: batch statistics in training, running statistics updated with the unbiased variance, used in eval") {
    Array<double> x = ad::test::uniform({4, 2, 3}, 10, -2, 2);
    ad::RunningStats<double> running{xt::zeros<double>({2}), xt::ones<double>({2})};
    auto y = ad::batch_norm(ad::constant(x), ad::constant(Array<double>{2.0, 0.5}), ad::constant(Array<double>{1.0, -1.0}),
                            &running, true, 0.1, 1e-5);
    for (std::size_t c = 0; c < 2; ++c) {
        double mean = 0, var = 0;
        for (std::size_t n = 0; n < 4; ++n) for (std::size_t s = 0; s < 3; ++s) mean += x(n, c, s);
        mean /= 12;
        for (std::size_t n = 0; n < 4; ++n) for (std::size_t s = 0; s < 3; ++s) var += std::pow(x(n, c, s) - mean, 2);
        const double w = c == 0 ? 2.0 : 0.5, b = c == 0 ? 1.0 : -1.0;
        for (std::size_t n = 0; n < 4; ++n) {
            for (std::size_t s = 0; s < 3; ++s) {
                CHECK(y.value()(n, c, s) == doctest::Approx((x(n, c, s) - mean) / std::sqrt(var / 12 + 1e-5) * w + b).epsilon(1e-12));
            }
        }
        CHECK(running.mean(c) == doctest::Approx(0.1 * mean).epsilon(1e-12));
        CHECK(running.var(c) == doctest::Approx(0.9 + 0.1 * var / 11).epsilon(1e-12));
    }
    auto eval = ad::batch_norm<double>(ad::constant(x), Var<double>(), Var<double>(), &running, false);
    CHECK(eval.value()(1, 1, 2) == doctest::Approx((x(1, 1, 2) - running.mean(1)) / std::sqrt(running.var(1) + 1e-5)).epsilon(1e-12));
    CHECK_GRADCHECK([](const Vars& v) { return ad::batch_norm<double>(v[0], v[1], v[2], nullptr, true); },
                    (std::vector<Array<double>>{x, Array<double>{2.0, 0.5}, Array<double>{1.0, -1.0}}));
    ad::RunningStats<double> fixed{Array<double>{0.5, -0.5}, Array<double>{2.0, 0.5}};
    CHECK_GRADCHECK([&fixed](const Vars& v) { return ad::batch_norm<double>(v[0], v[1], Var<double>(), &fixed, false); },
                    (std::vector<Array<double>>{x, Array<double>{2.0, 0.5}}));
}

TEST_CASE("dropout: a seeded mask, inverted scaling, the same mask in the VJP, identity in eval") {
    Array<double> x = xt::ones<double>({200, 50});
    std::mt19937_64 a(42), b(42);
    auto y1 = ad::dropout(ad::constant(x), 0.3, true, a);
    auto y2 = ad::dropout(ad::constant(x), 0.3, true, b);
    CHECK(y1.value() == y2.value());  // the same seed, the same mask
    std::size_t kept = 0;
    for (double v : y1.value()) {
        CHECK((v == 0.0 || std::abs(v - 1 / 0.7) < 1e-15));
        kept += v != 0.0;
    }
    CHECK(std::abs(double(kept) / 10000.0 - 0.7) < 0.03);  // 10,000 draws: the binomial's sd is 0.005
    ad::Tape tape;
    auto p = ad::param(ad::test::uniform({4, 5}, 3));
    std::mt19937_64 rng(7);
    auto y = ad::dropout(p, 0.5, true, rng);
    ad::sum(y).backward();
    for (std::size_t i = 0; i < p.size(); ++i) CHECK(p.grad().data()[i] == (y.value().data()[i] == 0.0 ? 0.0 : 2.0));
    std::mt19937_64 unused(1);
    CHECK(ad::dropout(p, 0.5, false, unused).value() == p.value());
    CHECK(ad::dropout(p, 0.0, true, unused).value() == p.value());
    CHECK(xt::all(xt::equal(ad::dropout(p, 1.0, true, unused).value(), 0.0)));
}

TEST_CASE("normalization ops: bad shapes and arguments are typed errors naming the op; the tape is unchanged") {
    ad::Tape tape;
    auto x = ad::param(Array<double>::from_shape({2, 3, 4}));
    std::size_t before = tape.size();
    CHECK_THROWS_WITH_AS(ad::layer_norm(x, {3}), "layer_norm: normalized_shape (3,) is not the trailing dimensions of the input (2, 3, 4)",
                         ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::layer_norm(x, {4}, ad::param(Array<double>{1.0, 2.0})),
                         "layer_norm: weight (2,) does not have normalized_shape (4,)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::batch_norm<double>(x, ad::param(Array<double>{1.0}), Var<double>(), nullptr, true),
                         "batch_norm: weight (1,) does not match the 3 channels of the input (2, 3, 4)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::batch_norm<double>(ad::param(Array<double>::from_shape({1, 3})), Var<double>(), Var<double>(), nullptr, true),
                         "batch_norm: expected more than 1 value per channel when training, got input (1, 3)", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::batch_norm<double>(x, Var<double>(), Var<double>(), nullptr, false),
                         "batch_norm: eval mode needs the running statistics", ad::value_error);
    std::mt19937_64 rng(1);
    CHECK_THROWS_WITH_AS(ad::dropout(x, 1.5, true, rng), "dropout: p must lie in [0, 1], got 1.5 (input (2, 3, 4))", ad::value_error);
    CHECK(tape.size() == before);
}

TEST_CASE("normalization ops: float gradients agree with double ones") {
    auto gradients = [](const auto& x0) {
        using T = typename std::decay_t<decltype(x0)>::value_type;
        ad::Tape tape;
        auto x = ad::param(x0);
        auto w = ad::constant(Array<T>{T(1.5), T(-0.5), T(2)});
        auto z = ad::layer_norm(x, {3}, w, w) * ad::batch_norm<T>(x, w, w, nullptr, true);
        ad::sum(ad::square(z)).backward();
        return x.grad();
    };
    Array<float> xf = xt::cast<float>(ad::test::uniform({4, 3}, 33, -2, 2));
    CHECK(ad::test::float_matches_double(gradients(xf), gradients(Array<double>(xt::cast<double>(xf)))));
}
