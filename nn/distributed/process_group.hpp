#pragma once
// A process group: the processes of one MPI communicator, and the collective
// operations data-parallel training is made of (torch.distributed's names):
// barrier, broadcast, allreduce (sum or mean), all-gather, and a non-blocking
// allreduce that DistributedDataParallel starts during the backward sweep.
//
// Every operation waits by polling its MPI request, never in a blocking MPI
// call, so that a rank that never joins is a distributed_error after the
// group's timeout instead of a hang. The group works on its own duplicate of
// the communicator, so its messages never mix with the caller's.
//
//   ad::dist::Environment mpi(argc, argv);        // MPI_Init ... MPI_Finalize
//   ad::dist::ProcessGroup group = ad::dist::ProcessGroup::world();
//   group.allreduce(values, ad::dist::Reduce::mean);

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <mpi.h>

#include "autodiff/tensor.hpp"

namespace ad::dist {

/// A collective that failed: another rank reported a failure, a rank did not
/// join within the timeout, or MPI returned an error. The message starts with
/// the operation and names the ranks involved.
struct distributed_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// Starts MPI (MPI_Init_thread, MPI_THREAD_FUNNELED: one thread of each
/// process calls MPI) unless it is running, and finalizes it at destruction
/// when it started it. One per program, at the top of main. When it starts
/// MPI it also makes MPI_COMM_WORLD return error codes instead of aborting
/// (MPI_ERRORS_RETURN): Open MPI reports errors of non-blocking collectives
/// there, and the groups turn them into distributed_error.
class Environment {
public:
    Environment();
    Environment(int& argc, char**& argv);
    ~Environment();
    Environment(const Environment&) = delete;
    Environment& operator=(const Environment&) = delete;

private:
    bool started_ = false;
};

enum class Reduce { sum, mean, max };

struct GroupOptions {
    /// How long an operation waits for every rank to join before it throws
    /// distributed_error. After a timeout the group's collectives may no
    /// longer line up across the ranks (allreduce, all_gather and broadcast
    /// are several MPI collectives each, and the rank that gave up stopped
    /// partway): make a new group or end the job. A barrier is one
    /// collective: once the late ranks call it too, the group is in step.
    std::chrono::milliseconds timeout = std::chrono::minutes(5);
};

/// A started non-blocking collective. Movable, not copyable; destroying a
/// request that is still running waits for it (errors ignored).
class Request {
public:
    Request() = default;
    Request(Request&& other) noexcept;
    Request& operator=(Request&& other) noexcept;
    Request(const Request&) = delete;
    Request& operator=(const Request&) = delete;
    ~Request();

    /// Lets MPI progress the operation; true once it has completed.
    bool test();
    /// Polls until completion; distributed_error (naming the operation) after
    /// the group's timeout.
    void wait();
    bool done() const noexcept { return request_ == MPI_REQUEST_NULL; }

private:
    friend class ProcessGroup;
    Request(MPI_Request request, const char* op, std::chrono::milliseconds timeout, int rank, int size) noexcept
        : request_(request), op_(op), timeout_(timeout), rank_(rank), size_(size) {}
    MPI_Request request_ = MPI_REQUEST_NULL;
    const char* op_ = "";
    std::chrono::milliseconds timeout_{0};
    int rank_ = 0;  // for the timeout's message
    int size_ = 1;
};

class ProcessGroup {
public:
    /// Every process of the job (a duplicate of MPI_COMM_WORLD). MPI must be
    /// running (Environment): otherwise distributed_error.
    static ProcessGroup world(GroupOptions options = {});
    /// The processes of `comm` (duplicated; the caller keeps `comm`). A
    /// collective over `comm`: every rank of it must make the group. Throws
    /// value_error for a timeout that is not positive.
    explicit ProcessGroup(MPI_Comm comm, GroupOptions options = {});
    ~ProcessGroup();
    ProcessGroup(ProcessGroup&& other) noexcept;
    ProcessGroup& operator=(ProcessGroup&& other) noexcept;
    ProcessGroup(const ProcessGroup&) = delete;
    ProcessGroup& operator=(const ProcessGroup&) = delete;

    int rank() const noexcept { return rank_; }
    int size() const noexcept { return size_; }
    MPI_Comm comm() const noexcept { return comm_; }
    std::chrono::milliseconds timeout() const noexcept { return options_.timeout; }

    /// Returns once every rank has called it.
    void barrier();

    /// Makes `values` on every rank a copy of rank `root`'s (shape included).
    /// The templates take T = float, double, std::int64_t. A collective that
    /// fails or times out leaves `values` as they were.
    template <class T>
    void broadcast(Array<T>& values, int root = 0);
    void broadcast(std::string& text, int root = 0);

    /// Replaces `values` on every rank by the elementwise sum (mean, max) over
    /// the ranks. Every rank must pass the same shape: otherwise shape_error
    /// on every rank, naming the ranks' shapes. Reduce::mean of integers is a
    /// value_error.
    template <class T>
    void allreduce(Array<T>& values, Reduce op = Reduce::sum);

    /// Every rank's `values` stacked along a new first axis, in rank order:
    /// shape (size(), values.shape()...). Shapes must agree (shape_error).
    template <class T>
    Array<T> all_gather(const Array<T>& values);

    /// Starts an allreduce (sum or max; no mean: the caller scales) of `count`
    /// elements at `data` in place; `data` must stay alive and untouched until
    /// the request completes. No shape check: the caller guarantees every
    /// rank passes the same count, in the same order of calls. T: float,
    /// double, std::int64_t.
    template <class T>
    Request allreduce_async(T* data, std::size_t count, Reduce op = Reduce::sum);
    /// The same from `send` into `receive` (not overlapping). Faster for
    /// large arrays: Open MPI's non-blocking allreduce in place copies the
    /// data through a temporary array it allocates on every call, and on a
    /// 16 MiB array the fresh pages cost more than the reduction.
    template <class T>
    Request allreduce_async(const T* send, T* receive, std::size_t count, Reduce op = Reduce::sum);

private:
    /// A collective that timed out: MPI may still read or write its buffers
    /// until the other ranks join, so the group keeps them (and polls the
    /// request in later operations) instead of freeing them.
    struct Abandoned {
        MPI_Request request;
        std::shared_ptr<void> buffers;
    };

    /// Polls `request` until it completes; on timeout keeps it (with
    /// `buffers`) as abandoned and throws distributed_error naming `op`.
    void complete(MPI_Request request, const char* op, std::shared_ptr<void> buffers);
    /// Every rank's shape, in rank order; shape_error on every rank when they differ.
    void check_same_shape(const Shape& shape, const char* op);
    void progress_abandoned();
    template <class T>
    Request start_allreduce(const void* send, T* receive, std::size_t count, Reduce op);

    MPI_Comm comm_ = MPI_COMM_NULL;
    int rank_ = 0;
    int size_ = 1;
    GroupOptions options_;
    std::vector<Abandoned> abandoned_;
};

}  // namespace ad::dist
