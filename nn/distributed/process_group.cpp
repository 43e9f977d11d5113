// The process group on MPI: every collective is started with MPI's
// non-blocking call and completed by polling, so that a rank that never joins
// is a distributed_error after the group's timeout, not a hang.
#include "nn/distributed/process_group.hpp"

#include <algorithm>
#include <climits>
#include <thread>
#include <type_traits>
#include <utility>

#include <fmt/format.h>

#include "autodiff/errors.hpp"

namespace ad::dist {

namespace {

using Clock = std::chrono::steady_clock;

template <class T>
MPI_Datatype datatype();
template <>
MPI_Datatype datatype<float>() { return MPI_FLOAT; }
template <>
MPI_Datatype datatype<double>() { return MPI_DOUBLE; }
template <>
MPI_Datatype datatype<std::int64_t>() { return MPI_INT64_T; }

std::string mpi_error_string(int code) {
    char text[MPI_MAX_ERROR_STRING];
    int length = 0;
    if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return fmt::format("MPI error {}", code);
    return std::string(text, std::size_t(length));
}

/// Turns an MPI error code into distributed_error ("allreduce: MPI_Iallreduce failed: ...").
void check(int code, const char* op, const char* call) {
    if (code != MPI_SUCCESS) throw distributed_error(fmt::format("{}: {} failed: {}", op, call, mpi_error_string(code)));
}

bool mpi_running() {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    return initialized && !finalized;
}

/// MPI counts are ints.
int count_of(std::size_t count, const char* op) {
    if (count > std::size_t(INT_MAX)) {
        throw value_error(fmt::format("{}: {} elements is more than one MPI call takes ({})", op, count, INT_MAX));
    }
    return int(count);
}

MPI_Op mpi_op(Reduce op) { return op == Reduce::max ? MPI_MAX : MPI_SUM; }

/// Tests `request` until it completes (true) or `deadline` passes (false).
/// The first polls spin, for the short waits of a fast interconnect; then
/// the process yields and sleeps between polls, so that ranks sharing cores
/// (more processes than cores, as on CI) leave the others time to arrive.
bool poll_until(MPI_Request& request, Clock::time_point deadline, const char* op) {
    // MPI moves a large message on by a fragment per call: the wait keeps
    // calling (yielding the core to anything else runnable), and only one
    // that has lasted a second, a rank late or gone, sleeps between calls.
    const Clock::time_point start = Clock::now();
    for (long polls = 0;; ++polls) {
        int done = 0;
        check(MPI_Test(&request, &done, MPI_STATUS_IGNORE), op, "MPI_Test");
        if (done) return true;
        if (polls % 64 != 63) continue;
        const Clock::time_point now = Clock::now();
        if (now >= deadline) return false;
        if (now - start > std::chrono::seconds(1)) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        } else {
            std::this_thread::yield();
        }
    }
}

std::string timeout_message(const char* op, int rank, int size, std::chrono::milliseconds timeout) {
    return fmt::format("{}: rank {} waited {} ms for the other ranks of the group of {} to join and they did not: a rank "
                       "failed, is stuck, or did not make the same call",
                       op, rank, timeout.count(), size);
}

}  // namespace

// ---------------------------------------------------------------------------
// Environment

namespace {

void start_mpi(int* argc, char*** argv, bool& started) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized) return;
    int provided = 0;
    check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "Environment", "MPI_Init_thread");
    started = true;
    if (provided < MPI_THREAD_FUNNELED) {
        MPI_Finalize();
        started = false;
        throw distributed_error("Environment: this MPI does not support MPI_THREAD_FUNNELED (calls from the main thread "
                                "of a threaded process)");
    }
    // Open MPI reports an error that completing a non-blocking collective
    // finds (MPI_Test) to MPI_COMM_WORLD's handler, not to the group's
    // communicator: without this the job would abort instead of the group
    // throwing distributed_error.
    check(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "Environment", "MPI_Comm_set_errhandler");
}

}  // namespace

Environment::Environment() { start_mpi(nullptr, nullptr, started_); }

Environment::Environment(int& argc, char**& argv) { start_mpi(&argc, &argv, started_); }

Environment::~Environment() {
    if (started_ && mpi_running()) MPI_Finalize();
}

// ---------------------------------------------------------------------------
// Request

Request::Request(Request&& other) noexcept
    : request_(std::exchange(other.request_, MPI_REQUEST_NULL)),
      op_(other.op_),
      timeout_(other.timeout_),
      rank_(other.rank_),
      size_(other.size_) {}

Request& Request::operator=(Request&& other) noexcept {
    if (this != &other) {
        Request old(std::move(*this));  // waits for the request this one held
        request_ = std::exchange(other.request_, MPI_REQUEST_NULL);
        op_ = other.op_;
        timeout_ = other.timeout_;
        rank_ = other.rank_;
        size_ = other.size_;
    }
    return *this;
}

