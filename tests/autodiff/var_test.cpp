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

TEST_CASE("var: after zero_grad the next backward gives exactly its own gradient, in every path") {
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

TEST_CASE("var: backward from a non-scalar needs a seed, which gives the VJP") {
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

TEST_CASE("var: constants and intermediate values have no grad()") {
    ad::Tape tape;
    auto c = ad::constant(Array<double>{1.0});
    auto x = ad::param(Array<double>{1.0});
    auto y = ad::exp(x);
    CHECK_THROWS_WITH_AS(c.grad(), doctest::Contains("grad: this value of shape (1,) is a constant"), ad::tape_error);
    CHECK_THROWS_WITH_AS(y.grad(), doctest::Contains("grad: only parameters accumulate"), ad::tape_error);
}

TEST_CASE("var: a value from another tape, or from before clear(), is rejected by name") {
    ad::Tape tape;
    auto x = ad::param(Array<double>{1.0, 2.0});
    auto y = ad::exp(x);
    {
        ad::Tape other;
        CHECK_THROWS_WITH_AS(ad::log(y), doctest::Contains("log: the value of shape (2,) was recorded on another tape"),
                             ad::tape_error);
        CHECK(other.size() == 0);
    }
    tape.clear();
    CHECK_THROWS_WITH_AS(ad::sigmoid(y), doctest::Contains("sigmoid: the value of shape (2,) was recorded on this tape before it was cleared"),
                         ad::tape_error);
    CHECK_THROWS_WITH_AS(ad::sum(y).backward(), doctest::Contains("before it was cleared"), ad::tape_error);
    CHECK(tape.size() == 0);
}

TEST_CASE("var: backward twice through one graph needs retain_graph") {
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

TEST_CASE("var: a NaN or infinite loss is refused before any gradient changes") {
    ad::Tape tape;
    auto x = ad::param(Array<double>{-1.0});
    auto loss = ad::sum(ad::log(x));
    CHECK_THROWS_WITH_AS(loss.backward(), doctest::Contains("backward: the value of shape () holds nan"), ad::value_error);
    CHECK(x.grad()(0) == 0.0);
}

TEST_CASE("var: backward needs a value that depends on a parameter, recorded on the current tape") {
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

TEST_CASE("var: every op given an empty Var says so by its name, whichever input is empty") {
    using V = ad::Var<double>;
    const V e;
    const V p = ad::param(Array<double>{{1.0, 2.0}, {3.0, 4.0}});
    const std::vector<std::pair<std::string, std::function<void()>>> ops = {
        {"add", [&] { (void)(e + p); }}, {"add", [&] { (void)(p + e); }}, {"sub", [&] { (void)(p - e); }},
        {"mul", [&] { (void)(e * p); }}, {"mul", [&] { (void)(p * e); }}, {"div", [&] { (void)(e / p); }},
        {"pow", [&] { (void)ad::pow(p, e); }}, {"pow", [&] { (void)ad::pow(e, 2.0); }},
        {"affine", [&] { (void)ad::affine(e, 2.0, 1.0); }}, {"neg", [&] { (void)(-e); }},
        {"exp", [&] { (void)ad::exp(e); }}, {"log", [&] { (void)ad::log(e); }}, {"sqrt", [&] { (void)ad::sqrt(e); }},
        {"square", [&] { (void)ad::square(e); }}, {"abs", [&] { (void)ad::abs(e); }},
        {"sigmoid", [&] { (void)ad::sigmoid(e); }}, {"sigmoid_backward", [&] { (void)ad::sigmoid_backward(p, e); }},
        {"tanh", [&] { (void)ad::tanh(e); }}, {"relu", [&] { (void)ad::relu(e); }},
        {"softplus", [&] { (void)ad::softplus(e); }}, {"clamp", [&] { (void)ad::clamp(e, 0.0, 1.0); }},
        {"matmul", [&] { (void)ad::matmul(p, e); }}, {"matmul", [&] { (void)ad::matmul(e, p, true, false); }},
        {"linear", [&] { (void)ad::linear(p, e, ad::param(Array<double>{1.0, 2.0})); }},
        {"linear_sigmoid", [&] { (void)ad::linear_sigmoid(e, p, ad::param(Array<double>{1.0, 2.0})); }},
        {"sum", [&] { (void)ad::sum(e); }}, {"sum", [&] { (void)ad::sum(e, 0); }}, {"mean", [&] { (void)ad::mean(e); }},
        {"mean", [&] { (void)ad::mean(e, 1); }}, {"max", [&] { (void)ad::max(e); }}, {"max", [&] { (void)ad::max(e, 0); }},
        {"sum_to_shape", [&] { (void)ad::sum_to_shape(e, {2}); }}, {"reshape", [&] { (void)ad::reshape(e, {4}); }},
        {"transpose", [&] { (void)ad::transpose(e); }}, {"transpose", [&] { (void)ad::transpose(e, {1, 0}); }},
        {"broadcast_to", [&] { (void)ad::broadcast_to(e, {2, 2}); }}, {"slice", [&] { (void)ad::slice(e, 0, 0, 1); }},
        {"rows", [&] { (void)ad::rows(e, 0, 1); }}, {"pad", [&] { (void)ad::pad(e, 0, 1, 3); }},
        {"take_rows", [&] { (void)ad::take_rows(e, {0}); }}, {"scatter_add_rows", [&] { (void)ad::scatter_add_rows(e, {0}, 2); }},
        {"concatenate", [&] { (void)ad::concatenate<double>({p, e}, 0); }}, {"stack", [&] { (void)ad::stack<double>({e, p}, 0); }},
        {"softmax", [&] { (void)ad::softmax(e, 1); }}, {"log_softmax", [&] { (void)ad::log_softmax(e, 1); }},
        {"softmax_cross_entropy", [&] { (void)ad::softmax_cross_entropy(e, p); }},
        {"softmax_cross_entropy", [&] { (void)ad::softmax_cross_entropy(e, std::vector<std::size_t>{0, 1}); }},
        {"half_sse", [&] { (void)ad::half_sse(p, e); }}, {"mse", [&] { (void)ad::mse(e, p); }},
        {"binary_cross_entropy", [&] { (void)ad::binary_cross_entropy(e, p); }},
    };
    for (const auto& [name, op] : ops) {
        for (bool recording : {false, true}) {
            INFO(name, recording ? ", recording" : ", not recording");
            std::optional<ad::Tape> tape;
            if (recording) tape.emplace();
            CHECK_THROWS_WITH_AS(op(), (name + ": an input is an empty Var").c_str(), ad::tape_error);
            if (recording) CHECK(tape->size() == 0);
        }
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

namespace {

/// A custom op whose VJP computes with plain arrays: y = x^3, x_bar = g 3 x^2 as a constant.
ad::Var<double> cube_first_order(const ad::Var<double>& x) {
    Array<double> y = x.value() * x.value() * x.value();
    return ad::make_op("cube", std::move(y), x, ad::first_order([x](std::size_t, const ad::Var<double>& g) {
                           return g * ad::constant(Array<double>(3.0 * x.value() * x.value()));
                       }));
}

}  // namespace

TEST_CASE("var: a VJP declared first_order gives first derivatives, and a second derivative names the op instead of returning zeros") {
    std::vector<Array<double>> x{Array<double>{0.5, -1.5, 2.0}};
    auto f = [](const ad::test::Vars& v) { return ad::sum(cube_first_order(v[0])); };
    CHECK_GRADCHECK(f, x);
    ad::Tape tape;
    auto p = ad::param(x[0]);
    ad::sum(cube_first_order(p)).backward();
    CHECK(p.grad() == Array<double>{0.75, 6.75, 12.0});
    const char* message = "cube: its VJP is declared first-order (ad::first_order)";
    CHECK_THROWS_WITH_AS(ad::grad(ad::sum(cube_first_order(p)), {p}, {.create_graph = true}), doctest::Contains(message),
                         ad::tape_error);
    CHECK_THROWS_WITH_AS(ad::hessian<double>([](const ad::Var<double>& v) { return ad::sum(cube_first_order(v)); }, x[0]),
                         doctest::Contains(message), ad::tape_error);
    CHECK_THROWS_WITH_AS(ad::gradgradcheck(f, x), doctest::Contains(message), ad::tape_error);
    // The tape still walks back after the refused sweep.
    tape.clear();
    p.zero_grad();
    ad::sum(cube_first_order(p) * 2.0).backward();
    CHECK(p.grad() == Array<double>{1.5, 13.5, 24.0});
}
