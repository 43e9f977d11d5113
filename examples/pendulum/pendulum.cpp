// Fit a damped pendulum's length L and damping b to noisy observations of its
// angle, differentiating through an RK4 integrator written with engine ops:
//
//   theta'' = -(g / L) sin(theta) - b theta',   g = 9.81 m/s^2
//
// The observations come from a true L and b, integrated here with plain
// doubles on a 10x finer step, plus seeded Gaussian noise; three swings start
// at different angles (small to large, so sin(theta) is far from theta). The
// parameters are x = (log L, b): log L keeps L positive.
//
// The same mean squared error is minimised twice from the same start:
//   1. gradient descent, x <- x - eta grad(x) (ad::value_and_grad);
//   2. Newton steps: H d = -grad solved by conjugate gradients whose only
//      access to H is the Hessian-vector product ad::hvp (reverse over reverse
//      through the whole integrator; H is never formed), then a backtracking
//      line search.
// At the end the fit is checked against the truth: each parameter within 4
// standard errors, the standard errors from the noise and the Hessian at the
// fit (Cov = 2 sigma^2 / N H^-1 for a mean squared error over N points). The
// program exits 1 if either method misses, so CTest notices.

#include <functional>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <autodiff/autodiff.hpp>
#include <fmt/format.h>
#include <nn/random.hpp>
#include <xtensor/xadapt.hpp>

using ad::Array;
using ad::Var;

