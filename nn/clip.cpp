#include "nn/clip.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace ad::nn {

template <class T>
double clip_grad_norm(const std::vector<Var<T>>& parameters, double max_norm, double norm_type) {
    if (!(max_norm >= 0) || !std::isfinite(max_norm)) {
        throw value_error(fmt::format("clip_grad_norm: max_norm is {}; it must be finite and not negative", max_norm));
    }
    const bool inf_norm = std::isinf(norm_type) && norm_type > 0;
    if (!inf_norm && !(norm_type >= 1 && std::isfinite(norm_type))) {
        throw value_error(fmt::format("clip_grad_norm: norm_type is {}; it must be >= 1 or infinity", norm_type));
    }
    // In double whatever T is: a float sum of squares of a large model loses digits.
    double total = 0;
    for (std::size_t i = 0; i < parameters.size(); ++i) {
        const Array<T>& g = parameters[i].mutable_grad();
        for (T v : g) {
            if (!std::isfinite(v)) {
                throw value_error(fmt::format("clip_grad_norm: parameter {} (shape {}) has a gradient holding {}; "
                                              "gradients unchanged",
                                              i, shape_string_of(g), double(v)));
            }
            double a = std::abs(double(v));
            if (inf_norm) {
                total = std::max(total, a);
            } else if (norm_type == 2) {
                total += a * a;
            } else {
                total += std::pow(a, norm_type);
            }
        }
    }
    if (!inf_norm) total = norm_type == 2 ? std::sqrt(total) : std::pow(total, 1 / norm_type);
    const double coefficient = max_norm / (total + 1e-6);
    if (coefficient < 1) {
        for (const auto& p : parameters) p.mutable_grad() *= T(coefficient);
    }
    return total;
}

template <class T>
void clip_grad_value(const std::vector<Var<T>>& parameters, double clip_value) {
    if (!(clip_value >= 0) || !std::isfinite(clip_value)) {
        throw value_error(fmt::format("clip_grad_value: clip_value is {}; it must be finite and not negative", clip_value));
    }
    const T c = T(clip_value);
    for (const auto& p : parameters) {
        for (T& v : p.mutable_grad()) v = std::clamp(v, -c, c);  // NaN stays NaN, as torch.clamp
    }
}

template double clip_grad_norm(const std::vector<Var<float>>&, double, double);
template double clip_grad_norm(const std::vector<Var<double>>&, double, double);
template void clip_grad_value(const std::vector<Var<float>>&, double);
template void clip_grad_value(const std::vector<Var<double>>&, double);

}  // namespace ad::nn
