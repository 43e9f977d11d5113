// Teach a small causal (decoder-only) transformer to reverse a sequence of
// digits, trained with teacher forcing and tested by greedy decoding.
//
//   The task: L digits x_1..x_L (0..9), a separator, then the same digits
//   reversed, y_i = x_{L+1-i}. The model reads
//     [x_1 .. x_L, SEP, y_1 .. y_{L-1}]   (2L tokens)
//   and at the positions from SEP on predicts y_1 .. y_L: the cross-entropy
//   is taken at those L positions only. A causal mask keeps every position
//   from seeing the ones after it, so one forward pass trains all L steps.
//   The model: token and learned position embeddings (d_model 64), two
//   pre-norm nn::TransformerEncoderLayer (4 heads, feed-forward 256, no
//   dropout) with is_causal, a final LayerNorm and a linear head over the
//   11 tokens; AdamW with WarmupCosineLR and clip_grad_norm 1.
//   Batches of 64 fresh sequences per step, drawn from a seeded generator.
//
// Prints the model, a progress line every so many steps (loss, teacher-forced
// token accuracy of the batch, learning rate), then the greedy decodings of a
// fresh seeded test set (each prediction fed back as the next input): a few
// examples, the token accuracy (fraction of output digits right) and the
// sequence accuracy (all L right). The last line is exactly
// "token accuracy <value>"; exits 1 if it is below the floor printed before it.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nn/nn.hpp>

namespace nn = ad::nn;
using ad::IndexArray;
using ad::Var;

namespace {

constexpr long digits = 10;         // tokens 0..9
constexpr long separator = digits;  // token 10
constexpr long vocabulary = digits + 1;

/// A batch of the task: inputs (N, 2L) with teacher forcing, targets (N, L).
struct Batch {
    IndexArray inputs;
    IndexArray targets;
};

Batch make_batch(std::size_t n, std::size_t length, std::mt19937_64& rng) {
    Batch b{IndexArray::from_shape({n, 2 * length}), IndexArray::from_shape({n, length})};
    for (std::size_t s = 0; s < n; ++s) {
        for (std::size_t i = 0; i < length; ++i) b.inputs(s, i) = long(nn::uniform_index(rng, digits));
        b.inputs(s, length) = separator;
        for (std::size_t i = 0; i < length; ++i) {
            b.targets(s, i) = b.inputs(s, length - 1 - i);
            if (i + 1 < length) b.inputs(s, length + 1 + i) = b.targets(s, i);
        }
    }
    return b;
}

struct ModelOptions {
    std::size_t max_length;  // longest input the position table covers
    long d_model = 64;
    long heads = 4;
    long feed_forward = 256;
    std::size_t layers = 2;
};

/// Decoder-only transformer: embeddings, causal encoder layers, LayerNorm,
/// linear head. logits() takes token indices, so it is not Module::forward.
class ReverseTransformer final : public nn::Module<float> {
public:
    ReverseTransformer(const ModelOptions& o, std::uint64_t seed)
        : token_(register_module("token_embedding", nn::Embedding<float>(nn::EmbeddingOptions(vocabulary, o.d_model)
                                                                             .seed(nn::derive_seed(seed, 0))))),
          position_(register_module("position_embedding",
                                    nn::Embedding<float>(nn::EmbeddingOptions(long(o.max_length), o.d_model)
                                                             .seed(nn::derive_seed(seed, 1))))),
          layers_(register_module("layers", nn::ModuleList<float>())),
          norm_(register_module("norm", nn::LayerNorm<float>({std::size_t(o.d_model)}))),
          head_(register_module("head",
                                nn::Linear<float>(std::size_t(o.d_model), vocabulary, nn::derive_seed(seed, 2)))),
          d_model_(o.d_model) {
        for (std::size_t i = 0; i < o.layers; ++i) {
            auto layer = std::make_shared<nn::TransformerEncoderLayer<float>>(
                nn::TransformerEncoderLayerOptions(o.d_model, o.heads)
                    .dim_feedforward(o.feed_forward)
                    .dropout(0.0)
                    .batch_first(true)
                    .norm_first(true)
                    .seed(nn::derive_seed(seed, 10 + i)));
            layers_->push_back(layer);
            blocks_.push_back(layer);
        }
    }

