#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "autodiff/kernels.hpp"
#include "support/test_support.hpp"

namespace {

/// The scalar stable form the kernel vectorises: e^-|x| never overflows.
template <class T>
T stable_sigmoid(T x) {
    T e = std::exp(-std::abs(x));
    return x >= 0 ? T(1) / (T(1) + e) : e / (T(1) + e);
}

/// How many representable numbers lie between a and b (0 when equal; subnormals count).
template <class T>
std::uint64_t ulps_between(T a, T b) {
    using Int = std::conditional_t<sizeof(T) == 4, std::int32_t, std::int64_t>;
    auto ordered = [](T v) {
        Int i;
        std::memcpy(&i, &v, sizeof v);
        return i < 0 ? std::int64_t(std::numeric_limits<Int>::min()) - std::int64_t(i) : std::int64_t(i);
    };
    std::int64_t d = ordered(a) - ordered(b);
    return std::uint64_t(d < 0 ? -d : d);
}

/// A grid over [-limit, limit] and the values where sigmoid is hard: signed
/// zeros, the edge of the subnormal range of e^-|x|, |x| up to 1e4, the largest
/// finite numbers and the infinities.
template <class T>
std::vector<T> hard_inputs(T limit, std::size_t steps) {
    std::vector<T> x;
    for (std::size_t i = 0; i <= steps; ++i) x.push_back(-limit + T(2) * limit * T(i) / T(steps));
    const T inf = std::numeric_limits<T>::infinity(), big = std::numeric_limits<T>::max();
    const T tiny = std::numeric_limits<T>::min(), denorm = std::numeric_limits<T>::denorm_min();
    const T edge = -std::log(std::numeric_limits<T>::min());  // e^-edge is the smallest normal number
    for (T v : {T(0), T(1e-30), T(0.5), T(1), T(16), edge - T(1), edge, edge + T(1), T(100), T(103.9), T(104),
                T(745), T(746), T(1e4), big, inf, tiny, denorm}) {
        x.push_back(v);
        x.push_back(-v);
    }
    return x;
}

constexpr std::uint64_t kMaxUlps = 4;

}  // namespace

TEST_CASE_TEMPLATE("kernels: sigmoid matches the stable scalar form within a few ulp, saturated inputs included", T,
                   float, double) {
    const std::vector<T> x = hard_inputs<T>(std::is_same_v<T, float> ? T(110) : T(760), 200001);
    std::vector<T> y(x.size());
    ad::kernels::sigmoid(x.data(), y.data(), x.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
        INFO("x = ", x[i], ", sigmoid = ", y[i], ", scalar = ", stable_sigmoid(x[i]));
        REQUIRE(std::isfinite(y[i]));
        REQUIRE(ulps_between(y[i], stable_sigmoid(x[i])) <= kMaxUlps);
    }
}

TEST_CASE_TEMPLATE("kernels: sigmoid saturates exactly, keeps 1/2 at zero and NaN as NaN", T, float, double) {
    const T inf = std::numeric_limits<T>::infinity();
    const std::vector<T> x = {-inf, T(-1e4), T(-0.0), T(0), T(1e4), inf, std::numeric_limits<T>::quiet_NaN()};
    std::vector<T> y(x.size());
    ad::kernels::sigmoid(x.data(), y.data(), x.size());
    CHECK(y[0] == T(0));
    CHECK(y[1] == T(0));
    CHECK(y[2] == T(0.5));
    CHECK(y[3] == T(0.5));
    CHECK(y[4] == T(1));
    CHECK(y[5] == T(1));
    CHECK(std::isnan(y[6]));
}

