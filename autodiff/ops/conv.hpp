#pragma once
// Convolution and pooling over NCL / NCHW batches.

#include "autodiff/var.hpp"

namespace ad {

}  // namespace ad
