#include "nn_test_support.hpp"

#include <cmath>
#include <limits>
#include <string>

namespace {

using namespace ad;

/// Two samples for a 2-3-1 model, and their targets.
struct TwoSamples {
    TwoSamples() { y.reshape({2, 1}); }
    Array<double> x{{0.0, 1.0}, {1.0, 0.0}};
    Array<double> y{1.0, 0.0};
};

/// The message of the E that `f` throws ("" when it throws none).
template <class E, class F>
std::string message_of(F f) {
    try {
        f();
    } catch (const E& e) {
        return e.what();
    }
    return "";
}

/// A parameter with a chosen gradient, as backward() would leave it.
Var<double> with_grad(const Array<double>& value, const Array<double>& grad) {
    Tape tape;
    auto p = param(value);
    sum(p * constant(grad)).backward();  // d/dp sum(p g) = g
    return p;
}

TEST_CASE("SGD: p <- p - lr (grad + wd p), momentum v = mu v + g") {
    Array<double> w0{1.0, -2.0};
    Array<double> g{0.5, 0.25};
    auto p = with_grad(w0, g);
    nn::SGD<double> plain({{"p", p}}, {0.1});
    plain.step();
    CHECK(test::max_abs_diff(p.value(), w0 - 0.1 * g) < 1e-16);
    CHECK(plain.steps() == 1);

    auto q = with_grad(w0, g);
    nn::SGD<double> decay({{"q", q}}, {0.1, 0.0, 0.01});
    decay.step();
    CHECK(test::max_abs_diff(q.value(), w0 - 0.1 * (g + 0.01 * w0)) < 1e-16);

    auto r = with_grad(w0, g);
    nn::SGD<double> momentum({{"r", r}}, {0.1, 0.9});
    momentum.step();  // v1 = g
    Array<double> w1 = w0 - 0.1 * g;
    CHECK(test::max_abs_diff(r.value(), w1) < 1e-16);
    momentum.step();  // same gradient again: v2 = 0.9 g + g
    CHECK(test::max_abs_diff(r.value(), w1 - 0.1 * (0.9 * g + g)) < 1e-15);
}

TEST_CASE("Adam: the first two steps by hand") {
    Array<double> w0{1.0, -2.0, 0.5};
    Array<double> g{0.5, -0.25, 1e-3};
    auto p = with_grad(w0, g);
    nn::AdamOptions o;
    o.learning_rate = 0.01;
    nn::Adam<double> adam({{"p", p}}, o);
    adam.step();
    // Step 1: m = (1-b1) g, v = (1-b2) g^2, bias-corrected to g and g^2: p -= lr g / (|g| + eps).
    Array<double> w1 = w0 - 0.01 * g / (xt::abs(g) + 1e-8);
    CHECK(test::max_abs_diff(p.value(), w1) < 1e-15);
    adam.step();
    Array<double> m = 0.9 * (0.1 * g) + 0.1 * g;
    Array<double> v = 0.999 * (0.001 * g * g) + 0.001 * g * g;
    Array<double> mhat = m / (1 - 0.9 * 0.9);
    Array<double> vhat = v / (1 - 0.999 * 0.999);
    CHECK(test::max_abs_diff(p.value(), w1 - 0.01 * mhat / (xt::sqrt(vhat) + 1e-8)) < 1e-15);
}

TEST_CASE("optimizers: step and zero_grad are profile ranges named by the optimizer") {
    auto p = with_grad(Array<double>{1.0, -2.0}, Array<double>{0.5, 0.25});
    nn::SGD<double> sgd({{"p", p}}, {0.1});
    nn::Adam<double> adam({{"p", p}}, nn::AdamOptions{});
    Profile profile;
    sgd.step();
    sgd.step();
    adam.step();
    sgd.zero_grad();
    profile.stop();
    auto entries = [&](const std::string& name) {
        for (const auto& row : profile.rows())
            if (row.range && row.name == name) return row.count;
        return std::size_t(0);
    };
    CHECK(entries("SGD.step") == 2);
    CHECK(entries("Adam.step") == 1);
    CHECK(entries("SGD.zero_grad") == 1);
    CHECK(entries("Adam.zero_grad") == 0);
}

TEST_CASE("optimizers train a model: SGD and Adam lower the loss, in float and double") {
    Array<double> x = test::uniform({16, 2}, 1);
    Array<double> y = xt::sum(x, {1}, xt::keep_dims) * 0.5;
    auto run = [&](auto make_optimizer) {
        nn::MLP<double> model({2, 4, 1}, nn::Activation::tanh, 2, nn::Activation::identity);
        auto opt = make_optimizer(model);
        Tape tape;
        double first = 0, last = 0;
        for (int i = 0; i < 200; ++i) {
            opt.zero_grad();
            auto loss = nn::mse(model(x), y);
            loss.backward();
            opt.step();
            tape.clear();
            (i == 0 ? first : last) = loss.item();
        }
        return last / first;
    };
    CHECK(run([](auto& m) { return nn::SGD<double>(m, {0.1, 0.9}); }) < 0.05);
    CHECK(run([](auto& m) { return nn::Adam<double>(m, {0.01}); }) < 0.05);

    nn::MLP<float> model({2, 4, 1}, nn::Activation::tanh, 2, nn::Activation::identity);
    nn::Adam<float> adam(model, {0.01});
    Array<float> xf = xt::cast<float>(x), yf = xt::cast<float>(y);
    Tape tape;
    float first = 0, last = 0;
    for (int i = 0; i < 200; ++i) {
        adam.zero_grad();
        auto loss = nn::mse(model(xf), yf);
        loss.backward();
        adam.step();
        tape.clear();
        (i == 0 ? first : last) = loss.item();
    }
    CHECK(last < 0.05f * first);
}

TEST_CASE("optimizers: bad options are rejected") {
    nn::Linear<double> layer(2, 2);
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const double inf = std::numeric_limits<double>::infinity();
    CHECK_THROWS_AS(nn::SGD<double>(layer, {nan}), value_error);
    CHECK_THROWS_AS(nn::SGD<double>(layer, {inf}), value_error);
    CHECK_THROWS_AS(nn::SGD<double>(layer, {-0.1}), value_error);
    CHECK_THROWS_AS(nn::SGD<double>(layer, {0.1, 1.0}), value_error);
    CHECK_THROWS_AS(nn::SGD<double>(layer, {0.1, 0.0, -1.0}), value_error);
    CHECK_THROWS_AS(nn::Adam<double>(layer, {nan}), value_error);
    nn::AdamOptions bad_beta;
    bad_beta.beta2 = 1.0;
    CHECK_THROWS_AS(nn::Adam<double>(layer, bad_beta), value_error);
    nn::SGD<double> sgd(layer, {0.1});
    try {
        sgd.set_learning_rate(nan);
        FAIL("no exception");
    } catch (const value_error& e) {
        CHECK(std::string(e.what()).find("learning rate is nan") != std::string::npos);
    }
    CHECK(sgd.learning_rate() == 0.1);
    CHECK_THROWS_AS(nn::SGD<double>({{"data", constant(Array<double>{1.0})}}), value_error);
}

TEST_CASE("optimizers: a parameter that changed shape is rejected by name, parameters unchanged") {
    Tape tape;
    nn::MLP<double> model({2, 3, 1}, nn::Activation::sigmoid, 5);
    TwoSamples data;
    nn::SGD<double> sgd(model, {0.5, 0.9});
    nn::half_sse(model(data.x), data.y).backward();
    tape.clear();
    auto params = model.named_parameters();
    SUBCASE("the same size in another shape") { params[0].var.mutable_value().reshape({2, 3}); }
    SUBCASE("another size") { params[0].var.mutable_value() = xt::zeros<double>({3, 3}); }
    auto before = test::snapshot(model);
    std::string m = message_of<shape_error>([&] { sgd.step(); });
    CHECK(m.find("SGD::step") == 0);
    CHECK(m.find("layers.0.weight") != std::string::npos);
    CHECK(m.find("made for shape (3, 2)") != std::string::npos);
    CHECK(test::unchanged(model, before));
    CHECK(sgd.steps() == 0);
}

TEST_CASE("optimizers: a non-finite gradient leaves parameters and state unchanged") {
    Tape tape;
    nn::MLP<double> model({2, 3, 1}, nn::Activation::sigmoid, 4);
    const auto [x, y] = TwoSamples();
    nn::SGD<double> sgd(model, {0.5, 0.9});
    nn::Adam<double> adam(model, {0.01});
    nn::half_sse(model(x), y).backward();
    sgd.step();
    tape.clear();
    auto before = test::snapshot(model);

    sgd.zero_grad();
    nn::half_sse(model(x), y).backward();
    tape.clear();
    // Poison one gradient, as an overflow would.
    auto params = model.named_parameters();
    const_cast<Array<double>&>(params[2].var.grad())(0, 1) = std::numeric_limits<double>::infinity();
    std::string m = message_of<value_error>([&] { sgd.step(); });
    CHECK(m.find("SGD::step") == 0);
    CHECK(m.find("layers.2.weight") != std::string::npos);
    CHECK(m.find("(1, 3)") != std::string::npos);
    CHECK_THROWS_AS(adam.step(), value_error);
    CHECK(test::unchanged(model, before));
    CHECK(sgd.steps() == 1);
    CHECK(adam.steps() == 0);

    // A good gradient afterwards steps as usual.
    sgd.zero_grad();
    nn::half_sse(model(x), y).backward();
    tape.clear();
    sgd.step();
    CHECK(sgd.steps() == 2);
    CHECK(!test::unchanged(model, before));
}

TEST_CASE("optimizers update parameters in place, as torch.optim does: data pointers stay valid") {
    Array<double> w0{1.0, -2.0, 0.5};
    Array<double> g{0.5, -0.25, 1e-3};
    auto run = [&](auto make_optimizer) {
        auto p = with_grad(w0, g);
        auto optimizer = make_optimizer(p);
        const double* storage = p.value().data();
        optimizer.step();
        optimizer.step();
        CHECK(p.value().data() == storage);
        CHECK(test::max_abs_diff(p.value(), w0) > 0);
    };
    run([](const Var<double>& p) { return nn::SGD<double>({{"p", p}}, {0.1}); });
    run([](const Var<double>& p) { return nn::SGD<double>({{"p", p}}, {0.1, 0.9, 0.01}); });
    run([](const Var<double>& p) { return nn::Adam<double>({{"p", p}}, {0.01}); });
}

}  // namespace

