#pragma once
// Dropout: torch.nn.Dropout. In training each element is zeroed with
// probability p and the rest scaled by 1 / (1 - p) (inverted dropout); in
// evaluation mode the identity. The layer draws from its own generator,
// seeded from the options, so a seed fixes the masks of a run.

#include <cstdint>
#include <random>
#include <string>

#include "nn/module.hpp"

namespace ad::nn {

struct DropoutOptions {
    DropoutOptions(double p = 0.5) : p_(p) {}
    TAPEGRAD_ARG(double, p);
    TAPEGRAD_ARG(std::uint64_t, seed) = 0;
};

template <class T>
class Dropout final : public Module<T> {
public:
    /// p outside [0, 1) is a value_error.
    explicit Dropout(DropoutOptions options = {});
    explicit Dropout(double p) : Dropout(DropoutOptions(p)) {}

    /// ad::dropout(x, p, is_training(), generator): the same shape.
    Var<T> forward(const Var<T>& x) override;
    /// `Dropout(p=0.5, inplace=False)`.
    std::string describe() const override;

    const DropoutOptions& options() const { return options_; }

private:
    DropoutOptions options_;
    std::mt19937_64 generator_;
};

extern template class Dropout<float>;
extern template class Dropout<double>;

}  // namespace ad::nn
