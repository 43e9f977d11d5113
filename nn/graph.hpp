#pragma once
// Graph export of a model's step: ad::to_dot with the parameters named by
// their path in the model ("layers.0.weight").
//
//   ad::Tape tape{{.annotate = true}};  // also the module path of every record
//   auto loss = nn::half_sse(model(x), y);
//   std::ofstream("step.dot") << nn::to_dot(loss, model);

#include <string>

#include "autodiff/graph.hpp"
#include "nn/module.hpp"

namespace ad::nn {

/// The names ad::to_dot gives `module`'s parameters: their dotted paths.
template <class T>
std::map<const void*, std::string> parameter_names(const Module<T>& module) {
    std::map<const void*, std::string> names;
    for (const auto& p : module.named_parameters()) names.emplace(p.var.node_ptr().get(), p.name);
    return names;
}

/// ad::to_dot(loss, options) with `module`'s parameters named by their path
/// (names already in options.names are kept).
template <class T>
std::string to_dot(const Var<T>& loss, const Module<T>& module, DotOptions options = {}) {
    options.names.merge(parameter_names(module));
    return ad::to_dot(loss, options);
}

}  // namespace ad::nn
