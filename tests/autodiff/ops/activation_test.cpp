#include "support/test_support.hpp"

#include <cmath>
#include <functional>
#include <random>

#include <fmt/format.h>

using ad::Array;
using ad::Shape;
using ad::Var;
using ad::test::Vars;

namespace {

using Unary = std::function<Var<double>(const Var<double>&)>;

struct ActivationCase {
    const char* name;
    Unary op;
    double (*reference)(double);  // written from the definition, independently of the engine
    std::vector<double> kinks;    // inputs kept away from, for finite differences
};

double softplus_ref(double v) { return std::log1p(std::exp(v)); }
double sigmoid_ref(double v) { return 1 / (1 + std::exp(-v)); }

const ActivationCase cases[] = {
    {"leaky_relu", [](const Var<double>& x) { return ad::leaky_relu(x, 0.1); },
     [](double v) { return v > 0 ? v : 0.1 * v; }, {0.0}},
    {"leaky_relu default", [](const Var<double>& x) { return ad::leaky_relu(x); },
     [](double v) { return v > 0 ? v : 0.01 * v; }, {0.0}},
    {"elu", [](const Var<double>& x) { return ad::elu(x, 0.7); }, [](double v) { return v > 0 ? v : 0.7 * (std::exp(v) - 1); },
     {0.0}},
    {"gelu", [](const Var<double>& x) { return ad::gelu(x); },
     [](double v) { return v * 0.5 * (1 + std::erf(v / std::sqrt(2.0))); }, {}},
    {"gelu tanh", [](const Var<double>& x) { return ad::gelu(x, ad::GeluApproximation::tanh); },
     [](double v) { return 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v))); }, {}},
    {"silu", [](const Var<double>& x) { return ad::silu(x); }, [](double v) { return v * sigmoid_ref(v); }, {}},
    {"softsign", [](const Var<double>& x) { return ad::softsign(x); }, [](double v) { return v / (1 + std::fabs(v)); },
     {0.0}},
    {"log_sigmoid", [](const Var<double>& x) { return ad::log_sigmoid(x); }, [](double v) { return std::log(sigmoid_ref(v)); },
     {}},
    {"mish", [](const Var<double>& x) { return ad::mish(x); }, [](double v) { return v * std::tanh(softplus_ref(v)); }, {}},
    {"hardtanh", [](const Var<double>& x) { return ad::hardtanh(x, -0.5, 0.8); },
     [](double v) { return std::min(std::max(v, -0.5), 0.8); }, {-0.5, 0.8}},
};

/// Values in [-3, 3), none within 0.05 of a kink.
Array<double> inputs(const Shape& shape, std::uint64_t seed, const std::vector<double>& kinks) {
    Array<double> x = ad::test::uniform(shape, seed, -3, 3);
    for (auto& v : x) {
        for (double k : kinks) {
            if (std::abs(v - k) < 0.05) v = k + (v < k ? -0.1 : 0.1);
        }
    }
    return x;
}

}  // namespace

TEST_CASE("activations: forward values match the definitions over random shapes") {
    std::mt19937_64 rng(5);
    for (const auto& c : cases) {
        for (int round = 0; round < 3; ++round) {
            Shape s = ad::test::random_shape(rng, 0, 3);
            Array<double> x = inputs(s, rng(), {});
            Array<double> expected = x;
            for (auto& v : expected) v = c.reference(v);
            INFO(fmt::format("{} of shape {}", c.name, ad::shape_string(s)));
            CHECK(ad::test::matches(c.op(ad::constant(x)).value(), expected));
        }
    }
}

TEST_CASE("activations: gradients match finite differences, away from kinks") {
    std::mt19937_64 rng(6);
    for (const auto& c : cases) {
        for (int round = 0; round < 3; ++round) {
            Shape s = ad::test::random_shape(rng, 0, 3);
            Array<double> x = inputs(s, rng(), c.kinks);
            INFO(fmt::format("{} of shape {}", c.name, ad::shape_string(s)));
            Unary op = c.op;
            CHECK_GRADCHECK([op](const Vars& v) { return op(v[0]); }, (std::vector<Array<double>>{x}));
        }
    }
}

TEST_CASE("activations: PyTorch's slopes at the kinks") {
    // leaky_relu and elu take their x <= 0 branch at 0; hardtanh's slope is 0 at its bounds.
    ad::Tape tape;
    auto x = ad::param(Array<double>{0.0});
    ad::sum(ad::leaky_relu(x, 0.2)).backward();
    CHECK(x.grad()(0) == doctest::Approx(0.2));
    x.zero_grad();
    ad::sum(ad::elu(x, 0.7)).backward();
    CHECK(x.grad()(0) == doctest::Approx(0.7));
    auto bounds = ad::param(Array<double>{-1.0, 1.0, 0.5, 2.0});
    ad::sum(ad::hardtanh(bounds)).backward();
    CHECK(bounds.grad() == Array<double>{0.0, 0.0, 1.0, 0.0});
}

TEST_CASE("activations: stable far from zero") {
    Array<double> far = {-800.0, -40.0, 40.0, 800.0};
    auto ls = ad::log_sigmoid(ad::constant(far)).value();
    CHECK(ls(0) == -800.0);
    CHECK(ls(3) == 0.0);
    CHECK(std::abs(ls(2) / -std::exp(-40.0) - 1) < 1e-12);  // log(1 - e^-40) = -e^-40 (1 + ...)
    CHECK(xt::all(xt::isfinite(ad::mish(ad::constant(far)).value())));
    CHECK(xt::all(xt::isfinite(ad::silu(ad::constant(far)).value())));
    CHECK(ad::gelu(ad::constant(far)).value()(3) == 800.0);
}

TEST_CASE("activations: float gradients agree with double ones") {
    auto gradients = [](const auto& x0) {
        using T = typename std::decay_t<decltype(x0)>::value_type;
        ad::Tape tape;
        auto x = ad::param(x0);
        auto z = ad::leaky_relu(x, T(0.1)) + ad::elu(x) + ad::gelu(x) + ad::gelu(x, ad::GeluApproximation::tanh) +
                 ad::silu(x) + ad::softsign(x) + ad::log_sigmoid(x) + ad::mish(x) + ad::hardtanh(x, T(-0.5), T(0.5));
        ad::sum(z).backward();
        return x.grad();
    };
    Array<float> xf = xt::cast<float>(inputs({3, 4}, 9, {0.0, -0.5, 0.5}));
    CHECK(ad::test::float_matches_double(gradients(xf), gradients(Array<double>(xt::cast<double>(xf)))));
}

TEST_CASE("activations: bad bounds are a value_error, and the tape is left as it was") {
    ad::Tape tape;
    auto x = ad::param(Array<double>{1.0, 2.0});
    std::size_t before = tape.size();
    CHECK_THROWS_WITH_AS(ad::hardtanh(x, 1.0, -1.0), "hardtanh: min_val 1 is above max_val -1", ad::value_error);
    CHECK(tape.size() == before);
    CHECK_THROWS_WITH_AS(ad::gelu(Var<double>()), "gelu: an input is an empty Var", ad::tape_error);
}
