#include "support/test_support.hpp"

#include "autodiff/memory/grad_buffers.hpp"

#include <functional>
#include <optional>
#include <string>
#include <utility>

using ad::Array;

namespace {

/// Finishes each parameter's gradient at the record after which a sweep
/// adds nothing more to it (when DistributedDataParallel sends it) and
/// keeps a copy of it.
struct GradientTaker final : ad::SweepListener {
    std::vector<ad::Var<double>> parameters;
    std::vector<std::size_t> first_records;
    std::vector<Array<double>> taken;
    std::vector<std::size_t> done;
    std::size_t first = 0, end = 0;
    bool ended = false, failed = false;

    void sweep_begins(const ad::Tape& t, std::size_t f, std::size_t e) override {
        first = f;
        end = e;
        first_records.clear();
        for (const auto& p : parameters) first_records.push_back(t.first_record_of(p.node_ptr().get()));
        taken.assign(parameters.size(), {});
    }
    void record_done(std::size_t index) override {
        done.push_back(index);
        for (std::size_t k = 0; k < parameters.size(); ++k) {
            if (first_records[k] == index) taken[k] = ad::detail::finish_gradient(parameters[k]);
        }
    }
    void sweep_ends() override { ended = true; }
    void sweep_failed() noexcept override { failed = true; }
};

}  // namespace

TEST_CASE("backward: a listened sweep reports each record; a parameter's gradient is complete after its first reading record") {
    ad::Tape tape;
    const Array<double> w1_start = ad::test::uniform({3, 4}, 1), w2_start = ad::test::uniform({4, 2}, 2);
    auto w1 = ad::param(w1_start), w2 = ad::param(w2_start);
    auto plain_w1 = ad::param(w1_start), plain_w2 = ad::param(w2_start);  // trained without a listener
    auto x = ad::constant(ad::test::uniform({5, 3}, 3));
    auto loss_of = [&](const ad::Var<double>& a, const ad::Var<double>& b) {
        auto h = ad::tanh(ad::matmul(x, a));
        return ad::sum(ad::matmul(h, b) * ad::matmul(h, b)) + ad::sum(a * a);
    };
    GradientTaker taker;
    taker.parameters = {w1, w2};
    for (int step = 0; step < 2; ++step) {  // the second step adds to the first's gradients
        tape.clear();
        loss_of(plain_w1, plain_w2).backward();
        tape.clear();
        auto loss = loss_of(w1, w2);
        const std::size_t first_w1 = tape.first_record_of(w1.node_ptr().get());
        const std::size_t first_w2 = tape.first_record_of(w2.node_ptr().get());
        CHECK(first_w1 == 0);  // the first matmul reads w1 (the later w1 * w1 too)
        CHECK(first_w2 > first_w1);
        CHECK(first_w2 < tape.size());
        CHECK(tape.first_record_of(x.node_ptr().get()) == 0);  // constants are pinned too
        taker.done.clear();
        auto* previous = ad::listen_to_sweeps(&taker);
        loss.backward();
        CHECK(ad::listen_to_sweeps(previous) == &taker);
        CHECK(taker.ended);
        CHECK(taker.first == 0);
        CHECK(taker.end == tape.size());
        REQUIRE(taker.done.size() == tape.size());
        for (std::size_t i = 0; i < taker.done.size(); ++i) CHECK(taker.done[i] == tape.size() - 1 - i);
        // Finished at their first records: the gradients of a sweep nobody watched, bit for bit.
        CHECK(w1.grad() == plain_w1.grad());
        CHECK(w2.grad() == plain_w2.grad());
        CHECK(taker.taken[0] == plain_w1.grad());
        CHECK(taker.taken[1] == plain_w2.grad());
        // The sweep consumed its records: nothing reads w1 above consumed_end().
        CHECK(tape.first_record_of(w1.node_ptr().get()) == ad::Tape::no_record);
    }
}

