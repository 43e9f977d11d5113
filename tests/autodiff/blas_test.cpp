#include <algorithm>
#include <cmath>
#include <cstddef>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "autodiff/blas.hpp"
#include "support/test_support.hpp"

// OpenBLAS's own controls (<cblas.h> cannot share a file with xtensor-blas).
extern "C" void openblas_set_num_threads(int);
extern "C" int openblas_get_num_threads(void);

namespace {

template <class T>
std::vector<T> random_values(std::size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<double> dist(-1, 1);
    std::vector<T> v(n);
    for (auto& x : v) x = T(dist(rng));
    return v;
}

/// Largest |a - b| / (1 + |b|) over two arrays.
template <class T>
double worst_difference(const std::vector<T>& a, const std::vector<T>& b) {
    REQUIRE(a.size() == b.size());
    double worst = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        worst = std::max(worst, std::abs(double(a[i]) - double(b[i])) / (1 + std::abs(double(b[i]))));
    }
    return worst;
}

template <class T>
double tolerance() {
    return sizeof(T) == 4 ? 1e-4 : 1e-12;
}

/// C (m x n) = op(A) op(B) by the triple loop, A stored with rows of lda, B of ldb.
template <class T>
std::vector<T> naive_gemm(bool ta, bool tb, int m, int n, int k, const std::vector<T>& a, int lda,
                          const std::vector<T>& b, int ldb) {
    std::vector<T> c(std::size_t(m) * std::size_t(n));
    for (int i = 0; i < m; ++i) {
        for (int j = 0; j < n; ++j) {
            double sum = 0;
            for (int p = 0; p < k; ++p) {
                const double x = ta ? a[std::size_t(p) * lda + i] : a[std::size_t(i) * lda + p];
                const double y = tb ? b[std::size_t(j) * ldb + p] : b[std::size_t(p) * ldb + j];
                sum += x * y;
            }
            c[std::size_t(i) * n + j] = T(sum);
        }
    }
    return c;
}

/// Puts the process back as it was: the policy by size and the original count.
struct RestoreThreads {
    int original = ad::blas::threads();
    ~RestoreThreads() {
        ad::blas::set_thread_policy(ad::blas::ThreadPolicy::by_size);
        ad::blas::set_threads(original);
    }
};

// Shapes on both sides of the thresholds: m n k (GEMM) or elements (the rest).
struct GemmShape {
    int m, n, k;
};
const GemmShape kSmallGemm{7, 5, 3}, kLargeGemm{200, 170, 130};  // 105 and 4.4M m n k
constexpr int kSmallRows = 9, kLargeRows = 600;                   // GEMV and GER: 81 and 360,000 elements
constexpr int kSmallLength = 100, kLargeLength = 300000;          // AXPY and DOT

}  // namespace

TEST_CASE("blas: the test shapes lie on both sides of the thresholds") {
    CHECK(double(kSmallGemm.m) * kSmallGemm.n * kSmallGemm.k < ad::blas::kGemmOneThreadWork);
    CHECK(double(kLargeGemm.m) * kLargeGemm.n * kLargeGemm.k >= ad::blas::kGemmOneThreadWork);
    CHECK(double(kSmallRows) * kSmallRows < ad::blas::kVectorOneThreadWork);
    CHECK(double(kLargeRows) * kLargeRows >= ad::blas::kVectorOneThreadWork);
    CHECK(double(kSmallLength) < ad::blas::kVectorOneThreadWork);
    CHECK(double(kLargeLength) >= ad::blas::kVectorOneThreadWork);
}

