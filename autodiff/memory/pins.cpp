#include "autodiff/memory/pins.hpp"

#include <algorithm>
#include <atomic>

namespace ad::detail {
namespace {

std::atomic<std::uint32_t> next_thread_token{1};

constexpr std::uint64_t low_half = 0xffffffffu;

/// Claims a parameter for the thread `token` (NodeBase::owner): false when
/// another thread's tapes hold it.
bool claim_for(NodeBase& node, std::uint32_t token) noexcept {
    const std::uint64_t mine = std::uint64_t{token} << 32;
    std::uint64_t owner = node.owner.load(std::memory_order_acquire);
    for (;;) {
        std::uint64_t next;
        if (owner == 0) {
            next = mine | 1;
        } else if ((owner & ~low_half) == mine) {
            next = owner + 1;
        } else {
            return false;
        }
        // acquire: the writes of the thread that held it before (its sweeps'
        // gradients, its optimizer's steps) are seen here.
        if (node.owner.compare_exchange_weak(owner, next, std::memory_order_acquire, std::memory_order_acquire)) {
            return true;
        }
    }
}

/// Ends one tape's claim. Only the owning thread changes a non-zero owner,
/// so a store suffices; release, for the next thread's acquire.
void unclaim(NodeBase& node) noexcept {
    const std::uint64_t owner = node.owner.load(std::memory_order_relaxed);
    node.owner.store((owner & low_half) == 1 ? 0 : owner - 1, std::memory_order_release);
}

}  // namespace

std::uint32_t thread_token() noexcept {
    thread_local const std::uint32_t token = next_thread_token.fetch_add(1, std::memory_order_relaxed);
    return token;
}

bool PinTable::pin_slowly(NodeBase* node, Hold hold, Hold release, bool claim, std::size_t reader) {
    std::size_t index;
    if (auto found = index_.find(node); found != index_.end()) {
        index = found->second;  // pinned here, but another tape overwrote the hint
    } else {
        index = pins_.size();
        // Room first (may throw: nothing done yet).
        if (pins_.size() == pins_.capacity()) pins_.reserve(std::max<std::size_t>(16, 2 * pins_.size()));
        const auto entry = index_.emplace(node, index).first;
        if (claim && !claim_for(*node, thread_)) {
            index_.erase(entry);
            return false;
        }
        hold(node);
        pins_.push_back({node, release, true, claim, reader});  // within the reserved capacity
    }
    pins_[index].used = true;
    if (pins_[index].first_record + 1 <= consumed_end_) pins_[index].first_record = reader;
    node->pin_hint.store((std::uint64_t{tape_id_} << 32) | index, std::memory_order_relaxed);
    return true;
}

std::size_t PinTable::first_record_of(const NodeBase* node) const noexcept {
    const std::uint64_t hint = node->pin_hint.load(std::memory_order_relaxed);
    const std::size_t index = static_cast<std::uint32_t>(hint);
    const Pin* pin = nullptr;
    if ((hint >> 32) == tape_id_ && index < pins_.size() && pins_[index].node == node) {
        pin = &pins_[index];
    } else if (auto found = index_.find(node); found != index_.end()) {
        pin = &pins_[found->second];
    }
    return pin && pin->first_record + 1 > consumed_end_ ? pin->first_record : no_record;
}

void PinTable::release(bool all) noexcept {
    std::size_t kept = 0;
    for (std::size_t i = 0; i < pins_.size(); ++i) {
        Pin pin = pins_[i];
        if (pin.used && !all) {
            pin.used = false;
            pin.first_record = no_record;
            if (kept != i) {
                pin.node->pin_hint.store((std::uint64_t{tape_id_} << 32) | kept, std::memory_order_relaxed);
                index_[pin.node] = kept;
            }
            pins_[kept++] = pin;
        } else {
            index_.erase(pin.node);
            if (pin.claimed) unclaim(*pin.node);
            pin.release(pin.node);  // last: it may recycle the node
        }
    }
    pins_.resize(kept);
    if (all) index_.clear();
    consumed_end_ = 0;
}

}  // namespace ad::detail