TEST_CASE("backward: a listened sweep that fails says so, and grad() sweeps are not listened to") {
    ad::Tape tape;
    auto w = ad::param(Array<double>{1.0, 2.0});
    GradientTaker watcher;
    auto* previous = ad::listen_to_sweeps(&watcher);
    auto y = ad::make_op("fails_backward", Array<double>(w.value() * 2.0), w,
                         [](std::size_t, const ad::Var<double>&) -> ad::Var<double> { throw std::runtime_error("no VJP"); });
    auto loss = ad::sum(y);
    CHECK_THROWS_AS(loss.backward({.retain_graph = true}), std::runtime_error);
    CHECK(watcher.failed);
    CHECK_FALSE(watcher.ended);
    watcher.failed = false;
    auto z = ad::sum(w * w);
    watcher.done.clear();
    auto grads = ad::grad(z, {w});
    CHECK(watcher.done.empty());
    CHECK_FALSE(watcher.ended);
    ad::listen_to_sweeps(previous);
}

TEST_CASE("backward: backward from a non-scalar needs a seed, which gives the VJP") {
    ad::Tape tape;
    auto x = ad::param(Array<double>{{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}});
    auto y = x * x;
    CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("backward: the value has shape (2, 3)"), ad::shape_error);
    CHECK_THROWS_WITH_AS(y.backward(Array<double>{1.0, 2.0}),
                         "backward: the seed has shape (2,) but the value has shape (2, 3)", ad::shape_error);
    Array<double> v = {{1.0, 0.0, -1.0}, {0.5, 2.0, 1.0}};
    y.backward(v);
    CHECK(x.grad() == Array<double>(2.0 * x.value() * v));
}

TEST_CASE("backward: backward twice through one graph needs retain_graph") {
    ad::Tape tape;
    auto x = ad::param(Array<double>{2.0});
    auto loss = ad::sum(ad::square(x));
    loss.backward({.retain_graph = true});
    loss.backward();
    CHECK(x.grad()(0) == doctest::Approx(8.0));
    CHECK_THROWS_WITH_AS(loss.backward(), doctest::Contains("backward: the graph of this value (shape ()) was already walked back"),
                         ad::tape_error);
    // A new loss that reaches into the walked-back graph is stopped too, and changes no gradient.
    auto again = ad::exp(loss);
    CHECK_THROWS_WITH_AS(again.backward(), doctest::Contains("backward: reached the record of sum"), ad::tape_error);
    CHECK(x.grad()(0) == doctest::Approx(8.0));
    // The tape still works for new graphs.
    x.zero_grad();
    ad::sum(x * 5.0).backward();
    CHECK(x.grad()(0) == doctest::Approx(5.0));
}

TEST_CASE("backward: a NaN or infinite loss is refused before any gradient changes") {
    ad::Tape tape;
    auto x = ad::param(Array<double>{-1.0});
    auto loss = ad::sum(ad::log(x));
    CHECK_THROWS_WITH_AS(loss.backward(), doctest::Contains("backward: the value of shape () holds nan"), ad::value_error);
    CHECK(x.grad()(0) == 0.0);
}

TEST_CASE("backward: backward needs a value that depends on a parameter, recorded on the current tape") {
    auto x = ad::param(Array<double>{1.0});
    auto untracked = ad::sum(ad::exp(x));  // no tape current
    CHECK_THROWS_WITH_AS(untracked.backward(), doctest::Contains("does not require a gradient"), ad::tape_error);
    ad::Tape tape;
    auto c = ad::sum(ad::exp(ad::constant(Array<double>{1.0})));
    CHECK_THROWS_AS(c.backward(), ad::tape_error);
    auto loss = ad::sum(ad::exp(x));
    {
        ad::Tape inner;
        CHECK_THROWS_WITH_AS(loss.backward(), doctest::Contains("another tape"), ad::tape_error);
    }
    loss.backward();
    CHECK(x.grad()(0) == doctest::Approx(std::exp(1.0)));
}
