// ProcessGroup's collectives on the job's processes: every test runs on
// every rank, with values that depend on the rank and results computed in
// closed form.
#include "distributed_test_support.hpp"

#include <chrono>
#include <string>
#include <thread>

namespace {

using namespace ad;
using dist::ProcessGroup;
using dist::Reduce;
using Clock = std::chrono::steady_clock;

TEST_CASE("ProcessGroup: rank and size are MPI's, and all_gather stacks the ranks' arrays in rank order") {
    ProcessGroup& group = test::group();
    int rank = -1, size = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    CHECK(group.rank() == rank);
    CHECK(group.size() == size);
    CHECK(group.comm() != MPI_COMM_WORLD);  // its own duplicate
    CHECK(group.timeout() == std::chrono::minutes(1));

    Array<double> mine = {double(rank), 10.0 * rank + 0.5};
    Array<double> gathered = group.all_gather(mine);
    REQUIRE(gathered.shape() == std::vector<std::size_t>{std::size_t(size), 2});
    for (int r = 0; r < size; ++r) {
        CHECK(gathered(r, 0) == double(r));
        CHECK(gathered(r, 1) == 10.0 * r + 0.5);
    }
    Array<float> matrix = xt::ones<float>({2, 3}) * float(rank + 1);
    Array<float> stacked = group.all_gather(matrix);
    REQUIRE(stacked.shape() == std::vector<std::size_t>{std::size_t(size), 2, 3});
    for (int r = 0; r < size; ++r) CHECK(xt::all(xt::equal(xt::view(stacked, r), float(r + 1))));
}

TEST_CASE("ProcessGroup::barrier: no rank leaves before the last one arrives") {
    ProcessGroup& group = test::group();
    // Rank 0 arrives last (it sleeps first); every rank notes when it leaves.
    // The ranks run on one machine, whose monotonic clock they share.
    auto now = [] { return std::int64_t(Clock::now().time_since_epoch() / std::chrono::nanoseconds(1)); };
    group.barrier();
    if (group.rank() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const std::int64_t arrived = now();
    group.barrier();
    const std::int64_t left = now();
    Array<std::int64_t> times = group.all_gather(Array<std::int64_t>{arrived, left});
    for (int r = 0; r < group.size(); ++r) {
        INFO("rank " << r);
        CHECK(times(r, 1) >= times(0, 0));
    }
}

TEST_CASE("ProcessGroup::broadcast: the root's values and shape reach every rank, for each element type and strings") {
    ProcessGroup& group = test::group();
    const int last = group.size() - 1;

    Array<double> d = group.rank() == 0 ? Array<double>{{1.5, -2, 3}, {4, 5, 6.25}} : Array<double>{7, 8, 9, 10, 11};
    group.broadcast(d);
    CHECK(d == Array<double>{{1.5, -2, 3}, {4, 5, 6.25}});

    // From the last rank, with a shape the others do not have.
    Array<float> f = xt::zeros<float>({1});
    if (group.rank() == last) f = xt::arange<float>(0, 24).reshape({2, 3, 4}) * float(last + 1);
    group.broadcast(f, last);
    REQUIRE(f.shape() == std::vector<std::size_t>{2, 3, 4});
    CHECK(f == Array<float>(xt::arange<float>(0, 24).reshape({2, 3, 4}) * float(last + 1)));

    Array<std::int64_t> i = {std::int64_t(group.rank()) - 5};
    group.broadcast(i);
    CHECK(i == Array<std::int64_t>{-5});

    // A 0-d array and an empty one keep their shapes.
    Array<double> scalar = group.rank() == 0 ? Array<double>(3.25) : Array<double>{1, 2};
    group.broadcast(scalar);
    CHECK(scalar.dimension() == 0);
    CHECK(scalar() == 3.25);
    Array<double> empty = group.rank() == 0 ? Array<double>(xt::zeros<double>({0, 4})) : Array<double>{1};
    group.broadcast(empty);
    CHECK(empty.shape() == std::vector<std::size_t>{0, 4});

    std::string text = group.rank() == last ? "from rank " + std::to_string(last) : "mine";
    group.broadcast(text, last);
    CHECK(text == "from rank " + std::to_string(last));
    std::string blank = group.rank() == 0 ? "" : "not empty";
    group.broadcast(blank);
    CHECK(blank.empty());

    CHECK_THROWS_WITH_AS(group.broadcast(text, group.size()),
                         ("broadcast: root " + std::to_string(group.size()) + " is not a rank of the group of " +
                          std::to_string(group.size()))
                             .c_str(),
                         value_error);
}

TEST_CASE("ProcessGroup::allreduce: sum, mean and max of rank-dependent values") {
    ProcessGroup& group = test::group();
    const double n = group.size();
    const double r = group.rank();
    // Element (i, j) of rank r: (r + 1) (1 + i + 2 j); over the ranks the sum
    // is (1 + i + 2 j) n (n + 1) / 2, the mean that over n, the max n (1 + i + 2 j).
    auto values = [&](auto zero) {
        using T = decltype(zero);
        Array<T> a = Array<T>::from_shape({2, 3});
        for (std::size_t i = 0; i < 2; ++i)
            for (std::size_t j = 0; j < 3; ++j) a(i, j) = T((r + 1) * (1 + i + 2 * j));
        return a;
    };
    auto expected = [&](auto zero, double factor) {
        using T = decltype(zero);
        Array<T> a = Array<T>::from_shape({2, 3});
        for (std::size_t i = 0; i < 2; ++i)
            for (std::size_t j = 0; j < 3; ++j) a(i, j) = T(factor * double(1 + i + 2 * j));
        return a;
    };
    Array<double> sum = values(0.0);
    group.allreduce(sum);
    CHECK(sum == expected(0.0, n * (n + 1) / 2));
    Array<double> mean = values(0.0);
    group.allreduce(mean, Reduce::mean);
    CHECK(xt::allclose(mean, expected(0.0, (n + 1) / 2), 1e-15, 0));
    Array<float> max = values(0.0f);
    group.allreduce(max, Reduce::max);
    CHECK(max == expected(0.0f, n));
    Array<float> fsum = values(0.0f);
    group.allreduce(fsum, Reduce::sum);
    CHECK(fsum == expected(0.0f, n * (n + 1) / 2));

    Array<std::int64_t> counts = {std::int64_t(r), 1};
    group.allreduce(counts);
    CHECK(counts == Array<std::int64_t>{std::int64_t(n * (n - 1) / 2), std::int64_t(n)});
    CHECK_THROWS_AS(group.allreduce(counts, Reduce::mean), value_error);
}

TEST_CASE("ProcessGroup::allreduce and all_gather: ranks that disagree on the shape get shape_error, every one of them") {
    ProcessGroup& group = test::group();
    if (group.size() < 2) return;  // one rank always agrees with itself
    // Rank 0 has (2, 3), every other rank (3,): the spec's example.
    Array<double> values = group.rank() == 0 ? Array<double>(xt::ones<double>({2, 3})) : Array<double>{1, 2, 3};
    const Array<double> before = values;
    std::string listed = "rank 0 has (2, 3)";
    for (int r = 1; r < group.size(); ++r) listed += ", rank " + std::to_string(r) + " has (3,)";
    CHECK_THROWS_WITH_AS(group.allreduce(values), ("allreduce: ranks disagree on the shape: " + listed).c_str(),
                         shape_error);
    CHECK(values == before);
    CHECK_THROWS_WITH_AS(group.all_gather(values), ("all_gather: ranks disagree on the shape: " + listed).c_str(),
                         shape_error);
    // The group is still in step.
    Array<double> one = {1.0};
    group.allreduce(one);
    CHECK(one(0) == double(group.size()));
}

TEST_CASE("ProcessGroup::allreduce_async: several requests in flight complete, each with its own result") {
    ProcessGroup& group = test::group();
    const int n = group.size(), r = group.rank();
    std::vector<float> a(1000, float(r + 1));
    std::vector<double> b{double(r), -double(r), 0.5};
    std::vector<std::int64_t> c{std::int64_t(r) * 3, 7};
    std::vector<double> d(5, double(r));

    dist::Request ra = group.allreduce_async(a.data(), a.size());
    dist::Request rb = group.allreduce_async(b.data(), b.size());
    dist::Request rc = group.allreduce_async(c.data(), c.size(), Reduce::sum);
    dist::Request rd = group.allreduce_async(d.data(), d.size(), Reduce::max);
    CHECK(!ra.done());
    // In order of starting, as DistributedDataParallel waits for its buckets.
    ra.wait();
    CHECK(ra.done());
    CHECK(ra.test());
    while (!rb.test()) {
    }
    CHECK(rb.done());
    rc.wait();
    rd.wait();
    const float sum_a = float(n * (n + 1) / 2);
    CHECK(std::all_of(a.begin(), a.end(), [&](float v) { return v == sum_a; }));
    const double sum_r = double(n * (n - 1) / 2);
    CHECK(b == std::vector<double>{sum_r, -sum_r, 0.5 * n});
    CHECK(c == std::vector<std::int64_t>{3 * std::int64_t(sum_r), 7 * std::int64_t(n)});
    CHECK(d == std::vector<double>(5, double(n - 1)));

    // A moved request is waited for through its new owner; a default one is done.
    std::vector<double> e{1.0};
    dist::Request moved;
    CHECK(moved.done());
    moved = group.allreduce_async(e.data(), e.size());
    dist::Request owner(std::move(moved));
    CHECK(moved.done());
    owner.wait();
    CHECK(e[0] == double(n));

    CHECK_THROWS_WITH_AS(group.allreduce_async(e.data(), e.size(), Reduce::mean),
                         "allreduce_async: Reduce::mean is not offered; reduce with sum and scale by 1 / size()",
                         value_error);
}

TEST_CASE("ProcessGroup: a rank that does not join within the timeout is a distributed_error, and the group stays usable") {
    ProcessGroup& group = test::group();
    if (group.size() < 2) return;
    // A group of its own with a short timeout; rank 0 waits in its barrier,
    // the others join only after sleeping past the timeout.
    dist::GroupOptions options;
    options.timeout = std::chrono::milliseconds(300);
    ProcessGroup impatient(group.comm(), options);
    CHECK(impatient.timeout() == std::chrono::milliseconds(300));
    if (group.rank() == 0) {
        const auto start = Clock::now();
        CHECK_THROWS_WITH_AS(impatient.barrier(),
                             ("barrier: rank 0 waited 300 ms for the other ranks of the group of " +
                              std::to_string(group.size()) +
                              " to join and they did not: a rank failed, is stuck, or did not make the same call")
                                 .c_str(),
                             dist::distributed_error);
        CHECK(Clock::now() - start >= std::chrono::milliseconds(300));
    } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(1500));
        // Rank 0's barrier is still running in MPI (the group kept it): this
        // one completes it.
        impatient.barrier();
    }
    group.barrier();
    // Every rank made the same calls, so the short group's collectives still
    // line up (now that every rank is here, within its timeout).
    Array<double> ranks = {double(group.rank())};
    impatient.allreduce(ranks);
    CHECK(ranks(0) == double(group.size() * (group.size() - 1) / 2));
}

