#pragma once
// Var: the handle users hold. A Var shares a node with its value; values that
// an op records keep the tape's epoch so misuse across tapes is caught.

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#include "autodiff/errors.hpp"
#include "autodiff/tape.hpp"
#include "autodiff/tensor.hpp"

namespace ad {

template <class T>
class Var;

namespace detail {

template <class T>
struct Node {
    explicit Node(Array<T>&& v) : value(std::move(v)) {}

    Array<T> value;
    std::unique_ptr<Array<T>> grad;       // parameters only: accumulated across backward calls
    std::shared_ptr<Node> cotangent;      // during a sweep: d loss / d value, itself a value
    std::uint64_t epoch = 0;              // tape epoch of the record that made it (0: leaf)
    std::size_t record_index = 0;         // that record's index on the tape
    bool requires_grad = false;
    bool is_leaf = true;
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

    const Array<T>& value() const { return node().value; }
    /// The gradient accumulated by backward() into a parameter (zeros until then).
    const Array<T>& grad() const;
    void zero_grad();

    Shape shape() const { return shape_of(node().value); }
    std::size_t dim() const { return node().value.dimension(); }
    std::size_t size() const { return node().value.size(); }
    /// The single element of a one-element value.
    T item() const;

    bool requires_grad() const { return node().requires_grad; }
    bool is_leaf() const { return node().is_leaf; }
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
    Array<T>& mutable_value() const { return node().value; }

    const std::shared_ptr<node_type>& node_ptr() const noexcept { return node_; }
    explicit Var(std::shared_ptr<node_type> node) noexcept : node_(std::move(node)) {}

private:
    void backward_from(const Array<T>& seed, BackwardOptions options) const;
    node_type& node() const;
    std::shared_ptr<node_type> node_;
};

/// A leaf that requires a gradient: a model parameter, living across steps.
template <class T>
Var<T> param(Array<T> value);
/// A leaf without gradient: data, targets, hyper-parameters.
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

namespace detail {

/// Throws tape_error naming `op` when `x` was recorded on a tape other than
/// the current one, or before it was cleared.
template <class T>
void check_same_tape(const char* op, const Var<T>& x, const Tape* tape);

template <class T>
void check_defined(const char* op, const Var<T>& x);

/// Adds `g` into the cotangent of `x`'s node (recorded under create_graph).
template <class T>
void accumulate_cotangent(const Var<T>& x, Var<T> g);

/// Makes a Var that owns `value` and is not recorded.
template <class T>
Var<T> make_value(Array<T>&& value) {
    return Var<T>(std::make_shared<Node<T>>(std::move(value)));
}

/// The tape an op records on: the current one, when recording is on and an
/// input requires a gradient; nullptr otherwise.
template <class T, class Inputs>
Tape* recording_tape(const char* op, const Inputs& inputs) {
    for (const auto& x : inputs) check_defined(op, x);
    Tape* tape = Tape::current();
    if (!tape || !grad_enabled()) return nullptr;
    bool any = false;
    for (const auto& x : inputs) {
        if (x.requires_grad()) {
            check_same_tape(op, x, tape);
            any = true;
        }
    }
    return any ? tape : nullptr;
}

/// Throws the tape_error of a backward that reached a record an earlier
/// backward already walked without retain_graph.
[[noreturn]] void reject(const char* op);

/// Reduces a VJP's result to its input's shape (undoing broadcasting) and
/// rejects a VJP that returned a shape its input cannot have come from.
template <class T>
Var<T> fit_gradient(const char* op, Var<T> grad, const Var<T>& input);

/// The record an op appends: its result, its inputs, and its VJP
/// `vjp(i, grad, result) -> input i's cotangent`, called only for inputs
/// that require a gradient. Returned cotangents may keep a broadcast shape:
/// the record sums them back to the input's shape in one place.
template <class T, class Inputs, class Vjp>
struct OpRecord {
    const char* op;
    Var<T> result;
    Inputs inputs;
    Vjp vjp;

    void operator()(Pass pass) {
        auto& out = *result.node_ptr();
        if (pass == Pass::reject_reached) {
            if (out.cotangent) reject(op);
            return;
        }
        if (pass == Pass::backward) {
            if (!out.cotangent) return;
            Var<T> grad(out.cotangent);
            for (std::size_t i = 0; i < inputs.size(); ++i) {
                if (!inputs[i].requires_grad()) continue;
                accumulate_cotangent(inputs[i], fit_gradient(op, vjp(i, grad, result), inputs[i]));
            }
            return;
        }
        out.cotangent.reset();
        for (auto& x : inputs) {
            auto& node = *x.node_ptr();
            if (!node.cotangent) continue;
            if (pass == Pass::finalize_accumulate && node.grad) *node.grad += node.cotangent->value;
            node.cotangent.reset();
        }
    }
};

template <class T, class Inputs, class Vjp>
Var<T> make_op_impl(const char* op, Array<T>&& value, Inputs&& inputs, Vjp&& vjp) {
    Tape* tape = recording_tape<T>(op, inputs);
    Var<T> result = make_value(std::move(value));
    if (!tape) return result;
    auto& node = *result.node_ptr();
    std::size_t bytes = node.value.size() * sizeof(T);
    tape->record(OpRecord<T, std::decay_t<Inputs>, std::decay_t<Vjp>>{
                     op, result, std::forward<Inputs>(inputs), std::forward<Vjp>(vjp)},
                 bytes);
    node.requires_grad = true;
    node.is_leaf = false;
    node.epoch = tape->epoch();
    node.record_index = tape->size() - 1;
    return result;
}

}  // namespace detail

/// Builds an op's result from its computed `value`; when recording, appends
/// the record whose VJP is `vjp(i, grad, result)`: the cotangent of input i
/// given the cotangent `grad` of `result`. Every op of the engine is written
/// this way, and so are users' own ops (custom ops): write the VJP with
/// engine ops and it supports double backward too.
template <class T, class Vjp>
Var<T> make_op(const char* op, Array<T> value, const Var<T>& x, Vjp vjp) {
    return detail::make_op_impl(op, std::move(value), std::array<Var<T>, 1>{x}, std::move(vjp));
}

template <class T, class Vjp>
Var<T> make_op(const char* op, Array<T> value, const Var<T>& a, const Var<T>& b, Vjp vjp) {
    return detail::make_op_impl(op, std::move(value), std::array<Var<T>, 2>{a, b}, std::move(vjp));
}

template <class T, class Vjp>
Var<T> make_op(const char* op, Array<T> value, const Var<T>& a, const Var<T>& b, const Var<T>& c, Vjp vjp) {
    return detail::make_op_impl(op, std::move(value), std::array<Var<T>, 3>{a, b, c}, std::move(vjp));
}

/// The same for ops with a variable number of inputs (concatenate, stack).
template <class T, class Vjp>
Var<T> make_op(const char* op, Array<T> value, std::vector<Var<T>> inputs, Vjp vjp) {
    return detail::make_op_impl(op, std::move(value), std::move(inputs), std::move(vjp));
}

}  // namespace ad