namespace {

constexpr double gravity = 9.81;

struct Experiment {
    std::vector<double> start_angles;  // theta(0) of each swing, theta'(0) = 0
    double dt = 0.02;                  // RK4 step of the model (s)
    std::size_t steps = 300;           // RK4 steps per swing
    std::size_t every = 5;             // an observation every `every` steps
    Array<double> observed;            // (observations, swings)
};

/// theta(t) of every swing at the observation times, shape (steps / every, swings):
/// RK4 on the state (theta, omega), each a (swings,) vector, recorded op by op.
Var<double> simulate(const Var<double>& params, const Experiment& e) {
    Var<double> log_length = ad::slice(params, 0, 0, 1);  // (1,): broadcasts over the swings
    Var<double> damping = ad::slice(params, 0, 1, 2);
    Var<double> g_over_l = gravity * ad::exp(-log_length);
    auto acceleration = [&](const Var<double>& theta, const Var<double>& omega) {
        return -(g_over_l * ad::sin(theta)) - damping * omega;
    };

    Var<double> theta = ad::constant(Array<double>(xt::adapt(e.start_angles)));
    Var<double> omega = ad::constant(Array<double>(xt::zeros<double>({e.start_angles.size()})));
    const double h = e.dt;
    std::vector<Var<double>> samples;
    for (std::size_t step = 1; step <= e.steps; ++step) {
        Var<double> k1_theta = omega;
        Var<double> k1_omega = acceleration(theta, omega);
        Var<double> k2_theta = omega + (h / 2) * k1_omega;
        Var<double> k2_omega = acceleration(theta + (h / 2) * k1_theta, k2_theta);
        Var<double> k3_theta = omega + (h / 2) * k2_omega;
        Var<double> k3_omega = acceleration(theta + (h / 2) * k2_theta, k3_theta);
        Var<double> k4_theta = omega + h * k3_omega;
        Var<double> k4_omega = acceleration(theta + h * k3_theta, k4_theta);
        theta = theta + (h / 6) * (k1_theta + 2.0 * k2_theta + 2.0 * k3_theta + k4_theta);
        omega = omega + (h / 6) * (k1_omega + 2.0 * k2_omega + 2.0 * k3_omega + k4_omega);
        if (step % e.every == 0) samples.push_back(theta);
    }
    return ad::stack(samples, 0);
}

Var<double> loss(const Var<double>& params, const Experiment& e) {
    return ad::mean(ad::square(simulate(params, e) - ad::constant(e.observed)));
}

/// The truth, with plain doubles: RK4 on a step 10x finer than the model's.
Array<double> observe(double length, double damping, double noise, std::uint64_t seed, const Experiment& e) {
    std::mt19937_64 rng(seed);
    const std::size_t fine = 10;
    const double h = e.dt / double(fine);
    Array<double> out = Array<double>::from_shape({e.steps / e.every, e.start_angles.size()});
    for (std::size_t s = 0; s < e.start_angles.size(); ++s) {
        double theta = e.start_angles[s], omega = 0;
        auto acc = [&](double th, double om) { return -(gravity / length) * std::sin(th) - damping * om; };
        for (std::size_t step = 1; step <= e.steps; ++step) {
            for (std::size_t k = 0; k < fine; ++k) {
                double k1t = omega, k1o = acc(theta, omega);
                double k2t = omega + h / 2 * k1o, k2o = acc(theta + h / 2 * k1t, k2t);
                double k3t = omega + h / 2 * k2o, k3o = acc(theta + h / 2 * k2t, k3t);
                double k4t = omega + h * k3o, k4o = acc(theta + h * k3t, k4t);
                theta += h / 6 * (k1t + 2 * k2t + 2 * k3t + k4t);
                omega += h / 6 * (k1o + 2 * k2o + 2 * k3o + k4o);
            }
            if (step % e.every == 0) out(step / e.every - 1, s) = theta;
        }
    }
    for (auto& v : out) v += noise * ad::nn::normal(rng);
    return out;
}

double norm(const Array<double>& v) { return std::sqrt(xt::sum(v * v)()); }
double dot(const Array<double>& a, const Array<double>& b) { return xt::sum(a * b)(); }

void print_row(const char* method, std::size_t iteration, double value, const Array<double>& x, double grad_norm,
               const std::string& extra = "") {
    fmt::print("{} {:>4}  loss {:.6e}  L {:.6f}  b {:.6f}  |grad| {:.3e}{}\n", method, iteration, value,
               std::exp(x(0)), x(1), grad_norm, extra);
}

struct Fit {
    Array<double> x;
    std::size_t iterations = 0;
    bool converged = false;
};

Fit gradient_descent(const ad::UnaryFn<double>& f, Array<double> x, double learning_rate, std::size_t max_steps,
                     double tolerance) {
    Fit fit;
    for (std::size_t it = 1; it <= max_steps; ++it) {
        auto [value, g] = ad::value_and_grad<double>(f, x);
        double gn = norm(g);
        bool last = gn < tolerance || it == max_steps;
        // Every iteration of the first ten, then every 50th and the last.
        if (it <= 10 || it % 50 == 0 || last) print_row("gd    ", it, value(), x, gn);
        fit.iterations = it;
        if (gn < tolerance) {
            fit.converged = true;
            break;
        }
        x = x - learning_rate * g;
    }
    fit.x = x;
    return fit;
}

/// Solves H d = -g by conjugate gradients, H only through v -> H v. Stops at
/// |r| <= tolerance |g|, after n iterations (exact in exact arithmetic), or at
/// a direction of non-positive curvature (then returns the iterate so far, or
/// -g if that is the first direction: a descent direction either way).
struct CgResult {
    Array<double> d;
    std::size_t iterations = 0;
    bool negative_curvature = false;
};
CgResult conjugate_gradient(const std::function<Array<double>(const Array<double>&)>& hessian_times,
                            const Array<double>& g, double tolerance) {
    CgResult out;
    Array<double> d = xt::zeros_like(g);
    Array<double> r = -g;  // residual -g - H d at d = 0
    Array<double> p = r;
    double rr = dot(r, r);
    for (std::size_t k = 0; k < g.size(); ++k) {
        if (std::sqrt(rr) <= tolerance * norm(g)) break;
        Array<double> hp = hessian_times(p);
        double curvature = dot(p, hp);
        ++out.iterations;
        if (curvature <= 0) {
            out.negative_curvature = true;
            if (k == 0) d = -g;
            break;
        }
        double alpha = rr / curvature;
        d = d + alpha * p;
        r = r - alpha * hp;
        double rr_next = dot(r, r);
        p = r + (rr_next / rr) * p;
        rr = rr_next;
    }
    out.d = d;
    return out;
}

Fit newton_cg(const ad::UnaryFn<double>& f, Array<double> x, std::size_t max_steps, double tolerance) {
    Fit fit;
    for (std::size_t it = 1; it <= max_steps; ++it) {
        auto [value, g] = ad::value_and_grad<double>(f, x);
        double gn = norm(g);
        fit.iterations = it;
        if (gn < tolerance) {
            print_row("newton", it, value(), x, gn, "  converged");
            fit.converged = true;
            break;
        }
        auto hv = [&](const Array<double>& v) { return ad::hvp<double>(f, x, v); };
        CgResult cg = conjugate_gradient(hv, g, 1e-10);
        // Backtracking (Armijo) line search: the full Newton step near the
        // minimum, shorter steps only where the quadratic model overshoots.
        double step = 1, slope = dot(g, cg.d), trial_value = 0;
        Array<double> trial;
        for (int halvings = 0; halvings < 30; ++halvings, step /= 2) {
            trial = x + step * cg.d;
            ad::NoGrad no_grad;
            trial_value = f(ad::constant(trial)).item();
            if (trial_value <= value() + 1e-4 * step * slope) break;
        }
        print_row("newton", it, value(), x, gn,
                  fmt::format("  cg iterations {}{}  step {:g}", cg.iterations,
                              cg.negative_curvature ? " (negative curvature)" : "", step));
        x = trial;
    }
    fit.x = x;
    return fit;
}

}  // namespace

