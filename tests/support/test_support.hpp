#pragma once
// Shared by the tests: seeded random inputs and a gradcheck assertion that
// prints the worst element when it fails.

#include <cstdint>
#include <random>
#include <vector>

#include <doctest/doctest.h>
#include <xtensor/xrandom.hpp>

#include "autodiff/autodiff.hpp"

namespace ad::test {

using Vars = std::vector<Var<double>>;

/// Uniform in [lo, hi), seeded: the same array on every run.
inline Array<double> uniform(const Shape& shape, std::uint64_t seed, double lo = -1, double hi = 1) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> dist(lo, hi);
    Array<double> a = Array<double>::from_shape(shape);
    for (auto& v : a) v = dist(rng);
    return a;
}

/// Values whose magnitude is in [margin, 1): away from the kinks of relu, abs, max.
inline Array<double> away_from_zero(const Shape& shape, std::uint64_t seed, double margin = 0.1) {
    Array<double> a = uniform(shape, seed, margin, 1);
    std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ULL);
    for (auto& v : a) v = (rng() & 1) ? v : -v;
    return a;
}

/// A random shape of rank in [min_rank, max_rank], sides in [1, max_side].
inline Shape random_shape(std::mt19937_64& rng, std::size_t min_rank, std::size_t max_rank, std::size_t max_side = 4) {
    std::size_t rank = min_rank + rng() % (max_rank - min_rank + 1);
    Shape s(rank);
    for (auto& d : s) d = 1 + rng() % max_side;
    return s;
}

}  // namespace ad::test

/// Runs gradcheck and fails the test with its message (worst element, analytic vs numeric).
#define CHECK_GRADCHECK(f, inputs)                          \
    do {                                                    \
        auto gradcheck_result_ = ::ad::gradcheck((f), (inputs)); \
        INFO(gradcheck_result_.message);                    \
        CHECK(gradcheck_result_.ok);                        \
    } while (false)
