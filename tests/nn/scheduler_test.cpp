#include "nn_test_support.hpp"

#include <cmath>

namespace {

using namespace ad;

/// An optimizer of two groups (rates 0.1 and 0.4) over one parameter each.
struct TwoGroups {
    Var<double> a = param(Array<double>{1.0});
    Var<double> b = param(Array<double>{2.0});
    nn::SGD<double> sgd{{{{{"a", a}}, 0.1, {}}, {{{"b", b}}, 0.4, {}}}};
};

TEST_CASE("StepLR: the rate times gamma every step_size steps, each group from its own base") {
    TwoGroups o;
    nn::StepLR<double> schedule(o.sgd, 3, 0.5);
    std::vector<double> seen;
    for (int t = 0; t < 7; ++t) {
        seen.push_back(o.sgd.learning_rate(0));
        CHECK(o.sgd.learning_rate(1) == 4 * o.sgd.learning_rate(0));
        schedule.step();
    }
    CHECK(seen == std::vector<double>{0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025});
    CHECK(schedule.last_step() == 7);
    CHECK_THROWS_AS(nn::StepLR<double>(o.sgd, 0), value_error);
}

TEST_CASE("WarmupCosineLR: linear warmup from 0, a cosine to the floor, held after the end") {
    TwoGroups o;
    nn::WarmupCosineLR<double> schedule(o.sgd, 4, 12, 0.1);
    CHECK(o.sgd.learning_rate(0) == 0);  // step 0 of the warmup
    for (std::size_t t = 0; t <= 14; ++t) {
        schedule.set_last_step(t);
        double expected;
        if (t < 4) {
            expected = 0.1 * double(t) / 4;
        } else if (t >= 12) {
            expected = 0.1 * 0.1;
        } else {
            double progress = double(t - 4) / 8;
            expected = 0.1 * (0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI * progress)));
        }
        CHECK(o.sgd.learning_rate(0) == doctest::Approx(expected).epsilon(1e-14));
    }
    schedule.set_last_step(4);
    CHECK(o.sgd.learning_rate(1) == doctest::Approx(0.4));  // the peak is the base rate
    CHECK_THROWS_WITH_AS(nn::WarmupCosineLR<double>(o.sgd, 5, 5), "WarmupCosineLR: total (5) must exceed warmup (5)",
                         value_error);
}

TEST_CASE("LambdaLR: the user's factor; a bad factor names the step and changes nothing") {
    TwoGroups o;
    nn::LambdaLR<double> schedule(o.sgd, [](std::size_t t) { return t < 3 ? 1.0 / double(t + 1) : -1.0; });
    schedule.step();
    CHECK(o.sgd.learning_rate(0) == doctest::Approx(0.05));
    schedule.step();
    CHECK_THROWS_WITH_AS(schedule.step(),
                         "learning-rate schedule: the factor at step 3 is -1; it must be finite and not negative",
                         value_error);
    CHECK(schedule.last_step() == 2);
    CHECK(o.sgd.learning_rate(0) == doctest::Approx(0.1 / 3));
}

}  // namespace