int main(int argc, char** argv) {
    std::size_t steps = 2000;
    std::uint64_t seed = 1;
    bool quick = false;
    double learning_rate = 0.03;  // 0.05 still converges here, 0.07 diverges
    CLI::App app{"Fit a damped pendulum's length and damping through an RK4 integrator: gradient descent, then Newton-CG with ad::hvp"};
    app.add_option("--steps", steps, "most gradient-descent iterations (Newton: at most 50)")
        ->check(CLI::Range(1, 10000000))->capture_default_str();
    app.add_option("--seed", seed, "seed of the observation noise")->capture_default_str();
    app.add_option("--lr", learning_rate, "gradient-descent learning rate")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_flag("--quick", quick, "a shorter recording (3 s instead of 6 s), for CTest");
    CLI11_PARSE(app, argc, argv);

    const double true_length = 1.3, true_damping = 0.15, noise = 0.02;
    Experiment e;
    e.start_angles = {0.3, 1.2, 2.4};
    e.steps = quick ? 150 : 300;
    e.observed = observe(true_length, true_damping, noise, seed, e);
    const std::size_t n = e.observed.size();
    fmt::print("pendulum: {} swings from theta(0) = 0.3, 1.2, 2.4 rad, {:g} s each, RK4 step {:g} s;\n"
               "{} observations of theta with noise sigma {:g} rad (seed {}); true L {:g} m, b {:g} 1/s\n",
               e.start_angles.size(), double(e.steps) * e.dt, e.dt, n, noise, seed, true_length, true_damping);

    ad::UnaryFn<double> f = [&e](const Var<double>& x) { return loss(x, e); };
    const Array<double> start = {std::log(1.0), 0.0};  // L = 1 m, no damping
    const double tolerance = 1e-7;                     // on |grad|

    fmt::print("\n1. gradient descent, learning rate {:g}, from L {:g} b {:g}\n", learning_rate, std::exp(start(0)),
               start(1));
    Fit gd = gradient_descent(f, start, learning_rate, steps, tolerance);
    fmt::print("\n2. Newton-CG (H v by ad::hvp), from the same start\n");
    Fit newton = newton_cg(f, start, 50, tolerance);

    // Standard errors from the noise and the Hessian at the fit (2 x 2, ad::hessian).
    Array<double> h = ad::hessian<double>(f, newton.x);
    double det = h(0, 0) * h(1, 1) - h(0, 1) * h(1, 0);
    double scale = 2 * noise * noise / double(n);
    double se_log_length = std::sqrt(scale * h(1, 1) / det), se_damping = std::sqrt(scale * h(0, 0) / det);

    fmt::print("\n{:<18} {:>10} {:>10} {:>11}\n", "", "L (m)", "b (1/s)", "iterations");
    fmt::print("{:<18} {:>10.5f} {:>10.5f}\n", "true", true_length, true_damping);
    fmt::print("{:<18} {:>10.5f} {:>10.5f} {:>11}{}\n", "gradient descent", std::exp(gd.x(0)), gd.x(1), gd.iterations,
               gd.converged ? "" : " (not converged)");
    fmt::print("{:<18} {:>10.5f} {:>10.5f} {:>11}{}\n", "Newton-CG", std::exp(newton.x(0)), newton.x(1),
               newton.iterations, newton.converged ? "" : " (not converged)");
    fmt::print("{:<18} {:>10.5f} {:>10.5f}\n", "standard error", true_length * se_log_length, se_damping);

    bool ok = gd.converged && newton.converged;
    for (const Fit* fit : {&gd, &newton}) {
        ok = ok && std::abs(fit->x(0) - std::log(true_length)) <= 4 * se_log_length &&
             std::abs(fit->x(1) - true_damping) <= 4 * se_damping;
    }
    fmt::print("tolerance: both methods converged and within 4 standard errors of the truth: {}\n",
               ok ? "yes" : "NO");
    return ok ? 0 : 1;
}
