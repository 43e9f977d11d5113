#include "nn_test_support.hpp"

#include <cmath>
#include <limits>
#include <memory>
#include <string>

namespace {

using namespace ad;

/// Conv2d by scalar loops, PyTorch's definition (zero padding, groups).
Array<double> conv2d_reference(const Array<double>& x, const Array<double>& w, const Array<double>* b, Size2 stride,
                               Size2 padding, Size2 dilation, long groups) {
    const long n = long(x.shape()[0]), c = long(x.shape()[1]), h = long(x.shape()[2]), wd = long(x.shape()[3]);
    const long o = long(w.shape()[0]), cg = long(w.shape()[1]), kh = long(w.shape()[2]), kw = long(w.shape()[3]);
    const long oh = (h + 2 * padding.h - dilation.h * (kh - 1) - 1) / stride.h + 1;
    const long ow = (wd + 2 * padding.w - dilation.w * (kw - 1) - 1) / stride.w + 1;
    Array<double> y = xt::zeros<double>({std::size_t(n), std::size_t(o), std::size_t(oh), std::size_t(ow)});
    const long og = o / groups;
    (void)c;
    for (long s = 0; s < n; ++s)
        for (long k = 0; k < o; ++k)
            for (long p = 0; p < oh; ++p)
                for (long q = 0; q < ow; ++q) {
                    double acc = b ? (*b)(k) : 0.0;
                    const long g = k / og;
                    for (long ci = 0; ci < cg; ++ci)
                        for (long i = 0; i < kh; ++i)
                            for (long j = 0; j < kw; ++j) {
                                long r = p * stride.h - padding.h + i * dilation.h;
                                long t = q * stride.w - padding.w + j * dilation.w;
                                if (r < 0 || r >= h || t < 0 || t >= wd) continue;
                                acc += w(k, ci, i, j) * x(s, g * cg + ci, r, t);
                            }
                    y(s, k, p, q) = acc;
                }
    return y;
}

/// Max or average pooling by scalar loops; `average_all` divides by kh kw (count_include_pad).
Array<double> pool_reference(const Array<double>& x, Size2 k, Size2 stride, Size2 padding, bool max, bool average_all) {
    const long n = long(x.shape()[0]), c = long(x.shape()[1]), h = long(x.shape()[2]), w = long(x.shape()[3]);
    const long oh = (h + 2 * padding.h - k.h) / stride.h + 1, ow = (w + 2 * padding.w - k.w) / stride.w + 1;
    Array<double> y = xt::zeros<double>({std::size_t(n), std::size_t(c), std::size_t(oh), std::size_t(ow)});
    for (long s = 0; s < n; ++s)
        for (long ch = 0; ch < c; ++ch)
            for (long p = 0; p < oh; ++p)
                for (long q = 0; q < ow; ++q) {
                    double best = -std::numeric_limits<double>::infinity(), sum = 0;
                    long count = 0;
                    for (long i = 0; i < k.h; ++i)
                        for (long j = 0; j < k.w; ++j) {
                            long r = p * stride.h - padding.h + i, t = q * stride.w - padding.w + j;
                            if (r < 0 || r >= h || t < 0 || t >= w) continue;
                            best = std::max(best, x(s, ch, r, t));
                            sum += x(s, ch, r, t);
                            ++count;
                        }
                    y(s, ch, p, q) = max ? best : sum / double(average_all ? k.h * k.w : count);
                }
    return y;
}

TEST_CASE("Conv2d: PyTorch's parameter names, shapes, description and initialisation") {
    nn::Conv2d<double> conv(nn::Conv2dOptions(4, 6, {3, 2}).groups(2).seed(7));
    auto params = conv.named_parameters();
    REQUIRE(params.size() == 2);
    CHECK(params[0].name == "weight");
    CHECK(params[0].var.shape() == Shape{6, 2, 3, 2});  // (O, C/groups, kh, kw)
    CHECK(params[1].name == "bias");
    CHECK(params[1].var.shape() == Shape{6});
    CHECK(conv.describe() == "Conv2d(4, 6, kernel_size=(3, 2), stride=(1, 1), groups=2)");
    CHECK(conv.options().groups() == 2);

    // kaiming_uniform(a = sqrt 5) and PyTorch's bias rule: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = 2 * 3 * 2.
    const double bound = 1 / std::sqrt(12.0);
    CHECK(test::max_abs(conv.weight().value()) <= bound);
    CHECK(test::max_abs(conv.weight().value()) > bound / 2);
    CHECK(test::max_abs(conv.bias().value()) <= bound);
    CHECK(xt::amin(conv.weight().value())() != xt::amax(conv.weight().value())());
    CHECK(xt::amin(conv.bias().value())() != xt::amax(conv.bias().value())());
    // Weight and bias are different draws.
    CHECK(conv.bias().value()(0) != conv.weight().value().flat(0));

    nn::Conv2d<double> same(nn::Conv2dOptions(4, 6, {3, 2}).groups(2).seed(7));
    nn::Conv2d<double> other(nn::Conv2dOptions(4, 6, {3, 2}).groups(2).seed(8));
    CHECK(same.weight().value() == conv.weight().value());
    CHECK(same.bias().value() == conv.bias().value());
    CHECK(other.weight().value() != conv.weight().value());
    nn::Conv2d<float> as_float(nn::Conv2dOptions(4, 6, {3, 2}).groups(2).seed(7));
    for (std::size_t i = 0; i < conv.weight().value().size(); ++i) {
        CHECK(as_float.weight().value().flat(i) == static_cast<float>(conv.weight().value().flat(i)));
    }

    nn::Conv2d<double> no_bias(nn::Conv2dOptions(1, 8, 3).bias(false).padding(1).stride(2).dilation({1, 2}));
    CHECK(no_bias.named_parameters().size() == 1);
    CHECK(!no_bias.bias().defined());
    CHECK(no_bias.describe() ==
          "Conv2d(1, 8, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), dilation=(1, 2), bias=False)");
    nn::Conv2d<double> short_form(1, 8, 3);
    CHECK(short_form.weight().shape() == Shape{8, 1, 3, 3});
    CHECK(short_form.describe() == "Conv2d(1, 8, kernel_size=(3, 3), stride=(1, 1))");
}

TEST_CASE("Conv2d: forward equals the convolution by loops, and a hand-computed case") {
    nn::Conv2d<double> conv(nn::Conv2dOptions(4, 6, {3, 2}).stride({2, 1}).padding({1, 2}).dilation({1, 2}).groups(2));
    Array<double> x = test::uniform({2, 4, 5, 6}, 1);
    Array<double> b = conv.bias().value();
    Array<double> want = conv2d_reference(x, conv.weight().value(), &b, {2, 1}, {1, 2}, {1, 2}, 2);
    auto y = conv(x);
    CHECK(y.shape() == Shape{2, 6, 3, 8});
    CHECK(test::matches(y.value(), want));

    // Ones through a 2x2 kernel of ones plus 0.5: every window sums four ones.
    nn::Conv2d<double> ones(1, 1, 2);
    ones.weight().mutable_value() = xt::ones<double>({1, 1, 2, 2});
    ones.bias().mutable_value() = Array<double>{0.5};
    auto z = ones(Array<double>(xt::ones<double>({1, 1, 3, 3})));
    CHECK(z.value() == Array<double>(xt::full_like(xt::zeros<double>({1, 1, 2, 2}), 4.5)));
}

TEST_CASE("Conv2d: gradients of input, weight and bias against finite differences") {
    auto conv = std::make_shared<nn::Conv2d<double>>(nn::Conv2dOptions(2, 4, 3).padding(1).stride(2).groups(2).seed(3));
    Array<double> x = test::uniform({2, 2, 5, 4}, 4);
    Tape tape;
    CHECK_GRADCHECK([conv](const test::Vars& in) { return conv->forward(in[0]); }, std::vector<Array<double>>{x});

    Array<double> v = test::uniform({2, 4, 3, 2}, 5);
    auto loss = [&] { return sum(conv->forward(constant(x)) * constant(v)); };
    auto numeric = test::numeric_parameter_grads(*conv, [&] {
        NoGrad no_grad;
        return loss().item();
    });
    conv->zero_grad();
    loss().backward();
    CHECK(test::max_abs_diff(conv->weight().grad(), numeric[0]) < 1e-8);
    CHECK(test::max_abs_diff(conv->bias().grad(), numeric[1]) < 1e-8);

    // float follows double.
    nn::Conv2d<float> as_float(nn::Conv2dOptions(2, 4, 3).padding(1).stride(2).groups(2).seed(3));
    sum(as_float(Array<float>(xt::cast<float>(x))) * constant(Array<float>(xt::cast<float>(v)))).backward();
    CHECK(test::float_matches_double(as_float.weight().grad(), conv->weight().grad()));
    CHECK(test::float_matches_double(as_float.bias().grad(), conv->bias().grad()));
}

TEST_CASE("Conv2d: bad input and options are clear errors that record nothing") {
    nn::Conv2d<double> conv(nn::Conv2dOptions(1, 8, 3));
    Tape tape;
    CHECK_THROWS_WITH_AS(conv(Array<double>(xt::zeros<double>({2, 3, 8, 8}))),
                         "Conv2d(1, 8, kernel_size=(3, 3), stride=(1, 1)): input has shape (2, 3, 8, 8); expected "
                         "(N, 1, H, W)",
                         shape_error);
    CHECK_THROWS_WITH_AS(conv(Array<double>(xt::zeros<double>({1, 8, 8}))), doctest::Contains("expected (N, 1, H, W)"),
                         shape_error);
    CHECK_THROWS_WITH_AS(conv(Array<double>(xt::zeros<double>({1, 1, 2, 8}))),
                         doctest::Contains("Conv2d(1, 8, kernel_size=(3, 3), stride=(1, 1)): input (1, 1, 2, 8) is "
                                           "smaller than the dilated kernel (3, 3)"),
                         shape_error);
    CHECK(tape.size() == 0);
    CHECK_THROWS_WITH_AS(nn::Conv2d<double>(nn::Conv2dOptions(3, 4, 3).groups(2)),
                         doctest::Contains("groups 2 must divide in_channels 3 and out_channels 4"), value_error);
    CHECK_THROWS_AS(nn::Conv2d<double>(nn::Conv2dOptions(1, 4, 0)), value_error);
    CHECK_THROWS_AS(nn::Conv2d<double>(nn::Conv2dOptions(1, 4, 3).stride(0)), value_error);
    CHECK_THROWS_AS(nn::Conv2d<double>(nn::Conv2dOptions(1, 4, 3).padding(-1)), value_error);
}

TEST_CASE("Conv1d: shapes, description, forward as a 2-D convolution of height 1, gradients") {
    auto conv =
        std::make_shared<nn::Conv1d<double>>(nn::Conv1dOptions(4, 6, 3).stride(2).padding(1).dilation(2).groups(2));
    auto params = conv->named_parameters();
    REQUIRE(params.size() == 2);
    CHECK(params[0].name == "weight");
    CHECK(params[0].var.shape() == Shape{6, 2, 3});
    CHECK(params[1].var.shape() == Shape{6});
    CHECK(conv->describe() == "Conv1d(4, 6, kernel_size=(3,), stride=(2,), padding=(1,), dilation=(2,), groups=2)");
    CHECK(test::max_abs(conv->weight().value()) <= 1 / std::sqrt(6.0));
    CHECK(test::max_abs(conv->weight().value()) > 0.5 / std::sqrt(6.0));
    CHECK(nn::Conv1d<double>(1, 2, 3).describe() == "Conv1d(1, 2, kernel_size=(3,), stride=(1,))");

    Array<double> x = test::uniform({2, 4, 9}, 6);
    Array<double> w = conv->weight().value(), b = conv->bias().value();
    Array<double> x4 = xt::reshape_view(x, {2, 4, 1, 9});
    Array<double> w4 = xt::reshape_view(w, {6, 2, 1, 3});
    Array<double> want = conv2d_reference(x4, w4, &b, {1, 2}, {0, 1}, {1, 2}, 2);
    auto y = (*conv)(x);
    CHECK(y.shape() == Shape{2, 6, 4});
    CHECK(test::matches(y.value(), Array<double>(xt::reshape_view(want, {2, 6, 4}))));

    CHECK_GRADCHECK([conv](const test::Vars& in) { return conv->forward(in[0]); }, std::vector<Array<double>>{x});
    Tape tape;
    CHECK_THROWS_WITH_AS((*conv)(Array<double>(xt::zeros<double>({2, 4, 3, 3}))),
                         doctest::Contains("input has shape (2, 4, 3, 3); expected (N, 4, L)"), shape_error);
    CHECK_THROWS_WITH_AS((*conv)(Array<double>(xt::zeros<double>({2, 4, 2}))),
                         doctest::Contains("input (2, 4, 2) is shorter than the dilated kernel 5"), shape_error);
    CHECK(tape.size() == 0);
}

TEST_CASE("MaxPool2d and AvgPool2d: windows by loops, descriptions, gradients, errors") {
    Array<double> x = test::uniform({2, 3, 7, 6}, 8);
    nn::MaxPool2d<double> max2(2);
    CHECK(max2.named_parameters().empty());
    CHECK(max2.describe() == "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)");
    CHECK(test::matches(max2(x).value(), pool_reference(x, 2, 2, 0, true, false)));

    nn::MaxPool2d<double> max3(nn::MaxPool2dOptions({3, 2}).stride({2, 1}).padding(1));
    CHECK(max3.describe() == "MaxPool2d(kernel_size=(3, 2), stride=(2, 1), padding=1, dilation=1, ceil_mode=False)");
    CHECK(test::matches(max3(x).value(), pool_reference(x, {3, 2}, {2, 1}, 1, true, false)));

    nn::AvgPool2d<double> avg(nn::AvgPool2dOptions(3).stride(2).padding(1));
    CHECK(avg.describe() == "AvgPool2d(kernel_size=3, stride=2, padding=1)");
    CHECK(test::matches(avg(x).value(), pool_reference(x, 3, 2, 1, false, true)));
    nn::AvgPool2d<double> avg_real(nn::AvgPool2dOptions(3).stride(2).padding(1).count_include_pad(false));
    CHECK(avg_real.describe() == "AvgPool2d(kernel_size=3, stride=2, padding=1, count_include_pad=False)");
    CHECK(test::matches(avg_real(x).value(), pool_reference(x, 3, 2, 1, false, false)));
    // A hand-computed window: the mean of 1, 2, 3, 4.
    nn::AvgPool2d<double> avg2(2);
    Array<double> window{1.0, 2.0, 3.0, 4.0};
    window.reshape({1, 1, 2, 2});
    auto mean = avg2(window);
    CHECK(mean.shape() == Shape{1, 1, 1, 1});
    CHECK(mean.value().flat(0) == 2.5);

    auto pool = std::make_shared<nn::MaxPool2d<double>>(nn::MaxPool2dOptions(3).stride(2).padding(1));
    auto mean_pool = std::make_shared<nn::AvgPool2d<double>>(nn::AvgPool2dOptions(3).stride(2).padding(1));
    Array<double> small = test::uniform({1, 2, 5, 4}, 9);  // distinct values: no ties at the max
    CHECK_GRADCHECK([pool](const test::Vars& in) { return pool->forward(in[0]); }, std::vector<Array<double>>{small});
    CHECK_GRADCHECK([mean_pool](const test::Vars& in) { return mean_pool->forward(in[0]); },
                    std::vector<Array<double>>{small});

    Tape tape;
    CHECK_THROWS_WITH_AS(max2(Array<double>(xt::zeros<double>({2, 6}))),
                         "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False): input has shape "
                         "(2, 6); expected (N, C, H, W) or (C, H, W)",
                         shape_error);
    CHECK_THROWS_WITH_AS(nn::AvgPool2d<double>(3)(Array<double>(xt::zeros<double>({1, 1, 2, 5}))),
                         doctest::Contains("AvgPool2d(kernel_size=3, stride=3, padding=0): input (1, 1, 2, 5) is "
                                           "smaller than the kernel (3, 3)"),
                         shape_error);
    CHECK(tape.size() == 0);
    CHECK_THROWS_WITH_AS(nn::MaxPool2d<double>(nn::MaxPool2dOptions(2).padding(2)),
                         doctest::Contains("padding must lie in [0, kernel_size / 2]"), value_error);
    CHECK_THROWS_AS(nn::AvgPool2d<double>(nn::AvgPool2dOptions(2).stride(0)), value_error);
}

TEST_CASE("Flatten: merges start_dim..end_dim in C order, negative dims count from the end") {
    Array<double> x = test::uniform({2, 3, 4, 5}, 10);
    nn::Flatten<double> flatten;
    CHECK(flatten.describe() == "Flatten(start_dim=1, end_dim=-1)");
    auto y = flatten(x);
    CHECK(y.shape() == Shape{2, 60});
    // Channel-major: element (n, c, h, w) lands at column c*20 + h*5 + w.
    CHECK(y.value()(1, 2 * 20 + 3 * 5 + 4) == x(1, 2, 3, 4));
    CHECK(y.value()(0, 1 * 20 + 0 * 5 + 2) == x(0, 1, 0, 2));
    CHECK(nn::Flatten<double>(0, -1)(x).shape() == Shape{120});
    CHECK(nn::Flatten<double>(-3, -2)(x).shape() == Shape{2, 12, 5});
    CHECK(nn::Flatten<double>(2, 2)(x).shape() == Shape{2, 3, 4, 5});
    CHECK(nn::Flatten<double>(0, 1)(x).shape() == Shape{6, 4, 5});
    CHECK(nn::Flatten<double>(0, -1)(Array<double>(2.5)).shape() == Shape{1});  // a 0-d input, as torch.flatten

    auto shared = std::make_shared<nn::Flatten<double>>(1, 2);
    CHECK_GRADCHECK([shared](const test::Vars& in) { return shared->forward(in[0]); },
                    std::vector<Array<double>>{test::uniform({2, 3, 2, 2}, 11)});

    Tape tape;
    CHECK_THROWS_WITH_AS(nn::Flatten<double>(2, 1)(x),
                         "Flatten(start_dim=2, end_dim=1): input has shape (2, 3, 4, 5); dims 2..1 must lie in [-4, 4) "
                         "in order",
                         shape_error);
    CHECK_THROWS_AS(nn::Flatten<double>(1, 4)(x), shape_error);
    CHECK_THROWS_AS(nn::Flatten<double>(-5, -1)(x), shape_error);
    CHECK_THROWS_AS(nn::Flatten<double>()(Array<double>{1.0, 2.0}), shape_error);  // start_dim 1 of a 1-D input
    CHECK(tape.size() == 0);
}

TEST_CASE("Conv2d, MaxPool2d, Flatten and Linear compose into a small CNN whose loss trains") {
    nn::Conv2d<double> conv(nn::Conv2dOptions(1, 4, 3).padding(1).seed(1));
    nn::MaxPool2d<double> pool(2);
    nn::Flatten<double> flatten;
    nn::Linear<double> fc(4 * 3 * 3, 2, 2);
    Array<double> x = test::uniform({3, 1, 6, 6}, 12);
    IndexArray labels{0, 1, 1};
    Tape tape;
    auto loss_of = [&] { return cross_entropy(fc(flatten(pool(relu(conv(x))))), labels); };
    double first = loss_of().item();
    for (int step = 0; step < 20; ++step) {
        conv.zero_grad();
        fc.zero_grad();
        loss_of().backward();
        tape.clear();
        for (auto* m : std::initializer_list<nn::Module<double>*>{&conv, &fc}) {
            for (auto& p : m->parameters()) p.mutable_value() -= 0.5 * p.grad();
        }
    }
    CHECK(loss_of().item() < first / 2);
}

}  // namespace
