#pragma once
// Ops that pick elements by integer index: gather, index_select, embedding.

#include "autodiff/var.hpp"

namespace ad {

}  // namespace ad
