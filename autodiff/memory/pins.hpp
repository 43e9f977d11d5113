#pragma once
// PinTable: the leaves (parameters, constants) a tape holds across steps.
//
// For: a training step's records capture its parameters, data and targets
// every step. Instead of counting a reference to each in every record (a
// count changed twice per capture), the tape pins each leaf once, until
// the clear() that ends a step which did not use it, and records borrow it
// (detail::Kept). Pinning a parameter also claims it for the calling thread
// (NodeBase::owner), so that its cotangent and gradient have one writer, and
// remembers the first record that reads it (first_record_of), which lets
// nn::DistributedDataParallel send a gradient as soon as the sweep has
// completed it. Removing it: records would count their leaves (slower small
// steps), and the claim and first-record bookkeeping would need another home.

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "autodiff/inline.hpp"
#include "autodiff/memory/node_base.hpp"

namespace ad::detail {

class PinTable {
public:
    using Hold = void (*)(NodeBase*) noexcept;
    /// A record index meaning "none"; + 1 wraps to 0 (see pin).
    static constexpr std::size_t no_record = ~std::size_t{0};

    /// `tape_id` names the owning tape in the nodes' pin hints; `thread` is
    /// detail::thread_token() of the thread it records on.
    PinTable(std::uint32_t tape_id, std::uint32_t thread) noexcept : tape_id_(tape_id), thread_(thread) {}
    ~PinTable() { release(true); }
    PinTable(const PinTable&) = delete;
    PinTable& operator=(const PinTable&) = delete;

    /// Pins `node` so that record `reader` borrows it: `hold` adds the pin's
    /// count when the node is new here, `release` drops it later. With
    /// `claim` (a parameter) the node is also claimed for this thread: false,
    /// and nothing pinned, when tapes of another thread hold it.
    /// `reader` may be a callable that gives the index, asked only when needed.
    template <class Reader>
    AD_INLINE bool pin(NodeBase* node, Hold hold, Hold release, bool claim, const Reader& reader) {
        // The node remembers where its pin is: found in a load and two compares.
        const std::uint64_t hint = node->pin_hint.load(std::memory_order_relaxed);
        const std::size_t index = static_cast<std::uint32_t>(hint);
        if ((hint >> 32) == tape_id_ && index < pins_.size() && pins_[index].node == node) {
            Pin& pin = pins_[index];
            pin.used = true;
            if (pin.first_record + 1 <= consumed_end_) pin.first_record = index_from(reader);  // unset, or read only by consumed records
            return true;
        }
        return pin_slowly(node, hold, release, claim, index_from(reader));
    }

    std::size_t size() const noexcept { return pins_.size(); }
    /// Where the pin of `node` is, right after pin(node, ...) succeeded; it
    /// stays there until the next release().
    static std::size_t index_of(const NodeBase* node) noexcept {
        return static_cast<std::uint32_t>(node->pin_hint.load(std::memory_order_relaxed));
    }
    NodeBase* pinned(std::size_t index) const noexcept { return pins_[index].node; }

    /// The first record at or above the consumed end that reads `node`, or no_record.
    std::size_t first_record_of(const NodeBase* node) const noexcept;
    /// Records below `end` were walked by a sweep that did not keep them.
    void consume(std::size_t end) noexcept { consumed_end_ = end; }

    /// Drops the pins that the step just ended did not use (all of them when
    /// `all`), after the records that borrowed them are gone.
    void release(bool all) noexcept;

private:
    template <class Reader>
    static std::size_t index_from(const Reader& reader) {
        if constexpr (std::is_invocable_v<const Reader&>) {
            return reader();
        } else {
            return reader;
        }
    }

    struct Pin {
        NodeBase* node;
        Hold release;
        bool used;                 // by a record since the last release()
        bool claimed;              // a parameter, claimed for this thread (NodeBase::owner)
        std::size_t first_record;  // see first_record_of
    };
    bool pin_slowly(NodeBase* node, Hold hold, Hold release, bool claim, std::size_t reader);

    std::uint32_t tape_id_;
    std::uint32_t thread_;
    std::size_t consumed_end_ = 0;
    std::vector<Pin> pins_;
    // Where each pin is, for nodes whose pin_hint another tape overwrote or
    // that are new here: a search through the pins would make the first step
    // of a model with many parameters quadratic in their number.
    std::unordered_map<const NodeBase*, std::size_t> index_;
};

}  // namespace ad::detail
