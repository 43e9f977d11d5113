// The backward sweep: from a loss's cotangent to every parameter's grad().
//
// backward() and grad() put the seed (1 for a scalar loss) in the loss's
// cotangent slot and run the tape's records from the loss's record down to
// the first one no earlier sweep consumed (Tape::run with Pass::backward):
// each record's VJP pushes its cotangent to its inputs (record.hpp). At the
// end, the parameters the sweep reached add their summed cotangents into
// grad(). A sweep records nothing (NoGrad) unless create_graph asks it to
// record its own ops, so that its gradients can be differentiated again.
//
// grad(loss, wrt) leaves grad() alone and returns the cotangents of `wrt`:
// a parameter's from its slot, an intermediate value's by stopping the sweep
// just above its record, whose run would drop it. A sweep that fails drops
// every cotangent it made, and grad() is as it was.

#include <algorithm>
#include <functional>
#include <utility>

#include "autodiff/functional.hpp"
#include "autodiff/memory/grad_buffers.hpp"
#include "autodiff/ops/elementwise.hpp"
#include "autodiff/ops/reduce.hpp"
#include "autodiff/record.hpp"
#include "autodiff/scalar_tape.hpp"

namespace ad::detail {

// Cotangent accumulation (record.hpp).

template <class T>
Var<T> fit_broadcast_gradient(const char* op, Var<T> grad, const SavedShape& input_shape) {
    Shape want = input_shape.to_shape();
    if (broadcasts_to(want, shape_of(grad.value()))) return sum_to_shape(grad, want);
    reject_vjp_shape(op, shape_of(grad.value()), want);
}

template <class T>
void add_to_cotangent(CotangentSlot<T>& slot, Var<T> g) {
    if (!grad_enabled() && slot.held_alone()) {
        slot->value += g.value();
        return;
    }
    slot = add(Var<T>(slot), g).node_ptr();
}

template <class T>
Array<T>* running_sum(CotangentSlot<T>& slot, const SavedShape& shape) {
    if (grad_enabled()) return nullptr;
    if (!slot) {
        // A recycled node: a sum the size of a big input (the packed Q, K, V
        // projection of attention) would otherwise page-fault in fresh
        // memory on every sweep.
        Var<T> zeros = make_uninitialized<T>(shape.to_shape());
        std::fill(zeros.mutable_value().begin(), zeros.mutable_value().end(), T(0));
        slot = std::move(zeros).node_ptr();
    } else if (!slot.held_alone()) {
        return nullptr;
    }
    return &slot->value;
}

// The sweep.

template <class T>
std::vector<Var<T>> run_backward(const char* fn, const Var<T>& loss, const Var<T>* seed,
                                 const std::vector<Var<T>>& wrt, BackwardOptions options, bool accumulate) {
    check_backward(fn, loss, seed, wrt);  // shapes, a finite loss that requires a gradient
    Node<T>& loss_node = *loss.node_ptr();
    auto seed_value = [&] { return seed ? *seed : filled_like(loss, T(1)); };
    if (loss_node.is_leaf) {  // nothing to walk: the loss is a parameter itself
        std::vector<Var<T>> grads;
        for (const auto& x : wrt) grads.push_back(x.node_ptr() == loss.node_ptr() ? seed_value() : filled_like(x, T(0)));
        if (accumulate) written_grad(loss_node) += seed_value().value();
        return grads;
    }
    check_same_tape(fn, loss, Tape::current());
    for (const auto& x : wrt) check_same_tape(fn, x, Tape::current());
    Tape& tape = *Tape::current();
    const std::size_t first = tape.consumed_end(), end = record_of(tape, loss_node) + 1;
    if (end <= first) reject_consumed(fn, loss);

    // Where the sweep stops to read an intermediate value of `wrt`, top down;
    // a 0-d one's entry leaves its cotangent in its slot instead.
    std::vector<Var<T>> grads(wrt.size());
    std::vector<std::pair<std::size_t, std::size_t>> stops;  // (record, position in wrt)
    ScalarReadouts<T> scalar_readouts(tape);
    for (std::size_t i = 0; i < wrt.size(); ++i) {
        const Node<T>& node = *wrt[i].node_ptr();
        if (!node.requires_grad || node.is_leaf) continue;
        const std::size_t record = record_of(tape, node);
        if (record < first || record >= end) continue;
        if (node.record_index & scalar_record_bit) {
            scalar_readouts.keep(wrt[i], i);
        } else {
            stops.emplace_back(node.record_index, i);
        }
    }
    std::sort(stops.begin(), stops.end(), std::greater<>());

    auto& reached = reached_parameters<T>();
    const std::size_t reached_before = reached.size();
    auto drop_reached = [&]() noexcept {
        for (std::size_t k = reached_before; k < reached.size(); ++k) reached[k]->cotangent.reset();
        reached.resize(reached_before);
    };
    // A backward() may be watched record by record (SweepListener); the
    // sweeps nested in its VJPs are not.
    SweepListener* const listener = accumulate ? listen_to_sweeps(nullptr) : nullptr;
    struct Relisten {
        SweepListener* listener;
        ~Relisten() { if (listener) listen_to_sweeps(listener); }
    } relisten{listener};
    auto sweep = [&](std::size_t from, std::size_t to) {
        if (!listener) return tape.run(from, to, Pass::backward);
        for (std::size_t i = to; i-- > from;) {
            tape.run(i, i + 1, Pass::backward);
            listener->record_done(i);
        }
    };
    try {
        GradModeScope grad_mode(options.create_graph);
        // Gradient buffers are lent only to a sweep that ends in them.
        LendingGrads lending(accumulate && !options.create_graph);
        // A 0-d loss of the scalar stream, swept without recording, is seeded in its entry.
        if (!seed && !options.create_graph && (loss_node.record_index & scalar_record_bit)) {
            seed_scalar_entry(tape, loss_node);
        } else {
            *slot_of(loss, tape) = seed_value().node_ptr();
        }
        if (listener) listener->sweep_begins(tape, first, end);
        std::size_t top = end;
        for (auto [record, position] : stops) {
            sweep(record + 1, top);
            top = record + 1;
            if (const auto& slot = tape.slot<CotangentSlot<T>>(record)) grads[position] = Var<T>(slot);
        }
        sweep(first, top);
        scalar_readouts.take(grads);
        if (first > 0) tape.run(0, first, Pass::reject_reached);
        for (std::size_t i = 0; i < wrt.size(); ++i) {
            const CotangentSlot<T>* slot = wrt[i].is_leaf() ? slot_of(wrt[i], tape) : nullptr;
            if (!grads[i].defined()) grads[i] = slot && *slot ? Var<T>(*slot) : filled_like(wrt[i], T(0));
        }
        if (accumulate) {
            // A parameter without a cotangent here: a SweepListener added it already (finish_gradient).
            for (std::size_t k = reached_before; k < reached.size(); ++k) {
                if (reached[k]->cotangent) add_to_grad(*reached[k]);
            }
        }
    } catch (...) {
        scalar_readouts.drop();
        tape.run(0, end, Pass::discard);
        drop_reached();
        if (listener) listener->sweep_failed();
        throw;
    }
    drop_reached();  // the cotangents grad() read, or none left
    if (!options.retain_graph && !options.create_graph) tape.consume(end);
    if (listener) listener->sweep_ends();
    return grads;
}

#define AD_INSTANTIATE(T)                                                                                       \
    template Var<T> fit_broadcast_gradient(const char*, Var<T>, const SavedShape&);                             \
    template void add_to_cotangent(CotangentSlot<T>&, Var<T>);                                                  \
    template Array<T>* running_sum(CotangentSlot<T>&, const SavedShape&);                                       \
    template std::vector<Var<T>> run_backward(const char*, const Var<T>&, const Var<T>*,                        \
                                              const std::vector<Var<T>>&, BackwardOptions, bool);

AD_INSTANTIATE(float)
AD_INSTANTIATE(double)

}  // namespace ad::detail
