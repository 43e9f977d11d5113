// Graph export: the textbook network's training step drawn with Graphviz.
//
//   2-layer sigmoid MLP (2 -> hidden -> 1) on XOR, half squared error summed
//   over the batch; one gradient descent step on a tape that annotates its
//   records, so every op carries the module it ran in.
//
// Writes <out>.dot (the data flow, parameters named by their path) and, with
// --collapse, one box per module call; with --backward, the backward sweep
// in red. When Graphviz's `dot` is installed, renders <out>.svg and <out>.png.
// examples/textbook_graph.svg is this program's picture with the defaults.

#include <cstdlib>
#include <fstream>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <nn/nn.hpp>
#include <xtensor/xmanipulation.hpp>

namespace nn = ad::nn;

struct Options {
    std::size_t hidden = 4;
    std::string out = "textbook_graph";
    bool collapse = false;
    bool backward = false;
    bool call_sites = false;
};

bool render(const std::string& dot_file, const std::string& format, const std::string& out) {
    const std::string command = fmt::format("dot -T{} '{}' -o '{}'", format, dot_file, out);
    if (std::system(command.c_str()) != 0) {
        fmt::print(stderr, "graph_export: `{}` failed\n", command);
        return false;
    }
    fmt::print("{}: {}\n", format, out);
    return true;
}

int run(const Options& options) {
    using T = double;
    const ad::Array<T> inputs{{0, 0}, {0, 1}, {1, 0}, {1, 1}};
    const ad::Array<T> targets = xt::reshape_view(ad::Array<T>{0, 1, 1, 0}, {4, 1});
    nn::MLP<T> model({2, options.hidden, 1}, nn::Activation::sigmoid, 0);
    nn::SGD<T> optimizer(model, {2.0});

    // Annotated records know the module they ran in ("layers.0 (Linear(2, 4))").
    ad::Tape tape{{.annotate = true}};
    auto loss = nn::half_sse(model(inputs), targets, ad::Reduction::sum);

    ad::DotOptions dot_options;
    dot_options.collapse_modules = options.collapse;
    dot_options.show_backward = options.backward;
    dot_options.show_call_sites = options.call_sites;
    dot_options.title = fmt::format("XOR: one training step of the textbook network {}", fmt::join(model.sizes(), "-"));
    // The step's graph (it can be drawn after backward() too, until tape.clear()).
    const std::string dot = nn::to_dot(loss, model, dot_options);

    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
    fmt::print("one step of {} on XOR: loss {:.6f}, {} records on the tape\n", model.describe(), loss.item(),
               tape.size());

    const std::string dot_file = options.out + ".dot";
    std::ofstream(dot_file) << dot;
    fmt::print("dot: {}\n", dot_file);
    if (std::system("command -v dot >/dev/null 2>&1") != 0) {
        fmt::print("(Graphviz's dot is not installed: no SVG or PNG; apt install graphviz)\n");
        return 0;
    }
    const bool ok = render(dot_file, "svg", options.out + ".svg") && render(dot_file, "png", options.out + ".png");
    return ok ? 0 : 1;
}

int main(int argc, char** argv) {
    Options options;
    CLI::App app{"Train the textbook network one step and draw its tape with Graphviz"};
    app.add_option("--hidden", options.hidden, "hidden units")->check(CLI::Range(1, 64))->capture_default_str();
    app.add_option("--out", options.out, "output path without extension (.dot, .svg, .png)")->capture_default_str();
    app.add_flag("--collapse", options.collapse, "one box per module call");
    app.add_flag("--backward", options.backward, "draw the backward sweep");
    app.add_flag("--call-sites", options.call_sites, "label records with the file:line that recorded them");
    CLI11_PARSE(app, argc, argv);
    try {
        return run(options);
    } catch (const std::exception& e) {
        fmt::print(stderr, "graph_export: {}\n", e.what());
        return 2;
    }
}
