#pragma once
// The tape: a flat array of records in recording order, walked backwards.
//
// Each differentiable op, when it runs while a tape is current and one of its
// inputs requires a gradient, appends one record (record.hpp): a closure that
// maps the cotangent of the op's output to cotangents of its inputs. A
// backward sweep (backward.cpp) runs the records from the loss's record down
// to the first: recording order is already a topological order, so no sort
// is needed. clear() drops the records but keeps their storage, so a training
// loop that records the same graph every step allocates no tape storage after
// the first.
//
// Beside the records a tape holds the leaves its records borrow
// (memory/pins.hpp) and the compact entries of its 0-d ops (scalar_tape.hpp).

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

#include "autodiff/grad_mode.hpp"
#include "autodiff/inline.hpp"
#include "autodiff/memory/arena.hpp"
#include "autodiff/memory/pins.hpp"

namespace ad {

/// What a record is asked to do during a sweep.
enum class Pass {
    backward,        ///< push the output's cotangent to the inputs (the VJP), then drop it
    discard,         ///< drop the output's and the parameter inputs' cotangents (a failed sweep)
    reject_reached,  ///< throw tape_error if a cotangent reached the record
    describe,        ///< tell detail::describing() what the record holds (observe.hpp)
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

namespace detail {
struct TapeNotes;
class ScalarStreamBase;
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

    /// Appends a record: `closure` is callable as `closure(Pass)` and has
    /// members `op` (the op's name), `slot` (where its output's cotangent
    /// accumulates) and `result` (a Var, possibly empty).
    template <class Closure>
    void record(Closure&& closure) {
        using C = std::decay_t<Closure>;
        record_in_place<C>([&](void* memory) { return new (memory) C(std::forward<Closure>(closure)); });
    }
    /// The same, with the closure built by `construct(memory)` straight in
    /// the arena. If construct throws, the tape is as it was.
    template <class C, class Construct>
    AD_INLINE void record_in_place(Construct&& construct);

    /// Runs `pass` on records [first, last) from last-1 down to first.
    void run(std::size_t first, std::size_t last, Pass pass);

    /// Drops every record (values recorded before become unusable in ops and
    /// backward) but keeps the storage for the next step.
    void clear();

    /// Number of records. The consecutive 0-d ops of the scalar stream share
    /// one record (scalar_tape.hpp): ops() counts each.
    std::size_t size() const noexcept { return records_.size(); }
    std::size_t ops() const noexcept;
    bool empty() const noexcept { return records_.empty(); }
    /// Bytes of the tape's own storage: the record array, the arena, the
    /// scalar entries. The values the closures keep alive are on the heap.
    std::size_t bytes() const noexcept;
    bool keeps_results() const noexcept { return options_.keep_results; }

    /// Identifies this tape between two clears; values recorded on it carry it.
    std::uint64_t epoch() const noexcept { return epoch_; }
    std::uint32_t id() const noexcept { return static_cast<std::uint32_t>(epoch_ >> 32); }

    /// Records with index below this were walked by a backward() that did not
    /// keep the graph.
    std::size_t consumed_end() const noexcept { return consumed_end_; }
    void consume(std::size_t end) noexcept;

    // Reading records back (debugging tools, gradcheck).
    /// The name of the op of record i.
    const char* op_name(std::size_t i) const { return records_.at(i).op; }
    /// The result of record i, or nullptr when the record does not keep it
    /// (see TapeOptions) or holds another element type.
    template <class VarType>
    const VarType* result(std::size_t i) const {
        const Record& r = records_.at(i);
        return r.element_size == sizeof(typename VarType::value_type) ? static_cast<const VarType*>(r.result) : nullptr;
    }
    /// The cotangent slot of record i, which the caller knows to be a `Slot`.
    template <class Slot>
    Slot& slot(std::size_t i) const noexcept { return *static_cast<Slot*>(records_[i].slot); }
    /// Runs Pass::describe on record i (observe.hpp).
    void describe(std::size_t i) const { records_.at(i).run(records_[i].closure, Pass::describe); }
    /// The call sites and module paths of records made while annotating
    /// (debug.hpp); nullptr when none were.
    detail::TapeNotes* notes() const noexcept { return notes_.get(); }
    detail::TapeNotes& make_notes();

    // The leaves pinned to this tape (memory/pins.hpp).
    static constexpr std::size_t no_record = detail::PinTable::no_record;
    /// Pins leaf `node` for record `reader` (by default the next one); false
    /// when `claim` (a parameter) and another thread's tapes hold it.
    AD_INLINE bool pin(detail::NodeBase* node, detail::PinTable::Hold hold, detail::PinTable::Hold release, bool claim,
                       std::size_t reader = no_record) {
        // The next record's index is computed only when the pin needs it.
        auto next = [this, reader] { return reader == no_record ? records_.size() : reader; };
        return pins_.pin(node, hold, release, claim, next);
    }
    std::size_t pins() const noexcept { return pins_.size(); }
    static std::size_t pin_index(const detail::NodeBase* node) noexcept { return detail::PinTable::index_of(node); }
    detail::NodeBase* pinned(std::size_t index) const noexcept { return pins_.pinned(index); }
    /// The first record, at or above consumed_end(), that reads the pinned
    /// `node`: a backward sweep has summed the node's whole cotangent once it
    /// has run that record. no_record when no such record reads it.
    std::size_t first_record_of(const detail::NodeBase* node) const noexcept { return pins_.first_record_of(node); }

    /// The scalar stream `which` (0: float, 1: double), or nullptr before the
    /// first 0-d op of that type recorded here (scalar_tape.hpp).
    detail::ScalarStreamBase* scalar_stream(std::size_t which) const noexcept { return scalar_streams_[which].get(); }
    void set_scalar_stream(std::size_t which, std::unique_ptr<detail::ScalarStreamBase> stream) noexcept;

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

    /// run() with the debugging tools on: each record is timed, and a VJP
    /// that fails anomaly mode's check is named with its forward call site.
    void run_observed(std::size_t first, std::size_t last, Pass pass);
    void destroy_records() noexcept;

    TapeOptions options_;
    std::vector<Record> records_;
    detail::Arena arena_;  // the closures
    std::size_t consumed_end_ = 0;
    std::uint64_t epoch_;
    Tape* previous_;
    detail::PinTable pins_;
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
    const detail::Arena::Mark mark = arena_.mark();
    void* memory = arena_.allocate(sizeof(C), alignof(C));
    C* stored;
    try {
        stored = construct(memory);
    } catch (...) {
        arena_.rewind(mark);
        throw;
    }
    // Field by field into the vector's own storage: a Record built on the
    // stack and copied in is read back with wider loads than it was written
    // with, a store-to-load stall on every op.
    Record& record = records_.emplace_back();
    record.closure = stored;
    record.run = [](void* c, Pass pass) { (*static_cast<C*>(c))(pass); };
    record.destroy = [](void* c) noexcept { static_cast<C*>(c)->~C(); };
    record.op = stored->op;
    record.slot = &stored->slot;
    record.result = stored->result.defined() ? &stored->result : nullptr;
    record.element_size = sizeof(typename decltype(stored->result)::value_type);
}

}  // namespace ad
