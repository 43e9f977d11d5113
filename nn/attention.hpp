#pragma once
// Attention layers with torch.nn's names, shapes and initialisation:
// MultiheadAttention and TransformerEncoderLayer.
//
//   MultiheadAttention: Q, K, V = x W_{q,k,v}^T + b_{q,k,v} (W packed as
//   in_proj_weight (3E, E)), split into heads (N, H, L, E/H);
//   A = softmax(Q K^T / sqrt(E/H) + mask) with masked scores -inf;
//   output = merge_heads(A V) W_o^T + b_o (out_proj), weights = mean of A over heads.
//
// Every step is one batched engine op over the whole batch and all heads
// (linear, reshape, transpose, rank-4 matmul, where, softmax): no loop over
// samples or heads.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "nn/dropout.hpp"
#include "nn/layer_norm.hpp"
#include "nn/linear.hpp"
#include "nn/module.hpp"

namespace ad::nn {

/// The masks of an attention call, as PyTorch's arguments (boolean masks only).
/// A row whose keys are all masked has no softmax: its weights and output are
/// NaN, as in PyTorch.
struct AttentionMasks {
    /// (N, S): true = this key is padding, ignore it.
    std::optional<Mask> key_padding_mask;
    /// (L, S): true = query i may not attend to key j.
    std::optional<Mask> attn_mask;
    /// Query i attends to keys j <= i only (torch's scaled_dot_product_attention
    /// is_causal: the top-left lower triangle of (L, S)); combines with the masks above.
    bool is_causal = false;
};

template <class T>
struct AttentionOutput {
    /// (L, N, E), or (N, L, E) with batch_first.
    Var<T> output;
    /// (N, L, S): the attention weights averaged over heads (after dropout, as PyTorch's).
    Var<T> weights;
};

struct MultiheadAttentionOptions {
    MultiheadAttentionOptions(long embed_dim, long num_heads) : embed_dim_(embed_dim), num_heads_(num_heads) {}
    TAPEGRAD_ARG(long, embed_dim);
    TAPEGRAD_ARG(long, num_heads);
    /// false: no in_proj_bias, and out_proj's product leaves its bias out
    /// (out_proj.bias stays a zero parameter that gets no gradient; PyTorch has none).
    TAPEGRAD_ARG(bool, bias) = true;
    /// Dropout on the attention weights in training.
    TAPEGRAD_ARG(double, dropout) = 0.0;
    TAPEGRAD_ARG(bool, batch_first) = false;
    TAPEGRAD_ARG(std::uint64_t, seed) = 0;
};

template <class T>
class MultiheadAttention final : public Module<T> {
public:
    /// embed_dim and num_heads positive, embed_dim divisible by num_heads,
    /// dropout in [0, 1): else a value_error.
    explicit MultiheadAttention(MultiheadAttentionOptions options);
    MultiheadAttention(long embed_dim, long num_heads) : MultiheadAttention(MultiheadAttentionOptions(embed_dim, num_heads)) {}

    /// query (L, N, E), key and value (S, N, E) ((N, L, E) and (N, S, E) with batch_first).
    AttentionOutput<T> forward(const Var<T>& query, const Var<T>& key, const Var<T>& value,
                               const AttentionMasks& masks = {});
    /// Self-attention without masks: forward(x, x, x).output.
    Var<T> forward(const Var<T>& x) override;
    /// `MultiheadAttention(embed_dim=4, num_heads=2)`.
    std::string describe() const override;

    const MultiheadAttentionOptions& options() const { return options_; }
    const Var<T>& in_proj_weight() const { return in_proj_weight_; }
    /// An empty Var without bias.
    const Var<T>& in_proj_bias() const { return in_proj_bias_; }
    Linear<T>& out_proj() const { return *out_proj_; }

private:
    /// The output; the head-averaged weights into *weights when it is not null.
    Var<T> attend(const Var<T>& query, const Var<T>& key, const Var<T>& value, const AttentionMasks& masks,
                  Var<T>* weights);
    void check(const Var<T>& query, const Var<T>& key, const Var<T>& value, const AttentionMasks& masks) const;

