#pragma once
// Var: the handle users hold. A Var shares a node with its value; values that
// an op records keep the tape's epoch so misuse across tapes is caught.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "autodiff/errors.hpp"
#include "autodiff/inline.hpp"
#include "autodiff/node.hpp"
#include "autodiff/observe.hpp"
#include "autodiff/tape.hpp"
#include "autodiff/tensor.hpp"

namespace ad {

template <class T>
class Var;

namespace detail {

/// Where a value's cotangent accumulates during a sweep (itself a value, so
/// that create_graph can record through it): in the record of the op that
/// made it, or in the node of a parameter.
template <class T>
using CotangentSlot = NodeRef<T>;

/// A shape as a record keeps it: up to four dimensions inline, so that
/// saving and moving it costs a few stores (xtensor's own shape type moves
/// element by element through swaps, a tenth of a small op's time).
class SavedShape {
public:
    SavedShape() = default;
    template <class S>
    AD_INLINE explicit SavedShape(const S& shape) : rank_(shape.size()) {
        if (rank_ <= inline_rank_) {
            // Unrolled: g++ turns a loop (or std::copy) into a call to
            // memmove, which costs more than the copy of a few numbers.
            static_assert(inline_rank_ == 4);
            if (rank_ > 0) dims_[0] = shape[0];
            if (rank_ > 1) dims_[1] = shape[1];
            if (rank_ > 2) dims_[2] = shape[2];
            if (rank_ > 3) dims_[3] = shape[3];
        } else {
            more_ = std::make_unique<std::size_t[]>(rank_);
            std::copy(shape.begin(), shape.end(), more_.get());
        }
    }
    template <class S>
    bool equals(const S& shape) const {
        if (shape.size() != rank_) return false;
        const std::size_t* dims = data();
        for (std::size_t i = 0; i < rank_; ++i) {  // not std::equal: see equal_shapes
            if (shape[i] != dims[i]) return false;
        }
        return true;
    }
    Shape to_shape() const { return Shape(data(), data() + rank_); }

private:
    const std::size_t* data() const { return rank_ <= inline_rank_ ? dims_.data() : more_.get(); }

    static constexpr std::size_t inline_rank_ = 4;
    std::size_t rank_ = 0;
    std::array<std::size_t, inline_rank_> dims_{};
    std::unique_ptr<std::size_t[]> more_;  // rank > 4: rare, and a pointer moves faster than a vector
};

/// What a record knows of one input: where to send its cotangent and the
/// shape to sum it back to; not its value, which the VJP captures if it
/// needs it.
template <class T>
struct InputSlot {
    CotangentSlot<T>* slot = nullptr;      // nullptr: no gradient flows to this input
    Node<T>* parameter = nullptr;          // a parameter's node, whose grad() takes the sum (pinned: Tape::pin)
    SavedShape shape;
};

}  // namespace detail

/// Options of a backward sweep (PyTorch's names).
struct BackwardOptions {
    /// Keep the graph walkable for another backward through the same records.
    bool retain_graph = false;
    /// Record the sweep itself, so the gradients are values that can be
    /// differentiated again (implies retain_graph).
    bool create_graph = false;
};

template <class T>
class Var {
public:
    using value_type = T;
    using node_type = detail::Node<T>;

    /// An empty handle; most functions reject it.
    Var() = default;
    // Forced inline: a copy or a release is a few instructions (NodeRef),
    // and g++ left the copy as a call in every op and record.
    AD_INLINE Var(const Var&) = default;
    AD_INLINE Var(Var&&) noexcept = default;
    AD_INLINE Var& operator=(const Var&) = default;
    AD_INLINE Var& operator=(Var&&) noexcept = default;
    AD_INLINE ~Var() = default;

