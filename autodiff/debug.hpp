#pragma once
// Seeing inside the tape: anomaly mode, records annotated with the user's
// call site and module path, and a description of a tape's records (what
// graph export and model summaries read).
//
// Anomaly mode checks values where they go bad, not where they are noticed:
//   forward   the first op whose inputs are all finite but whose result is
//             not throws value_error naming the op, the shapes, the first bad
//             element, and the file and line of the user's call;
//   backward  the first VJP that turns a finite cotangent into one that is
//             not throws naming the op, the input, and the op's forward call
//             site (and a loss that is not finite is rejected by backward,
//             with or without anomaly mode).
// Call sites are found by walking the stack (GCC's libbacktrace) only while
// anomaly mode or annotation is on: the program counters of each recorded op
// are kept, and turned into file, line and function (with the debug
// information of -g or -g1) only for a message. The first frame outside
// tapegrad, xtensor and the standard library is the user's call. Off, every
// op pays one test of a byte.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "autodiff/tape.hpp"
#include "autodiff/tensor.hpp"

namespace ad {

/// Anomaly mode on the calling thread while the guard lives (nestable; a
/// guard made with `false` turns it off inside). TapeOptions::detect_anomaly
/// does the same for as long as that tape lives.
class DetectAnomaly {
public:
    explicit DetectAnomaly(bool enabled = true);
    ~DetectAnomaly();
    DetectAnomaly(const DetectAnomaly&) = delete;
    DetectAnomaly& operator=(const DetectAnomaly&) = delete;

private:
    int previous_;
};

/// Whether anomaly mode is on in this thread.
bool anomaly_mode() noexcept;

/// Records made while the guard lives keep their call site and module path
/// (for ad::describe, graph export and messages) without anomaly mode's
/// checks of values. Nestable; TapeOptions::annotate does the same.
class Annotate {
public:
    Annotate();
    ~Annotate();
    Annotate(const Annotate&) = delete;
    Annotate& operator=(const Annotate&) = delete;
};

/// Where the user's code called an op: the first stack frame outside
/// tapegrad, xtensor and the standard library. `file` is empty when no frame
/// had debug information (build with -g or -g1 to see files and lines).
struct CallSite {
    std::string file;
    unsigned line = 0;
    std::string function;
    /// "file:line in function", or "an unknown call site (...)".
    std::string to_string() const;
};

/// One input of a record that receives a gradient (inputs that do not, such
/// as data, are not on the tape).
struct InputInfo {
    /// The record that computed the input, or -1 for a parameter.
    std::ptrdiff_t record = -1;
    /// The parameter's node (compare with Var::node_ptr().get()), or nullptr.
    const void* parameter = nullptr;
    Shape shape;
};

/// What a record is, for graph export and inspection.
struct RecordInfo {
    std::size_t index = 0;
    const char* op = "";
    /// The output's shape, when known: the record keeps its result, was
    /// annotated, or a later record reads it.
    std::optional<Shape> shape;
    std::size_t element_size = 0;  ///< 4 (float) or 8 (double)
    /// Bytes the record keeps alive for the backward sweep: its closure, its
    /// result when the VJP reads it, and (annotated records only) the values
    /// its VJP captured.
    std::size_t kept_bytes = 0;
    std::vector<InputInfo> inputs;
    /// Annotated records only: the user's call, and the module path inside
    /// which it ran ("layers.2 (Linear(64, 10))"), empty outside modules.
    std::optional<CallSite> call_site;
    std::string module;
    /// A record made by a create_graph sweep: the index of the record whose
    /// VJP made it; -1 otherwise.
    std::ptrdiff_t backward_of = -1;
};

/// The records of `tape`, in recording order.
std::vector<RecordInfo> describe(const Tape& tape);

namespace detail {

/// What an annotated record keeps besides its closure.
struct RecordNote {
    std::size_t record = 0;
    std::size_t first_frame = 0;   // program counters in TapeNotes::frames
    std::size_t frame_count = 0;
    std::shared_ptr<const std::string> module;
    Shape shape;
    std::size_t kept_bytes = 0;    // values captured through detail::Kept
    std::ptrdiff_t backward_of = -1;
};

struct TapeNotes {
    std::vector<RecordNote> notes;  // by record index, ascending
    std::vector<std::uintptr_t> frames;
    const RecordNote* find(std::size_t record) const;
    void clear() {
        notes.clear();
        frames.clear();
    }
};

/// "0 B", "512 B", "1.5 KiB", "3.0 MiB": bytes for a reader (graph export, the profiler).
std::string human_bytes(std::size_t bytes);

/// The call site of a stack of program counters (innermost first).
CallSite call_site_of(const std::uintptr_t* frames, std::size_t count);
/// The call site of the caller of the function calling this.
CallSite current_call_site();

/// " (computed by op, called at ...)": what anomaly mode adds to the error of
/// a non-finite loss, from the record that computed it; empty when unknown.
std::string origin_of(const Tape& tape, std::size_t record);

}  // namespace detail
}  // namespace ad
