#pragma once
// The scalar stream: how a tape records ops on 0-d values.
//
// An op on a single number does almost no arithmetic, so what it costs is
// the machinery around it: a closure, a node kept alive for the VJP, a new
// cotangent value per input in the sweep. Scalar code (physics models, ODE
// integrators, hand-written loops) is made of such ops. For them the tape
// keeps, as Adept and ADOL-C do, one fixed-size entry per op in a flat array:
// the operands' values (a unary op: its input and its local derivative),
// where each operand's cotangent goes, and the op's own cotangent as a
// number. The reverse sweep over the entries is one loop of multiply-adds; no
// value stays alive for it and nothing is allocated per op.
//
// The entries of consecutive 0-d ops form one record on the tape (a
// ScalarRun), so they keep their place among the other records. A value an
// entry made carries the entry's index in its record_index, tagged with
// scalar_record_bit. Other records reach its cotangent through a "bridge"
// slot that the entry makes when asked (scalar_slot); the sweep adds the
// bridge's cotangent to the entry's own.
//
// A sweep that records (create_graph) replays each entry through its op's
// general path (ScalarRule::apply) on stand-ins that lead to the same
// cotangent slots, and runs that record's VJP at once: double backward goes
// through each op's own VJP.

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <utility>
#include <vector>

#include "autodiff/record.hpp"

namespace ad::detail {

/// The compact records of the 0-d ops of one element type, which a tape owns
/// beside its closures (Tape::scalar_stream). Not a template, so that the
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

/// How an op recorded on the scalar stream reaches the general path again.
/// Each op has one, static; entries name it by `id`, two bytes instead of a
/// pointer's eight.
template <class T>
struct ScalarRule {
    const char* op;
    /// The op on Vars, by its general path, for a recording sweep:
    /// `apply(inputs, values)` with the entry's stored values (a unary op's
    /// local derivative is values[1]; affine reads its factor there).
    Var<T> (*apply)(const Var<T>* inputs, const T* values);
    /// 1 + its index among the rules, given when first recorded (0: not yet).
    std::atomic<std::uint16_t> id{0};
};

/// Gives `rule` its id (once; thread-safe).
template <class T>
std::uint16_t register_scalar_rule(ScalarRule<T>& rule);

/// The rule of id `id`.
template <class T>
const ScalarRule<T>& scalar_rule(std::uint16_t id) noexcept;

/// How the sweep turns an entry's cotangent g into its operands' cotangents;
/// each the same expression as the op's VJP (elementwise.cpp).
enum class ScalarKind : std::uint8_t {
    unary,  ///< g * values[1] (the local derivative)
    add,    ///< g, g
    sub,    ///< g, -g
    mul,    ///< g b, g a
    div,    ///< g / b, -(g y / b)
};

/// One 0-d op: 40 bytes for double, 28 for float.
template <class T>
struct ScalarEntry {
    T values[2];  // binary: a and b; unary: x and dy/dx
    T adjoint;    // d loss / d result, as it sums during a sweep
    // Where operand i's cotangent goes, a tag in the low two bits: 0 none (a
    // constant), 1 entry (from >> 2), 2 the parameter of pin (from >> 2), 3
    // the slot of record (from >> 2).
    std::uint32_t from[2];
    std::uint32_t bridge;  // 1 + index of this entry's bridge slot; 0: none
    std::uint16_t rule;    // ScalarRule::id
    ScalarKind kind;
    std::uint8_t flags;  // reached, keep
};

/// The entries, in blocks of a fixed size: the tape's memory stays within a
/// block of what it records (a doubling array can hold twice that), an entry
/// never moves, and a long tape grows without copying.
template <class T>
class ScalarEntries {
public:
    ScalarEntry<T>& operator[](std::size_t k) noexcept { return blocks_[k >> block_bits][k & (block_size - 1)]; }
    const ScalarEntry<T>& operator[](std::size_t k) const noexcept {
        return blocks_[k >> block_bits][k & (block_size - 1)];
    }
    std::size_t size() const noexcept { return size_; }
    /// Room for one more entry (may throw, changing nothing); push() then cannot throw.
    void reserve_one() {
        if (size_ < blocks_.size() * block_size) return;
        std::unique_ptr<ScalarEntry<T>[]> block(new ScalarEntry<T>[block_size]);
        blocks_.push_back(std::move(block));
    }
    ScalarEntry<T>& push() noexcept { return (*this)[size_++]; }
    /// Forgets the entries, keeping the blocks for the next step.
    void clear() noexcept { size_ = 0; }
    std::size_t bytes() const noexcept {
        return blocks_.size() * block_size * sizeof(ScalarEntry<T>) + blocks_.capacity() * sizeof(blocks_[0]);
    }

private:
    static constexpr std::size_t block_bits = 8;
    static constexpr std::size_t block_size = std::size_t(1) << block_bits;
    std::vector<std::unique_ptr<ScalarEntry<T>[]>> blocks_;
    std::size_t size_ = 0;
};

enum : std::uint8_t {
    scalar_reached = 1,  ///< a cotangent arrived in `adjoint` during this sweep
    scalar_keep = 2,     ///< the sweep leaves the entry's cotangent in its bridge (grad of this value)
};

/// Indices in `from` and the number of entries stay below this.
constexpr std::size_t scalar_index_limit = std::size_t(1) << 30;

template <class T>
struct ScalarRun;

template <class T>
class ScalarStream final : public ScalarStreamBase {
public:
    void clear() noexcept override {
        entries.clear();
        bridges.clear();
        runs.clear();
        open_run = nullptr;
    }
    std::size_t bytes() const noexcept override {
        return entries.bytes() + bridges.size() * sizeof(NodeRef<T>) + runs.capacity() * sizeof(RunStart);
    }

