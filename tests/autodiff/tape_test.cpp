#include "support/test_support.hpp"

using ad::Array;

TEST_CASE("tape: each recorded op appends one record, in recording order") {
    ad::Tape tape;
    auto x = ad::param(Array<double>{1.0, 2.0});
    auto y = ad::sigmoid(x);
    CHECK(tape.size() == 1);
    auto z = ad::sum(y * y);
    CHECK(tape.size() == 3);
    // Constants alone record nothing: there is no gradient to propagate.
    auto c = ad::exp(ad::constant(Array<double>{1.0}));
    CHECK(tape.size() == 3);
    CHECK_FALSE(c.requires_grad());
    (void)z;
}

TEST_CASE("tape: a value used twice accumulates both contributions") {
    ad::Tape tape;
    auto x = ad::param(Array<double>{0.5, -2.0, 3.0});
    auto loss = ad::sum(x * x + x);  // d/dx = 2x + 1
    loss.backward();
    for (std::size_t i = 0; i < 3; ++i) CHECK(x.grad()(i) == doctest::Approx(2 * x.value()(i) + 1));
}

TEST_CASE("tape: clear() keeps its storage; re-recording the same step does not grow it") {
    ad::Tape tape;
    auto w = ad::param(ad::test::uniform({8, 8}, 1));
    auto x = ad::constant(ad::test::uniform({4, 8}, 2));
    auto step = [&] {
        auto loss = ad::sum(ad::sigmoid(ad::matmul(x, w, false, true)));
        loss.backward();
    };
    step();
    std::size_t first = tape.bytes();
    std::size_t records = tape.size();
    tape.clear();
    CHECK(tape.size() == 0);
    CHECK(tape.bytes() > 0);  // the arena and the record array are kept
    for (int i = 0; i < 50; ++i) {
        step();
        CHECK(tape.size() == records);
        CHECK(tape.bytes() == first);
        tape.clear();
    }
}

TEST_CASE("tape: a record keeps only the values its VJP reads") {
    ad::Tape tape;
    auto w = ad::param(ad::test::uniform({3, 4}, 1));
    ad::detail::NodeRef<double> pre_activation, activation;  // held here too: count 1 = nobody else
    auto loss = [&] {
        auto z = ad::affine(w, 2.0, 1.0);  // its VJP reads nothing
        auto a = ad::sigmoid(z);           // its VJP reads its result
        pre_activation = z.node_ptr();
        activation = a.node_ptr();
        return ad::sum(a);
    }();
    CHECK(pre_activation.use_count() == 1);
    CHECK(activation.use_count() == 2);  // here and in sigmoid's record
    loss.backward();
    // The gradient is still right without z's value: d/dw = 2 s (1 - s).
    auto s = 1.0 / (1.0 + xt::exp(-(2.0 * w.value() + 1.0)));
    CHECK(xt::allclose(w.grad(), 2.0 * s * (1.0 - s)));
    tape.clear();
    CHECK(activation.use_count() == 1);
}

TEST_CASE("tape: a product keeps a factor only when the other factor needs a gradient") {
    ad::Tape tape;
    auto w = ad::param(Array<double>{1.0, -2.0});
    auto v = ad::param(Array<double>{3.0, 0.5});
    auto c = ad::constant(Array<double>{4.0, 5.0});
    ad::detail::NodeRef<double> scaled_factor, paired_factor;
    auto loss = [&] {
        auto h = ad::affine(w, 2.0, 1.0);  // 2w + 1, its VJP reads nothing
        auto k = ad::affine(w, 1.0, 1.0);  // w + 1
        scaled_factor = h.node_ptr();
        paired_factor = k.node_ptr();
        return ad::sum(h * c + k * v);  // c needs no gradient, v does: only k is kept
    }();
    CHECK(scaled_factor.use_count() == 1);
    CHECK(paired_factor.use_count() == 2);
    loss.backward();
    // d/dw = 2 c + v, d/dv = w + 1.
    CHECK(w.grad() == Array<double>{2 * 4.0 + 3.0, 2 * 5.0 + 0.5});
    CHECK(v.grad() == Array<double>{2.0, -1.0});
}