    /// tokens (N, T) -> logits (N (T - from), V) of positions from..T-1, row
    /// n (T - from) + t for sample n, position from + t.
    Var<float> logits(const IndexArray& tokens, std::size_t from) {
        const std::size_t n = tokens.shape()[0], t = tokens.shape()[1];
        IndexArray positions = IndexArray::from_shape({t});
        for (std::size_t i = 0; i < t; ++i) positions(i) = long(i);
        Var<float> x = (*token_)(tokens) + (*position_)(positions);  // (N, T, D) + (T, D)
        nn::AttentionMasks causal;
        causal.is_causal = true;
        for (const auto& block : blocks_) x = block->forward(x, causal);
        if (from > 0) x = ad::slice(x, 1, from, t);
        x = ad::reshape(x, {long(n * (t - from)), d_model_});
        return (*head_)((*norm_)(x));
    }

    const nn::TransformerEncoderLayer<float>& block(std::size_t i) const { return *blocks_.at(i); }

private:
    std::shared_ptr<nn::Embedding<float>> token_, position_;
    std::shared_ptr<nn::ModuleList<float>> layers_;
    std::vector<std::shared_ptr<nn::TransformerEncoderLayer<float>>> blocks_;  // layers_' members, typed
    std::shared_ptr<nn::LayerNorm<float>> norm_;
    std::shared_ptr<nn::Linear<float>> head_;
    long d_model_;
};

std::vector<std::size_t> flat_classes(const IndexArray& targets) {
    return std::vector<std::size_t>(targets.begin(), targets.end());
}

/// Greedy decoding: from [x, SEP] append the argmax token L times (N at once),
/// each step one causal pass over the prefix. Returns the predictions (N, L).
IndexArray greedy_decode(ReverseTransformer& model, const IndexArray& inputs, std::size_t length) {
    ad::NoGrad no_grad;
    const std::size_t n = inputs.shape()[0];
    IndexArray predicted = IndexArray::from_shape({n, length});
    for (std::size_t step = 0; step < length; ++step) {
        const std::size_t t = length + 1 + step;  // prefix: the digits, SEP, step predictions
        IndexArray prefix = IndexArray::from_shape({n, t});
        for (std::size_t s = 0; s < n; ++s) {
            for (std::size_t i = 0; i <= length; ++i) prefix(s, i) = inputs(s, i);
            for (std::size_t i = 0; i < step; ++i) prefix(s, length + 1 + i) = predicted(s, i);
        }
        IndexArray next = ad::argmax(model.logits(prefix, t - 1), 1);  // (N,)
        for (std::size_t s = 0; s < n; ++s) predicted(s, step) = next(s);
    }
    return predicted;
}

std::string digits_string(const IndexArray& a, std::size_t row, std::size_t count) {
    std::string out;
    for (std::size_t i = 0; i < count; ++i) out += char('0' + a(row, i));
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    std::size_t steps = 600, length = 8, batch_size = 64, test_size = 1000, every = 100;
    double learning_rate = 1e-3;
    std::uint64_t seed = 0;
    bool quick = false;
    CLI::App app{"Reverse sequences of digits with a small causal transformer, tested by greedy decoding"};
    app.add_option("--steps", steps, "training steps (batches of 64)")
        ->check(CLI::Range(1, 1000000))
        ->capture_default_str();
    app.add_option("--lr", learning_rate, "AdamW peak learning rate")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--seed", seed, "seed of the weights, the batches and the test set")->capture_default_str();
    app.add_option("--length", length, "digits per sequence")->check(CLI::Range(1, 64))->capture_default_str();
    app.add_flag("--quick", quick, "length 5, 200 steps, 500 test sequences, floor 0.9: for CTest");
    CLI11_PARSE(app, argc, argv);
    if (quick) {  // --steps and --length given explicitly still apply
        if (app.count("--length") == 0) length = 5;
        if (app.count("--steps") == 0) steps = 200;
        test_size = 500, every = 50;
    }
    const double floor = quick ? 0.90 : 0.99;

    try {
        const auto start = std::chrono::steady_clock::now();
        ModelOptions options;
        options.max_length = 2 * length;
        ReverseTransformer model(options, nn::derive_seed(seed, 0));
        fmt::print("reverse {} digits (0-9): {} steps of {} sequences, greedy test on {}\n", length, steps, batch_size,
                   test_size);
        fmt::print("model: Embedding({}, {}) + positions, {} x\n  {},\n  LayerNorm, Linear({}, {}); {} parameters\n",
                   vocabulary, options.d_model, options.layers, model.block(0).describe(), options.d_model, vocabulary,
                   model.parameter_count());
        std::fflush(stdout);

        nn::AdamW<float> optimizer(model, [&] {
            nn::AdamWOptions o;
            o.learning_rate = learning_rate;
            return o;
        }());
        nn::WarmupCosineLR<float> schedule(optimizer, std::max<std::size_t>(1, steps / 10), steps, 0.05);
        std::mt19937_64 data_rng(nn::derive_seed(seed, 1));
        ad::Tape tape;
        double loss_sum = 0, accuracy_sum = 0;
        std::size_t since = 0;
        for (std::size_t step = 1; step <= steps; ++step) {
            Batch batch = make_batch(batch_size, length, data_rng);
            optimizer.zero_grad();
            Var<float> logits = model.logits(batch.inputs, length);  // positions SEP .. 2L-1
            std::vector<std::size_t> classes = flat_classes(batch.targets);
            Var<float> loss = nn::softmax_cross_entropy(logits, classes);
            loss.backward();
            nn::clip_grad_norm(model, 1.0);
            const double rate = optimizer.learning_rate();
            optimizer.step();
            schedule.step();

            IndexArray predicted = ad::argmax(logits, 1);
            std::size_t correct = 0;
            for (std::size_t i = 0; i < classes.size(); ++i) correct += std::size_t(predicted(i)) == classes[i];
            loss_sum += loss.item();
            accuracy_sum += double(correct) / double(classes.size());
            ++since;
            tape.clear();
            if (step % every == 0 || step == steps) {
                fmt::print("step {:>5}/{}  loss {:.4f}  token accuracy (teacher forced) {:.4f}  lr {:.2e}\n", step,
                           steps, loss_sum / double(since), accuracy_sum / double(since), rate);
                std::fflush(stdout);
                loss_sum = accuracy_sum = 0, since = 0;
            }
        }
        const double train_seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

        model.eval();
        std::mt19937_64 test_rng(nn::derive_seed(seed, 2));
        Batch test = make_batch(test_size, length, test_rng);
        IndexArray predicted = greedy_decode(model, test.inputs, length);
        std::size_t tokens_right = 0, sequences_right = 0;
        for (std::size_t s = 0; s < test_size; ++s) {
            std::size_t right = 0;
            for (std::size_t i = 0; i < length; ++i) right += predicted(s, i) == test.targets(s, i);
            tokens_right += right;
            sequences_right += right == length;
        }
        // The first five test sequences, then the first three wrong ones among the rest.
        fmt::print("greedy decoding of {} test sequences (input -> predicted, expected):\n", test_size);
        for (std::size_t s = 0, wrong_shown = 0; s < test_size; ++s) {
            std::string got = digits_string(predicted, s, length), want = digits_string(test.targets, s, length);
            if (s >= 5 && (got == want || wrong_shown == 3)) continue;
            wrong_shown += s >= 5;
            fmt::print("  {:>4}: {} -> {}  {}{}\n", s, digits_string(test.inputs, s, length), got, want,
                       got == want ? "" : "  wrong");
        }
        const double token_accuracy = double(tokens_right) / double(test_size * length);
        const double total_seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        fmt::print("sequence accuracy {:.4f}\n", double(sequences_right) / double(test_size));
        fmt::print("time: training {:.1f} s, in all {:.1f} s\n", train_seconds, total_seconds);
        fmt::print("token accuracy floor for this run: {:.2f} (chance: {:.2f})\n", floor, 1.0 / double(digits));
        fmt::print("token accuracy {:.4f}\n", token_accuracy);
        return token_accuracy >= floor ? 0 : 1;
    } catch (const std::exception& e) {
        fmt::print(stderr, "transformer: {}\n", e.what());
        return 1;
    }
}
