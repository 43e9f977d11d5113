// Vars and tapes across threads (autodiff/var.hpp, node.hpp, tape.hpp): what
// the README's threads section promises. This program also runs under
// ThreadSanitizer in CI (TAPEGRAD_THREAD_SANITIZE).
#include "support/test_support.hpp"

#include <atomic>
#include <cmath>
#include <future>
#include <string>
#include <thread>
#include <vector>

using ad::Array;

namespace {

/// Runs `work(t)` on `threads` threads at once and waits for them.
template <class Work>
void on_threads(int threads, Work work) {
    std::vector<std::thread> running;
    for (int t = 0; t < threads; ++t) running.emplace_back(work, t);
    for (auto& thread : running) thread.join();
}

/// Every thread copies `x` into a vector of its own `copies` times, waits
/// until all threads hold theirs, reads the count (it must be exact then),
/// and drops them; `rounds` times.
void copy_and_drop_on_threads(const ad::Var<double>& x, int threads, int rounds, int copies) {
    std::atomic<int> holding{0}, released{0};
    std::atomic<int> wrong_counts{0};
    const std::uint32_t before = x.node_ptr().use_count();  // the caller's handle, and a tape's pin
    const std::uint32_t expected = before + static_cast<std::uint32_t>(threads * copies);
    on_threads(threads, [&](int) {
        std::vector<ad::Var<double>> held;
        held.reserve(static_cast<std::size_t>(copies));
        for (int round = 0; round < rounds; ++round) {
            for (int i = 0; i < copies; ++i) held.push_back(x);
            // Everyone holds their copies: the count is exact now.
            holding.fetch_add(1);
            while (holding.load() < threads * (round + 1)) std::this_thread::yield();
            if (x.node_ptr().use_count() != expected) wrong_counts.fetch_add(1);
            released.fetch_add(1);
            while (released.load() < threads * (round + 1)) std::this_thread::yield();
            // Copies made and dropped in a tight loop, against the other threads' drops.
            for (int i = 0; i < copies; ++i) {
                ad::Var<double> again = held[static_cast<std::size_t>(i)];
                held[static_cast<std::size_t>(i)] = again;
            }
            held.clear();
        }
    });
    CHECK(wrong_counts.load() == 0);
    CHECK(x.node_ptr().use_count() == before);
}

}  // namespace

TEST_CASE("threads: copies and drops of one Var on several threads keep its count exact") {
    // 4 threads x 50 rounds x 5,000 copies, each copied, assigned and
    // dropped: three million count changes per kind of value.
    auto parameter = ad::param(Array<double>{1.0, 2.0});
    auto constant = ad::constant(Array<double>{3.0, 4.0});
    ad::Tape tape;
    auto computed = parameter * constant;  // recorded: its record does not hold it
    copy_and_drop_on_threads(parameter, 4, 50, 5000);
    copy_and_drop_on_threads(constant, 4, 50, 5000);
    copy_and_drop_on_threads(computed, 4, 50, 5000);
    // Nothing was freed early: the values are intact and the graph still walks back.
    ad::sum(computed).backward();
    CHECK(parameter.grad() == Array<double>{3.0, 4.0});
    CHECK(computed.value() == Array<double>{3.0, 8.0});
}

TEST_CASE("threads: a loss handed to another thread is read, copied and dropped there while it trains on") {
    ad::Tape tape;
    auto w = ad::param(Array<double>{0.5, -1.0, 2.0});
    auto x = ad::constant(Array<double>{1.0, 2.0, 3.0});
    for (int step = 0; step < 200; ++step) {
        w.zero_grad();
        auto loss = ad::sum(ad::square(w * x));
        // A logging thread takes a copy, reads it and drops it; the step goes on meanwhile.
        auto logged = std::async(std::launch::async, [copy = loss] { return copy.item(); });
        loss.backward();
        CHECK(logged.get() == doctest::Approx(0.25 + 4.0 + 36.0));
        CHECK(w.grad() == Array<double>{2 * 0.5 * 1.0, 2 * -1.0 * 4.0, 2 * 2.0 * 9.0});  // 2 w x^2
        CHECK(loss.node_ptr().use_count() == 1);
        tape.clear();
    }
}

TEST_CASE("threads: several threads train their own models on shared constants") {
    // Every step copies the constants and drops the copies on all threads at
    // once, and each tape pins them; a lost count would free them early.
    auto data = ad::constant<float>({1.0f, 2.0f, 3.0f});
    auto scale = ad::scalar(0.5f);
    std::vector<float> sums(4, 0.0f);
    std::vector<int> right_tape_sizes(4, 0);
    on_threads(4, [&](int t) {
        ad::Tape tape;
        auto w = ad::param<float>({1.0f, 1.0f, 1.0f});
        for (int step = 0; step < 5000; ++step) {
            w.zero_grad();
            if (step % 2 == 0) {
                ad::NoGrad off;  // grad mode is per thread
                auto unused = ad::exp(w);
                (void)unused;
            }
            std::vector<ad::Var<float>> inputs(4, data);
            ad::sum(inputs[static_cast<std::size_t>(step % 4)] * w * scale).backward();
            sums[static_cast<std::size_t>(t)] += w.grad()(2);
            right_tape_sizes[static_cast<std::size_t>(t)] += tape.size() == 3;
            tape.clear();
        }
    });
    for (int t = 0; t < 4; ++t) {
        CHECK(sums[static_cast<std::size_t>(t)] == 5000 * 1.5f);
        CHECK(right_tape_sizes[static_cast<std::size_t>(t)] == 5000);
    }
    CHECK(data.node_ptr().use_count() == 1);
    CHECK(scale.node_ptr().use_count() == 1);
}

