#pragma once
// tapegrad's nn module: what users include to build and train models.

#include "nn/activation.hpp"
#include "nn/data.hpp"
#include "nn/linear.hpp"
#include "nn/loss.hpp"
#include "nn/module.hpp"
#include "nn/optim.hpp"
#include "nn/random.hpp"
#include "nn/recurrent.hpp"
#include "nn/sequential.hpp"
#include "nn/serialize.hpp"
#include "nn/textbook.hpp"
