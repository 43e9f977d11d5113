#include "autodiff/ops/activation.hpp"

#include "autodiff/ops/all.hpp"

namespace ad {

}  // namespace ad
