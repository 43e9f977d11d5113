// The engine in a dozen lines: record a small computation, walk it back, and
// check the tape's gradient against finite differences.

#include <autodiff/autodiff.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <xtensor/xio.hpp>

int main() {
    ad::Tape tape;  // records everything computed on this thread while it lives
    auto W = ad::param(xt::xarray<double>{{0.1, 0.2}, {0.3, 0.4}});
    auto x = ad::constant(xt::xarray<double>{1.0, 2.0});
    auto loss = ad::sum(ad::sigmoid(ad::matmul(W, x)));
    loss.backward();

    fmt::print("loss  = {:.6f}\n", loss.item());
    fmt::print("dL/dW = [{}]\n", fmt::join(W.grad(), ", "));
    fmt::print("tape: {} records, {} bytes\n", tape.size(), tape.bytes());

    auto check = ad::gradcheck(
        [](const std::vector<ad::Var<double>>& in) {
            auto x = ad::constant(xt::xarray<double>{1.0, 2.0});
            return ad::sum(ad::sigmoid(ad::matmul(in[0], x)));
        },
        {W.value()});
    fmt::print("{}\n", check.message);
    return check.ok ? 0 : 1;
}
