#include "support/test_support.hpp"

using ad::Array;

TEST_CASE("kept: a product keeps a factor only when the other factor needs a gradient") {
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

TEST_CASE("kept: a borrowed constant copied into a double-backward record is counted") {
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
