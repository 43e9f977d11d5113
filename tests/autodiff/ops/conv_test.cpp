#include "support/test_support.hpp"

#include <cmath>
#include <limits>
#include <random>

using ad::Array;
using ad::Shape;
using ad::Var;
using ad::test::Vars;

namespace {

struct ConvConfig {
    std::size_t n, c, h, w, o, kh, kw, groups;
    long sh, sw, ph, pw, dh, dw;
};

/// PyTorch's output size, written out.
std::size_t expected_out(std::size_t in, long pad, long dil, std::size_t k, long stride) {
    return static_cast<std::size_t>((static_cast<long>(in) + 2 * pad - dil * (static_cast<long>(k) - 1) - 1) / stride + 1);
}

/// The direct convolution with loops: every output sums its window's products.
Array<double> conv_reference(const Array<double>& x, const Array<double>& w, const Array<double>* b, const ConvConfig& k) {
    const std::size_t oh = expected_out(k.h, k.ph, k.dh, k.kh, k.sh), ow = expected_out(k.w, k.pw, k.dw, k.kw, k.sw);
    const std::size_t cg = k.c / k.groups, og = k.o / k.groups;
    Array<double> y = xt::zeros<double>({k.n, k.o, oh, ow});
    for (std::size_t n = 0; n < k.n; ++n)
        for (std::size_t o = 0; o < k.o; ++o)
            for (std::size_t p = 0; p < oh; ++p)
                for (std::size_t q = 0; q < ow; ++q) {
                    double s = b ? (*b)(o) : 0.0;
                    for (std::size_t c = 0; c < cg; ++c)
                        for (std::size_t i = 0; i < k.kh; ++i)
                            for (std::size_t j = 0; j < k.kw; ++j) {
                                long r = long(p) * k.sh - k.ph + long(i) * k.dh, t = long(q) * k.sw - k.pw + long(j) * k.dw;
                                if (r < 0 || t < 0 || r >= long(k.h) || t >= long(k.w)) continue;
                                s += w(o, c, i, j) * x(n, (o / og) * cg + c, std::size_t(r), std::size_t(t));
                            }
                    y(n, o, p, q) = s;
                }
    return y;
}

/// Pooling by loops over each window of the padded input; `max` or average.
Array<double> pool_reference(const Array<double>& x, std::size_t kh, std::size_t kw, long sh, long sw, long ph, long pw,
                             bool max, bool include_pad) {
    const std::size_t N = x.shape()[0], C = x.shape()[1], H = x.shape()[2], W = x.shape()[3];
    const std::size_t oh = expected_out(H, ph, 1, kh, sh), ow = expected_out(W, pw, 1, kw, sw);
    Array<double> y = Array<double>::from_shape({N, C, oh, ow});
    for (std::size_t n = 0; n < N; ++n)
        for (std::size_t c = 0; c < C; ++c)
            for (std::size_t p = 0; p < oh; ++p)
                for (std::size_t q = 0; q < ow; ++q) {
                    double best = -std::numeric_limits<double>::infinity(), s = 0;
                    std::size_t real = 0, padded = 0;
                    for (std::size_t i = 0; i < kh; ++i)
                        for (std::size_t j = 0; j < kw; ++j) {
                            long r = long(p) * sh - ph + long(i), t = long(q) * sw - pw + long(j);
                            if (r >= long(H) + ph || t >= long(W) + pw) continue;  // beyond the padding
                            ++padded;
                            if (r < 0 || t < 0 || r >= long(H) || t >= long(W)) continue;
                            ++real;
                            best = std::max(best, x(n, c, std::size_t(r), std::size_t(t)));
                            s += x(n, c, std::size_t(r), std::size_t(t));
                        }
                    y(n, c, p, q) = max ? best : s / double(include_pad ? padded : real);
                }
    return y;
}

ConvConfig random_config(std::mt19937_64& rng) {
    auto pick = [&](std::size_t lo, std::size_t hi) { return lo + rng() % (hi - lo + 1); };
    for (;;) {
        ConvConfig k{};
        k.groups = pick(1, 3);
        k.c = k.groups * pick(1, 2);
        k.o = k.groups * pick(1, 2);
        k.n = pick(1, 2);
        k.h = pick(1, 6);
        k.w = pick(1, 7);
        k.kh = pick(1, 3);
        k.kw = pick(1, 3);
        k.sh = long(pick(1, 3));
        k.sw = long(pick(1, 2));
        k.ph = long(pick(0, 2));
        k.pw = long(pick(0, 1));
        k.dh = long(pick(1, 2));
        k.dw = long(pick(1, 3));
        if (long(k.h) + 2 * k.ph >= k.dh * long(k.kh - 1) + 1 && long(k.w) + 2 * k.pw >= k.dw * long(k.kw - 1) + 1) return k;
    }
}

Var<double> conv_of(const Vars& v, const ConvConfig& k) {
    return ad::conv2d(v[0], v[1], v.size() > 2 ? v[2] : Var<double>(), {k.sh, k.sw}, {k.ph, k.pw}, {k.dh, k.dw},
                      long(k.groups));
}

}  // namespace

