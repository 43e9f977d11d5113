#pragma once
// Gradient checking against central finite differences, in double.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "autodiff/record.hpp"

namespace ad {

struct GradcheckOptions {
    double eps = 1e-6;    ///< finite-difference step
    double atol = 1e-6;   ///< |analytic - numeric| <= atol + rtol |numeric|
    double rtol = 1e-5;
    std::uint64_t seed = 0;  ///< draws the cotangent a non-scalar output is reduced with
};

struct GradcheckResult {
    bool ok = true;
    /// The worst element (largest error relative to its tolerance).
    std::size_t input = 0;
    Shape index;
    double analytic = 0;
    double numeric = 0;
    double abs_error = 0;
    double rel_error = 0;
    /// When the check failed: the first record of f's tape whose VJP disagrees
    /// with finite differences (each record checked in recording order).
    std::string bad_op;
    std::size_t bad_record = 0;
    /// "gradcheck: ok ..." or what failed, with the worst element and the culprit.
    std::string message;

    explicit operator bool() const noexcept { return ok; }
};

using Function = std::function<Var<double>(const std::vector<Var<double>>&)>;

/// Compares the tape's gradient of `f` at `inputs` with central differences.
/// A non-scalar output y is reduced to sum(y * v) for a fixed random v, so
/// every output element is checked through its VJP. Never throws on a
/// mismatch: the result says where, by how much, and which recorded op's VJP
/// is the first to disagree (f must record the same ops on every run for that).
GradcheckResult gradcheck(const Function& f, const std::vector<Array<double>>& inputs,
                          const GradcheckOptions& options = {});

/// Checks second derivatives: gradcheck of x -> grad(sum(f(x) * v), x) with
/// create_graph, for a fixed random cotangent v of f's output. Passes when every
/// VJP on f's path is itself correctly differentiable (double backward).
GradcheckResult gradgradcheck(const Function& f, const std::vector<Array<double>>& inputs,
                              const GradcheckOptions& options = {});

}  // namespace ad