    MultiheadAttentionOptions options_;
    std::size_t embed_dim_;
    std::size_t num_heads_;
    Var<T> in_proj_weight_;
    Var<T> in_proj_bias_;
    std::shared_ptr<Linear<T>> out_proj_;
    std::mt19937_64 generator_;
};

/// The feed-forward activation of a TransformerEncoderLayer.
enum class TransformerActivation { relu, gelu };

struct TransformerEncoderLayerOptions {
    TransformerEncoderLayerOptions(long d_model, long nhead) : d_model_(d_model), nhead_(nhead) {}
    TAPEGRAD_ARG(long, d_model);
    TAPEGRAD_ARG(long, nhead);
    TAPEGRAD_ARG(long, dim_feedforward) = 2048;
    TAPEGRAD_ARG(double, dropout) = 0.1;
    TAPEGRAD_ARG(TransformerActivation, activation) = TransformerActivation::relu;
    TAPEGRAD_ARG(double, layer_norm_eps) = 1e-5;
    TAPEGRAD_ARG(bool, batch_first) = false;
    TAPEGRAD_ARG(bool, norm_first) = false;
    TAPEGRAD_ARG(std::uint64_t, seed) = 0;
};

/// torch.nn.TransformerEncoderLayer: self-attention and a feed-forward block,
///   post-norm: x = norm1(x + sa(x)); x = norm2(x + ff(x))
///   pre-norm (norm_first): x = x + sa(norm1(x)); x = x + ff(norm2(x))
/// sa(x) = dropout1(self_attn(x, x, x)), ff(x) = dropout2(linear2(dropout(activation(linear1(x))))).
template <class T>
class TransformerEncoderLayer final : public Module<T> {
public:
    explicit TransformerEncoderLayer(TransformerEncoderLayerOptions options);
    TransformerEncoderLayer(long d_model, long nhead)
        : TransformerEncoderLayer(TransformerEncoderLayerOptions(d_model, nhead)) {}

    /// src (L, N, E) or (N, L, E) with batch_first; the same shape.
    Var<T> forward(const Var<T>& src, const AttentionMasks& masks);
    Var<T> forward(const Var<T>& src) override { return forward(src, AttentionMasks{}); }
    /// `TransformerEncoderLayer(d_model=4, nhead=2, dim_feedforward=8, ...)`.
    std::string describe() const override;

    const TransformerEncoderLayerOptions& options() const { return options_; }
    MultiheadAttention<T>& self_attn() const { return *self_attn_; }
    Linear<T>& linear1() const { return *linear1_; }
    Linear<T>& linear2() const { return *linear2_; }
    LayerNorm<T>& norm1() const { return *norm1_; }
    LayerNorm<T>& norm2() const { return *norm2_; }

private:
    Var<T> self_attention_block(const Var<T>& x, const AttentionMasks& masks);
    Var<T> feed_forward_block(const Var<T>& x);

    TransformerEncoderLayerOptions options_;
    std::shared_ptr<MultiheadAttention<T>> self_attn_;
    std::shared_ptr<Linear<T>> linear1_;
    std::shared_ptr<Dropout<T>> dropout_;
    std::shared_ptr<Linear<T>> linear2_;
    std::shared_ptr<LayerNorm<T>> norm1_;
    std::shared_ptr<LayerNorm<T>> norm2_;
    std::shared_ptr<Dropout<T>> dropout1_;
    std::shared_ptr<Dropout<T>> dropout2_;
};

extern template class MultiheadAttention<float>;
extern template class MultiheadAttention<double>;
extern template class TransformerEncoderLayer<float>;
extern template class TransformerEncoderLayer<double>;

}  // namespace ad::nn
