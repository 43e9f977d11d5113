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

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

namespace ad {

/// What a record is asked to do during a sweep.
enum class Pass {
    backward,              ///< push the output's cotangent to the inputs (the VJP)
    finalize_accumulate,   ///< leaves add their cotangent into grad(); all cotangents reset
    finalize_discard,      ///< all cotangents reset; grad() untouched
    reject_reached,        ///< throw tape_error if a cotangent reached the record
};

class Tape {
public:
    /// Makes this tape the current one of the calling thread; the previous one
    /// (if any) becomes current again when this tape is destroyed.
    Tape();
    ~Tape();
    Tape(const Tape&) = delete;
    Tape& operator=(const Tape&) = delete;

    /// The tape ops record on in this thread, or nullptr.
    static Tape* current() noexcept;

    /// Drops every record (values recorded before become unusable in ops and
    /// backward) but keeps the storage for the next step.
    void clear();

    /// Number of records.
    std::size_t size() const noexcept { return records_.size(); }
    bool empty() const noexcept { return records_.empty(); }

    /// Bytes held: the record array, the closure arena, and the output values
    /// the records keep alive.
    std::size_t bytes() const noexcept;

    /// Identifies this tape between two clears; values recorded on it carry it.
    std::uint64_t epoch() const noexcept { return epoch_; }
    std::uint32_t id() const noexcept { return static_cast<std::uint32_t>(epoch_ >> 32); }

    /// Appends a record; `closure` must be callable as `closure(Pass)` and
    /// have members `op` (the op's name) and `result` (a Var). `value_bytes`
    /// is what the record keeps alive beyond the closure itself.
    template <class Closure>
    void record(Closure&& closure, std::size_t value_bytes);

    /// The name of the op of record i.
    const char* op_name(std::size_t i) const { return records_.at(i).op; }
    /// The result of record i, or nullptr when it holds another element type.
    template <class VarType>
    const VarType* result(std::size_t i) const {
        const Record& r = records_.at(i);
        return r.element_size == sizeof(typename VarType::value_type) ? static_cast<const VarType*>(r.result) : nullptr;
    }

    /// Runs `pass` on records [first, last) from last-1 down to first.
    void run(std::size_t first, std::size_t last, Pass pass);

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
        std::size_t value_bytes;
        const char* op;
        const void* result;
        std::size_t element_size;
    };

    void* allocate(std::size_t size, std::size_t align);
    void destroy_records() noexcept;

    static constexpr std::size_t chunk_size_ = 64 * 1024;
    std::vector<Record> records_;
    std::vector<std::unique_ptr<std::byte[]>> chunks_;
    std::vector<std::size_t> chunk_sizes_;
    std::size_t chunk_ = 0;          // chunk being filled
    std::size_t offset_ = 0;         // first free byte in it
    std::size_t value_bytes_ = 0;
    std::size_t consumed_end_ = 0;
    std::uint64_t epoch_;
    Tape* previous_;
};

template <class Closure>
void Tape::record(Closure&& closure, std::size_t value_bytes) {
    using C = std::decay_t<Closure>;
    static_assert(alignof(C) <= alignof(std::max_align_t), "arena chunks are max_align_t aligned");
    // Room first (geometric growth; may throw while nothing has changed), so
    // the push_back below cannot fail after the closure is in the arena.
    if (records_.size() == records_.capacity()) records_.reserve(std::max<std::size_t>(64, 2 * records_.capacity()));
    void* memory = allocate(sizeof(C), alignof(C));
    C* stored = new (memory) C(std::forward<Closure>(closure));
    records_.push_back(Record{
        stored,
        [](void* c, Pass pass) { (*static_cast<C*>(c))(pass); },
        [](void* c) noexcept { static_cast<C*>(c)->~C(); },
        value_bytes, stored->op, &stored->result, sizeof(typename decltype(stored->result)::value_type)});
    value_bytes_ += value_bytes;
}

/// Whether ops record (true unless inside a NoGrad scope) on this thread.
bool grad_enabled() noexcept;

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
