#pragma once
// Umbrella header of tapegrad::distributed: data-parallel training across
// processes on MPI. Link tapegrad::distributed; start programs with mpirun.
#include "nn/distributed/checkpoint.hpp"
#include "nn/distributed/data_parallel.hpp"
#include "nn/distributed/process_group.hpp"
#include "nn/distributed/sampler.hpp"
