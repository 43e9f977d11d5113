#pragma once
// What decides, on each thread, whether ops record: the current tape, grad
// mode (NoGrad, EnableGrad), the debugging tools that watch ops, and who
// listens to backward sweeps.

#include <cstdint>
#include <cstddef>
#include <utility>

namespace ad {

class Tape;
class SweepListener;

namespace detail {

/// What watches ops on this thread (RecordingState::observe): bits that turn
/// on the slow path of every op and record (debug.hpp), one byte tested on
/// the fast path.
enum Observe : std::uint8_t {
    observe_anomaly = 1,   ///< check values for NaN and infinity (DetectAnomaly)
    observe_profile = 2,   ///< time ops and records (Profile)
    observe_annotate = 4,  ///< note records' call sites and module paths
    observe_modules = 8,   ///< nn module calls are watched (nn::summary)
};

/// The calling thread's current tape and grad mode. Every op reads both:
/// an inline variable makes that two loads instead of two calls.
struct RecordingState {
    Tape* tape = nullptr;
    bool grad_enabled = true;
    /// A backward() sweep is running that may compute parameters' cotangents
    /// straight into their gradients (memory/grad_buffers.hpp).
    bool lending_grads = false;
    /// Observe bits: zero unless a debugging tool is on.
    std::uint8_t observe = 0;
    /// 0-d ops may record on the tape's scalar stream (scalar_tape.hpp);
    /// off while a recording sweep replays one of them through its op.
    bool scalar_records = true;
    /// Watches this thread's backward() sweeps (listen_to_sweeps), or nullptr.
    SweepListener* sweep_listener = nullptr;
};
inline thread_local RecordingState recording_state;

/// Whether ops record at all on this thread now (a tape is current and grad
/// mode is on). The ops that VJPs call return before building their own VJP
/// when this is false, as during a backward sweep without create_graph.
inline bool recording() noexcept { return recording_state.tape && recording_state.grad_enabled; }

}  // namespace detail

/// Whether ops record (true unless inside a NoGrad scope) on this thread.
inline bool grad_enabled() noexcept { return detail::recording_state.grad_enabled; }

/// Sets grad mode on this thread for a scope, and restores it at the end.
class GradModeScope {
public:
    explicit GradModeScope(bool enabled) noexcept
        : previous_(std::exchange(detail::recording_state.grad_enabled, enabled)) {}
    ~GradModeScope() { detail::recording_state.grad_enabled = previous_; }
    GradModeScope(const GradModeScope&) = delete;
    GradModeScope& operator=(const GradModeScope&) = delete;

private:
    bool previous_;
};

/// Scope in which ops compute values only and record nothing, like
/// `torch.no_grad()`. Nestable.
class NoGrad : public GradModeScope {
public:
    NoGrad() noexcept : GradModeScope(false) {}
};

/// Scope that turns recording back on inside a NoGrad scope (used by
/// backward with create_graph).
class EnableGrad : public GradModeScope {
public:
    EnableGrad() noexcept : GradModeScope(true) {}
};

/// Watches the backward() sweeps of this thread (not grad(), which leaves
/// grad() alone): nn::DistributedDataParallel sends a parameter's gradient
/// to the other processes as soon as the sweep has run the first record
/// that reads the parameter (Tape::first_record_of), while the sweep goes on.
/// A sweep started inside a VJP (a nested backward) is not watched.
class SweepListener {
public:
    virtual ~SweepListener() = default;
    /// The sweep is about to run records [first, end) of `tape`, from end-1 down.
    virtual void sweep_begins(const Tape& tape, std::size_t first, std::size_t end) = 0;
    /// The sweep has run record `index` and every record above it.
    virtual void record_done(std::size_t index) = 0;
    /// The sweep has ended and every parameter's grad() holds its sum.
    virtual void sweep_ends() = 0;
    /// The sweep failed; its exception propagates when this returns.
    virtual void sweep_failed() noexcept = 0;
};

/// Sets the calling thread's sweep listener (nullptr: none) and returns the previous one.
inline SweepListener* listen_to_sweeps(SweepListener* listener) noexcept {
    return std::exchange(detail::recording_state.sweep_listener, listener);
}
/// The calling thread's sweep listener, or nullptr.
inline SweepListener* sweep_listener() noexcept { return detail::recording_state.sweep_listener; }

}  // namespace ad
