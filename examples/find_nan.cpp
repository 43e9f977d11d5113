// Anomaly mode finds where a NaN or an infinity is born, forward or backward,
// and names the line of this file that called the op.
//
//   1. forward: a Gaussian log-likelihood whose variance, a linear function
//      of time, turns negative at the last time step: log of a negative
//      number three ops before the loss;
//   2. backward: the distance between two points that coincide: sqrt at 0
//      is finite, its derivative is not.
//
// Built with -g1 (line tables): without debug information the messages name
// the op but not the file and line.

#include <cstdio>
#include <string>

#include <fmt/format.h>

#include "autodiff/autodiff.hpp"

using ad::Var;

/// The negative log-likelihood of observations x at times t under
/// N(mu, a + b t): the variance model is the user's, and wrong for large t.
Var<double> negative_log_likelihood(const Var<double>& mu, const Var<double>& a, const Var<double>& b,
                                    const Var<double>& t, const Var<double>& x) {
    Var<double> variance = a + b * t;
    Var<double> log_variance = ad::log(variance);
    Var<double> residual = x - mu;
    return ad::sum(0.5 * log_variance + ad::square(residual) / (2.0 * variance));
}

/// The length of the path through points p (rows): two of them coincide.
Var<double> path_length(const Var<double>& p) {
    Var<double> steps = ad::slice(p, 0, 1, 4) - ad::slice(p, 0, 0, 3);
    return ad::sum(ad::sqrt(ad::sum(ad::square(steps), 1)));
}

int main() {
    ad::DetectAnomaly anomaly;  // this thread, until the guard ends
    int found = 0;

    try {
        ad::Tape tape;
        Var<double> mu = ad::param<double>({0.1});
        Var<double> a = ad::param<double>({1.0});
        Var<double> b = ad::param<double>({-0.3});
        Var<double> t = ad::constant<double>({0.0, 1.0, 2.0, 4.0});
        Var<double> x = ad::constant<double>({0.2, -0.1, 0.4, 0.3});
        negative_log_likelihood(mu, a, b, t, x).backward();
    } catch (const ad::value_error& e) {
        fmt::print("forward:\n  {}\n\n", e.what());
        ++found;
    }

    try {
        ad::Tape tape;
        Var<double> points = ad::param<double>(ad::Array<double>{{0, 0}, {3, 4}, {3, 4}, {6, 8}});
        Var<double> length = path_length(points);
        fmt::print("path length {} (finite: sqrt(0) = 0)\n", length.item());
        length.backward();
    } catch (const ad::value_error& e) {
        fmt::print("backward:\n  {}\n", e.what());
        ++found;
    }
    return found == 2 ? 0 : 1;
}
