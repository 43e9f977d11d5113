// mlp_step/<impl>/<model>/threads:<n>: one float32 training step (forward,
// backward, SGD update) of the textbook's sigmoid MLP with loss
// 1/2 sum (A^L - Y)^2, from the same data and initial weights:
//
//   tape      our engine through nn: MLP, nn::half_sse, SGD, one ad::Tape
//             cleared after every step
//   hand      the hand-derived backward pass (backprop-math.md section 3) with
//             the tape's BLAS calls (GEMM, or GEMV / GER on vector shapes) into
//             buffers allocated once, and the engine's own kernels
//             (autodiff/kernels.hpp: vectorised sigmoid, SGD's axpy): the
//             floor for any tape
//   textbook  nn::textbook_backward as written (allocates its arrays every call)
//   libtorch  see torch_peers.cpp
//   paired    (xor only) tape and hand steps in alternating blocks of one
//             benchmark: the tape/hand ratio with both under the same load
//   anomaly, profile  (xor, mnist) the tape step with anomaly mode or the
//             profiler off and on in alternating blocks: `on_over_off`
//
// sgemm/<n>/threads:<n>: the GEMM rate of this machine measured in the same
// run, for the "share of the sgemm rate" ratios.

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <xtensor-blas/xlinalg.hpp>
#include <xtensor/xadapt.hpp>
#include <xtensor/xnoalias.hpp>
#include <xtensor/xtensor.hpp>

#include "autodiff/blas.hpp"
#include "autodiff/kernels.hpp"
#include "bench_common.hpp"
#include "bench_suite.hpp"
#include "nn/nn.hpp"

namespace {

using bench::ModelData;

ad::Array<float> to_array(const std::vector<float>& v, std::vector<std::size_t> shape) {
    return ad::Array<float>(xt::adapt(v, shape));
}

// first_loss: the loss of the first step, from the shared initial weights: the
// same in every implementation (up to float rounding), a check that they all
// compute the same step.
void set_step_counters(benchmark::State& state, const ModelData& d, float first_loss) {
    state.counters["first_loss"] = double(first_loss);
    state.counters["gemm_flops"] = bench::step_gemm_flops(d.spec);
    state.counters["GFLOPS"] = benchmark::Counter(bench::step_gemm_flops(d.spec) * 1e-9 * double(state.iterations()),
                                                  benchmark::Counter::kIsRate);
}

// ---------------------------------------------------------------- tape

struct TapeModel {
    explicit TapeModel(const ModelData& d)
        : model(d.spec.sizes, ad::nn::Activation::sigmoid, 0),
          x(ad::constant(to_array(d.x, {d.spec.batch, d.spec.sizes.front()}))),
          y(ad::constant(to_array(d.y, {d.spec.batch, d.spec.sizes.back()}))),
          sgd(model, ad::nn::SGDOptions{bench::kLearningRate, 0, 0}) {
        for (std::size_t l = 0; l < model.depth(); ++l) {
            const std::size_t in = d.spec.sizes[l], out = d.spec.sizes[l + 1];
            model.linear(l).weight().mutable_value() = to_array(d.weights[l], {out, in});
            model.linear(l).bias().mutable_value() = to_array(d.biases[l], {out});
        }
    }

    /// One step on `tape` (current); returns the loss.
    float step(ad::Tape& tape) {
        sgd.zero_grad();
        auto loss = ad::nn::half_sse(model(x), y);
        loss.backward();
        sgd.step();
        float value = loss.item();
        tape.clear();
        return value;
    }

    ad::nn::MLP<float> model;
    ad::Var<float> x, y;
    ad::nn::SGD<float> sgd;
};

void tape_step(benchmark::State& state, const std::string& name, int threads) {
    bench::set_blas_threads(threads);
    const ModelData& d = bench::model_data(name);
    TapeModel m(d);
    ad::Tape tape;
    const float first = m.step(tape);  // warm-up: the tape's storage is sized by the first step
    for (auto _ : state) benchmark::DoNotOptimize(m.step(tape));
    set_step_counters(state, d, first);
}

// ---------------------------------------------------------------- hand

// The textbook's equations with every buffer allocated once:
//   Z^l = A^(l-1) (W^l)^T + b^l, A^l = sigma(Z^l);  Delta^L = (A^L - Y) A^L (1 - A^L)
//   Delta^l = (Delta^(l+1) W^(l+1)) A^l (1 - A^l);  dW^l = (Delta^l)^T A^(l-1), db^l = colsum Delta^l
struct HandModel {
    explicit HandModel(const ModelData& d)
        : sizes(d.spec.sizes), B(d.spec.batch), L(sizes.size() - 1), x(d.x), y(d.y), W(d.weights), b(d.biases) {
        for (std::size_t l = 1; l <= L; ++l) {
            A.emplace_back(B * sizes[l]);
            delta.emplace_back(B * sizes[l]);
            dW.emplace_back(sizes[l] * sizes[l - 1]);
            db.emplace_back(sizes[l]);
        }
    }

