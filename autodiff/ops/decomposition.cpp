#include "autodiff/ops/decomposition.hpp"

#include "autodiff/ops/all.hpp"

namespace ad {

}  // namespace ad
