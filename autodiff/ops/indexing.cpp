#include "autodiff/ops/indexing.hpp"

#include "autodiff/ops/all.hpp"

namespace ad {

}  // namespace ad