TEST_CASE("tape: records borrow the leaves they keep, pinned to the tape while steps use them") {
    auto x = ad::constant(Array<double>{1.0, 2.0});
    auto y = ad::constant(Array<double>{0.5, -1.0});
    auto w = ad::param(Array<double>{3.0, 4.0});
    const auto x_node = x.node_ptr().get();
    {
        ad::Tape tape;
        auto step = [&] {
            w.zero_grad();
            ad::half_sse(w * x, y).backward();  // both records keep a constant: mul's x, the loss's y
        };
        step();
        CHECK(tape.pins() == 3);  // x, y and the parameter w
        CHECK(x.node_ptr().use_count() == 2);  // here and the tape's pin: one count, whatever the records
        CHECK(y.node_ptr().use_count() == 2);
        CHECK(w.node_ptr().use_count() == 2);
        tape.clear();
        for (int i = 0; i < 3; ++i) {
            step();
            // d/dw = (w x - y) x
            CHECK(w.grad() == Array<double>{(3.0 - 0.5) * 1.0, (8.0 + 1.0) * 2.0});
            CHECK(tape.pins() == 3);
            CHECK(x.node_ptr().use_count() == 2);
            tape.clear();
        }
        // A step that uses x alone: y's pin goes at the clear that ends it.
        w.zero_grad();
        ad::sum(w * x).backward();
        tape.clear();
        CHECK(tape.pins() == 2);  // x and w
        CHECK(y.node_ptr().use_count() == 1);
        CHECK(x.node_ptr().use_count() == 2);
        // The user lets go of x: the pin keeps it until a step does not use it.
        x = ad::Var<double>();
        w.zero_grad();
        ad::sum(w * w).backward();
        tape.clear();
        CHECK(tape.pins() == 1);  // w
        // x's node is free again (recycled last): the next value of its size takes it.
        auto next = ad::constant(Array<double>{0.0, 0.0});
        CHECK(next.node_ptr().get() == x_node);
    }
    CHECK(y.node_ptr().use_count() == 1);
    CHECK(w.node_ptr().use_count() == 1);
}

TEST_CASE("tape: a tape pins every leaf its records keep, however many, and releases them when it ends") {
    std::vector<ad::Var<float>> xs;
    for (int i = 0; i < 12; ++i) xs.push_back(ad::constant(Array<float>{float(i), 1.0f}));
    auto w = ad::param(Array<float>{2.0f, 3.0f});
    {
        ad::Tape tape;
        auto total = ad::sum(w * xs[0]);
        for (std::size_t i = 1; i < xs.size(); ++i) total = total + ad::sum(w * xs[i]);
        CHECK(tape.pins() == 13);
        for (const auto& x : xs) CHECK(x.node_ptr().use_count() == 2);  // here and the pin
        CHECK(w.node_ptr().use_count() == 2);
        total.backward();
        CHECK(w.grad() == Array<float>{66.0f, 12.0f});  // sum of the xs
        tape.clear();
        CHECK(xs[11].node_ptr().use_count() == 2);  // used by the step: pinned until a step does not
        auto again = ad::sum(w * xs[3]);
        tape.clear();
        CHECK(tape.pins() == 2);  // xs[3] and w
        CHECK(xs[11].node_ptr().use_count() == 1);
    }
    for (const auto& x : xs) CHECK(x.node_ptr().use_count() == 1);
    CHECK(w.node_ptr().use_count() == 1);
}

TEST_CASE("tape: a borrowed constant copied into a double-backward record is counted") {
    auto x = ad::constant(Array<double>{2.0, -1.0});
    auto w = ad::param(Array<double>{0.5, 1.5});
    ad::Tape tape;
    auto y = ad::sum(w * w * x);                                         // dy/dw = 2 w x
    auto g = ad::grad(y, {w}, ad::BackwardOptions{true, true})[0];     // its records copy x
    auto gg = ad::grad(ad::sum(g * g), {w})[0];                        // d/dw sum (2 w x)^2 = 8 w x^2
    CHECK(gg.value() == Array<double>{8 * 0.5 * 4.0, 8 * 1.5 * 1.0});
    CHECK(tape.pins() == 3);  // x, w and the seed of the recorded sweep
    tape.clear();
    tape.clear();
    CHECK(x.node_ptr().use_count() == 1);
}

TEST_CASE("tape: a record's cotangent is dropped as soon as its VJP has run, not at the end of the sweep") {
    ad::Tape tape;
    auto x = ad::param(Array<double>{1.0, 2.0});
    bool later_slot_empty = false;
    // Record 0 looks, when its VJP runs, at the cotangent slot of record 1 (the
    // exp), whose VJP ran just before.
    auto y = ad::make_op("look", Array<double>(x.value()), x, [&](std::size_t, const ad::Var<double>& g) {
        later_slot_empty = !tape.slot<ad::detail::CotangentSlot<double>>(1);
        return g;
    });
    auto loss = ad::sum(ad::exp(y));
    loss.backward();
    CHECK(later_slot_empty);
    CHECK(xt::allclose(x.grad(), xt::exp(x.value())));
}

