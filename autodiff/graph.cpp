#include "autodiff/graph.hpp"

#include "autodiff/scalar_tape.hpp"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <optional>
#include <set>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "autodiff/debug.hpp"
#include "autodiff/errors.hpp"
#include "autodiff/node.hpp"

namespace ad {
namespace {

/// A DOT double-quoted string's content: quotes and backslashes escaped,
/// line breaks as \n (centred lines).
std::string escape(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (c == '\n') {
            out += "\\n";
        } else if (c != '\r') {
            out += c;
        }
    }
    return out;
}

/// Lines of a label, escaped and joined by DOT's \n.
std::string label(const std::vector<std::string>& lines) {
    std::string out;
    for (std::size_t i = 0; i < lines.size(); ++i) {
        if (i) out += "\\n";
        out += escape(lines[i]);
    }
    return out;
}

const char* dtype_name(std::size_t element_size) {
    return element_size == 4 ? "float32" : element_size == 8 ? "float64" : "?";
}

std::string shape_and_dtype(const std::optional<Shape>& shape, std::size_t element_size) {
    return fmt::format("{} {}", shape ? shape_string(*shape) : "shape ?", dtype_name(element_size));
}

/// The dotted path of a module label "layers.2 (Linear(64, 10))", or empty
/// for a root module's label ("MLP(2, 4, 1)": no path) or no module.
std::string module_path(const std::string& module) {
    const std::size_t open = module.find(" (");
    if (open == std::string::npos || open == 0) return {};
    for (std::size_t i = 0; i < open; ++i) {
        const char c = module[i];
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.')) return {};
    }
    return module.substr(0, open);
}

bool all_digits(std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

/// The first `depth` levels of a dotted path; a list index ("layers.2")
/// belongs to the level before it.
std::string path_prefix(const std::string& path, std::size_t depth) {
    std::size_t levels = 0, end = 0;
    while (end < path.size()) {
        std::size_t dot = path.find('.', end);
        if (dot == std::string::npos) dot = path.size();
        const std::string_view part(path.data() + end, dot - end);
        if (!all_digits(part) || levels == 0) {
            if (levels == depth) return path.substr(0, end - 1);
            ++levels;
        }
        end = dot + 1;
    }
    return path;
}

/// What one drawn node stands for: a record, or (collapse_modules) the
/// consecutive records of one module call.
struct Box {
    std::vector<std::size_t> records;
    std::string key;   // module key for collapsing / clustering; empty: none
    std::string title; // module label of a collapsed box
};

struct Writer {
    const std::vector<RecordInfo>& infos;
    const DotOptions& options;
    std::vector<std::size_t> selected;        // record indices, ascending
    std::optional<std::size_t> root;          // the loss's record
    std::vector<Box> boxes;
    std::vector<std::ptrdiff_t> box_of;       // by record index, -1: not drawn
    /// A parameter's node id (p<index>) and what its first reader saw of it.
    struct Parameter {
        std::size_t index;
        Shape shape;
        std::size_t element_size;
    };
    std::vector<const void*> parameters;      // in order of first use
    std::map<const void*, Parameter> parameter_info;

    std::string box_id(std::size_t b) const {
        const Box& box = boxes[b];
        return box.records.size() == 1 && box.title.empty() ? fmt::format("r{}", box.records[0])
                                                             : fmt::format("m{}", box.records[0]);
    }
    std::string parameter_id(const void* p) const {
        return fmt::format("p{}", parameter_info.at(p).index);
    }
    /// The source node of an input edge, or empty for an input not drawn.
    std::string input_id(const InputInfo& in) const {
        if (in.parameter) return parameter_id(in.parameter);
        if (in.record >= 0 && box_of[static_cast<std::size_t>(in.record)] >= 0)
            return box_id(static_cast<std::size_t>(box_of[static_cast<std::size_t>(in.record)]));
        return {};
    }

    void make_boxes() {
        box_of.assign(infos.size(), -1);
        for (std::size_t i : selected) {
            const RecordInfo& info = infos[i];
            std::string key, title;
            if (options.collapse_modules) {
                const std::string path = module_path(info.module);
                if (!path.empty()) {
                    key = path_prefix(path, std::max<std::size_t>(1, options.collapse_depth));
                    title = key == path ? info.module : key;
                    if (info.backward_of >= 0) key += " (backward)";  // a create_graph sweep's records apart
                }
            } else if (options.cluster_modules) {
                if (!module_path(info.module).empty()) key = info.module;
            }
            const bool joins = options.collapse_modules && !key.empty() && !boxes.empty() && boxes.back().key == key;
            if (joins) {
                Box& box = boxes.back();
                box.records.push_back(i);
                if (box.title != info.module && module_path(info.module) == key) box.title = info.module;
            } else {
                boxes.push_back({{i}, key, options.collapse_modules ? title : std::string()});
            }
            box_of[i] = static_cast<std::ptrdiff_t>(boxes.size() - 1);
            for (const InputInfo& in : info.inputs) {
                if (!in.parameter) continue;
                if (parameter_info.emplace(in.parameter, Parameter{parameters.size(), in.shape, info.element_size}).second) {
                    parameters.push_back(in.parameter);
                }
            }
        }
    }

    std::string box_node(std::size_t b) const {
        const Box& box = boxes[b];
        const RecordInfo& last = infos[box.records.back()];
        std::vector<std::string> lines;
        std::size_t kept = 0;
        for (std::size_t i : box.records) kept += infos[i].kept_bytes;
        if (box.title.empty()) {
            lines.push_back(last.op);
        } else {
            lines.push_back(box.title);
            std::vector<std::string> ops;
            for (std::size_t i : box.records) ops.push_back(infos[i].op);
            lines.push_back(box.records.size() == 1 ? ops[0]
                                                    : fmt::format("{} ops: {}", ops.size(), fmt::join(ops, ", ")));
        }
        lines.push_back(shape_and_dtype(last.shape, last.element_size));
        lines.push_back("keeps " + detail::human_bytes(kept));
        if (options.show_call_sites && box.title.empty() && last.call_site) {
            // Files and lines need debug information (-g or -g1); the function may be known without.
            const CallSite& site = *last.call_site;
            if (!site.file.empty()) {
                lines.push_back(fmt::format("at {}:{}", std::filesystem::path(site.file).filename().string(), site.line));
            } else if (!site.function.empty()) {
                lines.push_back("in " + site.function);
            }
        }
        const bool made_by_backward = last.backward_of >= 0;
        if (options.show_backward && made_by_backward) {
            lines.push_back(fmt::format("made by the VJP of {}", infos[static_cast<std::size_t>(last.backward_of)].op));
        }
        std::string fill = options.show_backward && made_by_backward ? "#f8d7d3"
                           : box.title.empty()                         ? "#e3eefa"
                                                                       : "#d9ecd9";
        const bool is_root = root && std::find(box.records.begin(), box.records.end(), *root) != box.records.end();
        return fmt::format("{} [shape=box, style=\"rounded,filled\", fillcolor=\"{}\"{}, label=\"{}\"];", box_id(b), fill,
                           is_root ? ", peripheries=2" : "", label(lines));
    }

    std::string parameter_node(const void* p) const {
        auto name = options.names.find(p);
        const Parameter& parameter = parameter_info.at(p);
        std::vector<std::string> lines{name != options.names.end() ? name->second : std::string("parameter"),
                                       shape_and_dtype(parameter.shape, parameter.element_size)};
        return fmt::format("{} [shape=ellipse, style=filled, fillcolor=\"#fdf1d6\", label=\"{}\"];", parameter_id(p),
                           label(lines));
    }

    std::string write() {
        make_boxes();
        std::string out = "digraph tape {\n";
        out += fmt::format("  graph [rankdir=\"{}\", fontname=\"Helvetica\", fontsize=11, nodesep=0.3, ranksep=0.35",
                           escape(options.rankdir));
        if (!options.title.empty()) out += fmt::format(", labelloc=t, label=\"{}\"", escape(options.title));
        out += "];\n";
        out += "  node [fontname=\"Helvetica\", fontsize=10, margin=\"0.12,0.04\"];\n";
        out += "  edge [fontname=\"Helvetica\", fontsize=9, color=\"#555555\", arrowsize=0.7];\n";
        // Clusters: runs of boxes of one module call. A parameter that only
        // that call reads is drawn inside it.
        std::vector<std::ptrdiff_t> cluster_of(boxes.size(), -1);
        std::ptrdiff_t clusters = 0;
        for (std::size_t b = 0; b < boxes.size(); ++b) {
            if (options.collapse_modules || boxes[b].key.empty()) continue;
            cluster_of[b] = b > 0 && boxes[b - 1].key == boxes[b].key ? cluster_of[b - 1] : clusters++;
        }
        std::map<const void*, std::ptrdiff_t> home;
        for (std::size_t i : selected) {
            const std::ptrdiff_t c = cluster_of[static_cast<std::size_t>(box_of[i])];
            for (const InputInfo& in : infos[i].inputs) {
                if (!in.parameter) continue;
                auto [it, added] = home.emplace(in.parameter, c);
                if (!added && it->second != c) it->second = -1;
            }
        }
        auto parameters_in = [&](std::ptrdiff_t cluster, const char* indent) {
            std::string lines;
            for (const void* p : parameters) {
                if (home.at(p) == cluster) lines += indent + parameter_node(p) + "\n";
            }
            return lines;
        };
        out += parameters_in(-1, "  ");
        for (std::size_t b = 0; b < boxes.size();) {
            const std::ptrdiff_t c = cluster_of[b];
            if (c < 0) {
                out += "  " + box_node(b++) + "\n";
                continue;
            }
            out += fmt::format("  subgraph cluster_{} {{\n    label=\"{}\"; style=\"rounded,dashed\"; color=\"#888888\"; "
                               "fontsize=10;\n",
                               c, escape(boxes[b].key));
            out += parameters_in(c, "    ");
            for (; b < boxes.size() && cluster_of[b] == c; ++b) out += "    " + box_node(b) + "\n";
            out += "  }\n";
        }
        // The data flow, input -> op, once per pair of nodes.
        std::set<std::pair<std::string, std::string>> drawn;
        for (std::size_t i : selected) {
            const std::string target = box_id(static_cast<std::size_t>(box_of[i]));
            for (const InputInfo& in : infos[i].inputs) {
                std::string source = input_id(in);
                if (source.empty() || source == target || !drawn.emplace(source, target).second) continue;
                out += fmt::format("  {} -> {};\n", source, target);
            }
        }
        if (options.show_backward) out += backward_edges();
        out += "}\n";
        return out;
    }

    /// The sweep: from the last record down, each VJP sends cotangents to
    /// its inputs; edges numbered by the VJP's place in the sweep.
    std::string backward_edges() const {
        std::string out;
        std::set<std::pair<std::string, std::string>> drawn;
        std::size_t step = 0;
        for (auto it = selected.rbegin(); it != selected.rend(); ++it) {
            const RecordInfo& info = infos[*it];
            if (info.inputs.empty()) continue;
            ++step;
            const std::string source = box_id(static_cast<std::size_t>(box_of[*it]));
            for (const InputInfo& in : info.inputs) {
                std::string target = input_id(in);
                if (target.empty() || target == source || !drawn.emplace(source, target).second) continue;
                out += fmt::format("  {} -> {} [style=dashed, color=\"#c0392b\", fontcolor=\"#c0392b\", label=\"{}\", "
                                   "constraint=false];\n",
                                   source, target, step);
            }
        }
        // A create_graph sweep's records, from the record whose VJP made them.
        for (std::size_t i : selected) {
            const RecordInfo& info = infos[i];
            if (info.backward_of < 0 || box_of[static_cast<std::size_t>(info.backward_of)] < 0) continue;
            const std::string from = box_id(static_cast<std::size_t>(box_of[static_cast<std::size_t>(info.backward_of)]));
            const std::string to = box_id(static_cast<std::size_t>(box_of[i]));
            if (from == to || !drawn.emplace(from, to).second) continue;
            out += fmt::format("  {} -> {} [style=dotted, color=\"#c0392b\", arrowhead=odot, constraint=false];\n", from, to);
        }
        return out;
    }
};

std::string write_dot(const Tape& tape, std::optional<std::size_t> root, const Shape& root_shape,
                      const DotOptions& options) {
    std::vector<RecordInfo> infos = describe(tape);
    if (root && !infos[*root].shape) infos[*root].shape = root_shape;  // the loss's value is at hand
    Writer writer{infos, options, {}, root, {}, {}, {}, {}};
    if (root) {
        // The records the loss depends on: back along the inputs from its record.
        std::vector<bool> reached(infos.size(), false);
        std::vector<std::size_t> stack{*root};
        reached[*root] = true;
        while (!stack.empty()) {
            const std::size_t i = stack.back();
            stack.pop_back();
            for (const InputInfo& in : infos[i].inputs) {
                if (in.record >= 0 && !reached[static_cast<std::size_t>(in.record)]) {
                    reached[static_cast<std::size_t>(in.record)] = true;
                    stack.push_back(static_cast<std::size_t>(in.record));
                }
            }
        }
        for (std::size_t i = 0; i < infos.size(); ++i) {
            if (reached[i]) writer.selected.push_back(i);
        }
    } else {
        for (std::size_t i = 0; i < infos.size(); ++i) writer.selected.push_back(i);
    }
    return writer.write();
}

}  // namespace

std::string to_dot(const Tape& tape, const DotOptions& options) { return write_dot(tape, std::nullopt, {}, options); }

template <class T>
std::string to_dot(const Var<T>& loss, const DotOptions& options) {
    const Tape* tape = Tape::current();
    if (!tape) throw tape_error("to_dot: no tape is recording; make an ad::Tape before the forward pass");
    if (!loss.defined()) throw tape_error("to_dot: the loss is an empty Var");
    const auto& node = *loss.node_ptr();
    if (node.is_leaf) {
        throw tape_error(fmt::format("to_dot: the loss {} is a leaf (a parameter, a constant, or computed under NoGrad): "
                                     "no record of the current tape computed it",
                                     shape_string_of(node.value)));
    }
    if (node.epoch != tape->epoch()) {
        throw tape_error(fmt::format("to_dot: the loss {} was not recorded on the current tape (another tape, or "
                                     "before its last clear())",
                                     shape_string_of(node.value)));
    }
    // A 0-d loss of the scalar stream: the run of scalar ops that holds it.
    return write_dot(*tape, detail::record_of(*tape, node), shape_of(node.value), options);
}

template std::string to_dot(const Var<float>&, const DotOptions&);
template std::string to_dot(const Var<double>&, const DotOptions&);

}  // namespace ad
