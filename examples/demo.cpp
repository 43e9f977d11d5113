// The textbook network learns XOR, and the tape's gradients are shown to be
// the hand-derived equations (3) and (5) of shared/docs/backprop-math.md.
//
//   2-layer sigmoid MLP (2 -> hidden -> 1), half squared error summed over
//   the batch, plain gradient descent W <- W - eta dC/dW on all four samples.
//
// Writes the loss curve to <out>/loss.csv and, when gnuplot is installed,
// <out>/loss.png. Ends with "tape vs hand-derived gradients: max abs diff <v>".

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ostream.h>

#include <nn/nn.hpp>
#include <xtensor/xmanipulation.hpp>

namespace nn = ad::nn;
using Clock = std::chrono::steady_clock;

struct Options {
    std::size_t hidden = 4;
    double learning_rate = 2.0;
    std::size_t epochs = 5000;
    std::uint64_t seed = 0;
    std::string precision = "double";
    std::string out = "demo-output";
    bool profile = false;
};

/// A one-line bar redrawn in place with \r: epoch, loss, speed.
void draw_progress(std::size_t epoch, std::size_t epochs, double loss, double seconds) {
    const int width = 30;
    int filled = static_cast<int>(width * double(epoch) / double(epochs));
    double speed = seconds > 0 ? double(epoch) / seconds : 0;
    fmt::print(stderr, "\r[{}{}] epoch {:>6}/{}  loss {:.6f}  {:.0f} epochs/s", std::string(filled, '#'),
               std::string(width - filled, '.'), epoch, epochs, loss, speed);
    std::fflush(stderr);
}

void write_loss_curve(const std::filesystem::path& out, const std::vector<double>& losses) {
    std::filesystem::create_directories(out);
    std::ofstream csv(out / "loss.csv");
    csv << "epoch,loss\n";
    for (std::size_t i = 0; i < losses.size(); ++i) csv << fmt::format("{},{:.17g}\n", i + 1, losses[i]);
    csv.close();
    fmt::print("loss curve: {}\n", (out / "loss.csv").string());

    if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
        fmt::print("(gnuplot not installed: no PNG)\n");
        return;
    }
    std::filesystem::path script = out / "loss.gp";
    std::ofstream gp(script);
    gp << "set terminal pngcairo size 800,500\n"
       << "set output '" << (out / "loss.png").string() << "'\n"
       << "set datafile separator ','\n"
       << "set title 'XOR, textbook sigmoid MLP: half squared error'\n"
       << "set xlabel 'epoch'\nset ylabel 'loss'\nset logscale y\nset grid\n"
       << "plot '" << (out / "loss.csv").string() << "' every ::1 using 1:2 with lines lw 2 title 'loss'\n";
    gp.close();
    std::string command = "gnuplot '" + script.string() + "' 2>/dev/null";
    if (std::system(command.c_str()) == 0) {
        fmt::print("loss plot:  {}\n", (out / "loss.png").string());
    } else {
        // pngcairo is missing from some gnuplot builds: fall back to the plain png terminal.
        std::string fallback = "sed -i 's/pngcairo/png/' '" + script.string() + "' && gnuplot '" +
                               script.string() + "' 2>/dev/null";
        if (std::system(fallback.c_str()) == 0) fmt::print("loss plot:  {}\n", (out / "loss.png").string());
        else fmt::print("(gnuplot failed: no PNG)\n");
    }
}

