#include "nn/distributed/data_parallel.hpp"

#include <algorithm>
#include <cstdint>

#include <fmt/format.h>

#include "autodiff/errors.hpp"
#include "autodiff/memory/grad_buffers.hpp"

namespace ad::nn {
namespace {

/// One line per parameter ("name (shape)"), for checking that every rank
/// wraps the same model.
template <class T>
std::string structure_of(const std::vector<NamedParameter<T>>& parameters, const std::vector<NamedBuffer<T>>& buffers) {
    std::string out;
    for (const auto& p : parameters) out += fmt::format("{} {}\n", p.name, shape_string_of(p.var.value()));
    for (const auto& b : buffers) out += fmt::format("buffer {} {}\n", b.name, shape_string_of(*b.value));
    return out;
}

/// FNV-1a of a string, as a number every rank can compare in one all-gather.
double fingerprint(const std::string& text) {
    std::uint64_t h = 14695981039346656037ull;
    for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
    return double(h >> 11);  // 53 bits: exact in a double
}

}  // namespace

template <class T>
DistributedDataParallel<T>::DistributedDataParallel(ModulePtr<T> module, dist::ProcessGroup& group,
                                                    DistributedOptions options)
    : module_(std::move(module)), group_(group), options_(options) {
    if (!module_) throw value_error("DistributedDataParallel: the module is null");
    if (options_.bucket_bytes == 0 || options_.first_bucket_bytes == 0) {
        throw value_error(fmt::format("DistributedDataParallel: bucket sizes must be positive (bucket_bytes {}, "
                                      "first_bucket_bytes {})",
                                      options_.bucket_bytes, options_.first_bucket_bytes));
    }
    this->register_module("module", module_);
    const auto named = module_->named_parameters();
    const auto buffers = module_->named_buffers();

    // Every rank must wrap the same structure: compare fingerprints first, so
    // that a mismatch is an error on every rank rather than a broadcast of
    // the wrong sizes.
    const std::string structure = structure_of(named, buffers);
    Array<double> mine = {fingerprint(structure)};
    const Array<double> all = group_.all_gather(mine);
    std::vector<int> differ;
    for (int r = 0; r < group_.size(); ++r) {
        if (all(r, 0) != all(0, 0)) differ.push_back(r);
    }
    if (!differ.empty()) {
        throw value_error(fmt::format("DistributedDataParallel: ranks {} wrap a model whose parameters or buffers "
                                      "(names and shapes) differ from rank 0's; this rank ({}) has:\n{}",
                                      fmt::join(differ, ", "), group_.rank(), structure));
    }
    for (const auto& p : named) {
        group_.broadcast(p.var.mutable_value(), 0);
        parameters_.push_back(p.var);
    }
    for (const auto& b : buffers) group_.broadcast(*b.value, 0);

    // Until a step has shown the order its sweep completes gradients in:
    // reverse registration order, the usual one.
    std::vector<std::size_t> order(parameters_.size());
    for (std::size_t k = 0; k < order.size(); ++k) order[k] = order.size() - 1 - k;
    build_buckets(order);
    first_records_.assign(parameters_.size(), Tape::no_record);
}

template <class T>
void DistributedDataParallel<T>::build_buckets(const std::vector<std::size_t>& order) {
    buckets_.clear();
    offsets_.assign(parameters_.size(), 0);
    std::size_t cap = options_.first_bucket_bytes;
    bool packing = false;  // the last bucket takes more small gradients
    for (std::size_t k : order) {
        const std::size_t bytes = parameters_[k].size() * sizeof(T);
        Bucket& bucket = [&]() -> Bucket& {
            if (bytes >= options_.first_bucket_bytes) {
                // Large: alone, sent from its grad() and received beside it.
                packing = false;
                Bucket& alone = buckets_.emplace_back();
                alone.alone = true;
                alone.sum_array = Array<T>::from_shape(parameters_[k].value().shape());
                return alone;
            }
            if (!packing || (buckets_.back().buffer.size() * sizeof(T) + bytes > cap)) {
                if (!buckets_.empty()) cap = options_.bucket_bytes;
                packing = true;
                return buckets_.emplace_back();
            }
            return buckets_.back();
        }();
        bucket.members.push_back(k);
        if (!bucket.alone) {
            offsets_[k] = bucket.buffer.size();
            bucket.buffer.resize(bucket.buffer.size() + parameters_[k].size());
            bucket.sum.resize(bucket.buffer.size());
        }
    }
}

template <class T>
void DistributedDataParallel<T>::rebuild_buckets() {
    // Rank 0's order, so that every rank starts the same buckets in the same
    // order even if their sweeps differed.
    std::vector<std::size_t> order(parameters_.size());
    for (std::size_t k = 0; k < order.size(); ++k) order[k] = order.size() - 1 - k;
    // Unread parameters first (ready at once), then by the record after which
    // each is complete, latest record first.
    auto key = [&](std::size_t k) { return first_records_[k] == Tape::no_record ? ~std::size_t{0} : first_records_[k]; };
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return key(a) > key(b); });
    Array<std::int64_t> shared = Array<std::int64_t>::from_shape({order.size()});
    for (std::size_t i = 0; i < order.size(); ++i) shared(i) = std::int64_t(order[i]);
    group_.broadcast(shared, 0);
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = std::size_t(shared(i));
    build_buckets(order);
    rebuilt_ = true;
}

