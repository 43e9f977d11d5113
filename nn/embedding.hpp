#pragma once
// Embedding: a lookup table of V vectors of width D, as torch.nn.Embedding.
//   tokens (any shape, int64 in [0, V)) -> tokens.shape + (D,)
// The table "weight" (V, D) starts N(0, 1) (nn::normal). ad::embedding does
// the lookup; its VJP adds each output row's cotangent into its token's row.

#include <cstdint>
#include <string>

#include "nn/module.hpp"

namespace ad::nn {

struct EmbeddingOptions {
    EmbeddingOptions(long num_embeddings, long embedding_dim)
        : num_embeddings_(num_embeddings), embedding_dim_(embedding_dim) {}
    TAPEGRAD_ARG(long, num_embeddings);
    TAPEGRAD_ARG(long, embedding_dim);
    /// Seeds the table's draws (nn::derive_seed(seed, 0)).
    TAPEGRAD_ARG(std::uint64_t, seed) = 0;
};

template <class T>
class Embedding final : public Module<T> {
public:
    explicit Embedding(EmbeddingOptions options);
    Embedding(long num_embeddings, long embedding_dim) : Embedding(EmbeddingOptions(num_embeddings, embedding_dim)) {}

    /// The rows of the table at `tokens`: shape tokens.shape + (D,). A token
    /// outside [0, V) is a value_error naming the layer, the token and V.
    Var<T> forward(const IndexArray& tokens);
    Var<T> operator()(const IndexArray& tokens) {
        return this->call([&] { return forward(tokens); });
    }
    /// forward(Var) stays Module's: an Embedding takes indices, not values.
    using Module<T>::forward;
    using Module<T>::operator();
    /// "Embedding(10, 3)".
    std::string describe() const override;

    const Var<T>& weight() const { return weight_; }
    const EmbeddingOptions& options() const { return options_; }

private:
    EmbeddingOptions options_;
    Var<T> weight_;
};

extern template class Embedding<float>;
extern template class Embedding<double>;

}  // namespace ad::nn