Request::~Request() {
    if (done() || !mpi_running()) return;
    try {
        wait();
    } catch (...) {
        // Destructors do not throw; the caller who wanted the error calls wait().
    }
}

bool Request::test() {
    if (done()) return true;
    int flag = 0;
    check(MPI_Test(&request_, &flag, MPI_STATUS_IGNORE), op_, "MPI_Test");
    return flag != 0;
}

void Request::wait() {
    if (done()) return;
    if (!poll_until(request_, Clock::now() + timeout_, op_)) {
        throw distributed_error(timeout_message(op_, rank_, size_, timeout_));
    }
}

// ---------------------------------------------------------------------------
// ProcessGroup

ProcessGroup ProcessGroup::world(GroupOptions options) {
    if (!mpi_running()) {
        throw distributed_error("ProcessGroup::world: MPI is not running: create an ad::dist::Environment at the top "
                                "of main (and start the program with mpirun)");
    }
    return ProcessGroup(MPI_COMM_WORLD, options);
}

ProcessGroup::ProcessGroup(MPI_Comm comm, GroupOptions options) : options_(options) {
    const char* op = "ProcessGroup";
    if (options.timeout.count() <= 0) {
        throw value_error(fmt::format("ProcessGroup: the timeout is {} ms; it must be positive", options.timeout.count()));
    }
    if (!mpi_running()) throw distributed_error("ProcessGroup: MPI is not running: create an ad::dist::Environment first");
    if (comm == MPI_COMM_NULL) throw value_error("ProcessGroup: the communicator is MPI_COMM_NULL");
    int rank = 0, size = 1;
    check(MPI_Comm_rank(comm, &rank), op, "MPI_Comm_rank");
    check(MPI_Comm_size(comm, &size), op, "MPI_Comm_size");
    rank_ = rank;
    size_ = size;
    MPI_Comm dup = MPI_COMM_NULL;
    MPI_Request request = MPI_REQUEST_NULL;
    check(MPI_Comm_idup(comm, &dup, &request), op, "MPI_Comm_idup");
    if (!poll_until(request, Clock::now() + options_.timeout, op)) {
        // The duplicate is not usable until every rank joins, and cannot be
        // freed before: it is left to MPI_Finalize.
        throw distributed_error(timeout_message(op, rank_, size_, options_.timeout));
    }
    comm_ = dup;
    // Errors become codes, which operations turn into distributed_error,
    // instead of MPI's default of aborting the job.
    check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), op, "MPI_Comm_set_errhandler");
}

ProcessGroup::~ProcessGroup() {
    if (comm_ == MPI_COMM_NULL || !mpi_running()) return;
    // A collective that timed out may still be running: give the other ranks
    // the group's timeout to join, then keep whatever is left alive until
    // exit (MPI may write into its buffers; reachable, so not a leak).
    const auto deadline = Clock::now() + options_.timeout;
    for (auto& a : abandoned_) {
        try {
            poll_until(a.request, deadline, "~ProcessGroup");
        } catch (...) {
        }
    }
    static std::vector<std::shared_ptr<void>> kept;
    for (auto& a : abandoned_) {
        if (a.request != MPI_REQUEST_NULL) kept.push_back(std::move(a.buffers));
    }
    MPI_Comm_free(&comm_);
}

ProcessGroup::ProcessGroup(ProcessGroup&& other) noexcept
    : comm_(std::exchange(other.comm_, MPI_COMM_NULL)),
      rank_(other.rank_),
      size_(other.size_),
      options_(other.options_),
      abandoned_(std::move(other.abandoned_)) {}

ProcessGroup& ProcessGroup::operator=(ProcessGroup&& other) noexcept {
    if (this != &other) {
        ProcessGroup old(std::move(*this));  // frees the communicator this one held
        comm_ = std::exchange(other.comm_, MPI_COMM_NULL);
        rank_ = other.rank_;
        size_ = other.size_;
        options_ = other.options_;
        abandoned_ = std::move(other.abandoned_);
    }
    return *this;
}

