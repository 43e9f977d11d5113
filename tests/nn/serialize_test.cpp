#include "nn_test_support.hpp"

#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <random>
#include <string>
#include <thread>

#include <fmt/format.h>
#include <xtensor/xnpy.hpp>

namespace {

using namespace ad;
namespace fs = std::filesystem;


std::string message_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const std::exception& e) {
        return e.what();
    }
    return "(no exception)";
}

void write_bytes(const fs::path& file, const std::string& bytes) {
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_bytes(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

/// An .npy file's bytes built by hand: format `major`.0, the header dict as
/// given (padded with spaces and a newline), then `data`.
std::string npy_bytes(const std::string& dict, const std::string& data, int major = 1) {
    std::string header = dict;
    std::size_t preamble = major == 1 ? 10 : 12;
    while ((preamble + header.size() + 1) % 64 != 0) header += ' ';
    header += '\n';
    std::string bytes("\x93NUMPY", 6);
    bytes += char(major);
    bytes += char(0);
    for (std::size_t i = 0; i < (major == 1 ? 2u : 4u); ++i) bytes += char((header.size() >> (8 * i)) & 0xff);
    return bytes + header + data;
}

std::string doubles(std::initializer_list<double> values) {
    std::string data;
    for (double v : values) data.append(reinterpret_cast<const char*>(&v), sizeof v);
    return data;
}

/// Every entry of `folder`'s parent whose name starts with folder's name: the
/// checkpoint and whatever a save left beside it.
std::vector<std::string> siblings(const fs::path& folder) {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(folder.parent_path())) {
        std::string name = entry.path().filename().string();
        if (name.rfind(folder.filename().string(), 0) == 0) names.push_back(name);
    }
    std::sort(names.begin(), names.end());
    return names;
}

TEST_CASE("save_parameters / load_parameters: a round trip restores every parameter exactly, in numpy's format") {
    test::TemporaryFolder folder("roundtrip");
    nn::MLP<double> trained({3, 4, 2}, nn::Activation::tanh, 1);
    nn::save_parameters(trained, folder.path / "checkpoint");
    for (const char* name : {"layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias"}) {
        CHECK(fs::exists(folder.path / "checkpoint" / (std::string(name) + ".npy")));
    }
    CHECK(fs::exists(folder.path / "checkpoint" / "manifest.json"));
    CHECK(siblings(folder.path / "checkpoint") == std::vector<std::string>{"checkpoint"});
    // numpy's format: xtensor's reader (an independent one) reads it, dtype float64 little-endian.
    CHECK(nn::npy_dtype(folder.path / "checkpoint" / "layers.0.weight.npy") == "<f8");
    CHECK(xt::load_npy<double>((folder.path / "checkpoint" / "layers.2.weight.npy").string()) ==
          trained.linear(1).weight().value());
    CHECK(nn::read_npy<double>(folder.path / "checkpoint" / "layers.2.weight.npy") == trained.linear(1).weight().value());

    nn::MLP<double> fresh({3, 4, 2}, nn::Activation::tanh, 2);
    CHECK(fresh.linear(0).weight().value() != trained.linear(0).weight().value());
    const double* storage = fresh.linear(0).weight().value().data();
    nn::LoadReport report = nn::load_parameters(fresh, folder.path / "checkpoint");
    CHECK(report.missing.empty());
    CHECK(report.unexpected.empty());
    CHECK(fresh.linear(0).weight().value().data() == storage);  // loaded in place
    auto a = trained.named_parameters(), b = fresh.named_parameters();
    for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i].var.value() == b[i].var.value());

    nn::MLP<float> single({3, 4, 2}, nn::Activation::tanh, 1);
    nn::save_parameters(single, folder.path / "float");
    CHECK(nn::npy_dtype(folder.path / "float" / "layers.0.bias.npy") == "<f4");
    nn::MLP<float> single2({3, 4, 2}, nn::Activation::tanh, 5);
    nn::load_parameters(single2, folder.path / "float");
    CHECK(single2.linear(1).weight().value() == single.linear(1).weight().value());
}

