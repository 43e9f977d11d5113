#include "nn/serialize.hpp"

#include <fstream>
#include <set>

#include <fmt/format.h>
#include <xtensor/xnpy.hpp>

namespace ad::nn {
namespace fs = std::filesystem;
namespace {

template <class T>
constexpr const char* dtype_of() {
    static_assert(sizeof(T) == 4 || sizeof(T) == 8, "float or double");
    return sizeof(T) == 4 ? "<f4" : "<f8";
}

fs::path file_of(const fs::path& folder, const std::string& name) {
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
        throw value_error(fmt::format("save_parameters: parameter name '{}' cannot be a file name", name));
    }
    return folder / (name + ".npy");
}

}  // namespace

std::string npy_dtype(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    if (!in) throw io_error(fmt::format("load_parameters: cannot open {}", file.string()));
    char magic[8] = {};
    in.read(magic, 8);
    if (!in || std::string(magic, 6) != "\x93NUMPY") {
        throw io_error(fmt::format("load_parameters: {} is not an .npy file", file.string()));
    }
    std::size_t length = 0;
    unsigned char len_bytes[4] = {};
    int major = static_cast<unsigned char>(magic[6]);
    int size_bytes = major == 1 ? 2 : 4;
    in.read(reinterpret_cast<char*>(len_bytes), size_bytes);
    for (int i = size_bytes - 1; i >= 0; --i) length = length * 256 + len_bytes[i];
    std::string header(length, '\0');
    in.read(header.data(), static_cast<std::streamsize>(length));
    if (!in) throw io_error(fmt::format("load_parameters: {} has a truncated header", file.string()));
    auto key = header.find("'descr'");
    auto open = key == std::string::npos ? key : header.find('\'', key + 7);
    auto close = open == std::string::npos ? open : header.find('\'', open + 1);
    if (close == std::string::npos) {
        throw io_error(fmt::format("load_parameters: {} has no 'descr' in its header", file.string()));
    }
    return header.substr(open + 1, close - open - 1);
}

template <class T>
void save_parameters(const Module<T>& model, const fs::path& folder) {
    std::error_code ec;
    fs::create_directories(folder, ec);
    if (ec) throw io_error(fmt::format("save_parameters: cannot create {}: {}", folder.string(), ec.message()));
    for (const auto& p : model.parameters()) {
        fs::path file = file_of(folder, p.name);
        fs::path temporary = file;
        temporary += ".tmp";
        try {
            xt::dump_npy(temporary.string(), p.var.value());
        } catch (const std::runtime_error& e) {
            fs::remove(temporary, ec);
            throw io_error(fmt::format("save_parameters: cannot write {}: {}", temporary.string(), e.what()));
        }
        fs::rename(temporary, file, ec);
        if (ec) {
            fs::remove(temporary, ec);
            throw io_error(fmt::format("save_parameters: cannot rename into {}: {}", file.string(), ec.message()));
        }
    }
}

template <class T>
void assign_parameters(const Module<T>& model, const std::map<std::string, Array<T>>& values) {
    auto parameters = model.parameters();
    std::set<std::string> names;
    for (const auto& p : parameters) {
        names.insert(p.name);
        auto it = values.find(p.name);
        if (it == values.end()) {
            throw value_error(fmt::format("assign_parameters: no value for parameter '{}' (shape {})", p.name,
                                          shape_string(p.var.shape())));
        }
        if (!equal_shapes(it->second, p.var.value())) {
            throw shape_error(fmt::format("assign_parameters: parameter '{}' has shape {} but the value has shape {}",
                                          p.name, shape_string(p.var.shape()), shape_string_of(it->second)));
        }
    }
    for (const auto& [name, value] : values) {
        if (!names.count(name)) {
            throw value_error(fmt::format("assign_parameters: the model has no parameter '{}'", name));
        }
    }
    // Everything checked: copying cannot fail on shape any more.
    for (const auto& p : parameters) p.var.mutable_value() = values.at(p.name);
}

template <class T>
void load_parameters(const Module<T>& model, const fs::path& folder) {
    std::map<std::string, Array<T>> values;
    for (const auto& p : model.parameters()) {
        fs::path file = file_of(folder, p.name);
        if (!fs::exists(file)) {
            throw io_error(fmt::format("load_parameters: parameter '{}' (shape {}): {} does not exist", p.name,
                                       shape_string(p.var.shape()), file.string()));
        }
        std::string dtype = npy_dtype(file);
        if (dtype != dtype_of<T>()) {
            throw io_error(fmt::format("load_parameters: parameter '{}': {} holds dtype {}, the model needs {}",
                                       p.name, file.string(), dtype, dtype_of<T>()));
        }
        Array<T> value;
        try {
            value = xt::load_npy<T>(file.string());
        } catch (const std::runtime_error& e) {
            throw io_error(fmt::format("load_parameters: parameter '{}': cannot read {}: {}", p.name,
                                       file.string(), e.what()));
        }
        if (!equal_shapes(value, p.var.value())) {
            throw shape_error(fmt::format("load_parameters: parameter '{}' has shape {} but {} holds shape {}",
                                          p.name, shape_string(p.var.shape()), file.string(),
                                          shape_string_of(value)));
        }
        values.emplace(p.name, std::move(value));
    }
    assign_parameters(model, values);
}

#define NN_SERIALIZE_INSTANTIATE(T)                                                        \
    template void save_parameters(const Module<T>&, const fs::path&);                      \
    template void load_parameters(const Module<T>&, const fs::path&);                      \
    template void assign_parameters(const Module<T>&, const std::map<std::string, Array<T>>&);

NN_SERIALIZE_INSTANTIATE(float)
NN_SERIALIZE_INSTANTIATE(double)

}  // namespace ad::nn
