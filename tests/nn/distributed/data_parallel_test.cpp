// DistributedDataParallel on every rank of the job: the same parameters as
// one process with the global batch, buckets that start during the sweep,
// no_sync, and failures that reach every rank instead of hanging them.

#include <cmath>
#include <memory>
#include <random>

#include <fmt/format.h>
#include <stdexcept>

#include "distributed_test_support.hpp"

namespace {

using ad::Array;
using ad::Var;
using Net = ad::nn::Sequential<double>;

/// Uniform in [-1, 1), the same on every rank for the same seed.
Array<double> uniform(const std::vector<std::size_t>& shape, std::uint64_t seed) {
    std::mt19937_64 engine(seed);
    std::uniform_real_distribution<double> dist(-1, 1);
    Array<double> a = xt::empty<double>(shape);
    for (auto& v : a) v = dist(engine);
    return a;
}

constexpr std::size_t samples = 48, global_batch = 12, inputs = 6, outputs = 3;

/// A small CNN-free model with several layers, so that small buckets split it.
std::shared_ptr<Net> make_net() {
    return std::make_shared<Net>(std::vector<ad::nn::ModulePtr<double>>{
        std::make_shared<ad::nn::Linear<double>>(inputs, 16, 1), std::make_shared<ad::nn::Tanh<double>>(),
        std::make_shared<ad::nn::Linear<double>>(16, 16, 2), std::make_shared<ad::nn::Tanh<double>>(),
        std::make_shared<ad::nn::Linear<double>>(16, outputs, 3)});
}

struct Data {
    Array<double> x = uniform({samples, inputs}, 11);
    Array<double> y = uniform({samples, outputs}, 12);
};

enum class Kind { sgd_momentum, adam };

std::unique_ptr<ad::nn::Optimizer<double>> make_optimizer(const ad::nn::Module<double>& model, Kind kind) {
    if (kind == Kind::sgd_momentum) return std::make_unique<ad::nn::SGD<double>>(model, ad::nn::SGDOptions{0.05, 0.9, 0});
    return std::make_unique<ad::nn::Adam<double>>(model, ad::nn::AdamOptions{0.01});
}

/// 20 steps on `ranks` ranks (1: one process, no wrapper) with global batch 12.
std::vector<Array<double>> train(Kind kind, bool distributed, ad::nn::DistributedOptions options = {}) {
    const Data data;
    auto net = make_net();
    const int rank = distributed ? ad::test::group().rank() : 0;
    const int size = distributed ? ad::test::group().size() : 1;
    if (rank != 0) {
        // The wrapper must replace this rank's start by rank 0's.
        for (auto& p : net->parameters()) p.mutable_value() += 0.5;
    }
    std::unique_ptr<ad::nn::DistributedDataParallel<double>> ddp;
    if (distributed) ddp = std::make_unique<ad::nn::DistributedDataParallel<double>>(net, ad::test::group(), options);
    auto optimizer = make_optimizer(*net, kind);
    ad::dist::DistributedSampler sampler(samples, rank, size, {true, 7, false});
    ad::nn::DataLoader<double> loader(data.x, data.y, global_batch / std::size_t(size), false);
    ad::Tape tape;
    std::size_t step = 0;
    for (std::size_t epoch = 0; step < 20; ++epoch) {
        sampler.set_epoch(epoch);
        for (const auto& batch : loader.epoch(sampler.indices())) {
            if (step == 20) break;
            tape.clear();
            optimizer->zero_grad();
            Var<double> out = distributed ? (*ddp)(batch.inputs) : (*net)(batch.inputs);
            ad::nn::mse(out, batch.targets).backward();
            optimizer->step();
            ++step;
        }
    }
    std::vector<Array<double>> values;
    for (const auto& p : net->parameters()) values.push_back(p.value());
    return values;
}

void check_equivalent(Kind kind, ad::nn::DistributedOptions options) {
    const auto alone = train(kind, false);
    const auto together = train(kind, true, options);
    REQUIRE(alone.size() == together.size());
    double largest = 0;
    for (std::size_t k = 0; k < alone.size(); ++k) {
        REQUIRE(alone[k].shape() == together[k].shape());
        largest = std::max(largest, double(xt::amax(xt::abs(alone[k] - together[k]))()));
        CHECK(ad::test::same_on_every_rank(together[k]));
    }
    CHECK(largest <= 1e-12);
    // Not trivially equal: training moved the parameters away from the start.
    const auto start = make_net()->parameters();
    CHECK(double(xt::amax(xt::abs(start[0].value() - together[0]))()) > 1e-3);
}

}  // namespace

