// Biased reference counts (autodiff/memory/biased_count.hpp): the owner's
// count, the shared count, and the hand-overs between them. Part of the
// thread_tests program, which CI also runs under ThreadSanitizer.
#include "support/test_support.hpp"

#include <algorithm>
#include <future>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "autodiff/memory/node_recycler.hpp"
#include "autodiff/memory/node_ref.hpp"

using ad::Array;
namespace counts = ad::detail::counts;
using Recycler = ad::detail::NodeRecycler<double>;

namespace {

ad::detail::NodeBase& node_of(const ad::Var<double>& x) { return *x.node_ptr().get(); }

/// Runs `work` on a new thread and waits for it.
template <class Work>
void on_other_thread(Work work) {
    std::thread(work).join();
}

}  // namespace

TEST_CASE("biased count: the making thread counts without the shared count, another thread with it") {
    auto x = ad::constant(Array<double>{1.0, 2.0});
    ad::detail::NodeBase& node = node_of(x);
    CHECK(node.counting_thread.load() == ad::detail::counting_token);
    CHECK(node.owned.load() == 1);
    CHECK(node.shared.load() == 0);
    CHECK(x.node_ptr().held_alone());
    {
        auto copy = x;
        CHECK(node.owned.load() == 2);
        CHECK(node.shared.load() == 0);
        CHECK(x.node_ptr().use_count() == 2);
        CHECK(!x.node_ptr().held_alone());
        on_other_thread([&] {
            auto there = x;
            CHECK(node.owned.load() == 2);
            CHECK(node.shared.load() == counts::one);
            CHECK(x.node_ptr().use_count() == 3);
            CHECK(!there.node_ptr().held_alone());  // another live thread counts for it: unsure
        });
        CHECK(node.shared.load() == 0);
    }
    CHECK(x.node_ptr().use_count() == 1);
    CHECK(x.node_ptr().held_alone());
}

TEST_CASE("biased count: a value dropped last on another thread waits for its owner's Tape::clear") {
    ad::Tape tape;
    tape.clear();
    Recycler::release();
    auto x = ad::constant(Array<double>{1.0, 2.0});
    const ad::detail::NodeBase* node = &node_of(x);
    on_other_thread([moved = std::move(x)]() mutable {
        // The owner counted this reference: dropping it takes the shared count below zero.
        ad::Var<double> gone = std::move(moved);
    });
    CHECK(node->shared.load() == (-counts::one | counts::queued));
    CHECK(Recycler::value_bytes() == 0);  // not freed yet: only the owner can tell
    tape.clear();
    CHECK(Recycler::value_bytes() == 2 * sizeof(double));  // freed into this thread's recycler
    auto next = ad::constant(Array<double>{3.0, 4.0});
    CHECK(&node_of(next) == node);
    CHECK(node->owned.load() == 1);
    CHECK(node->shared.load() == 0);
}

TEST_CASE("biased count: a copy kept by the owner keeps a value another thread dropped") {
    ad::Tape tape;
    auto x = ad::constant(Array<double>{5.0, 6.0});
    auto kept = x;
    on_other_thread([moved = std::move(x)]() mutable { ad::Var<double> gone = std::move(moved); });
    tape.clear();  // merged: one reference left, counted in the shared count from now on
    const ad::detail::NodeBase& node = node_of(kept);
    CHECK(node.counting_thread.load() == counts::no_thread);
    CHECK(node.shared.load() == (counts::one | counts::merged));
    CHECK(kept.node_ptr().use_count() == 1);
    CHECK(kept.node_ptr().held_alone());
    CHECK(kept.value() == Array<double>{5.0, 6.0});
    auto again = kept;
    CHECK(node.shared.load() == (2 * counts::one | counts::merged));
}

TEST_CASE("biased count: the owner lets go first and the other thread's drop frees the value there") {
    ad::Var<double> there;
    const ad::detail::NodeBase* node = nullptr;
    {
        auto x = ad::constant(Array<double>{7.0, 8.0});
        node = &node_of(x);
        std::thread([&] { there = x; }).join();  // counted in the shared count
    }
    // The owner's count reached zero with a reference left elsewhere: handed over.
    CHECK(node->counting_thread.load() == counts::no_thread);
    CHECK(node->shared.load() == (counts::one | counts::merged));
    CHECK(there.value() == Array<double>{7.0, 8.0});
    std::size_t freed_there = 0;
    on_other_thread([&] {
        Recycler::release();
        there = ad::Var<double>();
        freed_there = Recycler::value_bytes();
    });
    CHECK(freed_there == 2 * sizeof(double));
}

