#include "support/test_support.hpp"

using ad::Array;

TEST_CASE("grad mode: no tape current means nothing is recorded") {
    CHECK(ad::Tape::current() == nullptr);
    auto x = ad::param(Array<double>{1.0});
    auto y = ad::exp(x);
    CHECK_FALSE(y.requires_grad());
}

TEST_CASE("grad mode: NoGrad records nothing; EnableGrad inside it records again") {
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
