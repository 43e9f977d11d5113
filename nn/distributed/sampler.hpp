#pragma once
// Which samples each rank trains on: PyTorch's DistributedSampler. Every rank
// computes the same seeded permutation of epoch e (a function of the seed and
// e alone, the order nn::DataLoader shuffles to with the same seed), pads it
// by wrapping around to a multiple of the group's size (or drops the tail),
// and rank r takes positions r, r + size, r + 2 size, ...
//
// So the j-th batches of b samples of the N ranks together are the j-th batch
// of N b samples of one process (size 1, same seed and epoch): N processes
// with per-rank batch B / N train on what one process with batch B would.
//
//   ad::dist::DistributedSampler sampler(loader.samples(), group);
//   for (std::size_t e = 0; e < epochs; ++e) {
//       sampler.set_epoch(e);
//       for (auto& batch : loader.epoch(sampler.indices())) { ... }
//   }

#include <cstddef>
#include <cstdint>
#include <vector>

#include "nn/distributed/process_group.hpp"

namespace ad::dist {

struct SamplerOptions {
    /// A new permutation every epoch; false keeps the data set's order.
    bool shuffle = true;
    std::uint64_t seed = 0;
    /// Drops the samples past the largest multiple of the group's size
    /// instead of repeating the first ones to fill the last round.
    bool drop_last = false;
};

class DistributedSampler {
public:
    /// Throws value_error for 0 samples, a size of 0 or below, or a rank
    /// outside [0, size).
    DistributedSampler(std::size_t samples, int rank, int size, SamplerOptions options = {});
    /// The group's rank and size.
    DistributedSampler(std::size_t samples, const ProcessGroup& group, SamplerOptions options = {});

    /// The epoch indices() gives the order of (0 for a new sampler); set it
    /// every epoch, and to resume a run.
    void set_epoch(std::size_t epoch) { epoch_ = epoch; }
    std::size_t epoch() const { return epoch_; }

    /// This rank's samples of the epoch, in training order (shard_size() of them).
    std::vector<std::size_t> indices() const;
    /// How many samples each rank takes per epoch: ceil(samples / size), or
    /// floor with drop_last.
    std::size_t shard_size() const;

    std::size_t samples() const { return samples_; }
    int rank() const { return rank_; }
    int size() const { return size_; }

private:
    std::size_t samples_;
    int rank_;
    int size_;
    SamplerOptions options_;
    std::size_t epoch_ = 0;
};

}  // namespace ad::dist
