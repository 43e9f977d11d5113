#pragma once
// Vectorised elementwise kernels on contiguous storage, shared by the engine
// (its ops, the optimizers) and the hand-written benchmark floor
// (benchmarks/mlp_step.cpp) so that both run the same code. They use xsimd
// batches of the architecture the build targets: AVX2 + FMA with
// TAPEGRAD_NATIVE on this project's machines, SSE2 in a portable build; axpy
// and all_finite go through BLAS on long vectors. Defined for float and double.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "autodiff/inline.hpp"

namespace ad::kernels {

/// y[i] = sigma(x[i]) = 1 / (1 + e^-x[i]) for i < n; y may alias x.
/// Evaluated in the stable form 1 / (1 + e^-|x|) for x >= 0, e^-|x| / (1 + e^-|x|)
/// for x < 0: e^-|x| <= 1 never overflows, so any |x| (infinities included)
/// gives a result in [0, 1], never NaN (NaN stays NaN); results agree with the
/// scalar form to a few ulp, subnormal ones included.
/// Derivative: sigma'(x) = sigma(x) (1 - sigma(x)), a function of the result
/// alone, which is why sigmoid_backward takes y rather than x.
template <class T>
void sigmoid(const T* x, T* y, std::size_t n);

/// y[i] = e^x[i], log x[i], tanh x[i] for i < n; y may alias x. In xsimd
/// batches from element 0 with the tail in a padded batch, so every element
/// goes through the same arithmetic wherever the arrays sit in memory:
/// xtensor's own loop starts with scalar std:: calls up to the first aligned
/// address, and those round differently from the batch functions, which made
/// a model's output depend on its arrays' addresses in the last bit (and a
/// resumed run differ from an uninterrupted one). Infinities, NaN, zeros and
/// subnormal results as std::exp, std::log and std::tanh give them.
template <class T>
void exp(const T* x, T* y, std::size_t n);
template <class T>
void log(const T* x, T* y, std::size_t n);
template <class T>
void tanh(const T* x, T* y, std::size_t n);

/// out[i] = g[i] y[i] (1 - y[i]) for i < n: sigmoid's VJP x_bar = y_bar sigma'(x)
/// written with the forward's result y = sigma(x), so the backward pass needs
/// neither x nor another exp. out may alias g or y.
template <class T>
void sigmoid_backward(const T* g, const T* y, T* out, std::size_t n);

/// y[i] += alpha x[i] for i < n (x and y do not overlap): BLAS's ?axpy, which
/// OpenBLAS spreads over its threads on long vectors (above 10,000 elements)
/// where a loop of ours would run on one core. It is SGD's update, which on
/// a large layer is then bound by memory, not by one core. Short vectors
/// take a plain loop.
template <class T>
void axpy(std::size_t n, T alpha, const T* x, T* y);

/// Whether x[0..n) holds finite numbers only (no NaN, no infinity). A long
/// vector is cleared through BLAS: a NaN or an infinity makes the sum of its
/// row of 1024 non-finite, so one GEMV with a vector of ones (which OpenBLAS
/// splits over its threads, and reads faster than a loop even on one) does
/// it; a row whose sum is not finite (a bad value, or finite ones whose sum
/// overflows) is then settled element by element. It is the optimizers' check
/// of every gradient, which on a large model then runs at memory speed. Fewer
/// than 16 numbers (a small layer's gradient) are tested here, inline, on
/// their bits: an infinity or a NaN has every exponent bit set. A call costs
/// more than the test, and integer tests do not wait on each other the way
/// floating-point comparisons feeding one flag do.
template <class T>
bool all_finite_long(const T* x, std::size_t n);

namespace detail {

/// The exponent bits of x[0..count), each plus its exponent's lowest bit, ORed:
/// an exponent with every bit set (an infinity or a NaN) carries into the
/// sign bit, and nothing else reaches it. No compare per number, so the
/// fixed count unrolls into a few vector instructions.
template <std::size_t count, class T>
AD_INLINE auto exponent_carries(const T* x) {
    using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
    constexpr Bits exponent = sizeof(T) == 4 ? Bits(0x7f800000u) : Bits(0x7ff0000000000000ull);
    constexpr Bits exponent_lsb = exponent & ~(exponent << 1);
    Bits carries = 0;
    for (std::size_t i = 0; i < count; ++i) {
        Bits bits;
        std::memcpy(&bits, x + i, sizeof bits);
        carries |= (bits & exponent) + exponent_lsb;
    }
    return carries;
}

}  // namespace detail

template <class T>
AD_INLINE bool all_finite(const T* x, std::size_t n) {
    if (n >= 16) return all_finite_long(x, n);
    // Two blocks of fixed size, overlapping when n is not their sum: no loop
    // whose length changes from one gradient to the next, which the branch
    // predictor would miss on a small model's differently sized gradients.
    decltype(detail::exponent_carries<1>(x)) carries;
    if (n >= 8) {
        carries = detail::exponent_carries<8>(x) | detail::exponent_carries<8>(x + n - 8);
    } else if (n >= 4) {
        carries = detail::exponent_carries<4>(x) | detail::exponent_carries<4>(x + n - 4);
    } else if (n > 0) {
        carries = detail::exponent_carries<1>(x) | detail::exponent_carries<1>(x + n / 2) |
                  detail::exponent_carries<1>(x + n - 1);
    } else {
        return true;
    }
    constexpr decltype(carries) sign = decltype(carries)(1) << (8 * sizeof(T) - 1);
    return (carries & sign) == 0;
}

/// The sum of term(k) for k < n in eight interleaved partial sums: the
/// additions do not wait on each other and vectorise, where one running sum
/// waits on every add before it (the compiler may not reorder them itself).
template <class T, class Term>
AD_INLINE T interleaved_sum(std::size_t n, Term term) {
    T partial[8] = {};
    std::size_t k = 0;
    for (; k + 8 <= n; k += 8) {
        for (std::size_t j = 0; j < 8; ++j) partial[j] += term(k + j);
    }
    T total = 0;
    for (; k < n; ++k) total += term(k);
    for (T p : partial) total += p;
    return total;
}

/// The largest of x[0..n), n >= 1, or NaN if any is NaN (torch.max's rule),
/// in xsimd batches.
template <class T>
T max_or_nan(const T* x, std::size_t n);

}  // namespace ad::kernels
