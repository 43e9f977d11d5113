#!/usr/bin/python3
"""Ratio table and gnuplot plots from the suite's Google Benchmark JSON.

    report.py RESULTS.json [--plots DIR] [--markdown FILE]

Standard library only (runs on a fresh Debian 12 with /usr/bin/python3).
Uses the median aggregate of every benchmark when the run had repetitions,
the single run otherwise. Prints the ratio table and the goals
(met / not met); with --plots, writes DIR/bench-mlp_step.png,
DIR/bench-jacobian_chain.png, DIR/bench-hessian.png and DIR/bench-scalar.png
through gnuplot.
"""

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile

UNIT = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
MODELS = ["xor", "mnist", "wide"]
IMPLS = ["tape", "hand", "textbook", "libtorch"]
THREADS = [1, 2]
JAC_N = [64, 128, 256, 512, 1024]
JAC_SERIES = ["vjp", "vjp_hand", "materialized"]
FIT_FROM = 256
CONV_SHAPES = ["digits", "lenet"]
# model_step goals, tape/libtorch.
MODEL_STEP_GOALS = {"digits_cnn": 0.3, "lenet": 0.8, "gru": 0.5, "transformer": 0.8}
# The scalar benchmarks: workload -> n; implementations (ADOL-C's may be missing).
SCALAR_N = {"chain": [10, 1000, 100000, 1000000], "rosenbrock": [10, 1000, 100000],
            "vector_chain": [10, 1000, 100000]}
SCALAR_IMPLS = ["tape", "adolc_retape", "adolc_reuse"]
SCALAR_NS_GOAL = 40        # ns per scalar op, chain and rosenbrock, every n
SCALAR_ADOLC_GOAL = 0.3    # tape / adolc_retape, every n
SCALAR_FLAT_GOAL = 1.5     # max / min of ns per op over n, per workload
# Tape bytes per scalar op: 48 bytes at most, the operands' values included. tape.bytes()
# counts the records, the closure arena and the scalar stream's entries, which
# hold the operands' values: compared with 48 alone, values included.
SCALAR_BYTES_GOAL = 48


def clean_name(name):
    # "mlp_step/tape/xor/threads:1/real_time" -> "mlp_step/tape/xor/threads:1"
    # (Google Benchmark appends the options it ran with.)
    return re.sub(r"/(real_time|min_time:[0-9.]+|iterations:\d+|repeats:\d+)(?=/|$)", "", name)


def load(path):
    with open(path) as f:
        data = json.load(f)
    runs, medians = {}, {}
    for b in data.get("benchmarks", []):
        if b.get("error_occurred"):
            continue
        name = clean_name(b.get("run_name", b["name"]))
        entry = dict(b)
        entry["seconds"] = b["real_time"] * UNIT[b.get("time_unit", "ns")]
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                medians[name] = entry
        else:
            runs.setdefault(name, entry)  # first repetition, if no aggregates
    runs.update(medians)
    return data.get("context", {}), runs


def fit_slope(points):
    """Least-squares slope and intercept of log(t) against log(N)."""
    pts = [(math.log(n), math.log(t)) for n, t in points if t > 0]
    if len(pts) < 2:
        return None, None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    sxy = sum((p[0] - mx) * (p[1] - my) for p in pts)
    slope = sxy / sxx
    return slope, my - slope * mx


def fmt_time(s):
    if s is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def fmt_ratio(r, digits=3):
    return "-" if r is None else f"{r:.{digits}g}x"


def ratio(a, b):
    return a / b if a is not None and b else None


