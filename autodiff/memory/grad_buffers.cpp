#include "autodiff/memory/grad_buffers.hpp"

#include <utility>

namespace ad::detail {

template <class T>
Array<T>& written_grad(Node<T>& parameter) {
    Array<T>& grad = parameter.grad->value;
    if (parameter.grad_is_zero) {
        // A failed sweep may have left a cotangent in the node (lend_grad_buffer).
        if (equal_shapes(grad, parameter.value)) {
            grad.fill(T(0));
        } else {
            grad = xt::zeros<T>(parameter.value.shape());
        }
        parameter.grad_is_zero = false;
    }
    return grad;
}

template <class T>
Array<T>& grad_to_overwrite(const Var<T>& parameter) {
    Node<T>& node = *parameter.node_ptr();
    Array<T>& grad = node.grad->value;
    if (!equal_shapes(grad, node.value)) grad = Array<T>::from_shape(node.value.shape());
    node.grad_is_zero = false;
    return grad;
}

template <class T>
void add_to_grad(Node<T>& parameter) {
    NodeRef<T>& cotangent = parameter.cotangent;
    if (cotangent == parameter.grad) {
        // A VJP computed it into the gradient's own node (lend_grad_buffer),
        // which holds it still.
        parameter.grad_is_zero = false;
        cotangent.reset();
        return;
    }
    Array<T>& grad = parameter.grad->value;
    if (parameter.grad_is_zero && cotangent.held_alone() && equal_shapes(cotangent->value, parameter.value) &&
        equal_shapes(grad, cotangent->value)) {
        // Nobody else sees the cotangent's buffer, so it can simply become
        // the gradient. Trading the storage alone is a few pointer moves;
        // swapping whole arrays also swaps their shape vectors element by element.
        std::swap(grad.storage(), cotangent->value.storage());
        parameter.grad_is_zero = false;
    } else {
        written_grad(parameter) += cotangent->value;
    }
    cotangent.reset();
}

template <class T>
Array<T>& finish_gradient(const Var<T>& parameter) {
    Node<T>& node = *parameter.node_ptr();
    if (node.cotangent) add_to_grad(node);
    return written_grad(node);
}

#define AD_INSTANTIATE(T)                                   \
    template Array<T>& written_grad(Node<T>&);              \
    template Array<T>& grad_to_overwrite(const Var<T>&);    \
    template void add_to_grad(Node<T>&);                    \
    template Array<T>& finish_gradient(const Var<T>&);

AD_INSTANTIATE(float)
AD_INSTANTIATE(double)

}  // namespace ad::detail