/// A module with a buffer beside its parameters, as batch norm keeps running statistics.
struct WithBuffer final : nn::Module<double> {
    std::shared_ptr<nn::Linear<double>> fc;
    std::shared_ptr<Array<double>> running;
    explicit WithBuffer(std::uint64_t seed)
        : fc(register_module("fc", nn::Linear<double>(2, 3, seed))),
          running(register_buffer("running", Array<double>{double(seed), 2.0 * double(seed)})) {}
};

TEST_CASE("save_parameters / load_parameters: buffers are saved and loaded by name, with the parameters") {
    test::TemporaryFolder folder("buffers");
    WithBuffer saved(3), fresh(4);
    nn::save_parameters(saved, folder.path / "checkpoint");
    CHECK(fs::exists(folder.path / "checkpoint" / "running.npy"));
    CHECK(fs::exists(folder.path / "checkpoint" / "fc.weight.npy"));
    const double* storage = fresh.running->data();
    nn::load_parameters(fresh, folder.path / "checkpoint");
    CHECK(*fresh.running == Array<double>{3.0, 6.0});
    CHECK(fresh.running->data() == storage);  // in place
    CHECK(fresh.fc->weight().value() == saved.fc->weight().value());

    // A buffer of another shape is a shape_error that names it and loads nothing.
    *saved.running = Array<double>{1.0, 2.0, 3.0};
    nn::save_parameters(saved, folder.path / "other");
    WithBuffer third(5);
    auto before = third.fc->weight().value();
    CHECK_THROWS_AS(nn::load_parameters(third, folder.path / "other"), shape_error);
    CHECK(message_of([&] { nn::load_parameters(third, folder.path / "other"); })
              .rfind("load_parameters: buffer 'running' has shape (2,) but ", 0) == 0);
    CHECK(third.fc->weight().value() == before);
    CHECK(*third.running == Array<double>{5.0, 10.0});
}

