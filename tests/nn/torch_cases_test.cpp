// The PyTorch reference cases of kind "mlp" (tests/data/torch-cases/mlp_*)
// run through nn: the model is built from case.json with nn::MLP, the case's
// weights are assigned by parameter name, and loss and gradients must agree
// with PyTorch's to a relative 1e-10.

#include "nn_test_support.hpp"

#include <filesystem>
#include <fstream>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <xtensor/xnpy.hpp>

namespace {

using namespace ad;
namespace fs = std::filesystem;

Array<double> load(const fs::path& folder, const std::string& name) {
    return xt::load_npy<double>((folder / (name + ".npy")).string());
}

/// max |a - b| over max |b|: relative to the gradient's scale, so an element
/// that is zero in one and 1e-20 in the other does not count as a failure.
double relative_error(const Array<double>& a, const Array<double>& b) {
    REQUIRE(equal_shapes(a, b));
    double scale = std::max(test::max_abs(b), 1e-300);
    return test::max_abs_diff(a, b) / scale;
}

TEST_CASE("torch mlp cases pass through nn: loss and gradients at relative 1e-10") {
    std::vector<fs::path> cases;
    for (const auto& entry : fs::directory_iterator(TAPEGRAD_TORCH_CASES_DIR)) {
        if (entry.path().filename().string().rfind("mlp_", 0) == 0) cases.push_back(entry.path());
    }
    std::sort(cases.begin(), cases.end());
    REQUIRE(cases.size() >= 10);
    for (const auto& folder : cases) {
        CAPTURE(folder.filename().string());
        nlohmann::json spec;
        std::ifstream(folder / "case.json") >> spec;
        REQUIRE(spec["kind"] == "mlp");
        auto sizes = spec["sizes"].get<std::vector<std::size_t>>();
        std::vector<nn::Activation> activations;
        for (const auto& a : spec["activations"]) activations.push_back(nn::parse_activation(a.get<std::string>()));
        nn::MLP<double> model(sizes, activations);

        std::map<std::string, Array<double>> weights;
        for (std::size_t l = 1; l < sizes.size(); ++l) {
            weights[fmt::format("layers.{}.weight", 2 * (l - 1))] = load(folder, fmt::format("W{}", l));
            weights[fmt::format("layers.{}.bias", 2 * (l - 1))] = load(folder, fmt::format("b{}", l));
        }
        nn::assign_parameters(model, weights);

        Array<double> x = load(folder, "X"), y = load(folder, "Y");
        std::string loss_kind = spec["loss"];
        Tape tape;
        Var<double> out = model(x);
        Var<double> loss;
        if (loss_kind == "half_sse") loss = nn::half_sse(out, y, Reduction::sum);
        else if (loss_kind == "half_sse_mean") loss = nn::half_sse(out, y, Reduction::mean);
        else if (loss_kind == "softmax_ce_mean") loss = nn::softmax_cross_entropy(out, y, Reduction::mean);
        else FAIL("unknown loss " << loss_kind);
        loss.backward();

        double expected_loss = load(folder, "loss").flat(0);
        CHECK(std::abs(loss.item() - expected_loss) <= 1e-10 * std::abs(expected_loss));
        for (std::size_t l = 1; l < sizes.size(); ++l) {
            CAPTURE(l);
            CHECK(relative_error(model.linear(l - 1).weight().grad(), load(folder, fmt::format("dW{}", l))) <= 1e-10);
            CHECK(relative_error(model.linear(l - 1).bias().grad(), load(folder, fmt::format("db{}", l))) <= 1e-10);
        }

        // The textbook cases also go through the hand-derived equations.
        if (loss_kind == "half_sse" || loss_kind == "half_sse_mean") {
            bool all_sigmoid = std::all_of(activations.begin(), activations.end(),
                                           [](nn::Activation a) { return a == nn::Activation::sigmoid; });
            if (all_sigmoid) {
                auto hand = nn::textbook_backward(model, x, y,
                                                  loss_kind == "half_sse" ? Reduction::sum : Reduction::mean);
                for (std::size_t l = 1; l < sizes.size(); ++l) {
                    CHECK(relative_error(hand.weight_grads[l - 1], load(folder, fmt::format("dW{}", l))) <= 1e-10);
                    CHECK(relative_error(hand.bias_grads[l - 1], load(folder, fmt::format("db{}", l))) <= 1e-10);
                }
            }
        }
    }
}

}  // namespace
