#pragma once
// Shared by the tests: seeded random inputs, row-major index arithmetic for
// hand-written references, the comparisons the op tests hold values to, and
// gradcheck / gradgradcheck assertions that print the worst element on failure.

#include <cstddef>
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

/// The row-major multi-index of element `flat` of an array of `shape`.
inline Shape unravel(std::size_t flat, const Shape& shape) {
    Shape index(shape.size());
    for (std::size_t d = shape.size(); d-- > 0;) {
        index[d] = flat % shape[d];
        flat /= shape[d];
    }
    return index;
}

/// The row-major position of `index` in an array of `shape`: unravel's inverse.
inline std::size_t ravel(const Shape& index, const Shape& shape) {
    std::size_t flat = 0;
    for (std::size_t d = 0; d < shape.size(); ++d) flat = flat * shape[d] + index[d];
    return flat;
}

/// An op's forward value against a reference computed with loops: the same
/// shape, and every element within 1e-12 (relative and absolute).
inline bool matches(const Array<double>& actual, const Array<double>& expected) {
    // xt::allclose offsets the null data pointer of an empty array (UBSan): empty arrays match by shape.
    return actual.shape() == expected.shape() && (actual.size() == 0 || xt::allclose(actual, expected, 1e-12, 1e-12));
}

/// A gradient computed in float against the same computation in double:
/// within 1e-5 relative, 1e-6 absolute.
inline bool float_matches_double(const Array<float>& in_float, const Array<double>& in_double) {
    if (in_float.size() == 0 || in_double.size() == 0) return in_float.shape() == in_double.shape();
    return xt::allclose(xt::cast<double>(in_float), in_double, 1e-5, 1e-6);
}

/// float_matches_double for each input's gradient, one CHECK an input (named on failure).
inline void check_float_matches_double(const std::vector<Array<float>>& in_float,
                                       const std::vector<Array<double>>& in_double) {
    for (std::size_t i = 0; i < in_float.size(); ++i) {
        INFO("input ", i);
        CHECK(float_matches_double(in_float[i], in_double.at(i)));
    }
}

}  // namespace ad::test

/// Runs gradcheck and fails the test with its message (worst element, analytic vs numeric).
#define CHECK_GRADCHECK(f, inputs)                          \
    do {                                                    \
        auto gradcheck_result_ = ::ad::gradcheck((f), (inputs)); \
        INFO(gradcheck_result_.message);                    \
        CHECK(gradcheck_result_.ok);                        \
    } while (false)

/// Runs gradgradcheck (second derivatives, with respect to every input) and
/// fails the test with its message.
#define CHECK_GRADGRADCHECK(f, inputs)                                   \
    do {                                                                 \
        auto gradgradcheck_result_ = ::ad::gradgradcheck((f), (inputs)); \
        INFO(gradgradcheck_result_.message);                             \
        CHECK(gradgradcheck_result_.ok);                                 \
    } while (false)