TEST_CASE("read_npy reads what numpy writes: 0-d, size-0 and 1-D shapes, format 2.0, float32") {
    test::TemporaryFolder folder("npy_shapes");
    xt::dump_npy((folder.path / "a.npy").string(), Array<double>(xt::zeros<double>({0, 3})));
    CHECK(nn::read_npy<double>(folder.path / "a.npy").shape() == Array<double>::shape_type{0, 3});
    write_bytes(folder.path / "b.npy", npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (), }", doubles({2.5})));
    CHECK(nn::read_npy<double>(folder.path / "b.npy")() == 2.5);
    write_bytes(folder.path / "c.npy",
                npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", doubles({1, -1}), 2));
    CHECK(nn::read_npy<double>(folder.path / "c.npy") == Array<double>{1, -1});
    xt::dump_npy((folder.path / "d.npy").string(), Array<float>{{1.5f, 2.5f}});
    CHECK(nn::read_npy<float>(folder.path / "d.npy") == Array<float>{{1.5f, 2.5f}});
}

TEST_CASE("read_npy: a file that is not what it claims is an io_error naming the file and the problem") {
    test::TemporaryFolder folder("npy_bad");
    const fs::path file = folder.path / "bad.npy";
    const std::string good_dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }";
    const std::string six = doubles({1, 2, 3, 4, 5, 6});
    const std::string good = npy_bytes(good_dict, six);
    write_bytes(file, good);
    REQUIRE(nn::read_npy<double>(file) == Array<double>{{1, 2, 3}, {4, 5, 6}});

    struct Bad {
        const char* what;
        std::string bytes;
        std::string message;
    };
    std::string huge_v2("\x93NUMPY\x02\x00\xf0\xff\xff\xff", 12);  // a 4 GiB header claimed by a 12-byte file
    std::string huge_v1("\x93NUMPY\x01\x00\xff\xff{'de", 14);
    huge_v1 += "sc'";
    const Bad cases[] = {
        {"cut short by 8 bytes", good.substr(0, good.size() - 8),
         "is truncated: shape (2, 3) of <f8 needs 48 bytes of data, the file holds 40"},
        {"its header alone", good.substr(0, good.size() - six.size()), "is truncated"},
        {"trailing bytes", good + "junk", "has 4 bytes after the 48 bytes its shape (2, 3) of <f8 needs"},
        {"a 4 GiB header in 12 bytes", huge_v2, "claims a header of 4294967280 bytes, but the file holds 12"},
        {"a 64 KiB header in 17 bytes", huge_v1, "claims a header of 65535 bytes, but the file holds 17"},
        {"a negative extent", npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (-1, 3), }", six),
         "declares a negative extent"},
        {"an overflowing shape",
         npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904, 4), }", six),
         "too large for this machine"},
        {"Fortran order", npy_bytes("{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }", six), "Fortran order"},
        {"another dtype", npy_bytes("{'descr': '<i8', 'fortran_order': False, 'shape': (2, 3), }", six),
         "holds dtype <i8, <f8 is needed"},
        {"an unknown dtype", npy_bytes("{'descr': '<c16', 'fortran_order': False, 'shape': (3,), }", six),
         "holds dtype '<c16', which tapegrad does not read"},
        {"format 4.0", npy_bytes(good_dict, six, 4), "has .npy format version 4.0"},
        {"no magic", "hello, world", "is not an .npy file"},
        {"five bytes", "\x93NUM", "is not an .npy file (4 bytes)"},
        {"no shape", npy_bytes("{'descr': '<f8', 'fortran_order': False, }", six), "lacks"},
        {"an unknown key", npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), 'x': 1}", six),
         "unknown header key 'x'"},
        {"an unterminated dict", npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3", six),
         "ends early"},
    };
    for (const auto& c : cases) {
        INFO(c.what);
        write_bytes(file, c.bytes);
        std::string m = message_of([&] { nn::read_npy<double>(file); });
        CHECK(m.rfind("read_npy: " + file.string() + " ", 0) == 0);
        CHECK(m.find(c.message) != std::string::npos);
        CHECK_THROWS_AS(nn::read_npy<double>(file), io_error);
    }
    std::string absent = message_of([&] { nn::read_npy<double>(folder.path / "absent.npy"); });
    CHECK(absent.rfind("read_npy: " + (folder.path / "absent.npy").string() + " cannot be opened", 0) == 0);
    CHECK_THROWS_AS(nn::read_npy<double>(folder.path / "absent.npy"), io_error);
}

TEST_CASE("load_parameters: missing file, wrong shape, wrong dtype, a file that is not .npy: errors that change nothing") {
    test::TemporaryFolder folder("bad");
    nn::MLP<double> source({2, 3, 1}, nn::Activation::sigmoid, 1);
    const fs::path checkpoint = folder.path / "ckpt";
    nn::save_parameters(source, checkpoint);
    nn::MLP<double> model({2, 3, 1}, nn::Activation::sigmoid, 9);
    auto before = test::snapshot(model);

    SUBCASE("missing file (strict)") {
        fs::remove(checkpoint / "manifest.json");
        fs::remove(checkpoint / "layers.2.bias.npy");
        std::string m = message_of([&] { nn::load_parameters(model, checkpoint); });
        CHECK(m.rfind("load_parameters: the checkpoint " + checkpoint.string() + " does not match the model", 0) == 0);
        CHECK(m.find("missing from it: layers.2.bias (shape (1,))") != std::string::npos);
        CHECK_THROWS_AS(nn::load_parameters(model, checkpoint), io_error);
    }
    SUBCASE("a checkpoint of another architecture: wrong shape") {
        nn::MLP<double> other({2, 3, 3}, nn::Activation::sigmoid, 1);
        nn::save_parameters(other, checkpoint);
        std::string m = message_of([&] { nn::load_parameters(model, checkpoint); });
        CHECK(m.find("parameter 'layers.2.weight' has shape (1, 3) but") != std::string::npos);
        CHECK(m.find("holds shape (3, 3)") != std::string::npos);
        CHECK_THROWS_AS(nn::load_parameters(model, checkpoint), shape_error);
    }
    SUBCASE("wrong dtype (no manifest)") {
        fs::remove(checkpoint / "manifest.json");
        xt::dump_npy((checkpoint / "layers.2.bias.npy").string(), Array<float>{1.0f});
        CHECK_THROWS_WITH_AS(nn::load_parameters(model, checkpoint), doctest::Contains("holds dtype <f4, <f8 is needed"),
                             io_error);
    }
    SUBCASE("not an npy file") {
        fs::remove(checkpoint / "manifest.json");
        std::ofstream(checkpoint / "layers.0.bias.npy") << "hello";
        CHECK_THROWS_WITH_AS(nn::load_parameters(model, checkpoint), doctest::Contains("layers.0.bias.npy is not an .npy file"),
                             io_error);
    }
    SUBCASE("not a folder") {
        CHECK_THROWS_WITH_AS(nn::load_parameters(model, folder.path / "absent"), doctest::Contains("is not a folder"),
                             io_error);
    }
    // The earlier, valid files were read but not assigned.
    CHECK(test::unchanged(model, before));
}

