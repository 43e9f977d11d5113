#pragma once
// The tape: a flat array of records in recording order, walked backwards.
//
// Each differentiable op, when it runs while a tape is current and one of its
// inputs requires a gradient, appends one record: a closure that maps the
// cotangent of the op's output to cotangents of its inputs (its VJP). A
// backward sweep runs the records from the loss's record down to the first:
// recording order is already a topological order, so no sort is needed.
//
// Closures live in an arena owned by the tape. clear() destroys them but keeps
// the arena's chunks and the record array's capacity, so a training loop that
// records the same graph every step allocates no tape storage after step one.
//
// A record holds its output's cotangent slot, not its output: values stay
// alive only while a user's handle or a VJP that reads them holds them, so the
// tape keeps what the backward sweep needs and nothing more (a dense layer's
// pre-activation dies as soon as its sigmoid has run).

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "autodiff/inline.hpp"
#include "autodiff/node_base.hpp"

namespace ad {

/// What a record is asked to do during a sweep.
enum class Pass {
    backward,          ///< push the output's cotangent to the inputs (the VJP), then drop it
    discard,           ///< drop the output's and the parameter inputs' cotangents (a failed sweep)
    reject_reached,    ///< throw tape_error if a cotangent reached the record
    describe,          ///< tell detail::describing() what the record holds (inspect.hpp)
};

struct TapeOptions {
    /// Keep every record's result alive, so that result(i) can show it
    /// (gradcheck uses this to find the first op whose VJP is wrong). Off,
    /// a record keeps its result only when its VJP reads it.
    bool keep_results = false;
    /// Anomaly mode while this tape is current (as DetectAnomaly does).
    bool detect_anomaly = false;
    /// Keep each record's call site and module path (debug.hpp), for graph
    /// export and error messages, without checking values.
    bool annotate = false;
};

class Tape;
class SweepListener;

namespace detail {

struct TapeNotes;

/// The compact records of the 0-d ops of one element type (scalar_tape.hpp),
/// which a tape owns beside its closures. Not a template here, so that the
/// tape can clear and size them without knowing their element type.
class ScalarStreamBase {
public:
    virtual ~ScalarStreamBase() = default;
    virtual void clear() noexcept = 0;
    virtual std::size_t bytes() const noexcept = 0;
    /// Ops recorded (entries) and the records that hold them (runs).
    virtual std::size_t entry_count() const noexcept = 0;
    virtual std::size_t run_count() const noexcept = 0;
};

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
    /// straight into their gradients (detail::lend_grad_buffer).
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

}  // namespace detail

class Tape {
public:
    /// Makes this tape the current one of the calling thread; the previous one
    /// (if any) becomes current again when this tape is destroyed.
    explicit Tape(TapeOptions options = {});
    ~Tape();
    Tape(const Tape&) = delete;
    Tape& operator=(const Tape&) = delete;

    /// The tape ops record on in this thread, or nullptr.
    static Tape* current() noexcept { return detail::recording_state.tape; }

    /// Drops every record (values recorded before become unusable in ops and
    /// backward) but keeps the storage for the next step.
    void clear();

    /// Number of records. The consecutive 0-d ops of the scalar stream share
    /// one record (scalar_tape.hpp): ops() counts each.
    std::size_t size() const noexcept { return records_.size(); }
    /// Number of ops recorded.
    std::size_t ops() const noexcept {
        std::size_t n = records_.size();
        for (const auto& stream : scalar_streams_) {
            if (stream) n += stream->entry_count() - stream->run_count();
        }
        return n;
    }
    bool empty() const noexcept { return records_.empty(); }

    /// Bytes of the tape's own storage: the record array and the closure
    /// arena. The values the closures keep alive are on the heap beside it.
    std::size_t bytes() const noexcept;

    bool keeps_results() const noexcept { return options_.keep_results; }

    /// The call sites and module paths of records made while annotating
    /// (debug.hpp); nullptr when none were.
    detail::TapeNotes* notes() const noexcept { return notes_.get(); }
    detail::TapeNotes& make_notes();

    /// Identifies this tape between two clears; values recorded on it carry it.
    std::uint64_t epoch() const noexcept { return epoch_; }
    std::uint32_t id() const noexcept { return static_cast<std::uint32_t>(epoch_ >> 32); }

    /// Appends a record; `closure` must be callable as `closure(Pass)` and
    /// have members `op` (the op's name), `slot` (where its output's
    /// cotangent accumulates) and `result` (a Var, possibly empty).
    template <class Closure>
    void record(Closure&& closure) {
        using C = std::decay_t<Closure>;
        record_in_place<C>([&](void* memory) { return new (memory) C(std::forward<Closure>(closure)); });
    }

    /// The same, with the closure built by `construct(memory)` straight in
    /// the arena (a record is some hundred bytes: building it elsewhere and
    /// moving it in cost a tenth of a small op). If construct throws, the
    /// tape is as it was.
    template <class C, class Construct>
    AD_INLINE void record_in_place(Construct&& construct);

