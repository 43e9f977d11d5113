#include "nn_test_support.hpp"

#include <filesystem>
#include <fstream>
#include <string>

#include <xtensor/xnpy.hpp>

namespace {

using namespace ad;
namespace fs = std::filesystem;

/// A fresh folder under the system's temporary directory, removed at the end.
struct TemporaryFolder {
    fs::path path;
    explicit TemporaryFolder(const std::string& name) : path(fs::temp_directory_path() / ("tapegrad_nn_" + name)) {
        fs::remove_all(path);
    }
    ~TemporaryFolder() { fs::remove_all(path); }
};

TEST_CASE("save_parameters / load_parameters: a round trip restores every parameter exactly") {
    TemporaryFolder folder("roundtrip");
    nn::MLP<double> trained({3, 4, 2}, nn::Activation::tanh, 1);
    nn::save_parameters(trained, folder.path / "checkpoint");
    for (const char* name : {"layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias"}) {
        CHECK(fs::exists(folder.path / "checkpoint" / (std::string(name) + ".npy")));
        CHECK(!fs::exists(folder.path / "checkpoint" / (std::string(name) + ".npy.tmp")));
    }
    // numpy's format: readable by xtensor's reader, dtype float64 little-endian.
    CHECK(nn::npy_dtype(folder.path / "checkpoint" / "layers.0.weight.npy") == "<f8");
    CHECK(xt::load_npy<double>((folder.path / "checkpoint" / "layers.2.weight.npy").string()) ==
          trained.linear(1).weight().value());

    nn::MLP<double> fresh({3, 4, 2}, nn::Activation::tanh, 2);
    CHECK(fresh.linear(0).weight().value() != trained.linear(0).weight().value());
    nn::load_parameters(fresh, folder.path / "checkpoint");
    auto a = trained.parameters(), b = fresh.parameters();
    for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i].var.value() == b[i].var.value());

    nn::MLP<float> single({3, 4, 2}, nn::Activation::tanh, 1);
    nn::save_parameters(single, folder.path / "float");
    CHECK(nn::npy_dtype(folder.path / "float" / "layers.0.bias.npy") == "<f4");
    nn::MLP<float> single2({3, 4, 2}, nn::Activation::tanh, 5);
    nn::load_parameters(single2, folder.path / "float");
    CHECK(single2.linear(1).weight().value() == single.linear(1).weight().value());
}

TEST_CASE("load_parameters: missing file, wrong shape, wrong dtype throw and change nothing") {
    TemporaryFolder folder("bad");
    nn::MLP<double> source({2, 3, 1}, nn::Activation::sigmoid, 1);
    nn::save_parameters(source, folder.path);
    nn::MLP<double> model({2, 3, 1}, nn::Activation::sigmoid, 9);
    auto before = test::snapshot(model);

    SUBCASE("missing file") {
        fs::remove(folder.path / "layers.2.bias.npy");
        try {
            nn::load_parameters(model, folder.path);
            FAIL("no exception");
        } catch (const io_error& e) {
            std::string m = e.what();
            CHECK(m.find("load_parameters") == 0);
            CHECK(m.find("layers.2.bias") != std::string::npos);
        }
    }
    SUBCASE("wrong shape") {
        xt::dump_npy((folder.path / "layers.2.weight.npy").string(), Array<double>(xt::zeros<double>({3, 1})));
        try {
            nn::load_parameters(model, folder.path);
            FAIL("no exception");
        } catch (const shape_error& e) {
            std::string m = e.what();
            CHECK(m.find("layers.2.weight") != std::string::npos);
            CHECK(m.find("(1, 3)") != std::string::npos);
            CHECK(m.find("(3, 1)") != std::string::npos);
        }
    }
    SUBCASE("wrong dtype") {
        xt::dump_npy((folder.path / "layers.2.bias.npy").string(), Array<float>{1.0f});
        try {
            nn::load_parameters(model, folder.path);
            FAIL("no exception");
        } catch (const io_error& e) {
            std::string m = e.what();
            CHECK(m.find("<f4") != std::string::npos);
            CHECK(m.find("<f8") != std::string::npos);
        }
    }
    SUBCASE("not an npy file") {
        std::ofstream(folder.path / "layers.0.bias.npy") << "hello";
        CHECK_THROWS_AS(nn::load_parameters(model, folder.path), io_error);
    }
    // The earlier, valid files were read but not assigned.
    CHECK(test::unchanged(model, before));
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

TEST_CASE("save_parameters: an unwritable folder is an io_error") {
    TemporaryFolder folder("unwritable");
    std::ofstream(folder.path.string()) << "a file, not a folder";
    nn::Linear<double> layer(2, 2);
    CHECK_THROWS_AS(nn::save_parameters(layer, folder.path / "sub"), io_error);
}

}  // namespace
