#include "nn/data.hpp"

#include <algorithm>
#include <numeric>

#include <fmt/format.h>

#include "autodiff/profile.hpp"
#include "nn/random.hpp"

namespace ad::nn {

namespace {

void check_sizes(std::size_t samples, std::size_t batch_size) {
    if (samples == 0) throw value_error("DataLoader: the data set is empty (0 samples)");
    if (batch_size == 0) throw value_error("DataLoader: the batch size is 0");
}

}  // namespace

template <class T>
DataLoader<T>::DataLoader(Array<T> inputs, Array<T> targets, std::size_t batch_size, bool shuffle,
                          std::uint64_t seed)
    : batch_size_(batch_size), shuffle_(shuffle), seed_(seed) {
    if (inputs.dimension() == 0 || targets.dimension() == 0 || inputs.shape()[0] != targets.shape()[0]) {
        throw shape_error(fmt::format("DataLoader: inputs have shape {} and targets shape {}; they need the same "
                                      "number of rows (one per sample)",
                                      shape_string_of(inputs), shape_string_of(targets)));
    }
    check_sizes(inputs.shape()[0], batch_size);
    inputs_ = constant(std::move(inputs));
    targets_ = constant(std::move(targets));
}

template <class T>
DataLoader<T>::DataLoader(Array<T> inputs, std::vector<std::size_t> labels, std::size_t batch_size, bool shuffle,
                          std::uint64_t seed)
    : labels_(std::move(labels)), batch_size_(batch_size), shuffle_(shuffle), seed_(seed) {
    if (inputs.dimension() == 0 || inputs.shape()[0] != labels_.size()) {
        throw shape_error(fmt::format("DataLoader: inputs have shape {} and there are {} labels; they need one "
                                      "label per sample",
                                      shape_string_of(inputs), labels_.size()));
    }
    check_sizes(inputs.shape()[0], batch_size);
    inputs_ = constant(std::move(inputs));
}

template <class T>
std::vector<Batch<T>> DataLoader<T>::epoch() {
    ad::ProfileRange range("DataLoader.epoch");  // the batches' copies are not charged to the next op
    std::vector<std::size_t> order(samples());
    std::iota(order.begin(), order.end(), std::size_t(0));
    if (shuffle_) {
        std::mt19937_64 rng(derive_seed(seed_, epoch_));
        nn::shuffle(order, rng);
    }
    ++epoch_;
    return batches(order);
}

template <class T>
std::vector<Batch<T>> DataLoader<T>::epoch(const std::vector<std::size_t>& rows) {
    ad::ProfileRange range("DataLoader.epoch");
    for (std::size_t i = 0; i < rows.size(); ++i) {
        if (rows[i] >= samples()) {
            throw value_error(fmt::format("DataLoader::epoch: row {} (position {} of the order) is out of range for a "
                                          "data set of {} samples",
                                          rows[i], i, samples()));
        }
    }
    return batches(rows);
}

template <class T>
std::vector<Batch<T>> DataLoader<T>::batches(const std::vector<std::size_t>& order) const {
    std::vector<Batch<T>> out;
    for (std::size_t begin = 0; begin < order.size(); begin += batch_size_) {
        std::size_t end = std::min(order.size(), begin + batch_size_);
        std::vector<std::size_t> rows(order.begin() + long(begin), order.begin() + long(end));
        // Constants: take_rows records nothing, the batch is plain data.
        Batch<T> batch{take_rows(inputs_, rows), Var<T>(), rows, {}};
        if (labels_.empty()) {
            batch.targets = take_rows(targets_, rows);
        } else {
            for (std::size_t r : rows) batch.labels.push_back(labels_[r]);
        }
        out.push_back(std::move(batch));
    }
    return out;
}

template class DataLoader<float>;
template class DataLoader<double>;

}  // namespace ad::nn
