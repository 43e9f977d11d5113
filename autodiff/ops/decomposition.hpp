#pragma once
// Differentiable linear algebra through LAPACK: solves, factorisations, inverses, determinants.

#include "autodiff/var.hpp"

namespace ad {

}  // namespace ad