TEST_CASE("load_parameters: the manifest's checksums and sizes catch a changed or damaged file") {
    test::TemporaryFolder folder("manifest");
    nn::MLP<double> source({2, 3, 1}, nn::Activation::sigmoid, 1);
    const fs::path checkpoint = folder.path / "ckpt";
    nn::save_parameters(source, checkpoint);
    nn::MLP<double> model({2, 3, 1}, nn::Activation::sigmoid, 9);
    auto before = test::snapshot(model);

    SUBCASE("one byte of data flipped") {
        std::string bytes = read_bytes(checkpoint / "layers.0.weight.npy");
        bytes[bytes.size() - 3] ^= 0x10;
        write_bytes(checkpoint / "layers.0.weight.npy", bytes);
        CHECK_THROWS_WITH_AS(nn::load_parameters(model, checkpoint),
                             doctest::Contains("the manifest says"), io_error);
        CHECK(message_of([&] { nn::load_parameters(model, checkpoint); }).find("was changed or damaged") != std::string::npos);
    }
    SUBCASE("a valid .npy file of another shape put in its place") {
        xt::dump_npy((checkpoint / "layers.2.weight.npy").string(), Array<double>(xt::zeros<double>({3, 1})));
        CHECK_THROWS_WITH_AS(nn::load_parameters(model, checkpoint),
                             doctest::Contains("does not match the manifest: <f8 (3, 1)"), io_error);
    }
    SUBCASE("a malformed manifest") {
        write_bytes(checkpoint / "manifest.json", "{\"format\": \"tapegrad-checkpoint\", \"version\": 1, \"arrays\": [");
        CHECK_THROWS_WITH_AS(nn::load_parameters(model, checkpoint), doctest::Contains("manifest.json is malformed"),
                             io_error);
    }
    SUBCASE("a manifest listing a name that cannot be a file name") {
        // Found by tests/fuzz/checkpoint_loader_fuzzer's format: a value_error escaped.
        for (const char* name : {"a/b", "..", ""}) {
            write_bytes(checkpoint / "manifest.json",
                        fmt::format("{{\"format\": \"tapegrad-checkpoint\", \"version\": 1, \"arrays\": [{{\"name\": \"{0}\", "
                                    "\"file\": \"{0}.npy\", \"dtype\": \"<f8\", \"shape\": [2], \"bytes\": 144, "
                                    "\"fnv1a64\": \"0\"}}]}}",
                                    name));
            const std::string expected = fmt::format("lists '{}', which cannot be a file name", name);
            CHECK_THROWS_WITH_AS(nn::load_parameters(model, checkpoint, {/*strict=*/false}),
                                 doctest::Contains(expected.c_str()), io_error);
        }
    }
    SUBCASE("a manifest that is not tapegrad's") {
        write_bytes(checkpoint / "manifest.json", "{\"format\": \"other\", \"version\": 1, \"arrays\": []}");
        CHECK_THROWS_WITH_AS(nn::load_parameters(model, checkpoint),
                             doctest::Contains("is not a tapegrad checkpoint manifest"), io_error);
    }
    CHECK(test::unchanged(model, before));
}

