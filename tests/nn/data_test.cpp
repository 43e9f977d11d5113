#include "nn_test_support.hpp"

#include <algorithm>
#include <set>

namespace {

using namespace ad;

Array<double> numbered(std::size_t rows, std::size_t cols) {
    Array<double> a = Array<double>::from_shape({rows, cols});
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t c = 0; c < cols; ++c) a(r, c) = double(r * 10 + c);
    return a;
}

TEST_CASE("DataLoader: every sample once per epoch, inputs and targets stay paired") {
    Array<double> x = numbered(10, 2);
    Array<double> y = numbered(10, 1);
    nn::DataLoader<double> loader(x, y, 4, true, 7);
    CHECK(loader.samples() == 10);
    CHECK(loader.batches_per_epoch() == 3);
    for (int epoch = 0; epoch < 3; ++epoch) {
        auto batches = loader.epoch();
        REQUIRE(batches.size() == 3);
        CHECK(batches[0].inputs.shape() == Shape{4, 2});
        CHECK(batches[2].inputs.shape() == Shape{2, 2});  // the remainder
        std::multiset<std::size_t> seen;
        for (const auto& b : batches) {
            for (std::size_t i = 0; i < b.rows.size(); ++i) {
                seen.insert(b.rows[i]);
                CHECK(b.inputs.value()(i, 0) == double(b.rows[i] * 10));
                CHECK(b.inputs.value()(i, 1) == double(b.rows[i] * 10 + 1));
                CHECK(b.targets.value()(i, 0) == double(b.rows[i] * 10));
            }
            CHECK(!b.inputs.requires_grad());
        }
        CHECK(seen == std::multiset<std::size_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
    }
}

TEST_CASE("DataLoader: seeded shuffling is reproducible and reshuffles every epoch") {
    Array<double> x = numbered(20, 1);
    nn::DataLoader<double> a(x, x, 20, true, 3), b(x, x, 20, true, 3), c(x, x, 20, true, 4);
    auto a1 = a.epoch()[0].rows, a2 = a.epoch()[0].rows;
    auto b1 = b.epoch()[0].rows;
    auto c1 = c.epoch()[0].rows;
    CHECK(a1 == b1);
    CHECK(a1 != c1);
    CHECK(a1 != a2);
    std::vector<std::size_t> identity(20);
    for (std::size_t i = 0; i < 20; ++i) identity[i] = i;
    CHECK(a1 != identity);
    nn::DataLoader<double> ordered(x, x, 8, false);
    CHECK(ordered.epoch()[1].rows == std::vector<std::size_t>{8, 9, 10, 11, 12, 13, 14, 15});
}

TEST_CASE("DataLoader: mismatched rows, empty data and batch size 0 are rejected") {
    CHECK_THROWS_AS(nn::DataLoader<double>(numbered(4, 2), numbered(3, 1), 2), shape_error);
    CHECK_THROWS_AS(nn::DataLoader<double>(Array<double>(xt::zeros<double>({0, 2})),
                                           Array<double>(xt::zeros<double>({0, 1})), 2),
                    value_error);
    CHECK_THROWS_AS(nn::DataLoader<double>(numbered(4, 2), numbered(4, 1), 0), value_error);
    nn::DataLoader<float> works(xt::cast<float>(numbered(3, 2)), xt::cast<float>(numbered(3, 1)), 2);
    CHECK(works.epoch().size() == 2);
}

TEST_CASE("DataLoader: batches of a given order, with labels or targets, without counting an epoch") {
    Array<double> x = numbered(7, 2);
    Array<double> y = numbered(7, 1);
    nn::DataLoader<double> loader(x, y, 3, true, 7);
    std::vector<std::size_t> order{6, 2, 2, 0, 5};  // repeats allowed: a sampler pads by repeating
    auto batches = loader.epoch(order);
    REQUIRE(batches.size() == 2);
    CHECK(batches[0].rows == std::vector<std::size_t>{6, 2, 2});
    CHECK(batches[1].rows == std::vector<std::size_t>{0, 5});
    CHECK(batches[1].inputs.value()(1, 1) == 51.0);
    CHECK(batches[0].targets.value()(0, 0) == 60.0);
    CHECK(loader.next_epoch() == 0);
    CHECK(loader.epoch(std::vector<std::size_t>{}).empty());
    CHECK_THROWS_WITH_AS(loader.epoch(std::vector<std::size_t>{1, 7}),
                         "DataLoader::epoch: row 7 (position 1 of the order) is out of range for a data set of 7 samples",
                         value_error);

    // The shuffled order of epoch() batched again gives the same batches.
    auto shuffled = loader.epoch();
    std::vector<std::size_t> rows;
    for (const auto& b : shuffled) rows.insert(rows.end(), b.rows.begin(), b.rows.end());
    auto again = loader.epoch(rows);
    REQUIRE(again.size() == shuffled.size());
    for (std::size_t i = 0; i < again.size(); ++i) {
        CHECK(again[i].rows == shuffled[i].rows);
        CHECK(again[i].inputs.value() == shuffled[i].inputs.value());
    }

    nn::DataLoader<float> labelled(Array<float>(xt::arange<float>(0, 8).reshape({4, 2})),
                                   std::vector<std::size_t>{3, 1, 4, 1}, 2, false);
    auto with_labels = labelled.epoch(std::vector<std::size_t>{2, 0, 3});
    REQUIRE(with_labels.size() == 2);
    CHECK(with_labels[0].labels == std::vector<std::size_t>{4, 3});
    CHECK(with_labels[1].labels == std::vector<std::size_t>{1});
    CHECK(!with_labels[0].targets.defined());
}

}  // namespace

namespace {

using namespace ad;

TEST_CASE("DataLoader: class labels as targets, images as inputs, and an epoch's order resumable by number") {
    Array<float> images = xt::arange<float>(0, 6 * 4).reshape({6, 1, 2, 2});
    std::vector<std::size_t> labels{0, 1, 2, 0, 1, 2};
    nn::DataLoader<float> loader(images, labels, 4, true, 9);
    auto first = loader.epoch(), second = loader.epoch();
    CHECK(loader.next_epoch() == 2);
    for (const auto& b : first) {
        CHECK(b.inputs.shape()[1] == 1);
        CHECK(!b.targets.defined());
        REQUIRE(b.labels.size() == b.rows.size());
        for (std::size_t i = 0; i < b.rows.size(); ++i) {
            CHECK(b.labels[i] == labels[b.rows[i]]);
            CHECK(b.inputs.value()(i, 0, 1, 1) == float(4 * b.rows[i] + 3));
        }
    }
    nn::DataLoader<float> resumed(images, labels, 4, true, 9);
    resumed.set_epoch(1);
    CHECK(resumed.epoch()[0].rows == second[0].rows);
    CHECK(first[0].rows != second[0].rows);
    CHECK_THROWS_WITH_AS(nn::DataLoader<float>(images, std::vector<std::size_t>{0, 1}, 2),
                         "DataLoader: inputs have shape (6, 1, 2, 2) and there are 2 labels; they need one label per sample",
                         shape_error);
}

}  // namespace
