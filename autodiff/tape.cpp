#include "autodiff/tape.hpp"

#include "autodiff/debug.hpp"
#include "autodiff/observe.hpp"

#include <algorithm>
#include <atomic>

namespace ad {
namespace {

std::atomic<std::uint32_t> next_tape_id{1};
std::atomic<std::uint32_t> next_thread_token{1};

constexpr std::uint64_t low_half = 0xffffffffu;

/// Claims a parameter for the thread `token` (NodeBase::owner): false when
/// another thread's tapes hold it.
bool claim_for(detail::NodeBase& node, std::uint32_t token) noexcept {
    const std::uint64_t mine = std::uint64_t{token} << 32;
    std::uint64_t owner = node.owner.load(std::memory_order_acquire);
    for (;;) {
        std::uint64_t next;
        if (owner == 0) {
            next = mine | 1;
        } else if ((owner & ~low_half) == mine) {
            next = owner + 1;
        } else {
            return false;
        }
        // acquire: the writes of the thread that held it before (its sweeps'
        // gradients, its optimizer's steps) are seen here.
        if (node.owner.compare_exchange_weak(owner, next, std::memory_order_acquire, std::memory_order_acquire)) {
            return true;
        }
    }
}

/// Ends one tape's claim. Only the owning thread changes a non-zero owner,
/// so a store suffices; release, for the next thread's acquire.
void unclaim(detail::NodeBase& node) noexcept {
    const std::uint64_t owner = node.owner.load(std::memory_order_relaxed);
    node.owner.store((owner & low_half) == 1 ? 0 : owner - 1, std::memory_order_release);
}

}  // namespace

namespace detail {

std::uint32_t thread_token() noexcept {
    thread_local const std::uint32_t token = next_thread_token.fetch_add(1, std::memory_order_relaxed);
    return token;
}

}  // namespace detail

Tape::Tape(TapeOptions options)
    : options_(options),
      epoch_(std::uint64_t{next_tape_id.fetch_add(1)} << 32),
      previous_(detail::recording_state.tape),
      thread_(detail::thread_token()),
      previous_anomaly_(options.detect_anomaly && detail::set_anomaly_mode(true)) {
    if (options_.annotate) detail::count_observer(detail::observe_annotate, 1);
    detail::recording_state.tape = this;
}

Tape::~Tape() {
    if (options_.annotate) detail::count_observer(detail::observe_annotate, -1);
    if (options_.detect_anomaly) detail::set_anomaly_mode(previous_anomaly_);
    destroy_records();
    for (auto& stream : scalar_streams_) stream.reset();
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
    for (auto& stream : scalar_streams_) {
        if (stream) stream->clear();
    }
    if (notes_) notes_->clear();
    release_pins(false);
    ++epoch_;  // the low 32 bits count clears of this tape
}

void Tape::release_pins(bool all) noexcept {
    // After the records: they borrow the pinned nodes.
    std::size_t kept = 0;
    for (std::size_t i = 0; i < pins_.size(); ++i) {
        Pin pin = pins_[i];
        if (pin.used && !all) {
            pin.used = false;
            pin.first_record = no_record;
            if (kept != i) {
                pin.node->pin_hint.store((std::uint64_t{id()} << 32) | kept, std::memory_order_relaxed);
                pin_index_[pin.node] = kept;
            }
            pins_[kept++] = pin;
        } else {
            pin_index_.erase(pin.node);
            if (pin.claimed) unclaim(*pin.node);
            pin.release(pin.node);  // last: it may recycle the node
        }
    }
    pins_.resize(kept);
    if (all) pin_index_.clear();
}

bool Tape::pin_slowly(detail::NodeBase* node, void (*hold)(detail::NodeBase*) noexcept,
                      void (*release)(detail::NodeBase*) noexcept, bool claim, std::size_t reader) {
    // Another tape's hint, or none.
    std::size_t index;
    if (auto found = pin_index_.find(node); found != pin_index_.end()) {
        index = found->second;
    } else {
        index = pins_.size();
        // Room first (may throw: nothing done yet).
        if (pins_.size() == pins_.capacity()) pins_.reserve(std::max<std::size_t>(16, 2 * pins_.size()));
        const auto entry = pin_index_.emplace(node, index).first;
        if (claim && !claim_for(*node, thread_)) {
            pin_index_.erase(entry);
            return false;
        }
        hold(node);
        pins_.push_back({node, release, true, claim, reader});  // within the reserved capacity
    }
    pins_[index].used = true;
    if (pins_[index].first_record + 1 <= consumed_end_) pins_[index].first_record = reader;
    node->pin_hint.store((std::uint64_t{id()} << 32) | index, std::memory_order_relaxed);
    return true;
}

std::size_t Tape::bytes() const noexcept {
    std::size_t arena = 0;
    for (std::size_t size : chunk_sizes_) arena += size;
    std::size_t scalars = 0;
    for (const auto& stream : scalar_streams_) {
        if (stream) scalars += stream->bytes();
    }
    return records_.capacity() * sizeof(Record) + arena + scalars;
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
    if (detail::recording_state.observe) return run_observed(first, last, pass);
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
