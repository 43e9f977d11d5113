// scalar/<workload>/adolc_{retape,reuse}/<n>: the chain and the Rosenbrock
// gradient of scalar.cpp on ADOL-C (Debian libadolc-dev), the tape-based
// scalar tool users compare with. Built only when CMake finds ADOL-C.
//   adolc_retape  every iteration records the function (trace_on ... trace_off)
//                 and calls gradient(): a forward over the tape, then reverse
//   adolc_reuse   the tape is recorded once before the loop; every iteration
//                 only calls gradient() with the same x
// Constants are passive doubles (ADOL-C records y * 1.0001 as one op with the
// constant on its value tape), as ADOL-C code is written.
//
// Keeping the tape in memory: ADOL-C writes a tape to files (ADOLC-*.tap in
// the working directory) when its operations, locations or values outgrow the
// buffers trace_on allocates (524,288 elements each by default, or what an
// .adolcrc in the working directory sets), and the forward sweep's value
// stack (the Taylor buffer) likewise. trace_on's second form takes the four
// buffer sizes per tape, so every recording here passes sizes that fit its
// workload (buffers_for): no file at any n, whatever the working directory
// holds, and no 524,288-element buffers at n = 10. tapestats() says whether a
// file was written; a benchmark whose tape spilled stops with an error.
//
// ADOL-C's store of adouble values grows to the most adoubles ever alive
// (131,072 after Rosenbrock at n = 10^5) and never shrinks, and every tape
// recorded after that ends with the whole store on its value stack, which
// the forward of each gradient() then writes: a 10-op tape recorded after the
// 10^5 Rosenbrock costs 130,000 writes per gradient. So each benchmark starts
// from a fresh store (fresh_store), whatever ran before it.
//
// tape_bytes_per_op: the tape's three streams as tapestats() counts them,
// operations (one byte each: ADOL-C's op codes are unsigned char),
// locations (sizeof(locint) each) and values (doubles), over the workload's
// scalar ops. value_stack_bytes_per_op: the values the forward sweep keeps
// for the reverse (TAY_STACK_SIZE doubles), beside the tape.

#include <string>
#include <vector>

#include <adolc/adolc.h>

#include "bench_suite.hpp"
#include "scalar_workloads.hpp"