    std::size_t entry_count() const noexcept override { return entries.size(); }
    std::size_t run_count() const noexcept override { return runs.size(); }

    struct RunStart {
        std::size_t first_entry;
        std::size_t record;
    };

    ScalarEntries<T> entries;
    std::deque<NodeRef<T>> bridges;  // a deque: records keep pointers to them
    std::vector<RunStart> runs;      // where each run starts, to find an entry's record
    ScalarRun<T>* open_run = nullptr;  // the run new entries join while it is the tape's last record
};

/// Which of a tape's scalar streams holds element type T.
template <class T>
constexpr std::size_t scalar_stream_index = sizeof(T) == sizeof(double) ? 1 : 0;

/// The scalar stream of element type T on `tape`, made on first use.
template <class T>
ScalarStream<T>& scalar_stream(Tape& tape) {
    if (ScalarStreamBase* stream = tape.scalar_stream(scalar_stream_index<T>)) {
        return *static_cast<ScalarStream<T>*>(stream);
    }
    tape.set_scalar_stream(scalar_stream_index<T>, std::make_unique<ScalarStream<T>>());
    return *static_cast<ScalarStream<T>*>(tape.scalar_stream(scalar_stream_index<T>));
}

/// The scalar stream of element type T on `tape`, which has recorded a value
/// of that type there (so the stream exists).
template <class T>
ScalarStream<T>& recorded_stream(const Tape& tape) {
    return *static_cast<ScalarStream<T>*>(tape.scalar_stream(scalar_stream_index<T>));
}

/// The record of the entries [first, last) of a stream.
template <class T>
struct ScalarRun {
    const char* op = "scalar ops";
    CotangentSlot<T> slot;  // unused: the entries hold the cotangents
    Var<T> result;          // none
    Tape* tape;
    ScalarStream<T>* stream;
    std::size_t first;
    std::size_t last;

