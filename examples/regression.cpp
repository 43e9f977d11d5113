// Fit sin(x) on [-pi, pi] with a tanh MLP and Adam, in shuffled mini-batches;
// save a checkpoint, load it into a fresh model, and show the reloaded model
// gives the same loss.

#include <cmath>
#include <filesystem>

#include <fmt/format.h>
#include <nn/nn.hpp>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>

namespace nn = ad::nn;

double evaluate(nn::Module<double>& model, const ad::Array<double>& x, const ad::Array<double>& y) {
    ad::NoGrad no_grad;  // evaluation records nothing
    return nn::mse(model(x), y).item();
}

int main() {
    const double pi = std::acos(-1.0);
    ad::Array<double> x = xt::linspace<double>(-pi, pi, 256);
    x.reshape({256, 1});
    ad::Array<double> y = xt::sin(x);

    nn::MLP<double> model({1, 32, 32, 1}, nn::Activation::tanh, /*seed=*/1, nn::Activation::identity);
    nn::Adam<double> optimizer(model, {/*learning_rate=*/0.01});
    nn::DataLoader<double> data(x, y, /*batch_size=*/32, /*shuffle=*/true, /*seed=*/2);

    ad::Tape tape;
    for (int epoch = 1; epoch <= 300; ++epoch) {
        if (epoch % 100 == 0) optimizer.set_learning_rate(optimizer.learning_rate() / 4);  // settle down
        for (const auto& batch : data.epoch()) {
            optimizer.zero_grad();
            nn::mse(model(batch.inputs), batch.targets).backward();
            optimizer.step();
            tape.clear();
        }
        if (epoch % 50 == 0) fmt::print("epoch {:>3}  mse {:.3e}\n", epoch, evaluate(model, x, y));
    }
    double trained = evaluate(model, x, y);

    const auto folder = std::filesystem::temp_directory_path() / "tapegrad_regression_checkpoint";
    nn::save_parameters(model, folder);
    nn::MLP<double> reloaded({1, 32, 32, 1}, nn::Activation::tanh, /*seed=*/99, nn::Activation::identity);
    fmt::print("fresh model before loading: mse {:.3e}\n", evaluate(reloaded, x, y));
    nn::load_parameters(reloaded, folder);
    double restored = evaluate(reloaded, x, y);
    fmt::print("checkpoint in {}\n", folder.string());
    fmt::print("trained mse {:.6e}, reloaded mse {:.6e}: {}\n", trained, restored,
               trained == restored ? "identical" : "DIFFERENT");
    std::filesystem::remove_all(folder);
    return trained == restored && trained < 1e-3 ? 0 : 1;
}
