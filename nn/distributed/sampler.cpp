// The distributed sampler: one seeded permutation per epoch, padded and dealt
// out round-robin to the ranks.
#include "nn/distributed/sampler.hpp"

#include <numeric>
#include <random>

#include <fmt/format.h>

#include "autodiff/errors.hpp"
#include "nn/random.hpp"

namespace ad::dist {

DistributedSampler::DistributedSampler(std::size_t samples, int rank, int size, SamplerOptions options)
    : samples_(samples), rank_(rank), size_(size), options_(options) {
    if (samples == 0) throw value_error("DistributedSampler: the data set is empty (0 samples)");
    if (size <= 0) throw value_error(fmt::format("DistributedSampler: the group size is {}; it must be positive", size));
    if (rank < 0 || rank >= size) {
        throw value_error(fmt::format("DistributedSampler: rank {} is not in a group of size {}", rank, size));
    }
}

DistributedSampler::DistributedSampler(std::size_t samples, const ProcessGroup& group, SamplerOptions options)
    : DistributedSampler(samples, group.rank(), group.size(), options) {}

std::size_t DistributedSampler::shard_size() const {
    const std::size_t n = std::size_t(size_);
    return options_.drop_last ? samples_ / n : (samples_ + n - 1) / n;
}

std::vector<std::size_t> DistributedSampler::indices() const {
    std::vector<std::size_t> order(samples_);
    std::iota(order.begin(), order.end(), std::size_t(0));
    if (options_.shuffle) {
        // nn::DataLoader's shuffle, so one process with a loader and a group
        // of one with this sampler see the same order.
        std::mt19937_64 rng(nn::derive_seed(options_.seed, epoch_));
        nn::shuffle(order, rng);
    }
    // Position k of the padded order is order[k % samples] (wrapping around
    // as often as needed); rank r takes positions r, r + size, ...
    const std::size_t n = std::size_t(size_), count = shard_size();
    std::vector<std::size_t> mine;
    mine.reserve(count);
    for (std::size_t i = 0; i < count; ++i) mine.push_back(order[(std::size_t(rank_) + i * n) % samples_]);
    return mine;
}

}  // namespace ad::dist
