#include "nn_test_support.hpp"

#include <cmath>
#include <memory>
#include <string>
#include <tuple>
#include <utility>

namespace {

using namespace ad;

double sig(double v) { return 1 / (1 + std::exp(-v)); }

/// Row `row` of w dotted with row s of x.
double dot_row(const Array<double>& w, std::size_t row, const Array<double>& x, std::size_t s) {
    double acc = 0;
    for (std::size_t i = 0; i < x.shape()[1]; ++i) acc += w(row, i) * x(s, i);
    return acc;
}

/// torch.nn.GRUCell's formulas by scalar loops, gate rows r, z, n.
Array<double> gru_reference(const Array<double>& x, const Array<double>& h, const Array<double>& wih,
                            const Array<double>& whh, const Array<double>& bih, const Array<double>& bhh) {
    const std::size_t n = x.shape()[0], H = h.shape()[1];
    Array<double> out = xt::zeros<double>({n, H});
    for (std::size_t s = 0; s < n; ++s) {
        for (std::size_t j = 0; j < H; ++j) {
            double r = sig(dot_row(wih, j, x, s) + bih(j) + dot_row(whh, j, h, s) + bhh(j));
            double z = sig(dot_row(wih, H + j, x, s) + bih(H + j) + dot_row(whh, H + j, h, s) + bhh(H + j));
            double nn_ = std::tanh(dot_row(wih, 2 * H + j, x, s) + bih(2 * H + j) +
                                   r * (dot_row(whh, 2 * H + j, h, s) + bhh(2 * H + j)));
            out(s, j) = (1 - z) * nn_ + z * h(s, j);
        }
    }
    return out;
}

/// torch.nn.LSTMCell's formulas by scalar loops, gate rows i, f, g, o; returns {h', c'}.
std::pair<Array<double>, Array<double>> lstm_reference(const Array<double>& x, const Array<double>& h,
                                                       const Array<double>& c, const Array<double>& wih,
                                                       const Array<double>& whh, const Array<double>& bih,
                                                       const Array<double>& bhh) {
    const std::size_t n = x.shape()[0], H = h.shape()[1];
    Array<double> h2 = xt::zeros<double>({n, H}), c2 = xt::zeros<double>({n, H});
    for (std::size_t s = 0; s < n; ++s) {
        for (std::size_t j = 0; j < H; ++j) {
            auto gate = [&](std::size_t k) {
                std::size_t row = k * H + j;
                return dot_row(wih, row, x, s) + bih(row) + dot_row(whh, row, h, s) + bhh(row);
            };
            double i = sig(gate(0)), f = sig(gate(1)), g = std::tanh(gate(2)), o = sig(gate(3));
            c2(s, j) = f * c(s, j) + i * g;
            h2(s, j) = o * std::tanh(c2(s, j));
        }
    }
    return {h2, c2};
}

Array<double> step_of(const Array<double>& seq, std::size_t t) { return xt::view(seq, t, xt::all(), xt::all()); }

TEST_CASE("GRUCell, LSTMCell: PyTorch's names, shapes, repr and init bounds") {
    nn::GRUCell<double> gru(nn::GRUCellOptions(5, 4).seed(7));
    auto p = gru.named_parameters();
    REQUIRE(p.size() == 4);
    CHECK(p[0].name == "weight_ih");
    CHECK(p[0].var.shape() == Shape{12, 5});
    CHECK(p[1].name == "weight_hh");
    CHECK(p[1].var.shape() == Shape{12, 4});
    CHECK(p[2].name == "bias_ih");
    CHECK(p[2].var.shape() == Shape{12});
    CHECK(p[3].name == "bias_hh");
    CHECK(p[3].var.shape() == Shape{12});
    CHECK(gru.describe() == "GRUCell(5, 4)");
    for (const auto& q : p) {
        CHECK(test::max_abs(q.var.value()) <= 0.5);  // 1/sqrt(4)
        CHECK(test::max_abs(q.var.value()) > 0.25);
    }
    CHECK(xt::amin(p[0].var.value())() < xt::amax(p[0].var.value())());  // not all equal
    nn::GRUCell<double> same(nn::GRUCellOptions(5, 4).seed(7)), other(nn::GRUCellOptions(5, 4).seed(8));
    CHECK(same.weight_ih().value() == gru.weight_ih().value());
    CHECK(other.weight_ih().value() != gru.weight_ih().value());
    CHECK(gru.bias_ih().value() != gru.bias_hh().value());

    nn::LSTMCell<double> lstm(3, 2);
    auto q = lstm.named_parameters();
    REQUIRE(q.size() == 4);
    CHECK(q[0].var.shape() == Shape{8, 3});
    CHECK(q[1].var.shape() == Shape{8, 2});
    CHECK(q[3].var.shape() == Shape{8});
    CHECK(lstm.describe() == "LSTMCell(3, 2)");
    for (const auto& r : q) CHECK(test::max_abs(r.var.value()) <= 1 / std::sqrt(2.0));

    nn::GRUCell<double> no_bias(nn::GRUCellOptions(3, 2).bias(false));
    CHECK(no_bias.named_parameters().size() == 2);
    CHECK(no_bias.describe() == "GRUCell(3, 2, bias=False)");
}

TEST_CASE("GRU, LSTM: stacked layers' names, shapes and repr") {
    nn::GRU<double> gru(nn::GRUOptions(6, 4).num_layers(2));
    auto p = gru.named_parameters();
    REQUIRE(p.size() == 8);
    const char* names[] = {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                           "weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1"};
    for (std::size_t i = 0; i < 8; ++i) CHECK(p[i].name == names[i]);
    CHECK(p[0].var.shape() == Shape{12, 6});
    CHECK(p[4].var.shape() == Shape{12, 4});
    CHECK(p[5].var.shape() == Shape{12, 4});
    CHECK(gru.describe() == "GRU(6, 4, num_layers=2)");
    for (const auto& q : p) CHECK(test::max_abs(q.var.value()) <= 0.5);
    CHECK(p[0].var.value() != nn::GRU<double>(nn::GRUOptions(6, 4).seed(1)).named_parameters()[0].var.value());

    nn::LSTM<double> lstm(3, 5);
    auto q = lstm.named_parameters();
    REQUIRE(q.size() == 4);
    CHECK(q[0].name == "weight_ih_l0");
    CHECK(q[0].var.shape() == Shape{20, 3});
    CHECK(q[1].var.shape() == Shape{20, 5});
    CHECK(lstm.describe() == "LSTM(3, 5)");
}

TEST_CASE("GRUCell: forward against the scalar formulas (gate order r, z, n)") {
    Tape tape;
    nn::GRUCell<double> cell(nn::GRUCellOptions(3, 4).seed(3));
    Array<double> x = test::uniform({2, 3}, 1), h = test::uniform({2, 4}, 2);
    Array<double> want = gru_reference(x, h, cell.weight_ih().value(), cell.weight_hh().value(),
                                       cell.bias_ih().value(), cell.bias_hh().value());
    CHECK(test::max_abs_diff(cell.forward(constant(x), constant(h)).value(), want) < 1e-14);
    Array<double> zero = xt::zeros<double>({2, 4});
    Array<double> want0 = gru_reference(x, zero, cell.weight_ih().value(), cell.weight_hh().value(),
                                        cell.bias_ih().value(), cell.bias_hh().value());
    CHECK(test::max_abs_diff(cell(x).value(), want0) < 1e-14);
}

TEST_CASE("LSTMCell: forward against the scalar formulas (gate order i, f, g, o)") {
    Tape tape;
    nn::LSTMCell<double> cell(nn::LSTMCellOptions(3, 4).seed(3));
    Array<double> x = test::uniform({2, 3}, 1), h = test::uniform({2, 4}, 2), c = test::uniform({2, 4}, 5);
    auto want = lstm_reference(x, h, c, cell.weight_ih().value(), cell.weight_hh().value(), cell.bias_ih().value(),
                               cell.bias_hh().value());
    nn::LSTMState<double> s = cell.forward(constant(x), {constant(h), constant(c)});
    CHECK(test::max_abs_diff(s.h.value(), want.first) < 1e-14);
    CHECK(test::max_abs_diff(s.c.value(), want.second) < 1e-14);
    Array<double> zero = xt::zeros<double>({2, 4});
    auto want0 = lstm_reference(x, zero, zero, cell.weight_ih().value(), cell.weight_hh().value(),
                                cell.bias_ih().value(), cell.bias_hh().value());
    CHECK(test::max_abs_diff(cell(x).value(), want0.first) < 1e-14);
}

TEST_CASE("GRU: a sequence equals the cell step by step; stacked layers and a given h0") {
    Tape tape;
    nn::GRU<double> gru(nn::GRUOptions(3, 4).num_layers(2).seed(9));
    auto p = gru.named_parameters();
    auto w = [&](std::size_t i) { return p[i].var.value(); };
    Array<double> x = test::uniform({5, 2, 3}, 1);
    Array<double> h0 = test::uniform({2, 2, 4}, 2);
    nn::GRUOutput<double> out = gru.forward(constant(x), constant(h0));
    REQUIRE(out.output.shape() == Shape{5, 2, 4});
    REQUIRE(out.h_n.shape() == Shape{2, 2, 4});

    Array<double> h_l0 = step_of(h0, 0), h_l1 = step_of(h0, 1);
    for (std::size_t t = 0; t < 5; ++t) {
        h_l0 = gru_reference(step_of(x, t), h_l0, w(0), w(1), w(2), w(3));
        h_l1 = gru_reference(h_l0, h_l1, w(4), w(5), w(6), w(7));
        CHECK(test::max_abs_diff(step_of(out.output.value(), t), h_l1) < 1e-13);
    }
    CHECK(test::max_abs_diff(step_of(out.h_n.value(), 0), h_l0) < 1e-13);
    CHECK(test::max_abs_diff(step_of(out.h_n.value(), 1), h_l1) < 1e-13);

    // The one-layer GRU with the cell's weights matches nn::GRUCell applied step by step from zero.
    nn::GRU<double> one(3, 4);
    nn::GRUCell<double> cell(3, 4);
    nn::assign_parameters<double>(one, {{"weight_ih_l0", cell.weight_ih().value()},
                                        {"weight_hh_l0", cell.weight_hh().value()},
                                        {"bias_ih_l0", cell.bias_ih().value()},
                                        {"bias_hh_l0", cell.bias_hh().value()}});
    Var<double> seq = one(x);
    Var<double> h = cell(constant(Array<double>(step_of(x, 0))));
    CHECK(test::max_abs_diff(step_of(seq.value(), 0), h.value()) < 1e-14);
    for (std::size_t t = 1; t < 5; ++t) {
        h = cell.forward(constant(Array<double>(step_of(x, t))), h);
        CHECK(test::max_abs_diff(step_of(seq.value(), t), h.value()) < 1e-14);
    }
}

TEST_CASE("LSTM: a sequence equals the cell formulas step by step, stacked, from given h0 and c0") {
    Tape tape;
    nn::LSTM<double> lstm(nn::LSTMOptions(3, 2).num_layers(2).seed(4));
    auto p = lstm.named_parameters();
    auto w = [&](std::size_t i) { return p[i].var.value(); };
    Array<double> x = test::uniform({4, 3, 3}, 1), h0 = test::uniform({2, 3, 2}, 2), c0 = test::uniform({2, 3, 2}, 3);
    nn::LSTMOutput<double> out = lstm.forward(constant(x), constant(h0), constant(c0));
    REQUIRE(out.output.shape() == Shape{4, 3, 2});
    Array<double> h_l0 = step_of(h0, 0), h_l1 = step_of(h0, 1), c_l0 = step_of(c0, 0), c_l1 = step_of(c0, 1);
    for (std::size_t t = 0; t < 4; ++t) {
        std::tie(h_l0, c_l0) = lstm_reference(step_of(x, t), h_l0, c_l0, w(0), w(1), w(2), w(3));
        std::tie(h_l1, c_l1) = lstm_reference(h_l0, h_l1, c_l1, w(4), w(5), w(6), w(7));
        CHECK(test::max_abs_diff(step_of(out.output.value(), t), h_l1) < 1e-13);
    }
    CHECK(test::max_abs_diff(step_of(out.h_n.value(), 0), h_l0) < 1e-13);
    CHECK(test::max_abs_diff(step_of(out.c_n.value(), 1), c_l1) < 1e-13);
}

TEST_CASE("GRU, LSTM: gradients w.r.t. the input, h0 and every parameter through 3 steps") {
    Array<double> x = test::uniform({3, 2, 3}, 1), h0 = test::uniform({2, 2, 4}, 2), c0 = test::uniform({2, 2, 4}, 6);
    Array<double> v = test::uniform({3, 2, 4}, 3), vh = test::uniform({2, 2, 4}, 4);

    auto gru = std::make_shared<nn::GRU<double>>(nn::GRUOptions(3, 4).num_layers(2).seed(5));
    auto gru_f = [gru, v, vh](const test::Vars& in) {
        auto o = gru->forward(in[0], in[1]);
        return sum(o.output * constant(v)) + sum(o.h_n * constant(vh));
    };
    CHECK_GRADCHECK(gru_f, (std::vector<Array<double>>{x, h0}));
    auto gru_loss = [&] {
        auto o = gru->forward(constant(x), constant(h0));
        return sum(o.output * constant(v)) + sum(o.h_n * constant(vh));
    };
    {
        Tape tape;
        auto numeric = test::numeric_parameter_grads(*gru, [&] {
            NoGrad no_grad;
            return gru_loss().item();
        });
        gru->zero_grad();
        gru_loss().backward();
        auto p = gru->named_parameters();
        for (std::size_t i = 0; i < p.size(); ++i) {
            INFO(p[i].name);
            CHECK(test::max_abs_diff(p[i].var.grad(), numeric[i]) < 1e-8);
        }
    }

    auto lstm = std::make_shared<nn::LSTM<double>>(nn::LSTMOptions(3, 4).num_layers(2).seed(5));
    auto lstm_f = [lstm, v, vh](const test::Vars& in) {
        auto o = lstm->forward(in[0], in[1], in[2]);
        return sum(o.output * constant(v)) + sum(o.h_n * constant(vh)) + sum(o.c_n * constant(vh));
    };
    CHECK_GRADCHECK(lstm_f, (std::vector<Array<double>>{x, h0, c0}));
    auto lstm_loss = [&] {
        auto o = lstm->forward(constant(x), constant(h0), constant(c0));
        return sum(o.output * constant(v)) + sum(o.c_n * constant(vh));
    };
    {
        Tape tape;
        auto numeric = test::numeric_parameter_grads(*lstm, [&] {
            NoGrad no_grad;
            return lstm_loss().item();
        });
        lstm->zero_grad();
        lstm_loss().backward();
        auto p = lstm->named_parameters();
        for (std::size_t i = 0; i < p.size(); ++i) {
            INFO(p[i].name);
            CHECK(test::max_abs_diff(p[i].var.grad(), numeric[i]) < 1e-8);
        }
    }

    // The cells: input and state through gradcheck.
    auto cell = std::make_shared<nn::LSTMCell<double>>(3, 4);
    Array<double> x2 = step_of(x, 0), h2 = step_of(h0, 0), c2 = step_of(c0, 0);
    CHECK_GRADCHECK(
        [cell](const test::Vars& in) {
            auto s = cell->forward(in[0], {in[1], in[2]});
            return s.h * s.c;
        },
        (std::vector<Array<double>>{x2, h2, c2}));
    auto gcell = std::make_shared<nn::GRUCell<double>>(3, 4);
    CHECK_GRADCHECK([gcell](const test::Vars& in) { return gcell->forward(in[0], in[1]); },
                    (std::vector<Array<double>>{x2, h2}));
}

TEST_CASE("GRU, GRUCell: second derivatives w.r.t. the input and h0 (gradgradcheck)") {
    auto gru = std::make_shared<nn::GRU<double>>(nn::GRUOptions(2, 3).num_layers(2).seed(7));
    auto gru_f = [gru](const test::Vars& in) { return gru->forward(in[0], in[1]).output; };
    CHECK_GRADGRADCHECK(gru_f, (std::vector<Array<double>>{test::uniform({3, 2, 2}, 11), test::uniform({2, 2, 3}, 12)}));
    auto cell = std::make_shared<nn::GRUCell<double>>(2, 3);
    CHECK_GRADGRADCHECK([cell](const test::Vars& in) { return cell->forward(in[0], in[1]); },
                        (std::vector<Array<double>>{test::uniform({2, 2}, 13), test::uniform({2, 3}, 14)}));
}

TEST_CASE("GRU, LSTM, cells: bad shapes are shape_errors with exact messages, the tape unchanged") {
    Tape tape;
    nn::GRU<double> gru(3, 4);
    Var<double> x = constant(Array<double>(xt::zeros<double>({5, 2, 3})));
    const std::size_t before = tape.size();
    CHECK_THROWS_WITH_AS(gru(Array<double>(xt::zeros<double>({2, 3}))),
                         "GRU(3, 4): input has shape (2, 3); expected (T, N, 3)", shape_error);
    CHECK_THROWS_WITH_AS(gru(Array<double>(xt::zeros<double>({5, 2, 7}))),
                         "GRU(3, 4): input has shape (5, 2, 7); expected (T, N, 3)", shape_error);
    CHECK_THROWS_WITH_AS(gru.forward(x, constant(Array<double>(xt::zeros<double>({2, 2, 4})))),
                         "GRU(3, 4): h0 has shape (2, 2, 4); expected (1, 2, 4)", shape_error);
    CHECK_THROWS_WITH_AS(gru.forward(x, constant(Array<double>(xt::zeros<double>({2, 4})))),
                         "GRU(3, 4): h0 has shape (2, 4); expected (1, 2, 4)", shape_error);
    nn::LSTM<double> lstm(nn::LSTMOptions(3, 4).num_layers(2));
    CHECK_THROWS_WITH_AS(lstm.forward(x, Var<double>(), constant(Array<double>(xt::zeros<double>({2, 3, 4})))),
                         "LSTM(3, 4, num_layers=2): c0 has shape (2, 3, 4); expected (2, 2, 4)", shape_error);
    nn::GRUCell<double> cell(3, 4);
    CHECK_THROWS_WITH_AS(cell(Array<double>(xt::zeros<double>({2, 5}))),
                         "GRUCell(3, 4): input has shape (2, 5); expected (N, 3)", shape_error);
    CHECK_THROWS_WITH_AS(cell.forward(constant(Array<double>(xt::zeros<double>({2, 3}))),
                                      constant(Array<double>(xt::zeros<double>({3, 4})))),
                         "GRUCell(3, 4): h has shape (3, 4); expected (2, 4)", shape_error);
    nn::LSTMCell<double> lcell(3, 4);
    Var<double> x2 = constant(Array<double>(xt::zeros<double>({2, 3})));
    Var<double> h2 = constant(Array<double>(xt::zeros<double>({2, 4})));
    CHECK_THROWS_WITH_AS(lcell.forward(x2, {h2, constant(Array<double>(xt::zeros<double>({2, 3})))}),
                         "LSTMCell(3, 4): c has shape (2, 3); expected (2, 4)", shape_error);
    CHECK(tape.size() == before);
    CHECK_THROWS_AS(nn::GRU<double>(nn::GRUOptions(3, 4).num_layers(0)), value_error);
}

TEST_CASE("GRU: float layers draw the double layers' weights up to rounding and run") {
    Tape tape;
    nn::GRU<float> f(3, 4);
    nn::GRU<double> d(3, 4);
    auto pf = f.named_parameters();
    auto pd = d.named_parameters();
    for (std::size_t i = 0; i < pf.size(); ++i) {
        for (std::size_t k = 0; k < pf[i].var.value().size(); ++k)
            CHECK(pf[i].var.value().flat(k) == static_cast<float>(pd[i].var.value().flat(k)));
    }
    CHECK(f(Array<float>(xt::ones<float>({2, 1, 3}))).shape() == Shape{2, 1, 4});
}

}  // namespace
