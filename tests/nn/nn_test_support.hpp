#pragma once
// Shared by the nn tests: finite differences of a model's loss with respect
// to its parameters, independent of the tape.

#include <cmath>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "nn/nn.hpp"
#include "support/test_support.hpp"

namespace ad::test {

/// Central differences of `loss()` with respect to every element of every
/// parameter of `model`, computed by perturbing the values in place.
inline std::vector<Array<double>> numeric_parameter_grads(const nn::Module<double>& model,
                                                          const std::function<double()>& loss,
                                                          double eps = 1e-6) {
    std::vector<Array<double>> grads;
    for (auto& p : model.named_parameters()) {
        Array<double>& value = p.var.mutable_value();
        Array<double> g = xt::zeros<double>(value.shape());
        for (std::size_t i = 0; i < value.size(); ++i) {
            double saved = value.flat(i);
            value.flat(i) = saved + eps;
            double up = loss();
            value.flat(i) = saved - eps;
            double down = loss();
            value.flat(i) = saved;
            g.flat(i) = (up - down) / (2 * eps);
        }
        grads.push_back(g);
    }
    return grads;
}

inline double max_abs_diff(const Array<double>& a, const Array<double>& b) {
    REQUIRE(equal_shapes(a, b));
    double m = 0;
    for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a.flat(i) - b.flat(i)));
    return m;
}

inline double max_abs(const Array<double>& a) {
    double m = 0;
    for (double v : a) m = std::max(m, std::abs(v));
    return m;
}

/// The values of all parameters, to check later that nothing changed.
template <class T>
std::vector<Array<T>> snapshot(const nn::Module<T>& model) {
    std::vector<Array<T>> values;
    for (const auto& p : model.named_parameters()) values.push_back(p.var.value());
    return values;
}

template <class T>
bool unchanged(const nn::Module<T>& model, const std::vector<Array<T>>& before) {
    auto params = model.named_parameters();
    if (params.size() != before.size()) return false;
    for (std::size_t i = 0; i < params.size(); ++i) {
        if (!equal_shapes(params[i].var.value(), before[i]) || params[i].var.value() != before[i]) return false;
    }
    return true;
}

/// A fresh folder under the system's temporary directory, removed at the end.
struct TemporaryFolder {
    std::filesystem::path path;
    explicit TemporaryFolder(const std::string& name)
        : path(std::filesystem::temp_directory_path() / ("tapegrad_nn_" + name)) {
        std::filesystem::remove_all(path);
        std::filesystem::create_directories(path);
    }
    ~TemporaryFolder() { std::filesystem::remove_all(path); }
};

/// Layer normalisation by loops: y = (x - mean) / sqrt(var + eps) w + b over
/// the trailing `width` elements, the biased variance.
inline Array<double> reference_layer_norm(const Array<double>& x, std::size_t width, const Array<double>& w,
                                          const Array<double>& b, double eps) {
    Array<double> y = Array<double>::from_shape(x.shape());
    for (std::size_t r = 0; r < x.size() / width; ++r) {
        double mean = 0, var = 0;
        for (std::size_t i = 0; i < width; ++i) mean += x.flat(r * width + i) / double(width);
        for (std::size_t i = 0; i < width; ++i) var += std::pow(x.flat(r * width + i) - mean, 2) / double(width);
        for (std::size_t i = 0; i < width; ++i) {
            y.flat(r * width + i) = (x.flat(r * width + i) - mean) / std::sqrt(var + eps) * w.flat(i) + b.flat(i);
        }
    }
    return y;
}

}  // namespace ad::test