    const Array<T>& value() const { return node("value").value; }
    /// The gradient accumulated by backward() into a parameter (zeros until then).
    const Array<T>& grad() const {
        // Inline for a parameter whose gradient is written: optimizers read
        // every parameter's every step.
        const node_type& n = node("grad");
        if (n.is_leaf && n.requires_grad && n.grad && !n.grad_is_zero) return n.grad->value;
        return checked_grad();
    }
    /// grad() to change in place: clipping, scaling by a loss scale (PyTorch's
    /// p.grad.mul_()). A parameter's gradient only, like grad(); a pending
    /// zero_grad() is carried out first, so it reads zeros then.
    Array<T>& mutable_grad() const { return checked_grad(); }
    /// Resets grad() to zeros. Lazily, like PyTorch's set_to_none: the zeros
    /// are written when grad() is next called, and the next backward may
    /// instead hand its result over; a reference to grad() kept from before
    /// shows the old values until one of the two happens.
    void zero_grad();

    Shape shape() const { return shape_of(node("shape").value); }
    std::size_t dim() const { return node("dim").value.dimension(); }
    std::size_t size() const { return node("size").value.size(); }
    /// The single element of a one-element value.
    T item() const;

    bool requires_grad() const { return node("requires_grad").requires_grad; }
    bool is_leaf() const { return node("is_leaf").is_leaf; }
    bool defined() const noexcept { return static_cast<bool>(node_); }

    /// Seeds this scalar loss with 1 and walks the tape back, accumulating into
    /// the grad() of every parameter it depends on.
    void backward(BackwardOptions options = {}) const;
    /// The same from a non-scalar value with cotangent `seed` of its shape:
    /// the parameters receive the VJP of `seed`.
    template <class E>
    void backward(const xt::xexpression<E>& seed, BackwardOptions options = {}) const {
        // A template, so that `backward({.retain_graph = true})` is not ambiguous.
        if constexpr (std::is_same_v<E, Array<T>>) {
            backward_from(seed.derived_cast(), options);
        } else {
            backward_from(Array<T>(seed.derived_cast()), options);
        }
    }

    /// The same value, cut from the tape: no gradient flows through it.
    Var detach() const;

    /// The value, for in-place updates of a parameter by an optimizer. Do not
    /// change a value that a tape still holds: its records would see the change.
    Array<T>& mutable_value() const { return node("mutable_value").value; }