TEST_CASE_TEMPLATE("blas: gemm matches the triple loop below and above the threshold, every transpose", T, float,
                   double) {
    RestoreThreads restore;
    for (auto policy : {ad::blas::ThreadPolicy::by_size, ad::blas::ThreadPolicy::openblas}) {
        ad::blas::set_thread_policy(policy);
        for (const GemmShape& s : {kSmallGemm, kLargeGemm}) {
            for (bool ta : {false, true}) {
                for (bool tb : {false, true}) {
                    CAPTURE(s.m);
                    CAPTURE(ta);
                    CAPTURE(tb);
                    const int lda = ta ? s.m : s.k, ldb = tb ? s.k : s.n;
                    const auto a = random_values<T>(std::size_t(s.m) * s.k, 1);
                    const auto b = random_values<T>(std::size_t(s.k) * s.n, 2);
                    std::vector<T> c(std::size_t(s.m) * s.n, T(0));
                    ad::blas::gemm(ta, tb, s.m, s.n, s.k, T(1), a.data(), lda, b.data(), ldb, T(0), c.data());
                    CHECK(worst_difference(c, naive_gemm(ta, tb, s.m, s.n, s.k, a, lda, b, ldb)) <= tolerance<T>());
                }
            }
        }
    }
}

TEST_CASE_TEMPLATE("blas: gemv, ger, axpy and dot match plain loops below and above the threshold", T, float,
                   double) {
    RestoreThreads restore;
    for (int rows : {kSmallRows, kLargeRows}) {
        CAPTURE(rows);
        const int cols = rows;
        const auto a = random_values<T>(std::size_t(rows) * cols, 3);
        const auto x = random_values<T>(std::size_t(rows), 4);
        // y = A x and y = A^T x: the GEMM reference with a one-column B.
        for (bool ta : {false, true}) {
            std::vector<T> y(std::size_t(rows), T(0));
            ad::blas::gemv(ta, rows, cols, T(1), a.data(), x.data(), T(0), y.data());
            CHECK(worst_difference(y, naive_gemm(ta, false, rows, 1, cols, a, cols, x, 1)) <= tolerance<T>());
        }
        // A + x x^T.
        std::vector<T> outer = a, expected = a;
        ad::blas::ger(rows, cols, x.data(), x.data(), outer.data());
        for (int i = 0; i < rows; ++i) {
            for (int j = 0; j < cols; ++j) expected[std::size_t(i) * cols + j] += x[i] * x[j];
        }
        CHECK(worst_difference(outer, expected) <= tolerance<T>());
    }
    for (int n : {kSmallLength, kLargeLength}) {
        CAPTURE(n);
        const auto x = random_values<T>(std::size_t(n), 5);
        auto y = random_values<T>(std::size_t(n), 6);
        double dot = 0;
        for (int i = 0; i < n; ++i) dot += double(x[i]) * double(y[i]);
        CHECK(std::abs(double(ad::blas::dot(n, x.data(), y.data())) - dot) <= tolerance<T>() * (1 + std::abs(dot)) * 10);
        std::vector<T> expected = y;
        for (int i = 0; i < n; ++i) expected[i] += T(0.5) * x[i];
        ad::blas::axpy(n, T(0.5), x.data(), y.data());
        CHECK(worst_difference(y, expected) <= tolerance<T>());
    }
}

