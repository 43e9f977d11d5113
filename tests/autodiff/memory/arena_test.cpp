#include "support/test_support.hpp"

#include <cstddef>
#include <cstdint>
#include <new>
#include <stdexcept>

#include "autodiff/memory/arena.hpp"

using ad::Array;

TEST_CASE("arena: clear() keeps its storage; re-recording the same step does not grow it") {
    ad::Tape tape;
    auto w = ad::param(ad::test::uniform({8, 8}, 1));
    auto x = ad::constant(ad::test::uniform({4, 8}, 2));
    auto step = [&] {
        auto loss = ad::sum(ad::sigmoid(ad::matmul(x, w, false, true)));
        loss.backward();
    };
    step();
    std::size_t first = tape.bytes();
    std::size_t records = tape.size();
    tape.clear();
    CHECK(tape.size() == 0);
    CHECK(tape.bytes() > 0);  // the arena and the record array are kept
    for (int i = 0; i < 50; ++i) {
        step();
        CHECK(tape.size() == records);
        CHECK(tape.bytes() == first);
        tape.clear();
    }
}

TEST_CASE("arena: room is aligned, reused after reset, and given back by rewind") {
    ad::detail::Arena arena;
    CHECK(arena.bytes() == 0);
    void* first = arena.allocate(24, 8);
    void* second = arena.allocate(16, 16);
    CHECK(reinterpret_cast<std::uintptr_t>(second) % 16 == 0);
    CHECK(static_cast<std::byte*>(second) >= static_cast<std::byte*>(first) + 24);
    const auto mark = arena.mark();
    void* third = arena.allocate(8, 8);
    arena.rewind(mark);
    CHECK(arena.allocate(8, 8) == third);  // what was allocated after the mark is free again
    const std::size_t bytes = arena.bytes();
    void* big = arena.allocate(100000, 8);  // larger than any chunk: a chunk of its own
    CHECK(big != nullptr);
    CHECK(arena.bytes() >= bytes + 100000);
    const std::size_t grown = arena.bytes();
    arena.reset();
    CHECK(arena.allocate(24, 8) == first);  // the first chunk again, nothing new allocated
    CHECK(arena.bytes() == grown);
}

namespace {
struct Throwing {
    explicit Throwing(bool fail) {
        if (fail) throw std::runtime_error("construct failed");
    }
};
}  // namespace

TEST_CASE("arena: a record whose construction throws leaves the tape as it was") {
    ad::Tape tape;
    auto w = ad::param(Array<double>{1.0, 2.0});
    auto y = ad::sum(w * w);
    const std::size_t size = tape.size(), bytes = tape.bytes();
    struct Record {
        const char* op = "throwing";
        ad::detail::CotangentSlot<double> slot;
        ad::Var<double> result;
        Throwing throwing{true};
        void operator()(ad::Pass) {}
    };
    CHECK_THROWS_AS(tape.record_in_place<Record>([](void* memory) { return new (memory) Record(); }),
                    std::runtime_error);
    CHECK(tape.size() == size);
    CHECK(tape.bytes() == bytes);
    y.backward();
    CHECK(w.grad() == Array<double>{2.0, 4.0});
}
