#include "nn/module.hpp"

#include <cxxabi.h>

#include <algorithm>
#include <cstdlib>
#include <typeinfo>
#include <utility>

#include <fmt/format.h>

namespace ad::nn {
namespace {

/// "ad::nn::Linear<float>" -> "Linear", "(anonymous namespace)::Net" -> "Net".
std::string class_name(const std::type_info& type) {
    int status = 0;
    char* demangled = abi::__cxa_demangle(type.name(), nullptr, nullptr, &status);
    std::string name = status == 0 && demangled ? demangled : type.name();
    std::free(demangled);
    name = name.substr(0, name.find('<'));
    auto colons = name.rfind("::");
    return colons == std::string::npos ? name : name.substr(colons + 2);
}

std::string joined_path(const std::string& prefix, const std::string& name) {
    return prefix.empty() ? name : prefix + "." + name;
}

/// 54178 -> "54,178".
std::string with_thousands(std::size_t n) {
    std::string digits = std::to_string(n), out;
    for (std::size_t i = 0; i < digits.size(); ++i) {
        if (i && (digits.size() - i) % 3 == 0) out += ',';
        out += digits[i];
    }
    return out;
}

/// The module calls in progress on this thread while a debugging tool is
/// on, outermost first, with their dotted paths.
template <class T>
struct CallFrame {
    const Module<T>* module;
    std::string path;
};

template <class T>
std::vector<CallFrame<T>>& call_stack() {
    thread_local std::vector<CallFrame<T>> stack;
    return stack;
}

/// Finds `target` among `root`'s descendants, depth first, and writes its
/// dotted path below `root` into `path`; names are built only along the way
/// to it (this runs for every module call while a debugging tool is on).
template <class T>
bool find_path(const Module<T>& root, const Module<T>& target, std::string& path) {
    for (const auto& child : root.named_children()) {
        std::string below;
        if (child.module.get() == &target || find_path(*child.module, target, below)) {
            path = below.empty() ? child.name : child.name + "." + below;
            return true;
        }
    }
    return false;
}

template <class T>
ModuleWatcher<T>*& current_watcher() {
    thread_local ModuleWatcher<T>* watcher = nullptr;
    return watcher;
}

}  // namespace

template <class T>
ModuleWatcher<T>* watch_modules(ModuleWatcher<T>* watcher) {
    return std::exchange(current_watcher<T>(), watcher);
}

template ModuleWatcher<float>* watch_modules(ModuleWatcher<float>*);
template ModuleWatcher<double>* watch_modules(ModuleWatcher<double>*);

template <class T>
Module<T>::ModuleCall::ModuleCall(const Module& module) : module_(module) {
    auto& stack = call_stack<T>();
    // The path from the outermost call: this module's name among the
    // enclosing call's descendants (a container may hold it a level down,
    // as Sequential's "layers" list does). A module the enclosing one did not
    // register is shown by its description alone.
    std::string path;
    if (!stack.empty() && find_path(*stack.back().module, module, path)) {
        path = joined_path(stack.back().path, path);
    }
    stack.push_back({&module, path});
    try {
        path_ = std::make_shared<const std::string>(path.empty() ? module.describe()
                                                                 : fmt::format("{} ({})", path, module.describe()));
        ad::detail::push_scope(path_);
    } catch (...) {
        stack.pop_back();
        throw;
    }
    if (ad::detail::recording_state.observe & ad::detail::observe_profile) {
        range_ = std::make_unique<ad::ProfileRange>(*path_);
    }
}

template <class T>
Module<T>::ModuleCall::~ModuleCall() {
    range_.reset();
    ad::detail::pop_scope();
    call_stack<T>().pop_back();
}

template <class T>
void Module<T>::ModuleCall::returned(const Var<T>& output) {
    if (auto* watcher = current_watcher<T>()) {
        const auto& stack = call_stack<T>();
        watcher->returned(module_, stack.back().path, stack.size() - 1, output);
    }
}

template <class T>
Var<T> Module<T>::forward(const Var<T>&) {
    throw value_error(fmt::format("{}: has no forward of one input; call its own forward", describe()));
}

template <class T>
std::string Module<T>::describe() const {
    return class_name(typeid(*this));
}

template <class T>
void Module<T>::check_new_name(const char* what, const std::string& name) const {
    if (name.empty() || name.find('.') != std::string::npos) {
        throw value_error(fmt::format("{}: {} name '{}' must be non-empty and without dots", describe(), what, name));
    }
    auto taken = [&](const auto& entries) {
        return std::any_of(entries.begin(), entries.end(), [&](const auto& e) { return e.name == name; });
    };
    if (taken(parameters_) || taken(buffers_) || taken(children_)) {
        throw value_error(fmt::format("{}: the name '{}' is registered already", describe(), name));
    }
}

template <class T>
Var<T> Module<T>::register_parameter(const std::string& name, Array<T> value) {
    return register_parameter(name, param(std::move(value)));
}

template <class T>
Var<T> Module<T>::register_parameter(const std::string& name, Var<T> parameter) {
    check_new_name("parameter", name);
    if (!parameter.defined() || !parameter.is_leaf() || !parameter.requires_grad()) {
        throw value_error(fmt::format("{}: '{}' is not a parameter (make it with ad::param)", describe(), name));
    }
    parameters_.push_back({name, parameter});
    return parameter;
}

template <class T>
std::shared_ptr<Array<T>> Module<T>::register_buffer(const std::string& name, Array<T> value) {
    check_new_name("buffer", name);
    auto buffer = std::make_shared<Array<T>>(std::move(value));
    buffers_.push_back({name, buffer});
    return buffer;
}

template <class T>
void Module<T>::add_child(const std::string& name, ModulePtr<T> module) {
    check_new_name("module", name);
    if (!module) throw value_error(fmt::format("{}: module '{}' is null", describe(), name));
    if (module.get() == this) throw value_error(fmt::format("{}: a module cannot contain itself", describe()));
    module->train(training_);
    children_.push_back({name, std::move(module)});
}

template <class T>
void Module<T>::collect_parameters(const std::string& prefix, bool recurse, std::vector<NamedParameter<T>>& out,
                                   std::vector<const void*>& seen) const {
    for (const auto& p : parameters_) {
        const void* node = &*p.var.node_ptr();
        if (std::find(seen.begin(), seen.end(), node) != seen.end()) continue;
        seen.push_back(node);
        out.push_back({joined_path(prefix, p.name), p.var});
    }
    if (!recurse) return;
    for (const auto& c : children_) c.module->collect_parameters(joined_path(prefix, c.name), true, out, seen);
}

template <class T>
std::vector<NamedParameter<T>> Module<T>::named_parameters(bool recurse) const {
    std::vector<NamedParameter<T>> out;
    std::vector<const void*> seen;
    collect_parameters("", recurse, out, seen);
    return out;
}

template <class T>
std::vector<Var<T>> Module<T>::parameters(bool recurse) const {
    std::vector<Var<T>> out;
    for (auto& p : named_parameters(recurse)) out.push_back(std::move(p.var));
    return out;
}

template <class T>
void Module<T>::collect_buffers(const std::string& prefix, bool recurse, std::vector<NamedBuffer<T>>& out) const {
    for (const auto& b : buffers_) {
        bool seen = std::any_of(out.begin(), out.end(), [&](const auto& o) { return o.value == b.value; });
        if (!seen) out.push_back({joined_path(prefix, b.name), b.value});
    }
    if (!recurse) return;
    for (const auto& c : children_) c.module->collect_buffers(joined_path(prefix, c.name), true, out);
}

template <class T>
std::vector<NamedBuffer<T>> Module<T>::named_buffers(bool recurse) const {
    std::vector<NamedBuffer<T>> out;
    collect_buffers("", recurse, out);
    return out;
}

template <class T>
void Module<T>::collect_modules(const std::string& prefix, std::vector<NamedModule<T>>& out) const {
    for (const auto& c : children_) {
        std::string path = joined_path(prefix, c.name);
        out.push_back({path, c.module});
        c.module->collect_modules(path, out);
    }
}

template <class T>
std::vector<NamedModule<T>> Module<T>::named_modules() const {
    std::vector<NamedModule<T>> out;
    collect_modules("", out);
    return out;
}

template <class T>
void Module<T>::train(bool on) {
    training_ = on;
    for (auto& c : children_) c.module->train(on);
}

template <class T>
void Module<T>::zero_grad() {
    for (auto& p : named_parameters()) p.var.zero_grad();
}

template <class T>
std::size_t Module<T>::parameter_count() const {
    std::size_t n = 0;
    for (const auto& p : named_parameters()) n += p.var.size();
    return n;
}

template <class T>
void Module<T>::print(std::string& out, const std::string& indent) const {
    // A leaf prints its description; a container its class name and its
    // children, as PyTorch prints a module.
    if (children_.empty()) {
        out += describe();
        return;
    }
    out += class_name(typeid(*this)) + "(\n";
    for (const auto& c : children_) {
        out += indent + "  (" + c.name + "): ";
        c.module->print(out, indent + "  ");
        out += "\n";
    }
    out += indent + ")";
}

template <class T>
std::string Module<T>::summary() const {
    std::string out;
    print(out, "");
    return out + "\nparameters: " + with_thousands(parameter_count()) + "\n";
}

template <class T>
ModuleList<T>::ModuleList(std::vector<ModulePtr<T>> modules) {
    for (auto& m : modules) push_back(std::move(m));
}

template <class T>
ModuleList<T>& ModuleList<T>::push_back(ModulePtr<T> module) {
    this->register_module(std::to_string(size()), std::move(module));
    return *this;
}

template class Module<float>;
template class Module<double>;
template class ModuleList<float>;
template class ModuleList<double>;

}  // namespace ad::nn