class Report:
    def __init__(self, context, runs):
        self.context, self.runs = context, runs
        self.lines = []
        self.goals = []  # (goal, value string, met: True/False/None)

    def t(self, name):
        r = self.runs.get(name)
        return r["seconds"] if r else None

    def counter(self, name, key):
        r = self.runs.get(name)
        return r.get(key) if r else None

    def out(self, line=""):
        self.lines.append(line)

    def table(self, header, rows):
        self.out("| " + " | ".join(header) + " |")
        self.out("|" + "|".join("---" for _ in header) + "|")
        for row in rows:
            self.out("| " + " | ".join(row) + " |")
        self.out()

    def goal(self, text, value, met):
        self.goals.append((text, value, met))

    def mlp(self):
        rows = []
        for threads in THREADS:
            sg = self.counter(f"sgemm/1024/threads:{threads}", "GFLOPS")
            for model in MODELS:
                key = f"{model}/threads:{threads}"
                times = {i: self.t(f"mlp_step/{i}/{key}") for i in IMPLS}
                if all(v is None for v in times.values()):
                    continue
                flops = None
                for i in IMPLS:
                    flops = flops or self.counter(f"mlp_step/{i}/{key}", "gemm_flops")
                tape, hand = times["tape"], times["hand"]
                # tape/hand from alternating blocks of one benchmark (mlp_step/paired): both under the same load.
                paired = self.counter(f"mlp_step/paired/{key}", "tape_over_hand")
                tape_gf = flops / tape / 1e9 if flops and tape else None
                hand_gf = flops / hand / 1e9 if flops and hand else None
                gemm_time = flops / (sg * 1e9) if flops and sg else None
                # The hand code is the floor for any tape: where it misses a goal, so must the tape.
                share = lambda gf: "-" if gf is None or not sg else f"{100 * gf / sg:.3g}%"
                rows.append([
                    model, str(threads),
                    *(fmt_time(times[i]) for i in IMPLS),
                    fmt_ratio(ratio(tape, times["libtorch"])),
                    fmt_ratio(ratio(tape, times["hand"])),
                    fmt_ratio(paired),
                    "-" if tape_gf is None else f"{tape_gf:.3g}",
                    "-" if sg is None else f"{sg:.3g}",
                    share(tape_gf), share(hand_gf),
                    fmt_ratio(ratio(tape, gemm_time)), fmt_ratio(ratio(hand, gemm_time)),
                    fmt_ratio(ratio(self.t(f"mlp_step/gemms/{key}"), gemm_time)),
                ])
                tl, th, tg = ratio(tape, times["libtorch"]), ratio(tape, times["hand"]), ratio(tape, gemm_time)
                if model == "mnist":
                    self.goal(f"mnist tape/libtorch <= 0.8 ({threads} thr)", fmt_ratio(tl), None if tl is None else tl <= 0.8)
                    self.goal(f"mnist tape/hand <= 1.05 ({threads} thr)", fmt_ratio(th), None if th is None else th <= 1.05)
                    self.goal(f"mnist tape / GEMM time at sgemm rate <= 1.3 ({threads} thr)",
                              f"{fmt_ratio(tg)} (hand {fmt_ratio(ratio(hand, gemm_time))})",
                              None if tg is None else tg <= 1.3)
                if model == "xor":
                    self.goal(f"xor tape/libtorch <= 0.05 ({threads} thr)", fmt_ratio(tl), None if tl is None else tl <= 0.05)
                    # Judged on the paired ratio where there is one: the two medians may come from different
                    # phases of the machine's load.
                    judged = th if paired is None else paired
                    shown = fmt_ratio(th) if paired is None else f"{fmt_ratio(paired)} paired ({fmt_ratio(th)} from the medians)"
                    self.goal(f"xor tape/hand <= 2 ({threads} thr)", shown, None if judged is None else judged <= 2)
                if model == "wide":
                    self.goal(f"wide tape >= 85% of sgemm rate ({threads} thr)",
                              f"{share(tape_gf)} (hand {share(hand_gf)})",
                              None if tape_gf is None or not sg else tape_gf / sg >= 0.85)
        if not rows:
            return
        self.out("### mlp_step (median time per training step)")
        self.out()
        self.table(["model", "thr", *IMPLS, "tape/libtorch", "tape/hand", "tape/hand paired", "tape GFLOP/s", "sgemm GFLOP/s",
                    "tape % of sgemm", "hand % of sgemm", "tape / GEMM time", "hand / GEMM time",
                    "GEMMs alone / GEMM time"], rows)
        self.out("`tape/hand paired`: the two steps in alternating blocks of one benchmark (`mlp_step/paired`), "
                 "so that both run under the same load; the median over its repetitions of the ratio of summed times.")
        self.out()
        self.out("`GEMMs alone`: the hand step's GEMM calls and nothing else (`mlp_step/gemms`): what these "
                 "shapes cost in BLAS at this thread count, against the 1024^3 sgemm rate.")
        self.out()
        # Every implementation starts from the same weights: their first-step losses must agree.
        worst = 0.0
        for model in MODELS:
            for threads in THREADS:
                losses = [self.counter(f"mlp_step/{i}/{model}/threads:{threads}", "first_loss") for i in IMPLS]
                losses = [v for v in losses if v is not None]
                if len(losses) > 1:
                    ref = max(abs(v) for v in losses) or 1.0
                    worst = max(worst, (max(losses) - min(losses)) / ref)
        if worst > 0 or any("first_loss" in r for r in self.runs.values()):
            verdict = "agree" if worst <= 1e-3 else "DISAGREE: the implementations do not compute the same step"
            self.out(f"First-step losses of the implementations {verdict} (max relative difference {worst:.1e}).")
            self.out()

    def blas_threads(self):
        """The engine's BLAS thread policy (blas_threads.cpp): small steps with the policy
        against OpenBLAS forced to 1 and 2 threads, a large GEMM with the policy against 2 threads;
        every ratio from alternating blocks of one benchmark."""
        models = ["8-16-16-1_b32", "64-128-128-1_b32", "8-16-16-1_b1024"]
        us = lambda v: "-" if v is None else fmt_time(v * 1e-6)
        rows = []
        for model in models:
            for load in (0, 2):
                name = f"blas_threads/mlp_step/{model}/load:{load}"
                if name not in self.runs:
                    continue
                c = lambda key: self.counter(name, key)
                # Two threads from a benchmark of their own (blas_threads.cpp says why).
                two = self.counter(name + "/threads:2", "threads:2_us")
                po, to = c("policy_over_one"), ratio(two, c("threads:1_us"))
                rows.append([model, str(load), us(c("policy_us")), us(c("threads:1_us")), us(two),
                             fmt_ratio(po), fmt_ratio(to), fmt_ratio(ratio(c("policy_us"), two))])
                self.goal(f"blas_threads {model} step with policy <= 1.2x of one thread (load {load})",
                          f"{fmt_ratio(po)} (2 threads: {fmt_ratio(to)})", None if po is None else po <= 1.2)
        gemm = "blas_threads/sgemm/1024"
        if gemm in self.runs:
            pt = self.counter(gemm, "policy_over_two")
            rows.append(["sgemm 1024^3", "0", us(self.counter(gemm, "policy_us")), "-",
                         us(self.counter(gemm, "threads:2_us")), "-", "-", fmt_ratio(pt)])
            self.goal("blas_threads large GEMM (1024^3) with policy <= 1.1x of two threads", fmt_ratio(pt),
                      None if pt is None else pt <= 1.1)
        if not rows:
            return
        self.out("### blas_threads (OpenBLAS threads for small products: the engine's policy against forced counts)")
        self.out()
        self.out("A float32 training step of a small sigmoid MLP (`in-width-width-1_b<batch>`, SGD) with the engine's "
                 "policy (one thread below 2^22 m n k for GEMM and 2^18 elements for GEMV, GER, AXPY and DOT; "
                 "OpenBLAS's 2 threads above), and with the policy off and OpenBLAS forced to 1 or 2 threads. "
                 "`load 2`: two threads spin in the background (a busy 2-core machine). The policy and one thread run in "
                 "alternating blocks of one benchmark (`policy / 1 thread`: the ratio of their summed times); two "
                 "threads in a benchmark of their own, since OpenBLAS's worker spins for ~0.1 s after a threaded call "
                 "and slows whatever block follows. The GEMM: the policy and two threads in alternating blocks.")
        self.out()
        self.table(["model", "load", "policy", "1 thread", "2 threads", "policy / 1 thread", "2 threads / 1 thread",
                    "policy / 2 threads"],
                   rows)

    def op_overhead(self):
        tape, torch = self.t("op_overhead/tape"), self.t("op_overhead/libtorch")
        floor = self.t("op_overhead/xarray_floor")
        if tape is None and torch is None:
            return
        per = lambda s: None if s is None else s / 100
        self.out("### op_overhead (100-op chain, forward + backward, per op)")
        self.out()
        self.out("`xarray floor`: the chain's arrays alone, made and freed as the engine makes them, without a tape.")
        self.out()
        self.table(["tape", "xarray floor", "tape - floor", "libtorch", "tape/libtorch"],
                   [[fmt_time(per(tape)), fmt_time(per(floor)),
                     fmt_time(None if tape is None or floor is None else per(tape - floor)),
                     fmt_time(per(torch)), fmt_ratio(ratio(tape, torch))]])
        if tape is not None:
            self.goal("op_overhead tape <= 35 ns per op", fmt_time(per(tape)), per(tape) <= 35e-9)

    def scalar_ns(self, workload, impl, n):
        """ns per op of scalar/<workload>/<impl>/<n>: its counter, or its time over its ops."""
        name = f"scalar/{workload}/{impl}/{n}"
        ns = self.counter(name, "ns_per_op")
        if ns is None and self.t(name) is not None and self.counter(name, "ops"):
            ns = self.t(name) / self.counter(name, "ops") * 1e9
        return ns

    def scalar(self):
        """The scalar workloads: time per op against tape length, tape against ADOL-C."""
        rows = []
        self.sca = {}  # (workload, impl) -> [(ops, ns per op)]
        fmt_ns = lambda v: "-" if v is None else f"{v:.3g}"
        for workload, sizes in SCALAR_N.items():
            for n in sizes:
                ns = {i: self.scalar_ns(workload, i, n) for i in SCALAR_IMPLS}
                if all(v is None for v in ns.values()):
                    continue
                ops = next((self.counter(f"scalar/{workload}/{i}/{n}", "ops") for i in SCALAR_IMPLS
                            if self.counter(f"scalar/{workload}/{i}/{n}", "ops")), None)
                for i in SCALAR_IMPLS:
                    if ns[i] is not None and ops:
                        self.sca.setdefault((workload, i), []).append((ops, ns[i]))
                tape_bytes, adolc_bytes = (self.counter(f"scalar/{workload}/{i}/{n}", "tape_bytes_per_op")
                                           for i in ("tape", "adolc_retape"))
                rows.append([workload, str(n), "-" if ops is None else f"{ops:.0f}", *(fmt_ns(ns[i]) for i in SCALAR_IMPLS),
                             fmt_ns(tape_bytes), fmt_ns(adolc_bytes),
                             fmt_ratio(ratio(ns["tape"], ns["adolc_retape"])),
                             fmt_ratio(ratio(ns["tape"], ns["adolc_reuse"]))])
        if not rows:
            return
        self.out("### scalar (gradients of scalar code, double, per op)")
        self.out()
        self.out("`chain`: n ops on a 0-d value, alternately y * a and y + c; `rosenbrock`: the gradient of the extended "
                 "Rosenbrock function of n 0-d parameters, 8 scalar ops per term (ops = 8 (n - 1)); `vector_chain`: the "
                 "chain on 64-element vectors (per vector op). Each iteration records, walks back and reads the gradients. "
                 "ADOL-C: `adolc_retape` records and calls gradient() every iteration, `adolc_reuse` calls gradient() on a "
                 "tape recorded once. Tape bytes: tapegrad's `Tape::bytes()` (records, closures and scalar entries) and "
                 "ADOL-C's operations, locations and constants, per op.")
        self.out()
        self.table(["workload", "n", "ops", "tape ns/op", "adolc_retape ns/op", "adolc_reuse ns/op", "tape B/op",
                    "adolc B/op", "tape/adolc_retape", "tape/adolc_reuse"], rows)
        for workload in ("chain", "rosenbrock"):
            pts = self.sca.get((workload, "tape"))
            if not pts:
                continue
            worst_ops, worst = max(pts, key=lambda p: p[1])
            self.goal(f"scalar {workload} tape <= {SCALAR_NS_GOAL} ns per op at every n",
                      f"{worst:.3g} ns at {worst_ops:.0f} ops", worst <= SCALAR_NS_GOAL)
            ratios = [ratio(self.scalar_ns(workload, "tape", n), self.scalar_ns(workload, "adolc_retape", n))
                      for n in SCALAR_N[workload]]
            ratios = [r for r in ratios if r is not None]
            self.goal(f"scalar {workload} tape/adolc_retape <= {SCALAR_ADOLC_GOAL} at every n",
                      f"{fmt_ratio(max(ratios))} (worst n)" if ratios else "-",
                      max(ratios) <= SCALAR_ADOLC_GOAL if ratios else None)
        for workload in SCALAR_N:
            ns = [v for _, v in self.sca.get((workload, "tape"), [])]
            if len(ns) > 1:
                spread = max(ns) / min(ns)
                self.goal(f"scalar {workload} tape flat: max/min ns per op over n <= {SCALAR_FLAT_GOAL}",
                          fmt_ratio(spread), spread <= SCALAR_FLAT_GOAL)
        # Judged on the longest tapes: on short ones the tape's first storage, a fixed cost, dominates.
        tape_bytes = [self.counter(f"scalar/{w}/tape/{SCALAR_N[w][-1]}", "tape_bytes_per_op")
                      for w in ("chain", "rosenbrock")]
        tape_bytes = [b for b in tape_bytes if b is not None]
        if tape_bytes:
            self.goal(f"scalar tape bytes per op <= {SCALAR_BYTES_GOAL} at the longest chain and rosenbrock "
                      "(Tape::bytes(), operand values included)",
                      f"{max(tape_bytes):.3g} B (worst)", max(tape_bytes) <= SCALAR_BYTES_GOAL)

    def debug_tools(self):
        # mlp_step/{anomaly,profile}: the tape step with the tool off and on in alternating blocks.
        rows = []
        for threads in THREADS:
            for model in ("xor", "mnist"):
                key = f"{model}/threads:{threads}"
                anomaly = self.counter(f"mlp_step/anomaly/{key}", "on_over_off")
                profile = self.counter(f"mlp_step/profile/{key}", "on_over_off")
                if anomaly is None and profile is None:
                    continue
                rows.append([model, str(threads), fmt_ratio(anomaly), fmt_ratio(profile)])
                if model == "mnist" and anomaly is not None:
                    self.goal(f"mnist step with anomaly mode on <= 1.5x off ({threads} thr)", fmt_ratio(anomaly),
                              anomaly <= 1.5)
        if not rows:
            return
        self.out("### Debugging tools (a training step with the tool on, over off)")
        self.out()
        self.table(["model", "thr", "anomaly mode", "profiler"], rows)

    def jacobian(self):
        # series: (benchmark, label); slopes fitted over all N and over N >= FIT_FROM,
        # where per-op overhead no longer hides the asymptotic cost.
        self.jac = {}
        for key in JAC_SERIES:
            pts = [(n, self.t(f"jacobian_chain/{key}/{n}")) for n in JAC_N]
            pts = [(n, t) for n, t in pts if t is not None]
            if pts:
                upper = [(n, t) for n, t in pts if n >= FIT_FROM]
                self.jac[key] = (pts, fit_slope(pts), fit_slope(upper))
        if not self.jac:
            return
        times = {k: dict(v[0]) for k, v in self.jac.items()}
        get = lambda k, n: times.get(k, {}).get(n)
        rows = []
        for n in JAC_N:
            if all(get(k, n) is None for k in JAC_SERIES):
                continue
            rows.append([str(n), *(fmt_time(get(k, n)) for k in JAC_SERIES),
                         fmt_ratio(ratio(get("materialized", n), get("vjp", n))),
                         fmt_ratio(ratio(get("materialized", n), get("vjp_hand", n)))])
        self.out("### jacobian_chain (gradient through 3 dense sigmoid layers of width N)")
        self.out()
        self.table(["N", "vjp (tape)", "vjp_hand (sgemv floor)", "materialized", "materialized/vjp",
                    "materialized/vjp_hand"], rows)
        slope_rows = []
        for k in JAC_SERIES:
            if k in self.jac:
                _, full, upper = self.jac[k]
                slope_rows.append([k, "-" if full[0] is None else f"{full[0]:.2f}",
                                   "-" if upper[0] is None else f"{upper[0]:.2f}"])
        self.table(["series", f"slope, N = {JAC_N[0]}..{JAC_N[-1]}", f"slope, N = {FIT_FROM}..{JAC_N[-1]}"],
                   slope_rows)
        sv = self.jac.get("vjp", (None, (None, None), (None, None)))[2][0]
        sm = self.jac.get("materialized", (None, (None, None), (None, None)))[2][0]
        if sv is not None and sm is not None:
            self.goal(f"jacobian_chain slopes near 2 (vjp) and 3 (materialized), N >= {FIT_FROM}",
                      f"{sv:.2f} / {sm:.2f}", abs(sv - 2) <= 0.3 and abs(sm - 3) <= 0.3)
        r = ratio(get("materialized", 1024), get("vjp", 1024))
        if r is not None:
            self.goal("jacobian_chain materialized/vjp >= 100 at N = 1024", fmt_ratio(r), r >= 100)

    def hessian(self):
        rows, self.hes = [], []
        for n in (8, 16, 32, 64):
            h, f = self.t(f"hessian/hvp/{n}"), self.t(f"hessian/full/{n}")
            if h is None and f is None:
                continue
            self.hes.append((n, h, f))
            rows.append([str(n), fmt_time(h), fmt_time(f), fmt_ratio(ratio(f, h))])
        if rows:
            self.out("### hessian (f(x) = sum sigma(W2 sigma(W1 x)), x of size n)")
            self.out()
            self.table(["n", "hvp", "full Hessian", "full/hvp"], rows)

    def memory(self):
        rows = []
        for model in ("xor", "mnist"):
            name = f"memory/tape_bytes/{model}"
            if name not in self.runs:
                continue
            tb, hb = self.counter(name, "tape_bytes"), self.counter(name, "hand_bytes")
            rows.append([model, f"{tb / 1024:.1f} KiB", f"{hb / 1024:.1f} KiB", fmt_ratio(ratio(tb, hb))])
            if model == "mnist":
                self.goal("mnist tape bytes <= 1.1x hand activations", fmt_ratio(ratio(tb, hb)), tb / hb <= 1.1)
        if rows:
            self.out("### memory: tape after one forward vs the hand code's activations")
            self.out()
            self.table(["model", "tape bytes", "hand activations", "tape/hand"], rows)
        name = "memory/rss/xor"
        if name in self.runs:
            a, b = self.counter(name, "rss_step1000_kB"), self.counter(name, "rss_step10000_kB")
            self.out(f"Resident memory over 10,000 xor steps: {a / 1024:.1f} MiB at step 1000, "
                     f"{b / 1024:.1f} MiB at step 10000 ({b - a:+.0f} KiB).")
            self.out()
            self.goal("RSS flat over 10,000 steps (growth < 1%)", f"{b - a:+.0f} KiB", (b - a) <= 0.01 * a)

    def ops(self):
        """The op benchmarks: conv2d and layer_norm against libtorch, batched matmul
        against its own GEMMs called directly; float32, 1 thread."""
        sg = self.counter("sgemm/1024/threads:1", "GFLOPS")
        rows = []
        for shape in CONV_SHAPES:
            tape, torch, gemm = (self.t(f"ops/conv2d/{i}/{shape}") for i in ("tape", "libtorch", "gemm"))
            if tape is None and torch is None:
                continue
            flops = self.counter(f"ops/conv2d/tape/{shape}", "gemm_flops")
            gemm_rate_time = flops / (sg * 1e9) if flops and sg else None
            rows.append([f"conv2d {shape}", fmt_time(tape), fmt_time(torch), fmt_ratio(ratio(tape, torch)),
                         fmt_time(gemm), fmt_ratio(ratio(tape, gemm)), fmt_ratio(ratio(tape, gemm_rate_time))])
            tl = ratio(tape, torch)
            if shape == "digits":
                self.goal("conv2d digits tape/libtorch <= 0.3", fmt_ratio(tl), None if tl is None else tl <= 0.3)
            if shape == "lenet":
                self.goal("conv2d lenet tape/libtorch <= 1.0", fmt_ratio(tl), None if tl is None else tl <= 1.0)
                tg = ratio(tape, gemm_rate_time)
                self.goal("conv2d lenet tape / GEMM time at sgemm rate <= 1.3",
                          f"{fmt_ratio(tg)} (its GEMMs called directly: {fmt_ratio(ratio(gemm, gemm_rate_time))})",
                          None if tg is None else tg <= 1.3)
        tape, gemm = self.t("ops/matmul_batched/tape"), self.t("ops/matmul_batched/gemm")
        if tape is not None or gemm is not None:
            rows.append(["matmul_batched", fmt_time(tape), "-", "-", fmt_time(gemm), fmt_ratio(ratio(tape, gemm)), "-"])
            tg = ratio(tape, gemm)
            self.goal("matmul_batched tape / its GEMMs called directly <= 1.2", fmt_ratio(tg),
                      None if tg is None else tg <= 1.2)
        tape, torch = self.t("ops/layer_norm/tape"), self.t("ops/layer_norm/libtorch")
        if tape is not None or torch is not None:
            rows.append(["layer_norm", fmt_time(tape), fmt_time(torch), fmt_ratio(ratio(tape, torch)), "-", "-", "-"])
        if rows:
            self.out("### ops (forward + backward of one op, float32, 1 thread)")
            self.out()
            self.out("conv2d `digits`: batch 64, 1 -> 8 channels, 8x8, 3x3, padding 1; `lenet`: batch 64, "
                     "32 -> 64 channels, 14x14, 5x5, padding 2. matmul_batched: 32 products of 64x64 by 64x64. "
                     "layer_norm: 8x64x128 over the last 128. `gemm`: the op's GEMMs alone, called directly; "
                     "`GEMM time`: their flops at the 1024^3 sgemm rate of the same run.")
            self.out()
            self.table(["op", "tape", "libtorch", "tape/libtorch", "gemm", "tape/gemm", "tape / GEMM time"], rows)

    def model_step(self):
        """Training steps of nn models against the same torch::nn models (same weights), float32, 1 thread."""
        sg = self.counter("sgemm/1024/threads:1", "GFLOPS")
        rows = []
        for model, bound in MODEL_STEP_GOALS.items():
            tape, torch = self.t(f"model_step/tape/{model}"), self.t(f"model_step/libtorch/{model}")
            if tape is None and torch is None:
                continue
            flops = self.counter(f"model_step/tape/{model}", "gemm_flops")
            gemm_time = flops / (sg * 1e9) if flops and sg else None
            share = lambda t: "-" if gemm_time is None or not t else f"{100 * gemm_time / t:.3g}%"
            losses = [self.counter(f"model_step/{i}/{model}", "first_loss") for i in ("tape", "libtorch")]
            rows.append([model, fmt_time(tape), fmt_time(torch), fmt_ratio(ratio(tape, torch)), share(tape),
                         share(torch), " / ".join("-" if l is None else f"{l:.6g}" for l in losses)])
            tl = ratio(tape, torch)
            self.goal(f"model_step {model} tape/libtorch <= {bound}", fmt_ratio(tl), None if tl is None else tl <= bound)
        if rows:
            self.out("### model_step (a training step of nn layers against torch::nn, float32, 1 thread)")
            self.out()
            self.out("digits_cnn: batch 64 of 8x8, conv 3x3 16 and 32 channels, pools, linear; lenet: batch 64 of 28x28, "
                     "conv 5x5 32 and 64 channels, pools, 3136-128-10; gru: T 25, batch 16, 32 -> 128, linear head on "
                     "every step; transformer: one post-norm encoder layer, T 64, batch 8, D 128, 4 heads, FFN 512. "
                     "SGD; the same initial weights in both (first losses agree). `GEMM share`: the step's GEMM flops "
                     "at the sgemm/1024 rate of the same run, over the step's time.")
            self.out()
            self.table(["model", "tape", "libtorch", "tape/libtorch", "GEMM share tape", "GEMM share libtorch",
                        "first loss tape / libtorch"], rows)

    def dist_step(self):
        """Data-parallel steps (dist_step.cpp): samples per second of all ranks, each rank one
        OpenBLAS thread and the model's batch; exposed communication from DistributedDataParallel's timeline."""
        rows = []
        for model in ("mnist", "wide"):
            one, two = (self.runs.get(f"dist_step/{np}/{model}") for np in (1, 2))
            if one is None and two is None:
                continue
            rate = lambda r: None if r is None else r.get("items_per_second")
            speedup = None if rate(one) is None or rate(two) is None else rate(two) / rate(one)
            share = lambda r: "-" if r is None else f"{100 * r.get('exposed_share', 0):.3g}% ({r.get('exposed_ms', 0):.3g} ms)"
            alone = self.t(f"dist_allreduce/2/{model}")
            rows.append([model, "-" if rate(one) is None else f"{rate(one):.4g}",
                         "-" if rate(two) is None else f"{rate(two):.4g}", fmt_ratio(speedup), share(one), share(two),
                         fmt_time(alone)])
            if model == "wide":
                self.goal("dist_step wide: 2 processes >= 1.8x the samples/s of 1", fmt_ratio(speedup),
                          None if speedup is None else speedup >= 1.8)
                exposed = None if two is None else two.get("exposed_share")
                self.goal("dist_step wide: exposed communication <= 10% of the step (2 processes)",
                          "-" if exposed is None else f"{100 * exposed:.3g}%", None if exposed is None else exposed <= 0.10)
        if rows:
            self.out("### dist_step (data-parallel training steps on MPI, float32, one OpenBLAS thread per process)")
            self.out()
            self.out("The textbook MLPs `mnist` (batch 128 per process) and `wide` (batch 256 per process) through "
                     "nn::DistributedDataParallel with SGD, launched by mpirun at 1 and 2 processes. `exposed`: from "
                     "the end of the backward sweep until every gradient held its average, and its share of the step; "
                     "`allreduce alone`: the same buckets allreduced back to back with nothing else running.")
            self.out()
            self.table(["model", "samples/s, 1 process", "samples/s, 2 processes", "2 / 1", "exposed, 1 process",
                        "exposed, 2 processes", "allreduce alone (2)"], rows)

    def goals_table(self):
        if not self.goals:
            return
        self.out("### Goals")
        self.out()
        mark = {True: "met", False: "NOT met", None: "no data"}
        self.table(["goal", "measured", "status"], [[g, v, mark[m]] for g, v, m in self.goals])

    def build(self):
        ctx = self.context
        self.out(f"Run {ctx.get('date', '?')} on {ctx.get('num_cpus', '?')} CPUs ({ctx.get('cpu_model', '?')}, "
                 f"{ctx.get('mhz_per_cpu', '?')} MHz), load average "
                 f"{', '.join(f'{x:.2f}' for x in ctx.get('load_avg', []))}; OpenBLAS kernels: "
                 f"{ctx.get('openblas_core', '?')}; libtorch: {ctx.get('libtorch', '?')}; "
                 f"engine build: {ctx.get('engine_build', '?')}; "
                 f"medians of {self.repetitions()} repetitions.")
        self.out()
        self.jac, self.hes, self.sca = {}, [], {}
        self.mlp()
        self.blas_threads()
        self.op_overhead()
        self.scalar()
        self.debug_tools()
        self.jacobian()
        self.hessian()
        self.memory()
        self.ops()
        self.model_step()
        self.dist_step()
        self.goals_table()
        return "\n".join(self.lines)

    def repetitions(self):
        reps = {r.get("repetitions") for r in self.runs.values() if r.get("repetitions")}
        return "/".join(str(r) for r in sorted(reps)) or "1"

    # ---------------------------------------------------------------- plots

    def plots(self, outdir):
        gnuplot = shutil.which("gnuplot")
        if not gnuplot:
            print("report.py: gnuplot not found; no plots", file=sys.stderr)
            return []
        made = []
        with tempfile.TemporaryDirectory() as tmp:
            made += self.plot_mlp(gnuplot, tmp, outdir)
            made += self.plot_jacobian(gnuplot, tmp, outdir)
            made += self.plot_hessian(gnuplot, tmp, outdir)
            made += self.plot_scalar(gnuplot, tmp, outdir)
        return made

    @staticmethod
    def run_gnuplot(gnuplot, png, size, script):
        """Runs `script` with gnuplot's output set to `png` of `size` ("900,560")."""
        head = f"set terminal pngcairo size {size} font ',10'\nset output '{png}'\n"
        subprocess.run([gnuplot], input=head + script, text=True, check=True)

    def plot_mlp(self, gnuplot, tmp, outdir):
        rows = []
        for model in MODELS:
            for threads in THREADS:
                ts = [self.t(f"mlp_step/{i}/{model}/threads:{threads}") for i in IMPLS]
                if any(t is not None for t in ts):
                    rows.append((f"{model}/{threads}t", ts))
        if not rows:
            return []
        dat = os.path.join(tmp, "mlp.dat")
        with open(dat, "w") as f:
            for label, ts in rows:
                f.write(label + " " + " ".join("NaN" if t is None else f"{t * 1e6:.6g}" for t in ts) + "\n")
        png = os.path.join(outdir, "bench-mlp_step.png")
        styles = ["pt 7", "pt 5", "pt 9", "pt 13"]
        series = ", ".join(
            f"'{dat}' using ($0+{(k - 1.5) * 0.12:.2f}):{k + 2}{':xtic(1)' if k == 0 else ''} "
            f"with points {styles[k]} ps 1.6 title '{impl}'" for k, impl in enumerate(IMPLS))
        self.run_gnuplot(gnuplot, png, "900,520", f"""
set title 'mlp_step: one float32 training step (median; model / BLAS threads)' noenhanced
set logscale y
set ylabel 'time per step (us, log scale)'
set grid ytics mytics
set key top left
set xrange [-0.5:{len(rows) - 0.5}]
set offsets 0, 0, graph 0.05, graph 0.05
plot {series}
""")
        return [png]

    def plot_jacobian(self, gnuplot, tmp, outdir):
        if not self.jac:
            return []
        labels = {"vjp": "vjp (tape)", "vjp_hand": "vjp by hand (sgemv)", "materialized": "materialized Jacobians"}
        points = {"vjp": 7, "vjp_hand": 9, "materialized": 5}
        lines, slopes = [], []
        for color, key in enumerate(JAC_SERIES, start=1):
            if key not in self.jac:
                continue
            pts, full, (su, cu) = self.jac[key]
            path = os.path.join(tmp, f"{key}.dat")
            with open(path, "w") as f:
                for n, t in pts:
                    f.write(f"{n} {t * 1e6:.6g}\n")
            lines.append(f"'{path}' using 1:2 with points pt {points[key]} ps 1.5 lc {color} title '{labels[key]}'")
            if su is not None:
                lines.append(f"[{FIT_FROM * 0.8}:1400] exp({cu:.6g})*x**{su:.6g}*1e6 with lines lc {color} dt 2 "
                             f"title sprintf('fit N>={FIT_FROM}: slope %.2f (all N: %.2f)', {su:.4f}, {full[0]:.4f})")
                slopes.append(f"{key} {su:.2f}")
        png = os.path.join(outdir, "bench-jacobian_chain.png")
        title = "jacobian_chain: dC/dx through 3 sigmoid layers of width N"
        if slopes:
            title += "\\nfitted slopes (N >= %d): " % FIT_FROM + ", ".join(slopes)
        self.run_gnuplot(gnuplot, png, "900,560", f"""
set title "{title}" noenhanced
set logscale xy
set xlabel 'N'
set ylabel 'time (us)'
set xtics (64, 128, 256, 512, 1024)
set grid
set key top left
set xrange [48:1400]
plot {', '.join(lines)}
""")
        return [png]

    def plot_hessian(self, gnuplot, tmp, outdir):
        if not self.hes:
            return []
        path = os.path.join(tmp, "hes.dat")
        with open(path, "w") as f:
            for n, h, full in self.hes:
                cols = ["NaN" if t is None else f"{t * 1e6:.6g}" for t in (h, full)]
                f.write(f"{n} {cols[0]} {cols[1]}\n")
        png = os.path.join(outdir, "bench-hessian.png")
        self.run_gnuplot(gnuplot, png, "700,420", f"""
set title 'Hessian-vector product vs full Hessian'
set logscale xy
set xlabel 'n (input size)'
set ylabel 'time (us)'
set xtics (8, 16, 32, 64)
set grid
set key top left
plot '{path}' using 1:2 with linespoints pt 7 title 'ad::hvp', '' using 1:3 with linespoints pt 5 title 'ad::hessian'
""")
        return [png]

    def plot_scalar(self, gnuplot, tmp, outdir):
        if not self.sca:
            return []
        lines = []
        colors = {"chain": 1, "rosenbrock": 2, "vector_chain": 3}
        dashes = {"tape": 1, "adolc_retape": 2, "adolc_reuse": 3}
        points = {"tape": 7, "adolc_retape": 5, "adolc_reuse": 9}
        for (workload, impl), pts in sorted(self.sca.items()):
            path = os.path.join(tmp, f"scalar-{workload}-{impl}.dat")
            with open(path, "w") as f:
                for ops, ns in sorted(pts):
                    f.write(f"{ops:.0f} {ns:.6g}\n")
            lines.append(f"'{path}' using 1:2 with linespoints lc {colors.get(workload, 4)} dt {dashes.get(impl, 1)} "
                         f"pt {points.get(impl, 1)} ps 1.3 title '{workload} / {impl}'")
        png = os.path.join(outdir, "bench-scalar.png")
        self.run_gnuplot(gnuplot, png, "900,560", f"""
set title 'scalar: time per op against tape length (double; vector_chain per 64-element op)' noenhanced
set logscale xy
set xlabel 'ops recorded per gradient (tape length)'
set ylabel 'time per op (ns)'
set grid
set key outside right top noenhanced
plot {', '.join(lines)}, {SCALAR_NS_GOAL} with lines lc rgb 'gray' dt 4 title 'goal: {SCALAR_NS_GOAL} ns per op'
""")
        return [png]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results")
    ap.add_argument("--plots", metavar="DIR")
    ap.add_argument("--markdown", metavar="FILE", help="also write the table here")
    args = ap.parse_args()
    context, runs = load(args.results)
    if not runs:
        print(f"report.py: no benchmark results in {args.results}", file=sys.stderr)
        return 1
    report = Report(context, runs)
    text = report.build()
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    if args.plots:
        os.makedirs(args.plots, exist_ok=True)
        for png in report.plots(args.plots):
            print(f"plot: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
