#include "autodiff/scalar_tape.hpp"

#include <algorithm>
#include <mutex>
#include <set>

#include <fmt/format.h>

#include "autodiff/observe.hpp"

namespace ad::detail {

namespace {

/// The rules that have an id, by id - 1. Few (one per op with a scalar
/// path), registered on first use.
template <class T>
struct ScalarRules {
    std::mutex mutex;
    std::array<ScalarRule<T>*, 256> by_id{};
    std::size_t count = 0;
};

template <class T>
ScalarRules<T>& scalar_rules() {
    static ScalarRules<T> rules;
    return rules;
}

}  // namespace

template <class T>
std::uint16_t register_scalar_rule(ScalarRule<T>& rule) {
    auto& rules = scalar_rules<T>();
    std::lock_guard lock(rules.mutex);
    if (std::uint16_t id = rule.id.load(std::memory_order_relaxed)) return id;  // another thread was first
    if (rules.count == rules.by_id.size()) {
        throw std::logic_error(fmt::format("{}: more than {} ops with a scalar path", rule.op, rules.by_id.size()));
    }
    rules.by_id[rules.count++] = &rule;
    const auto id = static_cast<std::uint16_t>(rules.count);
    rule.id.store(id, std::memory_order_release);
    return id;
}

template <class T>
const ScalarRule<T>& scalar_rule(std::uint16_t id) noexcept {
    // Read without the lock: an id is published (release) after its slot is written.
    return *scalar_rules<T>().by_id[id - 1];
}

template <class T>
CotangentSlot<T>& scalar_slot(const Tape& tape, std::size_t entry) {
    auto& stream = recorded_stream<T>(tape);
    ScalarEntry<T>& e = stream.entries[entry];
    if (e.bridge == 0) {
        stream.bridges.emplace_back();
        e.bridge = static_cast<std::uint32_t>(stream.bridges.size());
    }
    return stream.bridges[e.bridge - 1];
}

template <class T>
std::size_t record_of(const Tape& tape, const Node<T>& node) {
    if (!(node.record_index & scalar_record_bit)) return node.record_index;
    const auto& stream = recorded_stream<T>(tape);
    const std::size_t entry = node.record_index & ~scalar_record_bit;
    // The last run that starts at or before the entry.
    auto run = std::upper_bound(stream.runs.begin(), stream.runs.end(), entry,
                                [](std::size_t e, const auto& start) { return e < start.first_entry; });
    return std::prev(run)->record;
}

template <class T>
void open_scalar_run(Tape& tape, ScalarStream<T>& stream) {
    if (stream.runs.size() == stream.runs.capacity()) stream.runs.reserve(std::max<std::size_t>(16, 2 * stream.runs.size()));
    ScalarRun<T>* run = nullptr;
    tape.record_in_place<ScalarRun<T>>([&](void* memory) {
        run = new (memory) ScalarRun<T>{"scalar ops", {}, Var<T>(), &tape, &stream, stream.entries.size(),
                                        stream.entries.size()};
        return run;
    });
    stream.runs.push_back({stream.entries.size(), tape.size() - 1});  // within the reserved capacity
    stream.open_run = run;
}

template <class T>
void ScalarRun<T>::operator()(Pass pass) {
    switch (pass) {
        case Pass::backward:
            // Entries recorded while this sweep runs (a recording sweep's
            // VJPs) join a later run: close this one.
            if (stream->open_run == this) stream->open_run = nullptr;
            return recording() ? sweep_recorded() : sweep();
        case Pass::discard:
            return discard();
        case Pass::reject_reached:
            for (std::size_t k = first; k < last; ++k) {
                const ScalarEntry<T>& e = stream->entries[k];
                if ((e.flags & scalar_reached) || (e.bridge && stream->bridges[e.bridge - 1])) reject(scalar_rule<T>(e.rule).op);
            }
            return;
        case Pass::describe:
            return describe();
    }
}

template <class T>
AD_INLINE void ScalarRun<T>::send(std::uint32_t to, T cotangent) {
    switch (to & 3) {
        case 0:
            return;
        case 1: {
            ScalarEntry<T>& target = stream->entries[to >> 2];
            target.adjoint += cotangent;
            target.flags |= scalar_reached;
            return;
        }
        case 2: {
            // A 0-d parameter: the first cotangent goes straight into grad()
            // when its zero_grad() is pending (lend_grad_buffer), else into
            // a node of its own; later ones add to it in place.
            auto& parameter = *static_cast<Node<T>*>(tape->pinned(to >> 2));
            if (!parameter.cotangent) {
                reached_parameters<T>().push_back(&parameter);
                if (recording_state.lending_grads && parameter.grad && parameter.grad_is_zero &&
                    parameter.grad->value.dimension() == 0) {
                    parameter.cotangent = parameter.grad;
                    parameter.cotangent->value.data()[0] = cotangent;
                } else {
                    Var<T> g = make_uninitialized<T>(std::array<std::size_t, 0>{});
                    g.mutable_value().data()[0] = cotangent;
                    parameter.cotangent = std::move(g).node_ptr();
                }
            } else if (parameter.cotangent == parameter.grad || parameter.cotangent.held_alone()) {
                parameter.cotangent->value.data()[0] += cotangent;
            } else {
                add_to_cotangent(parameter.cotangent, scalar(cotangent));
            }
            return;
        }
        default: {
            Var<T> g = make_uninitialized<T>(std::array<std::size_t, 0>{});
            g.mutable_value().data()[0] = cotangent;
            accumulate_cotangent(tape->slot<CotangentSlot<T>>(to >> 2), std::move(g));
            return;
        }
    }
}

template <class T>
void ScalarRun<T>::sweep() {
    for (std::size_t k = last; k-- > first;) {
        ScalarEntry<T>& e = stream->entries[k];
        T g = e.adjoint;
        bool reached = e.flags & scalar_reached;
        if (e.bridge) {
            // Cotangent from other records (or the seed of a sweep from here).
            NodeRef<T>& bridge = stream->bridges[e.bridge - 1];
            if (bridge) {
                g = reached ? g + bridge->value.data()[0] : bridge->value.data()[0];
                reached = true;
                bridge.reset();
            }
        }
        if (!reached) continue;
        e.adjoint = T(0);
        e.flags &= ~scalar_reached;
        if (e.flags & scalar_keep) {
            // grad() asked for this value's cotangent: leave it in the bridge.
            Var<T> kept_grad = make_uninitialized<T>(std::array<std::size_t, 0>{});
            kept_grad.mutable_value().data()[0] = g;
            stream->bridges[e.bridge - 1] = std::move(kept_grad).node_ptr();
        }
        const T a = e.values[0], b = e.values[1];
        switch (e.kind) {
            case ScalarKind::unary:
                send(e.from[0], g * b);
                break;
            case ScalarKind::add:
                send(e.from[0], g);
                send(e.from[1], g);
                break;
            case ScalarKind::sub:
                send(e.from[0], g);
                send(e.from[1], -g);
                break;
            case ScalarKind::mul:
                send(e.from[0], g * b);
                send(e.from[1], g * a);
                break;
            case ScalarKind::div:
                send(e.from[0], g / b);
                send(e.from[1], -(g * (a / b) / b));
                break;
        }
    }
}

template <class T>
Var<T> ScalarRun<T>::stand_in(std::uint32_t from, T value) const {
    if ((from & 3) == 2) {
        // The parameter itself, counted as any Var.
        NodeRef<T> borrowed = NodeRef<T>::borrow(static_cast<Node<T>*>(tape->pinned(from >> 2)));
        Var<T> parameter{NodeRef<T>(borrowed)};
        borrowed.forget();
        return parameter;
    }
    Var<T> x = make_uninitialized<T>(std::array<std::size_t, 0>{});
    Node<T>& node = *x.node_ptr();
    node.value.data()[0] = value;
    if ((from & 3) == 0) return x;  // a constant
    // A value that leads to the operand's cotangent slot: an entry's (its
    // bridge) or a record's.
    node.requires_grad = true;
    node.is_leaf = false;
    node.epoch = tape->epoch();
    node.record_index = (from & 3) == 1 ? (from >> 2) | scalar_record_bit : from >> 2;
    return x;
}

template <class T>
void ScalarRun<T>::sweep_recorded() {
    for (std::size_t k = last; k-- > first;) {
        const ScalarEntry<T>& e = stream->entries[k];  // entries never move
        if (!e.bridge || !stream->bridges[e.bridge - 1]) continue;
        NodeRef<T>& bridge = stream->bridges[e.bridge - 1];
        Var<T> g = (e.flags & scalar_keep) ? Var<T>(bridge) : Var<T>(std::move(bridge));
        const bool binary = e.kind != ScalarKind::unary;
        std::array<Var<T>, 2> inputs{stand_in(e.from[0], e.values[0]),
                                     binary ? stand_in(e.from[1], e.values[1]) : Var<T>()};
        Var<T> y;
        {
            GeneralPathOnly general;
            y = scalar_rule<T>(e.rule).apply(inputs.data(), e.values);
        }
        // The replayed op's record: its VJP sends g on through the op's own rule.
        const std::size_t index = y.node_ptr()->record_index;
        tape->slot<CotangentSlot<T>>(index) = std::move(g).node_ptr();
        tape->run(index, index + 1, Pass::backward);
    }
}

template <class T>
void ScalarRun<T>::discard() noexcept {
    for (std::size_t k = first; k < last; ++k) {
        ScalarEntry<T>& e = stream->entries[k];
        e.adjoint = T(0);
        e.flags &= ~scalar_reached;
        if (e.bridge) stream->bridges[e.bridge - 1].reset();
        for (std::uint32_t from : e.from) {
            if ((from & 3) == 2) static_cast<Node<T>*>(tape->pinned(from >> 2))->cotangent.reset();
        }
    }
}

template <class T>
void ScalarRun<T>::describe() const {
    RecordDescription& d = *describing;
    d.slot = &slot;
    d.closure_bytes = sizeof(*this) + (last - first) * sizeof(ScalarEntry<T>);
    d.element_size = sizeof(T);
    // The run's inputs from outside it: parameters and other records, once each.
    std::set<std::uint32_t> seen;
    for (std::size_t k = first; k < last; ++k) {
        for (std::uint32_t from : stream->entries[k].from) {
            const std::uint32_t tag = from & 3;
            if (tag < 2 || !seen.insert(from).second) continue;
            if (tag == 2) {
                auto* parameter = static_cast<Node<T>*>(tape->pinned(from >> 2));
                d.inputs.push_back({&parameter->cotangent, parameter, Shape()});
            } else {
                d.inputs.push_back({&tape->slot<CotangentSlot<T>>(from >> 2), nullptr, Shape()});
            }
        }
    }
}

#define AD_INSTANTIATE(T)                                                         \
    template CotangentSlot<T>& scalar_slot(const Tape&, std::size_t);            \
    template std::size_t record_of(const Tape&, const Node<T>&);                  \
    template void open_scalar_run(Tape&, ScalarStream<T>&);                       \
    template struct ScalarRun<T>;                                                 \
    template std::uint16_t register_scalar_rule(ScalarRule<T>&);                  \
    template const ScalarRule<T>& scalar_rule(std::uint16_t) noexcept;

AD_INSTANTIATE(float)
AD_INSTANTIATE(double)

}  // namespace ad::detail
