#include "nn_test_support.hpp"

#include <cmath>
#include <filesystem>
#include <memory>
#include <string>

namespace {

using namespace ad;
namespace fs = std::filesystem;


/// Per-channel mean and variance (biased) of x (N, C, ...) over every axis but 1, by loops.
struct ChannelStats {
    Array<double> mean, var;
};
ChannelStats channel_stats(const Array<double>& x) {
    const std::size_t c = x.shape()[1];
    Array<double> mean = xt::zeros<double>({c}), var = xt::zeros<double>({c});
    Array<double> count = xt::zeros<double>({c});
    for (std::size_t i = 0; i < x.size(); ++i) {
        std::size_t ch = test::unravel(i, shape_of(x))[1];
        mean(ch) += x.flat(i);
        count(ch) += 1;
    }
    mean /= count;
    for (std::size_t i = 0; i < x.size(); ++i) {
        std::size_t ch = test::unravel(i, shape_of(x))[1];
        var(ch) += (x.flat(i) - mean(ch)) * (x.flat(i) - mean(ch));
    }
    var /= count;
    return {mean, var};
}

/// (x - mean_c) / sqrt(var_c + eps) * w_c + b_c, by loops.
Array<double> normalize(const Array<double>& x, const Array<double>& mean, const Array<double>& var,
                        const Array<double>& w, const Array<double>& b, double eps = 1e-5) {
    Array<double> y = x;
    for (std::size_t i = 0; i < x.size(); ++i) {
        std::size_t ch = test::unravel(i, shape_of(x))[1];
        y.flat(i) = (x.flat(i) - mean(ch)) / std::sqrt(var(ch) + eps) * w(ch) + b(ch);
    }
    return y;
}

TEST_CASE("BatchNorm: PyTorch's parameters, buffers, initial values and description") {
    nn::BatchNorm2d<double> bn(3);
    auto params = bn.named_parameters();
    REQUIRE(params.size() == 2);
    CHECK(params[0].name == "weight");
    CHECK(params[0].var.value() == Array<double>{1, 1, 1});
    CHECK(params[1].name == "bias");
    CHECK(params[1].var.value() == Array<double>{0, 0, 0});
    auto buffers = bn.named_buffers();
    REQUIRE(buffers.size() == 3);
    CHECK(buffers[0].name == "running_mean");
    CHECK(*buffers[0].value == Array<double>{0, 0, 0});
    CHECK(buffers[1].name == "running_var");
    CHECK(*buffers[1].value == Array<double>{1, 1, 1});
    CHECK(buffers[2].name == "num_batches_tracked");
    CHECK(buffers[2].value->dimension() == 0);
    CHECK((*buffers[2].value)() == 0);
    CHECK(bn.describe() == "BatchNorm2d(3, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)");

    nn::BatchNorm1d<float> plain(
        nn::BatchNormOptions(4).affine(false).track_running_stats(false).eps(1e-3).momentum(std::nullopt));
    CHECK(plain.named_parameters().empty());
    CHECK(plain.named_buffers().empty());
    CHECK(!plain.weight().defined());
    CHECK(plain.describe() == "BatchNorm1d(4, eps=0.001, momentum=None, affine=False, track_running_stats=False)");
    CHECK_THROWS_AS(nn::BatchNorm2d<double>(0), value_error);
}

TEST_CASE("BatchNorm2d: training normalises with the batch's statistics and updates the running ones") {
    nn::BatchNorm2d<double> bn(3);
    bn.weight().mutable_value() = Array<double>{1.5, -0.5, 2.0};
    bn.bias().mutable_value() = Array<double>{0.1, 0.2, -0.3};
    Array<double> x1 = test::uniform({4, 3, 2, 5}, 1, -2, 3);
    Array<double> x2 = test::uniform({4, 3, 2, 5}, 2, -1, 1);
    const ChannelStats s1 = channel_stats(x1), s2 = channel_stats(x2);
    const double n = 4 * 2 * 5;

    auto y = bn(x1);
    CHECK(test::matches(y.value(), normalize(x1, s1.mean, s1.var, bn.weight().value(), bn.bias().value())));
    // PyTorch: running = (1 - momentum) running + momentum batch, with the unbiased variance.
    Array<double> mean1 = 0.1 * s1.mean;
    Array<double> var1 = 0.9 + 0.1 * s1.var * (n / (n - 1));
    CHECK(test::matches(*bn.running_mean(), mean1));
    CHECK(test::matches(*bn.running_var(), var1));
    CHECK((*bn.num_batches_tracked())() == 1);

    (void)bn(x2);
    CHECK(test::matches(*bn.running_mean(), Array<double>(0.9 * mean1 + 0.1 * s2.mean)));
    CHECK(test::matches(*bn.running_var(), Array<double>(0.9 * var1 + 0.1 * s2.var * (n / (n - 1)))));
    CHECK((*bn.num_batches_tracked())() == 2);
    // The layer updates its registered buffers, not copies of them.
    CHECK(bn.named_buffers()[0].value == bn.running_mean());
    CHECK(test::matches(*bn.named_buffers()[0].value, *bn.running_mean()));

    // Eval: the running statistics, and nothing is updated.
    bn.eval();
    Array<double> rm = *bn.running_mean(), rv = *bn.running_var();
    auto z = bn(x1);
    CHECK(test::matches(z.value(), normalize(x1, rm, rv, bn.weight().value(), bn.bias().value())));
    CHECK(!test::matches(z.value(), y.value()));
    CHECK(*bn.running_mean() == rm);
    CHECK(*bn.running_var() == rv);
    CHECK((*bn.num_batches_tracked())() == 2);
}

TEST_CASE("BatchNorm: momentum None is the cumulative average, and without running stats eval uses the batch") {
    nn::BatchNorm1d<double> cumulative(nn::BatchNormOptions(2).momentum(std::nullopt));
    Array<double> x1 = test::uniform({5, 2}, 3), x2 = test::uniform({5, 2}, 4), x3 = test::uniform({5, 2}, 5);
    (void)cumulative(x1);
    (void)cumulative(x2);
    (void)cumulative(x3);
    Array<double> want = (channel_stats(x1).mean + channel_stats(x2).mean + channel_stats(x3).mean) / 3.0;
    CHECK(test::matches(*cumulative.running_mean(), want));
    CHECK((*cumulative.num_batches_tracked())() == 3);

    nn::BatchNorm1d<double> untracked(nn::BatchNormOptions(2).track_running_stats(false));
    untracked.eval();
    const ChannelStats s = channel_stats(x1);
    CHECK(test::matches(untracked(x1).value(), normalize(x1, s.mean, s.var, Array<double>{1, 1}, Array<double>{0, 0})));
}

TEST_CASE("BatchNorm1d: (N, C) and (N, C, L) inputs, gradients through the batch statistics") {
    auto bn = std::make_shared<nn::BatchNorm1d<double>>(3);
    bn->weight().mutable_value() = Array<double>{0.5, 1.5, -1.0};
    bn->bias().mutable_value() = Array<double>{0.0, 0.3, 0.7};
    Array<double> x2d = test::uniform({6, 3}, 6);
    Array<double> x3d = test::uniform({2, 3, 4}, 7);
    const ChannelStats a = channel_stats(x2d), b = channel_stats(x3d);
    CHECK(test::matches((*bn)(x2d).value(), normalize(x2d, a.mean, a.var, bn->weight().value(), bn->bias().value())));
    CHECK(test::matches((*bn)(x3d).value(), normalize(x3d, b.mean, b.var, bn->weight().value(), bn->bias().value())));

    CHECK_GRADCHECK([bn](const test::Vars& in) { return bn->forward(in[0]); }, std::vector<Array<double>>{x3d});
    Array<double> v = test::uniform({2, 3, 4}, 8);
    Tape tape;
    auto loss = [&] { return sum(bn->forward(constant(x3d)) * constant(v)); };
    auto numeric = test::numeric_parameter_grads(*bn, [&] {
        NoGrad no_grad;
        return loss().item();
    });
    bn->zero_grad();
    loss().backward();
    CHECK(test::max_abs_diff(bn->weight().grad(), numeric[0]) < 1e-8);
    CHECK(test::max_abs_diff(bn->bias().grad(), numeric[1]) < 1e-8);

    // Eval mode: an affine map of x per channel, its gradient too.
    bn->eval();
    CHECK_GRADCHECK([bn](const test::Vars& in) { return bn->forward(in[0]); }, std::vector<Array<double>>{x2d});
}

TEST_CASE("BatchNorm: eval after training uses the running statistics, which round-trip through a checkpoint") {
    test::TemporaryFolder folder("batch_norm");
    nn::BatchNorm2d<double> trained(2);
    trained.weight().mutable_value() = Array<double>{1.2, 0.8};
    for (std::uint64_t step = 0; step < 5; ++step) (void)trained(test::uniform({3, 2, 4, 4}, 10 + step, -1, 3));
    CHECK((*trained.num_batches_tracked())() == 5);
    trained.eval();
    Array<double> x = test::uniform({2, 2, 3, 3}, 20);
    Array<double> out = trained(x).value();
    CHECK(test::matches(out, normalize(x, *trained.running_mean(), *trained.running_var(), trained.weight().value(),
                                       trained.bias().value())));
    nn::save_parameters(trained, folder.path / "checkpoint");
    for (const char* name : {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}) {
        CHECK(fs::exists(folder.path / "checkpoint" / (std::string(name) + ".npy")));
    }

    nn::BatchNorm2d<double> fresh(2);
    fresh.eval();
    CHECK(!test::matches(fresh(x).value(), out));
    nn::load_parameters(fresh, folder.path / "checkpoint");
    CHECK(*fresh.running_mean() == *trained.running_mean());
    CHECK(*fresh.running_var() == *trained.running_var());
    CHECK((*fresh.num_batches_tracked())() == 5);
    CHECK(fresh(x).value() == out);
    // Training goes on counting from the loaded count.
    fresh.train();
    (void)fresh(x);
    CHECK((*fresh.num_batches_tracked())() == 6);
}

TEST_CASE("BatchNorm: bad input is a clear error that records and updates nothing") {
    nn::BatchNorm2d<double> bn2(3);
    nn::BatchNorm1d<double> bn1(3);
    Tape tape;
    CHECK_THROWS_WITH_AS(bn2(Array<double>(xt::zeros<double>({2, 3, 4}))),
                         "BatchNorm2d(3, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True): input has "
                         "shape (2, 3, 4); expected (N, 3, H, W)",
                         shape_error);
    CHECK_THROWS_WITH_AS(bn2(Array<double>(xt::zeros<double>({2, 4, 2, 2}))),
                         doctest::Contains("expected (N, 3, H, W)"), shape_error);
    CHECK_THROWS_WITH_AS(bn1(Array<double>(xt::zeros<double>({2, 3, 2, 2}))),
                         doctest::Contains("BatchNorm1d(3, eps=1e-05, momentum=0.1, affine=True, "
                                           "track_running_stats=True): input has shape (2, 3, 2, 2); expected (N, 3) "
                                           "or (N, 3, L)"),
                         shape_error);
    CHECK_THROWS_AS(bn1(Array<double>{1.0, 2.0, 3.0}), shape_error);
    CHECK_THROWS_WITH_AS(bn1(Array<double>(xt::zeros<double>({1, 3}))),
                         doctest::Contains("input (1, 3) has one value per channel"), value_error);
    CHECK(tape.size() == 0);
    CHECK((*bn1.num_batches_tracked())() == 0);
    CHECK(*bn1.running_var() == Array<double>{1, 1, 1});
    // In eval mode a single sample is fine: the running statistics normalise it.
    bn1.eval();
    CHECK(bn1(Array<double>(xt::zeros<double>({1, 3}))).shape() == Shape{1, 3});
}

TEST_CASE("BatchNorm2d: float follows double") {
    nn::BatchNorm2d<double> d(2);
    nn::BatchNorm2d<float> f(2);
    Array<double> x = test::uniform({3, 2, 2, 2}, 30);
    Array<double> v = test::uniform({3, 2, 2, 2}, 31);
    Tape tape;
    sum(d(x) * constant(v)).backward();
    sum(f(Array<float>(xt::cast<float>(x))) * constant(Array<float>(xt::cast<float>(v)))).backward();
    CHECK(test::float_matches_double(f.weight().grad(), d.weight().grad()));
    CHECK(test::float_matches_double(*f.running_var(), *d.running_var()));
}

}  // namespace
