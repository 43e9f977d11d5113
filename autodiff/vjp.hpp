#pragma once
// The forms an op's VJP may take besides the plain `vjp(i, grad)`, and how a
// record calls each (OpRecord in tape.hpp).
//
//   vjp(i, grad)                   input i's cotangent from the result's
//   vjp(i, grad, result)           the same, reading the result (kept alive for it)
//   staged_vjp(through, per_input) a fused op: `through` once, then per input
//   first_order(vjp)               a VJP written with plain arrays: no second derivative
//   accumulating_vjp(vjp, add_into) adds input i's cotangent into its running sum

#include <cstddef>
#include <type_traits>
#include <utility>

#include "autodiff/var.hpp"

namespace ad {

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

template <class Vjp>
struct IsStagedVjp : std::false_type {};
template <class Through, class PerInput>
struct IsStagedVjp<StagedVjp<Through, PerInput>> : std::true_type {};

template <class Vjp>
struct IsAccumulatingVjp : std::false_type {};
template <class Vjp, class AddInto>
struct IsAccumulatingVjp<AccumulatingVjp<Vjp, AddInto>> : std::true_type {};

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

/// Whether a record of this VJP keeps its result alive for it.
template <class T, class Vjp>
constexpr bool reads_result =
    IsStagedVjp<Vjp>::value ||
    std::is_invocable_v<typename FirstOrder<Vjp>::Inner&, std::size_t, const Var<T>&, const Var<T>&>;

/// Input i's cotangent, from `grad` (a staged VJP's: its first stage's output).
template <class T, class Vjp>
AD_INLINE Var<T> call_vjp(Vjp& vjp, std::size_t i, const Var<T>& grad, const Var<T>& result) {
    if constexpr (IsStagedVjp<Vjp>::value) {
        return vjp.per_input(i, grad);
    } else if constexpr (reads_result<T, Vjp>) {
        return FirstOrder<Vjp>::inner(vjp)(i, grad, result);
    } else {
        return FirstOrder<Vjp>::inner(vjp)(i, grad);
    }
}

/// Throws the tape_error of a recorded sweep that reaches a first-order VJP.
[[noreturn]] void reject_first_order(const char* op);

}  // namespace detail
}  // namespace ad