TEST_CASE("load_parameters: strict names by default; strict = false loads what matches and reports the rest") {
    test::TemporaryFolder folder("strict");
    nn::MLP<double> larger({2, 3, 3, 1}, nn::Activation::tanh, 1);
    nn::MLP<double> smaller({2, 3, 1}, nn::Activation::tanh, 2);
    const fs::path checkpoint = folder.path / "ckpt";
    nn::save_parameters(larger, checkpoint);
    auto before = test::snapshot(smaller);
    std::string m = message_of([&] { nn::load_parameters(smaller, checkpoint); });
    CHECK(m.find("not in the model: layers.4.bias, layers.4.weight") != std::string::npos);
    CHECK_THROWS_AS(nn::load_parameters(smaller, checkpoint), io_error);
    CHECK(test::unchanged(smaller, before));

    nn::MLP<double> first_layer_only({2, 3, 3}, nn::Activation::tanh, 3);
    nn::MLP<double> target({2, 3, 3, 1}, nn::Activation::tanh, 4);
    nn::save_parameters(first_layer_only, folder.path / "partial");
    nn::LoadReport report = nn::load_parameters(target, folder.path / "partial", {.strict = false});
    CHECK(report.unexpected.empty());
    CHECK(report.missing == std::vector<std::string>{"layers.4.weight (shape (1, 3))", "layers.4.bias (shape (1,))"});
    CHECK(target.linear(0).weight().value() == first_layer_only.linear(0).weight().value());
    CHECK(target.linear(0).bias().value() == first_layer_only.linear(0).bias().value());
    CHECK(target.linear(1).weight().value() == first_layer_only.linear(1).weight().value());
}

TEST_CASE("save_parameters: a save replaces the whole checkpoint, and never a folder of other files") {
    test::TemporaryFolder folder("replace");
    const fs::path checkpoint = folder.path / "ckpt";
    nn::MLP<double> deep({2, 3, 3, 1}, nn::Activation::tanh, 1);
    nn::MLP<double> shallow({2, 3, 1}, nn::Activation::tanh, 2);
    nn::save_parameters(deep, checkpoint);
    nn::save_parameters(shallow, checkpoint);
    CHECK(!fs::exists(checkpoint / "layers.4.weight.npy"));  // the deeper model's files went with it
    CHECK(siblings(checkpoint) == std::vector<std::string>{"ckpt"});
    nn::MLP<double> reloaded({2, 3, 1}, nn::Activation::tanh, 3);
    nn::load_parameters(reloaded, checkpoint);
    CHECK(reloaded.linear(1).weight().value() == shallow.linear(1).weight().value());

    const fs::path documents = folder.path / "documents";
    fs::create_directories(documents);
    std::ofstream(documents / "notes.txt") << "precious";
    CHECK_THROWS_WITH_AS(nn::save_parameters(shallow, documents), doctest::Contains("is a folder of other files"),
                         io_error);
    CHECK(read_bytes(documents / "notes.txt") == "precious");

    std::ofstream(folder.path / "a_file") << "not a folder";
    CHECK_THROWS_AS(nn::save_parameters(shallow, folder.path / "a_file" / "sub"), io_error);
    CHECK_THROWS_WITH_AS(nn::save_parameters(shallow, folder.path / "a_file"), doctest::Contains("is not a folder"),
                         io_error);

    // A folder of .npy files (numpy's, or a checkpoint without a manifest) may be replaced.
    fs::remove(checkpoint / "manifest.json");
    nn::save_parameters(deep, checkpoint);
    CHECK(fs::exists(checkpoint / "manifest.json"));
}

