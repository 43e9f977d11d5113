#include "autodiff/check.hpp"

#include <cmath>
#include <random>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <xtensor/xrandom.hpp>

#include "autodiff/functional.hpp"
#include "autodiff/ops/all.hpp"

namespace ad {
namespace {

/// sum(f(xs) * v): the scalar whose gradient is the VJP of v.
double reduced_output(const Function& f, const std::vector<Var<double>>& xs, const Array<double>& v) {
    Var<double> y = f(xs);
    return xt::sum(y.value() * v)();
}

Shape unravel(std::size_t flat, const Shape& shape) {
    Shape index(shape.size());
    for (std::size_t d = shape.size(); d-- > 0;) {
        index[d] = flat % shape[d];
        flat /= shape[d];
    }
    return index;
}

}  // namespace

GradcheckResult gradcheck(const Function& f, const std::vector<Array<double>>& inputs,
                          const GradcheckOptions& options) {
    GradcheckResult result;
    Array<double> v;
    std::vector<Array<double>> analytic;
    {
        Tape tape;
        std::vector<Var<double>> params;
        for (const auto& x : inputs) params.push_back(param(Array<double>(x)));
        Var<double> y = f(params);
        xt::random::seed(options.seed);
        v = y.dim() == 0 ? Array<double>(1.0) : Array<double>(xt::random::randn<double>(y.value().shape()));
        Var<double> loss = y.requires_grad() ? sum(y * constant(v)) : y;
        if (loss.requires_grad()) {
            for (auto& g : grad(loss, params)) analytic.push_back(g.value());
        } else {
            for (const auto& x : inputs) analytic.push_back(xt::zeros<double>(x.shape()));
        }
    }

    // The numeric side evaluates f on parameters inside a tape too: f may
    // itself take gradients (a gradient of a gradient is checked this way).
    double worst = -1;
    Tape tape;
    std::vector<Var<double>> xs;
    for (const auto& x : inputs) xs.push_back(param(Array<double>(x)));
    auto evaluate = [&] {
        tape.clear();
        return reduced_output(f, xs, v);
    };
    for (std::size_t i = 0; i < inputs.size(); ++i) {
        Array<double>& xi = xs[i].mutable_value();
        for (std::size_t j = 0; j < xi.size(); ++j) {
            double saved = xi.data()[j];
            xi.data()[j] = saved + options.eps;
            double plus = evaluate();
            xi.data()[j] = saved - options.eps;
            double minus = evaluate();
            xi.data()[j] = saved;
            double numeric = (plus - minus) / (2 * options.eps);
            double a = analytic[i].data()[j];
            double abs_error = std::abs(a - numeric);
            double tolerance = options.atol + options.rtol * std::abs(numeric);
            double badness = std::isnan(abs_error) ? INFINITY : abs_error / tolerance;
            if (badness > worst) {
                worst = badness;
                result.input = i;
                result.index = unravel(j, shape_of(xi));
                result.analytic = a;
                result.numeric = numeric;
                result.abs_error = abs_error;
                result.rel_error = abs_error / std::max(std::abs(numeric), 1e-300);
            }
        }
    }
    result.ok = worst <= 1;
    result.message = fmt::format(
        "gradcheck: {}; worst element: input {} at ({}): analytic {:.12g}, numeric {:.12g}, abs error {:.3g}, "
        "rel error {:.3g}",
        result.ok ? "ok" : "gradients differ from finite differences", result.input, fmt::join(result.index, ", "),
        result.analytic, result.numeric, result.abs_error, result.rel_error);
    return result;
}

}  // namespace ad