TEST_CASE("tape: a staged VJP runs its first stage once per sweep, for every input's part, and double backward goes through it") {
    // y = exp(a * b): through = g y, then a: d b, b: d a.
    auto a = ad::param(Array<double>{0.5, -1.0});
    auto b = ad::param(Array<double>{2.0, 0.25});
    int through_calls = 0;
    std::vector<std::size_t> parts;
    ad::Tape tape;
    auto y = ad::make_op("exp_of_product", Array<double>(xt::exp(a.value() * b.value())), a, b,
                         ad::staged_vjp(
                             [&](const ad::Var<double>& g, const ad::Var<double>& result) {
                                 ++through_calls;
                                 return g * result;
                             },
                             [&, a, b](std::size_t i, const ad::Var<double>& d) {
                                 parts.push_back(i);
                                 return i == 0 ? d * b : d * a;
                             }));
    CHECK(tape.size() == 1);
    auto loss = ad::sum(y);
    auto grads = ad::grad(loss, {a, b}, {.create_graph = true});
    CHECK(through_calls == 1);
    CHECK(parts == std::vector<std::size_t>{0, 1});
    const Array<double> e = xt::exp(a.value() * b.value());
    CHECK(xt::allclose(grads[0].value(), e * b.value()));
    CHECK(xt::allclose(grads[1].value(), e * a.value()));
    // d/da sum(g y b) = e b^2 (+ 1 from the recorded part d * b for b): the
    // first stage's product g y was recorded, and its y leads back through
    // this record once more.
    ad::sum(grads[0]).backward();
    CHECK(through_calls == 2);
    CHECK(xt::allclose(a.grad(), e * b.value() * b.value()));
    CHECK(xt::allclose(b.grad(), e * a.value() * b.value() + e));
}

TEST_CASE("tape: keep_results keeps every record's result for inspection") {
    ad::Tape tape({.keep_results = true});
    auto w = ad::param(Array<double>{1.0, 2.0});
    ad::detail::NodeRef<double> pre_activation;
    {
        auto z = ad::affine(w, 2.0, 1.0);
        pre_activation = z.node_ptr();
        auto a = ad::sigmoid(z);
    }
    CHECK(pre_activation.use_count() == 2);  // here and in affine's record
    REQUIRE(tape.result<ad::Var<double>>(0) != nullptr);
    CHECK(tape.result<ad::Var<double>>(0)->value() == Array<double>{3.0, 5.0});
    CHECK(tape.result<ad::Var<float>>(0) == nullptr);  // another element type
}

TEST_CASE("tape: tapes nest, and the outer one is current again after the inner one ends") {
    ad::Tape outer;
    CHECK(ad::Tape::current() == &outer);
    {
        ad::Tape inner;
        CHECK(ad::Tape::current() == &inner);
        auto x = ad::param(Array<double>{1.0});
        auto y = ad::exp(x);
        CHECK(inner.size() == 1);
        CHECK(outer.size() == 0);
    }
    CHECK(ad::Tape::current() == &outer);
}

TEST_CASE("tape: no tape current means nothing is recorded") {
    CHECK(ad::Tape::current() == nullptr);
    auto x = ad::param(Array<double>{1.0});
    auto y = ad::exp(x);
    CHECK_FALSE(y.requires_grad());
}

TEST_CASE("tape: NoGrad records nothing; EnableGrad inside it records again") {
    ad::Tape tape;
    auto x = ad::param(Array<double>{1.0, 2.0});
    {
        ad::NoGrad no_grad;
        auto y = ad::exp(x);
        CHECK_FALSE(y.requires_grad());
        CHECK(tape.size() == 0);
        {
            ad::EnableGrad enable;
            auto z = ad::exp(x);
            CHECK(z.requires_grad());
            CHECK(tape.size() == 1);
        }
        CHECK_FALSE(ad::grad_enabled());
    }
    CHECK(ad::grad_enabled());
}

TEST_CASE("tape: the graph follows C++ control flow (a data-dependent loop)") {
    // y = x^n by repeated multiplication, n decided at run time: dy/dx = n x^(n-1).
    for (int n = 1; n <= 6; ++n) {
        ad::Tape tape;
        auto x = ad::param(Array<double>(1.3));
        auto y = x;
        for (int i = 1; i < n; ++i) y = y * x;
        if (n > 1) y.backward();
        double expected = n * std::pow(1.3, n - 1);
        if (n > 1) CHECK(x.grad()() == doctest::Approx(expected).epsilon(1e-12));
        CHECK(tape.ops() == static_cast<std::size_t>(n - 1));
        CHECK(tape.size() == (n > 1 ? 1u : 0u));  // 0-d ops: one run of the scalar stream
    }
}


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

TEST_CASE("tape: a listened sweep reports each record; a parameter's gradient is complete after its first reading record") {
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

TEST_CASE("tape: a listened sweep that fails says so, and grad() sweeps are not listened to") {
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
