// The distributed tests' main: starts MPI, then runs every test on every rank
// (the tests are collectives). Each line a rank prints starts with its rank,
// and a rank exits non-zero when one of its tests failed, which mpiexec
// reports as the job's failure.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <iostream>
#include <streambuf>
#include <string>

#include "distributed_test_support.hpp"

namespace {

ad::dist::ProcessGroup* world = nullptr;

/// Writes lines to `out` with "[rank r] " before each, one line at a time,
/// so that the ranks' lines do not tear each other apart.
class RankPrefixed : public std::streambuf {
public:
    RankPrefixed(std::ostream& out, int rank) : out_(out), prefix_("[rank " + std::to_string(rank) + "] ") {}
    ~RankPrefixed() override { flush_line(); }

protected:
    int overflow(int c) override {
        if (c == traits_type::eof()) return 0;
        line_ += char(c);
        if (c == '\n') flush_line();
        return c;
    }
    int sync() override {
        flush_line();
        return 0;
    }

private:
    void flush_line() {
        if (line_.empty()) return;
        out_ << prefix_ << line_ << std::flush;
        line_.clear();
    }
    std::ostream& out_;
    std::string prefix_;
    std::string line_;
};

}  // namespace

ad::dist::ProcessGroup& ad::test::group() { return *world; }

int main(int argc, char** argv) {
    ad::dist::Environment mpi(argc, argv);
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    ad::dist::GroupOptions options;
    options.timeout = std::chrono::minutes(1);
    // Made after MPI starts and freed before it stops.
    ad::dist::ProcessGroup group = ad::dist::ProcessGroup::world(options);
    world = &group;
    int failed = 0;
    {
        RankPrefixed prefixed(std::cout, rank);
        std::ostream out(&prefixed);
        doctest::Context context;
        // Colour codes would sit between the rank prefixes; --force-colors brings them back.
        context.setOption("no-colors", true);
        context.applyCommandLine(argc, argv);
        context.setCout(&out);
        failed = context.run();
        out.flush();
    }
    world = nullptr;
    return failed ? 1 : 0;
}
