#include "support/test_support.hpp"

TEST_CASE("conv2d smoke") {
    auto x = ad::param(ad::test::uniform({2, 3, 5, 5}, 1));
    auto w = ad::param(ad::test::uniform({4, 3, 3, 3}, 2));
    auto y = ad::conv2d(x, w);
    CHECK(y.shape() == ad::Shape{2, 4, 3, 3});
}