    /// The name of the op of record i.
    const char* op_name(std::size_t i) const { return records_.at(i).op; }
    /// The result of record i, or nullptr when the record does not keep it
    /// (see TapeOptions) or holds another element type.
    template <class VarType>
    const VarType* result(std::size_t i) const {
        const Record& r = records_.at(i);
        return r.element_size == sizeof(typename VarType::value_type) ? static_cast<const VarType*>(r.result) : nullptr;
    }
    /// The cotangent slot of record i, which the caller knows to be a `Slot`
    /// (the record of a value of that element type).
    template <class Slot>
    Slot& slot(std::size_t i) const noexcept { return *static_cast<Slot*>(records_[i].slot); }

    /// Runs `pass` on records [first, last) from last-1 down to first.
    void run(std::size_t first, std::size_t last, Pass pass);
    /// Runs Pass::describe on record i (inspect.hpp).
    void describe(std::size_t i) const { records_.at(i).run(records_[i].closure, Pass::describe); }

    /// Pins `node`, a leaf (a constant or a parameter), to this tape until the
    /// clear() that ends a step which did not use it, so that the records of
    /// every step in between borrow it (detail::Kept, the records' parameter
    /// inputs) instead of counting references: an atomic count costs some
    /// 5 ns each way, and a training step's records capture its parameters,
    /// data and targets every step. `hold` adds the pin's count when the node
    /// is new here, `release` drops it. With `claim` (a parameter) the node
    /// is also claimed for this thread (NodeBase::owner): false, and nothing
    /// pinned, when tapes of another thread hold it.
    /// `reader` is the record that reads the node: the next one by default.
    AD_INLINE bool pin(detail::NodeBase* node, void (*hold)(detail::NodeBase*) noexcept,
                       void (*release)(detail::NodeBase*) noexcept, bool claim, std::size_t reader = no_record) {
        // The node remembers where its pin is: found in a load and two compares.
        const std::uint64_t hint = node->pin_hint.load(std::memory_order_relaxed);
        const std::size_t index = static_cast<std::uint32_t>(hint);
        if ((hint >> 32) == id() && index < pins_.size() && pins_[index].node == node) {
            Pin& pin = pins_[index];
            pin.used = true;
            // Unset (no_record wraps to 0) or read only by records a sweep consumed.
            if (pin.first_record + 1 <= consumed_end_) pin.first_record = reader == no_record ? records_.size() : reader;
            return true;
        }
        return pin_slowly(node, hold, release, claim, reader == no_record ? records_.size() : reader);
    }
    /// Nodes pinned now.
    std::size_t pins() const noexcept { return pins_.size(); }
    /// Where the pin of `node` is, right after pin(node, ...) succeeded; it
    /// stays there until the next clear().
    static std::size_t pin_index(const detail::NodeBase* node) noexcept {
        return static_cast<std::uint32_t>(node->pin_hint.load(std::memory_order_relaxed));
    }
    /// The node of pin `index`.
    detail::NodeBase* pinned(std::size_t index) const noexcept { return pins_[index].node; }

    /// The scalar stream `which` (0: float, 1: double), or nullptr before the
    /// first 0-d op of that type recorded here (scalar_tape.hpp).
    detail::ScalarStreamBase* scalar_stream(std::size_t which) const noexcept { return scalar_streams_[which].get(); }
    void set_scalar_stream(std::size_t which, std::unique_ptr<detail::ScalarStreamBase> stream) noexcept {
        scalar_streams_[which] = std::move(stream);
    }

    /// The first record, at or above consumed_end(), that reads the pinned
    /// `node` (a parameter an op took as input, or whose value a VJP reads):
    /// a backward sweep has summed the node's whole cotangent once it has run
    /// that record. no_record when no record since consumed_end() reads it.
    static constexpr std::size_t no_record = ~std::size_t{0};  // + 1 wraps to 0: see pin()
    std::size_t first_record_of(const detail::NodeBase* node) const noexcept {
        const std::uint64_t hint = node->pin_hint.load(std::memory_order_relaxed);
        const std::size_t index = static_cast<std::uint32_t>(hint);
        const Pin* pin = nullptr;
        if ((hint >> 32) == id() && index < pins_.size() && pins_[index].node == node) {
            pin = &pins_[index];
        } else if (auto found = pin_index_.find(node); found != pin_index_.end()) {
            pin = &pins_[found->second];
        }
        return pin && pin->first_record + 1 > consumed_end_ ? pin->first_record : no_record;
    }

    /// Records with index below this were walked by a backward() that did not
    /// keep the graph.
    std::size_t consumed_end() const noexcept { return consumed_end_; }
    void consume(std::size_t end) noexcept {
        if (end > consumed_end_) consumed_end_ = end;
    }

private:
    struct Record {
        void* closure;
        void (*run)(void*, Pass);
        void (*destroy)(void*) noexcept;
        const char* op;
        void* slot;
        const void* result;
        std::size_t element_size;
    };

