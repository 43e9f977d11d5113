#include "nn_test_support.hpp"

#include <string>

namespace {

using namespace ad;

TEST_CASE("Dropout: description, no parameters, p outside 0 <= p < 1 rejected") {
    nn::Dropout<double> drop;
    CHECK(drop.describe() == "Dropout(p=0.5, inplace=False)");
    CHECK(drop.named_parameters().empty());
    CHECK(nn::Dropout<double>(0.1).describe() == "Dropout(p=0.1, inplace=False)");
    CHECK_THROWS_WITH_AS(nn::Dropout<double>(1.0), "Dropout(p=1.0, inplace=False): p must lie in [0, 1), got 1",
                         value_error);
    CHECK_THROWS_WITH_AS(nn::Dropout<double>(-0.25), "Dropout(p=-0.25, inplace=False): p must lie in [0, 1), got -0.25",
                         value_error);
    CHECK_NOTHROW(nn::Dropout<double>(0.0));
}

TEST_CASE("Dropout: training zeroes about p of the elements and scales the rest by 1 / (1 - p)") {
    Tape tape;
    const double p = 0.3;
    nn::Dropout<double> drop(nn::DropoutOptions(p).seed(7));
    Array<double> x = test::away_from_zero({100, 100}, 1);
    Var<double> xv = param(x);
    Var<double> y = drop(xv);
    std::size_t zeros = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
        if (y.value().flat(i) == 0) {
            ++zeros;
        } else {
            REQUIRE(y.value().flat(i) == doctest::Approx(x.flat(i) / (1 - p)).epsilon(1e-15));
        }
    }
    // 10,000 draws: the zeroed fraction is within 4 standard deviations (0.0046) of p.
    CHECK(std::abs(double(zeros) / double(x.size()) - p) < 0.02);

    // The gradient is the forward's mask / (1 - p): y = x * grad.
    sum(y).backward();
    CHECK(test::max_abs_diff(y.value(), x * xv.grad()) < 1e-15);

    // The same seed gives the same masks; the generator moves on between calls.
    nn::Dropout<double> again(nn::DropoutOptions(p).seed(7));
    CHECK(again(x).value() == y.value());
    CHECK(again(x).value() != y.value());
    nn::Dropout<double> other(nn::DropoutOptions(p).seed(8));
    CHECK(other(x).value() != y.value());
}

TEST_CASE("Dropout: evaluation mode and p = 0 are the identity") {
    Tape tape;
    nn::Dropout<double> drop(0.5);
    drop.eval();
    CHECK_FALSE(drop.is_training());
    Array<double> x = test::uniform({4, 6}, 2);
    Var<double> xv = param(x);
    Var<double> y = drop(xv);
    CHECK(y.value() == x);
    sum(y).backward();
    CHECK(xv.grad() == Array<double>(xt::ones<double>({4, 6})));
    drop.train();
    CHECK(drop(x).value() != x);
    CHECK(nn::Dropout<double>(0.0)(x).value() == x);
}

}  // namespace