    const float* activation(std::size_t l) const { return l == 0 ? x.data() : A[l - 1].data(); }

    /// C (m x n) = op(A) op(B), A stored with rows of lda and B of ldb, by
    /// the BLAS routine the engine picks for the shape (detail::matmul_into in
    /// autodiff/ops/linalg.cpp): GEMV when either side is a vector, GER for an
    /// outer product (k = 1), else GEMM, through the engine's own CBLAS calls
    /// (autodiff/blas.hpp). The floor uses the tape's BLAS calls.
    static void product(bool ta, bool tb, int m, int n, int k, const float* a, int lda, const float* b, int ldb,
                        float* c) {
        if (n == 1 && m > 1) {
            ad::blas::gemv(ta, ta ? k : m, lda, 1.0f, a, b, 0.0f, c);
        } else if (m == 1 && n > 1) {
            ad::blas::gemv(!tb, tb ? n : k, ldb, 1.0f, b, a, 0.0f, c);
        } else if (k == 1) {
            std::fill(c, c + std::size_t(m) * std::size_t(n), 0.0f);
            ad::blas::ger(m, n, a, b, c);
        } else {
            ad::blas::gemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c);
        }
    }

    // The step's three kinds of product, for layer l: Z^l = A^(l-1) (W^l)^T,
    // dW^l = (Delta^l)^T A^(l-1), and Delta^(l-1) (before sigma') = Delta^l W^l.
    void forward_gemm(std::size_t l) {
        const int n = int(sizes[l]), k = int(sizes[l - 1]);
        product(false, true, int(B), n, k, activation(l - 1), k, W[l - 1].data(), k, A[l - 1].data());
    }
    void weight_grad_gemm(std::size_t l) {
        const int n = int(sizes[l]), k = int(sizes[l - 1]);
        product(true, false, n, k, int(B), delta[l - 1].data(), n, activation(l - 1), k, dW[l - 1].data());
    }
    void input_grad_gemm(std::size_t l) {
        const int n = int(sizes[l]), k = int(sizes[l - 1]);
        product(false, false, int(B), k, n, delta[l - 1].data(), n, W[l - 1].data(), k, delta[l - 2].data());
    }

    /// The step's GEMMs alone, in the step's order and on its buffers: what
    /// the step costs in BLAS at these shapes and this thread count.
    void gemms() {
        for (std::size_t l = 1; l <= L; ++l) forward_gemm(l);
        for (std::size_t l = L; l >= 1; --l) {
            weight_grad_gemm(l);
            if (l > 1) input_grad_gemm(l);
        }
    }

    float step() {
        // Forward.
        for (std::size_t l = 1; l <= L; ++l) {
            const int n = int(sizes[l]);
            forward_gemm(l);
            float* a = A[l - 1].data();
            const float* bias = b[l - 1].data();
            for (std::size_t r = 0; r < B; ++r) {
                float* row = a + r * std::size_t(n);
                for (int j = 0; j < n; ++j) row[j] += bias[j];
            }
            // One call for the layer: per row, a narrow layer's tail costs more than its values.
            ad::kernels::sigmoid(a, a, B * std::size_t(n));
        }
        // Loss and Delta^L.
        const std::size_t nL = sizes[L];
        float loss = 0;
        {
            const float* out = A[L - 1].data();
            float* dl = delta[L - 1].data();
            for (std::size_t i = 0; i < B * nL; ++i) {
                dl[i] = out[i] - y[i];
                loss += 0.5f * dl[i] * dl[i];
            }
            ad::kernels::sigmoid_backward(dl, out, dl, B * nL);
        }
        // Backward.
        for (std::size_t l = L; l >= 1; --l) {
            const int n = int(sizes[l]), k = int(sizes[l - 1]);
            const float* dl = delta[l - 1].data();
            weight_grad_gemm(l);
            float* g = db[l - 1].data();
            for (int j = 0; j < n; ++j) g[j] = 0;
            for (std::size_t r = 0; r < B; ++r)
                for (int j = 0; j < n; ++j) g[j] += dl[r * std::size_t(n) + std::size_t(j)];
            if (l > 1) {
                input_grad_gemm(l);
                float* below = delta[l - 2].data();
                ad::kernels::sigmoid_backward(below, A[l - 2].data(), below, B * std::size_t(k));
            }
        }
        // SGD.
        for (std::size_t l = 0; l < L; ++l) {
            ad::kernels::axpy(W[l].size(), -kLr, dW[l].data(), W[l].data());
            ad::kernels::axpy(b[l].size(), -kLr, db[l].data(), b[l].data());
        }
        return loss;
    }

