#pragma once
// Shared by the distributed tests: the group every test runs its collectives
// on (made by main.cpp after MPI starts), and helpers to compare arrays.

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "nn/distributed/distributed.hpp"
#include "nn/nn.hpp"

#include <xtensor/xview.hpp>

namespace ad::test {

/// Every process of the job. Its timeout is a minute, not the default five,
/// so that a test that leaves the ranks out of step fails instead of hanging.
ad::dist::ProcessGroup& group();

/// Whether `a` equals on every rank (exactly: broadcast copies bits).
template <class T>
bool same_on_every_rank(const Array<T>& a) {
    Array<T> gathered = group().all_gather(a);
    for (int r = 0; r < group().size(); ++r) {
        Array<T> row = xt::view(gathered, r);
        if (!(row == a)) return false;
    }
    return true;
}

}  // namespace ad::test
