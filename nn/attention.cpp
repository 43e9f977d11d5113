#include "nn/attention.hpp"

#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "nn/random.hpp"

namespace ad::nn {

namespace {

/// U(-bound, bound) of `shape` from `seed` (PyTorch's kaiming_uniform(a = sqrt 5)
/// and Linear's bias draw, bound 1 / sqrt(fan_in)).
template <class T>
Array<T> uniform_array(const Shape& shape, double bound, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    Array<T> a = Array<T>::from_shape(shape);
    for (auto& v : a) v = static_cast<T>(uniform(rng, -bound, bound));
    return a;
}

/// A Linear(in, out) initialised as torch.nn.Linear: weight and bias U(+-1/sqrt(in)).
template <class T>
Linear<T> torch_linear(std::size_t in, std::size_t out, std::uint64_t seed, bool zero_bias) {
    double bound = 1.0 / std::sqrt(double(in));
    Array<T> bias = zero_bias ? Array<T>(xt::zeros<T>({out})) : uniform_array<T>({out}, bound, derive_seed(seed, 1));
    return Linear<T>(uniform_array<T>({out, in}, bound, derive_seed(seed, 0)), std::move(bias));
}

/// The masks' shapes against batch n, query length l, key length s; errors begin with `who`.
void check_masks(const std::string& who, const AttentionMasks& masks, std::size_t n, std::size_t l, std::size_t s) {
    if (masks.key_padding_mask && masks.key_padding_mask->shape() != Mask::shape_type{n, s}) {
        throw shape_error(fmt::format("{}: key_padding_mask has shape {}; expected (N, S) = ({}, {})", who,
                                      shape_string_of(*masks.key_padding_mask), n, s));
    }
    if (masks.attn_mask && masks.attn_mask->shape() != Mask::shape_type{l, s}) {
        throw shape_error(fmt::format("{}: attn_mask has shape {}; expected (L, S) = ({}, {})", who,
                                      shape_string_of(*masks.attn_mask), l, s));
    }
}

}  // namespace

// --- MultiheadAttention ----------------------------------------------------------

template <class T>
MultiheadAttention<T>::MultiheadAttention(MultiheadAttentionOptions options)
    : options_(options), generator_(derive_seed(options.seed(), 2)) {
    if (options_.embed_dim() <= 0 || options_.num_heads() <= 0) {
        throw value_error(fmt::format("{}: embed_dim and num_heads must be positive", describe()));
    }
    if (options_.embed_dim() % options_.num_heads() != 0) {
        throw value_error(fmt::format("{}: embed_dim must be divisible by num_heads", describe()));
    }
    if (!(options_.dropout() >= 0 && options_.dropout() < 1)) {
        throw value_error(fmt::format("{}: dropout must lie in [0, 1), got {}", describe(), options_.dropout()));
    }
    embed_dim_ = static_cast<std::size_t>(options_.embed_dim());
    num_heads_ = static_cast<std::size_t>(options_.num_heads());
    const std::size_t e = embed_dim_;
    in_proj_weight_ = this->register_parameter(
        "in_proj_weight", init_weight<T>(3 * e, e, Init::xavier_uniform, derive_seed(options_.seed(), 0)));
    if (options_.bias()) in_proj_bias_ = this->register_parameter("in_proj_bias", Array<T>(xt::zeros<T>({3 * e})));
    out_proj_ = this->register_module("out_proj", torch_linear<T>(e, e, derive_seed(options_.seed(), 1), true));
}

template <class T>
std::string MultiheadAttention<T>::describe() const {
    return fmt::format("MultiheadAttention(embed_dim={}, num_heads={})", options_.embed_dim(), options_.num_heads());
}

template <class T>
void MultiheadAttention<T>::check(const Var<T>& query, const Var<T>& key, const Var<T>& value,
                                  const AttentionMasks& masks) const {
    const char* names[] = {"query", "key", "value"};
    const Var<T>* vars[] = {&query, &key, &value};
    for (int i = 0; i < 3; ++i) {
        if (!vars[i]->defined()) throw tape_error(fmt::format("{}: the {} is an empty Var", describe(), names[i]));
    }
    const bool bf = options_.batch_first();
    const auto& q = query.value().shape();
    if (q.size() != 3 || q[2] != embed_dim_) {
        throw shape_error(fmt::format("{}: query has shape {}; expected {}", describe(), shape_string_of(query.value()),
                                      bf ? fmt::format("(N, L, {})", embed_dim_) : fmt::format("(L, N, {})", embed_dim_)));
    }
    const std::size_t n = bf ? q[0] : q[1], l = bf ? q[1] : q[0];
    const auto& k = key.value().shape();
    if (k.size() != 3 || k[2] != embed_dim_ || (bf ? k[0] : k[1]) != n) {
        throw shape_error(fmt::format("{}: key has shape {}; expected {} with the query's batch N = {}", describe(),
                                      shape_string_of(key.value()),
                                      bf ? fmt::format("(N, S, {})", embed_dim_) : fmt::format("(S, N, {})", embed_dim_),
                                      n));
    }
    if (value.value().shape() != k) {
        throw shape_error(fmt::format("{}: value has shape {}; expected the key's shape {}", describe(),
                                      shape_string_of(value.value()), shape_string_of(key.value())));
    }
    const std::size_t s = bf ? k[1] : k[0];
    if (n == 0 || l == 0 || s == 0) {
        throw value_error(fmt::format("{}: empty batch or sequence (query {}, key {})", describe(),
                                      shape_string_of(query.value()), shape_string_of(key.value())));
    }
    check_masks(describe(), masks, n, l, s);
}

template <class T>
AttentionOutput<T> MultiheadAttention<T>::forward(const Var<T>& query, const Var<T>& key, const Var<T>& value,
                                                  const AttentionMasks& masks) {
    AttentionOutput<T> out;
    out.output = attend(query, key, value, masks, &out.weights);
    return out;
}

template <class T>
Var<T> MultiheadAttention<T>::forward(const Var<T>& x) {
    return attend(x, x, x, AttentionMasks{}, nullptr);
}

template <class T>
Var<T> MultiheadAttention<T>::attend(const Var<T>& query, const Var<T>& key, const Var<T>& value,
                                     const AttentionMasks& masks, Var<T>* weights) {
    check(query, key, value, masks);
    const bool bf = options_.batch_first();
    const std::size_t e = embed_dim_, h = num_heads_, dh = e / h;
    const auto& qs = query.value().shape();
    const std::size_t n = bf ? qs[0] : qs[1], l = bf ? qs[1] : qs[0];
    const std::size_t s = bf ? key.value().shape()[1] : key.value().shape()[0];
    const long E = long(e), H = long(h), Dh = long(dh), N = long(n);

    // x W^T + b over rows of the flattened sequence: one GEMM per distinct input.
    auto project = [&](const Var<T>& x, std::size_t begin, std::size_t end) {
        Var<T> x2 = reshape(x, {-1, E});
        bool all = begin == 0 && end == 3 * e;
        Var<T> w = all ? in_proj_weight_ : slice(in_proj_weight_, 0, begin, end);
        if (!options_.bias()) return matmul(x2, w, false, true);
        Var<T> b = all ? in_proj_bias_ : slice(in_proj_bias_, 0, begin, end);
        return linear(x2, w, b);
    };
    auto same = [](const Var<T>& a, const Var<T>& b) { return a.node_ptr().get() == b.node_ptr().get(); };
    Var<T> q2, k2, v2;  // (rows, E)
    if (same(query, key) && same(key, value)) {
        auto parts = split(project(query, 0, 3 * e), e, 1);
        q2 = parts[0], k2 = parts[1], v2 = parts[2];
    } else if (same(key, value)) {
        q2 = project(query, 0, e);
        auto parts = split(project(key, e, 3 * e), e, 1);
        k2 = parts[0], v2 = parts[1];
    } else {
        q2 = project(query, 0, e);
        k2 = project(key, e, 2 * e);
        v2 = project(value, 2 * e, 3 * e);
    }
    // (rows, E) -> (N, H, len, Dh): rows are (N, len) with batch_first, else (len, N).
    auto to_heads = [&](const Var<T>& x2, std::size_t len) {
        if (bf) return transpose(reshape(x2, {N, long(len), H, Dh}), {0, 2, 1, 3});
        return transpose(reshape(x2, {long(len), N, H, Dh}), {1, 2, 0, 3});
    };
    Var<T> q = scale(to_heads(q2, l), static_cast<T>(1.0 / std::sqrt(double(dh))));
    Var<T> k = to_heads(k2, s), v = to_heads(v2, s);

    Var<T> scores = matmul(q, k, false, true);  // (N, H, L, S)
    if (masks.key_padding_mask || masks.attn_mask || masks.is_causal) {
        Mask masked = Mask::from_shape({n, 1, l, s});
        for (std::size_t b = 0; b < n; ++b)
            for (std::size_t i = 0; i < l; ++i)
                for (std::size_t j = 0; j < s; ++j) {
                    masked(b, 0, i, j) = (masks.key_padding_mask && (*masks.key_padding_mask)(b, j)) ||
                                         (masks.attn_mask && (*masks.attn_mask)(i, j)) || (masks.is_causal && j > i);
                }
        Array<T> minus_infinity = Array<T>::from_shape({1, 1, 1, 1});
        minus_infinity.flat(0) = -std::numeric_limits<T>::infinity();
        scores = ad::where(masked, constant(std::move(minus_infinity)), scores);
    }
    Var<T> attention = softmax(scores, -1);
    if (options_.dropout() > 0 && this->is_training()) {
        attention = dropout(attention, options_.dropout(), true, generator_);
    }
    Var<T> heads = matmul(attention, v);  // (N, H, L, Dh)
    Var<T> merged = bf ? transpose(heads, {0, 2, 1, 3}) : transpose(heads, {2, 0, 1, 3});
    merged = reshape(merged, {-1, E});
    Var<T> projected = out_proj_->call([&] {
        return options_.bias() ? out_proj_->forward(merged) : matmul(merged, out_proj_->weight(), false, true);
    });
    if (weights) *weights = mean(attention, 1, false);
    return bf ? reshape(projected, {N, long(l), E}) : reshape(projected, {long(l), N, E});
}

// --- TransformerEncoderLayer -------------------------------------------------------

template <class T>
TransformerEncoderLayer<T>::TransformerEncoderLayer(TransformerEncoderLayerOptions options) : options_(options) {
    if (options_.d_model() <= 0 || options_.nhead() <= 0 || options_.dim_feedforward() <= 0) {
        throw value_error(fmt::format("{}: d_model, nhead and dim_feedforward must be positive", describe()));
    }
    if (options_.d_model() % options_.nhead() != 0) {
        throw value_error(fmt::format("{}: d_model must be divisible by nhead", describe()));
    }
    if (!(options_.dropout() >= 0 && options_.dropout() < 1)) {
        throw value_error(fmt::format("{}: dropout must lie in [0, 1), got {}", describe(), options_.dropout()));
    }
    const std::uint64_t seed = options_.seed();
    const auto d = static_cast<std::size_t>(options_.d_model());
    const auto ff = static_cast<std::size_t>(options_.dim_feedforward());
    self_attn_ = this->register_module(
        "self_attn", MultiheadAttention<T>(MultiheadAttentionOptions(options_.d_model(), options_.nhead())
                                               .dropout(options_.dropout())
                                               .batch_first(options_.batch_first())
                                               .seed(derive_seed(seed, 0))));
    linear1_ = this->register_module("linear1", torch_linear<T>(d, ff, derive_seed(seed, 1), false));
    dropout_ = this->register_module("dropout", Dropout<T>(DropoutOptions(options_.dropout()).seed(derive_seed(seed, 2))));
    linear2_ = this->register_module("linear2", torch_linear<T>(ff, d, derive_seed(seed, 3), false));
    norm1_ = this->register_module("norm1", LayerNorm<T>(LayerNormOptions({d}).eps(options_.layer_norm_eps())));
    norm2_ = this->register_module("norm2", LayerNorm<T>(LayerNormOptions({d}).eps(options_.layer_norm_eps())));
    dropout1_ = this->register_module("dropout1", Dropout<T>(DropoutOptions(options_.dropout()).seed(derive_seed(seed, 4))));
    dropout2_ = this->register_module("dropout2", Dropout<T>(DropoutOptions(options_.dropout()).seed(derive_seed(seed, 5))));
}

template <class T>
std::string TransformerEncoderLayer<T>::describe() const {
    return fmt::format("TransformerEncoderLayer(d_model={}, nhead={}, dim_feedforward={}, dropout={}, activation={}, "
                       "norm_first={})",
                       options_.d_model(), options_.nhead(), options_.dim_feedforward(), python_float(options_.dropout()),
                       options_.activation() == TransformerActivation::relu ? "relu" : "gelu",
                       options_.norm_first() ? "True" : "False");
}

template <class T>
Var<T> TransformerEncoderLayer<T>::self_attention_block(const Var<T>& x, const AttentionMasks& masks) {
    // Children are called through Module::call (operator() does) so debugging tools see the calls.
    Var<T> attended = self_attn_->call([&] { return self_attn_->forward(x, x, x, masks).output; });
    return (*dropout1_)(attended);
}

template <class T>
Var<T> TransformerEncoderLayer<T>::feed_forward_block(const Var<T>& x) {
    const auto& shape = x.value().shape();
    Var<T> x2 = reshape(x, {-1, long(options_.d_model())});
    Var<T> hidden = (*linear1_)(x2);
    hidden = options_.activation() == TransformerActivation::relu ? relu(hidden) : gelu(hidden);
    Var<T> y = (*linear2_)((*dropout_)(hidden));
    return (*dropout2_)(reshape(y, {long(shape[0]), long(shape[1]), long(shape[2])}));
}

template <class T>
Var<T> TransformerEncoderLayer<T>::forward(const Var<T>& src, const AttentionMasks& masks) {
    if (!src.defined()) throw tape_error(fmt::format("{}: the input is an empty Var", describe()));
    const auto& s = src.value().shape();
    if (s.size() != 3 || long(s[2]) != options_.d_model()) {
        throw shape_error(fmt::format("{}: src has shape {}; expected {}", describe(), shape_string_of(src.value()),
                                      options_.batch_first() ? fmt::format("(N, L, {})", options_.d_model())
                                                             : fmt::format("(L, N, {})", options_.d_model())));
    }
    const std::size_t n = options_.batch_first() ? s[0] : s[1], l = options_.batch_first() ? s[1] : s[0];
    if (n == 0 || l == 0) {
        throw value_error(fmt::format("{}: empty batch or sequence (src {})", describe(), shape_string_of(src.value())));
    }
    check_masks(describe(), masks, n, l, l);  // before norm1 of norm_first records anything
    Var<T> x = src;
    if (options_.norm_first()) {
        x = x + self_attention_block((*norm1_)(x), masks);
        x = x + feed_forward_block((*norm2_)(x));
    } else {
        x = (*norm1_)(x + self_attention_block(x, masks));
        x = (*norm2_)(x + feed_forward_block(x));
    }
    return x;
}

template class MultiheadAttention<float>;
template class MultiheadAttention<double>;
template class TransformerEncoderLayer<float>;
template class TransformerEncoderLayer<double>;

}  // namespace ad::nn