TEST_CASE("save_parameters: a save that fails (a file size limit, as a full disk) is an io_error and keeps the old checkpoint") {
    test::TemporaryFolder folder("fsize");
    const fs::path checkpoint = folder.path / "ckpt";
    nn::MLP<double> old_model({64, 64, 1}, nn::Activation::tanh, 1);
    nn::save_parameters(old_model, checkpoint);
    nn::MLP<double> new_model({64, 64, 1}, nn::Activation::tanh, 2);

    // 16 KiB: the first weight (32 KiB of data) cannot be written whole.
    struct rlimit saved {};
    REQUIRE(getrlimit(RLIMIT_FSIZE, &saved) == 0);
    auto* previous_handler = signal(SIGXFSZ, SIG_IGN);
    struct rlimit limited = saved;
    limited.rlim_cur = 16 * 1024;
    REQUIRE(setrlimit(RLIMIT_FSIZE, &limited) == 0);
    std::string m = message_of([&] { nn::save_parameters(new_model, checkpoint); });
    setrlimit(RLIMIT_FSIZE, &saved);
    signal(SIGXFSZ, previous_handler);

    CHECK(m.rfind("save_parameters: cannot write ", 0) == 0);
    CHECK(m.find("layers.0.weight.npy") != std::string::npos);
    CHECK(m.find(std::strerror(EFBIG)) != std::string::npos);
    CHECK(siblings(checkpoint) == std::vector<std::string>{"ckpt"});  // the partial save is gone
    nn::MLP<double> reloaded({64, 64, 1}, nn::Activation::tanh, 3);
    nn::load_parameters(reloaded, checkpoint);
    auto a = old_model.named_parameters(), b = reloaded.named_parameters();
    for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i].var.value() == b[i].var.value());
}

TEST_CASE("save_parameters: a read-only folder is an io_error that keeps the old checkpoint") {
    if (geteuid() == 0) {
        // Permissions do not bind root: the case is the file size limit's above.
        MESSAGE("running as root: a read-only folder does not stop root's writes; case not run");
        return;
    }
    test::TemporaryFolder folder("readonly");
    const fs::path parent = folder.path / "ro";
    nn::MLP<double> model({2, 2, 1}, nn::Activation::tanh, 1);
    nn::save_parameters(model, parent / "ckpt");
    fs::permissions(parent, fs::perms::owner_read | fs::perms::owner_exec);
    nn::MLP<double> other({2, 2, 1}, nn::Activation::tanh, 2);
    CHECK_THROWS_AS(nn::save_parameters(other, parent / "ckpt"), io_error);
    fs::permissions(parent, fs::perms::owner_all);
    nn::MLP<double> reloaded({2, 2, 1}, nn::Activation::tanh, 3);
    nn::load_parameters(reloaded, parent / "ckpt");
    CHECK(reloaded.linear(0).weight().value() == model.linear(0).weight().value());
}

