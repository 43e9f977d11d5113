// examples/digits' CNN trained data-parallel by several processes on MPI
// (nn::DistributedDataParallel): each process trains on its share of every
// batch, and the gradients are averaged over the processes during backward().
//
//   mpirun -np 2 build/examples/distributed_digits [--epochs 40] [--batch 32] [--lr 0.003]
//                                                  [--seed 0] [--quick] [--out DIR] [--data FILE]
//
// Every process loads the 8x8 digits with examples/digits' seeded 1,437/360
// split and builds its CNN; the wrapper gives every process rank 0's weights.
// Each step takes a global batch of --batch digits: every process takes
// batch / processes of them from its shard of the epoch's seeded shuffle
// (dist::DistributedSampler). Adam on softmax cross-entropy, as digits.
//
// Rank 0 alone prints: one line per epoch with the training loss and accuracy
// over every process's samples, the test loss and accuracy, the epoch's
// seconds, the samples per second of all processes together, and the exposed
// communication (the part of the gradient averaging that backward's sweep did
// not hide, summed over the epoch's steps). At the end rank 0 writes a
// checkpoint (dist::save_checkpoint) of the unwrapped model and its Adam
// state into <out>/checkpoint (names as examples/digits', layers.0.weight...,
// so one process can load it with nn::load_checkpoint); every process loads
// it (dist::load_checkpoint) into a fresh model and optimizer and evaluates
// again. The last line is exactly "test accuracy <value>". Every
// process exits 1 if a reloaded model differs from the trained one on any
// process or the accuracy is below the floor printed before it.
//
// N processes with global batch B follow one process with batch B (which is
// examples/digits --model cnn) up to rounding: the j-th batches of the N
// processes together are that process's j-th batch. The one exception is the
// last batch of an epoch when N does not divide 1,437: the sampler repeats
// digits so that every process gets as many.

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nn/distributed/distributed.hpp>
#include <nn/nn.hpp>

#include "../digits/digits_data.hpp"
#include "../digits/digits_model.hpp"

#ifndef TAPEGRAD_DIGITS_DATA
#define TAPEGRAD_DIGITS_DATA "digits.bin.gz"
#endif

namespace nn = ad::nn;
namespace dist = ad::dist;
using ad::Array;
using ad::Var;
namespace fs = std::filesystem;

namespace {

/// Whether every rank got through a step that is not a collective (loading
/// the data): a rank that failed prints `failure`, and every rank learns that
/// one did, so that all of them stop instead of waiting for it.
bool every_rank_succeeded(dist::ProcessGroup& group, const std::string& failure) {
    if (!failure.empty()) fmt::print(stderr, "distributed_digits: rank {}: {}\n", group.rank(), failure);
    Array<double> failed = {failure.empty() ? 0.0 : 1.0};
    group.allreduce(failed, dist::Reduce::sum);
    return failed(0) == 0;
}

}  // namespace

