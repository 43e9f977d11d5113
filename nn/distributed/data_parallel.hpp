#pragma once
// DistributedDataParallel: one model trained by several processes, each on
// its own shard of every batch, with the gradients averaged over the
// processes during backward() so that every process takes the same
// optimizer step (PyTorch's torch.nn.parallel.DistributedDataParallel).
//
// At construction every rank takes rank 0's parameters and buffers. The
// parameters are then split into buckets in the order a backward sweep
// completes their gradients: reverse registration order at first, then the
// order rank 0's first step showed (PyTorch rebuilds its buckets so too). A
// gradient of first_bucket_bytes or more is a bucket alone, sent from its
// grad() and received into a buffer that then becomes grad() (no copies);
// smaller ones are packed, the first bucket up to first_bucket_bytes, the
// rest up to bucket_bytes. During a backward() after
// forward(), a bucket's allreduce starts as soon as the sweep has run every
// record that reads its parameters (Tape::first_record_of), so the
// communication of the last layers overlaps the backward of the first ones;
// buckets start in the same order on every rank (MPI's rule for
// collectives). A finished bucket's averages are written into its
// parameters' grad() while the sweep goes on; when it ends, backward()
// waits for the rest: the optimizer needs no change. After a step that
// failed on any rank, every grad() reads zeros.
//
// Averaging: each rank's bucket holds its grad() (plus the sweep's
// cotangent); the allreduce sums the ranks' buckets in MPI's order and each
// element is then divided by the number of ranks. With a loss that is a mean
// over each rank's equal share of a global batch, this is the gradient of
// the mean over the global batch, up to the order of the additions.
//
// Failures never hang the others: each step ends with a small allreduce of
// every rank's status, and a rank whose forward or backward threw still
// joins the step's collectives, so every rank throws distributed_error
// naming the failed rank and its message. A rank that stops without
// reaching backward is a distributed_error on the others after the group's
// timeout.

#include <chrono>
#include <cstddef>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "nn/distributed/process_group.hpp"
#include "nn/module.hpp"

namespace ad::nn {

struct DistributedOptions {
    /// Largest bucket (bytes of gradients), PyTorch's bucket_cap_mb.
    std::size_t bucket_bytes = 25u << 20;
    /// The first bucket (the parameters complete first) is this small, so
    /// that communication starts early in the sweep; a gradient this large
    /// or larger is a bucket of its own.
    std::size_t first_bucket_bytes = 1u << 20;
    /// Every forward() first gives all ranks rank 0's buffers (batch norm's
    /// running statistics), as PyTorch's broadcast_buffers does.
    bool broadcast_buffers = true;
};

/// What one synchronised backward did, for the overlap test and benchmarks.
/// Times are seconds since the sweep began.
struct SyncTimeline {
    struct Bucket {
        std::size_t parameters = 0;
        std::size_t bytes = 0;
        std::size_t started_after_record = 0;  ///< the record whose run completed it (Tape::no_record: at the end)
        double started = 0;                    ///< its allreduce was started
        double finished = 0;                   ///< a poll found it complete
    };
    std::size_t records = 0;  ///< records the sweep ran
    double sweep_ended = 0;   ///< the last record had run
    double averaged = 0;      ///< every grad() held its average
    std::vector<Bucket> buckets;  ///< in the order they started
    /// Communication the sweep did not hide: from the sweep's end to the averages.
    double exposed() const { return averaged - sweep_ended; }
};

template <class T>
class DistributedDataParallel final : public Module<T>, private SweepListener {
public:
    /// Wraps `module` (registered as the child "module", so checkpoints name
    /// its parameters "module.<name>", like PyTorch's). Collective: every
    /// rank of `group` constructs one, with the same structure (names and
    /// shapes, else value_error on every rank); `group` must outlive it.
    DistributedDataParallel(ModulePtr<T> module, dist::ProcessGroup& group, DistributedOptions options = {});
    ~DistributedDataParallel() override;
    DistributedDataParallel(const DistributedDataParallel&) = delete;
    DistributedDataParallel& operator=(const DistributedDataParallel&) = delete;

    /// The wrapped module's forward; the next backward() on this thread
    /// averages the gradients (unless inside no_sync()).
    Var<T> forward(const Var<T>& x) override;
    using Module<T>::operator();

