#pragma once
// Module: what every layer and model is. A module declares its parameters,
// buffers (state that is saved but not trained, such as batch norm's running
// statistics) and submodules once, in its constructor, with register_*; from
// that registry it gets named_parameters() with PyTorch's dotted names
// ("encoder.layers.0.weight"), train()/eval() passed down to every child,
// zero_grad(), checkpoints by name and a printed summary. Names are how
// checkpoints and PyTorch weights line up, never positions.
//
//   struct Net : nn::Module<float> {
//       std::shared_ptr<nn::Conv2d<float>> conv = register_module("conv", nn::Conv2d<float>(1, 8, 3));
//       std::shared_ptr<nn::Linear<float>> fc = register_module("fc", nn::Linear<float>(8 * 26 * 26, 10));
//       Var<float> forward(const Var<float>& x) override { return (*fc)(flatten(relu((*conv)(x)), 1)); }
//   };
//
// Parameters and buffers are shared handles: a copy of a module shares them
// with the original, as a copied torch::nn::Module does.

#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "autodiff/autodiff.hpp"
#include "autodiff/observe.hpp"

/// Declares an option of a layer's options struct with a chained setter and a
/// getter, as torch::nn's TORCH_ARG does, so options read like PyTorch's:
///   nn::Conv2d<float> conv(nn::Conv2dOptions(1, 8, 3).padding(1).bias(false));
/// Use: `TAPEGRAD_ARG(Size2, stride) = 1;` inside the struct.
#define TAPEGRAD_ARG(TYPE, NAME)          \
public:                                   \
    auto& NAME(const TYPE& new_value) {   \
        NAME##_ = new_value;              \
        return *this;                     \
    }                                     \
    const TYPE& NAME() const noexcept {   \
        return NAME##_;                   \
    }                                     \
                                          \
private:                                  \
    TYPE NAME##_

namespace ad::nn {

using ad::Reduction;

/// A parameter and the dotted name it has inside its model.
template <class T>
struct NamedParameter {
    std::string name;
    Var<T> var;
};

/// A buffer: an array the module keeps, saves and loads, but does not train.
/// Shared, so the module can update it in place and a checkpoint can read it.
template <class T>
struct NamedBuffer {
    std::string name;
    std::shared_ptr<Array<T>> value;
};

template <class T>
class Module;

template <class T>
using ModulePtr = std::shared_ptr<Module<T>>;

template <class T>
struct NamedModule {
    std::string name;
    ModulePtr<T> module;
};

template <class T>
class Module {
public:
    virtual ~Module() = default;

    /// The module applied to one input. Modules whose forward takes something
    /// else (a sequence and a state, queries, keys and values) define their
    /// own forward; calling this one on them is a value_error.
    virtual Var<T> forward(const Var<T>& x);

    /// A one-line description used in error messages and summaries, e.g.
    /// "Linear(2, 3)". By default the class name.
    virtual std::string describe() const;

    Var<T> operator()(const Var<T>& x) { return call([&] { return forward(x); }); }
    /// Data are constants: no gradient flows into them.
    Var<T> operator()(const Array<T>& x) { return call([&] { return forward(constant(x)); }); }

    /// Runs `run` (a call of this module's forward) as a call of this module:
    /// while a debugging tool is on (anomaly mode, the profiler,
    /// nn::summary), the ops inside carry the module's path
    /// ("layers.2 (Linear(64, 10))") and the call is watched; otherwise it
    /// is `run()`. Containers call their children through it.
    template <class Run>
    auto call(Run&& run) -> decltype(run()) {
        if (!ad::detail::recording_state.observe) return run();
        ModuleCall scope(*this);
        auto out = run();
        if constexpr (std::is_same_v<decltype(out), Var<T>>) {
            scope.returned(out);
        } else {
            scope.returned(Var<T>());  // the watcher learns of the call, without a shape
        }
        return out;
    }

    /// Every parameter of this module and (with recurse) its submodules, in
    /// registration order, named by their path. A parameter reachable twice
    /// (weights tied between two layers) is listed once, under its first name.
    std::vector<NamedParameter<T>> named_parameters(bool recurse = true) const;
    std::vector<Var<T>> parameters(bool recurse = true) const;
    std::vector<NamedBuffer<T>> named_buffers(bool recurse = true) const;
    /// The direct submodules, in registration order.
    const std::vector<NamedModule<T>>& named_children() const { return children_; }
    /// Every submodule below this one, depth first, named by its path.
    std::vector<NamedModule<T>> named_modules() const;