    const detail::NodeRef<T>& node_ptr() const& noexcept { return node_; }
    /// From a handle about to go: its node, with no count to add and drop.
    detail::NodeRef<T> node_ptr() && noexcept { return std::move(node_); }
    explicit Var(detail::NodeRef<T> node) noexcept : node_(std::move(node)) {}

private:
    void backward_from(const Array<T>& seed, BackwardOptions options) const;
    Array<T>& checked_grad() const;
    /// The node; an empty handle is a tape_error naming `accessor`, the
    /// member function it was passed to.
    node_type& node(const char* accessor) const {
        if (!node_) throw_empty(accessor);  // inline: every op reads its inputs through here
        return *node_;
    }
    [[noreturn]] static void throw_empty(const char* accessor);
    detail::NodeRef<T> node_;
};

/// A leaf that requires a gradient: a model parameter, living across steps.
/// Any thread may copy, drop and read it; the tapes of one thread at a time
/// record it (Tape::pin), so that its gradient has one writer.
template <class T>
Var<T> param(Array<T> value);
/// A leaf without gradient: data, targets, hyper-parameters. Threads may
/// share it and record it at once.
template <class T>
Var<T> constant(Array<T> value);

template <class T>
Var<T> param(std::initializer_list<T> values) { return param(Array<T>(values)); }
template <class T>
Var<T> constant(std::initializer_list<T> values) { return constant(Array<T>(values)); }

/// A 0-d constant.
template <class T>
Var<T> scalar(T value);

/// Same as Var::detach (JAX's name).
template <class T>
Var<T> stop_gradient(const Var<T>& x) { return x.detach(); }

/// The VJP of a fused op, in two stages: `through(grad, result)` takes the
/// result's cotangent back through the fused last step (an activation) once
/// per sweep, and `per_input(i, through_grad)` gives input i's cotangent from
/// that. With a plain `vjp(i, grad)` every input would redo the first stage.
template <class Through, class PerInput>
struct StagedVjp {
    Through through;
    PerInput per_input;
};

template <class Through, class PerInput>
StagedVjp<Through, PerInput> staged_vjp(Through through, PerInput per_input) {
    return {std::move(through), std::move(per_input)};
}

/// A VJP declared first-order, like PyTorch's once_differentiable: for a
/// custom op whose VJP computes with plain arrays (its derivative is then
/// invisible to the tape). A sweep that records (create_graph: a second
/// derivative, hessian, jvp, gradgradcheck) reaching its record throws a
/// tape_error naming the op, instead of differentiating a constant to zero.
template <class Vjp>
struct FirstOrderVjp {
    Vjp vjp;
};

template <class Vjp>
FirstOrderVjp<Vjp> first_order(Vjp vjp) {
    return {std::move(vjp)};
}

/// A VJP that can also add input i's cotangent straight into the input's
/// running sum, `add_into(i, grad, sum)` with `sum` an array of the input's
/// shape, which a sweep that records nothing uses: a slice then adds its
/// cotangent into its block of the sum instead of padding it to the input's
/// size first, so splitting a value into k parts costs the value's size once
/// in backward rather than k times. A recording sweep calls `vjp(i, grad)`.
template <class Vjp, class AddInto>
struct AccumulatingVjp {
    Vjp vjp;
    AddInto add_into;
    template <class T>
    Var<T> operator()(std::size_t i, const Var<T>& grad) {
        return vjp(i, grad);
    }
};

template <class Vjp, class AddInto>
AccumulatingVjp<Vjp, AddInto> accumulating_vjp(Vjp vjp, AddInto add_into) {
    return {std::move(vjp), std::move(add_into)};
}

namespace detail {

/// Throws the tape_error of check_same_tape.
template <class T>
[[noreturn]] void reject_other_tape(const char* op, const Var<T>& x, const Tape* tape);

/// Throws tape_error naming `op` when `x` was recorded on a tape other than
/// `tape` (the current one), or before it was cleared.
template <class T>
AD_INLINE void check_same_tape(const char* op, const Var<T>& x, const Tape* tape) {
    const auto& node = *x.node_ptr();
    if (node.is_leaf || (tape && node.epoch == tape->epoch())) return;
    reject_other_tape(op, x, tape);
}

/// Throws the tape_error of an empty Var given to `op`.
[[noreturn]] void reject_empty(const char* op);

/// Every op checks its Var inputs first, so that an empty one is reported
/// by the op's name.
template <class T>
void check_defined(const char* op, const Var<T>& x) {
    if (!x.defined()) reject_empty(op);
}

/// Throws the tape_error of a make_op result that is not fresh.
[[noreturn]] void reject_not_fresh(const char* op, const std::string& shape);

/// make_op turns its `result` into the op's output (recorded, not a leaf),
/// so that must be all it is: a value no other handle holds, neither a
/// parameter nor recorded already (an input passed back, say, would be
/// corrupted).
template <class T>
AD_INLINE void check_fresh(const char* op, const Var<T>& result) {
    check_defined(op, result);
    const auto& node = result.node_ptr();
    if (node.use_count() != 1 || !node->is_leaf || node->requires_grad) {
        reject_not_fresh(op, shape_string_of(node->value));
    }
}

/// Makes a Var that owns `value` and is not recorded.
template <class T>
Var<T> make_value(Array<T>&& value) {
    return Var<T>(adopt(NodeRecycler<T>::make(std::move(value))));
}

/// An unrecorded Var of `shape` whose elements the caller fills in.
template <class T, class S>
AD_INLINE Var<T> make_uninitialized(const S& shape) {
    return Var<T>(adopt(NodeRecycler<T>::make(shape)));
}

/// An op's inputs as make_op passes them: pointers for the fixed-arity ops
/// (no reference counting on the hot path), Vars for the variadic ones.
template <class T>
const Var<T>& input_var(const Var<T>& x) { return x; }
template <class T>
const Var<T>& input_var(const Var<T>* x) { return *x; }

/// Whether ops record at all on this thread now (a tape is current and grad
/// mode is on). The ops that VJPs call return before building their own VJP
/// when this is false, as during a backward sweep without create_graph: its
/// captures would be counted references made and dropped for nothing.
inline bool recording() noexcept { return Tape::current() && grad_enabled(); }

/// The tape an op records on: the current one, when recording is on and an
/// input requires a gradient; nullptr otherwise.
template <class T, class Inputs>
AD_INLINE Tape* recording_tape(const char* op, const Inputs& inputs) {
    for (const auto& x : inputs) check_defined(op, input_var<T>(x));
    if (!recording()) return nullptr;
    Tape* tape = Tape::current();
    bool any = false;
    for (const auto& x : inputs) {
        const Var<T>& v = input_var<T>(x);
        if (v.requires_grad()) {
            check_same_tape(op, v, tape);
            any = true;
        }
    }
    return any ? tape : nullptr;
}

/// A Var that a record keeps for its VJP: an input the VJP reads. A leaf's
/// node (a parameter's, a constant's) is borrowed from the tape, which pins
/// it (Tape::pin) for as long as steps use it, instead of counted by every
/// record; any other node is counted as a Var's. A Var in every use; copies
/// are counted Vars.
template <class T>
class Kept : public Var<T> {
public:
    Kept() = default;
    explicit Kept(const Var<T>& x) {
        const NodeRef<T>& ref = x.node_ptr();
        Tape* tape = Tape::current();
        // A parameter another thread's tapes hold is counted here; the op's
        // record then rejects it (input_slot).
        if (ref && ref->is_leaf && tape && grad_enabled() && tape->pin(ref.get(), &hold, &release, ref->requires_grad)) {
            Var<T>::operator=(Var<T>(NodeRef<T>::borrow(ref.get())));
            borrowed_ = true;
        } else {
            Var<T>::operator=(x);
        }
        if (recording_state.observe && ref) note_kept(ref->value.size() * sizeof(T));
    }
    Kept(Kept&& other) noexcept : Var<T>(std::move(other)), borrowed_(std::exchange(other.borrowed_, false)) {}
    Kept(const Kept& other) : Var<T>(other) {}
    Kept& operator=(const Kept&) = delete;
    Kept& operator=(Kept&&) = delete;
    ~Kept() {
        if (borrowed_) std::move(*this).node_ptr().forget();
    }

private:
    static void hold(NodeBase* node) noexcept { NodeRef<T>::add_count(static_cast<Node<T>*>(node)); }
    static void release(NodeBase* node) noexcept { NodeRef<T>::drop_count(static_cast<Node<T>*>(node)); }

