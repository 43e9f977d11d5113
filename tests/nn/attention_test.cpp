#include "nn_test_support.hpp"

#include <cmath>
#include <limits>
#include <string>

namespace {

using namespace ad;

struct Reference {
    Array<double> output;   // (L, N, E)
    Array<double> weights;  // (N, L, S)
};

/// torch.nn.MultiheadAttention's forward with loops, inputs (L, N, E) and (S, N, E):
/// per sample and head, softmax over the allowed keys of the scaled dot products.
Reference reference_attention(const Array<double>& q, const Array<double>& k, const Array<double>& v,
                              const nn::MultiheadAttention<double>& m, const nn::AttentionMasks& masks = {}) {
    const std::size_t L = q.shape()[0], N = q.shape()[1], E = q.shape()[2], S = k.shape()[0];
    const std::size_t H = std::size_t(m.options().num_heads()), Dh = E / H;
    const Array<double>& W = m.in_proj_weight().value();
    const Array<double>& b = m.in_proj_bias().value();
    const Array<double>& Wo = m.out_proj().weight().value();
    const Array<double>& bo = m.out_proj().bias().value();
    auto project = [&](const Array<double>& x, std::size_t row, std::size_t t, std::size_t n) {
        double sum = b(row);
        for (std::size_t e = 0; e < E; ++e) sum += W(row, e) * x(t, n, e);
        return sum;
    };
    Array<double> merged = xt::zeros<double>({L, N, E});
    Reference r{xt::zeros<double>({L, N, E}), xt::zeros<double>({N, L, S})};
    for (std::size_t n = 0; n < N; ++n) {
        for (std::size_t h = 0; h < H; ++h) {
            for (std::size_t i = 0; i < L; ++i) {
                std::vector<double> score(S), a(S, 0.0);
                std::vector<bool> allowed(S);
                double top = -std::numeric_limits<double>::infinity();
                for (std::size_t j = 0; j < S; ++j) {
                    allowed[j] = !(masks.key_padding_mask && (*masks.key_padding_mask)(n, j)) &&
                                 !(masks.attn_mask && (*masks.attn_mask)(i, j)) && !(masks.is_causal && j > i);
                    double dot = 0;
                    for (std::size_t d = 0; d < Dh; ++d) {
                        dot += project(q, h * Dh + d, i, n) * project(k, E + h * Dh + d, j, n);
                    }
                    score[j] = dot / std::sqrt(double(Dh));
                    if (allowed[j]) top = std::max(top, score[j]);
                }
                double total = 0;
                for (std::size_t j = 0; j < S; ++j) total += a[j] = allowed[j] ? std::exp(score[j] - top) : 0.0;
                for (std::size_t j = 0; j < S; ++j) {
                    a[j] /= total;
                    r.weights(n, i, j) += a[j] / double(H);
                    for (std::size_t d = 0; d < Dh; ++d) {
                        merged(i, n, h * Dh + d) += a[j] * project(v, 2 * E + h * Dh + d, j, n);
                    }
                }
            }
        }
    }
    for (std::size_t i = 0; i < L; ++i)
        for (std::size_t n = 0; n < N; ++n)
            for (std::size_t o = 0; o < E; ++o) {
                double sum = bo(o);
                for (std::size_t c = 0; c < E; ++c) sum += Wo(o, c) * merged(i, n, c);
                r.output(i, n, o) = sum;
            }
    return r;
}

/// Every parameter of `m` set to a uniform draw (biases away from their zero start).
void randomize(const nn::Module<double>& m, std::uint64_t seed) {
    for (const auto& p : m.named_parameters()) p.var.mutable_value() = test::uniform(p.var.shape(), seed++);
}

/// (A, B, C) -> (B, A, C): between sequence-first and batch-first layouts.
Array<double> swap01(const Array<double>& x) { return xt::transpose(x, {1, 0, 2}); }

Mask causal_mask(std::size_t l, std::size_t s) {
    Mask m = Mask::from_shape({l, s});
    for (std::size_t i = 0; i < l; ++i)
        for (std::size_t j = 0; j < s; ++j) m(i, j) = j > i;
    return m;
}

TEST_CASE("MultiheadAttention: parameters, initialisation and description as PyTorch's") {
    nn::MultiheadAttention<double> m(4, 2);
    CHECK(m.describe() == "MultiheadAttention(embed_dim=4, num_heads=2)");
    auto params = m.named_parameters();
    REQUIRE(params.size() == 4);
    CHECK(params[0].name == "in_proj_weight");
    CHECK(params[0].var.shape() == Shape{12, 4});
    CHECK(params[1].name == "in_proj_bias");
    CHECK(params[1].var.shape() == Shape{12});
    CHECK(params[2].name == "out_proj.weight");
    CHECK(params[2].var.shape() == Shape{4, 4});
    CHECK(params[3].name == "out_proj.bias");
    CHECK(params[3].var.shape() == Shape{4});
    REQUIRE(m.named_children().size() == 1);
    CHECK(m.named_children()[0].name == "out_proj");

    // xavier_uniform over (3E, E): bound sqrt(6 / (E + 3E)); out_proj U(+-1/sqrt(E)); biases zero.
    const double xavier = std::sqrt(6.0 / 16), kaiming = 0.5;
    CHECK(test::max_abs(m.in_proj_weight().value()) <= xavier);
    CHECK(test::max_abs(m.in_proj_weight().value()) > xavier / 2);
    CHECK(test::max_abs(m.out_proj().weight().value()) <= kaiming);
    CHECK(test::max_abs(m.out_proj().weight().value()) > kaiming / 2);
    CHECK(m.in_proj_bias().value() == Array<double>(xt::zeros<double>({12})));
    CHECK(m.out_proj().bias().value() == Array<double>(xt::zeros<double>({4})));

    nn::MultiheadAttention<double> same(4, 2), other(nn::MultiheadAttentionOptions(4, 2).seed(1));
    CHECK(same.in_proj_weight().value() == m.in_proj_weight().value());
    CHECK(same.out_proj().weight().value() == m.out_proj().weight().value());
    CHECK(other.in_proj_weight().value() != m.in_proj_weight().value());

    nn::MultiheadAttention<double> no_bias(nn::MultiheadAttentionOptions(4, 2).bias(false));
    CHECK(no_bias.named_parameters()[1].name == "out_proj.weight");
    CHECK_FALSE(no_bias.in_proj_bias().defined());
}

TEST_CASE("MultiheadAttention: forward against loops, with and without masks") {
    Tape tape;
    nn::MultiheadAttention<double> m(4, 2);
    randomize(m, 10);
    Array<double> x = test::uniform({3, 2, 4}, 1, -2, 2);  // (L, N, E)
    Mask padding{{false, false, true}, {false, false, false}};
    Mask banned{{false, true, false}, {false, false, false}, {true, false, false}};

    std::vector<nn::AttentionMasks> cases(5);
    cases[1].is_causal = true;
    cases[2].key_padding_mask = padding;
    cases[3].attn_mask = banned;
    cases[4].key_padding_mask = padding;
    cases[4].attn_mask = banned;
    cases[4].is_causal = true;
    for (std::size_t c = 0; c < cases.size(); ++c) {
        INFO("mask case ", c);
        Var<double> xv = constant(x);
        auto got = m.forward(xv, xv, xv, cases[c]);
        Reference want = reference_attention(x, x, x, m, cases[c]);
        CHECK(test::matches(got.output.value(), want.output));
        CHECK(test::matches(got.weights.value(), want.weights));
        // Every row of weights sums to one.
        Array<double> row_sums = xt::sum(got.weights.value(), {2});
        CHECK(test::max_abs_diff(row_sums, xt::ones<double>({2, 3})) < 1e-14);
    }
    // Masked positions get exactly zero weight.
    auto causal = m.forward(constant(x), constant(x), constant(x), cases[1]).weights.value();
    CHECK(causal(0, 0, 1) == 0.0);
    CHECK(causal(1, 0, 2) == 0.0);
    CHECK(causal(0, 1, 2) == 0.0);
    CHECK(causal(0, 0, 0) == 1.0);
    auto padded = m.forward(constant(x), constant(x), constant(x), cases[2]).weights.value();
    for (std::size_t i = 0; i < 3; ++i) CHECK(padded(0, i, 2) == 0.0);
    CHECK(padded(1, 0, 2) > 0.0);
    // A mask changes the result.
    CHECK(test::max_abs_diff(causal, reference_attention(x, x, x, m).weights) > 1e-3);

    // is_causal is the attn_mask of the upper triangle.
    nn::AttentionMasks triangle;
    triangle.attn_mask = causal_mask(3, 3);
    CHECK(m.forward(constant(x), constant(x), constant(x), triangle).output.value() ==
          m.forward(constant(x), constant(x), constant(x), cases[1]).output.value());

    // forward(x) is the unmasked self-attention output.
    CHECK(test::matches(m.forward(constant(x)).value(), reference_attention(x, x, x, m).output));
}

TEST_CASE("MultiheadAttention: cross-attention and batch_first against loops") {
    Tape tape;
    Array<double> q = test::uniform({3, 2, 6}, 2), k = test::uniform({5, 2, 6}, 3), v = test::uniform({5, 2, 6}, 4);
    nn::AttentionMasks masks;
    masks.key_padding_mask = Mask{{false, true, false, false, true}, {false, false, false, true, false}};
    masks.is_causal = true;  // top-left triangle of (3, 5)

    nn::MultiheadAttention<double> m(6, 3);
    randomize(m, 20);
    auto got = m.forward(constant(q), constant(k), constant(v), masks);
    Reference want = reference_attention(q, k, v, m, masks);
    CHECK(test::matches(got.output.value(), want.output));
    CHECK(test::matches(got.weights.value(), want.weights));
    // key and value one Var, query another.
    auto kv = constant(k);
    CHECK(test::matches(m.forward(constant(q), kv, kv).output.value(), reference_attention(q, k, k, m).output));

    nn::MultiheadAttention<double> bf(nn::MultiheadAttentionOptions(6, 3).batch_first(true));
    randomize(bf, 20);
    auto got_bf = bf.forward(constant(swap01(q)), constant(swap01(k)), constant(swap01(v)), masks);
    CHECK(got_bf.output.shape() == Shape{2, 3, 6});
    CHECK(test::matches(got_bf.output.value(), swap01(want.output)));
    CHECK(test::matches(got_bf.weights.value(), want.weights));
    Array<double> xs = swap01(q);
    CHECK(test::matches(bf.forward(constant(xs)).value(), swap01(reference_attention(q, q, q, bf).output)));

    // One head: plain scaled dot-product attention.
    nn::MultiheadAttention<double> one(6, 1);
    randomize(one, 30);
    CHECK(test::matches(one.forward(constant(q), constant(k), constant(v)).output.value(),
                        reference_attention(q, k, v, one).output));
}

TEST_CASE("MultiheadAttention: bias(false) leaves the biases out of both products") {
    Tape tape;
    nn::MultiheadAttention<double> plain(nn::MultiheadAttentionOptions(4, 2).bias(false));
    nn::MultiheadAttention<double> zero(4, 2);  // same seed: same weights, zero biases
    CHECK(plain.in_proj_weight().value() == zero.in_proj_weight().value());
    plain.out_proj().bias().mutable_value() = test::uniform({4}, 31);  // unused without bias
    Array<double> x = test::uniform({3, 2, 4}, 32);
    Var<double> y = plain.forward(constant(x));
    CHECK(test::matches(y.value(), reference_attention(x, x, x, zero).output));
    sum(y).backward();
    CHECK(plain.out_proj().bias().grad() == Array<double>(xt::zeros<double>({4})));
    CHECK(test::max_abs(plain.in_proj_weight().grad()) > 0);
}

TEST_CASE("MultiheadAttention: a query whose keys are all masked gives NaN, as PyTorch") {
    nn::MultiheadAttention<double> m(4, 2);
    nn::AttentionMasks masks;
    masks.key_padding_mask = Mask{{true, true}};
    auto got = m.forward(constant(test::uniform({2, 1, 4}, 5)), constant(test::uniform({2, 1, 4}, 6)),
                         constant(test::uniform({2, 1, 4}, 7)), masks);
    CHECK(std::isnan(got.output.value()(0, 0, 0)));
    CHECK(std::isnan(got.weights.value()(0, 0, 0)));
}

TEST_CASE("MultiheadAttention: gradients of the inputs and every parameter") {
    auto m = std::make_shared<nn::MultiheadAttention<double>>(4, 2);
    randomize(*m, 40);
    nn::AttentionMasks masks;
    masks.is_causal = true;
    masks.key_padding_mask = Mask{{false, false, true}, {false, true, false}};
    Array<double> x = test::uniform({3, 2, 4}, 8);
    auto self_output = [m, masks](const test::Vars& in) { return m->forward(in[0], in[0], in[0], masks).output; };
    auto self_weights = [m, masks](const test::Vars& in) { return m->forward(in[0], in[0], in[0], masks).weights; };
    auto cross = [m](const test::Vars& in) { return m->forward(in[0], in[1], in[2]).output; };
    CHECK_GRADCHECK(self_output, std::vector<Array<double>>{x});
    CHECK_GRADCHECK(self_weights, std::vector<Array<double>>{x});
    std::vector<Array<double>> qkv{x, test::uniform({4, 2, 4}, 9), test::uniform({4, 2, 4}, 10)};
    CHECK_GRADCHECK(cross, qkv);

    Array<double> w = test::uniform({3, 2, 4}, 11);
    auto loss = [&] { return sum(m->forward(constant(x), constant(x), constant(x), masks).output * constant(w)); };
    auto numeric = test::numeric_parameter_grads(*m, [&] {
        NoGrad no_grad;
        return loss().item();
    });
    Tape tape;
    m->zero_grad();
    loss().backward();
    auto params = m->named_parameters();
    for (std::size_t i = 0; i < params.size(); ++i) {
        INFO(params[i].name);
        CHECK(test::max_abs_diff(params[i].var.grad(), numeric[i]) < 1e-8);
    }
}

TEST_CASE("MultiheadAttention: dropout on the weights in training only") {
    Tape tape;
    nn::MultiheadAttention<double> m(nn::MultiheadAttentionOptions(4, 2).dropout(0.5).seed(3));
    randomize(m, 50);
    Array<double> x = test::uniform({6, 2, 4}, 12);
    Var<double> xv = constant(x);
    auto trained = m.forward(xv, xv, xv);
    Reference want = reference_attention(x, x, x, m);
    CHECK(test::max_abs_diff(trained.weights.value(), want.weights) > 1e-3);
    CHECK(test::max_abs_diff(trained.output.value(), want.output) > 1e-3);
    m.eval();
    auto evaluated = m.forward(xv, xv, xv);
    CHECK(test::matches(evaluated.output.value(), want.output));
    CHECK(test::matches(evaluated.weights.value(), want.weights));
}

TEST_CASE("MultiheadAttention: bad shapes and options are clear errors, before anything is recorded") {
    CHECK_THROWS_WITH_AS(nn::MultiheadAttention<double>(5, 2),
                         "MultiheadAttention(embed_dim=5, num_heads=2): embed_dim must be divisible by num_heads",
                         value_error);
    CHECK_THROWS_WITH_AS(nn::MultiheadAttention<double>(4, 0),
                         "MultiheadAttention(embed_dim=4, num_heads=0): embed_dim and num_heads must be positive",
                         value_error);
    CHECK_THROWS_WITH_AS(nn::MultiheadAttention<double>(nn::MultiheadAttentionOptions(4, 2).dropout(1)),
                         "MultiheadAttention(embed_dim=4, num_heads=2): dropout must lie in [0, 1), got 1", value_error);

    Tape tape;
    nn::MultiheadAttention<double> m(4, 2);
    Var<double> x = param(test::uniform({3, 2, 4}, 13));
    Var<double> wide = param(test::uniform({3, 2, 5}, 14));
    const std::size_t before = tape.size();
    const std::string who = "MultiheadAttention(embed_dim=4, num_heads=2): ";
    CHECK_THROWS_WITH_AS(m.forward(wide), (who + "query has shape (3, 2, 5); expected (L, N, 4)").c_str(), shape_error);
    CHECK_THROWS_WITH_AS(m.forward(x, wide, wide),
                         (who + "key has shape (3, 2, 5); expected (S, N, 4) with the query's batch N = 2").c_str(),
                         shape_error);
    Var<double> other_batch = param(test::uniform({3, 1, 4}, 15));
    CHECK_THROWS_WITH_AS(m.forward(x, other_batch, other_batch),
                         (who + "key has shape (3, 1, 4); expected (S, N, 4) with the query's batch N = 2").c_str(),
                         shape_error);
    Var<double> longer = param(test::uniform({4, 2, 4}, 16));
    CHECK_THROWS_WITH_AS(m.forward(x, x, longer),
                         (who + "value has shape (4, 2, 4); expected the key's shape (3, 2, 4)").c_str(), shape_error);
    nn::AttentionMasks bad_padding;
    bad_padding.key_padding_mask = Mask::from_shape({3, 2});
    CHECK_THROWS_WITH_AS(m.forward(x, x, x, bad_padding),
                         (who + "key_padding_mask has shape (3, 2); expected (N, S) = (2, 3)").c_str(), shape_error);
    nn::AttentionMasks bad_attn;
    bad_attn.attn_mask = Mask::from_shape({3, 4});
    CHECK_THROWS_WITH_AS(m.forward(x, x, x, bad_attn),
                         (who + "attn_mask has shape (3, 4); expected (L, S) = (3, 3)").c_str(), shape_error);
    CHECK_THROWS_WITH_AS(m.forward(param(test::uniform({3, 4}, 17))),
                         (who + "query has shape (3, 4); expected (L, N, 4)").c_str(), shape_error);
    nn::MultiheadAttention<double> bf(nn::MultiheadAttentionOptions(4, 2).batch_first(true));
    CHECK_THROWS_WITH_AS(bf.forward(wide), (who + "query has shape (3, 2, 5); expected (N, L, 4)").c_str(), shape_error);
    CHECK(tape.size() == before);
}

TEST_CASE("MultiheadAttention: float agrees with double") {
    nn::MultiheadAttention<double> d(4, 2);
    nn::MultiheadAttention<float> f(4, 2);
    Array<double> x = test::uniform({3, 2, 4}, 18);
    Array<float> xf = xt::cast<float>(x);
    CHECK(test::float_matches_double(f.forward(constant(xf)).value(), d.forward(constant(x)).value()));
}

// --- TransformerEncoderLayer ----------------------------------------------------

/// y = x W^T + b over the last axis of a (L, N, in) array, with loops.
Array<double> dense(const Array<double>& x, const Array<double>& W, const Array<double>& b) {
    const std::size_t rows = x.size() / x.shape()[2], in = W.shape()[1], out = W.shape()[0];
    Array<double> y = Array<double>::from_shape({x.shape()[0], x.shape()[1], out});
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t o = 0; o < out; ++o) {
            double sum = b(o);
            for (std::size_t i = 0; i < in; ++i) sum += W(o, i) * x.flat(r * in + i);
            y.flat(r * out + o) = sum;
        }
    return y;
}

