#include "support/test_support.hpp"

#include "autodiff/ops/recurrent.hpp"

#include <array>
#include <random>

#include <fmt/format.h>

using ad::Array;
using ad::Shape;
using ad::Var;
using ad::test::Vars;

namespace {

/// The GRU cell's gate arithmetic composed of engine ops: the definition the fused op is held to.
Var<double> composed_gru_gates(const Var<double>& gi, const Var<double>& gh, const Var<double>& h) {
    std::vector<Var<double>> a = ad::chunk(gi, 3, 1), b = ad::chunk(gh, 3, 1);
    Var<double> r = ad::sigmoid(a[0] + b[0]);
    Var<double> z = ad::sigmoid(a[1] + b[1]);
    Var<double> n = ad::tanh(a[2] + r * b[2]);
    return n + z * (h - n);
}

struct CellInputs {
    Array<double> gi, gh, h;
};

/// Inputs of an (N, H) cell, pre-activations spread over [-3, 3] to reach the gates' curved parts.
CellInputs cell_inputs(std::size_t n, std::size_t h, std::uint64_t seed) {
    return {ad::test::uniform({n, 3 * h}, seed, -3, 3), ad::test::uniform({n, 3 * h}, seed + 1, -3, 3),
            ad::test::uniform({n, h}, seed + 2)};
}

/// The cotangents of every input for the output cotangent `seed`, through f, by a plain
/// sweep or a recording one (create_graph).
std::vector<Array<double>> input_cotangents(const ad::Function& f, const std::vector<Array<double>>& inputs,
                                            const Array<double>& seed, bool create_graph) {
    ad::Tape tape;
    Vars xs;
    for (const auto& a : inputs) xs.push_back(ad::param(a));
    Var<double> y = f(xs);
    std::vector<Var<double>> g = ad::grad(y, xs, ad::constant(seed), {.create_graph = create_graph});
    std::vector<Array<double>> out;
    for (const auto& v : g) out.push_back(v.value());
    return out;
}

/// For every non-empty subset of the inputs wanting a gradient (the others constants): the
/// cotangents of two sweeps over one retained graph against `expected`.
void check_every_subset(const ad::Function& f, const std::vector<Array<double>>& inputs, const Array<double>& out_seed,
                        const std::vector<Array<double>>& expected) {
    for (std::size_t mask = 1; mask < (std::size_t(1) << inputs.size()); ++mask) {
        INFO("inputs wanting a gradient: mask ", mask);
        ad::Tape tape;
        Vars vars, wanted;
        std::vector<std::size_t> which;
        for (std::size_t i = 0; i < inputs.size(); ++i) {
            const bool wants = mask & (std::size_t(1) << i);
            vars.push_back(wants ? ad::param(inputs[i]) : ad::constant(inputs[i]));
            if (wants) {
                wanted.push_back(vars.back());
                which.push_back(i);
            }
        }
        Var<double> y = f(vars);
        for (int sweep = 0; sweep < 2; ++sweep) {
            auto g = ad::grad(y, wanted, ad::constant(out_seed), {.retain_graph = true});
            for (std::size_t k = 0; k < which.size(); ++k) CHECK(ad::test::matches(g[k].value(), expected[which[k]]));
        }
    }
}

/// The cotangents of (gi, gh, h) through `cell`.
template <class Cell>
std::vector<Array<double>> cotangents(Cell cell, const CellInputs& in, const Array<double>& seed, bool create_graph) {
    return input_cotangents([cell](const Vars& v) { return cell(v[0], v[1], v[2]); }, {in.gi, in.gh, in.h}, seed,
                            create_graph);
}

/// A GRU layer's recurrence composed of engine ops, for gi (T N, 3H), h0 (N, H), w (3H, H), b (3H) or empty.
Var<double> composed_gru_sequence(const Var<double>& gi, const Var<double>& h0, const Var<double>& w,
                                  const Var<double>& b) {
    const std::size_t n = h0.value().shape()[0], steps = gi.value().shape()[0] / n;
    Var<double> h = h0;
    std::vector<Var<double>> states;
    for (std::size_t t = 0; t < steps; ++t) {
        Var<double> gh = b.defined() ? ad::linear(h, w, b) : ad::matmul(h, w, false, true);
        h = composed_gru_gates(ad::rows(gi, t * n, (t + 1) * n), gh, h);
        states.push_back(h);
    }
    return ad::concatenate(states, 0);
}

/// Inputs of gru_sequence: gi, h0, w_hh and, with `bias`, b_hh.
std::vector<Array<double>> sequence_inputs(std::size_t steps, std::size_t n, std::size_t h, bool bias,
                                           std::uint64_t seed) {
    std::vector<Array<double>> in{ad::test::uniform({steps * n, 3 * h}, seed, -2, 2), ad::test::uniform({n, h}, seed + 1),
                                  ad::test::uniform({3 * h, h}, seed + 2, -1.5, 1.5)};
    if (bias) in.push_back(ad::test::uniform({3 * h}, seed + 3));
    return in;
}

Var<double> fused_sequence(const Vars& v) { return ad::gru_sequence(v[0], v[1], v[2], v.size() > 3 ? v[3] : Var<double>()); }
Var<double> composed_sequence(const Vars& v) {
    return composed_gru_sequence(v[0], v[1], v[2], v.size() > 3 ? v[3] : Var<double>());
}

}  // namespace

