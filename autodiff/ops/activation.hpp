#pragma once
// Activations beyond relu, sigmoid, tanh and softplus (elementwise.hpp).

#include "autodiff/var.hpp"

namespace ad {

}  // namespace ad