Array<double> layer_norm_loops(const Array<double>& x, const nn::LayerNorm<double>& norm) {
    return test::reference_layer_norm(x, x.shape()[2], norm.weight().value(), norm.bias().value(), norm.options().eps());
}

/// The encoder layer's formula with loops (dropout off), input (L, N, E).
Array<double> reference_encoder(const Array<double>& x, const nn::TransformerEncoderLayer<double>& layer,
                                const nn::AttentionMasks& masks = {}) {
    auto sa = [&](const Array<double>& a) { return reference_attention(a, a, a, layer.self_attn(), masks).output; };
    auto ff = [&](const Array<double>& a) {
        Array<double> hidden = dense(a, layer.linear1().weight().value(), layer.linear1().bias().value());
        for (auto& h : hidden) {
            h = layer.options().activation() == nn::TransformerActivation::relu ? std::max(h, 0.0)
                                                                               : 0.5 * h * (1 + std::erf(h / std::sqrt(2.0)));
        }
        return dense(hidden, layer.linear2().weight().value(), layer.linear2().bias().value());
    };
    if (layer.options().norm_first()) {
        Array<double> y = x + sa(layer_norm_loops(x, layer.norm1()));
        return y + ff(layer_norm_loops(y, layer.norm2()));
    }
    Array<double> y = layer_norm_loops(x + sa(x), layer.norm1());
    return layer_norm_loops(y + ff(y), layer.norm2());
}