TEST_CASE("DistributedDataParallel: N ranks with batch 12 / N end 20 SGD-with-momentum steps where one process with batch 12 does") {
    ad::nn::DistributedOptions options;
    options.first_bucket_bytes = 64 * sizeof(double);  // several buckets: the last layer's alone
    options.bucket_bytes = 300 * sizeof(double);
    check_equivalent(Kind::sgd_momentum, options);
    check_equivalent(Kind::sgd_momentum, {});  // one bucket of everything
}

TEST_CASE("DistributedDataParallel: N ranks with batch 12 / N end 20 Adam steps where one process with batch 12 does") {
    ad::nn::DistributedOptions options;
    options.first_bucket_bytes = 1;  // one parameter a bucket
    options.bucket_bytes = 1;
    check_equivalent(Kind::adam, options);
}

TEST_CASE("DistributedDataParallel: rank 0's parameters and buffers reach every rank at construction") {
    auto& group = ad::test::group();
    auto model = std::make_shared<ad::nn::Sequential<double>>(std::vector<ad::nn::ModulePtr<double>>{
        std::make_shared<ad::nn::Linear<double>>(4, 3, 5), std::make_shared<ad::nn::BatchNorm1d<double>>(3)});
    for (auto& p : model->parameters()) p.mutable_value() += double(group.rank());
    for (auto& b : model->named_buffers()) *b.value += double(group.rank());
    const Array<double> rank0_weight = model->parameters()[0].value() - double(group.rank());  // up to rounding
    ad::nn::DistributedDataParallel<double> ddp(model, group);
    CHECK(double(xt::amax(xt::abs(model->parameters()[0].value() - rank0_weight))()) <= 1e-15);
    for (auto& p : model->parameters()) CHECK(ad::test::same_on_every_rank(p.value()));
    for (auto& b : model->named_buffers()) CHECK(ad::test::same_on_every_rank(*b.value));
    // Checkpoints name the wrapped parameters as PyTorch's wrapper does.
    CHECK(ddp.named_parameters().front().name == "module.layers.0.weight");
}

TEST_CASE("DistributedDataParallel: a rank whose model differs is a value_error on every rank") {
    auto& group = ad::test::group();
    if (group.size() < 2) return;
    auto model = make_net();
    if (group.rank() == group.size() - 1) model = std::make_shared<Net>(std::vector<ad::nn::ModulePtr<double>>{
        std::make_shared<ad::nn::Linear<double>>(inputs, 5, 1)});
    CHECK_THROWS_AS(ad::nn::DistributedDataParallel<double>(model, group), ad::value_error);
}

TEST_CASE("DistributedDataParallel: the first buckets' allreduce starts while the sweep still runs") {
    auto& group = ad::test::group();
    auto net = make_net();
    ad::nn::DistributedOptions options;
    options.first_bucket_bytes = 1;
    options.bucket_bytes = 1;
    ad::nn::DistributedDataParallel<double> ddp(net, group, options);
    CHECK(ddp.bucket_sizes() == std::vector<std::size_t>(6, 1));  // 3 layers, weight and bias each
    const Data data;
    ad::Tape tape;
    ad::nn::mse(ddp(data.x), data.y).backward();
    const ad::nn::SyncTimeline& timeline = ddp.last_sync();
    REQUIRE(timeline.buckets.size() == 6);
    CHECK(timeline.records == tape.size());
    // The last layer's bias and weight are final after the records of the
    // loss and that layer: far above record 0, where the sweep ends.
    CHECK(timeline.buckets[0].started_after_record > tape.size() / 2);
    CHECK(timeline.buckets[0].started_after_record != ad::Tape::no_record);
    CHECK(timeline.buckets[0].started < timeline.sweep_ended);
    for (std::size_t b = 1; b < timeline.buckets.size(); ++b) {
        CHECK(timeline.buckets[b].started_after_record <= timeline.buckets[b - 1].started_after_record);
        CHECK(timeline.buckets[b].started >= timeline.buckets[b - 1].started);
    }
    CHECK(timeline.averaged >= timeline.sweep_ended);
    CHECK(timeline.exposed() >= 0);
    for (const auto& p : net->parameters()) CHECK(ad::test::same_on_every_rank(p.grad()));
}

