// DistributedSampler: the ranks' shares computed in one process for several
// group sizes (no collectives), then once across the job's real processes.
#include "distributed_test_support.hpp"

#include <algorithm>
#include <map>
#include <numeric>
#include <set>

namespace {

using namespace ad;
using dist::DistributedSampler;
using dist::SamplerOptions;

SamplerOptions seeded(std::uint64_t seed, bool drop_last = false) {
    SamplerOptions o;
    o.seed = seed;
    o.drop_last = drop_last;
    return o;
}

/// Every rank's indices for a group of `size`.
std::vector<std::vector<std::size_t>> shards(std::size_t samples, int size, SamplerOptions options, std::size_t epoch) {
    std::vector<std::vector<std::size_t>> out;
    for (int r = 0; r < size; ++r) {
        DistributedSampler s(samples, r, size, options);
        s.set_epoch(epoch);
        out.push_back(s.indices());
    }
    return out;
}

std::vector<std::size_t> sorted(std::vector<std::size_t> v) {
    std::sort(v.begin(), v.end());
    return v;
}

TEST_CASE("DistributedSampler: the shards are the padded order dealt round-robin, disjoint apart from the padding") {
    for (std::size_t samples : {10u, 11u, 7u, 2u}) {
        for (int size : {1, 2, 3, 4}) {
            INFO("samples " << samples << ", size " << size);
            const std::size_t shard = (samples + std::size_t(size) - 1) / std::size_t(size);
            auto all = shards(samples, size, seeded(3), 0);
            const auto order = shards(samples, 1, seeded(3), 0)[0];  // size 1: the epoch's permutation
            REQUIRE(sorted(order) == sorted([&] {
                        std::vector<std::size_t> v(samples);
                        std::iota(v.begin(), v.end(), std::size_t(0));
                        return v;
                    }()));
            for (int r = 0; r < size; ++r) {
                CHECK(DistributedSampler(samples, r, size).shard_size() == shard);
                REQUIRE(all[std::size_t(r)].size() == shard);
                // Position k of the padded order is order[k mod samples].
                for (std::size_t i = 0; i < shard; ++i) {
                    CHECK(all[std::size_t(r)][i] == order[(std::size_t(r) + i * std::size_t(size)) % samples]);
                }
            }
            // Every sample at least once; a sample twice only as padding.
            std::map<std::size_t, int> seen;
            for (const auto& s : all)
                for (std::size_t i : s) ++seen[i];
            CHECK(seen.size() == samples);
            std::size_t extra = 0;
            for (const auto& [i, count] : seen) extra += std::size_t(count - 1);
            CHECK(extra == shard * std::size_t(size) - samples);

            // drop_last: floor(samples / size) each, no sample twice.
            auto dropped = shards(samples, size, seeded(3, true), 0);
            std::set<std::size_t> distinct;
            for (const auto& s : dropped) {
                CHECK(s.size() == samples / std::size_t(size));
                distinct.insert(s.begin(), s.end());
            }
            CHECK(distinct.size() == (samples / std::size_t(size)) * std::size_t(size));
        }
    }
}

TEST_CASE("DistributedSampler: N ranks with batch B / N train on the batches of one process with batch B") {
    const std::size_t samples = 50, global_batch = 12;
    Array<double> x = Array<double>::from_shape({samples, 2});
    for (std::size_t i = 0; i < samples; ++i) x(i, 0) = double(i), x(i, 1) = -double(i);
    for (int size : {2, 3, 4}) {
        for (std::size_t epoch : {0u, 5u}) {
            INFO("size " << size << ", epoch " << epoch);
            const std::size_t b = global_batch / std::size_t(size);
            DistributedSampler one(samples, 0, 1, seeded(9));
            one.set_epoch(epoch);
            nn::DataLoader<double> single_loader(x, x, global_batch, false);
            auto single = single_loader.epoch(one.indices());

            std::vector<std::vector<nn::Batch<double>>> ranks;
            for (int r = 0; r < size; ++r) {
                DistributedSampler s(samples, r, size, seeded(9));
                s.set_epoch(epoch);
                nn::DataLoader<double> loader(x, x, b, false);
                ranks.push_back(loader.epoch(s.indices()));
            }
            // Every rank has the same number of batches: they step together.
            for (const auto& batches : ranks) REQUIRE(batches.size() == ranks[0].size());
            REQUIRE(ranks[0].size() == single.size());
            const std::size_t padding = DistributedSampler(samples, 0, size).shard_size() * std::size_t(size) - samples;
            for (std::size_t j = 0; j < single.size(); ++j) {
                std::vector<std::size_t> together;
                for (const auto& batches : ranks) {
                    together.insert(together.end(), batches[j].rows.begin(), batches[j].rows.end());
                    // The inputs are the rows' own.
                    for (std::size_t i = 0; i < batches[j].rows.size(); ++i) {
                        CHECK(batches[j].inputs.value()(i, 0) == double(batches[j].rows[i]));
                    }
                }
                std::vector<std::size_t> expected = single[j].rows;
                if (j + 1 == single.size()) {
                    // The last round holds the padding: the first samples of the order again.
                    const auto order = one.indices();
                    expected.insert(expected.end(), order.begin(), order.begin() + long(padding));
                }
                CHECK(sorted(together) == sorted(expected));
            }
        }
    }
}

TEST_CASE("DistributedSampler: the order is a function of seed and epoch, a group of one sees DataLoader's order") {
    DistributedSampler a(20, 1, 3, seeded(4)), b(20, 1, 3, seeded(4)), c(20, 1, 3, seeded(5));
    CHECK(a.epoch() == 0);
    CHECK(a.indices() == b.indices());
    CHECK(a.indices() != c.indices());
    const auto first = a.indices();
    a.set_epoch(1);
    CHECK(a.epoch() == 1);
    CHECK(a.indices() != first);
    // Resuming at epoch 3 gives what epoch 3 of a run from the start gives.
    std::vector<std::size_t> straight;
    for (std::size_t e = 0; e <= 3; ++e) {
        b.set_epoch(e);
        straight = b.indices();
    }
    DistributedSampler resumed(20, 1, 3, seeded(4));
    resumed.set_epoch(3);
    CHECK(resumed.indices() == straight);

    // One process with a shuffling DataLoader and a group of one with the
    // sampler (same seed) see the same batches, epoch after epoch.
    Array<float> x = xt::arange<float>(0, 20).reshape({20, 1});
    nn::DataLoader<float> loader(x, x, 6, true, 4);
    DistributedSampler alone(20, 0, 1, seeded(4));
    for (std::size_t e = 0; e < 3; ++e) {
        alone.set_epoch(e);
        auto own = loader.epoch();
        auto sampled = loader.epoch(alone.indices());
        REQUIRE(own.size() == sampled.size());
        for (std::size_t j = 0; j < own.size(); ++j) CHECK(own[j].rows == sampled[j].rows);
    }

    SamplerOptions in_order;
    in_order.shuffle = false;
    CHECK(DistributedSampler(7, 1, 3, in_order).indices() == std::vector<std::size_t>{1, 4, 0});
    CHECK(DistributedSampler(7, 2, 3, in_order).indices() == std::vector<std::size_t>{2, 5, 1});
    in_order.drop_last = true;
    CHECK(DistributedSampler(7, 2, 3, in_order).indices() == std::vector<std::size_t>{2, 5});
    CHECK(DistributedSampler(2, 2, 3, in_order).indices().empty());  // fewer samples than ranks
}

TEST_CASE("DistributedSampler: an empty data set, a size of 0 and a rank outside the group are value_error") {
    CHECK_THROWS_WITH_AS(DistributedSampler(0, 0, 1), "DistributedSampler: the data set is empty (0 samples)",
                         value_error);
    CHECK_THROWS_WITH_AS(DistributedSampler(5, 0, 0), "DistributedSampler: the group size is 0; it must be positive",
                         value_error);
    CHECK_THROWS_WITH_AS(DistributedSampler(5, 2, 2), "DistributedSampler: rank 2 is not in a group of size 2",
                         value_error);
    CHECK_THROWS_WITH_AS(DistributedSampler(5, -1, 2), "DistributedSampler: rank -1 is not in a group of size 2",
                         value_error);
}

TEST_CASE("DistributedSampler: across the job's processes, the ranks' shares cover the data set") {
    dist::ProcessGroup& group = test::group();
    DistributedSampler sampler(23, group, seeded(1));
    CHECK(sampler.rank() == group.rank());
    CHECK(sampler.size() == group.size());
    sampler.set_epoch(2);
    const auto mine = sampler.indices();
    Array<std::int64_t> shard = Array<std::int64_t>::from_shape({mine.size()});
    std::copy(mine.begin(), mine.end(), shard.begin());
    Array<std::int64_t> all = group.all_gather(shard);
    std::set<std::int64_t> covered(all.begin(), all.end());
    CHECK(covered.size() == 23);
    CHECK(*covered.begin() == 0);
    CHECK(*covered.rbegin() == 22);
}

}  // namespace
