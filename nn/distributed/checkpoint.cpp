// Rank-0 checkpoints: rank 0 does the file work, the ranks agree on its
// outcome, and rank 0's loaded state reaches the others by broadcast.
#include "nn/distributed/checkpoint.hpp"

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "autodiff/errors.hpp"

namespace ad::dist {

namespace {

namespace fs = std::filesystem;

using Failure = std::optional<std::string>;

/// nn's messages start with the op, which agree() prefixes again.
std::string reason_of(const std::exception& e, const char* op) {
    std::string message = e.what();
    const std::string prefix = std::string(op) + ": ";
    if (message.compare(0, prefix.size(), prefix) == 0) message.erase(0, prefix.size());
    return message;
}

/// Every rank learns whether some rank failed: if one did, every rank
/// throws io_error with the reason of the lowest failing rank.
void agree(ProcessGroup& group, const char* op, const Failure& failure) {
    // The max of (size - rank) over the failing ranks names the lowest of them.
    Array<std::int64_t> flag = {failure ? std::int64_t(group.size() - group.rank()) : 0};
    group.allreduce(flag, Reduce::max);
    if (flag(0) == 0) return;
    const int first = group.size() - int(flag(0));
    std::string reason = failure.value_or("");
    group.broadcast(reason, first);
    throw io_error(fmt::format("{}: rank {}: {}", op, first, reason));
}

/// One line per thing a load must find the same on every rank: the model's
/// parameters and buffers with their shapes, and the optimizer and schedule.
template <class T>
std::vector<std::string> layout_of(const nn::Module<T>& model, const nn::Optimizer<T>* optimizer,
                                   const nn::LRScheduler<T>* scheduler) {
    std::vector<std::string> lines;
    for (const auto& p : model.named_parameters()) {
        lines.push_back(fmt::format("parameter '{}' {}", p.name, shape_string(p.var.shape())));
    }
    for (const auto& b : model.named_buffers()) {
        lines.push_back(fmt::format("buffer '{}' {}", b.name, shape_string_of(*b.value)));
    }
    if (optimizer) {
        lines.push_back(fmt::format("a {} optimizer with {} parameter groups", optimizer->kind(), optimizer->group_count()));
        for (const auto& p : optimizer->parameters()) {
            lines.push_back(fmt::format("optimizer parameter '{}' {}", p.name, shape_string(p.var.shape())));
        }
        lines.push_back(scheduler ? "a learning-rate schedule" : "no learning-rate schedule");
    }
    return lines;
}

/// Every rank compares its layout with rank 0's and the ranks agree.
void check_same_layout(ProcessGroup& group, const char* op, const std::vector<std::string>& mine) {
    std::string joined;
    for (const auto& line : mine) joined += line + '\n';
    std::string root = joined;
    group.broadcast(root, 0);
    Failure failure;
    if (root != joined) {
        std::vector<std::string> theirs;
        for (std::size_t begin = 0, end; (end = root.find('\n', begin)) != std::string::npos; begin = end + 1) {
            theirs.push_back(root.substr(begin, end - begin));
        }
        std::size_t i = 0;
        while (i < mine.size() && i < theirs.size() && mine[i] == theirs[i]) ++i;
        const std::string has_root = i < theirs.size() ? theirs[i] : "nothing more";
        const std::string has_mine = i < mine.size() ? mine[i] : "nothing more";
        failure = fmt::format("its model, optimizer or schedule differs from rank 0's: rank 0 has {} where rank {} has {}",
                              has_root, group.rank(), has_mine);
    }
    agree(group, op, failure);
}

/// The model's parameters, then its buffers: what checkpoints hold of it.
template <class T>
std::vector<Array<T>*> state_of(const nn::Module<T>& model) {
    std::vector<Array<T>*> state;
    for (const auto& p : model.named_parameters()) state.push_back(&p.var.mutable_value());
    for (const auto& b : model.named_buffers()) state.push_back(b.value.get());
    return state;
}

/// Rank 0's `values`, on every rank.
template <class T>
std::vector<Array<T>> broadcast_all(ProcessGroup& group, std::vector<Array<T>> values) {
    for (auto& v : values) group.broadcast(v, 0);
    return values;
}

/// Rank 0's model state on every rank (on rank 0, copies of its own).
template <class T>
std::vector<Array<T>> broadcast_model(ProcessGroup& group, const nn::Module<T>& model) {
    auto state = state_of(model);
    std::vector<Array<T>> values(state.size());
    if (group.rank() == 0) {
        for (std::size_t i = 0; i < state.size(); ++i) values[i] = *state[i];
    }
    return broadcast_all(group, std::move(values));
}

template <class T>
Failure check_shapes(const nn::Module<T>& model, const std::vector<Array<T>>& values) {
    auto state = state_of(model);
    if (state.size() != values.size()) return fmt::format("received {} arrays for {} in the model", values.size(), state.size());
    for (std::size_t i = 0; i < state.size(); ++i) {
        if (!equal_shapes(*state[i], values[i])) {
            return fmt::format("received an array of shape {} for one of shape {}", shape_string_of(values[i]),
                               shape_string_of(*state[i]));
        }
    }
    return std::nullopt;
}

/// In place, so that pointers into the parameters (optimizers') stay valid.
template <class T>
void assign_model(const nn::Module<T>& model, const std::vector<Array<T>>& values) {
    auto state = state_of(model);
    for (std::size_t i = 0; i < state.size(); ++i) std::copy(values[i].begin(), values[i].end(), state[i]->begin());
}

/// Rank 0 runs `save`; every rank learns its outcome.
template <class Save>
void save_on_rank_0(ProcessGroup& group, const char* op, Save&& save) {
    Failure failure;
    if (group.rank() == 0) {
        try {
            save();
        } catch (const std::exception& e) {
            failure = reason_of(e, op);
        }
    }
    agree(group, op, failure);
}

std::vector<std::string> broadcast_strings(ProcessGroup& group, std::vector<std::string> strings) {
    Array<std::int64_t> count = {std::int64_t(strings.size())};
    group.broadcast(count, 0);
    strings.resize(std::size_t(count(0)));
    for (auto& s : strings) group.broadcast(s, 0);
    return strings;
}

}  // namespace

template <class T>
void save_checkpoint(ProcessGroup& group, const fs::path& folder, const nn::Module<T>& model,
                     const nn::Optimizer<T>& optimizer, std::size_t step, const nn::LRScheduler<T>* scheduler) {
    save_on_rank_0(group, "save_checkpoint", [&] { nn::save_checkpoint(folder, model, optimizer, step, scheduler); });
}

template <class T>
void save_parameters(ProcessGroup& group, const nn::Module<T>& model, const fs::path& folder) {
    save_on_rank_0(group, "save_parameters", [&] { nn::save_parameters(model, folder); });
}

template <class T>
std::size_t load_checkpoint(ProcessGroup& group, const fs::path& folder, const nn::Module<T>& model,
                            nn::Optimizer<T>& optimizer, nn::LRScheduler<T>* scheduler) {
    const char* op = "load_checkpoint";
    const bool root = group.rank() == 0;
    // The same layout everywhere first: once rank 0 has loaded, what it sends
    // fits every rank, and no rank is left changed while another failed.
    check_same_layout(group, op, layout_of(model, &optimizer, scheduler));

    // step, optimizer steps, schedule step, whether the optimizer has state.
    Array<std::int64_t> counters = xt::zeros<std::int64_t>({4});
    Failure failure;
    if (root) {
        try {
            counters(0) = std::int64_t(nn::load_checkpoint(folder, model, optimizer, scheduler));
            counters(1) = std::int64_t(optimizer.steps());
            counters(2) = scheduler ? std::int64_t(scheduler->last_step()) : 0;
            counters(3) = optimizer.state_arrays().empty() ? 0 : 1;
        } catch (const std::exception& e) {
            failure = reason_of(e, op);
        }
    }
    agree(group, op, failure);

    group.broadcast(counters, 0);
    Array<T> rates = xt::zeros<T>({optimizer.group_count()});
    std::vector<Array<T>> optimizer_state;
    if (root) {
        for (std::size_t g = 0; g < optimizer.group_count(); ++g) rates(g) = optimizer.learning_rate(g);
        for (const auto& entry : optimizer.state_arrays()) optimizer_state.push_back(*entry.second);
    } else if (counters(3)) {
        optimizer_state.resize(optimizer.slot_names().size() * optimizer.parameters().size());
    }
    group.broadcast(rates, 0);
    optimizer_state = broadcast_all(group, std::move(optimizer_state));
    std::vector<Array<T>> values = broadcast_model(group, model);

    // What the layout check makes certain, checked again before anything
    // changes, so that a rank that cannot take rank 0's state says so (rank
    // 0 has loaded by now: only this rank's own state is then unchanged).
    if (!root) failure = check_shapes(model, values);
    if (!root && !failure && scheduler) {
        const double f = scheduler->factor(std::size_t(counters(2)));
        if (!std::isfinite(f) || f < 0) failure = fmt::format("its schedule's factor at step {} is {}", counters(2), f);
    }
    agree(group, op, failure);
    if (root) return std::size_t(counters(0));
    if (scheduler) scheduler->set_last_step(std::size_t(counters(2)));
    optimizer.restore(std::size_t(counters(1)), std::vector<T>(rates.begin(), rates.end()), std::move(optimizer_state));
    assign_model(model, values);
    return std::size_t(counters(0));
}

template <class T>
nn::LoadReport load_parameters(ProcessGroup& group, const nn::Module<T>& model, const fs::path& folder,
                               nn::LoadOptions options) {
    const char* op = "load_parameters";
    const bool root = group.rank() == 0;
    check_same_layout(group, op, layout_of<T>(model, nullptr, nullptr));

    nn::LoadReport report;
    Failure failure;
    if (root) {
        try {
            report = nn::load_parameters(model, folder, options);
        } catch (const std::exception& e) {
            failure = reason_of(e, op);
        }
    }
    agree(group, op, failure);

    report.missing = broadcast_strings(group, std::move(report.missing));
    report.unexpected = broadcast_strings(group, std::move(report.unexpected));
    std::vector<Array<T>> values = broadcast_model(group, model);
    agree(group, op, root ? std::nullopt : check_shapes(model, values));
    if (!root) assign_model(model, values);
    return report;
}

#define TAPEGRAD_DIST_CHECKPOINT_INSTANTIATE(T)                                                                        \
    template void save_checkpoint(ProcessGroup&, const fs::path&, const nn::Module<T>&, const nn::Optimizer<T>&,      \
                                  std::size_t, const nn::LRScheduler<T>*);                                            \
    template std::size_t load_checkpoint(ProcessGroup&, const fs::path&, const nn::Module<T>&, nn::Optimizer<T>&,     \
                                         nn::LRScheduler<T>*);                                                        \
    template void save_parameters(ProcessGroup&, const nn::Module<T>&, const fs::path&);                              \
    template nn::LoadReport load_parameters(ProcessGroup&, const nn::Module<T>&, const fs::path&, nn::LoadOptions);

TAPEGRAD_DIST_CHECKPOINT_INSTANTIATE(float)
TAPEGRAD_DIST_CHECKPOINT_INSTANTIATE(double)

}  // namespace ad::dist
