// libFuzzer target: bytes become a random program of engine ops over small
// values (0-d values, size-0 axes, mismatched shapes, NaN and infinities) on
// a tape, followed by backward, ad::grad with create_graph and a second
// backward through the recorded gradients.
//
// Input: one byte picks the element type and how many leaves there are; each
// leaf takes a byte for parameter or constant, its shape and its elements;
// then each op is an opcode byte followed by the bytes of its operands
// (indices into the values made so far) and arguments. The input is the only
// source of randomness: a run is reproducible from its bytes.
//
// A finding: a crash, a sanitizer report, a leak, an allocation above
// -malloc_limit_mb, an exception that is not one of autodiff/errors.hpp's
// types (std::bad_alloc, xtensor's exceptions, std::out_of_range, ...), or a
// result whose shape's product is not its element count.

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <typeinfo>
#include <vector>

#include "autodiff/autodiff.hpp"
#include "autodiff/errors.hpp"

namespace {

using ad::Array;
using ad::IndexArray;
using ad::Mask;
using ad::Shape;
using ad::Var;

/// Values beyond these bounds are not kept for later ops: a program may
/// legitimately ask for a value far larger (tile a tiled value, broadcast to
/// a huge shape), and that is not a bug to report.
constexpr std::size_t max_extent = 16;
constexpr std::size_t max_elements = 1024;
constexpr std::size_t max_values = 48;
constexpr std::size_t max_ops = 40;

[[noreturn]] void finding(const char* where, const std::string& what) {
    std::fprintf(stderr, "program_fuzzer: %s: %s\n", where, what.c_str());
    std::abort();
}

/// The fuzzer's bytes, read front to back; zeros once they run out.
class Bytes {
public:
    Bytes(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
    bool empty() const { return size_ == 0; }
    std::uint8_t byte() {
        if (size_ == 0) return 0;
        --size_;
        return *data_++;
    }
    std::size_t below(std::size_t bound) { return bound == 0 ? 0 : byte() % bound; }
    bool flag() { return byte() & 1; }

    /// An axis: in range for small ranks mostly, sometimes far out.
    long axis() {
        static const long table[] = {0, 1, 2, 3, -1, -2, -3, -4, 4, 5, -5, 0, 1, -1,
                                     std::numeric_limits<long>::min(), std::numeric_limits<long>::max()};
        return table[below(std::size(table))];
    }
    /// A count or position: small mostly, sometimes near the top of size_t.
    std::size_t position() {
        static const std::size_t big = std::numeric_limits<std::size_t>::max();
        static const std::size_t table[] = {0, 1, 2, 3, 4, 5, 0, 1, 2, 3, big, big - 1, std::size_t(1) << 32,
                                            std::size_t(1) << 63, 6, 7};
        return table[below(std::size(table))];
    }
    /// A length of a result: small, so that every valid request is small too.
    std::size_t length() { return below(6); }
    /// A stride, padding, dilation or kernel size: small, zero, negative or huge.
    long conv_size() {
        static const long table[] = {1, 1, 2, 3, 0, -1, 1, 2, std::numeric_limits<long>::max(),
                                     std::numeric_limits<long>::min(), long(1) << 40, 4};
        return table[below(std::size(table))];
    }
    /// A reshape entry: small, -1 (inferred), or large enough to overflow a product.
    long reshape_extent() {
        static const long table[] = {-1, 0, 1, 2, 3, 4, 6, -1, 1, 2, -2, long(1) << 32, long(1) << 62,
                                     std::numeric_limits<long>::max(), std::numeric_limits<long>::min(), 8};
        return table[below(std::size(table))];
    }
    template <class T>
    T value() {
        const std::uint8_t b = byte();
        static const T table[] = {T(0), T(1), T(-1), T(0.5), T(2), T(-0.0),
                                  std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::infinity(),
                                  -std::numeric_limits<T>::infinity(), std::numeric_limits<T>::max(),
                                  std::numeric_limits<T>::lowest(), std::numeric_limits<T>::denorm_min(),
                                  T(1e-30), T(3), T(-3), T(100)};
        if (b < 128) return table[b % std::size(table)];
        return T(static_cast<std::int8_t>(b * 37)) / T(8);
    }
    Shape shape(std::size_t max_rank = 4) {
        Shape s(below(max_rank + 1));
        for (auto& e : s) e = below(4);
        return s;
    }

private:
    const std::uint8_t* data_;
    std::size_t size_;
};

/// Runs f; any exception but the types of autodiff/errors.hpp is a finding.
template <class F>
void expect_documented(const char* where, F&& f) {
    try {
        f();
    } catch (const ad::shape_error&) {
    } catch (const ad::value_error&) {
    } catch (const ad::tape_error&) {
    } catch (const ad::io_error&) {
    } catch (const std::exception& e) {
        finding(where, std::string(typeid(e).name()) + ": " + e.what());
    } catch (...) {
        finding(where, "an exception of unknown type");
    }
}

std::size_t checked_product(const char* op, const Shape& shape) {
    std::size_t n = 1;
    for (std::size_t e : shape) {
        if (__builtin_mul_overflow(n, e, &n)) {
            finding(op, "a result's shape " + ad::shape_string(shape) + " has more elements than size_t holds");
        }
    }
    return n;
}

template <class T>
class Program {
public:
    using V = Var<T>;
    explicit Program(Bytes& in) : in_(in) {}

