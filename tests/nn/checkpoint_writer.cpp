// Saves checkpoints of one model in a loop until it is killed: the process
// that serialize_test kills at random instants during saves.
//
//   checkpoint_writer FOLDER
//
// Save k (k = 1, 2, ...) sets every value of every parameter to k first, so a
// loaded checkpoint is whole exactly when all its values are one same k. After
// each save it prints k on a line of its own, so that the test can time its
// kill to the saves whatever the speed of the build.

#include <cstdio>
#include <exception>

#include "nn/nn.hpp"

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: checkpoint_writer FOLDER\n");
        return 2;
    }
    try {
        ad::nn::MLP<double> model({128, 128, 128, 64}, ad::nn::Activation::tanh, 0);
        for (double k = 1;; ++k) {
            for (auto& p : model.named_parameters()) p.var.mutable_value().fill(k);
            ad::nn::save_parameters(model, argv[1]);
            std::printf("%.0f\n", k);
            std::fflush(stdout);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "checkpoint_writer: %s\n", e.what());
        return 1;
    }
}