TEST_CASE("conv2d: values match a direct convolution over random configurations") {
    std::mt19937_64 rng(7);
    for (int trial = 0; trial < 40; ++trial) {
        ConvConfig k = random_config(rng);
        INFO("trial ", trial);
        Array<double> x = ad::test::uniform({k.n, k.c, k.h, k.w}, 10 + trial);
        Array<double> w = ad::test::uniform({k.o, k.c / k.groups, k.kh, k.kw}, 100 + trial);
        Array<double> b = ad::test::uniform({k.o}, 200 + trial);
        auto y = conv_of({ad::constant(x), ad::constant(w), ad::constant(b)}, k);
        CHECK(ad::test::matches(y.value(), conv_reference(x, w, &b, k)));
        auto y0 = conv_of({ad::constant(x), ad::constant(w)}, k);
        CHECK(ad::test::matches(y0.value(), conv_reference(x, w, nullptr, k)));
    }
}

TEST_CASE("conv2d: output sizes follow PyTorch when the sizes do not divide evenly") {
    auto x = ad::constant(Array<double>::from_shape({1, 1, 7, 8}));
    auto w = ad::constant(Array<double>::from_shape({2, 1, 2, 3}));
    CHECK(ad::conv2d(x, w, {}, 2).shape() == Shape{1, 2, 3, 3});           // (7-2)/2+1, (8-3)/2+1
    CHECK(ad::conv2d(x, w, {}, 3, 1).shape() == Shape{1, 2, 3, 3});        // (9-2)/3+1, (10-3)/3+1
    CHECK(ad::conv2d(x, w, {}, {1, 2}, {0, 1}, 2).shape() == Shape{1, 2, 5, 3});  // (7-3)/1+1, (10-5)/2+1
}

TEST_CASE("conv2d: gradcheck over random configurations, with and without bias") {
    std::mt19937_64 rng(11);
    for (int trial = 0; trial < 12; ++trial) {
        ConvConfig k = random_config(rng);
        INFO("trial ", trial, ": groups ", k.groups, " stride ", k.sh, ",", k.sw, " padding ", k.ph, ",", k.pw,
             " dilation ", k.dh, ",", k.dw);
        std::vector<Array<double>> inputs{ad::test::uniform({k.n, k.c, k.h, k.w}, 30 + trial),
                                          ad::test::uniform({k.o, k.c / k.groups, k.kh, k.kw}, 60 + trial)};
        if (trial % 2 == 0) inputs.push_back(ad::test::uniform({k.o}, 90 + trial));
        CHECK_GRADCHECK(([k](const Vars& v) { return conv_of(v, k); }), inputs);
    }
}

TEST_CASE("conv2d: a 1x1 kernel (no im2col) and double backward through every product") {
    std::vector<Array<double>> inputs{ad::test::uniform({2, 4, 3, 2}, 1), ad::test::uniform({6, 2, 1, 1}, 2),
                                      ad::test::uniform({6}, 3)};
    auto f = [](const Vars& v) { return ad::conv2d(v[0], v[1], v[2], 1, 0, 1, 2); };
    CHECK_GRADCHECK(f, inputs);
    CHECK_GRADGRADCHECK(f, inputs);
    auto g = [](const Vars& v) { return ad::square(ad::conv2d(v[0], v[1], {}, {2, 1}, {1, 2}, {2, 1})); };
    std::vector<Array<double>> inputs2{ad::test::uniform({1, 2, 5, 4}, 4), ad::test::uniform({3, 2, 2, 3}, 5)};
    CHECK_GRADGRADCHECK(g, inputs2);
}