    void run() {
        ad::Tape tape;
        tape_ = &tape;
        const std::size_t leaves = 1 + in_.below(4);
        for (std::size_t i = 0; i < leaves; ++i) {
            const bool parameter = in_.flag();
            Array<T> a = Array<T>::from_shape(in_.shape());
            for (auto& x : a) x = in_.value<T>();
            keep("leaf", parameter ? ad::param(std::move(a)) : ad::constant(std::move(a)));
            if (parameter) params_.push_back(values_.back());
        }
        for (std::size_t n = 0; n < max_ops && !in_.empty(); ++n) {
            const std::uint8_t opcode = in_.byte();
            expect_documented(op_name(opcode), [&] { step(opcode); });
        }
        differentiate();
    }

private:
    /// sum(tanh(x)) over the finite elements of x: a loss that stays finite
    /// whatever x holds, since backward refuses a NaN or infinite loss (a
    /// value_error) and would otherwise stop most programs with NaN or
    /// infinities before their VJPs run.
    static V bounded_sum(const V& x) {
        const Mask finite = ad::less(ad::abs(x), std::numeric_limits<T>::infinity());
        return ad::sum(ad::tanh(ad::where(finite, x, ad::scalar(T(0)))));
    }

    /// A loss of every value that requires a gradient, then the three sweeps,
    /// each run even when the one before it threw.
    void differentiate() {
        V loss;
        expect_documented("loss", [&] {
            for (const V& v : values_) {
                if (!v.requires_grad()) continue;
                V s = bounded_sum(v);
                loss = loss.defined() ? loss + s : s;
            }
        });
        if (!loss.defined() || params_.empty()) return;
        expect_documented("backward", [&] { loss.backward({/*retain_graph=*/true}); });
        std::vector<V> grads;
        expect_documented("grad with create_graph",
                          [&] { grads = ad::grad(loss, params_, {/*retain_graph=*/true, /*create_graph=*/true}); });
        expect_documented("second backward", [&] {
            V second;
            for (std::size_t i = 0; i < grads.size(); ++i) {
                V s = bounded_sum(grads[i] * ad::tanh(params_[i]));
                second = second.defined() ? second + s : s;
            }
            if (second.defined() && second.requires_grad()) second.backward();
        });
    }

    V pick() { return values_[in_.below(values_.size())]; }

