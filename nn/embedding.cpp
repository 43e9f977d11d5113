#include "nn/embedding.hpp"

#include <random>

#include <fmt/format.h>

#include "nn/random.hpp"

namespace ad::nn {

template <class T>
Embedding<T>::Embedding(EmbeddingOptions options) : options_(options) {
    if (options_.num_embeddings() < 1 || options_.embedding_dim() < 1) {
        throw value_error(fmt::format("{}: num_embeddings and embedding_dim must be positive", describe()));
    }
    const std::size_t v = static_cast<std::size_t>(options_.num_embeddings());
    const std::size_t d = static_cast<std::size_t>(options_.embedding_dim());
    std::mt19937_64 rng(derive_seed(options_.seed(), 0));
    Array<T> table = Array<T>::from_shape({v, d});
    for (auto& x : table) x = static_cast<T>(normal(rng));
    weight_ = this->register_parameter("weight", std::move(table));
}

template <class T>
Var<T> Embedding<T>::forward(const IndexArray& tokens) {
    const std::int64_t vocabulary = options_.num_embeddings();
    const std::int64_t* t = tokens.data();
    for (std::size_t i = 0; i < tokens.size(); ++i) {
        if (t[i] < 0 || t[i] >= vocabulary) {
            throw value_error(fmt::format("{}: token {} (at flat position {} of tokens {}) is out of range [0, {})",
                                          describe(), t[i], i, shape_string_of(tokens), vocabulary));
        }
    }
    return embedding(weight_, tokens);
}

template <class T>
std::string Embedding<T>::describe() const {
    return fmt::format("Embedding({}, {})", options_.num_embeddings(), options_.embedding_dim());
}

template class Embedding<float>;
template class Embedding<double>;

}  // namespace ad::nn