TEST_CASE("conv2d: an empty batch gives an empty result and zero weight and bias gradients") {
    ad::Tape tape;
    auto x = ad::param(Array<double>::from_shape({0, 2, 4, 4}));
    auto w = ad::param(ad::test::uniform({3, 2, 3, 3}, 1));
    auto b = ad::param(ad::test::uniform({3}, 2));
    auto y = ad::conv2d(x, w, b, 1, 1);
    CHECK(y.shape() == Shape{0, 3, 4, 4});
    ad::sum(y).backward();
    CHECK(w.grad() == Array<double>(xt::zeros<double>({3, 2, 3, 3})));
    CHECK(b.grad() == Array<double>(xt::zeros<double>({3})));
    CHECK(x.grad().shape() == x.value().shape());
}

TEST_CASE("conv1d: values and gradients are conv2d's with H = 1") {
    std::mt19937_64 rng(5);
    for (int trial = 0; trial < 10; ++trial) {
        ConvConfig k = random_config(rng);
        k.h = 1;
        k.kh = 1;
        k.sh = k.dh = 1;
        k.ph = 0;
        Array<double> x = ad::test::uniform({k.n, k.c, k.w}, 10 + trial);
        Array<double> w = ad::test::uniform({k.o, k.c / k.groups, k.kw}, 20 + trial);
        Array<double> b = ad::test::uniform({k.o}, 30 + trial);
        auto f = [k](const Vars& v) { return ad::conv1d(v[0], v[1], v[2], k.sw, k.pw, k.dw, long(k.groups)); };
        auto y = f({ad::constant(x), ad::constant(w), ad::constant(b)});
        Array<double> x4 = x, w4 = w;
        x4.reshape({k.n, k.c, 1, k.w});
        w4.reshape({k.o, k.c / k.groups, 1, k.kw});
        Array<double> ref = conv_reference(x4, w4, &b, k);
        ref.reshape({ref.shape()[0], ref.shape()[1], ref.shape()[3]});
        CHECK(ad::test::matches(y.value(), ref));
        if (trial < 4) CHECK_GRADCHECK(f, (std::vector<Array<double>>{x, w, b}));
    }
}

