#include "nn/batch_norm.hpp"

#include <utility>

#include <fmt/format.h>

namespace ad::nn {
namespace {

const char* python_bool(bool b) { return b ? "True" : "False"; }

/// Lends a module's running-statistics buffers to ad::batch_norm as a
/// RunningStats (moved, not copied) and moves them back when done, even when
/// the op throws, so the buffers stay the arrays load_parameters writes into.
template <class T>
class LentStats {
public:
    LentStats(Array<T>& mean, Array<T>& var) : mean_(mean), var_(var), stats_{std::move(mean), std::move(var)} {}
    ~LentStats() {
        mean_ = std::move(stats_.mean);
        var_ = std::move(stats_.var);
    }
    LentStats(const LentStats&) = delete;
    LentStats& operator=(const LentStats&) = delete;
    RunningStats<T>* get() { return &stats_; }

private:
    Array<T>& mean_;
    Array<T>& var_;
    RunningStats<T> stats_;
};

}  // namespace

template <class T>
BatchNormBase<T>::BatchNormBase(BatchNormOptions options, const char* name)
    : options_(std::move(options)), name_(name) {
    const auto& o = options_;
    if (o.num_features() < 1) throw value_error(fmt::format("{}: num_features must be positive", describe()));
    if (!(o.eps() > 0)) throw value_error(fmt::format("{}: eps must be positive", describe()));
    if (o.momentum() && !(*o.momentum() >= 0 && *o.momentum() <= 1)) {
        throw value_error(fmt::format("{}: momentum must lie in [0, 1]", describe()));
    }
    const std::size_t c = static_cast<std::size_t>(o.num_features());
    if (o.affine()) {
        weight_ = this->register_parameter("weight", Array<T>(xt::ones<T>({c})));
        bias_ = this->register_parameter("bias", Array<T>(xt::zeros<T>({c})));
    }
    if (o.track_running_stats()) {
        running_mean_ = this->register_buffer("running_mean", Array<T>(xt::zeros<T>({c})));
        running_var_ = this->register_buffer("running_var", Array<T>(xt::ones<T>({c})));
        num_batches_tracked_ = this->register_buffer("num_batches_tracked", Array<T>(T(0)));
    }
}

template <class T>
Var<T> BatchNormBase<T>::forward(const Var<T>& x) {
    const auto& o = options_;
    if (!x.defined()) throw tape_error(fmt::format("{}: the input is an empty Var", describe()));
    const auto& s = x.value().shape();
    if (!accepts_rank(s.size()) || static_cast<long>(s[1]) != o.num_features()) {
        throw shape_error(fmt::format("{}: input has shape {}; expected {}", describe(), shape_string_of(x.value()),
                                      expected_shape()));
    }
    const bool use_batch = this->is_training() || !o.track_running_stats();
    if (use_batch && x.size() / s[1] <= 1) {
        throw value_error(fmt::format("{}: input {} has one value per channel; batch statistics need more", describe(),
                                      shape_string_of(x.value())));
    }
    if (!o.track_running_stats()) return batch_norm<T>(x, weight_, bias_, nullptr, true, T(0), T(o.eps()));
    const Shape per_channel{s[1]};
    if (shape_of(*running_mean_) != per_channel || shape_of(*running_var_) != per_channel ||
        num_batches_tracked_->size() != 1) {
        throw shape_error(
            fmt::format("{}: buffers running_mean {}, running_var {}, num_batches_tracked {}; expected "
                        "({}), ({}) and ()",
                        describe(), shape_string_of(*running_mean_), shape_string_of(*running_var_),
                        shape_string_of(*num_batches_tracked_), s[1], s[1]));
    }
    const bool training = this->is_training();
    T& tracked = num_batches_tracked_->flat(0);
    // PyTorch counts this batch before it takes the cumulative average's factor.
    const double momentum = o.momentum() ? *o.momentum() : 1.0 / (double(tracked) + 1.0);
    Var<T> y;
    {
        LentStats<T> stats(*running_mean_, *running_var_);
        y = batch_norm<T>(x, weight_, bias_, stats.get(), training, T(momentum), T(o.eps()));
    }
    if (training) tracked += T(1);
    return y;
}

template <class T>
std::string BatchNormBase<T>::describe() const {
    const auto& o = options_;
    return fmt::format("{}({}, eps={}, momentum={}, affine={}, track_running_stats={})", name_, o.num_features(),
                       o.eps(), o.momentum() ? fmt::format("{}", *o.momentum()) : std::string("None"),
                       python_bool(o.affine()), python_bool(o.track_running_stats()));
}

template <class T>
BatchNorm1d<T>::BatchNorm1d(BatchNormOptions options) : BatchNormBase<T>(std::move(options), "BatchNorm1d") {}

template <class T>
std::string BatchNorm1d<T>::expected_shape() const {
    return fmt::format("(N, {0}) or (N, {0}, L)", this->options().num_features());
}

template <class T>
BatchNorm2d<T>::BatchNorm2d(BatchNormOptions options) : BatchNormBase<T>(std::move(options), "BatchNorm2d") {}

template <class T>
std::string BatchNorm2d<T>::expected_shape() const {
    return fmt::format("(N, {}, H, W)", this->options().num_features());
}

template class BatchNormBase<float>;
template class BatchNormBase<double>;
template class BatchNorm1d<float>;
template class BatchNorm1d<double>;
template class BatchNorm2d<float>;
template class BatchNorm2d<double>;

}  // namespace ad::nn
