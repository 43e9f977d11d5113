// A program that uses the process group without starting MPI (no
// Environment, no mpiexec) gets an error that says what to do.
#include <doctest/doctest.h>

#include "autodiff/errors.hpp"
#include "nn/distributed/process_group.hpp"

namespace {

TEST_CASE("ProcessGroup::world: without an Environment, a distributed_error that says to create one") {
    CHECK_THROWS_WITH_AS(ad::dist::ProcessGroup::world(),
                         "ProcessGroup::world: MPI is not running: create an ad::dist::Environment at the top of main "
                         "(and start the program with mpirun)",
                         ad::dist::distributed_error);
    CHECK_THROWS_WITH_AS(ad::dist::ProcessGroup(MPI_COMM_WORLD),
                         "ProcessGroup: MPI is not running: create an ad::dist::Environment first",
                         ad::dist::distributed_error);
    int initialized = 1;
    MPI_Initialized(&initialized);
    CHECK(initialized == 0);  // nothing started MPI behind the program's back
}

}  // namespace