TEST_CASE("save_parameters: killed at random instants, it leaves the old or the new checkpoint whole, and at most one sibling") {
    test::TemporaryFolder folder("killed");
    const fs::path checkpoint = folder.path / "ckpt";
    std::mt19937 rng(7);
    using Clock = std::chrono::steady_clock;
    int whole = 0;
    for (int round = 0; round < 100; ++round) {
        // The writer's stdout is a pipe: it prints a line after each save it completes.
        int pipe_fds[2];
        REQUIRE(pipe(pipe_fds) == 0);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
        posix_spawn_file_actions_addclose(&actions, pipe_fds[0]);
        std::string folder_arg = checkpoint.string();
        char* argv[] = {const_cast<char*>(TAPEGRAD_CHECKPOINT_WRITER), folder_arg.data(), nullptr};
        pid_t pid = 0;
        REQUIRE(posix_spawn(&pid, TAPEGRAD_CHECKPOINT_WRITER, &actions, nullptr, argv, environ) == 0);
        posix_spawn_file_actions_destroy(&actions);
        close(pipe_fds[1]);
        FILE* saves = fdopen(pipe_fds[0], "r");
        REQUIRE(saves != nullptr);

        // Let it complete 1 to 3 saves, timing the last, then kill it somewhere
        // within the next one and a half saves: before, during or after a rename.
        const int completed = 1 + int(rng() % 3);
        char line[64];
        Clock::time_point previous = Clock::now(), last = previous;
        for (int i = 0; i < completed; ++i) {
            REQUIRE(std::fgets(line, sizeof line, saves) != nullptr);
            previous = last;
            last = Clock::now();
        }
        const auto save_time = std::chrono::duration_cast<std::chrono::microseconds>(last - previous);
        const auto delay = std::chrono::microseconds(rng() % (1 + 3 * save_time.count() / 2));
        std::this_thread::sleep_for(delay);
        kill(pid, SIGKILL);
        int status = 0;
        REQUIRE(waitpid(pid, &status, 0) == pid);
        std::fclose(saves);
        CHECK(WIFSIGNALED(status));  // killed while saving, not stopped by an error

        auto names = siblings(checkpoint);
        INFO("round ", round, ": ", names.size(), " entries beside the checkpoint, killed ", delay.count(),
             " us after save ", completed, " (a save takes about ", save_time.count(), " us)");
        CHECK(names.size() <= 2);
        REQUIRE(fs::exists(checkpoint));
        nn::MLP<double> model({128, 128, 128, 64}, nn::Activation::tanh, 1);
        nn::load_parameters(model, checkpoint);
        double k = model.named_parameters().front().var.value().flat(0);
        bool one_version = true;
        for (const auto& p : model.named_parameters()) one_version = one_version && xt::all(xt::equal(p.var.value(), k));
        CHECK(one_version);
        CHECK(k >= completed);  // the completed saves are never lost
        whole += one_version;
    }
    CHECK(whole == 100);
}

TEST_CASE("assign_parameters: by name, all or nothing") {
    nn::MLP<double> model({2, 2, 1}, nn::Activation::sigmoid, 1);
    auto before = test::snapshot(model);
    std::map<std::string, Array<double>> values{
        {"layers.0.weight", Array<double>{{1, 2}, {3, 4}}},
        {"layers.0.bias", Array<double>{5, 6}},
        {"layers.2.weight", Array<double>{{7, 8}}},
    };
    CHECK_THROWS_AS(nn::assign_parameters(model, values), value_error);  // layers.2.bias missing
    CHECK(test::unchanged(model, before));
    values["layers.2.bias"] = Array<double>{9, 9};
    CHECK_THROWS_AS(nn::assign_parameters(model, values), shape_error);
    CHECK(test::unchanged(model, before));
    values["layers.2.bias"] = Array<double>{9};
    values["layers.4.weight"] = Array<double>{1};
    CHECK_THROWS_AS(nn::assign_parameters(model, values), value_error);  // a name the model lacks
    CHECK(test::unchanged(model, before));
    values.erase("layers.4.weight");
    nn::assign_parameters(model, values);
    CHECK(model.linear(0).weight().value() == Array<double>{{1, 2}, {3, 4}});
    CHECK(model.linear(1).bias().value() == Array<double>{9});
}

}  // namespace

namespace {

using namespace ad;
namespace fs = std::filesystem;

/// A classification run to stop and resume: model, AdamW over two groups
/// (no decay on biases), a warmup-cosine schedule and shuffled labelled data.
struct Run {
    nn::MLP<double> model{{3, 8, 4}, nn::Activation::tanh, 11};
    nn::AdamW<double> optimizer{std::vector<nn::ParameterGroup<double>>{
                                    {{model.named_parameters()[0], model.named_parameters()[2]}, {}, {}},
                                    {{model.named_parameters()[1], model.named_parameters()[3]}, 3e-2, 0.0}},
                                [] {
                                    nn::AdamWOptions o;
                                    o.learning_rate = 5e-2;
                                    return o;
                                }()};
    nn::WarmupCosineLR<double> schedule{optimizer, 3, 12};
    nn::DataLoader<double> loader;
    std::size_t step = 0;