    /// Training mode (the default) or evaluation mode, for this module and
    /// every submodule: dropout is off and batch norm uses its running
    /// statistics in evaluation mode.
    void train(bool on = true);
    void eval() { train(false); }
    bool is_training() const { return training_; }

    /// Sets every parameter's accumulated gradient to zero (backward adds into it).
    void zero_grad();
    /// The total number of scalars in the parameters.
    std::size_t parameter_count() const;

    /// The module tree, one line a module, PyTorch's layout (a leaf shows its
    /// description, a container its class name), with the number of parameters:
    ///   Net(
    ///     (conv): Conv2d(1, 8, kernel_size=(3, 3), stride=(1, 1))
    ///     (fc): Linear(5408, 10)
    ///   )
    ///   parameters: 54,178
    std::string summary() const;

protected:
    /// Makes `value` a parameter of this module under `name` and returns it.
    Var<T> register_parameter(const std::string& name, Array<T> value);
    /// Registers an existing parameter (ad::param): shared, not copied.
    Var<T> register_parameter(const std::string& name, Var<T> parameter);
    /// Makes `value` a buffer of this module under `name`; the module updates
    /// it in place through the returned pointer.
    std::shared_ptr<Array<T>> register_buffer(const std::string& name, Array<T> value);
    /// Makes `module` a submodule under `name` (shared: the same module can
    /// sit in two models) and returns it.
    template <class M>
    std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
        static_assert(std::is_base_of_v<Module<T>, M>, "register_module: not a Module of this element type");
        add_child(name, module);
        return module;
    }
    template <class M, class = std::enable_if_t<std::is_base_of_v<Module<T>, std::decay_t<M>>>>
    std::shared_ptr<std::decay_t<M>> register_module(const std::string& name, M&& module) {
        return register_module(name, std::make_shared<std::decay_t<M>>(std::forward<M>(module)));
    }

private:
    /// One module call while a debugging tool is on: pushes the module's
    /// path for the records made inside (ad::detail::push_scope), a profile
    /// range, and tells the watcher (nn::summary).
    class ModuleCall {
    public:
        explicit ModuleCall(const Module& module);
        ~ModuleCall();
        ModuleCall(const ModuleCall&) = delete;
        ModuleCall& operator=(const ModuleCall&) = delete;
        void returned(const Var<T>& output);

    private:
        const Module& module_;
        std::shared_ptr<const std::string> path_;
        std::unique_ptr<ad::ProfileRange> range_;
    };

    void check_new_name(const char* what, const std::string& name) const;
    void add_child(const std::string& name, ModulePtr<T> module);
    void collect_parameters(const std::string& prefix, bool recurse, std::vector<NamedParameter<T>>& out,
                            std::vector<const void*>& seen) const;
    void collect_buffers(const std::string& prefix, bool recurse, std::vector<NamedBuffer<T>>& out) const;
    void collect_modules(const std::string& prefix, std::vector<NamedModule<T>>& out) const;
    void print(std::string& out, const std::string& indent) const;

    bool training_ = true;
    std::vector<NamedParameter<T>> parameters_;
    std::vector<NamedBuffer<T>> buffers_;
    std::vector<NamedModule<T>> children_;
};

/// Modules in a list, named by their index ("0", "1", ...), like
/// torch::nn::ModuleList: for models that run their layers themselves.
template <class T>
class ModuleList final : public Module<T> {
public:
    ModuleList() = default;
    explicit ModuleList(std::vector<ModulePtr<T>> modules);

    /// Appends a module (shared); throws value_error for a null one.
    ModuleList& push_back(ModulePtr<T> module);
    std::size_t size() const { return this->named_children().size(); }
    const ModulePtr<T>& operator[](std::size_t i) const { return this->named_children().at(i).module; }
    std::string describe() const override { return "ModuleList"; }
};

/// Watches the module calls of this thread (nn::summary): one watcher at a
/// time, told of every call that returns (calls return inside out: a
/// module's children before the module).
template <class T>
struct ModuleWatcher {
    virtual ~ModuleWatcher() = default;
    /// `path` is the module's dotted path from the outermost module called
    /// ("" for that one), `depth` how many calls enclose this one; `output`
    /// is undefined when the call returned something other than a Var
    /// (MultiheadAttention's AttentionOutput, GRU's GRUOutput).
    virtual void returned(const Module<T>& module, const std::string& path, std::size_t depth, const Var<T>& output) = 0;
};

/// Sets this thread's watcher (nullptr: none); returns the previous one.
template <class T>
ModuleWatcher<T>* watch_modules(ModuleWatcher<T>* watcher);

extern template class Module<float>;
extern template class Module<double>;
extern template class ModuleList<float>;
extern template class ModuleList<double>;

}  // namespace ad::nn
