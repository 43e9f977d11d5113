#pragma once
// Model summaries, like torchinfo's summary(model, input_size): one forward
// of a seeded input, watched module call by module call, printed as a table
// of the calls with their output shapes and parameter counts, then totals.
//
//   nn::Sequential<float> model({...});
//   std::cout << nn::summary(model, {2, 1, 28, 28});
//
// The forward runs under NoGrad (nothing is recorded) in evaluation mode
// (dropout off, batch norm reads its running statistics and does not update
// them, as torchinfo's default mode="eval"); every module's mode is restored
// afterwards, as are the thread's module watcher and observer count, also
// when the forward throws (its error, e.g. a shape_error naming the layer,
// reaches the caller unchanged).

#include <cstddef>
#include <string>
#include <vector>

#include "nn/module.hpp"

namespace ad::nn {

/// One module call of the summary's forward, in call order (a module
/// before the calls inside it).
struct SummaryRow {
    std::string path;         ///< dotted path from the model ("" for the model itself)
    std::string description;  ///< the module's describe()
    std::string type;         ///< the description up to its first '(': "Conv2d", "Sequential"
    std::size_t depth = 0;    ///< how many calls enclose this one (0: the model)
    bool has_output = false;  ///< false when the call returned something other than a Var
    Shape output_shape;
    /// Parameters registered directly on the module, not its children's
    /// (torchinfo's "Param #" of a leaf layer): a tied parameter counts in
    /// each module that registers it, once in the totals.
    std::size_t params = 0;
    std::size_t param_bytes = 0;
    bool leaf = false;    ///< the module has no submodules
    bool repeat = false;  ///< the same module was called earlier in this forward (shared)
};

/// What summarize() found.
struct ModelSummary {
    std::vector<SummaryRow> rows;
    Shape input_shape;
    std::size_t element_size = 0;      ///< sizeof(T)
    std::size_t total_params = 0;      ///< distinct parameters' scalars: model.parameter_count()
    std::size_t trainable_params = 0;  ///< of those, the ones that require a gradient
    std::size_t param_bytes = 0;       ///< total_params * element_size
    std::size_t buffer_bytes = 0;      ///< buffers (batch norm's running statistics)
    std::size_t input_bytes = 0;
    /// The bytes of the outputs of the calls of leaf modules (modules
    /// without submodules), repeats included: what the forward keeps
    /// alive for a backward, roughly. torchinfo's "Forward/backward pass
    /// size" is twice this (the cotangents are as large).
    std::size_t output_bytes = 0;

    /// The table torchinfo prints: a row per call, indented by depth (the
    /// path and description of a leaf, the path and type of a container),
    /// then the totals.
    std::string table() const;
};

/// Runs model on an input of shape input_shape (seeded values in [-1, 1))
/// and reports every module call. Throws what the forward throws.
template <class T>
ModelSummary summarize(Module<T>& model, const Shape& input_shape);

/// summarize(model, input_shape).table().
template <class T>
std::string summary(Module<T>& model, const Shape& input_shape);

extern template ModelSummary summarize(Module<float>&, const Shape&);
extern template ModelSummary summarize(Module<double>&, const Shape&);
extern template std::string summary(Module<float>&, const Shape&);
extern template std::string summary(Module<double>&, const Shape&);

}  // namespace ad::nn
