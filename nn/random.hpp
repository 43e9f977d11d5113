#pragma once
// Seeded randomness whose results are the same on every platform and standard
// library: std::mt19937_64's sequence is fixed by the standard, but
// std::uniform_real_distribution's and std::shuffle's are not, so we map the
// raw 64-bit draws ourselves.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace ad::nn {

/// Uniform in [0, 1): the top 53 bits of one draw, exactly representable in double.
inline double uniform01(std::mt19937_64& rng) {
    return static_cast<double>(rng() >> 11) * (1.0 / 9007199254740992.0);
}

/// Uniform in [lo, hi), computed in double so float and double models drawn
/// from one seed hold the same weights up to rounding.
inline double uniform(std::mt19937_64& rng, double lo, double hi) {
    return lo + (hi - lo) * uniform01(rng);
}

/// Standard normal, by Box-Muller from two uniform01 draws (std::normal_distribution's
/// sequence is not fixed by the standard). 1 - u keeps the logarithm's argument in (0, 1].
inline double normal(std::mt19937_64& rng) {
    double u = 1.0 - uniform01(rng), v = uniform01(rng);
    return std::sqrt(-2.0 * std::log(u)) * std::cos(6.283185307179586 * v);
}

/// Uniform integer in [0, n) without modulo bias (rejection of the short tail).
inline std::uint64_t uniform_index(std::mt19937_64& rng, std::uint64_t n) {
    const std::uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    std::uint64_t draw;
    do draw = rng(); while (draw >= limit);
    return draw % n;
}

/// Fisher-Yates with uniform_index: the same permutation for a seed everywhere.
inline void shuffle(std::vector<std::size_t>& v, std::mt19937_64& rng) {
    for (std::size_t i = v.size(); i > 1; --i) {
        std::size_t j = static_cast<std::size_t>(uniform_index(rng, i));
        std::swap(v[i - 1], v[j]);
    }
}

/// A well-mixed seed for part `index` of something seeded with `seed`
/// (splitmix64), so layer 1 of seed 0 and layer 0 of seed 1 differ.
inline std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t index) {
    std::uint64_t z = seed + 0x9e3779b97f4a7c15ULL * (index + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

}  // namespace ad::nn
