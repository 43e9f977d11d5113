// scalar/<workload>/tape/<n>: the scalar workloads on the tape,
// through the public API, in double (scalar_workloads.hpp has the workloads,
// adolc_peers.cpp the same on ADOL-C):
//   chain         n ops on a 0-d value, alternately y = y * a and y = y + c
//   rosenbrock    the gradient of the extended Rosenbrock function of n 0-d
//                 parameters, 8 ops per term
//   vector_chain  the chain on 64-element vectors: what a small-vector op costs
// Each iteration records, walks back, reads the gradients, clears the tape and
// zeroes the gradients, on one tape made before the loop. The first recording
// is checked once: its op count, its gradients against the hand formula, and
// the tape's bytes() before backward (tape_bytes_per_op).

#include <string>
#include <vector>

#include "autodiff/autodiff.hpp"
#include "bench_suite.hpp"
#include "scalar_workloads.hpp"

namespace {

using namespace bench::scalar;
using Var = ad::Var<double>;

ad::Array<double> filled(std::size_t size, double value) {
    ad::Array<double> a = ad::Array<double>::from_shape({size});
    a.fill(value);
    return a;
}

/// Runs the benchmark on the output record() returns: `ops` recorded ops per
/// iteration, the gradients of `params` (handles to the parameters; all their
/// elements in order) checked against `want`. `seed`: the output's cotangent,
/// or nullptr for a 0-d output (backward() seeds it with 1).
template <class Record>
void run_tape(benchmark::State& state, std::vector<Var> params, long ops, Record record,
              const std::vector<double>& want, const ad::Array<double>* seed = nullptr) {
    auto backward = [&](const Var& y) { seed ? y.backward(*seed) : y.backward(); };
    auto zero_grads = [&] {
        for (Var& p : params) p.zero_grad();
    };
    ad::Tape tape;
    double bytes = 0;
    {
        Var y = record();
        if (tape.ops() != static_cast<std::size_t>(ops)) {
            std::string message = "recorded " + std::to_string(tape.ops()) + " ops, not " + std::to_string(ops);
            state.SkipWithError(message.c_str());
            return;
        }
        bytes = static_cast<double>(tape.bytes());
        backward(y);
    }
    std::vector<double> got;
    for (const Var& p : params) got.insert(got.end(), p.grad().begin(), p.grad().end());
    tape.clear();
    zero_grads();
    if (!check_gradient(state, got.data(), want)) return;

    double seconds = timed_loop(state, [&] {
        backward(record());
        double sum = 0;
        for (const Var& p : params) sum += p.grad().data()[0];
        benchmark::DoNotOptimize(sum);
        tape.clear();
        zero_grads();
    });
    set_counters(state, ops, bytes, seconds);
}

/// The chain of `ops` ops from x, with constants a and c of x's shape.
void chain(benchmark::State& state, long ops, const Var& x, const Var& a, const Var& c) {
    auto record = [&] {
        Var y = x;
        for (long i = 0; i < ops; ++i) y = (i % 2 == 0) ? y * a : y + c;
        return y;
    };
    std::vector<double> want(x.size(), chain_gradient(ops));
    if (x.dim() == 0) {
        run_tape(state, {x}, ops, record, want);
    } else {
        const ad::Array<double> seed = filled(x.size(), 1.0);
        run_tape(state, {x}, ops, record, want, &seed);
    }
}

void scalar_chain(benchmark::State& state, long ops) {
    chain(state, ops, ad::param(ad::Array<double>(kChainX)), ad::scalar(kChainA), ad::scalar(kChainC));
}

void vector_chain(benchmark::State& state, long ops) {
    chain(state, ops, ad::param(filled(kVectorSize, kChainX)), ad::constant(filled(kVectorSize, kChainA)),
          ad::constant(filled(kVectorSize, kChainC)));
}

void rosenbrock(benchmark::State& state, long n) {
    std::vector<double> x0(static_cast<std::size_t>(n));
    std::vector<Var> x;
    for (long i = 0; i < n; ++i) {
        x0[static_cast<std::size_t>(i)] = rosenbrock_x(i);
        x.push_back(ad::param(ad::Array<double>(x0[static_cast<std::size_t>(i)])));
    }
    const Var zero = ad::scalar(0.0), one = ad::scalar(1.0), hundred = ad::scalar(100.0);
    auto record = [&] {
        // 8 recorded ops per term: mul, sub, sub, then mul, mul, add, mul, add.
        Var f = zero;
        for (std::size_t i = 0; i + 1 < x.size(); ++i) {
            Var t = x[i] * x[i];
            Var u = x[i + 1] - t;
            Var v = one - x[i];
            f = f + hundred * u * u + v * v;
        }
        return f;
    };
    run_tape(state, x, rosenbrock_ops(n), record, rosenbrock_gradient(x0));
}

}  // namespace

namespace bench {

void register_scalar() {
    register_sizes("scalar/chain/tape", kChainOps, scalar_chain);
    register_sizes("scalar/rosenbrock/tape", kRosenbrockN, rosenbrock);
    register_sizes("scalar/vector_chain/tape", kVectorChainOps, vector_chain);
    register_adolc_scalar();
}

}  // namespace bench