TEST_CASE_TEMPLATE("kernels: every length works, the tail gives the same results as whole batches", T, float, double) {
    // Several batches of the widest SIMD width (8 floats with AVX2) and every tail,
    // over the grid and the hard values alike.
    const std::vector<T> x = hard_inputs<T>(T(30), 4);
    const std::size_t most = x.size();
    std::vector<T> g(most), whole(most), whole_backward(most);
    for (std::size_t i = 0; i < most; ++i) g[i] = T(0.5) + T(i % 7) - T(3);
    ad::kernels::sigmoid(x.data(), whole.data(), most);
    ad::kernels::sigmoid_backward(g.data(), whole.data(), whole_backward.data(), most);
    const T sentinel = T(-7);
    for (std::size_t n = 0; n <= most; ++n) {
        for (std::size_t start : {std::size_t(0), most - n}) {  // the tail sits at the front and at the back
            INFO("n = ", n, ", start = ", start);
            std::vector<T> y(n + 3, sentinel), out(n + 3, sentinel);
            ad::kernels::sigmoid(x.data() + start, y.data(), n);
            ad::kernels::sigmoid_backward(g.data() + start, whole.data() + start, out.data(), n);
            for (std::size_t i = 0; i < n; ++i) {
                CHECK(y[i] == whole[start + i]);
                CHECK(out[i] == whole_backward[start + i]);
            }
            for (std::size_t i = n; i < n + 3; ++i) {  // nothing written past the end
                CHECK(y[i] == sentinel);
                CHECK(out[i] == sentinel);
            }
        }
    }
}

TEST_CASE_TEMPLATE("kernels: sigmoid_backward is g y (1 - y) within an ulp or two", T, float, double) {
    const std::vector<T> x = hard_inputs<T>(T(20), 1001);
    std::vector<T> y(x.size()), g(x.size()), out(x.size());
    ad::kernels::sigmoid(x.data(), y.data(), x.size());
    for (std::size_t i = 0; i < g.size(); ++i) g[i] = T(0.25) + T(i % 17) - T(8);
    ad::kernels::sigmoid_backward(g.data(), y.data(), out.data(), out.size());
    for (std::size_t i = 0; i < out.size(); ++i) {
        INFO("g = ", g[i], ", y = ", y[i]);
        CHECK(ulps_between(out[i], g[i] * y[i] * (T(1) - y[i])) <= 2);
    }
}

TEST_CASE_TEMPLATE("kernels: the output may alias an input", T, float, double) {
    const std::vector<T> x = hard_inputs<T>(T(50), 97);
    std::vector<T> y(x.size()), in_place = x;
    ad::kernels::sigmoid(x.data(), y.data(), x.size());
    ad::kernels::sigmoid(in_place.data(), in_place.data(), in_place.size());
    CHECK(in_place == y);

    std::vector<T> g(x.size()), out(x.size());
    for (std::size_t i = 0; i < g.size(); ++i) g[i] = T(1) - T(i % 5);
    ad::kernels::sigmoid_backward(g.data(), y.data(), out.data(), out.size());
    std::vector<T> into_g = g, into_y = y;
    ad::kernels::sigmoid_backward(into_g.data(), y.data(), into_g.data(), into_g.size());
    ad::kernels::sigmoid_backward(g.data(), into_y.data(), into_y.data(), into_y.size());
    CHECK(into_g == out);
    CHECK(into_y == out);
}

TEST_CASE_TEMPLATE("kernels: axpy adds alpha x to y on short and long vectors, touching nothing past n", T, float,
                   double) {
    // Either side of the loop/BLAS switch, and past OpenBLAS's threading size.
    for (std::size_t n : {0, 1, 255, 256, 257, 20001}) {
        std::vector<T> x(n + 1), y(n + 1);
        for (std::size_t i = 0; i <= n; ++i) {
            x[i] = T(0.5) + T(i % 13);
            y[i] = T(3) - T(i % 7);
        }
        const std::vector<T> before = y;
        ad::kernels::axpy(n, T(-0.25), x.data(), y.data());
        INFO("n = ", n);
        for (std::size_t i = 0; i < n; ++i) {
            // Exact: every product and sum here is a multiple of 1/8 well within T's precision.
            REQUIRE(y[i] == before[i] - T(0.25) * x[i]);
        }
        CHECK(y[n] == before[n]);
    }
}

