// Models across threads: one model shared by training threads, copies of a
// model trained on threads of their own. Runs under ThreadSanitizer in CI.
#include "nn_test_support.hpp"

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace ad;

template <class Work>
void on_threads(int threads, Work work) {
    std::vector<std::thread> running;
    for (int t = 0; t < threads; ++t) running.emplace_back(work, t);
    for (auto& thread : running) thread.join();
}

/// The gradients of `model`'s half squared error on (x, y), by one thread alone.
std::vector<Array<double>> reference_grads(nn::MLP<double>& model, const Array<double>& x, const Array<double>& y) {
    Tape tape;
    model.zero_grad();
    nn::half_sse(model(x), constant(y)).backward();
    std::vector<Array<double>> grads;
    for (const auto& p : model.parameters()) grads.push_back(p.grad());
    return grads;
}

}  // namespace

TEST_CASE("threads: 4 threads x 1,000 steps on one shared model: a step records it alone or is refused, never corrupts") {
    // Each step makes its tape, so the threads take turns: the first op to
    // record a parameter that another thread's tape holds throws tape_error,
    // and that step's tape ends with nothing recorded of it. A step that got
    // the model has its gradients to itself: they must be exact.
    nn::MLP<double> model({3, 8, 2}, nn::Activation::tanh, 7);
    const Array<double> x = test::uniform({5, 3}, 1), y = test::uniform({5, 2}, 2);
    const auto expected = reference_grads(model, x, y);
    std::atomic<int> recorded{0}, refused{0}, wrong{0}, bad_messages{0};
    on_threads(4, [&](int) {
        for (int step = 0; step < 1000; ++step) {
            Tape tape;
            try {
                auto loss = nn::half_sse(model(x), constant(y));
                model.zero_grad();  // ours now: the forward pass recorded every parameter
                loss.backward();
                auto params = model.parameters();
                bool exact = true;
                for (std::size_t i = 0; i < params.size(); ++i) exact = exact && params[i].grad() == expected[i];
                wrong += !exact;
                ++recorded;
            } catch (const tape_error& e) {
                bad_messages += std::string(e.what()).find("is being recorded by a tape of another thread") ==
                                std::string::npos;
                ++refused;
            }
        }
    });
    CHECK(recorded.load() + refused.load() == 4000);
    CHECK(recorded.load() >= 1);
    CHECK(wrong.load() == 0);
    CHECK(bad_messages.load() == 0);
    for (const auto& p : model.parameters()) CHECK(p.node_ptr().use_count() >= 1);
    CHECK(reference_grads(model, x, y)[0] == expected[0]);
}

TEST_CASE("threads: copies of a model trained on 4 threads at once match the same training on one") {
    // Hogwild without sharing: each thread trains its own copy (assign_parameters)
    // from the same start; every copy ends where a lone run ends, bitwise.
    nn::MLP<double> start({3, 8, 2}, nn::Activation::tanh, 11);
    const Array<double> x = test::uniform({6, 3}, 3), y = test::uniform({6, 2}, 4);
    auto train = [&](nn::MLP<double>& model) {
        nn::SGD<double> optimizer(model, {.learning_rate = 0.1, .momentum = 0.9});
        Tape tape;
        for (int step = 0; step < 300; ++step) {
            optimizer.zero_grad();
            nn::half_sse(model(x), constant(y)).backward();
            optimizer.step();
            tape.clear();
        }
    };
    auto copy_of_start = [&] {
        auto model = std::make_unique<nn::MLP<double>>(std::vector<std::size_t>{3, 8, 2}, nn::Activation::tanh, 99);
        std::map<std::string, Array<double>> values;
        for (const auto& p : start.named_parameters()) values[p.name] = p.var.value();
        nn::assign_parameters(*model, values);
        return model;
    };
    auto alone = copy_of_start();
    train(*alone);
    std::vector<std::unique_ptr<nn::MLP<double>>> copies;
    for (int t = 0; t < 4; ++t) copies.push_back(copy_of_start());
    on_threads(4, [&](int t) { train(*copies[static_cast<std::size_t>(t)]); });
    for (auto& copy : copies) {
        auto mine = copy->parameters(), theirs = alone->parameters();
        for (std::size_t i = 0; i < mine.size(); ++i) CHECK(mine[i].value() == theirs[i].value());
    }
}
