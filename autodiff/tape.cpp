#include "autodiff/tape.hpp"

#include <algorithm>
#include <atomic>

namespace ad {
namespace {

std::atomic<std::uint32_t> next_tape_id{1};

}  // namespace

Tape::Tape(TapeOptions options)
    : options_(options), epoch_(std::uint64_t{next_tape_id.fetch_add(1)} << 32), previous_(detail::recording_state.tape) {
    detail::recording_state.tape = this;
}

Tape::~Tape() {
    destroy_records();
    release_pins(true);
    // Tapes are scoped objects, so they are destroyed in reverse order of
    // creation and the previous tape becomes current again.
    detail::recording_state.tape = previous_;
}

void Tape::destroy_records() noexcept {
    // Reverse order: a closure may hold the last reference to a value an
    // earlier closure also holds; order does not matter for correctness but
    // mirrors construction.
    for (auto it = records_.rbegin(); it != records_.rend(); ++it) it->destroy(it->closure);
    records_.clear();
    chunk_ = 0;
    offset_ = 0;
    consumed_end_ = 0;
}

void Tape::clear() {
    destroy_records();
    release_pins(false);
    ++epoch_;  // the low 32 bits count clears of this tape
}

void Tape::release_pins(bool all) noexcept {
    // After the records: they borrow the pinned nodes.
    std::size_t kept = 0;
    for (std::size_t i = 0; i < pin_count_; ++i) {
        Pin pin = pins_[i];
        if (pin.used && !all) {
            pin.used = false;
            pins_[kept++] = pin;
        } else {
            pin.release(pin.node);
        }
    }
    pin_count_ = kept;
}

std::size_t Tape::bytes() const noexcept {
    std::size_t arena = 0;
    for (std::size_t size : chunk_sizes_) arena += size;
    return records_.capacity() * sizeof(Record) + arena;
}

void* Tape::allocate_in_next_chunk(std::size_t size, std::size_t align) {
    while (chunk_ < chunks_.size()) {
        std::size_t start = (offset_ + align - 1) & ~(align - 1);
        if (start + size <= chunk_sizes_[chunk_]) {
            offset_ = start + size;
            return chunks_[chunk_].get() + start;
        }
        ++chunk_;
        offset_ = 0;
    }
    std::size_t capacity = std::max(size, std::min(max_chunk_size_, first_chunk_size_ << chunks_.size()));
    chunks_.push_back(std::make_unique<std::byte[]>(capacity));  // aligned for max_align_t
    chunk_sizes_.push_back(capacity);
    chunk_ = chunks_.size() - 1;
    offset_ = size;
    return chunks_[chunk_].get();
}

void Tape::run(std::size_t first, std::size_t last, Pass pass) {
    // Indexing (not iterators): a create_graph sweep appends records while it runs.
    for (std::size_t i = last; i-- > first;) {
        Record record = records_[i];
        record.run(record.closure, pass);
    }
}

NoGrad::NoGrad() noexcept : previous_(detail::recording_state.grad_enabled) { detail::recording_state.grad_enabled = false; }
NoGrad::~NoGrad() { detail::recording_state.grad_enabled = previous_; }

EnableGrad::EnableGrad() noexcept : previous_(detail::recording_state.grad_enabled) { detail::recording_state.grad_enabled = true; }
EnableGrad::~EnableGrad() { detail::recording_state.grad_enabled = previous_; }

}  // namespace ad