    template <class U>
    friend Node<U>* pin_parameter(const char* op, const Var<U>& x, Tape& tape, std::size_t reader);

    bool borrowed_ = false;
};

template <class T>
Kept<T> kept(const Var<T>& x) {
    return Kept<T>(x);
}

/// x for a VJP that reads it only to give `other` its gradient: empty when
/// `other` needs none, so that the record does not keep x alive (nor count a
/// reference to it) for nothing.
template <class T>
Kept<T> kept_for(const Var<T>& x, const Var<T>& other) {
    return other.requires_grad() ? Kept<T>(x) : Kept<T>();
}

/// Throws the tape_error of a backward that reached a record an earlier
/// backward already walked without retain_graph.
[[noreturn]] void reject(const char* op);

/// fit_gradient for a gradient whose shape is not the input's (out of line).
template <class T>
Var<T> fit_broadcast_gradient(const char* op, Var<T> grad, const SavedShape& input_shape);

/// Reduces a VJP's result to its input's shape in place (undoing
/// broadcasting) and rejects a VJP that returned a shape its input cannot
/// have come from. In place: taking and returning the Var by value cost
/// every input of every record two moves and a release check.
template <class T>
AD_INLINE void fit_gradient(const char* op, Var<T>& grad, const SavedShape& input_shape) {
    if (input_shape.equals(grad.value().shape())) return;  // the common case
    grad = fit_broadcast_gradient(op, std::move(grad), input_shape);
}

/// accumulate_cotangent into a slot that holds a cotangent already (out of line).
template <class T>
void add_to_cotangent(CotangentSlot<T>& slot, Var<T> g);

/// Adds `g` into a cotangent slot (recorded under create_graph). The first
/// cotangent to arrive, the common case, is simply moved in.
template <class T>
AD_INLINE void accumulate_cotangent(CotangentSlot<T>& slot, Var<T>&& g) {
    if (!slot) {
        slot = std::move(g).node_ptr();
        return;
    }
    add_to_cotangent(slot, std::move(g));
}

/// The parameters the running sweeps have reached, in the order they were
/// reached (a parameter is listed when its first cotangent arrives): a sweep
/// sums their cotangents into grad() at its end, without a second walk over
/// the tape. Sweeps stack (a create_graph sweep may run inside another's
/// VJP), so each one owns the part of the list past where it started.
template <class T>
std::vector<Node<T>*>& reached_parameters() {
    // Function-local: g++ 12 did not destroy a thread_local variable
    // template at thread exit (LeakSanitizer caught the leak).
    thread_local std::vector<Node<T>*> reached;
    return reached;
}

template <class T>
AD_INLINE void note_reached(Node<T>& parameter) {
    reached_parameters<T>().push_back(&parameter);
}

/// During a backward sweep that has run Tape::first_record_of(parameter):
/// adds the cotangent the sweep summed into the parameter's grad() now, as
/// the sweep's end would, and returns grad(); the sweep adds nothing more.
/// For SweepListeners that send gradients elsewhere while the sweep goes on
/// (DistributedDataParallel).
template <class T>
Array<T>& finish_gradient(const Var<T>& parameter);

/// The parameter's grad() array, of the parameter's shape, for the caller to
/// overwrite whole: a pending zero_grad() is dropped, not carried out.
template <class T>
Array<T>& grad_to_overwrite(const Var<T>& parameter);

/// The parameter's grad() with a pending zero_grad() carried out.
template <class T>
Array<T>& written_grad(Node<T>& parameter);

/// Lends a VJP x's gradient node, for the VJP to compute x's cotangent into
/// and return, when that node's contents are dead: x is a parameter,
/// zero_grad() is pending, no cotangent has reached x yet in this sweep, and
/// the sweep is a backward() that does not record. The cotangent is then
/// grad() already at the end of the sweep (accumulate_grad), so a training
/// step makes no gradient arrays nor nodes: on a large layer a fresh array
/// every step page-faults on its new memory, and on a small model taking a
/// node, swapping it into grad() and recycling it is a few percent of a step.
/// Returns an empty Var when there is nothing to lend; a sweep that
/// fails leaves the node's zero_grad() pending, so grad() still reads zeros.
template <class T>
AD_INLINE Var<T> lend_grad_buffer(const Var<T>& x) {
    const Node<T>& node = *x.node_ptr();
    if (!recording_state.lending_grads || !node.grad || !node.grad_is_zero || node.cotangent || grad_enabled() ||
        !equal_shapes(node.grad->value, node.value)) {
        return Var<T>();
    }
    return Var<T>(NodeRef<T>::copy_local(node.grad));  // the node never leaves this thread's sweep
}

/// Whether `buffer` (from lend_grad_buffer, possibly empty) has `shape`.
template <class T, class S>
AD_INLINE bool fits(const Var<T>& buffer, const S& shape) {
    return buffer.defined() && same_extents(buffer.value().shape(), shape);
}

/// In a node's record_index: the value was recorded on the tape's scalar
/// stream, as the entry of that index (scalar_tape.hpp).
constexpr std::size_t scalar_record_bit = std::size_t(1) << (8 * sizeof(std::size_t) - 1);

/// The cotangent slot of the scalar stream's entry `entry` (made on first
/// use; scalar_tape.hpp).
template <class T>
CotangentSlot<T>& scalar_slot(const Tape& tape, std::size_t entry);

/// The slot that x's cotangent accumulates in on `tape` (x recorded there),
/// or nullptr when x does not require a gradient.
template <class T>
AD_INLINE CotangentSlot<T>* slot_of(const Var<T>& x, const Tape& tape) {
    auto& node = *x.node_ptr();
    if (!node.requires_grad) return nullptr;
    if (node.is_leaf) return &node.cotangent;
    if (node.record_index & scalar_record_bit) return &scalar_slot<T>(tape, node.record_index & ~scalar_record_bit);
    return &tape.slot<CotangentSlot<T>>(node.record_index);
}

/// Throws the tape_error of a parameter that another thread's tapes hold.
template <class T>
[[noreturn]] void reject_claimed(const char* op, const Var<T>& x);

/// Pins parameter x to `tape` (claiming it for this thread) so that the
/// record `reader` (Tape::no_record: the next one) borrows it; a parameter
/// that another thread's tapes are recording is a tape_error naming `op`.
template <class T>
AD_INLINE Node<T>* pin_parameter(const char* op, const Var<T>& x, Tape& tape, std::size_t reader) {
    Node<T>* node = x.node_ptr().get();
    if (!tape.pin(node, &Kept<T>::hold, &Kept<T>::release, true, reader)) reject_claimed(op, x);
    return node;
}

template <class T>
AD_INLINE InputSlot<T> input_slot(const char* op, const Var<T>& x, Tape& tape) {
    CotangentSlot<T>* slot = slot_of(x, tape);
    if (!slot) return {};
    const auto& node = x.node_ptr();
    return {slot, node->is_leaf ? pin_parameter(op, x, tape, Tape::no_record) : nullptr, SavedShape(node->value.shape())};
}

template <class T, std::size_t N, std::size_t... I>
std::array<InputSlot<T>, N> input_slots(const char* op, const std::array<const Var<T>*, N>& xs, Tape& tape,
                                        std::index_sequence<I...>) {
    return {input_slot(op, *xs[I], tape)...};  // built in place: no default slot to overwrite
}

template <class T, std::size_t N>
std::array<InputSlot<T>, N> input_slots(const char* op, const std::array<const Var<T>*, N>& xs, Tape& tape) {
    return input_slots(op, xs, tape, std::make_index_sequence<N>());
}

template <class T>
std::vector<InputSlot<T>> input_slots(const char* op, const std::vector<Var<T>>& xs, Tape& tape) {
    std::vector<InputSlot<T>> slots;
    slots.reserve(xs.size());
    for (const auto& x : xs) slots.push_back(input_slot(op, x, tape));
    return slots;
}

template <class Vjp>
struct IsAccumulatingVjp : std::false_type {};
template <class Vjp, class AddInto>
struct IsAccumulatingVjp<AccumulatingVjp<Vjp, AddInto>> : std::true_type {};

/// The running sum an AccumulatingVjp adds into, made of zeros when no
/// cotangent has arrived yet; nullptr when the sweep records or another
/// value shares the sum (then the cotangent is added the usual way).
template <class T>
Array<T>* running_sum(CotangentSlot<T>& slot, const SavedShape& shape);

template <class Vjp>
struct IsStagedVjp : std::false_type {};
template <class Through, class PerInput>
struct IsStagedVjp<StagedVjp<Through, PerInput>> : std::true_type {};

/// The callable inside a VJP declared first_order; any other VJP itself.
template <class Vjp>
struct FirstOrder {
    static constexpr bool value = false;
    using Inner = Vjp;
    static Vjp& inner(Vjp& vjp) { return vjp; }
};
template <class Vjp>
struct FirstOrder<FirstOrderVjp<Vjp>> {
    static constexpr bool value = true;
    using Inner = Vjp;
    static Vjp& inner(FirstOrderVjp<Vjp>& vjp) { return vjp.vjp; }
};

/// Throws the tape_error of a recorded sweep that reaches a first-order VJP.
[[noreturn]] void reject_first_order(const char* op);

/// The record an op appends. Its VJP is `vjp(i, grad) -> input i's
/// cotangent`, or `vjp(i, grad, result)` when it reads the op's result (the
/// record then keeps the result alive), or a StagedVjp; it is called only for
/// inputs that require a gradient. Returned cotangents may keep a broadcast
/// shape: the record sums them back to the input's shape in one place.
template <class T, class Inputs, class Vjp>
struct OpRecord {
    static constexpr bool staged = IsStagedVjp<Vjp>::value;
    static constexpr bool first_order_only = FirstOrder<Vjp>::value;
    static constexpr bool reads_result =
        staged || std::is_invocable_v<typename FirstOrder<Vjp>::Inner&, std::size_t, const Var<T>&, const Var<T>&>;