template <class T>
DistributedDataParallel<T>::~DistributedDataParallel() {
    // A step this rank began but never finished (its loss threw and the
    // caller let it go): the other ranks are waiting in it.
    if (armed_) fail_step("DistributedDataParallel was destroyed before the step's backward ran");
    if (listening_ && sweep_listener() == this) listen_to_sweeps(previous_listener_);
}

template <class T>
void DistributedDataParallel<T>::check_usable(const char* op) const {
    if (!broken_.empty()) {
        throw dist::distributed_error(
            fmt::format("DistributedDataParallel::{}: the process group failed earlier ({})", op, broken_));
    }
}

template <class T>
void DistributedDataParallel<T>::begin_forward() {
    check_usable("forward");
    if (armed_) {
        // Two forwards before one backward (e.g. two micro-batches summed
        // into one loss) are one step: nothing to do.
    } else if (sync_ && detail::recording()) {
        // Only a forward that records arms: an evaluation under NoGrad has
        // no backward to average.
        if (options_.broadcast_buffers) {
            for (const auto& b : module_->named_buffers()) group_.broadcast(*b.value, 0);
        }
        armed_ = true;
    }
    if (!listening_ || sweep_listener() != this) {
        previous_listener_ = listen_to_sweeps(this);
        listening_ = true;
    }
}

template <class T>
Var<T> DistributedDataParallel<T>::forward(const Var<T>& x) {
    return run([&] { return (*module_)(x); });
}

template <class T>
double DistributedDataParallel<T>::now() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - sweep_began_).count();
}

template <class T>
void DistributedDataParallel<T>::sweep_begins(const Tape& tape, std::size_t first, std::size_t end) {
    sweeping_ = armed_;
    if (!sweeping_) return;
    sweep_began_ = std::chrono::steady_clock::now();
    timeline_ = SyncTimeline{};
    timeline_.records = end - first;
    next_bucket_ = 0;
    for (Bucket& bucket : buckets_) {
        // A member no record of this sweep reads is final already: `end`
        // makes a bucket of such members ready before the first record.
        bucket.ready_after = end;
        for (std::size_t k : bucket.members) {
            const std::size_t r = tape.first_record_of(parameters_[k].node_ptr().get());
            first_records_[k] = r >= first && r < end ? r : Tape::no_record;
            if (first_records_[k] != Tape::no_record) bucket.ready_after = std::min(bucket.ready_after, r);
        }
        bucket.finished = false;
    }
    start_ready(end);
}

template <class T>
void DistributedDataParallel<T>::record_done(std::size_t index) {
    if (!sweeping_) return;
    start_ready(index);
    poll();
}

template <class T>
void DistributedDataParallel<T>::start_ready(std::size_t index) {
    // In bucket order, so that every rank starts the same collectives in the
    // same order, whatever order its sweep completes them in.
    while (next_bucket_ < buckets_.size() && buckets_[next_bucket_].ready_after >= index) {
        start(buckets_[next_bucket_], index);
        ++next_bucket_;
    }
}

template <class T>
void DistributedDataParallel<T>::start(Bucket& bucket, std::size_t index) {
    if (bucket.alone) {
        const Array<T>& grad = detail::finish_gradient(parameters_[bucket.members.front()]);
        bucket.request = group_.allreduce_async(grad.data(), bucket.sum_array.data(), grad.size(), dist::Reduce::sum);
    } else {
        for (std::size_t k : bucket.members) {
            const Array<T>& grad = detail::finish_gradient(parameters_[k]);
            std::copy(grad.data(), grad.data() + grad.size(), bucket.buffer.data() + offsets_[k]);
        }
        bucket.request = group_.allreduce_async(static_cast<const T*>(bucket.buffer.data()), bucket.sum.data(),
                                                bucket.buffer.size(), dist::Reduce::sum);
    }
    SyncTimeline::Bucket times;
    times.parameters = bucket.members.size();
    for (std::size_t k : bucket.members) times.bytes += parameters_[k].size() * sizeof(T);
    times.started_after_record = index;
    times.started = now();
    timeline_.buckets.push_back(times);
}

template <class T>
void DistributedDataParallel<T>::poll() {
    // MPI moves a non-blocking collective on only inside MPI calls: testing
    // the oldest running bucket between records keeps it going, and a
    // bucket that is done is written back while the sweep goes on.
    for (std::size_t b = 0; b < next_bucket_; ++b) {
        Bucket& bucket = buckets_[b];
        if (bucket.finished) continue;
        if (bucket.request.test()) finished(b);
        return;
    }
}

