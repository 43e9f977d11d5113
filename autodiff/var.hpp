#pragma once
// Var: the handle users hold. A Var shares a node (node.hpp) with its value;
// copies share it too. Leaves are made by param() (a parameter: it requires a
// gradient, which backward() sums into grad()) and constant() (data,
// targets); every other Var is an op's result, recorded on the current tape
// (tape.hpp) when one of its inputs requires a gradient.

#include <cstddef>
#include <initializer_list>
#include <type_traits>
#include <vector>

#include "autodiff/errors.hpp"
#include "autodiff/inline.hpp"
#include "autodiff/memory/node_recycler.hpp"
#include "autodiff/node.hpp"
#include "autodiff/tensor.hpp"

namespace ad {

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

namespace detail {

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

/// An unrecorded Var of x's shape filled with `value`.
template <class T>
AD_INLINE Var<T> filled_like(const Var<T>& x, T value) {
    Var<T> filled = make_uninitialized<T>(x.value().shape());
    filled.mutable_value().fill(value);
    return filled;
}

/// Throws the tape_error of an empty Var given to `op`.
[[noreturn]] void reject_empty(const char* op);

/// Every op checks its Var inputs first, so that an empty one is reported
/// by the op's name.
template <class T>
void check_defined(const char* op, const Var<T>& x) {
    if (!x.defined()) reject_empty(op);
}

}  // namespace detail
}  // namespace ad
