#pragma once
// Mini-batches over an in-memory data set (the first axis indexes samples:
// rows of a table, images (N, C, H, W), sequences), reshuffled every epoch:
// epoch e's order is a function of the seed and e alone, so the same seed
// gives the same batches on every run, and a resumed run (set_epoch) the
// batches the uninterrupted one would have had.

#include <cstdint>
#include <vector>

#include "nn/module.hpp"

namespace ad::nn {

/// One mini-batch: inputs and targets as constants (or class labels, for a
/// loader made with labels; targets is then empty), and the data set rows
/// they came from.
template <class T>
struct Batch {
    Var<T> inputs;
    Var<T> targets;
    std::vector<std::size_t> rows;
    std::vector<std::size_t> labels;
};

template <class T>
class DataLoader {
public:
    /// Throws shape_error when inputs and targets differ in row count (or are
    /// 0-d), value_error for an empty data set or a batch size of 0.
    DataLoader(Array<T> inputs, Array<T> targets, std::size_t batch_size, bool shuffle = true,
               std::uint64_t seed = 0);
    /// Integer class labels as targets, one per sample (for cross-entropy).
    DataLoader(Array<T> inputs, std::vector<std::size_t> labels, std::size_t batch_size, bool shuffle = true,
               std::uint64_t seed = 0);

    /// The next epoch's batches, in a fresh order when shuffling. The last
    /// batch is smaller when the batch size does not divide the data set.
    std::vector<Batch<T>> epoch();
    /// The batches of the given rows, in that order (batch_size() of them a
    /// batch, the last one smaller): for an order made elsewhere, such as a
    /// rank's share of a distributed sampler. Does not count an epoch.
    /// A row out of range is a value_error.
    std::vector<Batch<T>> epoch(const std::vector<std::size_t>& rows);
    /// The epoch the next call to epoch() gives (0 for a new loader); set it
    /// to resume a run at that epoch's order.
    std::size_t next_epoch() const { return epoch_; }
    void set_epoch(std::size_t epoch) { epoch_ = epoch; }

    std::size_t samples() const { return inputs_.shape()[0]; }
    std::size_t batch_size() const { return batch_size_; }
    std::size_t batches_per_epoch() const { return (samples() + batch_size_ - 1) / batch_size_; }

private:
    std::vector<Batch<T>> batches(const std::vector<std::size_t>& order) const;

    Var<T> inputs_;
    Var<T> targets_;  // empty with labels
    std::vector<std::size_t> labels_;
    std::size_t batch_size_;
    bool shuffle_;
    std::uint64_t seed_;
    std::size_t epoch_ = 0;
};

extern template class DataLoader<float>;
extern template class DataLoader<double>;

}  // namespace ad::nn
