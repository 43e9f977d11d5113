#include "autodiff/ops/conv.hpp"

#include "autodiff/ops/all.hpp"

namespace ad {

}  // namespace ad