    const char* op;
    CotangentSlot<T> slot;
    Var<T> result;
    Inputs inputs;
    Vjp vjp;

    void operator()(Pass pass) {
        if (pass == Pass::describe) return describe();
        if (pass == Pass::reject_reached) {
            if (slot) reject(op);
            return;
        }
        if (pass == Pass::backward) {
            if (!slot) return;
            // The cotangent is complete (every op that read the output comes
            // later on the tape and has run) and this VJP is its last reader,
            // so it goes with `grad` at the end of this call: its node is
            // recycled for the cotangents still to come, instead of all of
            // them living until the sweep ends.
            if constexpr (first_order_only) {
                if (recording()) reject_first_order(op);
            }
            Var<T> grad(std::move(slot));
            const bool check = recording_state.observe & observe_anomaly;
            if constexpr (staged) {
                Var<T> through = vjp.through(grad, result);  // once, for every input's part
                if (check) check_cotangent(op, std::size_t(-1), grad.value(), through.value());
                grad = std::move(through);
            }
            for (std::size_t i = 0; i < inputs.size(); ++i) {
                auto& in = inputs[i];
                if (!in.slot) continue;
                if (in.parameter && !*in.slot) note_reached(*in.parameter);
                if constexpr (IsAccumulatingVjp<Vjp>::value) {
                    if (Array<T>* sum = running_sum(*in.slot, in.shape)) {
                        vjp.add_into(i, grad, *sum);
                        if (check) check_cotangent(op, i, grad.value(), *sum);
                        continue;
                    }
                }
                Var<T> input_grad = [&] {
                    if constexpr (staged) {
                        return vjp.per_input(i, grad);
                    } else if constexpr (reads_result) {
                        return FirstOrder<Vjp>::inner(vjp)(i, grad, result);
                    } else {
                        return FirstOrder<Vjp>::inner(vjp)(i, grad);
                    }
                }();
                if (check) check_cotangent(op, i, grad.value(), input_grad.value());
                fit_gradient(op, input_grad, in.shape);
                accumulate_cotangent(*in.slot, std::move(input_grad));
            }
            return;
        }
        slot.reset();  // Pass::discard
        for (auto& in : inputs) {
            if (in.parameter) in.parameter->cotangent.reset();
        }
    }