namespace {

using namespace ad;

/// PyTorch's AdamW, one parameter element at a time, written from its documentation.
struct ReferenceAdamW {
    double lr, b1, b2, eps, wd;
    double m = 0, v = 0;
    int t = 0;
    double step(double p, double g) {
        ++t;
        p *= 1 - lr * wd;
        m = b1 * m + (1 - b1) * g;
        v = b2 * v + (1 - b2) * g * g;
        double m_hat = m / (1 - std::pow(b1, t)), v_hat = v / (1 - std::pow(b2, t));
        return p - lr * m_hat / (std::sqrt(v_hat) + eps);
    }
};

TEST_CASE("AdamW: decoupled weight decay, against the algorithm written out") {
    Array<double> w0{1.0, -2.0, 0.5};
    Array<double> g{0.5, -0.25, 1e-3};
    auto p = with_grad(w0, g);
    nn::AdamWOptions o;
    CHECK(o.weight_decay == 0.01);  // PyTorch's default
    o.learning_rate = 0.05;
    o.weight_decay = 0.1;
    nn::AdamW<double> adamw({{"p", p}}, o);
    CHECK(std::string(adamw.kind()) == "AdamW");
    std::vector<ReferenceAdamW> ref(3, ReferenceAdamW{0.05, 0.9, 0.999, 1e-8, 0.1});
    Array<double> expected = w0;
    for (int k = 0; k < 3; ++k) {
        adamw.step();  // the same gradient each step
        for (std::size_t i = 0; i < 3; ++i) expected(i) = ref[i].step(expected(i), g(i));
        CHECK(test::max_abs_diff(p.value(), expected) < 1e-15);
    }
    // Adam's L2 decay differs from AdamW's: the decay is not decoupled there.
    auto q = with_grad(w0, g);
    nn::Adam<double> adam({{"q", q}}, o);
    adam.step();
    auto r = with_grad(w0, g);
    nn::AdamW<double> once({{"r", r}}, o);
    once.step();
    CHECK(test::max_abs_diff(q.value(), r.value()) > 1e-6);
}

TEST_CASE("parameter groups: each group steps with its own rate and decay, unset values take the options'") {
    Array<double> w0{1.0, -2.0};
    Array<double> g{0.5, 0.25};
    auto a = with_grad(w0, g), b = with_grad(w0, g), c = with_grad(w0, g);
    nn::SGD<double> sgd({{{{"a", a}}, 0.5, std::nullopt}, {{{"b", b}, {"c", c}}, std::nullopt, 0.1}}, {0.1});
    CHECK(sgd.group_count() == 2);
    CHECK(sgd.learning_rate(0) == 0.5);
    CHECK(sgd.learning_rate(1) == 0.1);
    CHECK(sgd.weight_decay(1) == 0.1);
    CHECK(sgd.group_members(1) == std::vector<std::size_t>{1, 2});
    sgd.step();
    CHECK(test::max_abs_diff(a.value(), w0 - 0.5 * g) < 1e-16);
    CHECK(test::max_abs_diff(b.value(), w0 - 0.1 * (g + 0.1 * w0)) < 1e-16);
    CHECK(c.value() == b.value());
    sgd.set_learning_rate(1, 0.2);
    CHECK(sgd.learning_rate(0) == 0.5);
    CHECK_THROWS_WITH_AS(sgd.set_learning_rate(2, 0.1), "optimizer: no parameter group 2 (it has 2)", value_error);

    // A parameter in two groups would be stepped twice: rejected by name.
    CHECK_THROWS_WITH_AS(nn::Adam<double>({{{{"a", a}}, {}, {}}, {{{"again", a}}, {}, {}}}),
                         "Adam: parameter 'again' is given twice (also as 'a')", value_error);
    CHECK_THROWS_AS(nn::SGD<double>({{{{"a", a}}, -1.0, {}}}), value_error);
}

}  // namespace