TEST_CASE("gru_cell_gates: result and every VJP match the composed ops, on random shapes with N = 0, 1 and H = 1") {
    std::mt19937_64 rng(31);
    std::vector<std::pair<std::size_t, std::size_t>> shapes{{0, 3}, {1, 1}, {1, 5}, {4, 1}, {0, 1}};
    for (int k = 0; k < 6; ++k) shapes.emplace_back(1 + rng() % 6, 1 + rng() % 9);
    std::uint64_t seed = 100;
    for (const auto& shape : shapes) {
        const std::size_t n = shape.first, h = shape.second;
        INFO("N = ", n, ", H = ", h);
        const CellInputs in = cell_inputs(n, h, seed += 10);
        const Array<double> out_seed = ad::test::uniform({n, h}, seed + 5);
        Var<double> fused = ad::gru_cell_gates(ad::constant(in.gi), ad::constant(in.gh), ad::constant(in.h));
        Var<double> reference = composed_gru_gates(ad::constant(in.gi), ad::constant(in.gh), ad::constant(in.h));
        CHECK(ad::test::matches(fused.value(), reference.value()));
        const auto expected = cotangents(composed_gru_gates, in, out_seed, false);
        const auto plain = cotangents(ad::gru_cell_gates<double>, in, out_seed, false);
        const auto recorded = cotangents(ad::gru_cell_gates<double>, in, out_seed, true);
        for (std::size_t i = 0; i < 3; ++i) {
            INFO("input ", i);
            CHECK(ad::test::matches(plain[i], expected[i]));
            CHECK(ad::test::matches(recorded[i], expected[i]));
        }
    }
}

TEST_CASE("gru_cell_gates: gradcheck and gradgradcheck") {
    for (const auto& shape : std::vector<std::pair<std::size_t, std::size_t>>{{1, 1}, {3, 1}, {2, 3}, {1, 4}, {0, 2}}) {
        const std::size_t n = shape.first, h = shape.second;
        INFO("N = ", n, ", H = ", h);
        const CellInputs in = cell_inputs(n, h, 40 + 3 * n + h);
        const std::vector<Array<double>> inputs{in.gi, in.gh, in.h};
        auto f = [](const Vars& v) { return ad::gru_cell_gates(v[0], v[1], v[2]); };
        CHECK_GRADCHECK(f, inputs);
        CHECK_GRADGRADCHECK(f, inputs);
    }
}

TEST_CASE("gru_cell_gates: any subset of the inputs may want a gradient; a retained graph gives the same again") {
    const CellInputs in = cell_inputs(3, 4, 70);
    const Array<double> out_seed = ad::test::uniform({3, 4}, 75);
    check_every_subset([](const Vars& v) { return ad::gru_cell_gates(v[0], v[1], v[2]); }, {in.gi, in.gh, in.h},
                       out_seed, cotangents(composed_gru_gates, in, out_seed, false));
}

TEST_CASE("gru_cell_gates: float agrees with double") {
    const CellInputs in = cell_inputs(5, 7, 90);
    const Array<double> out_seed = ad::test::uniform({5, 7}, 95);
    ad::Tape tape;
    auto pf = [](const Array<double>& a) { return ad::param(Array<float>(xt::cast<float>(a))); };
    Var<float> gi = pf(in.gi), gh = pf(in.gh), h = pf(in.h);
    Var<float> y = ad::gru_cell_gates(gi, gh, h);
    auto g = ad::grad(y, {gi, gh, h}, ad::constant(Array<float>(xt::cast<float>(out_seed))));
    const auto expected = cotangents(ad::gru_cell_gates<double>, in, out_seed, false);
    Var<double> reference = ad::gru_cell_gates(ad::constant(in.gi), ad::constant(in.gh), ad::constant(in.h));
    CHECK(ad::test::float_matches_double(y.value(), reference.value()));
    ad::test::check_float_matches_double({g[0].value(), g[1].value(), g[2].value()}, expected);
}

TEST_CASE("gru_cell_gates: bad shapes are shape errors naming the op and the shapes; the tape is unchanged") {
    ad::Tape tape;
    auto gi = ad::param(Array<double>::from_shape({2, 6}));
    auto gh = ad::param(Array<double>::from_shape({2, 6}));
    auto h = ad::param(Array<double>::from_shape({2, 2}));
    const std::size_t before = tape.size();
    CHECK_THROWS_WITH_AS(ad::gru_cell_gates(gi, gh, ad::param(Array<double>::from_shape({2, 3}))),
                         "gru_cell_gates: gi (2, 6), gh (2, 6) and h (2, 3) do not fit (N, 3H), (N, 3H), (N, H)",
                         ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::gru_cell_gates(gi, ad::param(Array<double>::from_shape({3, 6})), h),
                         "gru_cell_gates: gi (2, 6), gh (3, 6) and h (2, 2) do not fit (N, 3H), (N, 3H), (N, H)",
                         ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::gru_cell_gates(ad::param(Array<double>::from_shape({6})), gh, h),
                         "gru_cell_gates: gi (6,), gh (2, 6) and h (2, 2) do not fit (N, 3H), (N, 3H), (N, H)",
                         ad::shape_error);
    CHECK_THROWS_AS(ad::gru_cell_gates(gi, gh, Var<double>()), ad::tape_error);
    CHECK(tape.size() == before);
}