    /// Runs `run` (a call of the wrapped module with other arguments, e.g. a
    /// GRU's sequence and state) as forward() runs the module.
    template <class Run>
    auto run(Run&& run) -> decltype(run()) {
        begin_forward();
        try {
            return run();
        } catch (const std::exception& e) {
            fail_step(e.what());
            throw;
        }
    }

    /// While the returned guard lives, forward() does not arm the next
    /// backward: gradients accumulate locally (gradient accumulation), and
    /// the first backward after it averages the sum.
    class NoSync {
    public:
        explicit NoSync(DistributedDataParallel& ddp) noexcept : ddp_(&ddp), previous_(ddp.sync_) { ddp.sync_ = false; }
        ~NoSync() {
            if (ddp_) ddp_->sync_ = previous_;
        }
        NoSync(NoSync&& other) noexcept : ddp_(std::exchange(other.ddp_, nullptr)), previous_(other.previous_) {}
        NoSync(const NoSync&) = delete;
        NoSync& operator=(const NoSync&) = delete;
        NoSync& operator=(NoSync&&) = delete;

    private:
        DistributedDataParallel* ddp_;
        bool previous_;
    };
    NoSync no_sync() noexcept { return NoSync(*this); }

    /// For a rank that failed outside forward() and backward() (computing
    /// its loss, say) and goes on: joins the step's collectives with
    /// `reason`, so that the others throw instead of waiting; then throws
    /// distributed_error itself. Does nothing when no step is pending.
    void abandon_step(const std::string& reason);

    const ModulePtr<T>& module() const noexcept { return module_; }
    dist::ProcessGroup& group() const noexcept { return group_; }
    /// Parameters per bucket, in the order buckets start.
    std::vector<std::size_t> bucket_sizes() const;
    /// The last synchronised backward.
    const SyncTimeline& last_sync() const noexcept { return timeline_; }
    std::string describe() const override;

private:
    struct Bucket {
        std::vector<std::size_t> members;  // indices into parameters_
        std::vector<T> buffer;             // small members' gradients, end to end
        std::vector<T> sum;                // the allreduce's result (not in place: see allreduce_async)
        bool alone = false;                // one large member, sent from its grad() (no buffer)
        Array<T> sum_array;                // alone: the allreduce's result, swapped into grad()
        std::size_t ready_after = 0;       // the sweep's record after which every member is final
        dist::Request request;
        bool finished = false;
    };

    void begin_forward();
    /// Buckets over the parameters in `order` (indices into parameters_).
    void build_buckets(const std::vector<std::size_t>& order);
    /// Buckets in the order the last sweep completed the gradients (rank 0's).
    void rebuild_buckets();
    void sweep_begins(const Tape& tape, std::size_t first, std::size_t end) override;
    void record_done(std::size_t index) override;
    void sweep_ends() override;
    void sweep_failed() noexcept override;
    /// Starts every bucket that is ready, in bucket order, after `index` ran.
    void start_ready(std::size_t index);
    void start(Bucket& bucket, std::size_t index);
    void poll();
    /// Bucket b's allreduce is done: its averages become the grad()s.
    void finished(std::size_t b);
    /// After a failed step: every grad() reads zeros.
    void zero_gradients() noexcept;
    /// Starts what is left, waits for every bucket and the ranks' status;
    /// throws distributed_error when a rank failed (this one included).
    void finish_step(const std::string* failure);
    void fail_step(const std::string& reason) noexcept;
    void check_usable(const char* op) const;
    double now() const;

    ModulePtr<T> module_;
    dist::ProcessGroup& group_;
    DistributedOptions options_;
    std::vector<Var<T>> parameters_;
    std::vector<std::size_t> offsets_;  // each parameter's place in its bucket's buffer
    std::vector<Bucket> buckets_;
    std::vector<std::size_t> first_records_;  // per parameter, in the last sweep (Tape::first_record_of)
    bool rebuilt_ = false;         // buckets follow an observed sweep
    std::size_t next_bucket_ = 0;  // the next to start
    bool sync_ = true;             // no_sync() sets it false
    bool armed_ = false;           // forward() ran; its backward averages
    bool sweeping_ = false;        // a listened sweep is running
    std::string broken_;           // why the group can no longer be used (a timeout), or empty
    SweepListener* previous_listener_ = nullptr;
    bool listening_ = false;
    std::chrono::steady_clock::time_point sweep_began_;
    SyncTimeline timeline_;
};

extern template class DistributedDataParallel<float>;
extern template class DistributedDataParallel<double>;

}  // namespace ad::nn