nn::TransformerEncoderLayerOptions small_encoder() {
    return nn::TransformerEncoderLayerOptions(4, 2).dim_feedforward(6).dropout(0.0);
}

TEST_CASE("TransformerEncoderLayer: submodules and parameters named and shaped as PyTorch's") {
    nn::TransformerEncoderLayer<double> layer(nn::TransformerEncoderLayerOptions(8, 2).dim_feedforward(16));
    CHECK(layer.describe() ==
          "TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=16, dropout=0.1, activation=relu, norm_first=False)");
    std::vector<std::string> children;
    for (const auto& c : layer.named_children()) children.push_back(c.name);
    CHECK(children == std::vector<std::string>{"self_attn", "linear1", "dropout", "linear2", "norm1", "norm2",
                                               "dropout1", "dropout2"});
    std::vector<std::string> names;
    std::vector<Shape> shapes;
    for (const auto& p : layer.named_parameters()) {
        names.push_back(p.name);
        shapes.push_back(p.var.shape());
    }
    CHECK(names == std::vector<std::string>{"self_attn.in_proj_weight", "self_attn.in_proj_bias",
                                            "self_attn.out_proj.weight", "self_attn.out_proj.bias", "linear1.weight",
                                            "linear1.bias", "linear2.weight", "linear2.bias", "norm1.weight",
                                            "norm1.bias", "norm2.weight", "norm2.bias"});
    CHECK(shapes == std::vector<Shape>{{24, 8}, {24}, {8, 8}, {8}, {16, 8}, {16}, {8, 16}, {8}, {8}, {8}, {8}, {8}});
    // Linear's default: weight and bias U(+-1/sqrt(in)).
    CHECK(test::max_abs(layer.linear1().weight().value()) <= 1 / std::sqrt(8.0));
    CHECK(test::max_abs(layer.linear1().bias().value()) <= 1 / std::sqrt(8.0));
    CHECK(test::max_abs(layer.linear1().bias().value()) > 0);
    CHECK(test::max_abs(layer.linear2().weight().value()) <= 0.25);
    CHECK(test::max_abs(layer.linear2().weight().value()) > 0.125);
    CHECK(layer.self_attn().options().dropout() == 0.1);
    CHECK(layer.linear1().weight().value() != layer.linear2().weight().value());
    nn::TransformerEncoderLayer<double> same(nn::TransformerEncoderLayerOptions(8, 2).dim_feedforward(16));
    CHECK(test::unchanged(same, test::snapshot(layer)));
}

