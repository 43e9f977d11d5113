// Classify the 8x8 handwritten digits (1,797 images, UCI optdigits; see
// data/README.md) with a model from nn/, trained with Adam on softmax
// cross-entropy over class indices.
//
//   1,437 training and 360 test digits (seeded split), mini-batches of 32;
//   one line per epoch: a progress bar, the training loss and accuracy and
//   the test loss and accuracy;
//   <out>/curves.dat (the same numbers) and, when gnuplot is installed,
//   <out>/curves.png;
//   <out>/checkpoint: the trained model (nn::save_parameters), reloaded into
//   a freshly initialised model (nn::load_parameters) and evaluated again:
//   both accuracies are printed and must be equal.
// The last line is exactly "test accuracy <value>". Exits 1 if the reloaded
// model differs or the accuracy is below the floor printed before it.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nn/nn.hpp>

#include "digits_data.hpp"
#include "digits_model.hpp"

#ifndef TAPEGRAD_DIGITS_DATA
#define TAPEGRAD_DIGITS_DATA "digits.bin.gz"
#endif

namespace nn = ad::nn;
using ad::Var;
namespace fs = std::filesystem;

namespace {

using digits::Scores;
using digits::evaluate;

std::string bar(std::size_t done, std::size_t total) {
    const std::size_t width = 20, filled = width * done / total;
    return "[" + std::string(filled, '#') + std::string(width - filled, '.') + "]";
}

struct Row {
    std::size_t epoch;
    Scores train, test;
};

void write_curves(const fs::path& out, const std::vector<Row>& rows, const std::string& model_name) {
    const fs::path dat = out / "curves.dat", png = out / "curves.png", script = out / "curves.gp";
    std::ofstream f(dat);
    f << "# epoch train_loss train_accuracy test_loss test_accuracy\n";
    for (const Row& r : rows) {
        f << fmt::format("{} {:.9g} {:.9g} {:.9g} {:.9g}\n", r.epoch, r.train.loss, r.train.accuracy, r.test.loss,
                         r.test.accuracy);
    }
    f.close();
    fmt::print("curves: {}\n", dat.string());

    if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
        fmt::print("(gnuplot is not on PATH: PNG skipped)\n");
        return;
    }
    std::ofstream gp(script);
    gp << "set terminal pngcairo size 1000,420\n"
       << "set output '" << png.string() << "'\n"
       << "set multiplot layout 1,2 title 'digits, " << model_name << "'\n"
       << "set xlabel 'epoch'\nset grid\nset key top right\n"
       << "set ylabel 'cross-entropy'\nset logscale y\n"
       << "plot '" << dat.string() << "' using 1:2 with lines lw 2 title 'train', '' using 1:4 with lines lw 2 title 'test'\n"
       << "unset logscale y\nset ylabel 'accuracy'\nset key bottom right\n"
       << "plot '" << dat.string() << "' using 1:3 with lines lw 2 title 'train', '' using 1:5 with lines lw 2 title 'test'\n"
       << "unset multiplot\n";
    gp.close();
    const std::string run = "gnuplot '" + script.string() + "' 2>/dev/null";
    // pngcairo is missing from some gnuplot builds: then the plain png terminal.
    const std::string fallback = "sed -i 's/pngcairo/png/' '" + script.string() + "' && " + run;
    if (std::system(run.c_str()) == 0 || std::system(fallback.c_str()) == 0) {
        fmt::print("plot:   {}\n", png.string());
    } else {
        fmt::print("(gnuplot failed: PNG skipped)\n");
    }
}

}  // namespace

int main(int argc, char** argv) {
    std::string model_name = "cnn";
    std::size_t epochs = 40;
    double learning_rate = 3e-3;
    std::uint64_t seed = 0;
    bool quick = false;
    std::string out = (fs::temp_directory_path() / "tapegrad_digits").string();
    std::string data_file = TAPEGRAD_DIGITS_DATA;
    CLI::App app{"Classify the 8x8 handwritten digits: train, plot the curves, save, reload and evaluate again"};
    app.add_option("--model", model_name, "model")->check(CLI::IsMember(digits::model_names))->capture_default_str();
    app.add_option("--epochs", epochs, "training epochs")->check(CLI::Range(1, 100000))->capture_default_str();
    app.add_option("--lr", learning_rate, "Adam learning rate")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--seed", seed, "seed of the split, the initial weights and the batches")->capture_default_str();
    app.add_flag("--quick", quick, "5 epochs, for CTest");
    app.add_option("--out", out, "folder for curves.dat, curves.png and the checkpoint")->capture_default_str();
    app.add_option("--data", data_file, "the digits file (data/digits.bin.gz)")->capture_default_str();
    CLI11_PARSE(app, argc, argv);
    if (quick) epochs = 5;
    const double floor = quick ? 0.90 : model_name == "cnn" ? 0.97 : 0.95;

    try {
        auto split = digits::train_test_split(digits::load_digits<float>(data_file), nn::derive_seed(seed, 0));
        nn::ModulePtr<float> model = digits::make_model(model_name, nn::derive_seed(seed, 1));
        fmt::print("{} training and {} test digits from {}\n{}: {} parameters\n", split.train.size(),
                   split.test.size(), data_file, model->describe(), model->parameter_count());

        nn::Adam<float> optimizer(*model, {learning_rate});
        nn::DataLoader<float> loader(split.train.images, split.train.labels, /*batch_size=*/32, /*shuffle=*/true,
                                     nn::derive_seed(seed, 2));

        std::vector<Row> rows;
        ad::Tape tape;
        for (std::size_t epoch = 1; epoch <= epochs; ++epoch) {
            for (const auto& batch : loader.epoch()) {
                optimizer.zero_grad();
                nn::softmax_cross_entropy((*model)(batch.inputs), batch.labels).backward();
                optimizer.step();
                tape.clear();
            }
            Row row{epoch, evaluate(*model, split.train), evaluate(*model, split.test)};
            rows.push_back(row);
            fmt::print("epoch {:>3}/{} {}  train loss {:.4f} accuracy {:.4f}  test loss {:.4f} accuracy {:.4f}\n",
                       epoch, epochs, bar(epoch, epochs), row.train.loss, row.train.accuracy, row.test.loss,
                       row.test.accuracy);
            std::fflush(stdout);
        }

        fs::create_directories(out);
        write_curves(out, rows, model_name);

        const fs::path checkpoint = fs::path(out) / "checkpoint";
        nn::save_parameters(*model, checkpoint);
        nn::ModulePtr<float> reloaded = digits::make_model(model_name, nn::derive_seed(seed, 99));  // other weights
        double fresh = evaluate(*reloaded, split.test).accuracy;
        nn::load_parameters(*reloaded, checkpoint);
        double trained = evaluate(*model, split.test).accuracy, restored = evaluate(*reloaded, split.test).accuracy;
        fmt::print("checkpoint: {}\n", checkpoint.string());
        fmt::print("test accuracy of a fresh model {:.4f}; trained {:.4f}; reloaded from the checkpoint {:.4f}: {}\n",
                   fresh, trained, restored, trained == restored ? "equal" : "DIFFERENT");
        fmt::print("accuracy floor for this run: {:.2f}\n", floor);
        fmt::print("test accuracy {:.4f}\n", restored);
        return trained == restored && trained >= floor ? 0 : 1;
    } catch (const std::exception& e) {
        fmt::print(stderr, "digits: {}\n", e.what());
        return 1;
    }
}