    void operator()(Pass pass);

private:
    void sweep();
    void sweep_recorded();
    void send(std::uint32_t to, T cotangent);
    Var<T> stand_in(std::uint32_t from, T value) const;
    void discard() noexcept;
    void describe() const;
};

/// The entry of `node`, a value recorded on the scalar stream of `tape`.
template <class T>
ScalarEntry<T>& scalar_entry(const Tape& tape, const Node<T>& node) {
    return recorded_stream<T>(tape).entries[node.record_index & ~scalar_record_bit];
}

/// The record on `tape` that holds the value of `node` (recorded there).
template <class T>
std::size_t record_of(const Tape& tape, const Node<T>& node);

/// Seeds a 0-d loss recorded on the scalar stream in its entry (a sweep
/// that does not record): no seed value, no slot.
template <class T>
void seed_scalar_entry(const Tape& tape, const Node<T>& loss) {
    ScalarEntry<T>& entry = scalar_entry(tape, loss);
    entry.adjoint = T(1);
    entry.flags |= scalar_reached;
}

/// What grad(loss, wrt) reads of 0-d values of `wrt` recorded on the scalar
/// stream: their entries leave their cotangents in their slots (scalar_keep)
/// instead of the sweep stopping above them.
template <class T>
class ScalarReadouts {
public:
    explicit ScalarReadouts(const Tape& tape) : tape_(tape) {}
    /// Before the sweep: x's entry is to leave its cotangent for position `position`.
    void keep(const Var<T>& x, std::size_t position) {
        values_.push_back({&x, position});
        slot_of(x, tape_);  // makes the slot the entry leaves its cotangent in
        scalar_entry(tape_, *x.node_ptr()).flags |= scalar_keep;
    }
    /// After it: the cotangents, into grads (by position).
    void take(std::vector<Var<T>>& grads) noexcept { finish(&grads); }
    /// After a failed sweep.
    void drop() noexcept { finish(nullptr); }

private:
    void finish(std::vector<Var<T>>* grads) noexcept {
        for (auto [x, position] : values_) {
            scalar_entry(tape_, *x->node_ptr()).flags &= ~scalar_keep;
            CotangentSlot<T>& slot = *slot_of(*x, tape_);
            if (grads && slot) (*grads)[position] = Var<T>(slot);
            slot.reset();
        }
        values_.clear();
    }
    const Tape& tape_;
    std::vector<std::pair<const Var<T>*, std::size_t>> values_;
};

/// Turns off the scalar stream for a scope (ScalarRun's replays).
class GeneralPathOnly {
public:
    GeneralPathOnly() noexcept : previous_(recording_state.scalar_records) { recording_state.scalar_records = false; }
    ~GeneralPathOnly() { recording_state.scalar_records = previous_; }
    GeneralPathOnly(const GeneralPathOnly&) = delete;
    GeneralPathOnly& operator=(const GeneralPathOnly&) = delete;

private:
    bool previous_;
};

/// Whether the op of these inputs records on the scalar stream: every input
/// is 0-d, one requires a gradient, a tape records, and no debugging tool or
/// gradcheck (which reads each record's result) is watching. Returns the
/// tape, or nullptr for the general path.
template <class T, std::size_t N>
AD_INLINE Tape* scalar_recording(const char* op, const std::array<const Var<T>*, N>& inputs) {
    // The inputs first: an op on arrays leaves after a load and a compare each.
    bool any = false;
    for (const Var<T>* x : inputs) {
        if (!x->defined()) return nullptr;  // the general path names the op
        const Node<T>& node = *x->node_ptr();
        if (node.value.dimension() != 0) return nullptr;
        any |= node.requires_grad;
    }
    const RecordingState& state = recording_state;
    Tape* tape = state.tape;
    if (!tape || !state.grad_enabled || state.observe || !state.scalar_records) return nullptr;
    if (!any || tape->keeps_results() || tape->size() >= scalar_index_limit || tape->pins() >= scalar_index_limit) {
        return nullptr;
    }
    for (const Var<T>* x : inputs) {
        if (x->node_ptr()->requires_grad) check_same_tape(op, *x, tape);
    }
    return tape;
}

template <class T, class... Xs>
AD_INLINE Tape* scalar_recording(const char* op, const Var<T>& x, const Xs&... more) {
    return scalar_recording<T, 1 + sizeof...(Xs)>(op, {&x, &more...});
}

/// Where operand x's cotangent goes (ScalarEntry::from), pinning a parameter
/// for the run record `reader`.
template <class T>
AD_INLINE std::uint32_t scalar_source(const char* op, const Var<T>& x, Tape& tape, std::size_t reader) {
    Node<T>& node = *x.node_ptr();
    if (!node.requires_grad) return 0;
    if (node.is_leaf) {
        pin_parameter(op, x, tape, reader);
        return static_cast<std::uint32_t>(Tape::pin_index(&node) << 2 | 2);
    }
    if (node.record_index & scalar_record_bit) {
        return static_cast<std::uint32_t>((node.record_index & ~scalar_record_bit) << 2 | 1);
    }
    return static_cast<std::uint32_t>(node.record_index << 2 | 3);
}

/// Opens a run for the next entry unless the tape's last record is the open run.
template <class T>
void open_scalar_run(Tape& tape, ScalarStream<T>& stream);

/// Records a 0-d op on the scalar stream (the tape from scalar_recording)
/// and returns its result `y`. `values` as in ScalarEntry; `b` is nullptr
/// for a unary op. If it throws, the tape is as it was (a pin aside).
template <class T>
AD_INLINE Var<T> record_scalar(Tape& tape, ScalarRule<T>& rule, ScalarKind kind, const Var<T>& a,
                               const Var<T>* b, T y, T value0, T value1) {
    std::uint16_t rule_id = rule.id.load(std::memory_order_acquire);
    if (rule_id == 0) rule_id = register_scalar_rule(rule);
    ScalarStream<T>& stream = scalar_stream<T>(tape);
    Var<T> result = make_uninitialized<T>(std::array<std::size_t, 0>{});
    auto& entries = stream.entries;
    if (entries.size() >= scalar_index_limit) throw tape_error("scalar ops: more than 2^30 on one tape");
    entries.reserve_one();
    // The run the entry joins: the open one if it is the tape's last record,
    // else one opened after the pins (which may throw).
    const bool joins = stream.open_run && tape.size() == stream.runs.back().record + 1;
    const std::size_t reader = joins ? tape.size() - 1 : tape.size();
    const std::uint32_t from0 = scalar_source(rule.op, a, tape, reader);
    const std::uint32_t from1 = b ? scalar_source(rule.op, *b, tape, reader) : 0;
    if (!joins) open_scalar_run(tape, stream);
    ScalarEntry<T>& entry = entries.push();  // within the reserved room
    entry.values[0] = value0;
    entry.values[1] = value1;
    entry.adjoint = T(0);
    entry.rule = rule_id;
    entry.from[0] = from0;
    entry.from[1] = from1;
    entry.bridge = 0;
    entry.kind = kind;
    entry.flags = 0;
    stream.open_run->last = entries.size();
    Node<T>& node = *result.node_ptr();
    node.value.data()[0] = y;
    node.requires_grad = true;
    node.is_leaf = false;
    node.epoch = tape.epoch();
    node.record_index = (entries.size() - 1) | scalar_record_bit;
    return result;
}

/// A unary op's entry: y = f(x) with local derivative dy_dx.
template <class T>
AD_INLINE Var<T> record_scalar_unary(Tape& tape, ScalarRule<T>& rule, const Var<T>& x, T y, T dy_dx) {
    return record_scalar<T>(tape, rule, ScalarKind::unary, x, nullptr, y, x.node_ptr()->value.data()[0], dy_dx);
}

/// The single element of a 0-d input.
template <class T>
AD_INLINE T scalar_value(const Var<T>& x) {
    return x.node_ptr()->value.data()[0];
}

}  // namespace ad::detail