TEST_CASE("TransformerEncoderLayer: post-norm and pre-norm each match their formula, and differ") {
    Tape tape;
    Array<double> x = test::uniform({3, 2, 4}, 19, -2, 2);
    nn::AttentionMasks masks;
    masks.is_causal = true;
    masks.key_padding_mask = Mask{{false, false, true}, {false, false, false}};
    nn::TransformerEncoderLayer<double> post(small_encoder());
    nn::TransformerEncoderLayer<double> pre(small_encoder().norm_first(true));
    randomize(post, 60);
    randomize(pre, 60);
    Array<double> y_post = post.forward(constant(x), masks).value();
    Array<double> y_pre = pre.forward(constant(x), masks).value();
    CHECK(test::matches(y_post, reference_encoder(x, post, masks)));
    CHECK(test::matches(y_pre, reference_encoder(x, pre, masks)));
    CHECK(test::max_abs_diff(y_post, y_pre) > 1e-2);
    CHECK(test::matches(post.forward(constant(x)).value(), reference_encoder(x, post)));

    nn::TransformerEncoderLayer<double> gelu(small_encoder().activation(nn::TransformerActivation::gelu));
    randomize(gelu, 60);
    Array<double> y_gelu = gelu.forward(constant(x), masks).value();
    CHECK(test::matches(y_gelu, reference_encoder(x, gelu, masks)));
    CHECK(test::max_abs_diff(y_gelu, y_post) > 1e-3);

    nn::TransformerEncoderLayer<double> bf(small_encoder().batch_first(true));
    randomize(bf, 60);
    CHECK(test::matches(bf.forward(constant(swap01(x)), masks).value(), swap01(reference_encoder(x, post, masks))));
}

