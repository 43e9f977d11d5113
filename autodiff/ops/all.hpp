#pragma once
// Every op family, for the ops' own VJPs (which are written with engine ops).

#include "autodiff/ops/activation.hpp"
#include "autodiff/ops/conv.hpp"
#include "autodiff/ops/decomposition.hpp"
#include "autodiff/ops/elementwise.hpp"
#include "autodiff/ops/indexing.hpp"
#include "autodiff/ops/linalg.hpp"
#include "autodiff/ops/nn.hpp"
#include "autodiff/ops/normalization.hpp"
#include "autodiff/ops/recurrent.hpp"
#include "autodiff/ops/reduce.hpp"
#include "autodiff/ops/shape.hpp"