namespace {

using namespace bench::scalar;

constexpr short kTag = 24;

/// trace_on buffer sizes (elements) with room for a tape of `ops` scalar ops:
/// ADOL-C records at most 2 ops, 4 locations, 2 values and 2 value-stack
/// entries per scalar op of these workloads (independents and dependents
/// included), plus a few fixed ones.
struct Buffers {
    uint ops, locations, values, taylors;
};
Buffers buffers_for(long ops) {
    auto n = static_cast<uint>(ops);
    return {2 * n + 256, 4 * n + 256, 2 * n + 256, 2 * n + 256};
}

/// Replaces ADOL-C's store of adouble values by an empty one (switching the
/// store manager's type reallocates the store when no adouble is alive; the
/// default type is ADOLC_LOCATION_BLOCKS).
void fresh_store() {
    setStoreManagerType(ADOLC_LOCATION_SINGLETONS);
    setStoreManagerType(ADOLC_LOCATION_BLOCKS);
}

void start_tape(long ops) {
    Buffers b = buffers_for(ops);
    trace_on(kTag, 0, b.ops, b.locations, b.values, b.taylors);
}

void record_chain(long ops, double x0) {
    start_tape(ops);
    adouble x, y;
    x <<= x0;
    y = x;
    for (long i = 0; i < ops; ++i) y = (i % 2 == 0) ? y * kChainA : y + kChainC;
    double out;
    y >>= out;
    trace_off();
}

void record_rosenbrock(const std::vector<double>& x0) {
    start_tape(rosenbrock_ops(static_cast<long>(x0.size())));
    std::vector<adouble> x(x0.size());
    for (std::size_t i = 0; i < x0.size(); ++i) x[i] <<= x0[i];
    adouble f = 0.0;
    for (std::size_t i = 0; i + 1 < x0.size(); ++i) {
        adouble t = x[i] * x[i];
        adouble u = x[i + 1] - t;
        adouble v = 1.0 - x[i];
        f = f + 100.0 * u * u + v * v;
    }
    double out;
    f >>= out;
    trace_off();
}

/// The tape's bytes as in the header comment, or -1 when any part of it
/// (the forward's value stack included) went to a file.
double tape_bytes(double* value_stack_bytes) {
    std::size_t s[STAT_SIZE];
    tapestats(kTag, s);
    if (s[OP_FILE_ACCESS] || s[LOC_FILE_ACCESS] || s[VAL_FILE_ACCESS] || s[TAY_STACK_SIZE] > s[TAY_BUFFER_SIZE]) {
        return -1;
    }
    *value_stack_bytes = static_cast<double>(s[TAY_STACK_SIZE] * sizeof(revreal));
    return static_cast<double>(s[NUM_OPERATIONS] * sizeof(unsigned char) + s[NUM_LOCATIONS] * sizeof(locint) +
                               s[NUM_VALUES] * sizeof(double));
}

/// Records with record(), checks the tape stayed in memory and the gradient
/// at x against `want`, then runs: with `retape`, record() and gradient()
/// per iteration; without, gradient() alone on the tape recorded here.
template <class Record>
void run_adolc(benchmark::State& state, long ops, Record record, std::vector<double> x,
               const std::vector<double>& want, bool retape) {
    const int n = static_cast<int>(x.size());
    std::vector<double> g(x.size());
    fresh_store();
    record();
    double value_stack = 0;
    const double bytes = tape_bytes(&value_stack);
    if (bytes < 0) {
        state.SkipWithError("ADOL-C wrote the tape to a file: enlarge buffers_for");
        return;
    }
    if (gradient(kTag, n, x.data(), g.data()) < 0) {
        state.SkipWithError("ADOL-C's gradient() failed");
        return;
    }
    if (!check_gradient(state, g.data(), want)) return;

    double seconds = timed_loop(state, [&] {
        if (retape) record();
        gradient(kTag, n, x.data(), g.data());
        benchmark::DoNotOptimize(g.data());
        benchmark::ClobberMemory();
    });
    set_counters(state, ops, bytes, seconds);
    state.counters["value_stack_bytes_per_op"] = value_stack / static_cast<double>(ops);
    removeTape(kTag, ADOLC_REMOVE_COMPLETELY);
}

void chain(benchmark::State& state, long ops, bool retape) {
    run_adolc(state, ops, [&] { record_chain(ops, kChainX); }, {kChainX}, {chain_gradient(ops)}, retape);
}

void rosenbrock(benchmark::State& state, long n, bool retape) {
    std::vector<double> x0(static_cast<std::size_t>(n));
    for (long i = 0; i < n; ++i) x0[static_cast<std::size_t>(i)] = rosenbrock_x(i);
    run_adolc(state, rosenbrock_ops(n), [&] { record_rosenbrock(x0); }, x0, rosenbrock_gradient(x0), retape);
}

}  // namespace

namespace bench {

void register_adolc_scalar() {
    register_sizes("scalar/chain/adolc_retape", kChainOps, [](benchmark::State& s, long n) { chain(s, n, true); });
    register_sizes("scalar/chain/adolc_reuse", kChainOps, [](benchmark::State& s, long n) { chain(s, n, false); });
    register_sizes("scalar/rosenbrock/adolc_retape", kRosenbrockN,
                   [](benchmark::State& s, long n) { rosenbrock(s, n, true); });
    register_sizes("scalar/rosenbrock/adolc_reuse", kRosenbrockN,
                   [](benchmark::State& s, long n) { rosenbrock(s, n, false); });
}

}  // namespace bench
