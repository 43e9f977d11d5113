#include "support/test_support.hpp"

#include <cmath>
#include <limits>
#include <random>

#include <fmt/format.h>

using ad::Array;
using ad::Shape;
using ad::Var;
using ad::test::Vars;

namespace {

/// The convolution by its definition, one output element at a time.
Array<double> conv2d_reference(const Array<double>& x, const Array<double>& w, const Array<double>& b,
                               const ad::Conv2dOptions& o) {
    const std::size_t n = x.shape()[0], c = x.shape()[1], h = x.shape()[2], wd = x.shape()[3];
    const std::size_t out = w.shape()[0], cg = w.shape()[1], kh = w.shape()[2], kw = w.shape()[3];
    const std::size_t og = out / o.groups;
    const std::size_t ho = (h + 2 * o.padding[0] - o.dilation[0] * (kh - 1) - 1) / o.stride[0] + 1;
    const std::size_t wo = (wd + 2 * o.padding[1] - o.dilation[1] * (kw - 1) - 1) / o.stride[1] + 1;
    Array<double> y = xt::zeros<double>({n, out, ho, wo});
    for (std::size_t bi = 0; bi < n; ++bi)
        for (std::size_t oc = 0; oc < out; ++oc)
            for (std::size_t i = 0; i < ho; ++i)
                for (std::size_t j = 0; j < wo; ++j) {
                    double s = b.size() ? b(oc) : 0.0;
                    for (std::size_t ci = 0; ci < cg; ++ci)
                        for (std::size_t p = 0; p < kh; ++p)
                            for (std::size_t q = 0; q < kw; ++q) {
                                long ih = long(i * o.stride[0] + p * o.dilation[0]) - long(o.padding[0]);
                                long iw = long(j * o.stride[1] + q * o.dilation[1]) - long(o.padding[1]);
                                if (ih < 0 || iw < 0 || ih >= long(h) || iw >= long(wd)) continue;
                                s += w(oc, ci, p, q) * x(bi, (oc / og) * cg + ci, std::size_t(ih), std::size_t(iw));
                            }
                    y(bi, oc, i, j) = s;
                }
    (void)c;
    return y;
}

/// Pooling by its definition: the max or the mean of each window, padding excluded from the max.
Array<double> pool_reference(const Array<double>& x, const ad::Pool2dOptions& o, bool max) {
    const std::size_t n = x.shape()[0], c = x.shape()[1], h = x.shape()[2], w = x.shape()[3];
    const std::size_t sh = o.stride[0] ? o.stride[0] : o.kernel[0], sw = o.stride[1] ? o.stride[1] : o.kernel[1];
    const std::size_t ho = (h + 2 * o.padding[0] - o.kernel[0]) / sh + 1, wo = (w + 2 * o.padding[1] - o.kernel[1]) / sw + 1;
    Array<double> y = Array<double>::from_shape({n, c, ho, wo});
    for (std::size_t b = 0; b < n; ++b)
        for (std::size_t ch = 0; ch < c; ++ch)
            for (std::size_t i = 0; i < ho; ++i)
                for (std::size_t j = 0; j < wo; ++j) {
                    double best = -std::numeric_limits<double>::infinity(), sum = 0;
                    std::size_t count = 0;
                    for (std::size_t p = 0; p < o.kernel[0]; ++p)
                        for (std::size_t q = 0; q < o.kernel[1]; ++q) {
                            long ih = long(i * sh + p) - long(o.padding[0]), iw = long(j * sw + q) - long(o.padding[1]);
                            if (ih < 0 || iw < 0 || ih >= long(h) || iw >= long(w)) continue;
                            double v = x(b, ch, std::size_t(ih), std::size_t(iw));
                            best = std::max(best, v);
                            sum += v;
                            ++count;
                        }
                    y(b, ch, i, j) = max ? best : sum / double(o.count_include_pad ? o.kernel[0] * o.kernel[1] : count);
                }
    return y;
}

struct ConvCase {
    Shape x, w;
    ad::Conv2dOptions options;
};

const ConvCase conv_cases[] = {
    {{2, 3, 5, 5}, {4, 3, 3, 3}, {}},
    {{1, 2, 6, 5}, {3, 2, 2, 3}, {{2, 1}, {1, 2}, {1, 1}, 1}},
    {{2, 4, 7, 6}, {6, 2, 3, 2}, {{1, 2}, {2, 0}, {2, 1}, 2}},
    {{1, 3, 4, 4}, {3, 1, 1, 1}, {{1, 1}, {0, 0}, {1, 1}, 3}},
    {{3, 1, 3, 8}, {2, 1, 3, 3}, {{3, 3}, {1, 1}, {1, 3}, 1}},
};

}  // namespace