template <class T>
void DistributedDataParallel<T>::finished(std::size_t b) {
    Bucket& bucket = buckets_[b];
    bucket.finished = true;
    const T ranks = T(group_.size());
    if (bucket.alone) {
        // The sum becomes the gradient's storage, and the gradient's old
        // storage the next step's receive buffer: no copy.
        Array<T>& grad = detail::grad_to_overwrite(parameters_[bucket.members.front()]);
        std::swap(grad.storage(), bucket.sum_array.storage());
        T* g = grad.data();  // a plain loop: g++ vectorises it, xarray's iterator it does not
        for (std::size_t i = 0, n = grad.size(); i < n; ++i) g[i] /= ranks;
    } else {
        for (std::size_t k : bucket.members) {
            Array<T>& grad = detail::grad_to_overwrite(parameters_[k]);
            const T* sum = bucket.sum.data() + offsets_[k];
            T* out = grad.data();
            for (std::size_t i = 0; i < grad.size(); ++i) out[i] = sum[i] / ranks;
        }
    }
    timeline_.buckets[b].finished = now();
}

template <class T>
void DistributedDataParallel<T>::finish_step(const std::string* failure) {
    armed_ = false;
    sweeping_ = false;
    while (next_bucket_ < buckets_.size()) start(buckets_[next_bucket_++], Tape::no_record);
    if (timeline_.sweep_ended == 0) timeline_.sweep_ended = now();
    // Every rank's status travels with the buckets: 1 for a rank that failed.
    std::vector<std::int64_t> status(static_cast<std::size_t>(group_.size()), 0);
    status[static_cast<std::size_t>(group_.rank())] = failure ? 1 : 0;
    dist::Request status_request = group_.allreduce_async(status.data(), status.size(), dist::Reduce::sum);
    try {
        for (std::size_t b = 0; b < buckets_.size(); ++b) {
            if (buckets_[b].finished) continue;
            buckets_[b].request.wait();
            finished(b);
        }
        status_request.wait();
    } catch (const dist::distributed_error& e) {
        broken_ = e.what();
        zero_gradients();
        throw;
    }
    timeline_.averaged = now();
    std::vector<int> failed;
    for (int r = 0; r < group_.size(); ++r) {
        if (status[static_cast<std::size_t>(r)] != 0) failed.push_back(r);
    }
    if (!failed.empty()) {
        // The buckets held whatever the failed ranks had: not a gradient.
        zero_gradients();
        std::string reason = failure ? *failure : std::string();
        group_.broadcast(reason, failed.front());
        throw dist::distributed_error(fmt::format("backward: rank{} {} failed during the step; rank {}: {}",
                                                  failed.size() > 1 ? "s" : "", fmt::join(failed, ", "),
                                                  failed.front(), reason));
    }
    // The first step every rank completed shows the order the sweep
    // completes gradients in: buckets follow it from now on.
    if (!rebuilt_) rebuild_buckets();
}

template <class T>
void DistributedDataParallel<T>::zero_gradients() noexcept {
    for (auto& p : parameters_) p.zero_grad();
}

template <class T>
void DistributedDataParallel<T>::sweep_ends() {
    if (!sweeping_) return;
    timeline_.sweep_ended = now();
    finish_step(nullptr);
}

template <class T>
void DistributedDataParallel<T>::fail_step(const std::string& reason) noexcept {
    if (!armed_ || !broken_.empty()) {
        armed_ = sweeping_ = false;
        return;
    }
    if (!sweeping_) {
        // Failed before its backward: the timeline starts now.
        sweep_began_ = std::chrono::steady_clock::now();
        timeline_ = SyncTimeline{};
        next_bucket_ = 0;
        for (Bucket& bucket : buckets_) bucket.finished = false;
    }
    try {
        finish_step(&reason);
    } catch (...) {
        // Expected: finish_step reports this rank's own failure. The caller's
        // exception is the one that propagates.
    }
}

template <class T>
void DistributedDataParallel<T>::sweep_failed() noexcept {
    if (!sweeping_) return;
    // Called while the sweep's exception is being handled: name it.
    std::string reason = "its backward sweep threw";
    try {
        if (std::exception_ptr e = std::current_exception()) std::rethrow_exception(e);
    } catch (const std::exception& e) {
        reason = fmt::format("its backward sweep threw: {}", e.what());
    } catch (...) {
    }
    fail_step(reason);
}

template <class T>
void DistributedDataParallel<T>::abandon_step(const std::string& reason) {
    if (!armed_) return;
    fail_step(reason);
    throw dist::distributed_error(fmt::format("DistributedDataParallel::abandon_step: rank {} abandoned the step: {}",
                                              group_.rank(), reason));
}

template <class T>
std::vector<std::size_t> DistributedDataParallel<T>::bucket_sizes() const {
    std::vector<std::size_t> sizes;
    for (const Bucket& bucket : buckets_) sizes.push_back(bucket.members.size());
    return sizes;
}

template <class T>
std::string DistributedDataParallel<T>::describe() const {
    return fmt::format("DistributedDataParallel(ranks={}, buckets={})", group_.size(), buckets_.size());
}

template class DistributedDataParallel<float>;
template class DistributedDataParallel<double>;

}  // namespace ad::nn
