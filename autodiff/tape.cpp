#include "autodiff/tape.hpp"

#include <atomic>

#include "autodiff/debug.hpp"
#include "autodiff/memory/biased_count.hpp"
#include "autodiff/observe.hpp"
#include "autodiff/scalar_tape.hpp"

namespace ad {
namespace {

std::atomic<std::uint32_t> next_tape_id{1};

}  // namespace

Tape::Tape(TapeOptions options)
    : options_(options),
      epoch_(std::uint64_t{next_tape_id.fetch_add(1)} << 32),
      previous_(detail::recording_state.tape),
      pins_(id(), detail::thread_token()),
      previous_anomaly_(options.detect_anomaly && detail::set_anomaly_mode(true)) {
    if (options_.annotate) detail::count_observer(detail::observe_annotate, 1);
    detail::recording_state.tape = this;
}

Tape::~Tape() {
    if (options_.annotate) detail::count_observer(detail::observe_annotate, -1);
    if (options_.detect_anomaly) detail::set_anomaly_mode(previous_anomaly_);
    destroy_records();
    for (auto& stream : scalar_streams_) stream.reset();
    pins_.release(true);  // after the records: they borrow the pinned nodes
    // Tapes are scoped objects, so they are destroyed in reverse order of
    // creation and the previous tape becomes current again.
    detail::recording_state.tape = previous_;
}

void Tape::destroy_records() noexcept {
    for (auto it = records_.rbegin(); it != records_.rend(); ++it) it->destroy(it->closure);
    records_.clear();
    arena_.reset();
    consumed_end_ = 0;
}

void Tape::clear() {
    destroy_records();
    for (auto& stream : scalar_streams_) {
        if (stream) stream->clear();
    }
    if (notes_) notes_->clear();
    pins_.release(false);
    ++epoch_;  // the low 32 bits count clears of this tape
    // Values of this thread that other threads dropped last are freed here.
    detail::merge_if_queued();
}

void Tape::run(std::size_t first, std::size_t last, Pass pass) {
    if (detail::recording_state.observe) return run_observed(first, last, pass);
    // Indexing (not iterators): a create_graph sweep appends records while it runs.
    for (std::size_t i = last; i-- > first;) {
        Record record = records_[i];
        record.run(record.closure, pass);
    }
}

void Tape::consume(std::size_t end) noexcept {
    if (end <= consumed_end_) return;
    consumed_end_ = end;
    pins_.consume(end);
}

std::size_t Tape::ops() const noexcept {
    std::size_t n = records_.size();
    for (const auto& stream : scalar_streams_) {
        if (stream) n += stream->entry_count() - stream->run_count();
    }
    return n;
}

std::size_t Tape::bytes() const noexcept {
    std::size_t scalars = 0;
    for (const auto& stream : scalar_streams_) {
        if (stream) scalars += stream->bytes();
    }
    return records_.capacity() * sizeof(Record) + arena_.bytes() + scalars;
}

void Tape::set_scalar_stream(std::size_t which, std::unique_ptr<detail::ScalarStreamBase> stream) noexcept {
    scalar_streams_[which] = std::move(stream);
}

}  // namespace ad
