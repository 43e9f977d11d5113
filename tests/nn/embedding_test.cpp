#include "nn_test_support.hpp"