TEST_CASE("conv: bad inputs are errors naming the op and the shapes, and record nothing") {
    ad::Tape tape;
    auto x = ad::param(Array<double>::from_shape({2, 4, 8, 8}));
    auto w = ad::param(Array<double>::from_shape({8, 3, 3, 3}));
    auto y0 = ad::relu(x);  // something on the tape already
    const std::size_t before = tape.size();
    CHECK_THROWS_WITH_AS(ad::conv2d(x, w), "conv2d: weight (8, 3, 3, 3) expects 3 input channels per group, input (2, 4, 8, 8) has 4",
                         ad::shape_error);
    auto w2 = ad::param(Array<double>::from_shape({6, 2, 3, 3}));
    auto x9 = ad::param(Array<double>::from_shape({2, 9, 8, 8}));
    CHECK_THROWS_WITH_AS(ad::conv2d(x9, w2, {}, 1, 0, 1, 3),
                         "conv2d: weight (6, 2, 3, 3) expects 2 input channels per group, input (2, 9, 8, 8) has 3 (9 channels in 3 groups)",
                         ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::conv2d(x, w2, {}, 1, 0, 1, 3), "conv2d: groups 3 do not divide the 4 channels of input (2, 4, 8, 8)",
                         ad::shape_error);
    auto w3 = ad::param(Array<double>::from_shape({5, 2, 3, 3}));
    CHECK_THROWS_WITH_AS(ad::conv2d(x, w3, {}, 1, 0, 1, 2), "conv2d: groups 2 do not divide the 5 output channels of weight (5, 2, 3, 3)",
                         ad::shape_error);
    auto w4 = ad::param(Array<double>::from_shape({8, 4, 5, 5}));
    auto small = ad::param(Array<double>::from_shape({2, 4, 3, 3}));
    CHECK_THROWS_WITH_AS(ad::conv2d(small, w4), "conv2d: kernel (5, 5) of weight (8, 4, 5, 5) is larger than the padded input (3, 3) of input (2, 4, 3, 3)",
                         ad::shape_error);
    CHECK_NOTHROW(ad::conv2d(small, w4, {}, 1, 1));
    CHECK_THROWS_WITH_AS(ad::conv2d(small, w4, {}, 1, 2, 2),
                         "conv2d: kernel (5, 5) of weight (8, 4, 5, 5) dilated by (2, 2) spans (9, 9), larger than the padded input (7, 7) of input (2, 4, 3, 3)",
                         ad::shape_error);
    tape.clear();
    const std::size_t start = tape.size();
    auto bias = ad::param(Array<double>::from_shape({7}));
    CHECK_THROWS_WITH_AS(ad::conv2d(x, w4, bias), "conv2d: bias (7,) must be (8), one per output channel of weight (8, 4, 5, 5)",
                         ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::conv2d(ad::param(Array<double>::from_shape({4, 8, 8})), w4),
                         "conv2d: input (4, 8, 8) must be 4-D (N, C, H, W)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::conv2d(x, ad::param(Array<double>::from_shape({8, 4, 5}))),
                         "conv2d: weight (8, 4, 5) must be 4-D (O, C/groups, kh, kw)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::conv2d(x, w4, {}, {1, 0}), "conv2d: stride (1, 0) must be positive", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::conv2d(x, w4, {}, 1, -1), "conv2d: padding (-1, -1) must be non-negative", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::conv2d(x, w4, {}, 1, 0, 0), "conv2d: dilation (0, 0) must be positive", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::conv2d(x, w4, {}, 1, 0, 1, 0), "conv2d: groups 0 must be positive", ad::value_error);
    auto x1 = ad::param(Array<double>::from_shape({2, 4, 5}));
    CHECK_THROWS_WITH_AS(ad::conv1d(x1, ad::param(Array<double>::from_shape({3, 2, 3}))),
                         "conv1d: weight (3, 2, 3) expects 2 input channels per group, input (2, 4, 5) has 4", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::conv1d(x1, ad::param(Array<double>::from_shape({3, 4, 7}))),
                         "conv1d: kernel 7 of weight (3, 4, 7) is larger than the padded input 5 of input (2, 4, 5)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::conv1d(x, w), "conv1d: input (2, 4, 8, 8) must be 3-D (N, C, L)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::conv1d(x1, ad::param(Array<double>::from_shape({3, 4, 2})), {}, 0),
                         "conv1d: stride 0 must be positive", ad::value_error);
    CHECK(tape.size() == start);
    CHECK(before > 0);
    (void)y0;
}

TEST_CASE("max_pool2d: values, PyTorch's output sizes and gradcheck") {
    std::mt19937_64 rng(3);
    for (int trial = 0; trial < 20; ++trial) {
        const std::size_t kh = 1 + rng() % 3, kw = 1 + rng() % 3;
        const long sh = long(1 + rng() % 3), sw = long(1 + rng() % 2);
        const long ph = long(rng() % (kh / 2 + 1)), pw = long(rng() % (kw / 2 + 1));
        const std::size_t h = kh + rng() % 4, w = kw + rng() % 5;
        Array<double> x = ad::test::uniform({2, 2, h, w}, 50 + trial);
        INFO("trial ", trial);
        auto f = [=](const Vars& v) {
            return ad::max_pool2d(v[0], {long(kh), long(kw)}, {sh, sw}, {ph, pw});
        };
        CHECK(ad::test::matches(f({ad::constant(x)}).value(), pool_reference(x, kh, kw, sh, sw, ph, pw, true, true)));
        if (trial < 6) CHECK_GRADCHECK(f, (std::vector<Array<double>>{x}));
    }
    auto x = ad::constant(Array<double>::from_shape({1, 3, 7, 6}));
    CHECK(ad::max_pool2d(x, 2).shape() == Shape{1, 3, 3, 3});        // stride = kernel
    CHECK(ad::max_pool2d(x, 3, 2, 1).shape() == Shape{1, 3, 4, 3});  // (7+2-3)/2+1, (6+2-3)/2+1
    CHECK(ad::max_pool2d(ad::constant(Array<double>::from_shape({3, 7, 6})), 2).shape() == Shape{3, 3, 3});
}

TEST_CASE("max_pool2d: the gradient goes to the first maximum of a window; NaN wins") {
    ad::Tape tape;
    auto x = ad::param(Array<double>{{{{1.0, 5.0, 5.0}, {5.0, 2.0, 0.0}}}});  // (1, 1, 2, 3)
    auto y = ad::max_pool2d(x, 2, 1);                                        // windows at columns 0 and 1
    CHECK(y.value() == Array<double>{{{{5.0, 5.0}}}});
    ad::sum(y).backward();
    // Window 0 scans 1, 5, 5, 2: the first 5 (0, 1); window 1 scans 5, 5, 2, 0: (0, 1) again.
    CHECK(x.grad() == Array<double>{{{{0.0, 2.0, 0.0}, {0.0, 0.0, 0.0}}}});
    const double nan = std::numeric_limits<double>::quiet_NaN();
    auto z = ad::max_pool2d(ad::constant(Array<double>{{{{1.0, nan}, {3.0, 2.0}}}}), 2);
    CHECK(std::isnan(z.value()(0, 0, 0, 0)));
}

TEST_CASE("avg_pool2d: values with and without count_include_pad, and gradcheck") {
    std::mt19937_64 rng(4);
    for (int trial = 0; trial < 20; ++trial) {
        const std::size_t kh = 1 + rng() % 3, kw = 1 + rng() % 3;
        const long sh = long(1 + rng() % 3), sw = long(1 + rng() % 2);
        const long ph = long(rng() % (kh / 2 + 1)), pw = long(rng() % (kw / 2 + 1));
        const std::size_t h = kh + rng() % 4, w = kw + rng() % 5;
        const bool include = trial % 2 == 0;
        Array<double> x = ad::test::uniform({2, 1, h, w}, 70 + trial);
        INFO("trial ", trial);
        auto f = [=](const Vars& v) {
            return ad::avg_pool2d(v[0], {long(kh), long(kw)}, {sh, sw}, {ph, pw}, include);
        };
        CHECK(ad::test::matches(f({ad::constant(x)}).value(), pool_reference(x, kh, kw, sh, sw, ph, pw, false, include)));
        if (trial < 6) CHECK_GRADCHECK(f, (std::vector<Array<double>>{x}));
    }
    // A corner window of a 3x3 kernel with padding 1 holds 4 real elements: divisor 9, or 4 without the padding.
    auto ones = ad::constant(Array<double>(xt::ones<double>({1, 1, 4, 4})));
    CHECK(ad::avg_pool2d(ones, 3, 2, 1).value()(0, 0, 0, 0) == doctest::Approx(4.0 / 9.0));
    CHECK(ad::avg_pool2d(ones, 3, 2, 1, false).value()(0, 0, 0, 0) == doctest::Approx(1.0));
}

TEST_CASE("pooling: bad inputs are errors naming the op and the shapes, and record nothing") {
    ad::Tape tape;
    auto x = ad::param(Array<double>::from_shape({1, 2, 4, 4}));
    const std::size_t before = tape.size();
    CHECK_THROWS_WITH_AS(ad::max_pool2d(x, 3, 1, 2), "max_pool2d: padding (2, 2) must be at most half the kernel (3, 3)",
                         ad::value_error);
    CHECK_THROWS_WITH_AS(ad::avg_pool2d(x, {2, 4}, 1, {1, 3}),
                         "avg_pool2d: padding (1, 3) must be at most half the kernel (2, 4)", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::max_pool2d(x, 5), "max_pool2d: kernel (5, 5) is larger than the padded input (4, 4) of x (1, 2, 4, 4)",
                         ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::avg_pool2d(x, {2, 7}, 1, 1),
                         "avg_pool2d: kernel (2, 7) is larger than the padded input (6, 6) of x (1, 2, 4, 4)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::max_pool2d(ad::param(Array<double>::from_shape({4, 4})), 2),
                         "max_pool2d: x (4, 4) must be 3-D (C, H, W) or 4-D (N, C, H, W)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::max_pool2d(x, 0), "max_pool2d: kernel (0, 0) must be positive", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::avg_pool2d(x, 2, {0, 1}), "avg_pool2d: stride (0, 1) must be positive", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::max_pool2d(ad::param(Array<double>::from_shape({1, 2, 0, 4})), 1),
                         "max_pool2d: x (1, 2, 0, 4) has empty planes (H and W must be at least 1)", ad::shape_error);
    CHECK(tape.size() == before);
    // An empty batch is fine.
    CHECK(ad::max_pool2d(ad::param(Array<double>::from_shape({0, 2, 4, 4})), 2).shape() == Shape{0, 2, 2, 2});
}

TEST_CASE("conv and pooling: float gradients agree with double ones") {
    Array<float> xf = xt::cast<float>(ad::test::uniform({2, 4, 7, 6}, 1));
    Array<float> wf = xt::cast<float>(ad::test::uniform({4, 2, 3, 2}, 2));
    Array<float> bf = xt::cast<float>(ad::test::uniform({4}, 3));
    auto gradients = [](const auto& x0, const auto& w0, const auto& b0) {
        ad::Tape tape;
        auto x = ad::param(x0);
        auto w = ad::param(w0);
        auto b = ad::param(b0);
        auto y = ad::conv2d(x, w, b, {2, 1}, 1, {1, 2}, 2);
        auto z = ad::sum(ad::square(ad::max_pool2d(y, 2, 1))) + ad::sum(ad::square(ad::avg_pool2d(y, 3, 2, 1, false))) +
                 ad::sum(ad::square(ad::conv1d(ad::reshape(x, {2, 4, 42}), ad::reshape(w, {4, 2, 6}), b, 3, 2, 1, 2))) +
                 ad::sum(ad::square(ad::conv2d(x, w, b, 1, 1, 1, 2)));  // stride 1, K = 12: the direct path
        z.backward();
        return std::vector<std::decay_t<decltype(x0)>>{x.grad(), w.grad(), b.grad()};
    };
    auto gf = gradients(xf, wf, bf);
    auto gd = gradients(Array<double>(xt::cast<double>(xf)), Array<double>(xt::cast<double>(wf)),
                        Array<double>(xt::cast<double>(bf)));
    ad::test::check_float_matches_double(gf, gd);
}

TEST_CASE("conv2d: a batch in several chunks agrees with its samples done one by one") {
    // 72 x 1024 columns a sample: the GEMMs take 3 samples at a time (2^18
    // elements), so the batch of 4 goes in chunks of 3 and 1, its columns not
    // kept; a single sample's are kept from the forward for the weight gradient.
    ConvConfig k{4, 8, 32, 32, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1};
    Array<double> x = ad::test::uniform({4, 8, 32, 32}, 1), w = ad::test::uniform({4, 8, 3, 3}, 2);
    Array<double> b = ad::test::uniform({4}, 3), seed = ad::test::uniform({4, 4, 32, 32}, 4);
    ad::Tape tape;
    auto xv = ad::param(x), wv = ad::param(w), bv = ad::param(b);
    auto y = ad::conv2d(xv, wv, bv, 1, 1);
    CHECK(ad::test::matches(y.value(), conv_reference(x, w, &b, k)));
    y.backward(seed);
    Array<double> w_sum = xt::zeros<double>(w.shape()), b_sum = xt::zeros<double>(b.shape());
    for (std::size_t n = 0; n < 4; ++n) {
        ad::Tape one;
        auto xn = ad::param(Array<double>(xt::view(x, xt::range(n, n + 1))));
        auto wn = ad::param(w), bn = ad::param(b);
        ad::conv2d(xn, wn, bn, 1, 1).backward(Array<double>(xt::view(seed, xt::range(n, n + 1))));
        CHECK(ad::test::matches(Array<double>(xt::view(xv.grad(), xt::range(n, n + 1))), xn.grad()));
        w_sum += wn.grad();
        b_sum += bn.grad();
    }
    CHECK(xt::allclose(wv.grad(), w_sum, 1e-12, 1e-10));
    CHECK(xt::allclose(bv.grad(), b_sum, 1e-12, 1e-10));
}

namespace {

struct ConvGradients {
    Array<double> x, w, b;
};

/// The VJP of conv_reference with loops: every output's cotangent goes to the
/// bias, to the weights times its window and to its window times the weights.
ConvGradients conv_vjp_reference(const Array<double>& x, const Array<double>& w, const Array<double>& g,
                                 const ConvConfig& k) {
    const std::size_t oh = g.shape()[2], ow = g.shape()[3];
    const std::size_t cg = k.c / k.groups, og = k.o / k.groups;
    ConvGradients r{xt::zeros<double>(x.shape()), xt::zeros<double>(w.shape()), xt::zeros<double>({k.o})};
    for (std::size_t n = 0; n < k.n; ++n)
        for (std::size_t o = 0; o < k.o; ++o)
            for (std::size_t p = 0; p < oh; ++p)
                for (std::size_t q = 0; q < ow; ++q) {
                    const double gv = g(n, o, p, q);
                    r.b(o) += gv;
                    for (std::size_t c = 0; c < cg; ++c)
                        for (std::size_t i = 0; i < k.kh; ++i)
                            for (std::size_t j = 0; j < k.kw; ++j) {
                                long s = long(p) * k.sh - k.ph + long(i) * k.dh, t = long(q) * k.sw - k.pw + long(j) * k.dw;
                                if (s < 0 || t < 0 || s >= long(k.h) || t >= long(k.w)) continue;
                                const std::size_t xc = (o / og) * cg + c;
                                r.w(o, c, i, j) += gv * x(n, xc, std::size_t(s), std::size_t(t));
                                r.x(n, xc, std::size_t(s), std::size_t(t)) += gv * w(o, c, i, j);
                            }
                }
    return r;
}

/// conv2d's value and its three gradients for the cotangent `seed`, against the loops.
void check_against_loops(const ConvConfig& k, std::uint64_t seed) {
    Array<double> x = ad::test::uniform({k.n, k.c, k.h, k.w}, seed);
    Array<double> w = ad::test::uniform({k.o, k.c / k.groups, k.kh, k.kw}, seed + 1);
    Array<double> b = ad::test::uniform({k.o}, seed + 2);
    Array<double> ref = conv_reference(x, w, &b, k);
    Array<double> g = ad::test::uniform(Shape(ref.shape().begin(), ref.shape().end()), seed + 3);
    ad::Tape tape;
    auto xv = ad::param(x), wv = ad::param(w), bv = ad::param(b);
    auto y = conv_of({xv, wv, bv}, k);
    CHECK(ad::test::matches(y.value(), ref));
    y.backward(g);
    const ConvGradients expected = conv_vjp_reference(x, w, g, k);
    CHECK(ad::test::matches(xv.grad(), expected.x));
    CHECK(ad::test::matches(wv.grad(), expected.w));
    CHECK(ad::test::matches(bv.grad(), expected.b));
}

}  // namespace

// The direct path (ConvGeometry::by_taps in conv.cpp): stride 1, at most 64
// taps per output (K = C/groups kh kw); wider K and any other stride go
// through im2col and GEMMs.

TEST_CASE("conv2d: the direct path matches loops in the value and every gradient") {
    const ConvConfig configs[] = {
        {3, 1, 8, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1},     // one input channel, 3x3, padding 1
        {2, 2, 7, 5, 3, 3, 2, 1, 1, 1, 2, 0, 2, 1},     // non-square, dilated rows, uneven padding
        {2, 4, 6, 6, 4, 3, 3, 2, 1, 1, 1, 1, 1, 1},     // two groups
        {2, 1, 4, 5, 2, 2, 1, 1, 1, 1, 2, 3, 1, 1},     // padding beyond the kernel's span: border outputs see only zeros
        {1, 3, 3, 3, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1},     // 1x1 kernel with padding (not the plain 1x1 product)
        {2, 1, 20, 19, 11, 3, 3, 1, 1, 1, 1, 1, 1, 1},  // long planes (several register blocks), 11 outputs (8 + 3)
        {2, 2, 1, 9, 3, 1, 3, 1, 1, 1, 0, 2, 1, 3},     // one-row images, dilated columns
        {1, 16, 4, 4, 32, 2, 2, 1, 1, 1, 1, 1, 1, 1},   // K = 64: the widest the direct path takes
        {1, 17, 4, 4, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1},    // K = 68: just beyond, through im2col
        {2, 2, 5, 5, 3, 3, 3, 1, 1, 2, 1, 1, 1, 1},     // stride 2 along columns: im2col
    };
    std::uint64_t seed = 300;
    for (const ConvConfig& k : configs) {
        INFO("n ", k.n, " c ", k.c, " ", k.h, "x", k.w, " o ", k.o, " kernel ", k.kh, "x", k.kw, " groups ", k.groups);
        check_against_loops(k, seed);
        seed += 10;
    }
    std::mt19937_64 rng(13);
    for (int trial = 0; trial < 30; ++trial) {
        ConvConfig k = random_config(rng);
        k.sh = k.sw = 1;
        INFO("random trial ", trial);
        check_against_loops(k, 400 + 10 * std::uint64_t(trial));
    }
}

TEST_CASE("conv2d: gradcheck and double backward through the direct path") {
    std::vector<Array<double>> inputs{ad::test::uniform({2, 1, 5, 4}, 1), ad::test::uniform({3, 1, 3, 3}, 2),
                                      ad::test::uniform({3}, 3)};
    auto f = [](const Vars& v) { return ad::conv2d(v[0], v[1], v[2], 1, 1); };
    CHECK_GRADCHECK(f, inputs);
    CHECK_GRADGRADCHECK(f, inputs);
    // Two groups, dilation and padding beyond the span, squared so that the
    // second derivatives go through all three products.
    auto g = [](const Vars& v) { return ad::square(ad::conv2d(v[0], v[1], v[2], 1, {2, 1}, {1, 2}, 2)); };
    std::vector<Array<double>> inputs2{ad::test::uniform({1, 4, 3, 5}, 4), ad::test::uniform({2, 2, 2, 2}, 5),
                                       ad::test::uniform({2}, 6)};
    CHECK_GRADCHECK(g, inputs2);
    CHECK_GRADGRADCHECK(g, inputs2);
}

TEST_CASE("conv2d: an infinite input spoils only the weight gradients of the taps that reach it") {
    // x holds an infinity in its last column: the taps of kernel column 0 never
    // see it through a real output, and their gradients stay finite. The
    // direct weight gradient's dropped columns would multiply zeros by it and
    // make them NaN: with a non-finite input that product goes through im2col.
    ConvConfig k{1, 1, 5, 5, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1};
    Array<double> x = ad::test::uniform({1, 1, 5, 5}, 1);
    x(0, 0, 2, 4) = std::numeric_limits<double>::infinity();
    Array<double> w = ad::test::uniform({2, 1, 3, 3}, 2);
    ad::Tape tape;
    auto xv = ad::param(x), wv = ad::param(w);
    auto y = ad::conv2d(xv, wv, {}, 1, 1);
    // The loss sums the finite outputs, so that backward starts from a finite value.
    const ad::Mask finite = xt::isfinite(y.value());
    ad::sum(ad::where(finite, y, ad::constant(Array<double>(xt::zeros<double>(y.shape()))))).backward();
    const Array<double> g = xt::where(finite, 1.0, 0.0);
    const Array<double> expected = conv_vjp_reference(x, w, g, k).w;
    for (std::size_t i = 0; i < expected.size(); ++i) {
        INFO("weight gradient element ", i);
        if (std::isnan(expected.flat(i))) {
            CHECK(std::isnan(wv.grad().flat(i)));
        } else {
            CHECK(std::abs(wv.grad().flat(i) - expected.flat(i)) <= 1e-12 * (1 + std::abs(expected.flat(i))));
        }
    }
    for (std::size_t o = 0; o < 2; ++o)
        for (std::size_t i = 0; i < 3; ++i) CHECK(std::isfinite(expected(o, 0, i, 0)));
    CHECK(std::isnan(expected(0, 0, 1, 1)));
}

TEST_CASE("max_pool2d: the 2x2 window at stride 2 keeps the general scan's values, ties, NaN and gradients") {
    // Odd sizes leave the last row and column out; the batch covers both the
    // fast 2x2 path and, with padding, the general one.
    Array<double> x = ad::test::uniform({2, 3, 5, 7}, 1);
    auto f = [](const Vars& v) { return ad::max_pool2d(v[0], 2); };
    CHECK(ad::test::matches(f({ad::constant(x)}).value(), pool_reference(x, 2, 2, 2, 2, 0, 0, true, true)));
    CHECK_GRADCHECK(f, (std::vector<Array<double>>{x}));
    CHECK_GRADGRADCHECK(f, (std::vector<Array<double>>{x}));
    const double nan = std::numeric_limits<double>::quiet_NaN();
    // Window 0: a tie, the first 5 wins; window 1: NaN after the max wins;
    // window 2 (second row of windows): a NaN then a larger number, the NaN stays.
    ad::Tape tape;
    auto t = ad::param(Array<double>{{{{1.0, 5.0, 0.0, 2.0}, {5.0, 2.0, nan, 9.0}, {nan, 7.0, -1.0, -1.0}, {3.0, 8.0, -1.0, -2.0}}}});
    auto y = ad::max_pool2d(t, 2);
    CHECK(y.value()(0, 0, 0, 0) == 5.0);
    CHECK(std::isnan(y.value()(0, 0, 0, 1)));
    CHECK(std::isnan(y.value()(0, 0, 1, 0)));
    CHECK(y.value()(0, 0, 1, 1) == -1.0);
    ad::sum(ad::where(xt::isnan(y.value()), ad::constant(Array<double>(xt::zeros<double>({1, 1, 2, 2}))), y)).backward();
    // The gradients go to the first 5 (0, 1) and to the first -1 (2, 2) of the last window.
    CHECK(t.grad() == Array<double>{{{{0.0, 1.0, 0.0, 0.0}, {0.0, 0.0, 0.0, 0.0}, {0.0, 0.0, 1.0, 0.0}, {0.0, 0.0, 0.0, 0.0}}}});
}
