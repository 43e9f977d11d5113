// The transforms of autodiff/functional.hpp on two small functions: the
// README's examples, built so they stay true.

#include <autodiff/autodiff.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

int main() {
    auto f = [](const ad::Var<double>& x) { return ad::sum(ad::sigmoid(x) * x); };
    xt::xarray<double> x = {0.5, -1.0, 2.0}, v = {1.0, 0.0, 0.0};

    auto [value, g] = ad::value_and_grad<double>(f, x);
    auto H = ad::hessian<double>(f, x);
    auto Hv = ad::hvp<double>(f, x, v);
    fmt::print("f(x) = {:.6f}\ngrad = [{:.6f}]\nH v  = [{:.6f}]\nH[:, 0] = [{:.6f}, {:.6f}, {:.6f}]\n", value(),
               fmt::join(g, ", "), fmt::join(Hv, ", "), H(0, 0), H(1, 0), H(2, 0));

    auto net = [](const ad::Var<double>& x) { return ad::tanh(x * 2.0); };
    auto J1 = ad::jacrev<double>(net, x);
    auto J2 = ad::jacfwd<double>(net, x);
    auto out = ad::vjp<double>(net, x, v);
    auto tangent = ad::jvp<double>(net, x, v);
    fmt::print("jacrev == jacfwd: {}\nv^T J = [{:.6f}]\nJ v   = [{:.6f}]\n", xt::allclose(J1, J2),
               fmt::join(out.grad, ", "), fmt::join(tangent.grad, ", "));
    return xt::allclose(J1, J2) ? 0 : 1;
}
