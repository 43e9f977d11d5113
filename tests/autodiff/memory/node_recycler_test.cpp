#include "support/test_support.hpp"

#include <thread>
#include <vector>

#include "autodiff/memory/node_recycler.hpp"

using ad::Array;
using Recycler = ad::detail::NodeRecycler<float>;

TEST_CASE("node recycling: a small value's node is the next op's result, with the next op's values") {
    ad::release_cached_arrays();
    auto a = ad::constant<float>({1.0f, 2.0f, 3.0f});
    auto b = ad::constant<float>({10.0f, 20.0f, 30.0f});
    const float* storage = nullptr;
    {
        auto dead = a * b;
        storage = dead.value().data();
        CHECK(Recycler::value_bytes() == 0);
    }
    CHECK(Recycler::value_bytes() == 3 * sizeof(float));
    CHECK(ad::cached_array_bytes() == 3 * sizeof(float));
    auto sum = a + b;
    CHECK(sum.value().data() == storage);
    CHECK(sum.value() == Array<float>{11.0f, 22.0f, 33.0f});
    CHECK(Recycler::value_bytes() == 0);
}

TEST_CASE("node recycling: a value made elsewhere moves into a recycled node by its storage alone") {
    ad::release_cached_arrays();
    auto a = ad::constant<float>({1.0f, 2.0f, 3.0f});
    const Array<float>* node_value = nullptr;
    {
        auto dead = a + a;
        node_value = &dead.value();
    }
    Array<float> values{4.0f, 5.0f, 6.0f};
    const float* data = values.data();
    auto c = ad::constant(std::move(values));
    CHECK(&c.value() == node_value);
    CHECK(c.value().data() == data);
    CHECK(c.value() == Array<float>{4.0f, 5.0f, 6.0f});
    CHECK(c.shape() == ad::Shape{3});
    CHECK(Recycler::value_bytes() == 0);
}

TEST_CASE("node recycling: a recycled parameter's node comes back as a fresh constant") {
    ad::Tape tape;
    auto p = ad::constant<float>({1.0f, 1.0f});
    auto q = ad::constant<float>({2.0f, 2.0f});
    const float* storage = nullptr;
    {
        auto w = ad::param<float>({1.0f, 2.0f});  // first: it dies last, its node on top of the list
        auto x = ad::constant<float>({3.0f, 4.0f});
        ad::sum(w * x).backward();
        CHECK(w.grad() == Array<float>{3.0f, 4.0f});
        tape.clear();
        tape.clear();  // the first kept x pinned to the tape (used in its step: Tape::pin), this one lets go
        ad::release_cached_arrays();
        storage = w.value().data();
    }
    tape.clear();
    // No tape recording now: an op's result is an unrecorded constant, though
    // its node was a parameter's, with a gradient.
    ad::NoGrad no_grad;
    auto r = p - q;
    CHECK(r.value().data() == storage);
    CHECK(r.value() == Array<float>{-1.0f, -1.0f});
    CHECK_FALSE(r.requires_grad());
    CHECK(r.is_leaf());
    CHECK_THROWS_AS(r.grad(), ad::tape_error);
}

TEST_CASE("node recycling: the same size in another shape is reshaped, recorded results get their own record") {
    ad::release_cached_arrays();
    ad::Tape tape;
    auto wide = ad::constant(Array<float>(xt::ones<float>({2, 3})));
    auto tall = ad::param(Array<float>(xt::arange<float>(6.0f).reshape({3, 2})));
    const float* storage = nullptr;
    { auto dead = wide * wide; storage = dead.value().data(); }
    auto doubled = tall + tall;
    CHECK(doubled.value().data() == storage);
    CHECK(doubled.shape() == ad::Shape{3, 2});
    CHECK(doubled.value() == Array<float>(2.0f * xt::arange<float>(6.0f).reshape({3, 2})));
    CHECK(doubled.requires_grad());
    CHECK_FALSE(doubled.is_leaf());
    ad::sum(doubled).backward();
    CHECK(tall.grad() == Array<float>(2.0f * xt::ones<float>({3, 2})));
}

TEST_CASE("node recycling: a node of the same shape is taken before a newer one of the same size in another shape") {
    ad::release_cached_arrays();
    auto wide = ad::constant(Array<float>(xt::ones<float>({2, 3})));
    auto tall = ad::constant(Array<float>(xt::ones<float>({3, 2})));
    const float* tall_storage = nullptr;
    {
        auto dead_wide = wide * wide;  // dies last: on top of the list
        auto dead_tall = tall * tall;
        tall_storage = dead_tall.value().data();
    }
    auto doubled = tall + tall;
    CHECK(doubled.value().data() == tall_storage);
    CHECK(doubled.shape() == ad::Shape{3, 2});
    CHECK(doubled.value() == Array<float>(2.0f * xt::ones<float>({3, 2})));
}

TEST_CASE("node recycling: large values are not kept, the list is bounded, and release empties it") {
    ad::release_cached_arrays();
    const std::size_t small = Recycler::max_value_bytes / sizeof(float);
    auto big = ad::constant(Array<float>(xt::ones<float>({small + 1})));
    { auto dead = big + big; }
    CHECK(Recycler::value_bytes() == 0);
    auto one = ad::constant<float>({1.0f});
    const float* last_storage = nullptr;
    {
        std::vector<ad::Var<float>> alive;
        for (std::size_t i = 0; i < Recycler::max_nodes + 100; ++i) alive.push_back(one + one);
        auto last = std::move(alive.back());
        alive.clear();
        last_storage = last.value().data();
    }  // `last` dies last
    // Full at max_nodes, the list dropped its older half and kept the newest.
    CHECK(Recycler::value_bytes() == (Recycler::max_nodes / 2 + 100) * sizeof(float));
    auto two = one + one;
    CHECK(two.value().data() == last_storage);
    ad::release_cached_arrays();
    CHECK(Recycler::value_bytes() == 0);
    CHECK(ad::cached_array_bytes() == 0);
}

TEST_CASE("node recycling: per thread, and a node dropped on another thread goes back to the thread that made it") {
    ad::release_cached_arrays();
    ad::Tape tape;
    auto one = ad::constant<float>({1.0f, 1.0f});
    std::vector<ad::Var<float>> made_here;
    for (int i = 0; i < 10; ++i) made_here.push_back(one + one);
    std::size_t other_thread_bytes = 1;
    std::thread([&] {
        // The last references die here, but this thread cannot see its
        // owner's count (memory/biased_count.hpp): they wait for the owner.
        made_here.clear();
        other_thread_bytes = Recycler::value_bytes();
        auto made_there = one * one;
        CHECK(made_there.value() == Array<float>{1.0f, 1.0f});
    }).join();
    CHECK(other_thread_bytes == 0);
    CHECK(Recycler::value_bytes() == 0);
    tape.clear();  // the owner merges them, and they are free
    CHECK(Recycler::value_bytes() == 10 * 2 * sizeof(float));
    auto again = one + one;
    CHECK(again.value() == Array<float>{2.0f, 2.0f});
    CHECK(Recycler::value_bytes() == 9 * 2 * sizeof(float));
}