    void keep(const char* op, const V& v) {
        const Shape shape = v.shape();
        if (checked_product(op, shape) != v.size()) {
            finding(op, "a result of shape " + ad::shape_string(shape) + " holds " + std::to_string(v.size()) + " elements");
        }
        if (v.size() > max_elements) return;
        for (std::size_t e : shape) {
            if (e > max_extent) return;
        }
        if (values_.size() == max_values) values_.erase(values_.begin() + 1 + in_.below(max_values - 1));
        values_.push_back(v);
    }
    void keep_all(const char* op, const std::vector<V>& vs) {
        for (const V& v : vs) keep(op, v);
    }

    Shape small_shape() { return in_.shape(); }
    std::vector<long> axes() {
        std::vector<long> a(in_.below(4));
        for (auto& x : a) x = in_.axis();
        return a;
    }
    std::vector<std::size_t> positions(std::size_t max_count = 4) {
        std::vector<std::size_t> p(in_.below(max_count + 1));
        for (auto& x : p) x = in_.position();
        return p;
    }
    IndexArray indices() {
        IndexArray idx = IndexArray::from_shape(in_.shape(2));
        static const std::int64_t table[] = {0, 1, 2, 0, 1, -1, 3, std::numeric_limits<std::int64_t>::max(),
                                             std::numeric_limits<std::int64_t>::min(), 2};
        for (auto& x : idx) x = table[in_.below(std::size(table))];
        return idx;
    }
    IndexArray index_like(const V& x) {
        IndexArray idx = IndexArray::from_shape(x.shape());
        for (auto& i : idx) i = std::int64_t(in_.below(4)) - (in_.below(8) == 0 ? 5 : 0);
        return idx;
    }
    Mask mask() {
        V a = pick();
        switch (in_.below(4)) {
            case 0: return ad::greater(a, pick());
            case 1: return ad::less_equal(a, T(0));
            case 2: return ad::equal(a, pick());
            default: return ad::not_equal(a, a);
        }
    }
    ad::Reduction reduction() { return in_.flag() ? ad::Reduction::sum : ad::Reduction::mean; }
    V maybe() { return in_.below(3) == 0 ? V() : pick(); }

    static constexpr std::uint8_t op_count = 40;
    static const char* op_name(std::uint8_t opcode) {
        static const char* names[op_count] = {
            "unary", "unary", "binary", "binary", "scalar ops", "activation", "compare/where",
            "reduce all", "reduce axis", "var/std/norm", "cumsum/argmax", "reshape", "transpose/permute",
            "broadcast_to/sum_to_shape", "slice/rows", "pad", "take_rows/scatter_add_rows", "flip/repeat/tile",
            "squeeze/unsqueeze", "split/chunk", "concatenate", "stack", "matmul", "outer/dot/trace",
            "linear", "softmax", "losses", "class losses", "gather/scatter_add", "index_select/embedding",
            "layer_norm", "batch_norm/dropout", "conv", "pool", "decomposition", "grad", "detach",
            "clear", "binary", "unary"};
        return names[opcode % op_count];
    }

