#include "support/test_support.hpp"

#include <functional>
#include <optional>
#include <string>
#include <utility>

using ad::Array;

TEST_CASE("grad buffers: after zero_grad the next backward gives exactly its own gradient, in every path") {
    // zero_grad() is lazy and a backward may hand its cotangent buffer over:
    // the results must not depend on which path a parameter took.
    ad::Tape tape;
    auto w = ad::param(Array<double>{1.0, 2.0});
    ad::sum(w * 3.0).backward();
    w.zero_grad();
    // The cotangent is shared by two records (add passes it to both operands),
    // so it cannot be handed over: the sum must still be right.
    ad::sum(w + w).backward();
    CHECK(w.grad() == Array<double>{2.0, 2.0});
    w.zero_grad();
    ad::sum(w * 4.0).backward();
    const Array<double>& held = w.grad();  // a reference taken before the next backward
    CHECK(held == Array<double>{4.0, 4.0});
    ad::sum(w * 4.0).backward();  // no zero_grad: accumulates
    CHECK(held == Array<double>{8.0, 8.0});
    w.zero_grad();
    CHECK(w.grad() == Array<double>{0.0, 0.0});
    CHECK(&held == &w.grad());  // the same array throughout
    // A loss that is the parameter itself.
    auto s = ad::param(Array<double>{5.0});
    s.backward();
    s.zero_grad();
    s.backward();
    CHECK(s.grad() == Array<double>{1.0});
}
