// libFuzzer target: bytes become the files of a checkpoint folder, which
// go through the .npy reader (read_npy, npy_dtype) and into a small model
// (load_parameters, load_checkpoint).
//
// Input: one options byte, then files separated by "<<FILE>>"; a file's first
// byte picks its name from `file_names` ('0' the first), the rest is its content.
// A file named twice keeps its last content.
//
// A finding: a crash, a sanitizer report, a leak, an allocation above
// -malloc_limit_mb, an exception other than the documented ones (the reader
// io_error; load_parameters io_error and shape_error; load_checkpoint also
// value_error, from the optimizer's checks of the restored state), or a load
// that succeeds with values other than what read_npy reads from the files.

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <typeinfo>
#include <vector>

#include "autodiff/errors.hpp"
#include "nn/nn.hpp"

namespace {

namespace fs = std::filesystem;

constexpr std::string_view separator = "<<FILE>>";

const std::vector<std::string> file_names = {
    "manifest.json", "fc.weight.npy", "fc.bias.npy", "running.npy", "extra.npy",
    "optimizer.fc.weight.exp_avg.npy", "optimizer.fc.weight.exp_avg_sq.npy",
    "optimizer.fc.bias.exp_avg.npy", "optimizer.fc.bias.exp_avg_sq.npy",
};

/// A parameter and a buffer: fc.weight (3, 2), fc.bias (3), running (2).
template <class T>
struct Model final : ad::nn::Module<T> {
    std::shared_ptr<ad::nn::Linear<T>> fc;
    std::shared_ptr<ad::Array<T>> running;
    Model() : fc(this->register_module("fc", ad::nn::Linear<T>(2, 3, 7))),
              running(this->register_buffer("running", ad::Array<T>{T(1), T(2)})) {}
};

[[noreturn]] void finding(const char* where, const std::string& what) {
    std::fprintf(stderr, "checkpoint_loader_fuzzer: %s: %s\n", where, what.c_str());
    std::abort();
}

/// Reports any exception but the allowed ones as a finding.
template <class... Allowed, class F>
void expect_only(const char* where, F f) {
    try {
        f();
    } catch (const std::exception& e) {
        if (!(dynamic_cast<const Allowed*>(&e) || ...)) {
            finding(where, std::string(typeid(e).name()) + ": " + e.what());
        }
    } catch (...) {
        finding(where, "an exception of unknown type");
    }
}

/// The checkpoint folder, in a folder of this process's own that is removed at exit.
const fs::path& folder() {
    // Never destroyed: the exit handler reads it after static destructors.
    static const fs::path* path = [] {
        fs::path root = fs::temp_directory_path() / ("tapegrad-checkpoint-fuzz-" + std::to_string(::getpid()));
        fs::remove_all(root);
        std::atexit([] { std::error_code ec; fs::remove_all(folder().parent_path(), ec); });
        return new fs::path(root / "checkpoint");
    }();
    return *path;
}

/// Every parameter and buffer of `model` equals what read_npy reads from its
/// file, bit for bit (NaNs included).
template <class T>
void check_loaded(const Model<T>& model, const fs::path& dir) {
    auto same = [&](const std::string& name, const ad::Array<T>& value) {
        fs::path file = dir / (name + ".npy");
        if (!fs::exists(file)) return;  // not strict: left as it was
        ad::Array<T> read = ad::nn::read_npy<T>(file);
        if (read.shape() != value.shape() || std::memcmp(read.data(), value.data(), read.size() * sizeof(T)) != 0) {
            finding("load", name + " loaded other values than read_npy reads");
        }
    };
    for (const auto& p : model.named_parameters()) same(p.name, p.var.value());
    for (const auto& b : model.named_buffers()) same(b.name, *b.value);
}

template <class T>
void load(const fs::path& dir, bool strict, bool training) {
    Model<T> model;
    if (training) {
        ad::nn::Adam<T> optimizer(model);
        ad::nn::StepLR<T> schedule(optimizer, 2);
        expect_only<ad::io_error, ad::shape_error, ad::value_error>(
            "load_checkpoint", [&] { ad::nn::load_checkpoint(dir, model, optimizer, &schedule); });
        return;
    }
    bool loaded = false;
    expect_only<ad::io_error, ad::shape_error>("load_parameters", [&] {
        ad::nn::LoadReport report = ad::nn::load_parameters(model, dir, {strict});
        if (strict && (!report.missing.empty() || !report.unexpected.empty())) {
            finding("load_parameters", "a strict load reported names instead of throwing");
        }
        loaded = true;
    });
    if (loaded) check_loaded(model, dir);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::uint8_t options = data[0];
    const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);

    const fs::path& dir = folder();
    fs::remove_all(dir);
    fs::create_directories(dir);
    std::vector<fs::path> files;
    for (std::size_t begin = 0; begin <= input.size();) {
        std::size_t end = input.find(separator, begin);
        if (end == std::string_view::npos) end = input.size();
        std::string_view part = input.substr(begin, end - begin);
        begin = end + separator.size();
        if (part.empty()) continue;
        fs::path file = dir / file_names[static_cast<unsigned char>(part[0] - '0') % file_names.size()];
        std::ofstream(file, std::ios::binary | std::ios::trunc).write(part.data() + 1, std::streamsize(part.size() - 1));
        files.push_back(file);
    }

    for (const auto& file : files) {
        if (file.extension() != ".npy") continue;
        expect_only<ad::io_error>("npy_dtype", [&] { ad::nn::npy_dtype(file); });
        expect_only<ad::io_error>("read_npy<float>", [&] { ad::nn::read_npy<float>(file); });
        expect_only<ad::io_error>("read_npy<double>", [&] { ad::nn::read_npy<double>(file); });
    }
    const bool strict = !(options & 1), training = options & 4;
    if (options & 2) {
        load<float>(dir, strict, training);
    } else {
        load<double>(dir, strict, training);
    }
    return 0;
}