TEST_CASE("TransformerEncoderLayer: gradients of the input and every parameter (dropout 0)") {
    for (bool norm_first : {false, true}) {
        INFO("norm_first ", norm_first);
        auto layer = std::make_shared<nn::TransformerEncoderLayer<double>>(small_encoder().norm_first(norm_first));
        randomize(*layer, 70);
        nn::AttentionMasks masks;
        masks.is_causal = true;
        Array<double> x = test::uniform({3, 2, 4}, 20);
        auto f = [layer, masks](const test::Vars& in) { return layer->forward(in[0], masks); };
        CHECK_GRADCHECK(f, std::vector<Array<double>>{x});

        Array<double> w = test::uniform({3, 2, 4}, 21);
        auto loss = [&] { return sum(layer->forward(constant(x), masks) * constant(w)); };
        auto numeric = test::numeric_parameter_grads(*layer, [&] {
            NoGrad no_grad;
            return loss().item();
        });
        Tape tape;
        layer->zero_grad();
        loss().backward();
        auto params = layer->named_parameters();
        for (std::size_t i = 0; i < params.size(); ++i) {
            INFO(params[i].name);
            CHECK(test::max_abs_diff(params[i].var.grad(), numeric[i]) < 1e-7);
        }
    }
}

TEST_CASE("TransformerEncoderLayer: eval turns every dropout off") {
    Tape tape;
    nn::TransformerEncoderLayer<double> layer(small_encoder().dropout(0.5).seed(4));
    randomize(layer, 80);
    Array<double> x = test::uniform({5, 2, 4}, 22);
    Array<double> first = layer.forward(constant(x)).value();
    Array<double> second = layer.forward(constant(x)).value();
    Array<double> plain = reference_encoder(x, layer);
    CHECK(test::max_abs_diff(first, second) > 1e-3);
    CHECK(test::max_abs_diff(first, plain) > 1e-3);
    layer.eval();
    CHECK_FALSE(layer.self_attn().is_training());
    CHECK(test::matches(layer.forward(constant(x)).value(), plain));
    CHECK(layer.forward(constant(x)).value() == layer.forward(constant(x)).value());
}

