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