TEST_CASE_TEMPLATE("kernels: all_finite below 16 numbers looks at every position of every length", T, float, double) {
    // Short vectors are tested in two overlapping blocks (or three single
    // numbers): a position that neither block covered would go unseen.
    using limits = std::numeric_limits<T>;
    const T signaling = limits::signaling_NaN(), nan = limits::quiet_NaN(), inf = limits::infinity();
    // The largest exponent below infinity's, the smallest subnormal, and a negative zero are finite.
    const std::vector<T> edges = {limits::max(), -limits::max(), limits::denorm_min(), -limits::denorm_min(), T(-0.0)};
    for (std::size_t n = 1; n < 16; ++n) {
        std::vector<T> x(n);
        for (std::size_t i = 0; i < n; ++i) x[i] = edges[i % edges.size()];
        INFO("n = ", n);
        CHECK(ad::kernels::all_finite(x.data(), n));
        for (std::size_t at = 0; at < n; ++at) {
            for (T bad : {nan, -nan, signaling, inf, -inf}) {
                INFO("x[", at, "] = ", bad);
                const T kept = x[at];
                x[at] = bad;
                CHECK_FALSE(ad::kernels::all_finite(x.data(), n));
                x[at] = kept;
            }
        }
    }
}

TEST_CASE_TEMPLATE("kernels: all_finite finds a NaN or an infinity anywhere, and is not fooled by a sum that overflows",
                   T, float, double) {
    const T nan = std::numeric_limits<T>::quiet_NaN(), inf = std::numeric_limits<T>::infinity();
    const T big = std::numeric_limits<T>::max();
    // Short vectors (on their bits below 16, then the vector loop), and long
    // ones (row sums by GEMV): whole calls of 1024 rows, a last partial
    // call, and a tail shorter than a row.
    for (std::size_t n : {0, 1, 15, 16, 1023, 65535, 70000, 1024 * 1024 + 3 * 1024 + 17}) {
        std::vector<T> x(n);
        for (std::size_t i = 0; i < n; ++i) x[i] = T(0.001) * T(i % 101) - T(0.05);
        INFO("n = ", n);
        CHECK(ad::kernels::all_finite(x.data(), n));
        if (n == 0) continue;
        for (std::size_t at : {std::size_t(0), n / 2, n - 1}) {
            for (T bad : {nan, inf, -inf}) {
                INFO("x[", at, "] = ", bad);
                const T kept = x[at];
                x[at] = bad;
                CHECK_FALSE(ad::kernels::all_finite(x.data(), n));
                x[at] = kept;
            }
        }
        if (n < 2) continue;
        // Finite values whose row sums to infinity: still all finite.
        x[0] = big;
        x[1] = big;
        CHECK(ad::kernels::all_finite(x.data(), n));
        x[1] = -big;
        x[n - 1] = nan;
        CHECK_FALSE(ad::kernels::all_finite(x.data(), n));
    }
}

TEST_CASE_TEMPLATE("kernels: interleaved_sum adds every term once, at every length around the eight lanes", T, float,
                   double) {
    for (std::size_t n = 0; n <= 41; ++n) {
        // Powers of two below 2^20: every partial sum is exact, so any order gives the same total.
        std::vector<T> x(n);
        T expected = 0;
        for (std::size_t k = 0; k < n; ++k) {
            x[k] = T(std::uint32_t(1) << (k % 20)) * (k % 3 == 0 ? T(-1) : T(1));
            expected += x[k];
        }
        INFO("n = " << n);
        CHECK(ad::kernels::interleaved_sum<T>(n, [&x](std::size_t k) { return x[k]; }) == expected);
    }
}

TEST_CASE_TEMPLATE("kernels: max_or_nan finds the largest at any position, and NaN wherever it sits", T, float, double) {
    const T nan = std::numeric_limits<T>::quiet_NaN(), inf = std::numeric_limits<T>::infinity();
    for (std::size_t n = 1; n <= 27; ++n) {
        for (std::size_t at = 0; at < n; ++at) {
            INFO("n = " << n << ", at = " << at);
            std::vector<T> x(n);
            for (std::size_t k = 0; k < n; ++k) x[k] = -T(k % 7) - T(1);
            x[at] = T(5);
            CHECK(ad::kernels::max_or_nan(x.data(), n) == T(5));
            x[at] = inf;
            CHECK(ad::kernels::max_or_nan(x.data(), n) == inf);
            x[at] = nan;
            CHECK(std::isnan(ad::kernels::max_or_nan(x.data(), n)));
        }
    }
    const std::vector<T> all_minus_inf(9, -inf);
    CHECK(ad::kernels::max_or_nan(all_minus_inf.data(), all_minus_inf.size()) == -inf);
}
