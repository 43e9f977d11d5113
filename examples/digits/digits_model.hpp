#pragma once
// The digits example's models and their evaluation, shared by
// examples/digits and examples/distributed_digits so that both train the
// same network.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nn/nn.hpp>

#include "digits_data.hpp"

namespace digits {

/// The models --model chooses from; each reads images (N, 1, 8, 8) and
/// returns logits (N, 10).
inline ad::nn::ModulePtr<float> make_model(const std::string& name, std::uint64_t seed) {
    namespace nn = ad::nn;
    if (name == "mlp") {
        // 64-64-10: ReLU hidden layer (He-uniform weights), logits out.
        auto model = std::make_shared<nn::Sequential<float>>();
        model->add(nn::Flatten<float>());
        model->add(nn::MLP<float>({side * side, 64, classes}, nn::Activation::relu, seed, nn::Activation::identity));
        return model;
    }
    if (name == "cnn") {
        // Two 3x3 convolutions (padding 1) with ReLU and 2x2 max pooling:
        // (1, 8, 8) -> (16, 4, 4) -> (32, 2, 2), then a linear read-out.
        auto model = std::make_shared<nn::Sequential<float>>();
        model->add(nn::Conv2d<float>(nn::Conv2dOptions(1, 16, 3).padding(1).seed(nn::derive_seed(seed, 0))));
        model->add(nn::ReLU<float>());
        model->add(nn::MaxPool2d<float>(2));
        model->add(nn::Conv2d<float>(nn::Conv2dOptions(16, 32, 3).padding(1).seed(nn::derive_seed(seed, 1))));
        model->add(nn::ReLU<float>());
        model->add(nn::MaxPool2d<float>(2));
        model->add(nn::Flatten<float>());
        model->add(nn::Linear<float>(32 * 2 * 2, classes, nn::derive_seed(seed, 2)));
        return model;
    }
    throw ad::value_error(fmt::format("make_model: unknown model '{}'", name));
}
inline const std::vector<std::string> model_names = {"cnn", "mlp"};

struct Scores {
    double loss = 0;
    double accuracy = 0;
};

/// How many of `logits`' rows (N, 10) have their largest value at the label.
inline std::size_t count_correct(const ad::Var<float>& logits, const std::vector<std::size_t>& labels) {
    ad::IndexArray predicted = ad::argmax(logits, 1);
    std::size_t correct = 0;
    for (std::size_t i = 0; i < labels.size(); ++i) correct += std::size_t(predicted(i)) == labels[i];
    return correct;
}

/// Loss and accuracy over a whole split, in evaluation mode, recording nothing.
inline Scores evaluate(ad::nn::Module<float>& model, const Digits<float>& data) {
    ad::NoGrad no_grad;
    bool was_training = model.is_training();
    model.eval();
    ad::Var<float> logits = model(data.images);
    model.train(was_training);
    return {double(ad::nn::softmax_cross_entropy(logits, data.labels).item()),
            double(count_correct(logits, data.labels)) / double(data.size())};
}

}  // namespace digits
