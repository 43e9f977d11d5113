#pragma once
// Normalisation and regularisation: layer_norm, batch_norm, dropout.

#include "autodiff/var.hpp"

namespace ad {

}  // namespace ad