template <class T>
int run(const Options& options) {
    const ad::Array<T> inputs{{0, 0}, {0, 1}, {1, 0}, {1, 1}};
    const ad::Array<T> targets = xt::reshape_view(ad::Array<T>{0, 1, 1, 0}, {4, 1});

    nn::MLP<T> model({2, options.hidden, 1}, nn::Activation::sigmoid, options.seed);
    nn::SGD<T> optimizer(model, {options.learning_rate});
    fmt::print("XOR with the textbook network {} in {}: {} parameters, eta = {}, {} epochs, seed {}\n",
               model.describe(), options.precision, model.parameter_count(), options.learning_rate,
               options.epochs, options.seed);

    std::vector<double> losses;
    losses.reserve(options.epochs);
    ad::Tape tape;
    // --profile: where an epoch's time goes, op by op (autodiff/profile.hpp).
    std::optional<ad::Profile> profile;
    if (options.profile) profile.emplace();
    auto start = Clock::now();
    auto last_draw = start;
    for (std::size_t epoch = 1; epoch <= options.epochs; ++epoch) {
        optimizer.zero_grad();
        auto loss = nn::half_sse(model(inputs), targets, ad::Reduction::sum);
        loss.backward();
        optimizer.step();
        tape.clear();  // the next epoch records its graph into the same storage
        losses.push_back(double(loss.item()));
        auto now = Clock::now();
        if (epoch == options.epochs || now - last_draw > std::chrono::milliseconds(50)) {
            draw_progress(epoch, options.epochs, losses.back(), std::chrono::duration<double>(now - start).count());
            last_draw = now;
        }
    }
    fmt::print(stderr, "\n");
    double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    fmt::print("trained in {:.2f} s ({:.1f} us per epoch), final loss {:.6g}\n\n", seconds,
               1e6 * seconds / double(options.epochs), losses.back());
    if (profile) {
        profile->stop();
        std::filesystem::create_directories(options.out);
        const auto trace = std::filesystem::path(options.out) / "trace.json";
        profile->write_chrome_trace(trace.string());
        fmt::print("{}\nChrome trace (chrome://tracing, Perfetto): {}\n\n", profile->table(), trace.string());
    }

    ad::Array<T> predictions;
    {
        ad::NoGrad no_grad;
        predictions = model(inputs).value();
    }
    bool solved = true;
    fmt::print(" x1  x2 | target | prediction | rounded\n");
    for (std::size_t i = 0; i < 4; ++i) {
        int rounded = predictions(i, 0) >= T(0.5) ? 1 : 0;
        bool ok = rounded == int(targets(i, 0));
        solved = solved && ok;
        fmt::print("  {}   {} |   {}    |  {:.6f}  |   {}  {}\n", int(inputs(i, 0)), int(inputs(i, 1)),
                   int(targets(i, 0)), double(predictions(i, 0)), rounded, ok ? "ok" : "WRONG");
    }
    fmt::print("XOR {}\n\n", solved ? "solved" : "NOT solved (try more epochs, another seed or a larger --hidden)");

    write_loss_curve(options.out, losses);
    fmt::print("\n");

    // The comparison is made in double whatever the training precision: the
    // trained weights, widened, in a double copy of the network.
    nn::MLP<double> reference({2, options.hidden, 1}, nn::Activation::sigmoid, options.seed);
    std::map<std::string, ad::Array<double>> weights;
    for (const auto& p : model.named_parameters()) weights[p.name] = xt::cast<double>(p.var.value());
    nn::assign_parameters(reference, weights);
    const ad::Array<double> x64 = xt::cast<double>(inputs), y64 = xt::cast<double>(targets);
    auto comparison = nn::compare_with_textbook(reference, x64, y64, ad::Reduction::sum);
    nn::print_comparison(std::cout, comparison);
    double max_abs = comparison.max_abs();
    fmt::print("\ntape vs hand-derived gradients: max abs diff {:.2e}\n", max_abs);
    return (solved && max_abs <= 1e-12) ? 0 : 1;
}

int main(int argc, char** argv) {
    Options options;
    CLI::App app{"Train the textbook sigmoid MLP on XOR and compare the tape with the hand-derived gradients"};
    app.add_option("--hidden", options.hidden, "hidden units")->check(CLI::Range(1, 1024))->capture_default_str();
    app.add_option("--lr", options.learning_rate, "learning rate eta")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--epochs", options.epochs, "epochs (full-batch steps)")->check(CLI::Range(1, 100000000))->capture_default_str();
    app.add_option("--seed", options.seed, "initialisation seed")->capture_default_str();
    app.add_option("--precision", options.precision, "training precision")
        ->check(CLI::IsMember({"float", "double"}))->capture_default_str();
    app.add_option("--out", options.out, "folder for loss.csv and loss.png")->capture_default_str();
    app.add_flag("--profile", options.profile, "profile the training: a table by op, and <out>/trace.json");
    CLI11_PARSE(app, argc, argv);
    try {
        return options.precision == "float" ? run<float>(options) : run<double>(options);
    } catch (const std::exception& e) {
        fmt::print(stderr, "\ndemo: {}\n", e.what());
        return 2;
    }
}
