#include "autodiff/profile.hpp"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "autodiff/debug.hpp"
#include "autodiff/errors.hpp"
#include "autodiff/observe.hpp"

namespace ad {
namespace {

/// The innermost profile of this thread.
thread_local Profile* active = nullptr;

double to_us(std::int64_t ns) { return static_cast<double>(ns) / 1e3; }


}  // namespace

namespace detail {

std::int64_t profile_clock() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

void profile_forward(const char* op, std::size_t bytes) {
    Profile* p = active;
    if (!p || p->stop_ns_ >= 0) return;
    const std::int64_t now = profile_clock();
    p->events_.push_back({op, Profile::Kind::forward, p->last_end_ns_, now, bytes});
    p->last_end_ns_ = now;
}

void profile_backward(const char* op, std::int64_t start_ns) {
    Profile* p = active;
    if (!p || p->stop_ns_ >= 0) return;
    const std::int64_t now = profile_clock();
    p->events_.push_back({op, Profile::Kind::backward, start_ns, now, 0});
    p->last_end_ns_ = now;
}

}  // namespace detail

Profile::Profile() : start_ns_(detail::profile_clock()), last_end_ns_(start_ns_), outer_(active) {
    active = this;
    detail::count_observer(detail::observe_profile, 1);
}

Profile::~Profile() {
    stop();
    // Profiles are scoped, so the innermost one ends first.
    if (active == this) active = outer_;
}

void Profile::stop() {
    if (stop_ns_ >= 0) return;
    stop_ns_ = detail::profile_clock();
    detail::count_observer(detail::observe_profile, -1);
}

double Profile::wall_us() const { return to_us((stop_ns_ >= 0 ? stop_ns_ : detail::profile_clock()) - start_ns_); }

std::vector<Profile::Row> Profile::rows() const {
    std::map<std::string, Row> ops, ranges;
    for (const Event& e : events_) {
        Row& row = e.kind == Kind::range ? ranges[e.name] : ops[e.name];
        row.name = e.name;
        const double us = to_us(e.end_ns - e.start_ns);
        switch (e.kind) {
            case Kind::forward:
                ++row.count;
                row.forward_us += us;
                row.bytes += e.bytes;
                break;
            case Kind::backward:
                ++row.backward_count;
                row.backward_us += us;
                break;
            case Kind::range:
                row.range = true;
                ++row.count;
                row.forward_us += us;
                break;
        }
    }
    std::vector<Row> out;
    for (auto& [name, row] : ops) out.push_back(std::move(row));
    std::stable_sort(out.begin(), out.end(), [](const Row& a, const Row& b) { return a.total_us() > b.total_us(); });
    std::vector<Row> range_rows;
    for (auto& [name, row] : ranges) range_rows.push_back(std::move(row));
    std::stable_sort(range_rows.begin(), range_rows.end(),
                     [](const Row& a, const Row& b) { return a.total_us() > b.total_us(); });
    out.insert(out.end(), range_rows.begin(), range_rows.end());
    return out;
}

std::string Profile::table(std::size_t max_rows) const {
    const std::vector<Row> all = rows();
    double op_total = 0;
    for (const Row& row : all) {
        if (!row.range) op_total += row.total_us();
    }
    std::string out = fmt::format("{:<32} {:>8} {:>13} {:>9} {:>14} {:>13} {:>8} {:>11}\n", "op", "calls", "forward (us)",
                                  "backward", "backward (us)", "total (us)", "total %", "made");
    const std::string rule(32 + 9 + 14 + 10 + 15 + 14 + 9 + 12, '-');
    out += rule + "\n";
    std::size_t shown = 0;
    bool ranges_started = false;
    for (const Row& row : all) {
        if (row.range && !ranges_started) {
            out += fmt::format("{}\nranges (their time includes the ops inside)         calls    total (us)\n", rule);
            ranges_started = true;
        }
        if (!row.range && max_rows && shown++ >= max_rows) continue;
        const std::string name = row.name.size() > 32 ? row.name.substr(0, 29) + "..." : row.name;
        if (row.range) {
            out += fmt::format("{:<32} {:>8} {:>13.1f}\n", name, row.count, row.forward_us);
            continue;
        }
        out += fmt::format("{:<32} {:>8} {:>13.1f} {:>9} {:>14.1f} {:>13.1f} {:>7.1f}% {:>11}\n", name, row.count,
                           row.forward_us, row.backward_count, row.backward_us, row.total_us(),
                           op_total > 0 ? 100 * row.total_us() / op_total : 0.0, detail::human_bytes(row.bytes));
    }
    out += rule + "\n";
    out += fmt::format("ops: {:.1f} us of {:.1f} us wall time\n", op_total, wall_us());
    return out;
}

std::string Profile::json() const {
    nlohmann::json rows_json = nlohmann::json::array();
    for (const Row& row : rows()) {
        rows_json.push_back({{"name", row.name},
                             {"range", row.range},
                             {"count", row.count},
                             {"backward_count", row.backward_count},
                             {"forward_us", row.forward_us},
                             {"backward_us", row.backward_us},
                             {"total_us", row.total_us()},
                             {"bytes", row.bytes}});
    }
    return nlohmann::json{{"wall_us", wall_us()}, {"rows", rows_json}}.dump(2);
}

std::string Profile::chrome_trace() const {
    nlohmann::json events = nlohmann::json::array();
    for (const Event& e : events_) {
        const char* category = e.kind == Kind::forward ? "forward" : e.kind == Kind::backward ? "backward" : "range";
        nlohmann::json event = {{"name", e.name},
                                {"cat", category},
                                {"ph", "X"},
                                {"ts", to_us(e.start_ns - start_ns_)},
                                {"dur", to_us(e.end_ns - e.start_ns)},
                                {"pid", 1},
                                {"tid", e.kind == Kind::range ? 1 : 2}};
        if (e.kind == Kind::forward) event["args"] = {{"bytes", e.bytes}};
        events.push_back(std::move(event));
    }
    return nlohmann::json{{"traceEvents", events}, {"displayTimeUnit", "ms"}}.dump();
}

void Profile::write_chrome_trace(const std::string& path) const {
    std::ofstream file(path);
    file << chrome_trace();
    file.close();
    if (!file) throw io_error(fmt::format("Profile::write_chrome_trace: cannot write {}", path));
}

void ProfileRange::begin(const char* name, const std::string* owned_name) {
    if (!active || active->stop_ns_ >= 0) return;
    profile_ = active;
    if (owned_name) name = profile_->range_names_.insert(*owned_name).first->c_str();
    const std::int64_t now = detail::profile_clock();
    event_ = profile_->events_.size();
    profile_->events_.push_back({name, Profile::Kind::range, now, now, 0});
    profile_->last_end_ns_ = now;
}

void ProfileRange::end() noexcept {
    if (active != profile_) return;  // the profile ended first
    const std::int64_t now = detail::profile_clock();
    profile_->events_[event_].end_ns = now;
    profile_->last_end_ns_ = now;
}

}  // namespace ad
