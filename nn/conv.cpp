#include "nn/conv.hpp"

#include <cmath>
#include <random>
#include <utility>

#include <fmt/format.h>

#include "nn/random.hpp"

namespace ad::nn {
namespace {

/// "(3, 3)": a 2-D size as PyTorch prints a tuple.
std::string pair(Size2 s) { return fmt::format("({}, {})", s.h, s.w); }

/// A pooling size as PyTorch prints what it was given: "2" for a square one, "(2, 3)" otherwise.
std::string pool_size(Size2 s) { return s.h == s.w ? std::to_string(s.h) : pair(s); }

/// U(-1/sqrt(fan_in), 1/sqrt(fan_in)) of `shape`, from nn::uniform with `seed`.
template <class T>
Array<T> fan_in_uniform(const Shape& shape, double fan_in, std::uint64_t seed) {
    const double bound = 1.0 / std::sqrt(fan_in);
    std::mt19937_64 rng(seed);
    Array<T> a = Array<T>::from_shape(shape);
    for (auto& v : a) v = static_cast<T>(uniform(rng, -bound, bound));
    return a;
}

/// Runs an engine op; its shape or value error gets the layer's description in front.
template <class F>
auto named(const std::string& layer, F&& op) {
    try {
        return op();
    } catch (const shape_error& e) {
        throw shape_error(fmt::format("{}: {}", layer, e.what()));
    } catch (const value_error& e) {
        throw value_error(fmt::format("{}: {}", layer, e.what()));
    }
}

template <class T>
void check_defined(const std::string& layer, const Var<T>& x) {
    if (!x.defined()) throw tape_error(fmt::format("{}: the input is an empty Var", layer));
}

/// The checks every convolution's options need, in the layer's words.
void check_conv_options(const std::string& layer, long in, long out, long kh, long kw, Size2 stride, Size2 padding,
                        Size2 dilation, long groups) {
    if (in < 1 || out < 1) throw value_error(fmt::format("{}: channels must be positive", layer));
    if (kh < 1 || kw < 1) throw value_error(fmt::format("{}: kernel_size must be positive", layer));
    if (stride.h < 1 || stride.w < 1) throw value_error(fmt::format("{}: stride must be positive", layer));
    if (padding.h < 0 || padding.w < 0) throw value_error(fmt::format("{}: padding must be non-negative", layer));
    if (dilation.h < 1 || dilation.w < 1) throw value_error(fmt::format("{}: dilation must be positive", layer));
    if (groups < 1) throw value_error(fmt::format("{}: groups must be positive", layer));
    if (in % groups != 0 || out % groups != 0) {
        throw value_error(
            fmt::format("{}: groups {} must divide in_channels {} and out_channels {}", layer, groups, in, out));
    }
}

/// The checks of a pooling layer's options.
void check_pool_options(const std::string& layer, Size2 kernel, const PoolStride& stride, Size2 padding) {
    if (kernel.h < 1 || kernel.w < 1) throw value_error(fmt::format("{}: kernel_size must be positive", layer));
    if (stride.value && (stride.value->h < 1 || stride.value->w < 1)) {
        throw value_error(fmt::format("{}: stride must be positive", layer));
    }
    if (padding.h < 0 || padding.w < 0 || 2 * padding.h > kernel.h || 2 * padding.w > kernel.w) {
        throw value_error(fmt::format("{}: padding must lie in [0, kernel_size / 2]", layer));
    }
}

/// x must be (N, C, H, W) or (C, H, W) with planes at least the (padded) kernel.
template <class T>
void check_pool_input(const std::string& layer, const Var<T>& x, Size2 kernel, Size2 padding) {
    check_defined(layer, x);
    const auto& s = x.value().shape();
    if (s.size() != 3 && s.size() != 4) {
        throw shape_error(fmt::format("{}: input has shape {}; expected (N, C, H, W) or (C, H, W)", layer,
                                      shape_string_of(x.value())));
    }
    const long h = static_cast<long>(s[s.size() - 2]), w = static_cast<long>(s[s.size() - 1]);
    if (h + 2 * padding.h < kernel.h || w + 2 * padding.w < kernel.w) {
        throw shape_error(fmt::format("{}: input {} is smaller than the kernel {} (with padding {})", layer,
                                      shape_string_of(x.value()), pair(kernel), pair(padding)));
    }
}

}  // namespace

// --- Conv2d ----------------------------------------------------------------------------

template <class T>
Conv2d<T>::Conv2d(Conv2dOptions options) : options_(std::move(options)) {
    const auto& o = options_;
    check_conv_options(describe(), o.in_channels(), o.out_channels(), o.kernel_size().h, o.kernel_size().w, o.stride(),
                       o.padding(), o.dilation(), o.groups());
    const std::size_t out = static_cast<std::size_t>(o.out_channels());
    const std::size_t per_group = static_cast<std::size_t>(o.in_channels() / o.groups());
    const std::size_t kh = static_cast<std::size_t>(o.kernel_size().h),
                      kw = static_cast<std::size_t>(o.kernel_size().w);
    const double fan_in = double(per_group * kh * kw);
    weight_ = this->register_parameter("weight",
                                       fan_in_uniform<T>({out, per_group, kh, kw}, fan_in, derive_seed(o.seed(), 0)));
    if (o.bias()) bias_ = this->register_parameter("bias", fan_in_uniform<T>({out}, fan_in, derive_seed(o.seed(), 1)));
}

template <class T>
Conv2d<T>::Conv2d(long in_channels, long out_channels, Size2 kernel_size)
    : Conv2d(Conv2dOptions(in_channels, out_channels, kernel_size)) {}

template <class T>
Var<T> Conv2d<T>::forward(const Var<T>& x) {
    const auto& o = options_;
    check_defined(describe(), x);
    const auto& s = x.value().shape();
    if (s.size() != 4 || static_cast<long>(s[1]) != o.in_channels()) {
        throw shape_error(fmt::format("{}: input has shape {}; expected (N, {}, H, W)", describe(),
                                      shape_string_of(x.value()), o.in_channels()));
    }
    const long reach_h = o.dilation().h * (o.kernel_size().h - 1) + 1;
    const long reach_w = o.dilation().w * (o.kernel_size().w - 1) + 1;
    if (static_cast<long>(s[2]) + 2 * o.padding().h < reach_h ||
        static_cast<long>(s[3]) + 2 * o.padding().w < reach_w) {
        throw shape_error(fmt::format("{}: input {} is smaller than the dilated kernel ({}, {}) (with padding {})",
                                      describe(), shape_string_of(x.value()), reach_h, reach_w, pair(o.padding())));
    }
    return named(describe(),
                 [&] { return conv2d(x, weight_, bias_, o.stride(), o.padding(), o.dilation(), o.groups()); });
}

template <class T>
std::string Conv2d<T>::describe() const {
    const auto& o = options_;
    std::string s = fmt::format("Conv2d({}, {}, kernel_size={}, stride={}", o.in_channels(), o.out_channels(),
                                pair(o.kernel_size()), pair(o.stride()));
    if (o.padding().h != 0 || o.padding().w != 0) s += fmt::format(", padding={}", pair(o.padding()));
    if (o.dilation().h != 1 || o.dilation().w != 1) s += fmt::format(", dilation={}", pair(o.dilation()));
    if (o.groups() != 1) s += fmt::format(", groups={}", o.groups());
    if (!o.bias()) s += ", bias=False";
    return s + ")";
}

// --- Conv1d ----------------------------------------------------------------------------

template <class T>
Conv1d<T>::Conv1d(Conv1dOptions options) : options_(std::move(options)) {
    const auto& o = options_;
    check_conv_options(describe(), o.in_channels(), o.out_channels(), 1, o.kernel_size(), Size2(1, o.stride()),
                       Size2(0, o.padding()), Size2(1, o.dilation()), o.groups());
    const std::size_t out = static_cast<std::size_t>(o.out_channels());
    const std::size_t per_group = static_cast<std::size_t>(o.in_channels() / o.groups());
    const std::size_t k = static_cast<std::size_t>(o.kernel_size());
    const double fan_in = double(per_group * k);
    weight_ =
        this->register_parameter("weight", fan_in_uniform<T>({out, per_group, k}, fan_in, derive_seed(o.seed(), 0)));
    if (o.bias()) bias_ = this->register_parameter("bias", fan_in_uniform<T>({out}, fan_in, derive_seed(o.seed(), 1)));
}

template <class T>
Conv1d<T>::Conv1d(long in_channels, long out_channels, long kernel_size)
    : Conv1d(Conv1dOptions(in_channels, out_channels, kernel_size)) {}

template <class T>
Var<T> Conv1d<T>::forward(const Var<T>& x) {
    const auto& o = options_;
    check_defined(describe(), x);
    const auto& s = x.value().shape();
    if (s.size() != 3 || static_cast<long>(s[1]) != o.in_channels()) {
        throw shape_error(fmt::format("{}: input has shape {}; expected (N, {}, L)", describe(),
                                      shape_string_of(x.value()), o.in_channels()));
    }
    const long reach = o.dilation() * (o.kernel_size() - 1) + 1;
    if (static_cast<long>(s[2]) + 2 * o.padding() < reach) {
        throw shape_error(fmt::format("{}: input {} is shorter than the dilated kernel {} (with padding {})",
                                      describe(), shape_string_of(x.value()), reach, o.padding()));
    }
    return named(describe(),
                 [&] { return conv1d(x, weight_, bias_, o.stride(), o.padding(), o.dilation(), o.groups()); });
}

template <class T>
std::string Conv1d<T>::describe() const {
    const auto& o = options_;
    std::string s = fmt::format("Conv1d({}, {}, kernel_size=({},), stride=({},)", o.in_channels(), o.out_channels(),
                                o.kernel_size(), o.stride());
    if (o.padding() != 0) s += fmt::format(", padding=({},)", o.padding());
    if (o.dilation() != 1) s += fmt::format(", dilation=({},)", o.dilation());
    if (o.groups() != 1) s += fmt::format(", groups={}", o.groups());
    if (!o.bias()) s += ", bias=False";
    return s + ")";
}

// --- Pooling ---------------------------------------------------------------------------

template <class T>
MaxPool2d<T>::MaxPool2d(MaxPool2dOptions options) : options_(std::move(options)) {
    check_pool_options(describe(), options_.kernel_size(), options_.stride(), options_.padding());
}

template <class T>
Var<T> MaxPool2d<T>::forward(const Var<T>& x) {
    const auto& o = options_;
    check_pool_input(describe(), x, o.kernel_size(), o.padding());
    return named(describe(), [&] { return max_pool2d(x, o.kernel_size(), o.stride(), o.padding()); });
}

template <class T>
std::string MaxPool2d<T>::describe() const {
    const auto& o = options_;
    return fmt::format("MaxPool2d(kernel_size={}, stride={}, padding={}, dilation=1, ceil_mode=False)",
                       pool_size(o.kernel_size()), pool_size(o.stride().value.value_or(o.kernel_size())),
                       pool_size(o.padding()));
}

template <class T>
AvgPool2d<T>::AvgPool2d(AvgPool2dOptions options) : options_(std::move(options)) {
    check_pool_options(describe(), options_.kernel_size(), options_.stride(), options_.padding());
}

template <class T>
Var<T> AvgPool2d<T>::forward(const Var<T>& x) {
    const auto& o = options_;
    check_pool_input(describe(), x, o.kernel_size(), o.padding());
    return named(describe(),
                 [&] { return avg_pool2d(x, o.kernel_size(), o.stride(), o.padding(), o.count_include_pad()); });
}

template <class T>
std::string AvgPool2d<T>::describe() const {
    const auto& o = options_;
    std::string s = fmt::format("AvgPool2d(kernel_size={}, stride={}, padding={}", pool_size(o.kernel_size()),
                                pool_size(o.stride().value.value_or(o.kernel_size())), pool_size(o.padding()));
    if (!o.count_include_pad()) s += ", count_include_pad=False";
    return s + ")";
}

// --- Flatten ---------------------------------------------------------------------------

template <class T>
Flatten<T>::Flatten(long start_dim, long end_dim) : start_dim_(start_dim), end_dim_(end_dim) {}

template <class T>
Var<T> Flatten<T>::forward(const Var<T>& x) {
    check_defined(describe(), x);
    const auto& s = x.value().shape();
    // A 0-d input flattens as a 1-D one of length 1, as torch.flatten does.
    const long rank = std::max<long>(static_cast<long>(s.size()), 1);
    const long start = start_dim_ < 0 ? start_dim_ + rank : start_dim_;
    const long end = end_dim_ < 0 ? end_dim_ + rank : end_dim_;
    if (start < 0 || start >= rank || end < 0 || end >= rank || start > end) {
        throw shape_error(fmt::format("{}: input has shape {}; dims {}..{} must lie in [{}, {}) in order", describe(),
                                      shape_string_of(x.value()), start_dim_, end_dim_, -rank, rank));
    }
    // Axes before start, their product start..end, axes after end.
    std::vector<long> shape(s.begin(), s.end());
    if (shape.empty()) shape.push_back(1);
    long merged = 1;
    for (long d = start; d <= end; ++d) merged *= shape[static_cast<std::size_t>(d)];
    shape.erase(shape.begin() + start + 1, shape.begin() + end + 1);
    shape[static_cast<std::size_t>(start)] = merged;
    return reshape(x, shape);
}

template <class T>
std::string Flatten<T>::describe() const {
    return fmt::format("Flatten(start_dim={}, end_dim={})", start_dim_, end_dim_);
}

template class Conv2d<float>;
template class Conv2d<double>;
template class Conv1d<float>;
template class Conv1d<double>;
template class MaxPool2d<float>;
template class MaxPool2d<double>;
template class AvgPool2d<float>;
template class AvgPool2d<double>;
template class Flatten<float>;
template class Flatten<double>;

}  // namespace ad::nn
