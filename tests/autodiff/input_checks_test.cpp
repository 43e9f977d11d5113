#include "support/test_support.hpp"

#include <functional>
#include <optional>
#include <string>
#include <utility>

using ad::Array;

TEST_CASE("input checks: a value from another tape, or from before clear(), is rejected by name") {
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

TEST_CASE("input checks: every op given an empty Var says so by its name, whichever input is empty") {
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
