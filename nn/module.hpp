#pragma once
// Module: what every layer and model is. A module is called on a batch (rows
// are samples) and exposes its parameters by name, the names PyTorch's
// state_dict would give them ("layers.0.weight"), so checkpoints and
// reference weights line up by name rather than by position.

#include <memory>
#include <string>
#include <vector>

#include "autodiff/autodiff.hpp"

namespace ad::nn {

using ad::Reduction;

/// A parameter and the dotted name it has inside its model.
template <class T>
struct NamedParameter {
    std::string name;
    Var<T> var;
};

template <class T>
class Module {
public:
    virtual ~Module() = default;

    /// The module applied to a batch `x` (rows are samples).
    virtual Var<T> forward(const Var<T>& x) = 0;

    /// The parameters, named relative to this module. Var is a shared handle:
    /// changing a returned parameter's value changes the model's.
    virtual std::vector<NamedParameter<T>> parameters() const { return {}; }

    /// A short description used in error messages and printouts, e.g. "Linear(2, 3)".
    virtual std::string describe() const = 0;

    Var<T> operator()(const Var<T>& x) { return forward(x); }
    /// Data are constants: no gradient flows into them.
    Var<T> operator()(const Array<T>& x) { return forward(constant(x)); }

    /// Sets every parameter's accumulated gradient to zero (backward adds into it).
    void zero_grad() {
        for (auto& p : parameters()) p.var.zero_grad();
    }

    /// The total number of scalars in the parameters.
    std::size_t parameter_count() const {
        std::size_t n = 0;
        for (const auto& p : parameters()) n += p.var.size();
        return n;
    }
};

template <class T>
using ModulePtr = std::shared_ptr<Module<T>>;

}  // namespace ad::nn