TEST_CASE("biased count: a thread that makes values for another and never clears a tape frees them as it allocates") {
    // A data loader: it makes batches, the trainer drops them.
    std::promise<ad::Var<double>> batch;
    std::promise<void> dropped;
    std::size_t freed_at_loader = 1;
    std::thread loader([&] {
        Recycler::release();
        batch.set_value(ad::constant(Array<double>{1.0, 2.0}));
        dropped.get_future().wait();
        const std::size_t before = Recycler::value_bytes();
        auto next = ad::constant(Array<double>{3.0, 4.0, 5.0});  // a new node: the merge runs first
        freed_at_loader = Recycler::value_bytes() - before;
    });
    {
        ad::Var<double> got = batch.get_future().get();
        CHECK(got.value() == Array<double>{1.0, 2.0});
    }
    dropped.set_value();
    loader.join();
    CHECK(freed_at_loader == 2 * sizeof(double));
}

TEST_CASE("biased count: a value whose owner thread has ended is freed by the thread that drops it last") {
    ad::Var<double> made_there;
    on_other_thread([&] { made_there = ad::constant(Array<double>{9.0, 10.0}); });
    // Its owner counted the reference that is now here, and has ended.
    Recycler::release();
    const ad::detail::NodeBase* node = &node_of(made_there);
    {
        auto copy = made_there;
        CHECK(made_there.node_ptr().use_count() == 2);
    }
    CHECK(Recycler::value_bytes() == 0);
    made_there = ad::Var<double>();
    CHECK(Recycler::value_bytes() == 2 * sizeof(double));  // merged and freed on the spot
    auto next = ad::constant(Array<double>{0.0, 0.0});
    CHECK(&node_of(next) == node);
}

TEST_CASE("biased count: values made on every thread, passed around and dropped anywhere, stay intact") {
    // Four threads make values, post them on a shared board, take others'
    // values from it, copy them and drop them, in random order: owners'
    // counts, shared counts below zero, queued merges and merges by the
    // thread that drops last all happen. A value freed early would be reused
    // for another one, and hold the wrong contents.
    struct Posted {
        ad::Var<double> value;
        double maker, serial;
    };
    constexpr int threads = 4, rounds = 3000;
    std::mutex board_mutex;
    std::vector<Posted> board;
    std::vector<int> wrong(threads, 0), checked(threads, 0);
    std::vector<std::thread> running;
    for (int t = 0; t < threads; ++t) {
        running.emplace_back([&, t] {
            ad::Tape tape;
            std::mt19937 random(static_cast<unsigned>(t));
            std::vector<Posted> held;
            for (int round = 0; round < rounds; ++round) {
                const double serial = round;
                auto made = ad::constant(Array<double>{double(t), serial});
                held.push_back({made, double(t), serial});  // the owner keeps a copy for a while
                {
                    std::lock_guard lock(board_mutex);
                    board.push_back({std::move(made), double(t), serial});
                    for (int k = 0; k < 2 && !board.empty(); ++k) {
                        const std::size_t at = random() % board.size();
                        held.push_back(board[at]);  // a copy, counted where it is made
                        if (random() % 2) {
                            held.push_back(std::move(board[at]));
                            board[at] = std::move(board.back());
                            board.pop_back();
                        }
                    }
                }
                std::shuffle(held.begin(), held.end(), random);
                while (held.size() > 8) {
                    const Posted& p = held.back();
                    wrong[static_cast<std::size_t>(t)] += !(p.value.value()(0) == p.maker && p.value.value()(1) == p.serial);
                    ++checked[static_cast<std::size_t>(t)];
                    held.pop_back();
                }
                if (round % 64 == 0) tape.clear();  // merges what others queued for this thread
            }
        });
    }
    for (auto& thread : running) thread.join();
    for (int t = 0; t < threads; ++t) {
        CHECK(wrong[static_cast<std::size_t>(t)] == 0);
        CHECK(checked[static_cast<std::size_t>(t)] > rounds);
    }
    for (const Posted& p : board) {
        CHECK(p.value.node_ptr().use_count() == 1);
        CHECK(p.value.value() == Array<double>{p.maker, p.serial});
    }
}
