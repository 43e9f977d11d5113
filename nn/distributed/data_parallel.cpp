#include "nn/distributed/data_parallel.hpp"