TEST_CASE("gru_sequence: states and every VJP match the composed cell steps, with and without b_hh") {
    const std::vector<std::array<std::size_t, 3>> shapes{{1, 1, 1}, {3, 1, 2}, {1, 4, 3}, {5, 2, 1}, {4, 3, 5}, {2, 0, 2}};
    std::uint64_t seed = 300;
    for (const auto& shape : shapes) {
        const std::size_t steps = shape[0], n = shape[1], h = shape[2];
        for (bool bias : {true, false}) {
            INFO("T = ", steps, ", N = ", n, ", H = ", h, ", bias ", bias);
            const auto in = sequence_inputs(steps, n, h, bias, seed += 10);
            const Array<double> out_seed = ad::test::uniform({steps * n, h}, seed + 7);
            Vars constants;
            for (const auto& a : in) constants.push_back(ad::constant(a));
            Var<double> fused = fused_sequence(constants);
            REQUIRE(fused.shape() == Shape{steps * n, h});
            if (n == 0) continue;  // no steps to compose
            CHECK(ad::test::matches(fused.value(), composed_sequence(constants).value()));
            const auto expected = input_cotangents(composed_sequence, in, out_seed, false);
            const auto plain = input_cotangents(fused_sequence, in, out_seed, false);
            const auto recorded = input_cotangents(fused_sequence, in, out_seed, true);
            for (std::size_t i = 0; i < in.size(); ++i) {
                INFO("input ", i);
                CHECK(ad::test::matches(plain[i], expected[i]));
                CHECK(ad::test::matches(recorded[i], expected[i]));
            }
        }
    }
}

TEST_CASE("gru_sequence: gradcheck and gradgradcheck") {
    for (const auto& shape : std::vector<std::array<std::size_t, 3>>{{1, 1, 1}, {3, 2, 1}, {2, 1, 3}, {3, 2, 2}}) {
        const std::size_t steps = shape[0], n = shape[1], h = shape[2];
        for (bool bias : {true, false}) {
            INFO("T = ", steps, ", N = ", n, ", H = ", h, ", bias ", bias);
            const auto in = sequence_inputs(steps, n, h, bias, 500 + 7 * steps + n + h);
            CHECK_GRADCHECK(fused_sequence, in);
            CHECK_GRADGRADCHECK(fused_sequence, in);
        }
    }
}

TEST_CASE("gru_sequence: any subset of the inputs may want a gradient; a retained graph gives the same again") {
    const auto in = sequence_inputs(4, 2, 3, true, 600);
    const Array<double> out_seed = ad::test::uniform({8, 3}, 610);
    check_every_subset(fused_sequence, in, out_seed, input_cotangents(composed_sequence, in, out_seed, false));
}

TEST_CASE("gru_sequence: bad shapes are shape errors naming the op and the shapes; the tape is unchanged") {
    ad::Tape tape;
    auto gi = ad::param(Array<double>::from_shape({6, 6}));
    auto h0 = ad::param(Array<double>::from_shape({2, 2}));
    auto w = ad::param(Array<double>::from_shape({6, 2}));
    auto b = ad::param(Array<double>::from_shape({6}));
    const std::size_t before = tape.size();
    CHECK_THROWS_WITH_AS(ad::gru_sequence(ad::param(Array<double>::from_shape({5, 6})), h0, w, b),
                         "gru_sequence: gi (5, 6), h0 (2, 2), w_hh (6, 2) and b_hh (6,) do not fit (T N, 3H), (N, H), (3H, H), (3H,)",
                         ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::gru_sequence(gi, h0, ad::param(Array<double>::from_shape({6, 3})), Var<double>()),
                         "gru_sequence: gi (6, 6), h0 (2, 2), w_hh (6, 3) and b_hh (none) do not fit (T N, 3H), (N, H), (3H, H), (3H,)",
                         ad::shape_error);
    CHECK_THROWS_WITH_AS(ad::gru_sequence(gi, h0, w, ad::param(Array<double>::from_shape({2}))),
                         "gru_sequence: gi (6, 6), h0 (2, 2), w_hh (6, 2) and b_hh (2,) do not fit (T N, 3H), (N, H), (3H, H), (3H,)",
                         ad::shape_error);
    CHECK_THROWS_AS(ad::gru_sequence(gi, Var<double>(), w, b), ad::tape_error);
    CHECK(tape.size() == before);
}
