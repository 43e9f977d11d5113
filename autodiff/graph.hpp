#pragma once
// Graph export: a tape's records as a Graphviz DOT graph (ad::describe is
// what it reads).
//
//   ad::Tape tape{{.annotate = true}};          // module paths, for nn::to_dot
//   auto loss = nn::half_sse(model(x), y);
//   std::ofstream("step.dot") << nn::to_dot(loss, model);
//   // dot -Tsvg step.dot -o step.svg
//
// One box per record: its op, output shape, dtype and the bytes it keeps for
// the backward sweep. Parameters are ellipses named by DotOptions::names (the
// module path, which nn::to_dot fills in) or "parameter (shape)". Edges follow
// the data flow, input -> op. Constants (data, targets) are not on the tape
// and are not drawn.

#include <cstddef>
#include <map>
#include <string>

#include "autodiff/debug.hpp"
#include "autodiff/tape.hpp"
#include "autodiff/record.hpp"

namespace ad {

struct DotOptions {
    /// Names of parameters, by node (Var::node_ptr().get()).
    std::map<const void*, std::string> names;
    /// One node per module call (annotated records; see Annotate) instead of
    /// one per record: the consecutive records inside the same module at
    /// depth `collapse_depth` (path components that are list indices, as in
    /// "layers.2", do not count as a level) become one box listing their ops,
    /// with the last one's shape and the bytes kept by them all. Records
    /// outside modules, or in the root module only, stay one box each. Two
    /// calls of one module with no record between them become one box.
    bool collapse_modules = false;
    std::size_t collapse_depth = 1;
    /// Also draw the backward sweep: red dashed edges, output -> input (where
    /// the cotangents go), numbered in the order the sweep runs them; records
    /// made by a create_graph sweep are shaded and linked by a dotted edge to
    /// the record whose VJP made them.
    bool show_backward = false;
    /// Annotated records: add the user's call site ("file.cpp:42", which needs
    /// debug information: -g or -g1) to the label of records drawn one per box.
    bool show_call_sites = false;
    /// Draw records made inside a module in a box (a cluster) labelled with
    /// the module path, one per module call (annotated records only).
    bool cluster_modules = true;
    /// A title above the graph; none when empty.
    std::string title;
    /// Graphviz rankdir: "TB" (inputs at the top, loss at the bottom) or "LR".
    std::string rankdir = "TB";
};

/// Every record of `tape`, in DOT.
std::string to_dot(const Tape& tape, const DotOptions& options = {});

/// The records of the current tape that `loss` depends on, in DOT, with the
/// loss's record drawn with a double border. Throws tape_error when no tape
/// is recording or `loss` is empty, a leaf, or not recorded on the current
/// tape since its last clear().
template <class T>
std::string to_dot(const Var<T>& loss, const DotOptions& options = {});

extern template std::string to_dot(const Var<float>&, const DotOptions&);
extern template std::string to_dot(const Var<double>&, const DotOptions&);

}  // namespace ad
