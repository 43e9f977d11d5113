#include "support/test_support.hpp"

using ad::Array;

TEST_CASE("record: a value used twice accumulates both contributions") {
    ad::Tape tape;
    auto x = ad::param(Array<double>{0.5, -2.0, 3.0});
    auto loss = ad::sum(x * x + x);  // d/dx = 2x + 1
    loss.backward();
    for (std::size_t i = 0; i < 3; ++i) CHECK(x.grad()(i) == doctest::Approx(2 * x.value()(i) + 1));
}

TEST_CASE("record: a record keeps only the values its VJP reads") {
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

TEST_CASE("record: a record's cotangent is dropped as soon as its VJP has run, not at the end of the sweep") {
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