    /// Room for a closure in the arena: a bump of the offset, inline, on
    /// the path every op takes; a new chunk only out of line. `align` is a
    /// power of two (an alignof), so rounding up is a mask, not a division.
    void* allocate(std::size_t size, std::size_t align) {
        const std::size_t start = (offset_ + align - 1) & ~(align - 1);
        if (chunk_ < chunks_.size() && start + size <= chunk_sizes_[chunk_]) {
            offset_ = start + size;
            return chunks_[chunk_].get() + start;
        }
        return allocate_in_next_chunk(size, align);
    }
    void* allocate_in_next_chunk(std::size_t size, std::size_t align);
    /// run() with the debugging tools on: each record is timed, and a VJP
    /// that fails anomaly mode's check is named with its forward call site.
    void run_observed(std::size_t first, std::size_t last, Pass pass);
    void destroy_records() noexcept;
    /// Drops the pins that the step just cleared did not use (all of them when `all`).
    void release_pins(bool all) noexcept;

    struct Pin {
        detail::NodeBase* node;
        void (*release)(detail::NodeBase*) noexcept;
        bool used;     // by a record since the last clear()
        bool claimed;  // a parameter, claimed for this thread (NodeBase::owner)
        std::size_t first_record;  // see first_record_of
    };
    bool pin_slowly(detail::NodeBase* node, void (*hold)(detail::NodeBase*) noexcept,
                    void (*release)(detail::NodeBase*) noexcept, bool claim, std::size_t reader);

    // Chunks grow from small (a small model's step fits in the first) to a
    // size where one allocation serves hundreds of records.
    static constexpr std::size_t first_chunk_size_ = 4 * 1024;
    static constexpr std::size_t max_chunk_size_ = 64 * 1024;
    TapeOptions options_;
    std::vector<Record> records_;
    std::vector<std::unique_ptr<std::byte[]>> chunks_;
    std::vector<std::size_t> chunk_sizes_;
    std::size_t chunk_ = 0;          // chunk being filled
    std::size_t offset_ = 0;         // first free byte in it
    std::size_t consumed_end_ = 0;
    std::uint64_t epoch_;
    Tape* previous_;
    std::uint32_t thread_;  // detail::thread_token() of the thread the tape records on
    std::vector<Pin> pins_;
    // Where each pinned node's pin is, for nodes whose pin_hint another tape
    // overwrote or that are new here: a search through the pins made the
    // first step of a model with many parameters quadratic in their number.
    std::unordered_map<const detail::NodeBase*, std::size_t> pin_index_;
    std::array<std::unique_ptr<detail::ScalarStreamBase>, 2> scalar_streams_;
    std::unique_ptr<detail::TapeNotes> notes_;
    bool previous_anomaly_;  // anomaly mode before this tape turned it on (TapeOptions::detect_anomaly)
};

template <class C, class Construct>
void Tape::record_in_place(Construct&& construct) {
    static_assert(alignof(C) <= alignof(std::max_align_t), "arena chunks are max_align_t aligned");
    // Room first (geometric growth; may throw while nothing has changed), so
    // the push_back below cannot fail after the closure is in the arena.
    if (records_.size() == records_.capacity()) records_.reserve(std::max<std::size_t>(64, 2 * records_.capacity()));
    const std::size_t chunk = chunk_, offset = offset_;
    void* memory = allocate(sizeof(C), alignof(C));
    C* stored;
    try {
        stored = construct(memory);
    } catch (...) {
        chunk_ = chunk;
        offset_ = offset;
        throw;
    }
    // Field by field into the vector's own storage: a Record built on the
    // stack and copied in is read back with wider loads than it was written
    // with, and that store-to-load stall cost a tenth of a small op.
    Record& record = records_.emplace_back();
    record.closure = stored;
    record.run = [](void* c, Pass pass) { (*static_cast<C*>(c))(pass); };
    record.destroy = [](void* c) noexcept { static_cast<C*>(c)->~C(); };
    record.op = stored->op;
    record.slot = &stored->slot;
    record.result = stored->result.defined() ? &stored->result : nullptr;
    record.element_size = sizeof(typename decltype(stored->result)::value_type);
}

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

/// Whether ops record (true unless inside a NoGrad scope) on this thread.
inline bool grad_enabled() noexcept { return detail::recording_state.grad_enabled; }

/// Scope in which ops compute values only and record nothing, like
/// `torch.no_grad()`. Nestable.
class NoGrad {
public:
    NoGrad() noexcept;
    ~NoGrad();
    NoGrad(const NoGrad&) = delete;
    NoGrad& operator=(const NoGrad&) = delete;

private:
    bool previous_;
};

/// Scope that turns recording back on inside a NoGrad scope (used by
/// backward with create_graph).
class EnableGrad {
public:
    EnableGrad() noexcept;
    ~EnableGrad();
    EnableGrad(const EnableGrad&) = delete;
    EnableGrad& operator=(const EnableGrad&) = delete;

private:
    bool previous_;
};

}  // namespace ad