    void step(std::uint8_t opcode) {
        switch (opcode % op_count) {
            case 0: case 1: case 39: return unary();
            case 2: case 3: case 38: return binary();
            case 4: {
                V x = pick();
                const T s = in_.value<T>(), t = in_.value<T>();
                switch (in_.below(5)) {
                    case 0: return keep("pow scalar", ad::pow(x, s));
                    case 1: return keep("affine", ad::affine(x, s, t));
                    case 2: return keep("clamp", ad::clamp(x, s, t));
                    case 3: return keep("hardtanh", ad::hardtanh(x, s, t));
                    default: return keep("scalar div", s / x);
                }
            }
            case 5: {
                V x = pick();
                const T s = in_.value<T>();
                switch (in_.below(4)) {
                    case 0: return keep("leaky_relu", ad::leaky_relu(x, s));
                    case 1: return keep("elu", ad::elu(x, s));
                    case 2: return keep("gelu", ad::gelu(x, in_.flag() ? ad::GeluApproximation::tanh : ad::GeluApproximation::none));
                    default: return keep("sigmoid_backward", ad::sigmoid_backward(x, pick()));
                }
            }
            case 6: {
                Mask m = mask();
                V a = pick(), b = pick();
                return keep("where", ad::where(m, a, b));
            }
            case 7: {
                V x = pick();
                switch (in_.below(6)) {
                    case 0: return keep("sum", ad::sum(x));
                    case 1: return keep("mean", ad::mean(x));
                    case 2: return keep("max", ad::max(x));
                    case 3: return keep("min", ad::min(x));
                    case 4: return keep("prod", ad::prod(x));
                    default: return keep("logsumexp", ad::logsumexp(x));
                }
            }
            case 8: {
                V x = pick();
                const long axis = in_.axis();
                const bool keepdims = in_.flag();
                switch (in_.below(6)) {
                    case 0: return keep("sum axis", ad::sum(x, axis, keepdims));
                    case 1: return keep("mean axis", ad::mean(x, axis, keepdims));
                    case 2: return keep("max axis", ad::max(x, axis, keepdims));
                    case 3: return keep("min axis", ad::min(x, axis, keepdims));
                    case 4: return keep("prod axis", ad::prod(x, axis, keepdims));
                    default: return keep("logsumexp axis", ad::logsumexp(x, axis, keepdims));
                }
            }
            case 9: {
                V x = pick();
                std::optional<long> axis;
                if (in_.flag()) axis = in_.axis();
                const std::size_t correction = in_.below(3);
                const bool keepdims = in_.flag();
                static const double ords[] = {1, 2, INFINITY, 3, 0, -1, NAN};
                const double ord = ords[in_.below(std::size(ords))];
                switch (in_.below(4)) {
                    case 0: return keep("var", ad::var(x, axis, correction, keepdims));
                    case 1: return keep("std", ad::std(x, axis, correction, keepdims));
                    case 2: return keep("norm", ad::norm(x, ord));
                    default: return keep("norm axis", ad::norm(x, ord, axis.value_or(0), keepdims));
                }
            }
            case 10: {
                V x = pick();
                const long axis = in_.axis();
                switch (in_.below(5)) {
                    case 0: return keep("cumsum", ad::cumsum(x, axis));
                    case 1: index_ = ad::argmax(x); return;
                    case 2: index_ = ad::argmin(x, axis, in_.flag()); return;
                    case 3: index_ = ad::argmax(x, axis, in_.flag()); return;
                    default: index_ = ad::argmin(x); return;
                }
            }
            case 11: {
                V x = pick();
                std::vector<long> shape(in_.below(5));
                for (auto& e : shape) e = in_.reshape_extent();
                return keep("reshape", ad::reshape(x, shape));
            }
            case 12: {
                V x = pick();
                switch (in_.below(3)) {
                    case 0: return keep("transpose", ad::transpose(x));
                    case 1: {
                        std::vector<std::size_t> perm(in_.below(5));
                        for (auto& p : perm) p = in_.below(6);
                        return keep("transpose perm", ad::transpose(x, perm));
                    }
                    default: return keep("permute", ad::permute(x, axes()));
                }
            }
            case 13: {
                V x = pick();
                const Shape s = small_shape();
                if (in_.flag()) return keep("broadcast_to", ad::broadcast_to(x, s));
                return keep("sum_to_shape", ad::sum_to_shape(x, s));
            }
            case 14: {
                V x = pick();
                const long axis = in_.axis();
                const std::size_t begin = in_.position(), end = in_.position();
                if (in_.flag()) return keep("rows", ad::rows(x, begin, end));
                return keep("slice", ad::slice(x, axis, begin, end));
            }
            case 15: {
                V x = pick();
                const long axis = in_.axis();
                const std::size_t begin = in_.position(), size = in_.length();
                return keep("pad", ad::pad(x, axis, begin, size));
            }
            case 16: {
                V x = pick();
                const auto idx = positions();
                if (in_.flag()) return keep("take_rows", ad::take_rows(x, idx));
                return keep("scatter_add_rows", ad::scatter_add_rows(x, idx, in_.length()));
            }
            case 17: {
                V x = pick();
                std::vector<std::size_t> reps(in_.below(5));
                for (auto& r : reps) r = in_.below(4);
                switch (in_.below(3)) {
                    case 0: return keep("flip", ad::flip(x, axes()));
                    case 1: return keep("repeat", ad::repeat(x, reps));
                    default: return keep("tile", ad::tile(x, reps));
                }
            }
            case 18: {
                V x = pick();
                switch (in_.below(3)) {
                    case 0: return keep("squeeze", ad::squeeze(x));
                    case 1: return keep("squeeze axis", ad::squeeze(x, in_.axis()));
                    default: return keep("unsqueeze", ad::unsqueeze(x, in_.axis()));
                }
            }
            case 19: {
                V x = pick();
                const long axis = in_.axis();
                switch (in_.below(3)) {
                    case 0: return keep_all("split", ad::split(x, in_.position(), axis));
                    case 1: {
                        std::vector<std::size_t> sizes(in_.below(4));
                        for (auto& s : sizes) s = in_.position();
                        return keep_all("split sizes", ad::split(x, sizes, axis));
                    }
                    default: return keep_all("chunk", ad::chunk(x, in_.below(5), axis));
                }
            }
            case 20: case 21: {
                std::vector<V> xs(in_.below(4));
                for (auto& x : xs) x = pick();
                const long axis = in_.axis();
                if (opcode % op_count == 20) return keep("concatenate", ad::concatenate(xs, axis));
                return keep("stack", ad::stack(xs, axis));
            }
            case 22: {
                V a = pick(), b = pick();
                if (in_.flag()) return keep("matmul", ad::matmul(a, b));
                const bool ta = in_.flag(), tb = in_.flag();
                return keep("matmul transposed", ad::matmul(a, b, ta, tb));
            }
            case 23: {
                V a = pick();
                switch (in_.below(3)) {
                    case 0: return keep("outer", ad::outer(a, pick()));
                    case 1: return keep("dot", ad::dot(a, pick()));
                    default: return keep("trace", ad::trace(a));
                }
            }
            case 24: {
                V x = pick(), w = pick(), b = pick();
                if (in_.flag()) return keep("linear", ad::linear(x, w, b));
                return keep("linear_sigmoid", ad::linear_sigmoid(x, w, b));
            }
            case 25: {
                V x = pick();
                const long axis = in_.axis();
                if (in_.flag()) return keep("softmax", ad::softmax(x, axis));
                return keep("log_softmax", ad::log_softmax(x, axis));
            }
            case 26: {
                V p = pick(), t = pick();
                const ad::Reduction r = reduction();
                switch (in_.below(7)) {
                    case 0: return keep("softmax_cross_entropy", ad::softmax_cross_entropy(p, t, r));
                    case 1: return keep("half_sse", ad::half_sse(p, t, r));
                    case 2: return keep("mse", ad::mse(p, t, r));
                    case 3: return keep("binary_cross_entropy", ad::binary_cross_entropy(p, t, r));
                    case 4: return keep("huber_loss", ad::huber_loss(p, t, in_.value<T>(), r));
                    case 5: return keep("l1_loss", ad::l1_loss(p, t, r));
                    default: return keep("mse", ad::mse(p, t, r));
                }
            }
            case 27: {
                V x = pick();
                const ad::Reduction r = reduction();
                const IndexArray classes = in_.flag() ? indices() : index_;
                std::vector<std::size_t> positions_ = positions();
                switch (in_.below(4)) {
                    case 0: return keep("softmax_cross_entropy classes", ad::softmax_cross_entropy(x, positions_, r));
                    case 1: return keep("nll_loss", ad::nll_loss(x, classes, r));
                    case 2: return keep("nll_loss vector", ad::nll_loss(x, positions_, r));
                    default: return keep("cross_entropy", ad::cross_entropy(x, classes, r, in_.value<T>()));
                }
            }
            case 28: {
                V x = pick();
                const long axis = in_.axis();
                const IndexArray idx = in_.flag() ? index_like(x) : indices();
                if (in_.flag()) return keep("gather", ad::gather(x, axis, idx));
                const Shape s = small_shape();
                return keep("scatter_add", ad::scatter_add(s, axis, idx, x));
            }
            case 29: {
                V x = pick();
                const long axis = in_.axis();
                switch (in_.below(4)) {
                    case 0: return keep("index_select", ad::index_select(x, axis, indices()));
                    case 1: return keep("index_select vector", ad::index_select(x, axis, positions()));
                    case 2: return keep("index_add", ad::index_add(small_shape(), axis, indices(), x));
                    default: return keep("embedding", ad::embedding(x, indices()));
                }
            }
            case 30: {
                V x = pick();
                Shape normalized(in_.below(3));
                for (auto& e : normalized) e = in_.below(4);
                V w = maybe(), b = maybe();
                return keep("layer_norm", ad::layer_norm(x, normalized, w, b, in_.value<T>()));
            }
            case 31: {
                V x = pick();
                if (in_.flag()) {
                    std::mt19937_64 generator(in_.byte());
                    static const double ps[] = {0, 0.5, 1, -0.1, 1.5, NAN, 0.25};
                    const double p = ps[in_.below(std::size(ps))];
                    return keep("dropout", ad::dropout(x, p, in_.flag(), generator));
                }
                V w = maybe(), b = maybe();
                ad::RunningStats<T> stats{Array<T>::from_shape({in_.below(4)}), Array<T>::from_shape({in_.below(4)})};
                for (auto& v : stats.mean) v = in_.value<T>();
                for (auto& v : stats.var) v = in_.value<T>();
                const bool use_stats = in_.flag(), training = in_.flag();
                const T momentum = in_.value<T>(), eps = in_.value<T>();
                return keep("batch_norm", ad::batch_norm(x, w, b, use_stats ? &stats : nullptr, training, momentum, eps));
            }
            case 32: {
                V x = pick(), w = pick(), b = maybe();
                const long stride = in_.conv_size(), dilation = in_.conv_size(), groups = in_.conv_size();
                const long padding = long(in_.below(3)) - (in_.below(8) == 0 ? 1 : 0);
                if (in_.flag()) return keep("conv1d", ad::conv1d(x, w, b, stride, padding, dilation, groups));
                return keep("conv2d", ad::conv2d(x, w, b, ad::Size2(stride, in_.conv_size()), ad::Size2(padding, padding),
                                                 ad::Size2(dilation, in_.conv_size()), groups));
            }
            case 33: {
                V x = pick();
                const ad::Size2 kernel(in_.conv_size(), in_.conv_size());
                const ad::PoolStride stride = in_.flag() ? ad::PoolStride() : ad::PoolStride(in_.conv_size(), in_.conv_size());
                const ad::Size2 padding(long(in_.below(3)) - 1, long(in_.below(3)) - 1);
                if (in_.flag()) return keep("max_pool2d", ad::max_pool2d(x, kernel, stride, padding));
                return keep("avg_pool2d", ad::avg_pool2d(x, kernel, stride, padding, in_.flag()));
            }
            case 34: {
                V a = pick();
                switch (in_.below(6)) {
                    case 0: return keep("solve", ad::solve(a, pick()));
                    case 1: {
                        V b = pick();
                        const bool upper = in_.flag(), unit = in_.flag();
                        return keep("solve_triangular", ad::solve_triangular(a, b, upper, unit));
                    }
                    case 2: return keep("cholesky", ad::cholesky(a));
                    case 3: return keep("inv", ad::inv(a));
                    case 4: return keep("det", ad::det(a));
                    default: return keep("logabsdet", ad::logabsdet(a));
                }
            }
            case 35: {
                // Gradients mid-program, recorded or not, become values for later ops.
                V out = pick();
                std::vector<V> wrt(1 + in_.below(2));
                for (auto& w : wrt) w = pick();
                const bool create_graph = in_.flag();
                V loss = in_.below(4) == 0 ? ad::sum(out) : in_.flag() ? bounded_sum(out) : out;
                return keep_all("grad", ad::grad(loss, wrt, {/*retain_graph=*/true, create_graph}));
            }
            case 36: return keep("detach", pick().detach());
            case 37:
                // Rare: a cleared tape makes the values recorded so far unusable.
                if (in_.below(8) == 0) tape_->clear();
                return;
        }
    }

