#include "autodiff/debug.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <iterator>
#include <cxxabi.h>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>

#ifdef TAPEGRAD_BACKTRACE_HEADER
#include TAPEGRAD_BACKTRACE_HEADER  // GCC's libbacktrace (autodiff/CMakeLists.txt)
#define TAPEGRAD_HAVE_BACKTRACE
#endif

#include "autodiff/errors.hpp"
#include "autodiff/observe.hpp"
#include "autodiff/profile.hpp"
#include "autodiff/record.hpp"

namespace ad {
namespace detail {
namespace {

/// The record a sweep is running (Tape::run_observed), for the backward
/// check's message; sweeps nest (a VJP may run one).
struct SweepFrame {
    const Tape* tape;
    std::size_t record;
};

struct ObserverState {
    bool anomaly = false;
    int annotate = 0;
    int profile = 0;
    int modules = 0;
    std::vector<std::shared_ptr<const std::string>> scopes;
    std::size_t pending_kept = 0;  // bytes of detail::Kept values made for the op being recorded
    SweepFrame* sweep = nullptr;
};

thread_local ObserverState state;

void refresh() noexcept {
    std::uint8_t bits = 0;
    if (state.anomaly) bits |= observe_anomaly | observe_annotate;  // a backward error names the forward call
    if (state.annotate > 0) bits |= observe_annotate;
    if (state.profile > 0) bits |= observe_profile;
    if (state.modules > 0) bits |= observe_modules;
    recording_state.observe = bits;
}

// ---- call sites --------------------------------------------------------

constexpr std::size_t max_frames = 64;

#ifdef TAPEGRAD_HAVE_BACKTRACE
backtrace_state* backtrace() {
    // Made once, shared by threads (libbacktrace's threaded mode); it reads
    // the executable's and libraries' debug information on first use.
    static backtrace_state* shared = backtrace_create_state(nullptr, 1, [](void*, const char*, int) {}, nullptr);
    return shared;
}
#endif

/// Whether a source file belongs to tapegrad, xtensor, the standard library
/// or the C library rather than to the user's program. A relative path (a
/// build that passes the compiler relative paths, as Ninja does) is read
/// from its first folder: tapegrad's own are autodiff/ and nn/, and the C
/// library names its files by the folders of its source tree.
bool internal_file(const char* file) {
    if (!file || !*file) return true;
    auto starts = [](const char* text, const std::string& prefix) {
        return std::strncmp(text, prefix.c_str(), prefix.size()) == 0;
    };
    if (file[0] != '/') {
        while (starts(file, "../") || starts(file, "./")) file += file[1] == '/' ? 2 : 3;
        static const std::string relative[] = {"autodiff/", "nn/", "sysdeps/", "csu/", "nptl/", "stdlib/", "libio/",
                                               "misc/", "string/", "signal/", "elf/"};
        for (const auto& prefix : relative) {
            if (starts(file, prefix)) return true;
        }
        return false;
    }
    static const std::string absolute[] = {
        std::string(TAPEGRAD_SOURCE_DIR) + "/autodiff/", std::string(TAPEGRAD_SOURCE_DIR) + "/nn/",
        std::string(TAPEGRAD_INCLUDE_DIR) + "/autodiff/", std::string(TAPEGRAD_INCLUDE_DIR) + "/nn/",
        "/usr/include/", "/usr/lib/gcc/", "/usr/local/include/xtensor", "/usr/local/include/xtl"};
    for (const auto& prefix : absolute) {
        if (starts(file, prefix)) return true;
    }
    return false;
}

std::string demangled(const char* name) {
    if (!name) return {};
    int status = 0;
    char* plain = abi::__cxa_demangle(name, nullptr, nullptr, &status);
    if (status != 0 || !plain) return name;
    std::string out(plain);
    std::free(plain);
    // "f(ad::Var<double> const&, ...)" -> "f": the line already says which call.
    if (!out.empty() && out.back() == ')') {
        int depth = 0;
        for (std::size_t i = out.size(); i-- > 0;) {
            if (out[i] == ')') ++depth;
            if (out[i] == '(' && --depth == 0) {
                out.resize(i);
                break;
            }
        }
    }
    return out;
}

void capture_frames(std::vector<std::uintptr_t>& frames) {
#ifdef TAPEGRAD_HAVE_BACKTRACE
    struct Sink {
        std::vector<std::uintptr_t>* frames;
        std::size_t taken = 0;
    } sink{&frames};
    backtrace_simple(
        backtrace(), 1,
        [](void* data, std::uintptr_t pc) {
            auto& s = *static_cast<Sink*>(data);
            s.frames->push_back(pc);
            return ++s.taken < max_frames ? 0 : 1;
        },
        [](void*, const char*, int) {}, &sink);
#else
    (void)frames;
#endif
}

std::string flat_index_string(const Shape& shape, std::size_t flat) {
    std::vector<std::size_t> index(shape.size());
    for (std::size_t d = shape.size(); d-- > 0;) {
        index[d] = shape[d] == 0 ? 0 : flat % shape[d];
        flat = shape[d] == 0 ? 0 : flat / shape[d];
    }
    return fmt::format("({}{})", fmt::join(index, ", "), index.size() == 1 ? "," : "");
}

template <class T>
std::size_t first_non_finite(const Array<T>& a) {
    const T* data = a.data();
    for (std::size_t i = 0, n = a.size(); i < n; ++i) {
        if (!std::isfinite(data[i])) return i;
    }
    return a.size();
}

template <class T>
std::string value_string(T v) {
    return std::isnan(v) ? "nan" : v > 0 ? "inf" : "-inf";
}

std::string module_part(const std::shared_ptr<const std::string>& module) {
    return module && !module->empty() ? fmt::format(" inside module {}", *module) : std::string();
}

/// The call site and module of record `record` of `tape` as a message part.
std::string forward_site(const Tape* tape, std::size_t record) {
    const TapeNotes* notes = tape ? tape->notes() : nullptr;
    const RecordNote* note = notes ? notes->find(record) : nullptr;
    if (!note) return "an unknown call site (recorded before anomaly mode was on)";
    std::string where = call_site_of(notes->frames.data() + note->first_frame, note->frame_count).to_string();
    if (note->backward_of >= 0) {
        where = fmt::format("the backward sweep of {} (record {}), which was called at {}", tape->op_name(note->backward_of),
                            note->backward_of, where);
    }
    return where + module_part(note->module);
}

}  // namespace

const RecordNote* TapeNotes::find(std::size_t record) const {
    auto it = std::lower_bound(notes.begin(), notes.end(), record,
                               [](const RecordNote& note, std::size_t r) { return note.record < r; });
    return it != notes.end() && it->record == record ? &*it : nullptr;
}

std::string human_bytes(std::size_t bytes) {
    if (bytes < 1024) return fmt::format("{} B", bytes);
    const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
    double value = static_cast<double>(bytes) / 1024;
    std::size_t unit = 0;
    while (value >= 1024 && unit + 1 < std::size(units)) {
        value /= 1024;
        ++unit;
    }
    return fmt::format("{:.1f} {}", value, units[unit]);
}

CallSite call_site_of(const std::uintptr_t* frames, std::size_t count) {
    CallSite site;
#ifdef TAPEGRAD_HAVE_BACKTRACE
    for (std::size_t i = 0; i < count && site.file.empty(); ++i) {
        backtrace_pcinfo(
            backtrace(), frames[i],
            [](void* data, std::uintptr_t, const char* file, int line, const char* function) {
                if (internal_file(file)) return 0;  // the next (outer) inlined frame
                auto& s = *static_cast<CallSite*>(data);
                s.file = file;
                s.line = static_cast<unsigned>(line);
                s.function = demangled(function);
                return 1;
            },
            [](void*, const char*, int) {}, &site);
    }
#else
    (void)frames;
    (void)count;
#endif
    return site;
}

CallSite current_call_site() {
    std::vector<std::uintptr_t> frames;
    capture_frames(frames);
    return call_site_of(frames.data(), frames.size());
}

std::string origin_of(const Tape& tape, std::size_t record) {
    if (record >= tape.size()) return {};
    return fmt::format(" (computed by {}, called at {})", tape.op_name(record), forward_site(&tape, record));
}

bool set_anomaly_mode(bool on) noexcept {
    const bool previous = state.anomaly;
    state.anomaly = on;
    refresh();
    return previous;
}

void count_observer(Observe tool, int delta) noexcept {
    if (tool == observe_annotate) state.annotate += delta;
    if (tool == observe_profile) state.profile += delta;
    if (tool == observe_modules) state.modules += delta;
    refresh();
}

void note_kept(std::size_t bytes) noexcept { state.pending_kept += bytes; }

void push_scope(std::shared_ptr<const std::string> label) { state.scopes.push_back(std::move(label)); }
void pop_scope() noexcept {
    if (!state.scopes.empty()) state.scopes.pop_back();
}
const std::shared_ptr<const std::string>* current_scope() noexcept {
    return state.scopes.empty() ? nullptr : &state.scopes.back();
}

template <class T>
void observe_op(const char* op, const Var<T>& result, const Var<T>* const* inputs, std::size_t count, Tape* tape) {
    // The ops a VJP runs belong to the record being swept: its backward
    // check and its backward time, not a forward op's.
    if (state.sweep) return;
    const Array<T>& y = result.value();
    if (state.anomaly) {
        const std::size_t bad = first_non_finite(y);
        bool inputs_finite = bad < y.size();
        std::vector<std::string> shapes;
        for (std::size_t i = 0; i < count && inputs_finite; ++i) {
            const Array<T>& x = inputs[i]->value();
            inputs_finite = first_non_finite(x) == x.size();
            shapes.push_back(shape_string_of(x));
        }
        if (inputs_finite) {
            state.pending_kept = 0;
            const auto* scope = current_scope();
            throw value_error(fmt::format(
                "{}: anomaly: its result (shape {}) holds {} at index {} from finite inputs of shapes {}; "
                "{} was called at {}{}",
                op, shape_string_of(y), value_string(y.data()[bad]), flat_index_string(shape_of(y), bad),
                fmt::join(shapes, ", "), op, current_call_site().to_string(), scope ? module_part(*scope) : ""));
        }
    }
    if (state.profile > 0) profile_forward(op, y.size() * sizeof(T));
    if (!tape) state.pending_kept = 0;
}

template <class T>
void note_record(Tape& tape, const Var<T>& result) {
    const std::size_t kept = std::exchange(state.pending_kept, 0);
    if (!(recording_state.observe & observe_annotate)) return;
    TapeNotes& notes = tape.make_notes();
    RecordNote note;
    note.record = tape.size() - 1;
    note.shape = shape_of(result.value());
    note.kept_bytes = kept;
    const auto* scope = current_scope();
    if (state.sweep && state.sweep->tape == &tape) {
        // Made by a create_graph sweep: the user's call is that of the op
        // whose VJP this is.
        note.backward_of = static_cast<std::ptrdiff_t>(state.sweep->record);
        if (const RecordNote* swept = notes.find(state.sweep->record)) {
            note.first_frame = swept->first_frame;
            note.frame_count = swept->frame_count;
            if (!scope) scope = &swept->module;
        }
    } else {
        note.first_frame = notes.frames.size();
        capture_frames(notes.frames);
        note.frame_count = notes.frames.size() - note.first_frame;
    }
    if (scope) note.module = *scope;
    notes.notes.push_back(std::move(note));
}

template <class T>
void check_cotangent(const char* op, std::size_t input, const Array<T>& grad, const Array<T>& input_grad) {
    if (first_non_finite(grad) < grad.size()) return;  // went bad before this record
    const std::size_t bad = first_non_finite(input_grad);
    if (bad == input_grad.size()) return;
    const SweepFrame* sweep = state.sweep;
    throw value_error(fmt::format(
        "{} backward: anomaly: the VJP turned a finite cotangent of the result (shape {}) into {} at index {} of "
        "the cotangent of {} (shape {}); {} was called at {}",
        op, shape_string_of(grad), value_string(input_grad.data()[bad]),
        flat_index_string(shape_of(input_grad), bad),
        input == std::size_t(-1) ? std::string("its fused last step") : fmt::format("input {}", input),
        shape_string_of(input_grad), op,
        sweep ? forward_site(sweep->tape, sweep->record) : std::string("an unknown call site")));
}

template void observe_op(const char*, const Var<float>&, const Var<float>* const*, std::size_t, Tape*);
template void observe_op(const char*, const Var<double>&, const Var<double>* const*, std::size_t, Tape*);
template void note_record(Tape&, const Var<float>&);
template void note_record(Tape&, const Var<double>&);
template void check_cotangent(const char*, std::size_t, const Array<float>&, const Array<float>&);
template void check_cotangent(const char*, std::size_t, const Array<double>&, const Array<double>&);

}  // namespace detail

std::string CallSite::to_string() const {
    if (file.empty()) return "an unknown call site (build with -g or -g1 to see files and lines)";
    return function.empty() ? fmt::format("{}:{}", file, line) : fmt::format("{}:{} in {}", file, line, function);
}

DetectAnomaly::DetectAnomaly(bool enabled) : previous_(detail::set_anomaly_mode(enabled)) {}
DetectAnomaly::~DetectAnomaly() { detail::set_anomaly_mode(previous_); }

bool anomaly_mode() noexcept { return detail::state.anomaly; }

Annotate::Annotate() { detail::count_observer(detail::observe_annotate, 1); }
Annotate::~Annotate() { detail::count_observer(detail::observe_annotate, -1); }

detail::TapeNotes& Tape::make_notes() {
    if (!notes_) notes_ = std::make_unique<detail::TapeNotes>();
    return *notes_;
}

void Tape::run_observed(std::size_t first, std::size_t last, Pass pass) {
    detail::SweepFrame frame{this, 0};
    struct Restore {
        detail::SweepFrame* outer;
        ~Restore() { detail::state.sweep = outer; }
    } restore{std::exchange(detail::state.sweep, &frame)};
    const bool timing = pass == Pass::backward && detail::state.profile > 0;
    for (std::size_t i = last; i-- > first;) {
        Record record = records_[i];
        frame.record = i;
        // A record's slot is a NodeRef, one pointer: null when no cotangent
        // reached the record, which then does nothing worth timing.
        if (timing && *static_cast<void* const*>(record.slot)) {
            const auto start = detail::profile_clock();
            record.run(record.closure, pass);
            detail::profile_backward(record.op, start);
        } else {
            record.run(record.closure, pass);
        }
    }
}

std::vector<RecordInfo> describe(const Tape& tape) {
    std::vector<RecordInfo> out(tape.size());
    std::unordered_map<const void*, std::size_t> by_slot;
    const detail::TapeNotes* notes = tape.notes();
    for (std::size_t i = 0; i < tape.size(); ++i) {
        detail::RecordDescription d;
        detail::describing = &d;
        try {
            tape.describe(i);
        } catch (...) {
            detail::describing = nullptr;
            throw;
        }
        detail::describing = nullptr;
        RecordInfo& info = out[i];
        info.index = i;
        info.op = tape.op_name(i);
        info.element_size = d.element_size;
        info.kept_bytes = d.closure_bytes + d.result_bytes;
        if (d.result_kept) info.shape = d.result_shape;
        if (d.slot) by_slot[d.slot] = i;
        for (const auto& in : d.inputs) {
            InputInfo input;
            auto it = by_slot.find(in.slot);
            if (it != by_slot.end() && !in.parameter) {
                input.record = static_cast<std::ptrdiff_t>(it->second);
                if (!out[it->second].shape) out[it->second].shape = in.shape;
            }
            input.parameter = in.parameter;
            input.shape = in.shape;
            info.inputs.push_back(std::move(input));
        }
        if (const detail::RecordNote* note = notes ? notes->find(i) : nullptr) {
            info.shape = note->shape;
            info.kept_bytes += note->kept_bytes;
            info.call_site = detail::call_site_of(notes->frames.data() + note->first_frame, note->frame_count);
            if (note->module) info.module = *note->module;
            info.backward_of = note->backward_of;
        }
    }
    return out;
}

}  // namespace ad
