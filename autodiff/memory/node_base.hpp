#pragma once
// NodeBase: the part of a value's node that memory management and the tape's
// pins read: its reference count (memory/node_ref.hpp) and what ties it to
// the tapes that pin it (memory/pins.hpp). Not a template, so that a Tape,
// which holds nodes of both element types, can read it.

#include <atomic>
#include <cstdint>

namespace ad::detail {

struct NodeBase {
    /// NodeRefs that hold this node (NodeRef), counted atomically: any Var
    /// may be copied and dropped on any thread.
    std::atomic<std::uint32_t> refs{0};
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