TEST_CASE("conv2d: forward matches the definition over strides, paddings, dilations and groups, with and without bias") {
    std::uint64_t seed = 1;
    for (const auto& c : conv_cases) {
        Array<double> x = ad::test::uniform(c.x, ++seed), w = ad::test::uniform(c.w, ++seed), b = ad::test::uniform({c.w[0]}, ++seed);
        INFO(fmt::format("x {} w {}", ad::shape_string(c.x), ad::shape_string(c.w)));
        CHECK(ad::test::matches(ad::conv2d(ad::constant(x), ad::constant(w), ad::constant(b), c.options).value(),
                                conv2d_reference(x, w, b, c.options)));
        CHECK(ad::test::matches(ad::conv2d(ad::constant(x), ad::constant(w), Var<double>(), c.options).value(),
                                conv2d_reference(x, w, Array<double>(), c.options)));
    }
}

TEST_CASE("conv2d and conv1d: gradients of input, weight and bias match finite differences") {
    std::uint64_t seed = 50;
    for (const auto& c : conv_cases) {
        Array<double> x = ad::test::uniform(c.x, ++seed), w = ad::test::uniform(c.w, ++seed), b = ad::test::uniform({c.w[0]}, ++seed);
        INFO(fmt::format("x {} w {}", ad::shape_string(c.x), ad::shape_string(c.w)));
        auto options = c.options;
        CHECK_GRADCHECK([options](const Vars& v) { return ad::conv2d(v[0], v[1], v[2], options); }, (std::vector<Array<double>>{x, w, b}));
    }
    Array<double> x = ad::test::uniform({2, 4, 9}, 3), w = ad::test::uniform({2, 2, 3}, 4), b = ad::test::uniform({2}, 5);
    CHECK_GRADCHECK([](const Vars& v) { return ad::conv1d(v[0], v[1], v[2], {2, 1, 2, 2}); }, (std::vector<Array<double>>{x, w, b}));
}

TEST_CASE("conv1d: the convolution over one axis, by its definition") {
    Array<double> x = ad::test::uniform({2, 2, 7}, 7), w = ad::test::uniform({3, 2, 3}, 8);
    auto y = ad::conv1d(ad::constant(x), ad::constant(w), Var<double>(), {2, 1, 1, 1}).value();
    REQUIRE(y.shape() == Array<double>::shape_type{2, 3, 4});
    for (std::size_t b = 0; b < 2; ++b)
        for (std::size_t o = 0; o < 3; ++o)
            for (std::size_t t = 0; t < 4; ++t) {
                double s = 0;
                for (std::size_t c = 0; c < 2; ++c)
                    for (std::size_t k = 0; k < 3; ++k) {
                        long i = long(2 * t + k) - 1;
                        if (i >= 0 && i < 7) s += w(o, c, k) * x(b, c, std::size_t(i));
                    }
                CHECK(y(b, o, t) == doctest::Approx(s).epsilon(1e-12));
            }
}

TEST_CASE("max_pool2d and avg_pool2d: PyTorch's output sizes whether or not sizes divide, values and gradients") {
    const ad::Pool2dOptions pools[] = {
        {{2, 2}, {0, 0}, {0, 0}, true},
        {{3, 3}, {2, 2}, {1, 1}, true},
        {{3, 2}, {1, 2}, {1, 0}, false},
        {{2, 3}, {3, 1}, {0, 1}, true},
    };
    std::uint64_t seed = 80;
    for (const auto& o : pools) {
        Array<double> x = ad::test::uniform({2, 2, 7, 6}, ++seed);
        INFO(fmt::format("kernel ({}, {}) stride ({}, {}) padding ({}, {})", o.kernel[0], o.kernel[1], o.stride[0], o.stride[1],
                         o.padding[0], o.padding[1]));
        CHECK(ad::test::matches(ad::max_pool2d(ad::constant(x), o).value(), pool_reference(x, o, true)));
        CHECK(ad::test::matches(ad::avg_pool2d(ad::constant(x), o).value(), pool_reference(x, o, false)));
        CHECK_GRADCHECK([o](const Vars& v) { return ad::max_pool2d(v[0], o); }, (std::vector<Array<double>>{x}));
        CHECK_GRADCHECK([o](const Vars& v) { return ad::avg_pool2d(v[0], o); }, (std::vector<Array<double>>{x}));
    }
}

