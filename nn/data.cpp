#include "nn/data.hpp"

#include <algorithm>
#include <numeric>

#include <fmt/format.h>

#include "nn/random.hpp"

namespace ad::nn {

template <class T>
DataLoader<T>::DataLoader(Array<T> inputs, Array<T> targets, std::size_t batch_size, bool shuffle,
                          std::uint64_t seed)
    : batch_size_(batch_size), shuffle_(shuffle), rng_(seed) {
    if (inputs.dimension() == 0 || targets.dimension() == 0 || inputs.shape()[0] != targets.shape()[0]) {
        throw shape_error(fmt::format("DataLoader: inputs have shape {} and targets shape {}; they need the same "
                                      "number of rows (one per sample)",
                                      shape_string_of(inputs), shape_string_of(targets)));
    }
    if (inputs.shape()[0] == 0) throw value_error("DataLoader: the data set is empty (0 rows)");
    if (batch_size == 0) throw value_error("DataLoader: the batch size is 0");
    order_.resize(inputs.shape()[0]);
    std::iota(order_.begin(), order_.end(), std::size_t(0));
    inputs_ = constant(std::move(inputs));
    targets_ = constant(std::move(targets));
}

template <class T>
std::vector<Batch<T>> DataLoader<T>::epoch() {
    if (shuffle_) nn::shuffle(order_, rng_);
    std::vector<Batch<T>> batches;
    for (std::size_t begin = 0; begin < order_.size(); begin += batch_size_) {
        std::size_t end = std::min(order_.size(), begin + batch_size_);
        std::vector<std::size_t> rows(order_.begin() + long(begin), order_.begin() + long(end));
        // Constants: take_rows records nothing, the batch is plain data.
        batches.push_back({take_rows(inputs_, rows), take_rows(targets_, rows), rows});
    }
    return batches;
}

template class DataLoader<float>;
template class DataLoader<double>;

}  // namespace ad::nn