    void describe() const {
        RecordDescription& d = *describing;
        d.slot = &slot;
        d.closure_bytes = sizeof(*this);
        d.element_size = sizeof(T);
        if (result.defined()) {
            d.result_kept = true;
            d.result_shape = shape_of(result.value());
            d.result_bytes = result.size() * sizeof(T);
        }
        for (const auto& in : inputs) d.inputs.push_back({in.slot, in.parameter, in.shape.to_shape()});
    }
};

/// make_op for a result that is already a fresh, unrecorded value.
template <class T, class Inputs, class Vjp>
Var<T> record_op(const char* op, Var<T> result, const Inputs& inputs, Vjp&& vjp) {
    Tape* tape = recording_tape<T>(op, inputs);
    if (recording_state.observe) observe_op(op, result, inputs, tape);  // a debugging tool is on
    if (!tape) return result;
    using Record = OpRecord<T, decltype(input_slots(op, inputs, *tape)), std::decay_t<Vjp>>;
    Var<T> kept = Record::reads_result || tape->keeps_results() ? result : Var<T>();
    tape->record_in_place<Record>([&](void* memory) {
        return new (memory) Record{op, {}, std::move(kept), input_slots(op, inputs, *tape), std::forward<Vjp>(vjp)};
    });
    auto& node = *result.node_ptr();
    node.requires_grad = true;
    node.is_leaf = false;
    node.epoch = tape->epoch();
    node.record_index = tape->size() - 1;
    if (recording_state.observe) note_record(*tape, result);
    return result;
}

}  // namespace detail

/// Makes `result` (a fresh Var that an op wrote its output into) the result
/// of op `op` of these inputs; when recording, appends the record whose VJP
/// is `vjp(i, grad)`: the cotangent of input i given the
/// cotangent `grad` of the result. A VJP that needs the result itself takes it
/// as a third argument, `vjp(i, grad, result)`, and the tape then keeps it.
/// A fused op passes a StagedVjp (staged_vjp(through, per_input)).
/// Capture by value (Vars, evaluated arrays) only what the VJP reads: that is
/// what the tape holds until the backward sweep. (The engine's ops capture
/// their inputs as detail::kept(x), which borrows a leaf from the tape's pin
/// instead of counting it: Tape::pin.) Every op of the engine is
/// written this way, and so are users' own ops (custom ops): write the VJP
/// with engine ops and it supports double backward too.
template <class T, class Vjp>
Var<T> make_op(const char* op, Var<T>&& result, const Var<T>& x, Vjp vjp) {
    detail::check_fresh(op, result);
    return detail::record_op(op, std::move(result), std::array<const Var<T>*, 1>{&x}, std::move(vjp));
}

template <class T, class Vjp>
Var<T> make_op(const char* op, Var<T>&& result, const Var<T>& a, const Var<T>& b, Vjp vjp) {
    detail::check_fresh(op, result);
    return detail::record_op(op, std::move(result), std::array<const Var<T>*, 2>{&a, &b}, std::move(vjp));
}

template <class T, class Vjp>
Var<T> make_op(const char* op, Var<T>&& result, const Var<T>& a, const Var<T>& b, const Var<T>& c, Vjp vjp) {
    detail::check_fresh(op, result);
    return detail::record_op(op, std::move(result), std::array<const Var<T>*, 3>{&a, &b, &c}, std::move(vjp));
}

/// The same from the op's computed array `value` (the common way). An op
/// that can write its output in place gets `result` from
/// detail::make_uninitialized(shape) instead: a recycled node whose storage
/// it overwrites, with no array to allocate or move.
template <class T, class Vjp>
Var<T> make_op(const char* op, Array<T>&& value, const Var<T>& x, Vjp vjp) {
    return make_op(op, detail::make_value(std::move(value)), x, std::move(vjp));
}

template <class T, class Vjp>
Var<T> make_op(const char* op, Array<T>&& value, const Var<T>& a, const Var<T>& b, Vjp vjp) {
    return make_op(op, detail::make_value(std::move(value)), a, b, std::move(vjp));
}

template <class T, class Vjp>
Var<T> make_op(const char* op, Array<T>&& value, const Var<T>& a, const Var<T>& b, const Var<T>& c, Vjp vjp) {
    return make_op(op, detail::make_value(std::move(value)), a, b, c, std::move(vjp));
}

/// The same for ops with a variable number of inputs (concatenate, stack).
template <class T, class Vjp>
Var<T> make_op(const char* op, Array<T>&& value, std::vector<Var<T>> inputs, Vjp vjp) {
    return detail::record_op(op, detail::make_value(std::move(value)), std::move(inputs), std::move(vjp));
}

}  // namespace ad