TEST_CASE("DistributedDataParallel: no_sync accumulates locally, and the next synchronised backward averages the sum") {
    auto& group = ad::test::group();
    auto net = make_net();
    ad::nn::DistributedDataParallel<double> ddp(net, group);
    const Data data;
    // Each rank's own micro-batches: rows depending on the rank.
    auto rows = [&](std::size_t micro) {
        const std::size_t first = (std::size_t(group.rank()) * 2 + micro) * 4 % samples;
        return std::pair<Array<double>, Array<double>>(xt::view(data.x, xt::range(first, first + 4)),
                                                       xt::view(data.y, xt::range(first, first + 4)));
    };
    ad::Tape tape;
    {
        auto guard = ddp.no_sync();
        auto [x, y] = rows(0);
        ad::nn::mse(ddp(x), ad::constant(y)).backward();
    }
    const Array<double> local = net->parameters()[0].grad();
    CHECK_FALSE((group.size() > 1 && ad::test::same_on_every_rank(local)));
    auto [x, y] = rows(1);
    ad::nn::mse(ddp(x), ad::constant(y)).backward();
    // Expected: the mean over ranks of each rank's two micro-batches' gradients.
    Array<double> expected;
    {
        auto alone = make_net();
        for (std::size_t k = 0; k < alone->parameters().size(); ++k) {
            alone->parameters()[k].mutable_value() = net->parameters()[k].value();
        }
        ad::Tape own;
        for (std::size_t micro = 0; micro < 2; ++micro) {
            auto [xm, ym] = rows(micro);
            ad::nn::mse((*alone)(xm), ad::constant(ym)).backward();
        }
        expected = alone->parameters()[0].grad();
        group.allreduce(expected, ad::dist::Reduce::mean);
    }
    CHECK(double(xt::amax(xt::abs(net->parameters()[0].grad() - expected))()) <= 1e-13);
    CHECK(ad::test::same_on_every_rank(net->parameters()[0].grad()));
}

namespace {

/// Throws in its forward on one rank: a rank that fails during a step.
struct FailsOnRank final : ad::nn::Module<double> {
    int rank;
    std::shared_ptr<ad::nn::Linear<double>> layer = register_module("layer", ad::nn::Linear<double>(inputs, outputs, 4));
    explicit FailsOnRank(int r) : rank(r) {}
    Var<double> forward(const Var<double>& x) override {
        if (ad::test::group().rank() == rank) throw std::runtime_error("this rank's data loader ran dry");
        return (*layer)(x);
    }
};

}  // namespace

TEST_CASE("DistributedDataParallel: a rank that throws in its forward makes every rank fail naming it, and the group goes on") {
    auto& group = ad::test::group();
    const int failing = group.size() - 1;
    auto model = std::make_shared<FailsOnRank>(failing);
    ad::nn::DistributedDataParallel<double> ddp(model, group);
    const Data data;
    ad::Tape tape;
    if (group.rank() == failing) {
        CHECK_THROWS_WITH_AS(ddp(data.x), "this rank's data loader ran dry", std::runtime_error);
    } else {
        auto loss = ad::nn::mse(ddp(data.x), ad::constant(data.y));
        const std::string expected =
            fmt::format("rank {} failed during the step; rank {}: this rank's data loader ran dry", failing, failing);
        CHECK_THROWS_WITH_AS(loss.backward(), doctest::Contains(expected.c_str()), ad::dist::distributed_error);
    }
    // Every rank joined the same collectives: the group still works.
    Array<double> one = {1.0};
    group.allreduce(one);
    CHECK(one(0) == double(group.size()));
}