void ProcessGroup::progress_abandoned() {
    if (abandoned_.empty()) return;
    for (auto& a : abandoned_) {
        int done = 0;
        if (MPI_Test(&a.request, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) done = 0;
    }
    abandoned_.erase(std::remove_if(abandoned_.begin(), abandoned_.end(),
                                    [](const Abandoned& a) { return a.request == MPI_REQUEST_NULL; }),
                     abandoned_.end());
}

void ProcessGroup::complete(MPI_Request request, const char* op, std::shared_ptr<void> buffers) {
    if (poll_until(request, Clock::now() + options_.timeout, op)) return;
    abandoned_.push_back({request, std::move(buffers)});
    throw distributed_error(timeout_message(op, rank_, size_, options_.timeout));
}

void ProcessGroup::barrier() {
    const char* op = "barrier";
    if (comm_ == MPI_COMM_NULL) throw distributed_error("barrier: the group was moved from");
    progress_abandoned();
    MPI_Request request = MPI_REQUEST_NULL;
    check(MPI_Ibarrier(comm_, &request), op, "MPI_Ibarrier");
    complete(request, op, nullptr);
}

void ProcessGroup::check_same_shape(const Shape& shape, const char* op) {
    // Two rounds: every rank's rank count, then every rank's extents padded to
    // the largest rank count (each rank learns it from the first round).
    struct Gather {
        std::vector<std::int64_t> sent, received;
    };
    auto counts = std::make_shared<Gather>(Gather{{std::int64_t(shape.size())}, std::vector<std::int64_t>(std::size_t(size_))});
    MPI_Request request = MPI_REQUEST_NULL;
    check(MPI_Iallgather(counts->sent.data(), 1, MPI_INT64_T, counts->received.data(), 1, MPI_INT64_T, comm_, &request),
          op, "MPI_Iallgather");
    complete(request, op, counts);

    const std::size_t width =
        std::max<std::size_t>(1, std::size_t(*std::max_element(counts->received.begin(), counts->received.end())));
    auto extents = std::make_shared<Gather>(
        Gather{std::vector<std::int64_t>(width, -1), std::vector<std::int64_t>(width * std::size_t(size_))});
    std::copy(shape.begin(), shape.end(), extents->sent.begin());
    check(MPI_Iallgather(extents->sent.data(), int(width), MPI_INT64_T, extents->received.data(), int(width), MPI_INT64_T,
                         comm_, &request),
          op, "MPI_Iallgather");
    complete(request, op, extents);

    std::vector<Shape> shapes(static_cast<std::size_t>(size_));
    for (std::size_t r = 0; r < shapes.size(); ++r) {
        for (std::size_t d = 0; d < std::size_t(counts->received[r]); ++d) {
            shapes[r].push_back(std::size_t(extents->received[r * width + d]));
        }
    }
    if (std::all_of(shapes.begin(), shapes.end(), [&](const Shape& s) { return s == shapes[0]; })) return;
    std::string listed;
    for (std::size_t r = 0; r < shapes.size(); ++r) {
        listed += fmt::format("{}rank {} has {}", r ? ", " : "", r, shape_string(shapes[r]));
    }
    throw shape_error(fmt::format("{}: ranks disagree on the shape: {}", op, listed));
}

template <class T>
void ProcessGroup::broadcast(Array<T>& values, int root) {
    const char* op = "broadcast";
    if (comm_ == MPI_COMM_NULL) throw distributed_error("broadcast: the group was moved from");
    if (root < 0 || root >= size_) {
        throw value_error(fmt::format("broadcast: root {} is not a rank of the group of {}", root, size_));
    }
    progress_abandoned();
    // The root's shape first (its rank count, then its extents), so that
    // every other rank can make the array that receives the values.
    auto dims = std::make_shared<std::int64_t>(rank_ == root ? std::int64_t(values.dimension()) : 0);
    MPI_Request request = MPI_REQUEST_NULL;
    check(MPI_Ibcast(dims.get(), 1, MPI_INT64_T, root, comm_, &request), op, "MPI_Ibcast");
    complete(request, op, dims);

    auto extents = std::make_shared<std::vector<std::int64_t>>(std::size_t(*dims));
    if (rank_ == root) std::copy(values.shape().begin(), values.shape().end(), extents->begin());
    if (!extents->empty()) {
        check(MPI_Ibcast(extents->data(), int(extents->size()), MPI_INT64_T, root, comm_, &request), op, "MPI_Ibcast");
        complete(request, op, extents);
    }
    Shape shape(extents->begin(), extents->end());

    // Into (out of) an array of the group's own: should the broadcast time
    // out, MPI may still use it, and the caller's `values` stay as they were.
    auto buffer = std::make_shared<Array<T>>(rank_ == root ? values : Array<T>::from_shape(shape));
    if (buffer->size() > 0) {
        check(MPI_Ibcast(buffer->data(), count_of(buffer->size(), op), datatype<T>(), root, comm_, &request), op,
              "MPI_Ibcast");
        complete(request, op, buffer);
    }
    if (rank_ != root) values = std::move(*buffer);
}

void ProcessGroup::broadcast(std::string& text, int root) {
    const char* op = "broadcast";
    if (comm_ == MPI_COMM_NULL) throw distributed_error("broadcast: the group was moved from");
    if (root < 0 || root >= size_) {
        throw value_error(fmt::format("broadcast: root {} is not a rank of the group of {}", root, size_));
    }
    progress_abandoned();
    auto length = std::make_shared<std::int64_t>(rank_ == root ? std::int64_t(text.size()) : 0);
    MPI_Request request = MPI_REQUEST_NULL;
    check(MPI_Ibcast(length.get(), 1, MPI_INT64_T, root, comm_, &request), op, "MPI_Ibcast");
    complete(request, op, length);
    auto buffer = std::make_shared<std::string>(rank_ == root ? text : std::string(std::size_t(*length), '\0'));
    if (!buffer->empty()) {
        check(MPI_Ibcast(buffer->data(), count_of(buffer->size(), op), MPI_CHAR, root, comm_, &request), op,
              "MPI_Ibcast");
        complete(request, op, buffer);
    }
    if (rank_ != root) text = std::move(*buffer);
}

template <class T>
void ProcessGroup::allreduce(Array<T>& values, Reduce reduce) {
    const char* op = "allreduce";
    if (comm_ == MPI_COMM_NULL) throw distributed_error("allreduce: the group was moved from");
    if constexpr (!std::is_floating_point_v<T>) {
        if (reduce == Reduce::mean) throw value_error("allreduce: Reduce::mean of integers; use sum and divide");
    }
    progress_abandoned();
    check_same_shape(shape_of(values), op);
    // In place on a copy: should the allreduce time out, MPI may still write
    // into it, and the caller's `values` stay as they were.
    auto buffer = std::make_shared<Array<T>>(values);
    if (buffer->size() > 0) {
        MPI_Request request = MPI_REQUEST_NULL;
        check(MPI_Iallreduce(MPI_IN_PLACE, buffer->data(), count_of(buffer->size(), op), datatype<T>(), mpi_op(reduce),
                             comm_, &request),
              op, "MPI_Iallreduce");
        complete(request, op, buffer);
    }
    if (reduce == Reduce::mean) *buffer /= T(size_);
    values = std::move(*buffer);
}

template <class T>
Array<T> ProcessGroup::all_gather(const Array<T>& values) {
    const char* op = "all_gather";
    if (comm_ == MPI_COMM_NULL) throw distributed_error("all_gather: the group was moved from");
    progress_abandoned();
    check_same_shape(shape_of(values), op);
    Shape shape{std::size_t(size_)};
    shape.insert(shape.end(), values.shape().begin(), values.shape().end());
    auto sent = std::make_shared<Array<T>>(values);
    auto gathered = std::make_shared<Array<T>>(Array<T>::from_shape(shape));
    if (sent->size() > 0) {
        const int count = count_of(sent->size(), op);
        count_of(gathered->size(), op);
        MPI_Request request = MPI_REQUEST_NULL;
        check(MPI_Iallgather(sent->data(), count, datatype<T>(), gathered->data(), count, datatype<T>(), comm_, &request),
              op, "MPI_Iallgather");
        complete(request, op, std::make_shared<std::pair<decltype(sent), decltype(gathered)>>(sent, gathered));
    }
    return std::move(*gathered);
}

template <class T>
Request ProcessGroup::allreduce_async(T* data, std::size_t count, Reduce reduce) {
    return start_allreduce(MPI_IN_PLACE, data, count, reduce);
}

template <class T>
Request ProcessGroup::allreduce_async(const T* send, T* receive, std::size_t count, Reduce reduce) {
    return start_allreduce(send, receive, count, reduce);
}

template <class T>
Request ProcessGroup::start_allreduce(const void* send, T* receive, std::size_t count, Reduce reduce) {
    const char* op = "allreduce_async";
    if (comm_ == MPI_COMM_NULL) throw distributed_error("allreduce_async: the group was moved from");
    if (reduce == Reduce::mean) {
        throw value_error("allreduce_async: Reduce::mean is not offered; reduce with sum and scale by 1 / size()");
    }
    progress_abandoned();
    MPI_Request request = MPI_REQUEST_NULL;
    check(MPI_Iallreduce(send, receive, count_of(count, op), datatype<T>(), mpi_op(reduce), comm_, &request), op,
          "MPI_Iallreduce");
    return Request(request, op, options_.timeout, rank_, size_);
}

#define TAPEGRAD_DIST_INSTANTIATE(T)                                        \
    template void ProcessGroup::broadcast(Array<T>&, int);                  \
    template void ProcessGroup::allreduce(Array<T>&, Reduce);               \
    template Array<T> ProcessGroup::all_gather(const Array<T>&);            \
    template Request ProcessGroup::allreduce_async(T*, std::size_t, Reduce);            \
    template Request ProcessGroup::allreduce_async(const T*, T*, std::size_t, Reduce);

TAPEGRAD_DIST_INSTANTIATE(float)
TAPEGRAD_DIST_INSTANTIATE(double)
TAPEGRAD_DIST_INSTANTIATE(std::int64_t)

}  // namespace ad::dist
