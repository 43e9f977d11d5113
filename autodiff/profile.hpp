#pragma once
// The profiler: where a step's time goes, op by op.
//
//   ad::Profile profile;
//   ... train a few steps ...
//   profile.stop();
//   std::cout << profile.table();                 // sorted by total time
//   profile.write_chrome_trace("trace.json");     // chrome://tracing, Perfetto
//
// Per op name it counts calls and sums forward time, backward time (the
// record's VJP, from the sweep) and the bytes of the values the op made.
// An op's forward time is the time since the previous op, range or sweep
// ended on this thread: the op's own work plus any of the caller's code that
// ran just before it (an op's work starts inside the op's function, before
// the engine sees it, so this is what the engine can time without a clock
// read in every op). Ranges (ProfileRange, and nn's module calls and
// optimizer steps) mark code that is not ops, so it is not charged to the
// op after it. Only the thread that made the profiler is profiled. Off (no
// Profile alive), ops pay one test of a byte.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <unordered_set>
#include <string>
#include <vector>

namespace ad {

namespace detail {
/// The profiler's hooks (debug.cpp calls them when observe_profile is on).
std::int64_t profile_clock() noexcept;
void profile_forward(const char* op, std::size_t bytes);
void profile_backward(const char* op, std::int64_t start_ns);
}  // namespace detail

/// Profiles ops on the calling thread from construction to stop() (or
/// destruction). Profiles nest: events go to the innermost one.
class Profile {
public:
    Profile();
    ~Profile();
    Profile(const Profile&) = delete;
    Profile& operator=(const Profile&) = delete;

    /// Ends profiling; the results stay readable.
    void stop();

    /// One row of the table: an op name's totals, or a range's.
    struct Row {
        std::string name;
        bool range = false;            ///< a ProfileRange (its times include the ops inside)
        std::size_t count = 0;         ///< forward calls (ops) or entries (ranges)
        std::size_t backward_count = 0;///< records whose VJP ran
        double forward_us = 0;
        double backward_us = 0;
        std::size_t bytes = 0;         ///< bytes of the values the op's forward made
        double total_us() const { return forward_us + backward_us; }
    };
    /// Ops sorted by total time (largest first), then ranges.
    std::vector<Row> rows() const;
    /// Wall time from construction to stop().
    double wall_us() const;

    /// The rows as a table, the layout of torch.profiler's
    /// key_averages().table(); `max_rows` ops at most (0: all).
    std::string table(std::size_t max_rows = 0) const;
    /// The rows and the wall time as JSON.
    std::string json() const;
    /// Every event as Chrome trace-event JSON (chrome://tracing, Perfetto).
    std::string chrome_trace() const;
    /// chrome_trace() into a file; io_error when it cannot be written.
    void write_chrome_trace(const std::string& path) const;

    enum class Kind : std::uint8_t { forward, backward, range };
    struct Event {
        const char* name;
        Kind kind;
        std::int64_t start_ns;
        std::int64_t end_ns;
        std::size_t bytes;
    };
    const std::vector<Event>& events() const { return events_; }

private:
    friend class ProfileRange;
    friend void detail::profile_forward(const char* op, std::size_t bytes);
    friend void detail::profile_backward(const char* op, std::int64_t start_ns);

    std::vector<Event> events_;
    std::unordered_set<std::string> range_names_;  // Event::name of named ranges (node-based: stable addresses)
    std::int64_t start_ns_;
    std::int64_t stop_ns_ = -1;
    std::int64_t last_end_ns_;  // where the next forward op's time starts
    Profile* outer_;
};

/// A named range in the current profile (torch's record_function): shown
/// in the trace, listed among the rows, and not charged to the next op.
/// Costs one test when no profile is on.
class ProfileRange {
public:
    explicit ProfileRange(const char* name);
    explicit ProfileRange(const std::string& name);
    ~ProfileRange();
    ProfileRange(const ProfileRange&) = delete;
    ProfileRange& operator=(const ProfileRange&) = delete;

private:
    Profile* profile_;
    std::size_t event_ = 0;
};

}  // namespace ad