TEST_CASE("DistributedDataParallel: a rank whose backward throws makes every rank fail naming it") {
    auto& group = ad::test::group();
    const int failing = 0;
    auto net = make_net();
    ad::nn::DistributedDataParallel<double> ddp(net, group);
    const Data data;
    ad::Tape tape;
    auto out = ddp(data.x);
    if (group.rank() == failing) {
        out = ad::make_op("broken_vjp", Array<double>(out.value()), out,
                          [](std::size_t, const Var<double>&) -> Var<double> { throw ad::value_error("broken_vjp: no"); });
    }
    auto loss = ad::nn::mse(out, ad::constant(data.y));
    if (group.rank() == failing) {
        CHECK_THROWS_WITH_AS(loss.backward(), "broken_vjp: no", ad::value_error);
    } else {
        CHECK_THROWS_WITH_AS(loss.backward(), doctest::Contains("rank 0 failed during the step; rank 0: its backward sweep threw: broken_vjp: no"),
                             ad::dist::distributed_error);
    }
    Array<double> one = {1.0};
    group.allreduce(one);
    CHECK(one(0) == double(group.size()));
}

TEST_CASE("DistributedDataParallel: a rank that fails between forward and backward abandons the step, and the others hear of it") {
    auto& group = ad::test::group();
    const int failing = group.size() - 1;
    auto net = make_net();
    ad::nn::DistributedDataParallel<double> ddp(net, group);
    const Data data;
    ad::Tape tape;
    auto out = ddp(data.x);
    if (group.rank() == failing) {
        CHECK_THROWS_AS(ddp.abandon_step("its loss had the wrong targets"), ad::dist::distributed_error);
    } else {
        CHECK_THROWS_WITH_AS(ad::nn::mse(out, ad::constant(data.y)).backward(),
                             doctest::Contains("its loss had the wrong targets"), ad::dist::distributed_error);
    }
    // The next step works everywhere.
    tape.clear();
    ad::nn::mse(ddp(data.x), ad::constant(data.y)).backward();
    for (const auto& p : net->parameters()) CHECK(ad::test::same_on_every_rank(p.grad()));
}

TEST_CASE("DistributedDataParallel: forward under NoGrad does not arm a step, and bad options are value_error") {
    auto& group = ad::test::group();
    auto net = make_net();
    ad::nn::DistributedDataParallel<double> ddp(net, group);
    const Data data;
    {
        ad::NoGrad no_grad;
        // Only rank 0 evaluates: nothing collective may happen here.
        if (group.rank() == 0) CHECK(ddp(data.x).value().shape() == std::vector<std::size_t>{samples, outputs});
    }
    group.barrier();
    ad::nn::DistributedOptions bad;
    bad.bucket_bytes = 0;
    CHECK_THROWS_AS(ad::nn::DistributedDataParallel<double>(net, group, bad), ad::value_error);
}

namespace {

/// Registers its layers in the opposite order to the one it calls them in:
/// reverse registration order is then the wrong guess of when gradients complete.
struct CalledOutOfOrder final : ad::nn::Module<double> {
    std::shared_ptr<ad::nn::Linear<double>> late = register_module("late", ad::nn::Linear<double>(8, outputs, 5));
    std::shared_ptr<ad::nn::Linear<double>> early = register_module("early", ad::nn::Linear<double>(inputs, 8, 6));
    Var<double> forward(const Var<double>& x) override { return (*late)(ad::tanh((*early)(x))); }
};

}  // namespace

TEST_CASE("DistributedDataParallel: after the first step, buckets follow the order the sweep completes gradients in") {
    auto& group = ad::test::group();
    auto model = std::make_shared<CalledOutOfOrder>();
    ad::nn::DistributedOptions options;
    options.first_bucket_bytes = 1;  // one parameter a bucket
    options.bucket_bytes = 1;
    ad::nn::DistributedDataParallel<double> ddp(model, group, options);
    const Data data;
    ad::Tape tape;
    auto step = [&] {
        tape.clear();
        model->zero_grad();
        ad::nn::mse(ddp(data.x), ad::constant(data.y)).backward();
        return ddp.last_sync();
    };
    // First guess: early's bias first, which only the sweep's last record
    // completes; buckets start in order, so every one waits for it.
    const ad::nn::SyncTimeline first = step();
    REQUIRE(first.buckets.size() == 4);
    for (const auto& b : first.buckets) CHECK(b.started_after_record == 0);
    // Then late's gradients go first, as soon as its record has run.
    const ad::nn::SyncTimeline second = step();
    REQUIRE(second.buckets.size() == 4);
    CHECK(second.buckets[0].started_after_record > 0);
    CHECK(second.buckets[1].started_after_record > 0);
    CHECK(second.buckets[3].started_after_record == 0);
    for (const auto& p : model->parameters()) CHECK(ad::test::same_on_every_rank(p.grad()));
}