TEST_CASE("ProcessGroup: an error MPI reports is a distributed_error naming the operation, not an abort") {
    ProcessGroup& group = test::group();
    if (group.size() < 2) return;
    // Ranks that pass different counts: a rank receiving more than it
    // expects gets MPI_ERR_TRUNCATE. On a group of its own with a short
    // timeout, since the ranks that did not see the error may be left
    // waiting (a timeout, also a distributed_error).
    dist::GroupOptions options;
    options.timeout = std::chrono::milliseconds(2000);
    std::string message;
    {
        ProcessGroup mismatched(group.comm(), options);
        std::vector<double> values(group.rank() == 0 ? 64 : 2, 1.0);
        try {
            dist::Request request = mismatched.allreduce_async(values.data(), values.size());
            request.wait();
        } catch (const dist::distributed_error& e) {
            message = e.what();
        }
        group.barrier();
    }
    const bool truncated = message.rfind("allreduce_async: MPI_Test failed: MPI_ERR_TRUNCATE", 0) == 0;
    Array<double> ranks_truncated = {truncated ? 1.0 : 0.0};
    group.allreduce(ranks_truncated);
    INFO(message);
    CHECK(ranks_truncated(0) >= 1);
}

TEST_CASE("ProcessGroup: made from any communicator, moved, and rejects a timeout that is not positive") {
    ProcessGroup& group = test::group();
    // Even and odd ranks: two groups whose sums differ.
    MPI_Comm half = MPI_COMM_NULL;
    MPI_Comm_split(group.comm(), group.rank() % 2, group.rank(), &half);
    {
        ProcessGroup parity(half);
        int expected_size = 0;
        for (int r = group.rank() % 2; r < group.size(); r += 2) ++expected_size;
        CHECK(parity.size() == expected_size);
        CHECK(parity.rank() == group.rank() / 2);
        Array<double> ranks = {double(group.rank())};
        parity.allreduce(ranks);
        double expected = 0;
        for (int r = group.rank() % 2; r < group.size(); r += 2) expected += r;
        CHECK(ranks(0) == expected);

        ProcessGroup moved(std::move(parity));
        CHECK(parity.comm() == MPI_COMM_NULL);
        CHECK_THROWS_AS(parity.barrier(), dist::distributed_error);
        moved.barrier();
    }
    MPI_Comm_free(&half);

    dist::GroupOptions zero;
    zero.timeout = std::chrono::milliseconds(0);
    CHECK_THROWS_WITH_AS(ProcessGroup(group.comm(), zero), "ProcessGroup: the timeout is 0 ms; it must be positive",
                         value_error);
}

}  // namespace