int main(int argc, char** argv) {
    dist::Environment mpi(argc, argv);
    dist::ProcessGroup group = dist::ProcessGroup::world();
    const bool printer = group.rank() == 0;

    std::size_t epochs = 40;
    std::size_t global_batch = 32;
    double learning_rate = 3e-3;
    std::uint64_t seed = 0;
    bool quick = false;
    std::string out = (fs::temp_directory_path() / "tapegrad_distributed_digits").string();
    std::string data_file = TAPEGRAD_DIGITS_DATA;
    CLI::App app{"Train the digits CNN on several processes (mpirun -np N), save, reload and evaluate again"};
    app.add_option("--epochs", epochs, "training epochs")->check(CLI::Range(1, 100000))->capture_default_str();
    app.add_option("--batch", global_batch, "global batch: the digits of one step, a multiple of the processes")
        ->check(CLI::Range(1, 1437))
        ->capture_default_str();
    app.add_option("--lr", learning_rate, "Adam learning rate")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--seed", seed, "seed of the split, the initial weights and the batches")->capture_default_str();
    app.add_flag("--quick", quick, "5 epochs, for CTest");
    app.add_option("--out", out, "folder for the checkpoint (written by rank 0)")->capture_default_str();
    app.add_option("--data", data_file, "the digits file (examples/digits/data/digits.bin.gz)")->capture_default_str();
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        // Every rank parses the same arguments and exits with the same code;
        // rank 0 alone prints the help or the error.
        std::ostringstream discard;
        return printer ? app.exit(e) : app.exit(e, discard, discard);
    }
    if (quick) epochs = 5;
    const double floor = quick ? 0.90 : 0.97;
    const std::size_t processes = std::size_t(group.size());
    if (global_batch % processes != 0) {
        if (printer) {
            fmt::print(stderr, "distributed_digits: --batch {} does not split evenly over {} processes: pick a "
                       "multiple of {}\n", global_batch, processes, processes);
        }
        return 1;
    }
    const std::size_t rank_batch = global_batch / processes;

    try {
        digits::Split<float> split;
        std::string failure;
        try {
            split = digits::train_test_split(digits::load_digits<float>(data_file), nn::derive_seed(seed, 0));
        } catch (const std::exception& e) {
            failure = e.what();
        }
        if (!every_rank_succeeded(group, failure)) return 1;

        // The same seeds as examples/digits: split 0, weights 1, batch order 2.
        nn::ModulePtr<float> model = digits::make_model("cnn", nn::derive_seed(seed, 1));
        nn::DistributedDataParallel<float> ddp(model, group);
        nn::Adam<float> optimizer(*model, {learning_rate});
        dist::DistributedSampler sampler(split.train.size(), group, {/*shuffle=*/true, nn::derive_seed(seed, 2)});
        // Batches of the rows the sampler deals this rank: no shuffle of its own.
        nn::DataLoader<float> loader(split.train.images, split.train.labels, rank_batch, /*shuffle=*/false);
        if (printer) {
            fmt::print("{} training and {} test digits from {}\n{}: {} parameters\n{}; global batch {} ({} per "
                       "process)\n",
                       split.train.size(), split.test.size(), data_file, model->describe(), model->parameter_count(),
                       ddp.describe(), global_batch, rank_batch);
            std::fflush(stdout);
        }

        ad::Tape tape;
        std::size_t steps = 0;
        double trained_accuracy = 0;
        for (std::size_t epoch = 1; epoch <= epochs; ++epoch) {
            sampler.set_epoch(epoch - 1);
            double loss_sum = 0, correct = 0, samples = 0, exposed = 0;
            const auto began = std::chrono::steady_clock::now();
            for (const auto& batch : loader.epoch(sampler.indices())) {
                optimizer.zero_grad();
                Var<float> logits = ddp(batch.inputs);
                Var<float> loss = nn::softmax_cross_entropy(logits, batch.labels);
                loss.backward();  // averages the gradients over the ranks
                optimizer.step();
                const double n = double(batch.labels.size());
                loss_sum += double(loss.item()) * n;
                correct += double(digits::count_correct(logits, batch.labels));
                samples += n;
                exposed += ddp.last_sync().exposed();
                tape.clear();
                ++steps;
            }
            const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();

            Array<double> sums = {loss_sum, correct, samples};
            group.allreduce(sums, dist::Reduce::sum);
            // The slowest rank's time and exposed communication.
            Array<double> slowest = {seconds, exposed};
            group.allreduce(slowest, dist::Reduce::max);
            const double all_samples = sums(2);
            const double train_loss = sums(0) / all_samples, train_accuracy = sums(1) / all_samples;
            const double epoch_seconds = slowest(0), exposed_seconds = slowest(1);
            // Every rank holds the same weights: evaluating on one is enough
            // to print, and every rank's is checked after the reload.
            const digits::Scores test = digits::evaluate(*model, split.test);
            trained_accuracy = test.accuracy;
            if (printer) {
                fmt::print("epoch {:>3}/{}  train loss {:.4f} accuracy {:.4f}  test loss {:.4f} accuracy {:.4f}  "
                           "{:.2f} s  {:.0f} samples/s  exposed communication {:.1f} ms ({:.0f}%)\n",
                           epoch, epochs, train_loss, train_accuracy, test.loss, test.accuracy, epoch_seconds,
                           all_samples / epoch_seconds, 1e3 * exposed_seconds, 100 * exposed_seconds / epoch_seconds);
                std::fflush(stdout);
            }
        }

        const fs::path checkpoint = fs::path(out) / "checkpoint";
        dist::save_checkpoint(group, checkpoint, *model, optimizer, steps);
        // Other weights on every rank, so that the load has to replace each.
        const std::uint64_t other_seed = nn::derive_seed(seed, 99 + std::uint64_t(group.rank()));
        nn::ModulePtr<float> reloaded = digits::make_model("cnn", other_seed);
        nn::Adam<float> reloaded_optimizer(*reloaded, {learning_rate});
        const std::size_t saved_steps = dist::load_checkpoint(group, checkpoint, *reloaded, reloaded_optimizer);
        const double restored = digits::evaluate(*reloaded, split.test).accuracy;
        // Equal accuracies could hide a small difference: the weights must
        // be equal too, bit for bit.
        bool same_weights = saved_steps == steps;
        for (std::size_t k = 0; k < model->parameters().size(); ++k) {
            same_weights = same_weights && model->parameters()[k].value() == reloaded->parameters()[k].value();
        }

        // Each rank's trained and reloaded accuracy and weight check, seen by
        // every rank: the verdict (and so the exit code) is the same everywhere.
        const Array<double> results =
            group.all_gather(Array<double>{trained_accuracy, restored, same_weights ? 1.0 : 0.0});
        const double reference = results(0, 0);
        bool equal = true;
        std::string reloaded_list;
        for (std::size_t r = 0; r < processes; ++r) {
            equal = equal && results(r, 0) == reference && results(r, 1) == reference && results(r, 2) == 1;
            reloaded_list += fmt::format(" {:.4f}", results(r, 1));
        }
        if (printer) {
            fmt::print("checkpoint: {} (step {})\n", checkpoint.string(), saved_steps);
            fmt::print("test accuracy trained {:.4f}; reloaded from the checkpoint, rank by rank:{}: {}\n", reference,
                       reloaded_list, equal ? "equal" : "DIFFERENT");
            fmt::print("accuracy floor for this run: {:.2f}\n", floor);
            fmt::print("test accuracy {:.4f}\n", reference);
        }
        return equal && reference >= floor ? 0 : 1;
    } catch (const std::exception& e) {
        fmt::print(stderr, "distributed_digits: rank {}: {}\n", group.rank(), e.what());
        return 1;
    }
}
