#include "autodiff/kernels.hpp"

#include <algorithm>
#include <array>
#include <limits>
#include <type_traits>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "autodiff/blas.hpp"

namespace ad::kernels {
namespace {

template <class T>
using Batch = xsimd::batch<T>;

/// out[i] = f(in[i]...) for i < n: whole batches, then the tail through
/// zero-padded batches, so that every element goes through the same arithmetic
/// wherever it sits. Each batch is loaded before it is stored: out may alias an input.
template <class T, class F, class... In>
void transform(std::size_t n, T* out, F f, const In*... in) {
    constexpr std::size_t width = Batch<T>::size;
    std::size_t i = 0;
    for (; i + width <= n; i += width) f(Batch<T>::load_unaligned(in + i)...).store_unaligned(out + i);
    if (i == n) return;
    auto padded = [i, n](const T* p) {
        std::array<T, width> lanes{};
        std::copy(p + i, p + n, lanes.begin());
        return Batch<T>::load_unaligned(lanes.data());
    };
    std::array<T, width> result;
    f(padded(in)...).store_unaligned(result.data());
    std::copy(result.begin(), result.begin() + (n - i), out + i);
}

/// Above this |x|, e^-|x| is below the smallest normal number: xsimd::exp
/// flushes such results to zero where std::exp returns the subnormal value.
template <class T>
constexpr T kSubnormalExp = std::is_same_v<T, float> ? T(87) : T(708);

/// sigma(x) in the stable form: with e = e^-|x| <= 1, (x >= 0 ? 1 : e) / (1 + e),
/// one division as in the scalar form.
/// Above this |x|, e^-|x| is zero in T, even computed as the square of e^(-|x|/2).
template <class T>
constexpr T kZeroExp = std::is_same_v<T, float> ? T(110) : T(800);

template <class T>
Batch<T> sigmoid_batch(const Batch<T>& x) {
    // xsimd::exp converts its argument over ln 2 to an integer, which is
    // undefined behaviour for NaN and for |x| beyond int's range: |x| is
    // clamped where e^-|x| is zero already (xsimd::min gives the bound for a
    // NaN), and a NaN input is passed through at the end.
    const Batch<T> a = xsimd::min(xsimd::abs(x), Batch<T>(kZeroExp<T>));
    Batch<T> e = xsimd::exp(-a);
    const auto subnormal = a > Batch<T>(kSubnormalExp<T>);
    if (xsimd::any(subnormal)) {
        // Saturated inputs (infinities included): e^-|x| = (e^(-|x|/2))^2, whose
        // factors are normal numbers; the square rounds once into the subnormal range.
        const Batch<T> h = xsimd::exp(-a * Batch<T>(0.5));
        e = xsimd::select(subnormal, h * h, e);
    }
    const Batch<T> y = xsimd::select(x >= Batch<T>(0), Batch<T>(1), e) / (Batch<T>(1) + e);
    return xsimd::select(xsimd::isnan(x), x, y);
}

}  // namespace

template <class T>
void sigmoid(const T* x, T* y, std::size_t n) {
    transform(n, y, [](const Batch<T>& v) { return sigmoid_batch(v); }, x);
}

namespace {

/// e^x for a batch, safe for any input: xsimd::exp converts x / ln 2 to an
/// integer (undefined for NaN and beyond int's range), so x is clamped where
/// the result is 0 or infinity already and NaN is passed through at the end.
/// Results below the smallest normal number are computed as the square of
/// e^(x/2), which xsimd::exp would flush to zero.
template <class T>
Batch<T> exp_batch(const Batch<T>& x) {
    const Batch<T> limit(kZeroExp<T>);
    const Batch<T> a = xsimd::max(xsimd::min(x, limit), -limit);  // NaN -> a bound, restored below
    Batch<T> e = xsimd::exp(a);
    const auto subnormal = a < Batch<T>(-kSubnormalExp<T>);
    if (xsimd::any(subnormal)) {
        const Batch<T> h = xsimd::exp(a * Batch<T>(0.5));
        e = xsimd::select(subnormal, h * h, e);
    }
    return xsimd::select(xsimd::isnan(x), x, e);
}

/// tanh for a batch: beyond |x| = 20 (float) or 40 (double) tanh x rounds to
/// +-1, so x is clamped there before xsimd's exp-based formula sees it.
template <class T>
Batch<T> tanh_batch(const Batch<T>& x) {
    const Batch<T> limit(std::is_same_v<T, float> ? T(20) : T(40));
    const Batch<T> a = xsimd::max(xsimd::min(x, limit), -limit);
    return xsimd::select(xsimd::isnan(x), x, xsimd::tanh(a));
}

}  // namespace

template <class T>
void exp(const T* x, T* y, std::size_t n) {
    transform(n, y, [](const Batch<T>& v) { return exp_batch(v); }, x);
}

template <class T>
void log(const T* x, T* y, std::size_t n) {
    transform(n, y, [](const Batch<T>& v) { return xsimd::log(v); }, x);
}

template <class T>
void tanh(const T* x, T* y, std::size_t n) {
    transform(n, y, [](const Batch<T>& v) { return tanh_batch(v); }, x);
}

template <class T>
T max_or_nan(const T* x, std::size_t n) {
    constexpr std::size_t width = Batch<T>::size;
    T max = x[0];
    bool nan = false;
    if (n >= width) {
        // Whole batches, then one last batch that overlaps them: a max may
        // look at an element twice.
        Batch<T> m = Batch<T>::load_unaligned(x);
        auto seen_nan = xsimd::isnan(m);
        for (std::size_t i = width; i < n; i += width) {
            const Batch<T> v = Batch<T>::load_unaligned(x + std::min(i, n - width));
            m = xsimd::max(m, v);
            seen_nan = seen_nan || xsimd::isnan(v);
        }
        nan = xsimd::any(seen_nan);
        std::array<T, width> lanes;
        m.store_unaligned(lanes.data());
        for (T v : lanes) max = v > max ? v : max;
    } else {
        for (std::size_t i = 0; i < n; ++i) {
            nan = nan || x[i] != x[i];
            max = x[i] > max ? x[i] : max;
        }
    }
    return nan ? std::numeric_limits<T>::quiet_NaN() : max;
}

template <class T>
void sigmoid_backward(const T* g, const T* y, T* out, std::size_t n) {
    transform(n, out, [](const Batch<T>& gv, const Batch<T>& yv) { return gv * yv * (Batch<T>(1) - yv); }, g, y);
}

template <class T>
void axpy(std::size_t n, T alpha, const T* x, T* y) {
    // On a small layer's few values the call into BLAS costs more than the
    // update; the two cost the same at about 256 elements.
    if (n < 256) {
        for (std::size_t i = 0; i < n; ++i) y[i] += alpha * x[i];
        return;
    }
    // BLAS counts in int: a longer vector goes in int-sized pieces.
    constexpr std::size_t piece = std::numeric_limits<int>::max();
    for (std::size_t done = 0; done < n; done += piece) {
        blas::axpy(static_cast<int>(std::min(piece, n - done)), alpha, x + done, y + done);
    }
}

namespace {

/// x - x is 0 exactly when x is finite (inf - inf and NaN give NaN). One
/// pass with no early exit, so that it vectorises.
template <class T>
bool all_finite_by_loop(const T* x, std::size_t n) {
    int not_finite = 0;  // an int, not a bool: g++ vectorises an OR over ints
    for (std::size_t i = 0; i < n; ++i) not_finite |= !(x[i] - x[i] == T(0));
    return not_finite == 0;
}

}  // namespace

template <class T>
bool all_finite_long(const T* x, std::size_t n) {
    constexpr std::size_t row = 1024, rows_per_call = 1024;
    // Below 64 rows the GEMV's call and its threads cost more than they save.
    if (n < 64 * row) return all_finite_by_loop(x, n);
    static const std::vector<T> ones(row, T(1));
    std::array<T, rows_per_call> sums;
    std::size_t done = 0;
    while (n - done >= row) {
        const std::size_t rows = std::min(rows_per_call, (n - done) / row);
        // sums = the rows' sums: the (rows x row) matrix at x + done times ones.
        blas::gemv(false, static_cast<int>(rows), static_cast<int>(row), T(1), x + done, ones.data(), T(0),
                   sums.data());
        if (!all_finite_by_loop(sums.data(), rows) && !all_finite_by_loop(x + done, rows * row)) return false;
        done += rows * row;
    }
    return all_finite_by_loop(x + done, n - done);
}

template void sigmoid(const float*, float*, std::size_t);
template void sigmoid(const double*, double*, std::size_t);
template float max_or_nan(const float*, std::size_t);
template double max_or_nan(const double*, std::size_t);
template void exp(const float*, float*, std::size_t);
template void exp(const double*, double*, std::size_t);
template void log(const float*, float*, std::size_t);
template void log(const double*, double*, std::size_t);
template void tanh(const float*, float*, std::size_t);
template void tanh(const double*, double*, std::size_t);
template void sigmoid_backward(const float*, const float*, float*, std::size_t);
template void sigmoid_backward(const double*, const double*, double*, std::size_t);
template void axpy(std::size_t, float, const float*, float*);
template void axpy(std::size_t, double, const double*, double*);
template bool all_finite_long(const float*, std::size_t);
template bool all_finite_long(const double*, std::size_t);

}  // namespace ad::kernels
