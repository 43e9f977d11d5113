#pragma once
// tapegrad: reverse-mode automatic differentiation on a tape of VJP closures.
// What users include.

#include "autodiff/array_cache.hpp"
#include "autodiff/check.hpp"
#include "autodiff/debug.hpp"
#include "autodiff/errors.hpp"
#include "autodiff/functional.hpp"
#include "autodiff/graph.hpp"
#include "autodiff/ops/activation.hpp"
#include "autodiff/ops/conv.hpp"
#include "autodiff/ops/decomposition.hpp"
#include "autodiff/ops/elementwise.hpp"
#include "autodiff/ops/indexing.hpp"
#include "autodiff/ops/linalg.hpp"
#include "autodiff/ops/nn.hpp"
#include "autodiff/ops/normalization.hpp"
#include "autodiff/ops/reduce.hpp"
#include "autodiff/ops/shape.hpp"
#include "autodiff/profile.hpp"
#include "autodiff/tape.hpp"
#include "autodiff/tensor.hpp"
#include "autodiff/var.hpp"
