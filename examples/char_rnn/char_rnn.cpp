// A character-level language model: an embedding, a GRU and a linear
// read-out predict each next byte of a text (by default Debian's copy of the
// GNU GPL version 3, /usr/share/common-licenses/GPL-3; --text overrides it).
//
// The vocabulary is the text's distinct bytes, sorted; the last 10% of the
// text is held out for validation. Training is truncated backpropagation
// through time: `--batch` parallel streams each read their own contiguous
// part of the training text, `--seq-len` characters per step; the GRU's
// hidden state carries from one window to the next (back to zero when the
// streams start over), cut from the tape with detach(), so each step's tape
// holds one window only. Dropout 0.5 on the GRU's output, AdamW (weight decay
// 0.1) with a short warm-up and a cosine decay, gradients clipped to norm 5.
// The text is small (35 kB) and its last 10% (a disclaimer in capitals, how
// to apply the licence) differs in kind from the rest, so the model soon
// overfits: 300 steps by default.
//
// Prints the unigram entropy of the training text (the bits per character of
// a model that ignores the context), progress lines with the training loss in
// nats per character and, every `--eval-every` steps, the validation loss in
// bits per character (under ad::NoGrad, the state carried through the
// held-out text). At the end it samples `--sample` characters from the seed
// "The " at `--temperature`, one character at a time with the carried state.
// Exits 1 when the final validation bits per character is above its floor
// (well below the unigram entropy). The last line is
// `validation bits per character <value>`.

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nn/nn.hpp>

namespace nn = ad::nn;
using ad::Var;

namespace {

/// The text as indices into its sorted distinct bytes.
struct Corpus {
    std::vector<unsigned char> symbols;         // index -> byte
    std::array<std::int64_t, 256> index{};      // byte -> index, -1 if absent
    std::vector<std::int64_t> train, validation;
};

Corpus make_corpus(const std::string& text) {
    Corpus c;
    std::array<bool, 256> present{};
    for (unsigned char ch : text) present[ch] = true;
    c.index.fill(-1);
    for (int b = 0; b < 256; ++b) {
        if (present[std::size_t(b)]) {
            c.index[std::size_t(b)] = std::int64_t(c.symbols.size());
            c.symbols.push_back(static_cast<unsigned char>(b));
        }
    }
    const std::size_t split = text.size() - text.size() / 10;
    for (std::size_t i = 0; i < text.size(); ++i) {
        (i < split ? c.train : c.validation).push_back(c.index[static_cast<unsigned char>(text[i])]);
    }
    return c;
}

/// Entropy of the byte frequencies of `tokens`, in bits per character.
double unigram_bits(const std::vector<std::int64_t>& tokens, std::size_t vocab) {
    std::vector<double> count(vocab, 0.0);
    for (auto t : tokens) count[std::size_t(t)] += 1;
    double h = 0;
    for (double n : count) {
        if (n > 0) h -= n / double(tokens.size()) * std::log2(n / double(tokens.size()));
    }
    return h;
}

/// Embedding -> GRU -> Linear: tokens (T, N) and a hidden state
/// (layers, N, H) to logits (T * N, V), row t * N + n, and the next state.
class CharModel : public nn::Module<float> {
public:
    CharModel(long vocab, long embedding, long hidden, long layers, double dropout, std::uint64_t seed)
        : embed_(register_module("embed", nn::Embedding<float>(nn::EmbeddingOptions(vocab, embedding)
                                                                   .seed(nn::derive_seed(seed, 0))))),
          gru_(register_module("gru", nn::GRU<float>(nn::GRUOptions(embedding, hidden)
                                                         .num_layers(layers)
                                                         .seed(nn::derive_seed(seed, 1))))),
          drop_(register_module("drop", nn::Dropout<float>(nn::DropoutOptions(dropout).seed(nn::derive_seed(seed, 3))))),
          head_(register_module("head", nn::Linear<float>(std::size_t(hidden), std::size_t(vocab),
                                                          nn::derive_seed(seed, 2)))),
          hidden_(hidden) {}