    static nn::DataLoader<double> data() {
        Array<double> x = Array<double>::from_shape({20, 3});
        std::vector<std::size_t> labels;
        for (std::size_t i = 0; i < 20; ++i) {
            for (std::size_t j = 0; j < 3; ++j) x(i, j) = std::sin(double(7 * i + 3 * j));
            labels.push_back(i % 4);
        }
        return nn::DataLoader<double>(x, labels, 8, true, 5);
    }
    Run() : loader(data()) {}

    void epoch() {
        for (auto& batch : loader.epoch()) {
            Tape tape;
            optimizer.zero_grad();
            nn::softmax_cross_entropy(model(batch.inputs), batch.labels).backward();
            nn::clip_grad_norm(model, 1.0);
            optimizer.step();
            schedule.step();
            ++step;
        }
    }
};

TEST_CASE("save_checkpoint / load_checkpoint: stopping and resuming gives bitwise the parameters of not stopping") {
    test::TemporaryFolder folder("resume");
    Run straight;
    for (int e = 0; e < 4; ++e) straight.epoch();

    Run first;
    first.epoch();
    first.epoch();
    nn::save_checkpoint(folder.path / "ckpt", first.model, first.optimizer, first.step, &first.schedule);
    CHECK(fs::exists(folder.path / "ckpt" / "optimizer.layers.0.weight.exp_avg_sq.npy"));

    Run resumed;  // a new process: fresh objects, other state
    std::size_t step = nn::load_checkpoint(folder.path / "ckpt", resumed.model, resumed.optimizer, &resumed.schedule);
    CHECK(step == 6);
    CHECK(resumed.optimizer.steps() == 6);
    CHECK(resumed.schedule.last_step() == 6);
    CHECK(resumed.optimizer.learning_rate(1) == first.optimizer.learning_rate(1));
    resumed.step = step;
    resumed.loader.set_epoch(step / resumed.loader.batches_per_epoch());
    resumed.epoch();
    resumed.epoch();

    auto a = straight.model.named_parameters(), b = resumed.model.named_parameters();
    REQUIRE(a.size() == b.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
        INFO(a[i].name);
        CHECK(xt::all(xt::equal(a[i].var.value(), b[i].var.value())));  // bitwise, not approximately
    }
    auto sa = straight.optimizer.state_arrays(), sb = resumed.optimizer.state_arrays();
    for (std::size_t i = 0; i < sa.size(); ++i) CHECK(xt::all(xt::equal(*sa[i].second, *sb[i].second)));
}

TEST_CASE("load_checkpoint: another optimizer kind, a parameters-only folder, a damaged file: errors that change nothing") {
    test::TemporaryFolder folder("resume_errors");
    Run run;
    run.epoch();
    nn::save_checkpoint(folder.path / "ckpt", run.model, run.optimizer, run.step, &run.schedule);
    nn::save_parameters(run.model, folder.path / "params");

    Run other;
    auto before = test::snapshot(other.model);
    nn::SGD<double> sgd(other.model);
    CHECK_THROWS_WITH_AS(nn::load_checkpoint(folder.path / "ckpt", other.model, sgd),
                         ("load_checkpoint: " + (folder.path / "ckpt").string() +
                          " was saved by a AdamW optimizer, not SGD").c_str(),
                         io_error);
    CHECK_THROWS_AS(nn::load_checkpoint(folder.path / "params", other.model, other.optimizer), io_error);
    write_bytes(folder.path / "ckpt" / "optimizer.layers.2.bias.exp_avg.npy",
                read_bytes(folder.path / "ckpt" / "optimizer.layers.2.bias.exp_avg_sq.npy"));
    CHECK_THROWS_AS(nn::load_checkpoint(folder.path / "ckpt", other.model, other.optimizer, &other.schedule), io_error);
    CHECK(test::unchanged(other.model, before));
    CHECK(other.optimizer.steps() == 0);
    CHECK(other.optimizer.state_arrays().empty());
    CHECK(other.schedule.last_step() == 0);
}

}  // namespace
