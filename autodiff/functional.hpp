#pragma once
// Gradients as functions (JAX / torch.autograd style).

#include <functional>
#include <vector>

#include "autodiff/var.hpp"

namespace ad {

namespace detail {
template <class T>
std::vector<Var<T>> run_backward(const char* fn, const Var<T>& loss, const Var<T>* seed,
                                 const std::vector<Var<T>>& wrt, BackwardOptions options, bool accumulate);
}

/// The gradients of the scalar `loss` with respect to `inputs` (parameters or
/// intermediate values), like torch.autograd.grad: parameters' grad() is left
/// untouched. An input the loss does not depend on gets zeros. With
/// `create_graph`, the gradients are recorded values that can be
/// differentiated again.
template <class T>
std::vector<Var<T>> grad(const Var<T>& loss, const std::vector<Var<T>>& inputs,
                         BackwardOptions options = {});

/// The same from a non-scalar `output` with cotangent `seed` of its shape: the
/// VJP of `seed`. The seed may itself be a recorded value; with
/// `create_graph` the result is then a function of it too.
template <class T>
std::vector<Var<T>> grad(const Var<T>& output, const std::vector<Var<T>>& inputs, const Var<T>& seed,
                         BackwardOptions options = {});

}  // namespace ad

// ---------------------------------------------------------------------------
// Transforms of a C++ callable (JAX / torch.func style). Arrays in, arrays
// out; each transform records on a tape of its own (made current for the
// call) with recording on, so it works inside NoGrad and inside another tape.
// Inside f, stop_gradient / detach / NoGrad cut the derivative as usual.
//
// Which sweep runs, and why (backprop-math.md §2): a Jacobian of f: R^n -> R^m
// costs m VJPs (reverse: one backward sweep per output element) or n JVPs
// (forward: one per input element). A scalar loss has m = 1, so reverse mode
// gets the whole gradient in one sweep; jacfwd wins when inputs are few.
//
// JVPs are computed by the "double VJP" trick, not by per-op forward rules:
// g(u) = u^T J is linear in the cotangent u, so J t = d/du <g(u), t>. Recording
// the VJP sweep (create_graph) and walking it back once more gives J t exactly,
// for every op and every custom op whose VJP applies engine ops to its
// cotangent, with no second rule to write or keep in sync.
// ---------------------------------------------------------------------------

namespace ad {

template <class T>
using UnaryFn = std::function<Var<T>(const Var<T>&)>;
template <class T>
using MultiFn = std::function<Var<T>(const std::vector<Var<T>>&)>;

template <class T>
struct ValueAndGrad {
    Array<T> value;
    Array<T> grad;
};
template <class T>
struct ValueAndGrads {
    Array<T> value;
    std::vector<Array<T>> grads;
};

namespace detail {
template <class T> struct identity_t { using type = T; };
/// Keeps a parameter out of template deduction (so lambdas convert to std::function).
template <class T> using nondeduced = typename identity_t<T>::type;
}  // namespace detail

/// f's value and its gradient (f scalar): one forward, one backward sweep.
template <class T>
ValueAndGrad<T> value_and_grad(const detail::nondeduced<UnaryFn<T>>& f, const Array<T>& x);
template <class T>
ValueAndGrads<T> value_and_grad(const detail::nondeduced<MultiFn<T>>& f, const std::vector<Array<T>>& xs);

/// f's value and the VJP v^T J of a cotangent v of f's output shape: one backward sweep.
template <class T>
ValueAndGrad<T> vjp(const detail::nondeduced<UnaryFn<T>>& f, const Array<T>& x, const Array<T>& v);
template <class T>
ValueAndGrads<T> vjp(const detail::nondeduced<MultiFn<T>>& f, const std::vector<Array<T>>& xs, const Array<T>& v);

/// f's value and the JVP J t along a tangent t of x's shape (`grad` holds J t,
/// shaped like f's output): the double VJP trick, two backward sweeps.
template <class T>
ValueAndGrad<T> jvp(const detail::nondeduced<UnaryFn<T>>& f, const Array<T>& x, const Array<T>& t);
/// With several inputs, J t = sum_i J_i t_i.
template <class T>
ValueAndGrad<T> jvp(const detail::nondeduced<MultiFn<T>>& f, const std::vector<Array<T>>& xs,
                    const std::vector<Array<T>>& ts);

/// The Jacobian, shape out.shape + in.shape, by reverse mode: one forward and
/// one backward sweep per output element.
template <class T>
Array<T> jacrev(const detail::nondeduced<UnaryFn<T>>& f, const Array<T>& x);
/// The same by forward mode: one forward, one recorded VJP sweep, then one
/// sweep per input element (each a JVP along a unit tangent).
template <class T>
Array<T> jacfwd(const detail::nondeduced<UnaryFn<T>>& f, const Array<T>& x);

/// The Hessian of a scalar f, shape x.shape + x.shape: reverse over reverse,
/// one sweep per input element over the recorded gradient.
template <class T>
Array<T> hessian(const detail::nondeduced<UnaryFn<T>>& f, const Array<T>& x);

/// The Hessian-vector product H v of a scalar f, never forming H: the gradient
/// of <grad f(x), v>, two backward sweeps.
template <class T>
Array<T> hvp(const detail::nondeduced<UnaryFn<T>>& f, const Array<T>& x, const Array<T>& v);
/// With several inputs, the blocks (H v)_i = sum_j d^2 f / dx_i dx_j v_j.
template <class T>
std::vector<Array<T>> hvp(const detail::nondeduced<MultiFn<T>>& f, const std::vector<Array<T>>& xs,
                          const std::vector<Array<T>>& vs);

}  // namespace ad