    void unary() {
        using F = V (*)(const V&);
        static const F fs[] = {
            [](const V& x) { return ad::neg(x); },        [](const V& x) { return ad::exp(x); },
            [](const V& x) { return ad::log(x); },        [](const V& x) { return ad::sqrt(x); },
            [](const V& x) { return ad::square(x); },     [](const V& x) { return ad::abs(x); },
            [](const V& x) { return ad::sigmoid(x); },    [](const V& x) { return ad::tanh(x); },
            [](const V& x) { return ad::relu(x); },       [](const V& x) { return ad::softplus(x); },
            [](const V& x) { return ad::sin(x); },        [](const V& x) { return ad::cos(x); },
            [](const V& x) { return ad::tan(x); },        [](const V& x) { return ad::asin(x); },
            [](const V& x) { return ad::acos(x); },       [](const V& x) { return ad::atan(x); },
            [](const V& x) { return ad::sinh(x); },       [](const V& x) { return ad::cosh(x); },
            [](const V& x) { return ad::log1p(x); },      [](const V& x) { return ad::expm1(x); },
            [](const V& x) { return ad::erf(x); },        [](const V& x) { return ad::reciprocal(x); },
            [](const V& x) { return ad::rsqrt(x); },      [](const V& x) { return ad::sign(x); },
            [](const V& x) { return ad::floor(x); },      [](const V& x) { return ad::ceil(x); },
            [](const V& x) { return ad::round(x); },      [](const V& x) { return ad::silu(x); },
            [](const V& x) { return ad::softsign(x); },   [](const V& x) { return ad::log_sigmoid(x); },
            [](const V& x) { return ad::mish(x); },       [](const V& x) { return ad::squeeze(x); },
        };
        V x = pick();
        keep("unary", fs[in_.below(std::size(fs))](x));
    }

    void binary() {
        using F = V (*)(const V&, const V&);
        static const F fs[] = {
            [](const V& a, const V& b) { return ad::add(a, b); },     [](const V& a, const V& b) { return ad::sub(a, b); },
            [](const V& a, const V& b) { return ad::mul(a, b); },     [](const V& a, const V& b) { return ad::div(a, b); },
            [](const V& a, const V& b) { return ad::pow(a, b); },     [](const V& a, const V& b) { return ad::maximum(a, b); },
            [](const V& a, const V& b) { return ad::minimum(a, b); },
        };
        V a = pick(), b = pick();
        keep("binary", fs[in_.below(std::size(fs))](a, b));
    }

    Bytes& in_;
    ad::Tape* tape_ = nullptr;
    std::vector<V> values_;
    std::vector<V> params_;
    IndexArray index_ = IndexArray::from_shape({0});
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    Bytes in(data, size);
    if (in.flag()) {
        Program<float>(in).run();
    } else {
        Program<double>(in).run();
    }
    return 0;
}