    /// Bytes of the activations A^1..A^L the backward pass needs (the input is data).
    std::size_t activation_bytes() const {
        std::size_t n = 0;
        for (const auto& a : A) n += a.size() * sizeof(float);
        return n;
    }

    static constexpr float kLr = bench::kLearningRate;
    std::vector<std::size_t> sizes;
    std::size_t B, L;
    std::vector<float> x, y;
    std::vector<std::vector<float>> W, b, A, delta, dW, db;
};

void hand_step(benchmark::State& state, const std::string& name, int threads) {
    bench::set_blas_threads(threads);
    const ModelData& d = bench::model_data(name);
    HandModel m(d);
    const float first = m.step();
    for (auto _ : state) benchmark::DoNotOptimize(m.step());
    set_step_counters(state, d, first);
}

/// The tape's and the hand's xor steps in alternating blocks of one benchmark,
/// each block timed: the machine's slow and quiet phases last seconds, longer
/// than a repetition, and separate benchmarks caught the tape in one and the
/// hand in the other (tape/hand 2.2-3.5x between full runs of the same code).
/// Here both see the same phases, and `tape_over_hand` is the ratio of their
/// summed times; the benchmark's own time is one block of each.
void paired_step(benchmark::State& state, const std::string& name, int threads) {
    using Clock = std::chrono::steady_clock;
    constexpr int block = 64;  // steps per block: about 0.1 ms of the tape's, so a clock read is noise
    bench::set_blas_threads(threads);
    const ModelData& d = bench::model_data(name);
    TapeModel tape_model(d);
    HandModel hand_model(d);
    ad::Tape tape;
    tape_model.step(tape);
    hand_model.step();
    Clock::duration tape_time{}, hand_time{};
    for (auto _ : state) {
        const auto start = Clock::now();
        for (int i = 0; i < block; ++i) benchmark::DoNotOptimize(tape_model.step(tape));
        const auto middle = Clock::now();
        for (int i = 0; i < block; ++i) benchmark::DoNotOptimize(hand_model.step());
        const auto end = Clock::now();
        tape_time += middle - start;
        hand_time += end - middle;
    }
    state.counters["tape_over_hand"] = std::chrono::duration<double>(tape_time).count() /
                                       std::chrono::duration<double>(hand_time).count();
}

/// The tape step with a debugging tool off and on, in alternating blocks
/// like paired_step: `on_over_off` is what the tool costs a step (anomaly
/// mode: every value checked for NaN and infinity and every record's call
/// stack walked; the profiler: two clock reads per op and per record).
template <class Tool>
void debug_tool_step(benchmark::State& state, const std::string& name, int threads) {
    using Clock = std::chrono::steady_clock;
    const int block = name == "xor" ? 64 : 4;
    bench::set_blas_threads(threads);
    const ModelData& d = bench::model_data(name);
    TapeModel model(d);
    ad::Tape tape;
    model.step(tape);
    Clock::duration off_time{}, on_time{};
    for (auto _ : state) {
        const auto start = Clock::now();
        for (int i = 0; i < block; ++i) benchmark::DoNotOptimize(model.step(tape));
        const auto middle = Clock::now();
        {
            Tool on;
            for (int i = 0; i < block; ++i) benchmark::DoNotOptimize(model.step(tape));
        }
        const auto end = Clock::now();
        off_time += middle - start;
        on_time += end - middle;
    }
    state.counters["on_over_off"] = std::chrono::duration<double>(on_time).count() /
                                    std::chrono::duration<double>(off_time).count();
}

/// Not an implementation: the hand step's GEMMs without anything else, the
/// floor for the goals stated against the GEMM time.
void gemms_step(benchmark::State& state, const std::string& name, int threads) {
    bench::set_blas_threads(threads);
    const ModelData& d = bench::model_data(name);
    HandModel m(d);
    m.gemms();
    for (auto _ : state) {
        m.gemms();
        benchmark::DoNotOptimize(m.dW.back().data());
    }
    state.counters["gemm_flops"] = bench::step_gemm_flops(d.spec);
}

// ---------------------------------------------------------------- textbook

