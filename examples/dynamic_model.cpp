// A model whose graph changes with its input: an Elman recurrent net reads
// sequences of different lengths, one step per element, and predicts a fifth
// of the sequence's sum. The tape records whatever loop actually ran for each
// sequence, so a 3-step and a 12-step sequence are simply different graphs,
// with no padding and no static graph to declare.
//
//   h_0 = 0,   h_t = tanh(x_t W_x^T + h_(t-1) W_h^T + b),   y = h_T w^T + c

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include <fmt/format.h>
#include <nn/nn.hpp>

namespace nn = ad::nn;
using ad::Var;

/// The recurrent cell and its read-out as a Module: each layer is registered
/// once, so parameters, zero_grad and checkpoints see them by name
/// ("input.weight", ...), and forward runs one sequence (rows are time steps).
class RecurrentNet final : public nn::Module<double> {
public:
    RecurrentNet(std::size_t hidden, std::uint64_t seed)
        : input_(register_module("input", nn::Linear<double>(1, hidden, nn::derive_seed(seed, 0)))),
          // No bias: input_ has one, and a second would add nothing but a redundant parameter.
          recurrent_weight_(register_parameter(
              "recurrent_weight", nn::init_weight<double>(hidden, hidden, nn::Init::xavier_uniform, nn::derive_seed(seed, 1)))),
          readout_(register_module("readout", nn::Linear<double>(hidden, 1, nn::derive_seed(seed, 2)))),
          hidden_(hidden) {}

    Var<double> forward(const Var<double>& sequence) override {
        Var<double> h = ad::constant(ad::Array<double>(xt::zeros<double>({std::size_t(1), hidden_})));
        for (std::size_t t = 0; t < sequence.shape()[0]; ++t) {  // as many steps as the input has
            Var<double> x_t = ad::rows(sequence, t, t + 1);
            h = ad::tanh((*input_)(x_t) + ad::matmul(h, recurrent_weight_, false, true));
        }
        return (*readout_)(h);
    }

    std::string describe() const override { return fmt::format("RecurrentNet(hidden={})", hidden_); }

private:
    std::shared_ptr<nn::Linear<double>> input_;
    Var<double> recurrent_weight_;
    std::shared_ptr<nn::Linear<double>> readout_;
    std::size_t hidden_;
};

struct Example {
    ad::Array<double> sequence;  // (length, 1)
    ad::Array<double> target;    // (1, 1): a fifth of the sum of the sequence
};

std::vector<Example> make_data(std::size_t count, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<Example> data;
    for (std::size_t i = 0; i < count; ++i) {
        std::size_t length = 2 + nn::uniform_index(rng, 11);  // 2 to 12 steps
        ad::Array<double> s = ad::Array<double>::from_shape({length, 1});
        double total = 0;
        for (auto& v : s) total += (v = nn::uniform(rng, -1, 1));
        ad::Array<double> mean = xt::full_like(ad::Array<double>::from_shape({1, 1}), 0.2 * total);
        data.push_back({s, mean});
    }
    return data;
}

double evaluate(RecurrentNet& model, const std::vector<Example>& data) {
    ad::NoGrad no_grad;
    double total = 0;
    for (const auto& e : data) total += nn::mse(model(e.sequence), e.target).item();
    return total / double(data.size());
}

int main() {
    auto train = make_data(256, 1);
    auto test = make_data(64, 2);
    RecurrentNet model(8, 3);
    nn::Adam<double> optimizer(model, {/*learning_rate=*/0.01});
    std::mt19937_64 rng(4);
    std::vector<std::size_t> order(train.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;

    double first = evaluate(model, test);
    fmt::print("{}: {} parameters; test mse before training {:.4e}\n", model.describe(), model.parameter_count(), first);
    ad::Tape tape;
    const std::size_t batch = 16;
    for (int epoch = 1; epoch <= 30; ++epoch) {
        nn::shuffle(order, rng);
        std::size_t fewest = SIZE_MAX, most = 0;
        double train_loss = 0;
        for (std::size_t start = 0; start < order.size(); start += batch) {
            optimizer.zero_grad();
            // One loss over sequences of different lengths: one graph per sequence, summed.
            Var<double> loss;
            for (std::size_t k = start; k < start + batch; ++k) {
                const auto& e = train[order[k]];
                Var<double> l = nn::mse(model(e.sequence), e.target);
                loss = loss.defined() ? loss + l : l;
            }
            loss = loss / double(batch);
            loss.backward();
            optimizer.step();
            train_loss += loss.item() * double(batch) / double(order.size());
            fewest = std::min(fewest, tape.size());
            most = std::max(most, tape.size());
            tape.clear();
        }
        if (epoch % 5 == 0 || epoch == 1) {
            fmt::print("epoch {:>2}  train mse {:.4e}  test mse {:.4e}  (tape: {} to {} records per batch)\n", epoch,
                       train_loss, evaluate(model, test), fewest, most);
        }
    }
    double last = evaluate(model, test);
    fmt::print("test mse {:.4e} -> {:.4e}\n", first, last);
    return last < 0.2 * first ? 0 : 1;
}
