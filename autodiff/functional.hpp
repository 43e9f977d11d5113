#pragma once
// Gradients as functions (JAX / torch.autograd style).

#include <vector>

#include "autodiff/var.hpp"

namespace ad {

namespace detail {
template <class T>
std::vector<Var<T>> run_backward(const char* fn, const Var<T>& loss, const Array<T>* seed,
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

}  // namespace ad
