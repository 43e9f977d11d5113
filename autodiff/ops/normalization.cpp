#include "autodiff/ops/normalization.hpp"

#include "autodiff/ops/all.hpp"

namespace ad {

}  // namespace ad