TEST_CASE("blas: small calls leave OpenBLAS on one thread, large ones on the original count") {
    RestoreThreads restore;
    const int original = restore.original;
    const auto a = random_values<float>(std::size_t(kLargeGemm.m) * kLargeGemm.k, 7);
    const auto b = random_values<float>(std::size_t(kLargeGemm.k) * kLargeGemm.n, 8);
    std::vector<float> c(std::size_t(kLargeGemm.m) * kLargeGemm.n);
    auto small_gemm = [&] {
        ad::blas::gemm(false, false, kSmallGemm.m, kSmallGemm.n, kSmallGemm.k, 1.0f, a.data(), kSmallGemm.k, b.data(),
                       kSmallGemm.n, 0.0f, c.data());
    };
    auto large_gemm = [&] {
        ad::blas::gemm(false, false, kLargeGemm.m, kLargeGemm.n, kLargeGemm.k, 1.0f, a.data(), kLargeGemm.k, b.data(),
                       kLargeGemm.n, 0.0f, c.data());
    };
    const auto v = random_values<float>(std::size_t(kLargeLength), 9);
    std::vector<float> w(static_cast<std::size_t>(kLargeLength), 0.0f);

    SUBCASE("by size") {
        ad::blas::set_thread_policy(ad::blas::ThreadPolicy::by_size);
        large_gemm();
        CHECK(openblas_get_num_threads() == original);
        small_gemm();
        CHECK(openblas_get_num_threads() == 1);
        ad::blas::axpy(kLargeLength, 1.0f, v.data(), w.data());
        CHECK(openblas_get_num_threads() == original);
        ad::blas::axpy(kSmallLength, 1.0f, v.data(), w.data());
        CHECK(openblas_get_num_threads() == 1);
        large_gemm();
        CHECK(openblas_get_num_threads() == original);
        CHECK(ad::blas::threads() == original);
    }
    SUBCASE("OpenBLAS's own choice") {
        ad::blas::set_thread_policy(ad::blas::ThreadPolicy::openblas);
        ad::blas::set_threads(original);
        small_gemm();
        CHECK(openblas_get_num_threads() == original);
        large_gemm();
        CHECK(openblas_get_num_threads() == original);
    }
    SUBCASE("a count the program sets itself is the one large calls use") {
        ad::blas::set_thread_policy(ad::blas::ThreadPolicy::by_size);
        large_gemm();
        // Straight through OpenBLAS, after a large call: the engine sees the change.
        openblas_set_num_threads(3);
        small_gemm();
        CHECK(openblas_get_num_threads() == 1);
        large_gemm();
        CHECK(openblas_get_num_threads() == 3);
        CHECK(ad::blas::threads() == 3);
        // Through the engine, after a small call (where 1 set straight through OpenBLAS is ambiguous).
        small_gemm();
        ad::blas::set_threads(1);
        large_gemm();
        CHECK(openblas_get_num_threads() == 1);
        ad::blas::set_threads(2);
        small_gemm();
        CHECK(openblas_get_num_threads() == 1);
        large_gemm();
        CHECK(openblas_get_num_threads() == 2);
    }
    SUBCASE("a count below one is refused") {
        CHECK_THROWS_AS(ad::blas::set_threads(0), std::invalid_argument);
    }
}

TEST_CASE("blas: small and large products from two threads at once give the loops' results; the count survives") {
    RestoreThreads restore;
    ad::blas::set_thread_policy(ad::blas::ThreadPolicy::by_size);
    const GemmShape s = kLargeGemm;
    const auto a = random_values<double>(std::size_t(s.m) * s.k, 10);
    const auto b = random_values<double>(std::size_t(s.k) * s.n, 11);
    const auto expected_large = naive_gemm(false, false, s.m, s.n, s.k, a, s.k, b, s.n);
    const auto expected_small = naive_gemm(false, false, kSmallGemm.m, kSmallGemm.n, kSmallGemm.k, a, kSmallGemm.k, b,
                                           kSmallGemm.n);
    // Each thread flips OpenBLAS's count the other way; OpenBLAS reads it as a call starts.
    auto run = [&](const GemmShape& shape, const std::vector<double>& expected, double& worst) {
        std::vector<double> c(std::size_t(shape.m) * shape.n);
        for (int i = 0; i < 20; ++i) {
            ad::blas::gemm(false, false, shape.m, shape.n, shape.k, 1.0, a.data(), shape.k, b.data(), shape.n, 0.0,
                           c.data());
            worst = std::max(worst, worst_difference(c, expected));
        }
    };
    double worst_large = 0, worst_small = 0;
    std::thread large([&] { run(s, expected_large, worst_large); });
    std::thread small([&] {
        for (int i = 0; i < 50; ++i) run(kSmallGemm, expected_small, worst_small);
    });
    large.join();
    small.join();
    CHECK(worst_large <= tolerance<double>());
    CHECK(worst_small <= tolerance<double>());
    std::vector<double> c(std::size_t(s.m) * s.n);
    ad::blas::gemm(false, false, s.m, s.n, s.k, 1.0, a.data(), s.k, b.data(), s.n, 0.0, c.data());
    CHECK(openblas_get_num_threads() == restore.original);
    CHECK(ad::blas::threads() == restore.original);
}
