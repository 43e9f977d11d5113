// dist_step/<np>/<model>: one data-parallel float32 training step of the
// textbook MLP (mlp_step's models `mnist` and `wide`, their batch on every
// rank, SGD) through nn::DistributedDataParallel, run by every process of an
// MPI job of np processes with one OpenBLAS thread each:
//
//   mpirun -np 2 build/benchmarks/tapegrad_dist_bench --benchmark_out=...
//
// (scripts/bench dist_step launches it at 1 and 2 processes). Counters, from
// rank 0, which alone reports:
//   items_per_second  samples of all ranks per second (np x batch per step)
//   exposed_ms        communication the sweep did not hide: from the end of
//                     the backward sweep until every grad() held its average
//   exposed_share     exposed_ms over the step's time
//   allreduce_ms      the same buckets allreduced back to back with nothing
//                     else running (dist_allreduce/<np>/<model>): the
//                     communication there is to hide
//
// Every rank must run the same benchmarks with the same iteration counts (an
// MPI collective waits for all ranks): iterations are fixed per model, and
// repetitions come from the command line, which every rank gets.

#include <chrono>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <xtensor/xadapt.hpp>

#include "bench_common.hpp"
#include "nn/distributed/distributed.hpp"
#include "nn/nn.hpp"

namespace {

ad::Array<float> to_array(const std::vector<float>& v, std::vector<std::size_t> shape) {
    return ad::Array<float>(xt::adapt(v, shape));
}

ad::dist::ProcessGroup* world = nullptr;

/// The model of mlp_step's `tape` implementation, wrapped for data parallelism.
struct DataParallelModel {
    explicit DataParallelModel(const bench::ModelData& d)
        : model(std::make_shared<ad::nn::MLP<float>>(d.spec.sizes, ad::nn::Activation::sigmoid, 0)),
          x(ad::constant(to_array(d.x, {d.spec.batch, d.spec.sizes.front()}))),
          y(ad::constant(to_array(d.y, {d.spec.batch, d.spec.sizes.back()}))),
          ddp(model, *world),
          optimizer(*model, ad::nn::SGDOptions{bench::kLearningRate, 0, 0}) {}

    void step() {
        tape.clear();
        optimizer.zero_grad();
        const auto t0 = std::chrono::steady_clock::now();
        auto loss = ad::nn::half_sse(ddp(x), y);
        const auto t1 = std::chrono::steady_clock::now();
        loss.backward();
        const auto t2 = std::chrono::steady_clock::now();
        optimizer.step();
        const auto t3 = std::chrono::steady_clock::now();
        forward_s += std::chrono::duration<double>(t1 - t0).count();
        backward_s += std::chrono::duration<double>(t2 - t1).count();
        update_s += std::chrono::duration<double>(t3 - t2).count();
    }
    double forward_s = 0, backward_s = 0, update_s = 0;

    std::shared_ptr<ad::nn::MLP<float>> model;
    ad::Var<float> x, y;
    ad::nn::DistributedDataParallel<float> ddp;
    ad::nn::SGD<float> optimizer;
    ad::Tape tape;
};

/// Iterations per repetition: fixed, the same on every rank.
int iterations_for(const std::string& model) { return model == "wide" ? 12 : 200; }

void dist_step(benchmark::State& state, const std::string& name) {
    bench::set_blas_threads(1);
    const bench::ModelData& d = bench::model_data(name);
    DataParallelModel m(d);
    m.step();  // warm: buffers, pins, the tape's arena
    double exposed = 0;
    const auto start = std::chrono::steady_clock::now();
    for (auto _ : state) {
        m.step();
        exposed += m.ddp.last_sync().exposed();
    }
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double steps = double(state.iterations());
    const double ranks = double(world->size());
    state.SetItemsProcessed(std::int64_t(steps * ranks * double(d.spec.batch)));
    state.counters["ranks"] = ranks;
    state.counters["exposed_ms"] = 1e3 * exposed / steps;
    state.counters["exposed_share"] = exposed / elapsed;
    state.counters["buckets"] = double(m.ddp.bucket_sizes().size());
    // Per step, the warm-up step included: the forward, the backward (with
    // the communication it did not hide) and the optimizer's update.
    state.counters["forward_ms"] = 1e3 * m.forward_s / (steps + 1);
    state.counters["backward_ms"] = 1e3 * m.backward_s / (steps + 1);
    state.counters["update_ms"] = 1e3 * m.update_s / (steps + 1);
}

/// The step's buckets allreduced one after another, alone: what the step's
/// communication costs when nothing hides it.
void dist_allreduce(benchmark::State& state, const std::string& name) {
    const bench::ModelData& d = bench::model_data(name);
    std::vector<std::vector<float>> buckets, sums;
    {
        DataParallelModel m(d);
        m.step();  // buckets as a step leaves them (in the order the sweep completes them)
        for (const auto& b : m.ddp.last_sync().buckets) {
            buckets.emplace_back(b.bytes / sizeof(float), 1.0f);
            sums.emplace_back(b.bytes / sizeof(float), 0.0f);
        }
    }
    for (auto _ : state) {
        std::vector<ad::dist::Request> requests;
        for (std::size_t b = 0; b < buckets.size(); ++b) {
            requests.push_back(world->allreduce_async(static_cast<const float*>(buckets[b].data()), sums[b].data(),
                                                      buckets[b].size()));
        }
        for (auto& r : requests) r.wait();
    }
    std::size_t bytes = 0;
    for (const auto& b : buckets) bytes += b.size() * sizeof(float);
    state.SetBytesProcessed(std::int64_t(double(state.iterations()) * double(bytes)));
    state.counters["ranks"] = double(world->size());
}

}  // namespace

int main(int argc, char** argv) {
    ad::dist::Environment mpi(argc, argv);
    ad::dist::ProcessGroup group = ad::dist::ProcessGroup::world();
    world = &group;
    // Only rank 0 writes the results: the others run the same benchmarks
    // (they are collectives) without --benchmark_out.
    std::vector<char*> args;
    for (int i = 0; i < argc; ++i) {
        if (group.rank() != 0 && std::string(argv[i]).rfind("--benchmark_out", 0) == 0) continue;
        args.push_back(argv[i]);
    }
    int count = int(args.size());
    benchmark::Initialize(&count, args.data());
    if (benchmark::ReportUnrecognizedArguments(count, args.data())) return 1;
    benchmark::AddCustomContext("mpi_ranks", std::to_string(group.size()));
    const std::string np = std::to_string(group.size());
    for (const std::string model : {"mnist", "wide"}) {
        benchmark::RegisterBenchmark(("dist_step/" + np + "/" + model).c_str(), dist_step, model)
            ->Iterations(iterations_for(model))
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
        benchmark::RegisterBenchmark(("dist_allreduce/" + np + "/" + model).c_str(), dist_allreduce, model)
            ->Iterations(iterations_for(model))
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
    }
    if (group.rank() == 0) {
        benchmark::RunSpecifiedBenchmarks();
    } else {
        struct Silent : benchmark::BenchmarkReporter {
            bool ReportContext(const Context&) override { return true; }
            void ReportRuns(const std::vector<Run>&) override {}
        } silent;
        benchmark::RunSpecifiedBenchmarks(&silent);
    }
    benchmark::Shutdown();
    return 0;
}
