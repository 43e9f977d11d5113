#pragma once
// Shared by the graph export tests: reading a DOT graph back (its node and
// edge lines) and asking Graphviz's dot to parse it when it is installed.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <system_error>
#include <tuple>
#include <utility>

#include <doctest/doctest.h>

namespace ad::test {

/// Node id -> label of every node line `  id [... label="..."];`.
inline std::map<std::string, std::string> dot_nodes(const std::string& dot) {
    static const std::regex node(R"re(^\s*(\w+) \[.*label="((?:[^"\\]|\\.)*)"\];$)re");
    std::map<std::string, std::string> out;
    std::istringstream in(dot);
    for (std::string line; std::getline(in, line);) {
        std::smatch m;
        if (std::regex_match(line, m, node)) out[m[1]] = m[2];
    }
    return out;
}

/// The edges `a -> b` whose attributes contain `with` (plain edges, with no
/// attributes, when `with` is empty), as (source, target, label).
struct DotEdge {
    std::string source, target, label;
    bool operator<(const DotEdge& o) const {
        return std::tie(source, target, label) < std::tie(o.source, o.target, o.label);
    }
    bool operator==(const DotEdge& o) const { return !(*this < o) && !(o < *this); }
};
inline std::set<DotEdge> dot_edges(const std::string& dot, const std::string& with = "") {
    static const std::regex edge(R"re(^\s*(\w+) -> (\w+)( \[.*\])?;$)re");
    static const std::regex edge_label(R"re(label="([^"]*)")re");
    std::set<DotEdge> out;
    std::istringstream in(dot);
    for (std::string line; std::getline(in, line);) {
        std::smatch m;
        if (!std::regex_match(line, m, edge)) continue;
        const std::string attributes = m[3];
        if (with.empty() ? !attributes.empty() : attributes.find(with) == std::string::npos) continue;
        std::smatch l;
        std::string label = std::regex_search(attributes, l, edge_label) ? std::string(l[1]) : "";
        out.insert({m[1], m[2], label});
    }
    return out;
}

/// Whether Graphviz's dot is on the PATH.
inline bool have_dot() { return std::system("command -v dot >/dev/null 2>&1") == 0; }

/// dot -Tsvg parses `dot` (exit status 0); says so and checks nothing when
/// Graphviz is not installed.
inline void check_dot_parses(const std::string& dot) {
    if (!have_dot()) {
        MESSAGE("Graphviz's dot is not installed: the DOT output was not parsed (apt install graphviz)");
        return;
    }
    const auto dir = std::filesystem::temp_directory_path();
    const auto stem = dir / ("tapegrad-graph-test-" + std::to_string(std::rand()) + "-" +
                             std::to_string(reinterpret_cast<std::uintptr_t>(&dot)));
    const std::string in = stem.string() + ".dot", out = stem.string() + ".svg";
    std::ofstream(in) << dot;
    const std::string command = "dot -Tsvg '" + in + "' -o '" + out + "'";
    const int status = std::system(command.c_str());
    CHECK_MESSAGE(status == 0, "dot rejected:\n" << dot);
    if (status == 0) CHECK(std::filesystem::file_size(out) > 0);
    std::error_code ignored;
    std::filesystem::remove(in, ignored);
    std::filesystem::remove(out, ignored);
}

}  // namespace ad::test