TEST_CASE("max_pool2d: overlapping windows add their cotangents at a shared maximum; ties go to the first; NaN propagates") {
    ad::Tape tape;
    auto x = ad::param(Array<double>{{{{1.0, 9.0, 2.0}, {3.0, 4.0, 5.0}, {6.0, 7.0, 8.0}}}});
    ad::sum(ad::max_pool2d(x, {{2, 2}, {1, 1}, {0, 0}, true})).backward();  // windows' maxima: 9, 9, 7, 8
    CHECK(x.grad() == Array<double>{{{{0.0, 2.0, 0.0}, {0.0, 0.0, 0.0}, {0.0, 1.0, 1.0}}}});
    auto ties = ad::param(Array<double>{{{{5.0, 5.0}, {5.0, 5.0}}}});
    ad::sum(ad::max_pool2d(ties, {{2, 2}, {0, 0}, {0, 0}, true})).backward();
    CHECK(ties.grad() == Array<double>{{{{1.0, 0.0}, {0.0, 0.0}}}});
    auto nan = ad::max_pool2d(ad::constant(Array<double>{{{{1.0, std::nan("")}, {3.0, 2.0}}}}), {{2, 2}, {0, 0}, {0, 0}, true});
    CHECK(std::isnan(nan.value()(0, 0, 0, 0)));
}

TEST_CASE("convolution and pooling: bad shapes and arguments are typed errors naming the op and the shapes; the tape is unchanged") {
    ad::Tape tape;
    auto x = ad::param(Array<double>::from_shape({2, 4, 8, 8}));
    std::size_t before = tape.size();
    CHECK_THROWS_WITH_AS(ad::conv2d(x, ad::param(Array<double>::from_shape({8, 3, 3, 3}))),
                         "conv2d: weight (8, 3, 3, 3) expects 3 input channels per group, input (2, 4, 8, 8) has 4 (groups 1)",
                         ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::conv2d(x, ad::param(Array<double>::from_shape({6, 1, 3, 3})), Var<double>(), {{1, 1}, {0, 0}, {1, 1}, 3}),
                         "conv2d: groups 3 must divide the 4 input channels of (2, 4, 8, 8) and the 6 output channels of weight (6, 1, 3, 3)",
                         ad::value_error);
    CHECK_THROWS_WITH_AS(ad::conv2d(x, ad::param(Array<double>::from_shape({2, 4, 5, 5})), Var<double>(), {{1, 1}, {0, 0}, {3, 3}, 1}),
                         "conv2d: the kernel (5, 5) (dilated to (13, 13)) is larger than the input (2, 4, 8, 8) padded by (0, 0)",
                         ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::conv2d(x, ad::param(Array<double>::from_shape({2, 4, 3, 3})), ad::param(Array<double>{1.0})),
                         "conv2d: bias (1,) does not match the 2 output channels of weight (2, 4, 3, 3)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::conv2d(ad::param(Array<double>::from_shape({4, 8, 8})), ad::param(Array<double>::from_shape({2, 4, 3, 3}))),
                         "conv2d: the input (4, 8, 8) is not (N, C, H, W)", ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::conv2d(x, ad::param(Array<double>::from_shape({2, 4, 3, 3})), Var<double>(), {{0, 1}, {0, 0}, {1, 1}, 1}),
                         "conv2d: stride (0, 1) and dilation (1, 1) must be positive", ad::value_error);
    CHECK_THROWS_WITH_AS(ad::conv1d(ad::param(Array<double>::from_shape({2, 3, 5})), ad::param(Array<double>::from_shape({2, 2, 3}))),
                         doctest::Contains("conv1d (as conv2d over a height of 1) of input (2, 3, 5) and weight (2, 2, 3)"), ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::max_pool2d(x, {{3, 3}, {1, 1}, {2, 2}, true}), "max_pool2d: padding (2, 2) is more than half the kernel (3, 3)",
                         ad::value_error);
    CHECK_THROWS_WITH_AS(ad::avg_pool2d(x, {{9, 9}, {1, 1}, {0, 0}, true}),
                         "avg_pool2d: the window (9, 9) is larger than the input (2, 4, 8, 8) padded by (0, 0)", ad::shape_error);
    CHECK(tape.size() == before);
}

TEST_CASE("convolution and pooling: float gradients agree with double ones") {
    auto gradients = [](const auto& x0, const auto& w0) {
        ad::Tape tape;
        auto x = ad::param(x0);
        auto w = ad::param(w0);
        auto y = ad::conv2d(x, w, Var<typename std::decay_t<decltype(x0)>::value_type>(), {{1, 1}, {1, 1}, {1, 1}, 1});
        auto z = ad::max_pool2d(ad::tanh(y), {{2, 2}, {0, 0}, {0, 0}, true}) + ad::avg_pool2d(y, {{2, 2}, {0, 0}, {0, 0}, true});
        ad::sum(ad::square(z)).backward();
        return std::vector{x.grad(), w.grad()};
    };
    Array<float> xf = xt::cast<float>(ad::test::uniform({2, 2, 4, 4}, 91)), wf = xt::cast<float>(ad::test::uniform({3, 2, 3, 3}, 92));
    auto f = gradients(xf, wf);
    auto d = gradients(Array<double>(xt::cast<double>(xf)), Array<double>(xt::cast<double>(wf)));
    ad::test::check_float_matches_double(f, d);
}