    struct Step {
        Var<float> logits;
        Var<float> state;
    };
    Step step(const ad::IndexArray& tokens, const Var<float>& state) {
        nn::GRUOutput<float> out = gru_->forward((*embed_)(tokens), state);
        Var<float> flat = (*drop_)(ad::reshape(out.output, {-1, hidden_}));
        return {(*head_)(flat), out.h_n};
    }
    using nn::Module<float>::forward;
    Var<float> forward(const Var<float>&) override {
        throw ad::value_error("CharModel: takes token indices, call step()");
    }

private:
    std::shared_ptr<nn::Embedding<float>> embed_;
    std::shared_ptr<nn::GRU<float>> gru_;
    std::shared_ptr<nn::Dropout<float>> drop_;
    std::shared_ptr<nn::Linear<float>> head_;
    long hidden_;
};

/// The first index of each of `streams` contiguous parts of length `span`.
std::vector<std::size_t> stream_starts(std::size_t streams, std::size_t span) {
    std::vector<std::size_t> starts(streams);
    for (std::size_t n = 0; n < streams; ++n) starts[n] = n * span;
    return starts;
}

/// Inputs (T, N) and targets (row t * N + n) of the window at `offset` of every stream.
void window(const std::vector<std::int64_t>& tokens, const std::vector<std::size_t>& starts, std::size_t offset,
            std::size_t length, ad::IndexArray& inputs, std::vector<std::size_t>& targets) {
    const std::size_t streams = starts.size();
    inputs = ad::IndexArray::from_shape({length, streams});
    targets.resize(length * streams);
    for (std::size_t t = 0; t < length; ++t) {
        for (std::size_t n = 0; n < streams; ++n) {
            std::size_t i = starts[n] + offset + t;
            inputs(t, n) = tokens[i];
            targets[t * streams + n] = std::size_t(tokens[i + 1]);
        }
    }
}

/// Mean cross-entropy in bits per character over the validation text, read as
/// 8 streams in one pass each (the state carried through each stream).
double validation_bits(CharModel& model, const std::vector<std::int64_t>& tokens) {
    ad::NoGrad no_grad;
    model.eval();
    const std::size_t streams = 8, span = (tokens.size() - 1) / streams;
    ad::IndexArray inputs;
    std::vector<std::size_t> targets;
    window(tokens, stream_starts(streams, span), 0, span, inputs, targets);
    CharModel::Step out = model.step(inputs, Var<float>());
    model.train();
    return double(nn::softmax_cross_entropy(out.logits, targets).item()) / std::log(2.0);
}

/// `count` characters after `seed_text`, drawn one at a time from softmax(logits / temperature).
std::string sample(CharModel& model, const Corpus& corpus, const std::string& seed_text, std::size_t count,
                   double temperature, std::uint64_t seed) {
    ad::NoGrad no_grad;
    model.eval();
    std::mt19937_64 rng(seed);
    Var<float> state;
    std::string out = seed_text;
    std::vector<std::int64_t> prompt;
    for (unsigned char ch : seed_text) {
        if (corpus.index[ch] >= 0) prompt.push_back(corpus.index[ch]);
    }
    if (prompt.empty()) prompt.push_back(0);
    ad::IndexArray inputs = ad::IndexArray::from_shape({prompt.size(), 1});
    for (std::size_t t = 0; t < prompt.size(); ++t) inputs(t, 0) = prompt[t];
    CharModel::Step step = model.step(inputs, state);
    std::vector<double> p(corpus.symbols.size());
    for (std::size_t k = 0; k < count; ++k) {
        const auto& logits = step.logits.value();
        const std::size_t last = logits.shape()[0] - 1;
        double top = -INFINITY;
        for (std::size_t j = 0; j < p.size(); ++j) top = std::max(top, double(logits(last, j)) / temperature);
        for (std::size_t j = 0; j < p.size(); ++j) p[j] = std::exp(double(logits(last, j)) / temperature - top);
        std::discrete_distribution<std::size_t> pick(p.begin(), p.end());
        std::size_t next = pick(rng);
        out.push_back(char(corpus.symbols[next]));
        ad::IndexArray one = ad::IndexArray::from_shape({1, 1});
        one(0, 0) = std::int64_t(next);
        step = model.step(one, step.state);
    }
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    std::string text_file = "/usr/share/common-licenses/GPL-3";
    std::size_t steps = 300, hidden = 256, seq_len = 64, batch = 32, sample_count = 400, eval_every = 50;
    double learning_rate = 3e-3, temperature = 0.8, dropout = 0.5, weight_decay = 0.1;
    long embedding = 64;
    std::uint64_t seed = 0;
    bool quick = false;
    CLI::App app{"A GRU character model trained with truncated backpropagation through time, then sampled"};
    app.add_option("--text", text_file, "the text to model")->capture_default_str();
    app.add_option("--steps", steps, "training steps (windows)")->check(CLI::Range(1, 10000000))->capture_default_str();
    app.add_option("--lr", learning_rate, "Adam learning rate")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--seed", seed, "seed of the initial weights and the sampling")->capture_default_str();
    app.add_option("--hidden", hidden, "GRU hidden size")->check(CLI::Range(1, 4096))->capture_default_str();
    app.add_option("--seq-len", seq_len, "characters per truncated-BPTT window")->check(CLI::Range(1, 100000))
        ->capture_default_str();
    app.add_option("--batch", batch, "parallel streams")->check(CLI::Range(1, 4096))->capture_default_str();
    app.add_option("--eval-every", eval_every, "steps between validation passes")->check(CLI::Range(1, 10000000))
        ->capture_default_str();
    app.add_option("--dropout", dropout, "dropout on the GRU's output")->check(CLI::Range(0.0, 0.95))
        ->capture_default_str();
    app.add_option("--weight-decay", weight_decay, "AdamW weight decay")->capture_default_str();
    app.add_option("--embedding", embedding, "embedding width")->capture_default_str();
    app.add_option("--sample", sample_count, "characters to sample at the end")->capture_default_str();
    app.add_option("--temperature", temperature, "sampling temperature")->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_flag("--quick", quick, "a short run for CTest: hidden 128, windows of 32, 300 steps");
    CLI11_PARSE(app, argc, argv);
    if (quick) {
        // Only the options left at their defaults change.
        if (app.count("--steps") == 0) steps = 300;
        if (app.count("--hidden") == 0) hidden = 128;
        if (app.count("--seq-len") == 0) seq_len = 32;
        if (app.count("--eval-every") == 0) eval_every = 100;
        if (app.count("--sample") == 0) sample_count = 200;
    }
    const double floor_bits = quick ? 3.3 : 3.0;  // the check: final validation bits/char below this

    std::ifstream in(text_file, std::ios::binary);
    if (!in) {
        fmt::print(stderr, "char_rnn: cannot read the text '{}' (pass --text FILE)\n", text_file);
        return 2;
    }
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    Corpus corpus = make_corpus(text);
    const std::size_t vocab = corpus.symbols.size();
    const std::size_t span = (corpus.train.size() - 1) / batch;  // characters per stream
    if (span < seq_len + 1 || corpus.validation.size() < 64) {
        fmt::print(stderr, "char_rnn: '{}' ({} bytes) is too short for {} streams of windows of {}\n", text_file,
                   text.size(), batch, seq_len);
        return 2;
    }
    const double unigram = unigram_bits(corpus.train, vocab);
    fmt::print("char_rnn: {} ({} bytes, {} distinct): {} training and {} validation characters\n", text_file,
               text.size(), vocab, corpus.train.size(), corpus.validation.size());
    fmt::print("model: Embedding({}, {}) -> GRU({}, {}) -> Dropout({:g}) -> Linear({}, {});\n"
               "AdamW lr {:g} (warm-up, cosine decay), weight decay {:g}, gradient norm clipped to 5\n",
               vocab, embedding, embedding, hidden, dropout, hidden, vocab, learning_rate, weight_decay);
    fmt::print("truncated BPTT: {} streams of {} characters, windows of {}; {} steps (seed {})\n", batch, span,
               seq_len, steps, seed);
    fmt::print("unigram entropy of the training text {:.3f} bits per character; floor {:g}\n", unigram, floor_bits);

    CharModel model(long(vocab), embedding, long(hidden), 1, dropout, seed);
    nn::AdamWOptions adam;
    adam.learning_rate = learning_rate;
    adam.weight_decay = weight_decay;
    nn::AdamW<float> optimizer(model, adam);
    nn::WarmupCosineLR<float> schedule(optimizer, steps / 20, steps, 0.05);
    const std::vector<std::size_t> starts = stream_starts(batch, span);
    const std::size_t windows = span / seq_len;  // per pass over the streams
    ad::IndexArray inputs;
    std::vector<std::size_t> targets;
    Var<float> state;
    double running = 0;
    std::size_t running_count = 0;
    double bits = 0;
    auto begin = std::chrono::steady_clock::now();
    {
        ad::Tape tape;
        for (std::size_t step = 1; step <= steps; ++step) {
            const std::size_t w = (step - 1) % windows;
            if (w == 0) state = Var<float>();  // back to the start of every stream: zero state
            window(corpus.train, starts, w * seq_len, seq_len, inputs, targets);
            optimizer.zero_grad();
            CharModel::Step out = model.step(inputs, state);
            Var<float> loss = nn::softmax_cross_entropy(out.logits, targets);
            loss.backward();
            nn::clip_grad_norm(model, 5.0);
            optimizer.step();
            schedule.step();
            state = out.state.detach();  // carried, cut from the tape
            running += double(loss.item());
            ++running_count;
            tape.clear();
            if (step % eval_every == 0 || step == steps) {
                bits = validation_bits(model, corpus.validation);
                double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
                fmt::print("step {:>5}  train loss {:.3f} nats/char  validation {:.3f} bits/char  ({:.1f} s)\n", step,
                           running / double(running_count), bits, seconds);
                running = 0;
                running_count = 0;
            }
        }
    }

    fmt::print("\nsample ({} characters, temperature {:g}, seed {}):\n", sample_count, temperature, seed);
    fmt::print("{}\n\n", sample(model, corpus, "The ", sample_count, temperature, nn::derive_seed(seed, 3)));

    const bool ok = bits < floor_bits;
    fmt::print("unigram {:.3f} bits/char, floor {:g}: {}\n", unigram, floor_bits, ok ? "below the floor" : "ABOVE THE FLOOR");
    fmt::print("validation bits per character {:.4f}\n", bits);
    return ok ? 0 : 1;
}
