#pragma once
// Mini-batches over an in-memory data set (rows are samples), reshuffled
// every epoch from a seed: the same seed gives the same batches on every run.

#include <cstdint>
#include <random>
#include <vector>

#include "nn/module.hpp"

namespace ad::nn {

/// One mini-batch: inputs and targets as constants, and the data set rows they came from.
template <class T>
struct Batch {
    Var<T> inputs;
    Var<T> targets;
    std::vector<std::size_t> rows;
};

template <class T>
class DataLoader {
public:
    /// Throws shape_error when inputs and targets differ in row count (or are
    /// 0-d), value_error for an empty data set or a batch size of 0.
    DataLoader(Array<T> inputs, Array<T> targets, std::size_t batch_size, bool shuffle = true,
               std::uint64_t seed = 0);

    /// The next epoch's batches, in a fresh order when shuffling. The last
    /// batch is smaller when the batch size does not divide the data set.
    std::vector<Batch<T>> epoch();

    std::size_t samples() const { return inputs_.shape()[0]; }
    std::size_t batch_size() const { return batch_size_; }
    std::size_t batches_per_epoch() const { return (samples() + batch_size_ - 1) / batch_size_; }

private:
    Var<T> inputs_;
    Var<T> targets_;
    std::size_t batch_size_;
    bool shuffle_;
    std::mt19937_64 rng_;
    std::vector<std::size_t> order_;
};

extern template class DataLoader<float>;
extern template class DataLoader<double>;

}  // namespace ad::nn