TEST_CASE("threads: scalar code records on each thread's own tape, with shared 0-d constants") {
    // The first 0-d ops of a program give their rules ids (scalar_tape.hpp):
    // threads that start together race for them.
    auto c = ad::scalar(1.5);
    std::vector<int> right(4, 0);
    on_threads(4, [&](int t) {
        ad::Tape tape;
        auto x = ad::param(Array<double>(0.1 * (t + 1)));
        for (int step = 0; step < 300; ++step) {
            x.zero_grad();
            // y <- sigmoid(tanh(y) / c), 20 times: dy'/dy = s (1 - s) (1 - tanh(y)^2) / c.
            auto y = x;
            double value = x.item(), derivative = 1;
            for (int i = 0; i < 20; ++i) {
                y = ad::sigmoid(ad::tanh(y) / c);
                const double th = std::tanh(value), s = 1 / (1 + std::exp(-th / 1.5));
                derivative *= s * (1 - s) * (1 - th * th) / 1.5;
                value = s;
            }
            y.backward();
            right[static_cast<std::size_t>(t)] += tape.ops() == 60 && std::abs(x.grad()() - derivative) <= 1e-12 * derivative;
            tape.clear();
        }
    });
    for (int t = 0; t < 4; ++t) CHECK(right[static_cast<std::size_t>(t)] == 300);
    CHECK(c.node_ptr().use_count() == 1);
}

TEST_CASE("threads: evaluation threads read a shared parameter under NoGrad while nobody changes it") {
    auto w = ad::param(Array<double>{{1.0, -2.0}, {0.5, 3.0}});
    auto x = ad::constant(Array<double>{{1.0, 1.0}, {2.0, -1.0}});
    const Array<double> expected = ad::matmul(x, w).value();
    std::vector<int> right(4, 0);
    on_threads(4, [&](int t) {
        ad::Tape tape;  // records its own work; the shared parameter is only read
        auto mine = ad::param(Array<double>{1.0, 1.0});
        for (int i = 0; i < 2000; ++i) {
            {
                ad::NoGrad eval;
                right[static_cast<std::size_t>(t)] += ad::matmul(x, w).value() == expected;
            }
            ad::sum(mine * mine).backward();
            tape.clear();
        }
    });
    for (int ok : right) CHECK(ok == 2000);
    CHECK(w.node_ptr().use_count() == 1);
}

TEST_CASE("threads: a parameter that another thread's tape records is a tape_error naming the op, until that tape ends") {
    auto w = ad::param(Array<double>{1.0, 2.0});
    std::promise<void> recorded, tried;
    std::promise<void> tape_gone;
    std::thread owner([&] {
        ad::Tape tape;
        auto y = ad::sum(w * w);  // this thread's tape now holds w
        recorded.set_value();
        tried.get_future().wait();
        y.backward();
        tape.clear();  // the step used w: the tape keeps holding it
        ad::sum(w * w).backward();
        tape.clear();
        // The tape ends: w is free for other threads.
        (void)y;
    });
    recorded.get_future().wait();
    {
        ad::Tape tape;
        auto c = ad::constant(Array<double>{3.0, 4.0});
        CHECK_THROWS_WITH_AS(ad::mul(c, w),
                             "mul: the parameter of shape (2,) is being recorded by a tape of another thread; the "
                             "tapes of one thread at a time record a parameter (give each thread its own copy of "
                             "the model, or let the other thread's tape end first)",
                             ad::tape_error);
        CHECK(tape.size() == 0);  // the failed op recorded nothing
        {
            ad::NoGrad eval;  // reading it is fine
            CHECK(ad::mul(c, w).value() == Array<double>{3.0, 8.0});
        }
    }
    tried.set_value();
    owner.join();
    // The other thread's tape is gone: this thread records w now, and its
    // gradient holds what that thread's two sweeps accumulated (2 w each).
    CHECK(w.grad() == Array<double>{4.0, 8.0});
    ad::Tape tape;
    w.zero_grad();
    ad::sum(w * w * w).backward();
    CHECK(w.grad() == Array<double>{3.0, 12.0});
}

TEST_CASE("threads: nested tapes of one thread record the same parameter") {
    // gradcheck and the functional transforms make tapes of their own inside the caller's.
    auto w = ad::param(Array<double>{0.3, -0.7});
    ad::Tape outer;
    auto y = ad::sum(w * w);
    auto result = ad::gradcheck([&](const std::vector<ad::Var<double>>& v) { return ad::sum(v[0] * w); },
                                {Array<double>{1.0, 2.0}});
    CHECK(result.ok);
    y.backward();
    CHECK(w.grad() == Array<double>{0.6, -1.4});
}