void textbook_step(benchmark::State& state, const std::string& name, int threads) {
    bench::set_blas_threads(threads);
    const ModelData& d = bench::model_data(name);
    std::vector<ad::Array<float>> W, b;
    for (std::size_t l = 0; l + 1 < d.spec.sizes.size(); ++l) {
        W.push_back(to_array(d.weights[l], {d.spec.sizes[l + 1], d.spec.sizes[l]}));
        b.push_back(to_array(d.biases[l], {d.spec.sizes[l + 1]}));
    }
    const auto x = to_array(d.x, {d.spec.batch, d.spec.sizes.front()});
    const auto y = to_array(d.y, {d.spec.batch, d.spec.sizes.back()});
    auto step = [&] {
        auto g = ad::nn::textbook_backward(W, b, x, y);
        for (std::size_t l = 0; l < W.size(); ++l) {
            xt::noalias(W[l]) -= bench::kLearningRate * g.weight_grads[l];
            xt::noalias(b[l]) -= bench::kLearningRate * g.bias_grads[l];
        }
        return g.loss;
    };
    const float first = step();
    for (auto _ : state) benchmark::DoNotOptimize(step());
    set_step_counters(state, d, first);
}

// ---------------------------------------------------------------- sgemm

void sgemm(benchmark::State& state, std::size_t n, int threads) {
    bench::set_blas_threads(threads);
    xt::xtensor<float, 2> a = xt::ones<float>({n, n}) * 0.5f, b = xt::ones<float>({n, n}) * 0.25f;
    xt::xtensor<float, 2> c = xt::zeros<float>({n, n});
    xt::blas::gemm(a, b, c);
    for (auto _ : state) {
        xt::blas::gemm(a, b, c);
        benchmark::DoNotOptimize(c.data());
        benchmark::ClobberMemory();
    }
    const double flops = 2.0 * double(n) * double(n) * double(n);
    state.counters["gemm_flops"] = flops;
    state.counters["GFLOPS"] = benchmark::Counter(flops * 1e-9 * double(state.iterations()), benchmark::Counter::kIsRate);
}

}  // namespace

namespace bench {

std::size_t hand_activation_bytes(const std::string& model) { return HandModel(model_data(model)).activation_bytes(); }

void register_mlp_step() {
    for (int threads : {1, 2}) {
        const std::string t = "/threads:" + std::to_string(threads);
        for (std::size_t n : {1024}) {
            benchmark::RegisterBenchmark(("sgemm/" + std::to_string(n) + t).c_str(), sgemm, n, threads)
                ->UseRealTime()
                ->Unit(benchmark::kMillisecond);
        }
        for (const auto& spec : models()) {
            const bool heavy = spec.name == "wide";
            const auto unit = spec.name == "xor" ? benchmark::kMicrosecond : benchmark::kMillisecond;
            auto add = [&](const char* impl, void (*fn)(benchmark::State&, const std::string&, int)) {
                auto* b = benchmark::RegisterBenchmark(("mlp_step/" + std::string(impl) + "/" + spec.name + t).c_str(),
                                                       fn, spec.name, threads);
                b->UseRealTime()->Unit(unit);
                if (heavy) b->MinTime(0.3);
                if (spec.name == "xor") b->Repetitions(bench::kShortRepetitions);
            };
            add("tape", tape_step);
            add("hand", hand_step);
            add("textbook", textbook_step);
            if (spec.name != "xor") add("gemms", gemms_step);
            if (spec.name == "xor") add("paired", paired_step);
            if (spec.name == "xor" || spec.name == "mnist") {
                add("anomaly", debug_tool_step<ad::DetectAnomaly>);
                add("profile", debug_tool_step<ad::Profile>);
            }
            register_torch_mlp_step(spec.name, threads);
        }
    }
}

/// One 10,000-step xor run for the memory benchmark (in memory.cpp).
void tape_xor_steps(std::size_t steps, const std::function<void(std::size_t)>& after_step) {
    TapeModel m(model_data("xor"));
    ad::Tape tape;
    for (std::size_t i = 1; i <= steps; ++i) {
        m.step(tape);
        after_step(i);
    }
}

/// Heap bytes that one forward (and loss) of `model` leaves alive while only
/// the loss is held: the tape, its records, and every value they keep for
/// the backward sweep.
TapeMemory tape_forward_bytes(const std::string& model) {
    TapeModel m(model_data(model));
    {
        // Lazy initialisation inside BLAS and the allocator happens here, not in the measurement.
        ad::NoGrad no_grad;
        benchmark::DoNotOptimize(ad::nn::half_sse(m.model(m.x), m.y).item());
    }
    // Arrays the engine keeps for reuse (autodiff/memory/array_cache.hpp) would serve
    // the forward without new heap bytes and hide what it holds.
    ad::release_cached_arrays();
    std::size_t before = heap_bytes_in_use();
    ad::Tape tape;
    auto loss = ad::nn::half_sse(m.model(m.x), m.y);
    benchmark::DoNotOptimize(loss.item());
    return {heap_bytes_in_use() - before, tape.bytes()};
}

}  // namespace bench
