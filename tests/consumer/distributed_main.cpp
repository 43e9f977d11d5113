// A user's data-parallel program, reduced to what shows that
// tapegrad::distributed links: start MPI, sum one number over the ranks.
#include <iostream>

#include "nn/distributed/distributed.hpp"

int main(int argc, char** argv) {
    ad::dist::Environment mpi(argc, argv);
    ad::dist::ProcessGroup group = ad::dist::ProcessGroup::world();
    ad::Array<double> ones = {1.0};
    group.allreduce(ones);
    ad::dist::DistributedSampler sampler(10, group);
    std::cout << "rank " << group.rank() << " of " << ones(0) << ": " << sampler.shard_size() << " samples\n";
    return ones(0) == double(group.size()) ? 0 : 1;
}
