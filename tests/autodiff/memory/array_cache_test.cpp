#include "support/test_support.hpp"

#include <thread>

using ad::Array;

namespace {

// 512 x 512 floats: 1 MiB, kept by the cache; 128 KiB is the smallest size it keeps.
constexpr std::size_t side = 512;
constexpr std::size_t smallest_kept = 128 * 1024 / sizeof(float);

Array<float> big_input(float value) { return Array<float>(value * xt::ones<float>({side, side})); }

}  // namespace

TEST_CASE("array cache: a large array freed by one op is the next op's result, with the next op's values") {
    ad::release_cached_arrays();
    auto x = ad::constant(big_input(0.0f));
    const float* storage = nullptr;
    {
        auto y = ad::sigmoid(x);
        storage = y.value().data();
        CHECK(ad::cached_array_bytes() == 0);
    }
    CHECK(ad::cached_array_bytes() == side * side * sizeof(float));
    auto x2 = ad::constant(big_input(2.0f));  // held: a dying node's array would join the cache too
    auto z = ad::sigmoid(x2);
    CHECK(z.value().data() == storage);
    CHECK(ad::cached_array_bytes() == 0);
    CHECK(z.shape() == ad::Shape{side, side});
    CHECK(xt::allclose(z.value(), 1.0f / (1.0f + std::exp(-2.0f))));
    // The same size in another shape: the storage is reused and reshaped.
    auto w = ad::constant(Array<float>(xt::ones<float>({side / 2, side * 2})));
    {
        auto doubled = w + w;
        storage = doubled.value().data();
    }
    auto ones = ad::constant(Array<float>(xt::ones<float>({side * 4, side / 4})));
    auto tripled = ones * 3.0f;
    CHECK(tripled.value().data() == storage);
    CHECK(tripled.shape() == ad::Shape{side * 4, side / 4});
    CHECK(tripled.value() == Array<float>(3.0f * xt::ones<float>({side * 4, side / 4})));
}

TEST_CASE("array cache: small arrays are left to malloc, and release_cached_arrays frees the kept ones") {
    ad::release_cached_arrays();
    auto half = ad::constant(Array<float>(xt::zeros<float>({smallest_kept / 2})));
    auto least = ad::constant(Array<float>(xt::zeros<float>({smallest_kept})));
    auto full = ad::constant(big_input(1.0f));
    { auto small = ad::sigmoid(half); }
    CHECK(ad::cached_array_bytes() == 0);  // 64 KiB: not kept
    { auto kept = ad::sigmoid(least); }
    CHECK(ad::cached_array_bytes() == smallest_kept * sizeof(float));
    { auto large = ad::sigmoid(full); }
    CHECK(ad::cached_array_bytes() == (smallest_kept + side * side) * sizeof(float));
    ad::release_cached_arrays();
    CHECK(ad::cached_array_bytes() == 0);
}

TEST_CASE("array cache: it keeps at most 64 arrays, per thread") {
    ad::release_cached_arrays();
    {
        std::vector<ad::Var<float>> alive;
        for (int i = 0; i < 70; ++i) {
            alive.push_back(ad::sigmoid(ad::constant(Array<float>(float(i) * xt::ones<float>({smallest_kept})))));
        }
    }
    CHECK(ad::cached_array_bytes() == 64 * smallest_kept * sizeof(float));
    std::size_t other_thread_bytes = 1;
    std::thread([&] { other_thread_bytes = ad::cached_array_bytes(); }).join();
    CHECK(other_thread_bytes == 0);
    ad::release_cached_arrays();
}

TEST_CASE("array cache: a training step reuses its large arrays and computes the same gradients") {
    // Two identical steps from the same parameters: the second runs on recycled
    // arrays and must give exactly the first one's loss and gradients.
    ad::release_cached_arrays();
    auto w = ad::param(Array<float>(ad::test::uniform({side, 64}, 3, -0.1, 0.1)));
    auto x = ad::constant(Array<float>(ad::test::uniform({side, 64}, 4)));
    ad::Tape tape;
    auto step = [&] {
        w.zero_grad();
        auto loss = ad::sum(ad::sigmoid(ad::matmul(x, w, false, true)));  // (512, 512): 1 MiB
        loss.backward();
        Array<float> grad = w.grad();
        float value = loss.item();
        tape.clear();
        return std::make_pair(value, grad);
    };
    auto [first_loss, first_grad] = step();
    CHECK(ad::cached_array_bytes() > 0);
    auto [second_loss, second_grad] = step();
    CHECK(second_loss == first_loss);
    CHECK(second_grad == first_grad);
    ad::release_cached_arrays();
}
