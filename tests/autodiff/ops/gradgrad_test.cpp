// Every op passes gradgradcheck: its VJP, written with engine ops, is itself
// differentiated correctly (double backward). One line per op.

#include "support/test_support.hpp"

#include "autodiff/ops/recurrent.hpp"

#include <cmath>
#include <random>

namespace {

using ad::Array;
using ad::Shape;
using ad::test::Vars;

enum class Domain { any, positive, away_from_zero };

struct OpCase {
    const char* name;
    ad::Function f;
    std::vector<Shape> shapes;
    Domain domain = Domain::any;
};

std::vector<Array<double>> inputs_for(const OpCase& c, std::uint64_t seed) {
    std::vector<Array<double>> xs;
    for (const auto& s : c.shapes) {
        ++seed;
        switch (c.domain) {
            case Domain::any: xs.push_back(ad::test::uniform(s, seed)); break;
            case Domain::positive: xs.push_back(ad::test::uniform(s, seed, 0.5, 2.0)); break;
            case Domain::away_from_zero: xs.push_back(ad::test::away_from_zero(s, seed, 0.2)); break;
        }
    }
    return xs;
}

const std::vector<OpCase>& op_cases() {
    static const std::vector<OpCase> cases = {
        {"add", [](const Vars& x) { return x[0] + x[1]; }, {{2, 3}, {3}}},
        {"sub", [](const Vars& x) { return x[0] - x[1]; }, {{2, 1}, {3}}},
        {"mul", [](const Vars& x) { return x[0] * x[1]; }, {{2, 3}, {2, 1}}},
        {"div", [](const Vars& x) { return x[0] / x[1]; }, {{2, 3}, {3}}, Domain::positive},
        {"pow", [](const Vars& x) { return ad::pow(x[0], x[1]); }, {{2, 3}, {3}}, Domain::positive},
        {"pow scalar", [](const Vars& x) { return ad::pow(x[0], 2.5); }, {{2, 3}}, Domain::positive},
        {"affine", [](const Vars& x) { return ad::affine(x[0], -1.5, 2.0) * x[0]; }, {{4}}},
        {"neg", [](const Vars& x) { return -x[0] * x[0]; }, {{4}}},
        {"exp", [](const Vars& x) { return ad::exp(x[0]); }, {{2, 3}}},
        {"log", [](const Vars& x) { return ad::log(x[0]); }, {{2, 3}}, Domain::positive},
        {"sqrt", [](const Vars& x) { return ad::sqrt(x[0]); }, {{2, 3}}, Domain::positive},
        {"square", [](const Vars& x) { return ad::square(x[0]); }, {{2, 3}}},
        {"abs", [](const Vars& x) { return ad::abs(x[0]) * x[0]; }, {{2, 3}}, Domain::away_from_zero},
        {"sigmoid", [](const Vars& x) { return ad::sigmoid(x[0]); }, {{2, 3}}},
        {"sigmoid_backward", [](const Vars& x) { return ad::sigmoid_backward(x[0], ad::sigmoid(x[1])); }, {{2, 3}, {2, 3}}},
        {"tanh", [](const Vars& x) { return ad::tanh(x[0]); }, {{2, 3}}},
        {"relu", [](const Vars& x) { return ad::relu(x[0]) * x[0]; }, {{2, 3}}, Domain::away_from_zero},
        {"softplus", [](const Vars& x) { return ad::softplus(x[0]); }, {{2, 3}}},
        {"clamp", [](const Vars& x) { return ad::clamp(x[0], -0.5, 0.5) * x[0]; }, {{2, 3}}, Domain::away_from_zero},
        {"sum", [](const Vars& x) { return ad::square(ad::sum(x[0])); }, {{2, 3}}},
        {"sum axis", [](const Vars& x) { return ad::square(ad::sum(x[0], 1, true)); }, {{2, 3}}},
        {"mean", [](const Vars& x) { return ad::square(ad::mean(x[0], 0)); }, {{2, 3}}},
        {"max", [](const Vars& x) { return ad::square(ad::max(x[0])); }, {{2, 3}}},
        {"max axis", [](const Vars& x) { return ad::square(ad::max(x[0], -1)); }, {{2, 3}}},
        {"sum_to_shape", [](const Vars& x) { return ad::square(ad::sum_to_shape(x[0], {1, 3})); }, {{2, 3}}},
        {"reshape", [](const Vars& x) { return ad::square(ad::reshape(x[0], {3, -1})); }, {{2, 3}}},
        {"transpose", [](const Vars& x) { return ad::square(ad::transpose(x[0], {2, 0, 1})); }, {{2, 3, 2}}},
        {"broadcast_to", [](const Vars& x) { return ad::square(ad::broadcast_to(x[0], {2, 3})); }, {{3}}},
        {"slice", [](const Vars& x) { return ad::square(ad::slice(x[0], 1, 1, 3)); }, {{2, 3}}},
        {"rows", [](const Vars& x) { return ad::square(ad::rows(x[0], 1, 3)); }, {{3, 2}}},
        {"pad", [](const Vars& x) { return ad::square(ad::pad(x[0], 0, 1, 4)); }, {{2, 3}}},
        {"take_rows", [](const Vars& x) { return ad::square(ad::take_rows(x[0], {2, 0, 2})); }, {{3, 2}}},
        {"scatter_add_rows", [](const Vars& x) { return ad::square(ad::scatter_add_rows(x[0], {1, 1}, 3)); }, {{2, 2}}},
        {"concatenate", [](const Vars& x) { return ad::square(ad::concatenate({x[0], x[1]}, 1)); }, {{2, 3}, {2, 1}}},
        {"stack", [](const Vars& x) { return ad::square(ad::stack({x[0], x[1]}, 1)); }, {{2, 3}, {2, 3}}},
        {"matmul", [](const Vars& x) { return ad::tanh(ad::matmul(x[0], x[1])); }, {{2, 3}, {3, 2}}},
        {"matmul vector", [](const Vars& x) { return ad::tanh(ad::matmul(x[0], x[1])); }, {{2, 3}, {3}}},
        {"matmul transposed", [](const Vars& x) { return ad::tanh(ad::matmul(x[0], x[1], true, true)); }, {{3, 2}, {4, 3}}},
        {"linear", [](const Vars& x) { return ad::tanh(ad::linear(x[0], x[1], x[2])); }, {{3, 2}, {4, 2}, {4}}},
        {"linear_sigmoid", [](const Vars& x) { return ad::linear_sigmoid(x[0], x[1], x[2]); }, {{3, 2}, {4, 2}, {4}}},
        {"linear_sigmoid one output", [](const Vars& x) { return ad::linear_sigmoid(x[0], x[1], x[2]); }, {{3, 2}, {1, 2}, {1}}},
        {"softmax", [](const Vars& x) { return ad::softmax(x[0], 0); }, {{3, 2}}},
        {"log_softmax", [](const Vars& x) { return ad::log_softmax(x[0], 1); }, {{3, 2}}},
        {"softmax_cross_entropy", [](const Vars& x) { return ad::softmax_cross_entropy(x[0], ad::softmax(x[1])); }, {{3, 4}, {3, 4}}},
        {"softmax_cross_entropy classes", [](const Vars& x) { return ad::softmax_cross_entropy(x[0], {2, 0, 1}); }, {{3, 4}}},
        {"half_sse", [](const Vars& x) { return ad::half_sse(ad::tanh(x[0]), x[1]); }, {{3, 2}, {3, 2}}},
        {"mse", [](const Vars& x) { return ad::mse(ad::tanh(x[0]), x[1]); }, {{3, 2}, {3, 2}}},
        {"binary_cross_entropy", [](const Vars& x) { return ad::binary_cross_entropy(ad::sigmoid(x[0]), ad::sigmoid(x[1])); }, {{3, 2}, {3, 2}}},

        // elementwise math and masks
        //
        {"sin", [](const Vars& x) { return ad::sin(x[0]); }, {{2, 3}}},
        {"cos", [](const Vars& x) { return ad::cos(x[0]); }, {{2, 3}}},
        {"tan", [](const Vars& x) { return ad::tan(x[0]); }, {{2, 3}}},
        {"asin", [](const Vars& x) { return ad::asin(x[0] * 0.8); }, {{2, 3}}},
        {"acos", [](const Vars& x) { return ad::acos(x[0] * 0.8); }, {{2, 3}}},
        {"atan", [](const Vars& x) { return ad::atan(x[0]); }, {{2, 3}}},
        {"sinh", [](const Vars& x) { return ad::sinh(x[0]); }, {{2, 3}}},
        {"cosh", [](const Vars& x) { return ad::cosh(x[0]); }, {{2, 3}}},
        {"log1p", [](const Vars& x) { return ad::log1p(x[0]); }, {{2, 3}}, Domain::positive},
        {"expm1", [](const Vars& x) { return ad::expm1(x[0]); }, {{2, 3}}},
        {"erf", [](const Vars& x) { return ad::erf(x[0]); }, {{2, 3}}},
        {"reciprocal", [](const Vars& x) { return ad::reciprocal(x[0]); }, {{2, 3}}, Domain::positive},
        {"rsqrt", [](const Vars& x) { return ad::rsqrt(x[0]); }, {{2, 3}}, Domain::positive},
        {"sign floor ceil round", [](const Vars& x) { return (ad::sign(x[0]) + ad::floor(x[0]) + ad::ceil(x[0]) + ad::round(x[0])) * x[0]; }, {{2, 3}}, Domain::away_from_zero},
        {"maximum", [](const Vars& x) { return ad::maximum(x[0], x[1]) * x[0]; }, {{2, 3}, {3}}},
        {"minimum", [](const Vars& x) { return ad::minimum(x[0], x[1]) * x[1]; }, {{2, 3}, {2, 1}}},
        {"where", [](const Vars& x) { return ad::where(ad::Mask{{true, false, true}}, x[0], x[1]) * x[0]; }, {{2, 3}, {2, 1}}},

        // activations
        //
        {"leaky_relu", [](const Vars& x) { return ad::leaky_relu(x[0], 0.2) * x[0]; }, {{2, 3}}, Domain::away_from_zero},
        {"elu", [](const Vars& x) { return ad::elu(x[0], 0.7); }, {{2, 3}}, Domain::away_from_zero},
        {"gelu", [](const Vars& x) { return ad::gelu(x[0]); }, {{2, 3}}},
        {"gelu tanh", [](const Vars& x) { return ad::gelu(x[0], ad::GeluApproximation::tanh); }, {{2, 3}}},
        {"silu", [](const Vars& x) { return ad::silu(x[0]); }, {{2, 3}}},
        {"softsign", [](const Vars& x) { return ad::softsign(x[0]); }, {{2, 3}}, Domain::away_from_zero},
        {"log_sigmoid", [](const Vars& x) { return ad::log_sigmoid(x[0]); }, {{2, 3}}},
        {"mish", [](const Vars& x) { return ad::mish(x[0]); }, {{2, 3}}},
        {"hardtanh", [](const Vars& x) { return ad::hardtanh(x[0], -0.5, 0.5) * x[0]; }, {{2, 3}}, Domain::away_from_zero},

        // reductions
        //
        {"min", [](const Vars& x) { return ad::square(ad::min(x[0])); }, {{2, 3}}},
        {"min axis", [](const Vars& x) { return ad::square(ad::min(x[0], 0, true)); }, {{2, 3}}},
        {"prod", [](const Vars& x) { return ad::prod(x[0]); }, {{2, 3}}, Domain::positive},
        {"prod axis", [](const Vars& x) { return ad::prod(x[0], -1); }, {{2, 3}}},
        {"logsumexp", [](const Vars& x) { return ad::logsumexp(x[0]); }, {{2, 3}}},
        {"logsumexp axis", [](const Vars& x) { return ad::logsumexp(x[0], 1, true); }, {{2, 3}}},
        {"var", [](const Vars& x) { return ad::var(x[0]); }, {{2, 3}}},
        {"var axis", [](const Vars& x) { return ad::var(x[0], 0, 0); }, {{3, 2}}},
        {"std", [](const Vars& x) { return ad::std(x[0], 1); }, {{2, 3}}},
        {"norm 2", [](const Vars& x) { return ad::norm(x[0]); }, {{2, 3}}},
        {"norm 1 axis", [](const Vars& x) { return ad::norm(x[0], 1, 1) * ad::sum(x[0]); }, {{2, 3}}, Domain::away_from_zero},
        {"norm inf", [](const Vars& x) { return ad::square(ad::norm(x[0], INFINITY)); }, {{2, 3}}},
        {"cumsum", [](const Vars& x) { return ad::square(ad::cumsum(x[0], -1)); }, {{2, 3}}},

        // shape and indexing
        //
        {"gather", [](const Vars& x) { return ad::square(ad::gather(x[0], -1, ad::IndexArray{{2, 2, 0}, {1, 0, 1}})); }, {{3, 3}}},
        {"scatter_add", [](const Vars& x) { return ad::square(ad::scatter_add({2, 3}, 0, ad::IndexArray{{1, 1}, {1, 0}}, x[0])); }, {{2, 2}}},
        {"index_select", [](const Vars& x) { return ad::square(ad::index_select(x[0], 1, ad::IndexArray{2, 0, 2})); }, {{2, 3}}},
        {"index_select vector", [](const Vars& x) { return ad::square(ad::index_select(x[0], -2, std::vector<std::size_t>{1, 1, 0})); }, {{2, 3}}},
        {"index_add", [](const Vars& x) { return ad::square(ad::index_add({3, 2}, 0, ad::IndexArray{2, 0, 2}, x[0])); }, {{3, 2}}},
        {"embedding", [](const Vars& x) { return ad::square(ad::embedding(x[0], ad::IndexArray{{3, 0}, {3, 1}})); }, {{4, 2}}},
        {"flip", [](const Vars& x) { return ad::square(ad::flip(x[0], {0, -1})) * x[0]; }, {{2, 3}}},
        {"repeat", [](const Vars& x) { return ad::square(ad::repeat(x[0], {2, 1, 3})); }, {{2, 2}}},
        {"tile", [](const Vars& x) { return ad::square(ad::tile(x[0], {2})); }, {{2, 3}}},
        {"squeeze", [](const Vars& x) { return ad::square(ad::squeeze(x[0])); }, {{1, 3, 1}}},
        {"squeeze axis", [](const Vars& x) { return ad::square(ad::squeeze(x[0], -1)); }, {{3, 1}}},
        {"unsqueeze", [](const Vars& x) { return ad::square(ad::unsqueeze(x[0], -2)); }, {{2, 3}}},
        {"permute", [](const Vars& x) { return ad::square(ad::permute(x[0], {-1, 0, 1})); }, {{2, 3, 2}}},
        {"split", [](const Vars& x) { auto p = ad::split(x[0], 2, 1); return ad::square(p[0]) * ad::sum(p[1]); }, {{2, 3}}},
        {"split sizes", [](const Vars& x) { auto p = ad::split(x[0], std::vector<std::size_t>{1, 2}, 0); return ad::square(p[1]) * ad::sum(ad::square(p[0])); }, {{3, 2}}},
        {"chunk", [](const Vars& x) { auto p = ad::chunk(x[0], 2, -1); return ad::square(p[0]) * ad::sum(p[1]); }, {{2, 4}}},

        // matmul, outer, dot, trace
        //
        {"matmul batched", [](const Vars& x) { return ad::tanh(ad::matmul(x[0], x[1])); }, {{2, 1, 2, 3}, {3, 3, 2}}},
        {"matmul batched single matrix", [](const Vars& x) { return ad::tanh(ad::matmul(x[0], x[1])); }, {{2, 2, 3}, {3, 2}}},
        {"matmul batched transposed", [](const Vars& x) { return ad::tanh(ad::matmul(x[0], x[1], true, true)); }, {{2, 3, 2}, {1, 4, 3}}},
        {"matmul batched vector", [](const Vars& x) { return ad::tanh(ad::matmul(x[0], x[1])); }, {{3}, {2, 3, 2}}},
        {"outer", [](const Vars& x) { return ad::tanh(ad::outer(x[0], x[1])); }, {{3}, {2}}},
        {"dot", [](const Vars& x) { return ad::tanh(ad::dot(x[0], x[1])); }, {{3}, {3}}},
        {"trace", [](const Vars& x) { return ad::square(ad::trace(x[0])); }, {{2, 3}}},

        // decompositions
        //
        {"solve", [](const Vars& x) { return ad::solve(x[0] + ad::constant(ad::Array<double>(3.0 * xt::eye(3))), x[1]); }, {{3, 3}, {3, 2}}},
        {"solve vector", [](const Vars& x) { return ad::solve(x[0] + ad::constant(ad::Array<double>(3.0 * xt::eye(3))), x[1]); }, {{3, 3}, {3}}},
        {"solve_triangular", [](const Vars& x) { return ad::solve_triangular(x[0] + ad::constant(ad::Array<double>(3.0 * xt::eye(3))), x[1], false); }, {{3, 3}, {3, 2}}},
        {"solve_triangular upper unit", [](const Vars& x) { return ad::solve_triangular(x[0], x[1], true, true); }, {{3, 3}, {3}}},
        {"cholesky", [](const Vars& x) { return ad::cholesky(ad::matmul(x[0], x[0], false, true) + ad::constant(ad::Array<double>(3.0 * xt::eye(3)))); }, {{3, 3}}},
        {"inv", [](const Vars& x) { return ad::inv(x[0] + ad::constant(ad::Array<double>(3.0 * xt::eye(3)))); }, {{3, 3}}},
        {"det", [](const Vars& x) { return ad::det(x[0] + ad::constant(ad::Array<double>(3.0 * xt::eye(3)))); }, {{3, 3}}},
        {"logabsdet", [](const Vars& x) { return ad::logabsdet(x[0] + ad::constant(ad::Array<double>(3.0 * xt::eye(3)))); }, {{3, 3}}},

        // convolution and pooling
        //
        {"conv2d", [](const Vars& x) { return ad::conv2d(x[0], x[1], x[2], {2, 1}, {1, 0}, {1, 2}, 2); },
         {{2, 4, 5, 6}, {4, 2, 2, 3}, {4}}},
        {"conv2d 1x1", [](const Vars& x) { return ad::conv2d(x[0], x[1]); }, {{2, 3, 2, 3}, {2, 3, 1, 1}}},
        {"conv1d", [](const Vars& x) { return ad::conv1d(x[0], x[1], x[2], 2, 1, 1, 1); }, {{2, 2, 7}, {3, 2, 3}, {3}}},
        {"max_pool2d", [](const Vars& x) { return ad::square(ad::max_pool2d(x[0], 3, 2, 1)); }, {{2, 2, 5, 6}}},
        {"avg_pool2d", [](const Vars& x) { return ad::square(ad::avg_pool2d(x[0], {3, 2}, {2, 1}, {1, 0})); },
         {{2, 2, 5, 6}}},
        {"avg_pool2d exclude pad", [](const Vars& x) { return ad::square(ad::avg_pool2d(x[0], 3, 2, 1, false)); },
         {{1, 2, 5, 5}}},

        // normalization, dropout and losses
        //
        {"layer_norm", [](const Vars& x) { return ad::layer_norm(x[0], {3}, x[1], x[2]); }, {{2, 3}, {3}, {3}}},
        {"layer_norm no affine", [](const Vars& x) { return ad::layer_norm(x[0], {2, 2}); }, {{2, 2, 2}}},
        {"gru_cell_gates", [](const Vars& x) { return ad::gru_cell_gates(x[0], x[1], x[2]); }, {{2, 6}, {2, 6}, {2, 2}}},
        {"batch_norm", [](const Vars& x) { return ad::batch_norm<double>(x[0], x[1], x[2], nullptr, true); }, {{3, 2, 2}, {2}, {2}}},
        {"dropout", [](const Vars& x) { std::mt19937_64 rng(5); return ad::square(ad::dropout(x[0], 0.5, true, rng)); }, {{2, 3}}},
        {"huber_loss", [](const Vars& x) { return ad::huber_loss(ad::tanh(x[0]), x[1], 0.5); }, {{3, 2}, {3, 2}}},
        {"l1_loss", [](const Vars& x) { return ad::l1_loss(ad::tanh(x[0]), x[1]) * ad::sum(x[0]); }, {{3, 2}, {3, 2}}},
        {"nll_loss", [](const Vars& x) { return ad::nll_loss(ad::log_softmax(x[0], 1), ad::IndexArray{2, 0, 1}); }, {{3, 4}}},
        {"cross_entropy smoothing", [](const Vars& x) { return ad::cross_entropy(x[0], ad::IndexArray{2, 0, 1}, ad::Reduction::mean, 0.2); }, {{3, 4}}},
    };
    return cases;
}

}  // namespace

TEST_CASE("every op passes gradgradcheck") {
    for (const auto& c : op_cases()) {
        for (std::uint64_t seed : {100u, 200u}) {
            auto result = ad::gradgradcheck(c.f, inputs_for(c, seed));
            INFO(c.name, " (seed ", seed, "): ", result.message);
            CHECK(result.ok);
        }
    }
}
