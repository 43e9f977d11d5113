#include "support/test_support.hpp"

#include <functional>
#include <optional>
#include <string>
#include <utility>

using ad::Array;

TEST_CASE("var: a parameter's gradient starts at zero, accumulates over backward calls, and zeroes") {
    ad::Tape tape;
    auto x = ad::param(Array<double>{1.0, -2.0});
    CHECK(x.grad() == Array<double>{0.0, 0.0});
    ad::sum(x * 3.0).backward();
    ad::sum(x * 3.0).backward();  // a new graph: gradients add up like PyTorch's .grad
    CHECK(x.grad() == Array<double>{6.0, 6.0});
    x.zero_grad();
    CHECK(x.grad() == Array<double>{0.0, 0.0});
}

TEST_CASE("var: constants and intermediate values have no grad()") {
    ad::Tape tape;
    auto c = ad::constant(Array<double>{1.0});
    auto x = ad::param(Array<double>{1.0});
    auto y = ad::exp(x);
    CHECK_THROWS_WITH_AS(c.grad(), doctest::Contains("grad: this value of shape (1,) is a constant"), ad::tape_error);
    CHECK_THROWS_WITH_AS(y.grad(), doctest::Contains("grad: only parameters accumulate"), ad::tape_error);
}

TEST_CASE("var: detach and stop_gradient cut the gradient") {
    ad::Tape tape;
    auto x = ad::param(Array<double>{3.0});
    ad::sum(x * ad::stop_gradient(x)).backward();  // d/dx of x * c is c = 3, not 2x = 6
    CHECK(x.grad()(0) == doctest::Approx(3.0));
    x.zero_grad();
    ad::sum(x.detach() * x * x).backward();  // 3 * 2x = 18
    CHECK(x.grad()(0) == doctest::Approx(18.0));
    CHECK_FALSE(x.detach().requires_grad());
}

TEST_CASE("var: item() reads one element and refuses more") {
    auto s = ad::constant(Array<double>(2.5));
    CHECK(s.item() == 2.5);
    CHECK_THROWS_WITH_AS(ad::constant(Array<double>{1.0, 2.0}).item(), "item: the value has shape (2,), not one element",
                         ad::shape_error);
}

TEST_CASE("var: an empty handle is rejected, not dereferenced") {
    ad::Var<double> empty;
    CHECK_FALSE(empty.defined());
    CHECK_THROWS_WITH_AS(empty.value(), "Var::value: this handle is empty (default-constructed or moved from)",
                         ad::tape_error);
    // Each member function names itself.
    CHECK_THROWS_WITH_AS(empty.shape(), doctest::Contains("Var::shape: this handle is empty"), ad::tape_error);
    CHECK_THROWS_WITH_AS(empty.grad(), doctest::Contains("Var::grad: this handle is empty"), ad::tape_error);
    CHECK_THROWS_WITH_AS(empty.item(), doctest::Contains("Var::item: this handle is empty"), ad::tape_error);
    CHECK_THROWS_WITH_AS(empty.zero_grad(), doctest::Contains("Var::zero_grad: this handle is empty"), ad::tape_error);
    CHECK_THROWS_WITH_AS(empty.mutable_value(), doctest::Contains("Var::mutable_value: this handle is empty"),
                         ad::tape_error);
    ad::Tape tape;
    CHECK_THROWS_WITH_AS(ad::grad(empty, {}), "grad: an input is an empty Var", ad::tape_error);
}

TEST_CASE("var: float values record and walk back like double ones") {
    ad::Tape tape;
    auto x = ad::param(Array<float>{0.25f, -1.5f});
    auto loss = ad::sum(ad::tanh(x) * 2.0f);
    loss.backward();
    for (std::size_t i = 0; i < 2; ++i) {
        float t = std::tanh(x.value()(i));
        CHECK(x.grad()(i) == doctest::Approx(2 * (1 - t * t)).epsilon(1e-6));
    }
}

TEST_CASE("var: mutable_grad() changes a parameter's gradient in place (clipping), and only a parameter's") {
    ad::Tape tape;
    auto w = ad::param(Array<double>{1.0, -2.0, 3.0});
    ad::sum(ad::square(w)).backward();  // grad 2 w
    Array<double>& g = w.mutable_grad();
    CHECK(&g == &w.grad());
    g *= 0.5;  // what clipping by a global norm does
    CHECK(w.grad() == Array<double>{1.0, -2.0, 3.0});
    w.zero_grad();
    CHECK(w.mutable_grad() == Array<double>{0.0, 0.0, 0.0});  // the pending zero_grad is carried out
    tape.clear();
    ad::sum(w * 3.0).backward();
    CHECK(w.grad() == Array<double>{3.0, 3.0, 3.0});
    auto c = ad::constant(Array<double>{1.0});
    CHECK_THROWS_WITH_AS(c.mutable_grad(), doctest::Contains("is a constant, it has no gradient"), ad::tape_error);
    auto y = ad::exp(w);
    CHECK_THROWS_AS(y.mutable_grad(), ad::tape_error);
}
