#include "nn/summary.hpp"

#include <algorithm>
#include <random>
#include <utility>

#include <fmt/format.h>

#include "nn/random.hpp"

namespace ad::nn {
namespace {

/// 54178 -> "54,178".
std::string grouped(std::size_t n) {
    return n < 1000 ? std::to_string(n) : grouped(n / 1000) + fmt::format(",{:03}", n % 1000);
}

/// "4,936 bytes (0.00 MB)": torchinfo's megabytes are 10^6 bytes.
std::string bytes_string(std::size_t bytes) {
    return fmt::format("{} bytes ({:.2f} MB)", grouped(bytes), double(bytes) / 1e6);
}

/// A call as the watcher is told of it: calls return inside out.
template <class T>
struct ReturnedCall {
    const Module<T>* module;
    std::string path;
    std::size_t depth;
    bool has_output;
    Shape output_shape;
    std::size_t output_size;
};

template <class T>
class CallRecorder final : public ModuleWatcher<T> {
public:
    std::vector<ReturnedCall<T>> calls;

    void returned(const Module<T>& module, const std::string& path, std::size_t depth, const Var<T>& output) override {
        const bool defined = output.defined();
        calls.push_back({&module, path, depth, defined, defined ? output.shape() : Shape{},
                         defined ? output.size() : std::size_t(0)});
    }
};

/// Installs a watcher and counts this thread's module observer in, for one
/// scope; the previous watcher and the count come back on every path.
template <class T>
class Watching {
public:
    explicit Watching(ModuleWatcher<T>* watcher) : previous_(watch_modules(watcher)) {
        ad::detail::count_observer(ad::detail::observe_modules, +1);
    }
    ~Watching() {
        ad::detail::count_observer(ad::detail::observe_modules, -1);
        watch_modules(previous_);
    }
    Watching(const Watching&) = delete;
    Watching& operator=(const Watching&) = delete;

private:
    ModuleWatcher<T>* previous_;
};

/// Puts the model in evaluation mode for one scope, then gives every
/// module back its own mode (a model may hold a frozen batch norm in
/// evaluation mode inside a training model).
template <class T>
class EvalScope {
public:
    explicit EvalScope(Module<T>& model) : model_(model), model_training_(model.is_training()) {
        for (auto& named : model.named_modules()) modes_.emplace_back(named.module, named.module->is_training());
        model.eval();
    }
    ~EvalScope() {
        // train() passes its mode down; named_modules lists a module before
        // its children, so each child's own mode is set after its parent's.
        model_.train(model_training_);
        for (auto& [module, training] : modes_) module->train(training);
    }
    EvalScope(const EvalScope&) = delete;
    EvalScope& operator=(const EvalScope&) = delete;

private:
    Module<T>& model_;
    bool model_training_;
    std::vector<std::pair<ModulePtr<T>, bool>> modes_;
};

/// The calls in call order from the order they returned in: a call's
/// subtree is it and the subtrees that returned just before it one level
/// deeper (a call returns after every call inside it).
template <class T>
std::vector<ReturnedCall<T>> in_call_order(std::vector<ReturnedCall<T>> returned) {
    std::vector<std::vector<ReturnedCall<T>>> subtrees;
    for (auto& call : returned) {
        auto first_child = subtrees.end();
        while (first_child != subtrees.begin() && std::prev(first_child)->front().depth > call.depth) --first_child;
        std::vector<ReturnedCall<T>> tree{std::move(call)};
        for (auto it = first_child; it != subtrees.end(); ++it) {
            std::move(it->begin(), it->end(), std::back_inserter(tree));
        }
        subtrees.erase(first_child, subtrees.end());
        subtrees.push_back(std::move(tree));
    }
    std::vector<ReturnedCall<T>> ordered;
    for (auto& tree : subtrees) std::move(tree.begin(), tree.end(), std::back_inserter(ordered));
    return ordered;
}

}  // namespace

template <class T>
ModelSummary summarize(Module<T>& model, const Shape& input_shape) {
    ModelSummary out;
    out.input_shape = input_shape;
    out.element_size = sizeof(T);

    Array<T> input = Array<T>::from_shape(input_shape);
    std::mt19937_64 rng(0);
    for (std::size_t i = 0; i < input.size(); ++i) input.flat(i) = static_cast<T>(uniform(rng, -1, 1));
    out.input_bytes = input.size() * sizeof(T);

    CallRecorder<T> recorder;
    {
        EvalScope<T> eval(model);
        Watching<T> watching(&recorder);
        ad::NoGrad no_grad;
        model(input);
    }

    std::vector<ReturnedCall<T>> calls = in_call_order(std::move(recorder.calls));
    // Depths from the model's call (the last to return), should summarize
    // itself run inside a module call.
    const std::size_t base = calls.empty() ? 0 : calls.front().depth;
    std::vector<const Module<T>*> seen;
    for (auto& call : calls) {
        SummaryRow row;
        row.path = std::move(call.path);
        row.description = call.module->describe();
        row.type = row.description.substr(0, row.description.find('('));
        row.depth = call.depth - base;
        row.has_output = call.has_output;
        row.output_shape = std::move(call.output_shape);
        for (const auto& p : call.module->named_parameters(false)) row.params += p.var.size();
        row.param_bytes = row.params * sizeof(T);
        row.leaf = call.module->named_children().empty();
        row.repeat = std::find(seen.begin(), seen.end(), call.module) != seen.end();
        seen.push_back(call.module);
        if (row.leaf) out.output_bytes += call.output_size * sizeof(T);
        out.rows.push_back(std::move(row));
    }

    for (const auto& p : model.named_parameters()) {
        out.total_params += p.var.size();
        if (p.var.requires_grad()) out.trainable_params += p.var.size();
    }
    out.param_bytes = out.total_params * sizeof(T);
    for (const auto& b : model.named_buffers()) out.buffer_bytes += b.value->size() * sizeof(T);
    return out;
}

template <class T>
std::string summary(Module<T>& model, const Shape& input_shape) {
    return summarize(model, input_shape).table();
}

std::string ModelSummary::table() const {
    struct Cells {
        std::string layer, shape, params, bytes;
    };
    std::vector<Cells> cells{{"Layer (path: type)", "Output Shape", "Param #", "Param bytes"}};
    for (const auto& row : rows) {
        Cells c;
        c.layer = std::string(2 * row.depth, ' ');
        const std::string& what = row.leaf ? row.description : row.type;
        c.layer += row.path.empty() ? what : row.path + ": " + what;
        c.shape = row.has_output ? shape_string(row.output_shape) : "--";
        if (row.params == 0) {
            c.params = c.bytes = "--";
        } else if (row.repeat) {
            c.params = c.bytes = "(recursive)";
        } else {
            c.params = grouped(row.params);
            c.bytes = grouped(row.param_bytes);
        }
        cells.push_back(std::move(c));
    }
    std::size_t w_layer = 0, w_shape = 0, w_params = 0, w_bytes = 0;
    for (const auto& c : cells) {
        w_layer = std::max(w_layer, c.layer.size());
        w_shape = std::max(w_shape, c.shape.size());
        w_params = std::max(w_params, c.params.size());
        w_bytes = std::max(w_bytes, c.bytes.size());
    }
    const std::string rule(w_layer + w_shape + w_params + w_bytes + 6, '=');
    std::string out = rule + "\n";
    for (std::size_t i = 0; i < cells.size(); ++i) {
        const auto& c = cells[i];
        std::string line = fmt::format("{:<{}}  {:<{}}  {:>{}}  {:>{}}", c.layer, w_layer, c.shape, w_shape, c.params,
                                       w_params, c.bytes, w_bytes);
        line.erase(line.find_last_not_of(' ') + 1);
        out += line + "\n";
        if (i == 0) out += rule + "\n";
    }
    const std::size_t forward_backward = 2 * output_bytes;
    out += rule + "\n";
    out += fmt::format("Total params: {}\n", grouped(total_params));
    out += fmt::format("Trainable params: {}\n", grouped(trainable_params));
    out += fmt::format("Non-trainable params: {}\n", grouped(total_params - trainable_params));
    out += rule + "\n";
    out += fmt::format("Input size {}: {}\n", shape_string(input_shape), bytes_string(input_bytes));
    out += fmt::format("Forward pass size (leaf outputs): {}\n", bytes_string(output_bytes));
    out += fmt::format("Forward/backward pass size: {}\n", bytes_string(forward_backward));
    out += fmt::format("Params size: {}\n", bytes_string(param_bytes));
    out += fmt::format("Buffers size: {}\n", bytes_string(buffer_bytes));
    out += fmt::format("Estimated total size: {}\n",
                       bytes_string(input_bytes + forward_backward + param_bytes + buffer_bytes));
    out += rule + "\n";
    return out;
}

template ModelSummary summarize(Module<float>&, const Shape&);
template ModelSummary summarize(Module<double>&, const Shape&);
template std::string summary(Module<float>&, const Shape&);
template std::string summary(Module<double>&, const Shape&);

}  // namespace ad::nn
