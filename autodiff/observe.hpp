#pragma once
// The hooks through which the debugging tools (debug.hpp, profile.hpp) see
// ops and records. Every op tests one byte, RecordingState::observe, and
// calls these only when a tool is on: off, they cost that test.

#include <array>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "autodiff/grad_mode.hpp"
#include "autodiff/memory/node_base.hpp"
#include "autodiff/tensor.hpp"

namespace ad {

class Tape;
template <class T>
class Var;

namespace detail {

/// What Pass::describe reports of one input of a record.
struct InputDescription {
    const void* slot = nullptr;            // where its cotangent goes: a record's slot or a parameter's
    const NodeBase* parameter = nullptr;   // the parameter's node, when the input is one
    Shape shape;
};

/// What Pass::describe reports of one record (filled by OpRecord).
struct RecordDescription {
    const void* slot = nullptr;  // the record's own cotangent slot: how its readers name it
    std::size_t closure_bytes = 0;
    std::size_t element_size = 0;
    bool result_kept = false;
    Shape result_shape;  // when result_kept
    std::size_t result_bytes = 0;
    std::vector<InputDescription> inputs;
};

/// Where Pass::describe writes (set by ad::describe for one record at a time).
inline thread_local RecordDescription* describing = nullptr;

/// Pass::describe of a record (OpRecord): what it holds, into *describing.
template <class Slot, class Result, class Inputs>
void describe_record(const Slot& slot, std::size_t closure_bytes, const Result& result, const Inputs& inputs) {
    RecordDescription& d = *describing;
    d.slot = &slot;
    d.closure_bytes = closure_bytes;
    d.element_size = sizeof(typename Result::value_type);
    if (result.defined()) {
        d.result_kept = true;
        d.result_shape = shape_of(result.value());
        d.result_bytes = result.size() * d.element_size;
    }
    for (const auto& in : inputs) d.inputs.push_back({in.slot, in.parameter, in.shape.to_shape()});
}

/// Before an op's record is made (or its result returned unrecorded):
/// anomaly mode's forward check (may throw; the tape is as it was), the
/// profiler's forward event, the call site and module path to note.
template <class T>
void observe_op(const char* op, const Var<T>& result, const Var<T>* const* inputs, std::size_t count, Tape* tape);

template <class T, std::size_t N>
void observe_op(const char* op, const Var<T>& result, const std::array<const Var<T>*, N>& inputs, Tape* tape) {
    observe_op(op, result, inputs.data(), N, tape);
}
template <class T>
void observe_op(const char* op, const Var<T>& result, const std::vector<Var<T>>& inputs, Tape* tape) {
    std::vector<const Var<T>*> pointers;
    for (const auto& x : inputs) pointers.push_back(&x);
    observe_op(op, result, pointers.data(), pointers.size(), tape);
}

/// After an op's record is appended: attaches what observe_op noted.
template <class T>
void note_record(Tape& tape, const Var<T>& result);

/// A value a record keeps for its VJP (detail::Kept), for the bytes a record keeps.
void note_kept(std::size_t bytes) noexcept;

/// Anomaly mode's backward check of one VJP: throws value_error when a
/// finite cotangent `grad` of op's result gave input `input` a cotangent
/// that is not finite, naming the op's forward call site.
template <class T>
void check_cotangent(const char* op, std::size_t input, const Array<T>& grad, const Array<T>& input_grad);

/// Turns anomaly mode on or off on this thread; returns what it was.
bool set_anomaly_mode(bool on) noexcept;
/// One more (delta 1) or one fewer (-1) user of a counted tool on this
/// thread: observe_annotate, observe_profile, observe_modules.
void count_observer(Observe tool, int delta) noexcept;

/// Module paths: nn pushes the path of each module call it enters (when a
/// tool is on), and the records made inside carry the innermost one.
void push_scope(std::shared_ptr<const std::string> label);
void pop_scope() noexcept;
/// The innermost module path, or nullptr.
const std::shared_ptr<const std::string>* current_scope() noexcept;

}  // namespace detail
}  // namespace ad
