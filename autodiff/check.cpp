#include "autodiff/check.hpp"

#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <xtensor/xrandom.hpp>

#include "autodiff/functional.hpp"
#include "autodiff/ops/all.hpp"

namespace ad {
namespace {

Shape unravel(std::size_t flat, const Shape& shape) {
    Shape index(shape.size());
    for (std::size_t d = shape.size(); d-- > 0;) {
        index[d] = flat % shape[d];
        flat /= shape[d];
    }
    return index;
}

Array<double> random_cotangent(const Shape& shape, std::uint64_t seed) {
    xt::random::seed(seed);
    return shape.empty() ? Array<double>(1.0) : Array<double>(xt::random::randn<double>(shape));
}

/// A scalar read off the tape after f ran on `xs`: what finite differences probe.
using Probe = std::function<double(Tape&, const std::vector<Var<double>>&)>;

/// Compares `analytic` (one array per input) with central differences of
/// `probe`, element by element; fills the worst element into a result.
GradcheckResult compare(const std::vector<Array<double>>& analytic, const std::vector<Array<double>>& inputs,
                        const Probe& probe, const GradcheckOptions& options, TapeOptions tape_options = {}) {
    GradcheckResult result;
    double worst = -1;
    // The numeric side runs f on parameters inside a tape too: f may itself
    // take gradients (a gradient of a gradient is checked this way).
    Tape tape(tape_options);
    std::vector<Var<double>> xs;
    for (const auto& x : inputs) xs.push_back(param(Array<double>(x)));
    for (std::size_t i = 0; i < inputs.size(); ++i) {
        Array<double>& xi = xs[i].mutable_value();
        for (std::size_t j = 0; j < xi.size(); ++j) {
            double saved = xi.data()[j];
            xi.data()[j] = saved + options.eps;
            double plus = probe(tape, xs);
            xi.data()[j] = saved - options.eps;
            double minus = probe(tape, xs);
            xi.data()[j] = saved;
            double numeric = (plus - minus) / (2 * options.eps);
            double a = analytic[i].data()[j];
            double abs_error = std::abs(a - numeric);
            double tolerance = options.atol + options.rtol * std::abs(numeric);
            double badness = std::isnan(abs_error) ? std::numeric_limits<double>::infinity() : abs_error / tolerance;
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
    return result;
}

/// The gradients of sum(output * v) with respect to `xs`, zeros where none flows.
std::vector<Array<double>> analytic_vjp(const Var<double>& output, const std::vector<Var<double>>& xs,
                                        const Array<double>& v) {
    std::vector<Array<double>> grads;
    if (output.requires_grad()) {
        for (auto& g : grad(output, xs, constant(v), {.retain_graph = true})) grads.push_back(g.value());
    } else {
        for (const auto& x : xs) grads.push_back(xt::zeros<double>(x.value().shape()));
    }
    return grads;
}

/// Checks each record of f's tape in recording order: the gradient of a random
/// projection of its result with respect to f's inputs. Records before the
/// first failing one are right, so that one's own VJP is the culprit.
void find_first_bad_record(const Function& f, const std::vector<Array<double>>& inputs, const GradcheckOptions& options,
                           GradcheckResult& result) {
    Tape tape({.keep_results = true});
    std::vector<Var<double>> xs;
    for (const auto& x : inputs) xs.push_back(param(Array<double>(x)));
    f(xs);
    std::size_t records = tape.size();
    for (std::size_t r = 0; r < records; ++r) {
        const Var<double>* out = tape.result<Var<double>>(r);
        if (!out) continue;
        Array<double> v = random_cotangent(out->shape(), options.seed + r + 2);
        Probe probe_record = [&f, r, v](Tape& t, const std::vector<Var<double>>& in) {
            t.clear();
            f(in);
            const Var<double>* o = t.size() > r ? t.result<Var<double>>(r) : nullptr;
            // Control flow took another path: this record has no counterpart.
            if (!o || !equal_shapes(o->value(), v)) return std::numeric_limits<double>::quiet_NaN();
            return static_cast<double>(xt::sum(o->value() * v)());
        };
        GradcheckResult check =
            compare(analytic_vjp(*out, xs, v), inputs, probe_record, options, {.keep_results = true});
        if (!check.ok) {
            result.bad_record = r;
            result.bad_op = tape.op_name(r);
            return;
        }
    }
}

}  // namespace

GradcheckResult gradcheck(const Function& f, const std::vector<Array<double>>& inputs,
                          const GradcheckOptions& options) {
    // Its tapes record even inside a caller's NoGrad, as the transforms' do.
    EnableGrad recording;
    Array<double> v;
    std::vector<Array<double>> analytic;
    {
        Tape tape;
        std::vector<Var<double>> params;
        for (const auto& x : inputs) params.push_back(param(Array<double>(x)));
        Var<double> y = f(params);
        v = random_cotangent(y.shape(), options.seed);
        analytic = analytic_vjp(y, params, v);
    }
    Probe probe_output = [&f, &v](Tape& tape, const std::vector<Var<double>>& xs) {
        tape.clear();
        return static_cast<double>(xt::sum(f(xs).value() * v)());
    };
    GradcheckResult result = compare(analytic, inputs, probe_output, options);
    if (!result.ok) find_first_bad_record(f, inputs, options, result);
    result.message = fmt::format(
        "gradcheck: {}; worst element: input {} at ({}): analytic {:.12g}, numeric {:.12g}, abs error {:.3g}, "
        "rel error {:.3g}{}",
        result.ok ? "ok" : "gradients differ from finite differences", result.input, fmt::join(result.index, ", "),
        result.analytic, result.numeric, result.abs_error, result.rel_error,
        result.bad_op.empty() ? std::string()
                              : fmt::format("; first record whose VJP disagrees: #{} {}", result.bad_record, result.bad_op));
    return result;
}

GradcheckResult gradgradcheck(const Function& f, const std::vector<Array<double>>& inputs,
                              const GradcheckOptions& options) {
    EnableGrad recording;
    // The output's shape fixes v's shape: one untaped evaluation finds it.
    Shape out_shape;
    {
        NoGrad no_grad;
        std::vector<Var<double>> xs;
        for (const auto& x : inputs) xs.push_back(constant(Array<double>(x)));
        out_shape = f(xs).shape();
    }
    Array<double> v = random_cotangent(out_shape, options.seed + 1);
    Function first_derivative = [&f, v](const std::vector<Var<double>>& xs) {
        Var<double> y = f(xs);
        std::vector<Var<double>> flat;
        if (y.requires_grad()) {
            for (auto& g : grad(sum(y * constant(v)), xs, {.create_graph = true})) flat.push_back(reshape(g, {-1}));
        } else {
            for (const auto& x : xs) flat.push_back(constant(Array<double>(xt::zeros<double>({x.size()}))));
        }
        return concatenate(flat);
    };
    GradcheckResult result = gradcheck(first_derivative, inputs, options);
    result.message = "grad" + result.message;
    return result;
}

}  // namespace ad
