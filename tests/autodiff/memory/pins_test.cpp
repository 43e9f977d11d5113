#include "support/test_support.hpp"

using ad::Array;

TEST_CASE("pins: records borrow the leaves they keep, pinned to the tape while steps use them") {
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

TEST_CASE("pins: a tape pins every leaf its records keep, however many, and releases them when it ends") {
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
