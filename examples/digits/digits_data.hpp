#pragma once
// The 8x8 handwritten digits (UCI optdigits, scikit-learn's copy; see
// data/README.md): a loader for data/digits.bin.gz and a seeded train/test
// split. The file is gzip of 1,797 records of 65 bytes, 64 pixels (0..16,
// row by row) then the label (0..9).

#include <zlib.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <autodiff/autodiff.hpp>
#include <fmt/format.h>
#include <nn/random.hpp>

namespace digits {

constexpr std::size_t image_count = 1797;
constexpr std::size_t side = 8;
constexpr std::size_t classes = 10;

template <class T>
struct Digits {
    ad::Array<T> images;               // (N, 1, 8, 8), pixels scaled to [0, 1]
    std::vector<std::size_t> labels;   // N class indices, 0..9
    std::size_t size() const { return labels.size(); }
};

/// Reads the 1,797 digits. Throws ad::io_error naming the file when it cannot
/// be opened or decompressed, has another size than 1,797 x 65 bytes, or
/// holds a pixel above 16 or a label above 9.
template <class T = float>
Digits<T> load_digits(const std::filesystem::path& file) {
    const std::size_t record = side * side + 1, expected = image_count * record;
    auto fail = [&](const std::string& what) {
        return ad::io_error(fmt::format("load_digits: {}: {}", file.string(), what));
    };
    gzFile in = gzopen(file.string().c_str(), "rb");
    if (!in) throw fail("cannot open the file");
    // One byte more than expected, to tell a longer file from a complete one.
    std::vector<unsigned char> bytes(expected + 1);
    int count = gzread(in, bytes.data(), static_cast<unsigned>(bytes.size()));
    int code = Z_OK;
    std::string message = count < 0 ? gzerror(in, &code) : "";
    gzclose(in);
    if (count < 0) throw fail("cannot decompress it (" + message + ")");
    if (std::size_t(count) != expected) {
        std::string found = std::size_t(count) > expected ? fmt::format("more than {}", expected) : std::to_string(count);
        throw fail(fmt::format("{} bytes after decompression; expected {} ({} images of 64 pixels and a label)", found,
                               expected, image_count));
    }

    Digits<T> out;
    out.images = ad::Array<T>::from_shape({image_count, 1, side, side});
    out.labels.resize(image_count);
    T* pixels = out.images.data();
    for (std::size_t i = 0; i < image_count; ++i) {
        const unsigned char* r = bytes.data() + i * record;
        for (std::size_t p = 0; p < side * side; ++p) {
            if (r[p] > 16) throw fail(fmt::format("image {} has pixel value {}; pixels are 0..16", i, r[p]));
            pixels[i * side * side + p] = T(r[p]) / T(16);
        }
        if (r[side * side] >= classes) throw fail(fmt::format("image {} has label {}; labels are 0..9", i, r[64]));
        out.labels[i] = r[side * side];
    }
    return out;
}

/// The images and labels at `rows`, in that order.
template <class T>
Digits<T> select(const Digits<T>& data, const std::vector<std::size_t>& rows) {
    Digits<T> out;
    out.images = ad::Array<T>::from_shape({rows.size(), 1, side, side});
    const std::size_t n = side * side;
    for (std::size_t k = 0; k < rows.size(); ++k) {
        std::copy_n(data.images.data() + rows[k] * n, n, out.images.data() + k * n);
        out.labels.push_back(data.labels[rows[k]]);
    }
    return out;
}

template <class T>
struct Split {
    Digits<T> train;
    Digits<T> test;
};

/// A seeded random split: `test_count` digits for testing (360 of 1,797 by
/// default, sklearn's test_size=0.2), the rest (1,437) for training. The same
/// seed gives the same split on every platform (nn::shuffle, not std::shuffle).
template <class T>
Split<T> train_test_split(const Digits<T>& data, std::uint64_t seed, std::size_t test_count = 360) {
    if (test_count == 0 || test_count >= data.size()) {
        throw ad::value_error(fmt::format("train_test_split: {} test digits of {}; need 1 to {}", test_count,
                                          data.size(), data.size() - 1));
    }
    std::vector<std::size_t> order(data.size());
    std::iota(order.begin(), order.end(), std::size_t(0));
    std::mt19937_64 rng(seed);
    ad::nn::shuffle(order, rng);
    std::vector<std::size_t> test(order.begin(), order.begin() + long(test_count));
    std::vector<std::size_t> train(order.begin() + long(test_count), order.end());
    return {select(data, train), select(data, test)};
}

}  // namespace digits
