#pragma once
// NodeBase: the part of a value's node that memory management and the tape's
// pins read: its reference count (memory/node_ref.hpp, biased_count.hpp) and what ties it to
// the tapes that pin it (memory/pins.hpp). Not a template, so that a Tape,
// which holds nodes of both element types, can read it.

#include <atomic>
#include <cstdint>

namespace ad::detail {

struct NodeBase {
    /// NodeRefs that hold this node: owned + (shared >> 2), counted as
    /// memory/biased_count.hpp says, so that any Var may be copied and
    /// dropped on any thread. The thread that adopted the node counts in
    /// `owned` (only it writes it); the others in `shared`, whose low bits
    /// are flags (counts::merged, counts::queued).
    std::atomic<std::uint32_t> counting_thread{0};  // counting_token of that thread; 0 once merged
    std::atomic<std::uint32_t> owned{0};
    std::atomic<std::int32_t> shared{0};
    /// Where the last tape that pinned this leaf keeps its pin: that tape's
    /// id in the high half, the pin's index in the low half (Tape::pin). A
    /// hint only: another tape may have written it since.
    std::atomic<std::uint64_t> pin_hint{0};
    /// Parameters: the thread whose tapes have it pinned, in the high half
    /// (a thread token), and how many of those tapes do, in the low half; 0
    /// when no tape has it. Only one thread's tapes record a parameter at a
    /// time (Tape::pin), so its cotangent and gradient have one writer.
    std::atomic<std::uint64_t> owner{0};
};

/// A number that names the calling thread for NodeBase::owner (never 0).
std::uint32_t thread_token() noexcept;

}  // namespace ad::detail