TEST_CASE("TransformerEncoderLayer: bad shapes are clear errors, before anything is recorded") {
    CHECK_THROWS_WITH_AS(nn::TransformerEncoderLayer<double>(6, 4),
                         "TransformerEncoderLayer(d_model=6, nhead=4, dim_feedforward=2048, dropout=0.1, activation=relu, "
                         "norm_first=False): d_model must be divisible by nhead",
                         value_error);
    Tape tape;
    nn::TransformerEncoderLayer<double> pre(small_encoder().norm_first(true));
    const std::string who =
        "TransformerEncoderLayer(d_model=4, nhead=2, dim_feedforward=6, dropout=0.0, activation=relu, norm_first=True): ";
    Var<double> x = param(test::uniform({3, 2, 4}, 23));
    const std::size_t before = tape.size();
    CHECK_THROWS_WITH_AS(pre.forward(param(test::uniform({3, 2, 5}, 24))),
                         (who + "src has shape (3, 2, 5); expected (L, N, 4)").c_str(), shape_error);
    nn::AttentionMasks bad_padding;
    bad_padding.key_padding_mask = Mask::from_shape({2, 4});
    CHECK_THROWS_WITH_AS(pre.forward(x, bad_padding),
                         (who + "key_padding_mask has shape (2, 4); expected (N, S) = (2, 3)").c_str(), shape_error);
    nn::AttentionMasks bad_attn;
    bad_attn.attn_mask = Mask::from_shape({2, 3});
    CHECK_THROWS_WITH_AS(pre.forward(x, bad_attn),
                         (who + "attn_mask has shape (2, 3); expected (L, S) = (3, 3)").c_str(), shape_error);
    CHECK(tape.size() == before);
}

}  // namespace
