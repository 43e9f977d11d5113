#include "support/test_support.hpp"

#include <functional>
#include <optional>
#include <string>
#include <utility>

using ad::Array;

TEST_CASE("vjp: a staged VJP runs its first stage once per sweep, for every input's part, and double backward goes through it") {
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

namespace {

/// A custom op whose VJP computes with plain arrays: y = x^3, x_bar = g 3 x^2 as a constant.
ad::Var<double> cube_first_order(const ad::Var<double>& x) {
    Array<double> y = x.value() * x.value() * x.value();
    return ad::make_op("cube", std::move(y), x, ad::first_order([x](std::size_t, const ad::Var<double>& g) {
                           return g * ad::constant(Array<double>(3.0 * x.value() * x.value()));
                       }));
}

}  // namespace

TEST_CASE("vjp: a VJP declared first_order gives first derivatives, and a second derivative names the op instead of returning zeros") {
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

TEST_CASE("vjp: an accumulating VJP adds into the input's running sum when nothing records, and returns its cotangent when a sweep records") {
    // y = 3 x[0:2] of a 4-element x, written as a custom op.
    int added = 0, returned = 0;
    auto head_times_three = [&](const ad::Var<double>& x) {
        Array<double> y = 3.0 * xt::view(x.value(), xt::range(0, 2));
        auto vjp = [&added, &returned](std::size_t, const ad::Var<double>& g) {
            ++returned;
            return ad::concatenate({g * 3.0, ad::constant(Array<double>(xt::zeros<double>({2})))}, 0);
        };
        auto add_into = [&added](std::size_t, const ad::Var<double>& g, Array<double>& sum) {
            ++added;
            xt::view(sum, xt::range(0, 2)) += 3.0 * g.value();
        };
        return ad::make_op("head_times_three", std::move(y), x, ad::accumulating_vjp(vjp, add_into));
    };
    ad::Tape tape;
    auto x = ad::param(Array<double>{1.0, 2.0, 3.0, 4.0});
    auto loss = ad::sum(head_times_three(x) * head_times_three(x));  // two readers of x: a running sum
    loss.backward({.retain_graph = true});
    // d/dx sum((3 x_i)^2) over i < 2 = 18 x_i
    CHECK(x.grad() == Array<double>{18.0, 36.0, 0.0, 0.0});
    CHECK(added == 2);
    CHECK(returned == 0);
    auto g = ad::grad(loss, {x}, {.create_graph = true});
    CHECK(g[0].value() == Array<double>{18.0, 36.0, 0.0, 0.0});
    CHECK(returned == 2);
    CHECK(added == 2);
    CHECK(g[0].requires_grad());  // recorded: it can be differentiated again
}
