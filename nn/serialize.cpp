#include "nn/serialize.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <set>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

// The .npy data is written and read as the machine stores it, and declared
// little-endian ('<'), which holds on the x86-64 and arm64 machines tapegrad
// builds for.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the .npy files are written little-endian");

namespace ad::nn {
namespace fs = std::filesystem;
using json = nlohmann::json;
namespace {

constexpr const char* manifest_name = "manifest.json";
constexpr const char* manifest_format = "tapegrad-checkpoint";
constexpr int manifest_version = 1;
// NumPy's own reader refuses headers above 10,000 bytes unless told otherwise;
// anything near this bound is not a header NumPy or tapegrad wrote.
constexpr std::size_t max_header_bytes = std::size_t(1) << 20;
constexpr std::size_t max_manifest_bytes = std::size_t(64) << 20;

template <class T>
constexpr const char* dtype_of() {
    static_assert(sizeof(T) == 4 || sizeof(T) == 8, "float or double");
    return sizeof(T) == 4 ? "<f4" : "<f8";
}

/// Whether `name` + ".npy" names a file inside the checkpoint's folder.
bool is_file_name(const std::string& name) {
    return !name.empty() && name.find('/') == std::string::npos && name != "." && name != "..";
}

fs::path file_of(const char* op, const fs::path& folder, const std::string& name) {
    if (!is_file_name(name)) {
        throw value_error(fmt::format("{}: parameter name '{}' cannot be a file name", op, name));
    }
    return folder / (name + ".npy");
}

std::string system_reason() { return std::strerror(errno); }

/// FNV-1a over 64 bits: a checksum that catches a changed, lost or swapped
/// byte, cheap enough to run over every byte saved and loaded.
class Checksum {
public:
    void add(const void* data, std::size_t n) {
        const auto* bytes = static_cast<const unsigned char*>(data);
        for (std::size_t i = 0; i < n; ++i) state_ = (state_ ^ bytes[i]) * 0x100000001b3ULL;
    }
    std::string hex() const { return fmt::format("{:016x}", state_); }

private:
    std::uint64_t state_ = 0xcbf29ce484222325ULL;
};

// --- Writing: every system call checked ------------------------------------------

/// A new file written through the system calls themselves, so that every
/// write, the sync and the close report their errors (a full disk, a file
/// size limit): an ofstream would let a failed flush pass in its destructor.
class OutputFile {
public:
    OutputFile(const char* op, fs::path path) : op_(op), path_(std::move(path)) {
        fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd_ < 0) fail("cannot create");
    }
    OutputFile(const OutputFile&) = delete;
    OutputFile& operator=(const OutputFile&) = delete;
    ~OutputFile() {
        if (fd_ >= 0) ::close(fd_);
    }

    void write(const void* data, std::size_t n) {
        checksum_.add(data, n);
        bytes_ += n;
        const char* p = static_cast<const char*>(data);
        while (n > 0) {
            ssize_t written = ::write(fd_, p, n);
            if (written < 0) {
                if (errno == EINTR) continue;
                fail("cannot write");
            }
            p += written;
            n -= static_cast<std::size_t>(written);
        }
    }

    /// Syncs the data to disk and closes the file.
    void commit() {
        if (::fsync(fd_) != 0) fail("cannot sync");
        int fd = std::exchange(fd_, -1);
        if (::close(fd) != 0) fail("cannot close");
    }

    std::size_t bytes() const { return bytes_; }
    std::string checksum() const { return checksum_.hex(); }

private:
    [[noreturn]] void fail(const char* what) {
        throw io_error(fmt::format("{}: {} {}: {}", op_, what, path_.string(), system_reason()));
    }

    const char* op_;
    fs::path path_;
    int fd_ = -1;
    std::size_t bytes_ = 0;
    Checksum checksum_;
};

/// Syncs a folder's entries (the names of files created or renamed in it).
void sync_folder(const char* op, const fs::path& folder) {
    int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) throw io_error(fmt::format("{}: cannot open folder {}: {}", op, folder.string(), system_reason()));
    if (::fsync(fd) != 0) {
        std::string reason = system_reason();
        ::close(fd);
        throw io_error(fmt::format("{}: cannot sync folder {}: {}", op, folder.string(), reason));
    }
    if (::close(fd) != 0) throw io_error(fmt::format("{}: cannot close folder {}: {}", op, folder.string(), system_reason()));
}

std::string shape_tuple(const Shape& shape) {
    if (shape.size() == 1) return fmt::format("({},)", shape[0]);
    return fmt::format("({})", fmt::join(shape, ", "));
}

/// The .npy header (format 1.0, or 2.0 when the dict is too long for 1.0's
/// 16-bit length), padded so that the data starts at a multiple of 64 bytes
/// as NumPy writes it.
std::string npy_header(const char* dtype, const Shape& shape) {
    std::string dict = fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}", dtype, shape_tuple(shape));
    bool v1 = dict.size() + 1 + 10 < 65536;
    std::size_t preamble = v1 ? 10 : 12;
    std::size_t total = (preamble + dict.size() + 1 + 63) / 64 * 64;
    dict.append(total - preamble - dict.size() - 1, ' ');
    dict += '\n';
    std::string header("\x93NUMPY", 6);
    header += char(v1 ? 1 : 2);
    header += char(0);
    std::size_t length = dict.size();
    for (std::size_t i = 0; i < (v1 ? 2u : 4u); ++i) header += char((length >> (8 * i)) & 0xff);
    return header + dict;
}

/// One array as a checkpoint saves it.
template <class T>
struct NamedArray {
    std::string name;
    const Array<T>* value;
};

/// Whether `folder` may be replaced by a checkpoint: it is one (a manifest),
/// or holds nothing but .npy files (a checkpoint of numpy or an older tapegrad).
bool is_checkpoint(const fs::path& folder) {
    if (fs::exists(folder / manifest_name)) return true;
    for (const auto& entry : fs::directory_iterator(folder)) {
        if (!entry.is_regular_file()) return false;
        const std::string name = entry.path().filename().string();
        auto ends_with = [&](const std::string& end) {
            return name.size() >= end.size() && name.compare(name.size() - end.size(), end.size(), end) == 0;
        };
        if (!ends_with(".npy") && !ends_with(".npy.tmp")) return false;
    }
    return true;
}

/// Puts the folder `staging` in the place of `target`: atomically where the
/// file system can exchange two names (Linux's RENAME_EXCHANGE: ext4, xfs,
/// btrfs, tmpfs), else by two renames, between which a crash leaves the old
/// checkpoint as "<target>.previous". Returns the path that now holds the old
/// checkpoint, to be removed.
fs::path swap_into_place(const char* op, const fs::path& staging, const fs::path& target) {
    if (::renameat2(AT_FDCWD, staging.c_str(), AT_FDCWD, target.c_str(), RENAME_EXCHANGE) == 0) return staging;
    if (errno != EINVAL && errno != ENOSYS) {
        throw io_error(fmt::format("{}: cannot exchange {} with {}: {}", op, staging.string(), target.string(),
                                   system_reason()));
    }
    fs::path previous = target;
    previous += ".previous";
    std::error_code ec;
    fs::remove_all(previous, ec);
    fs::rename(target, previous, ec);
    if (!ec) fs::rename(staging, target, ec);
    if (ec) throw io_error(fmt::format("{}: cannot rename {} into place: {}", op, staging.string(), ec.message()));
    return previous;
}

template <class T>
void write_checkpoint(const char* op, const std::vector<NamedArray<T>>& arrays, fs::path folder,
                      const json& training = json()) {
    if (folder.filename().empty()) folder = folder.parent_path();  // "ckpt/" names the folder "ckpt"
    std::set<std::string> names;
    for (const auto& a : arrays) {
        file_of(op, folder, a.name);
        if (!names.insert(a.name).second) throw value_error(fmt::format("{}: two arrays are named '{}'", op, a.name));
    }
    std::error_code ec;
    fs::path parent = folder.parent_path().empty() ? fs::path(".") : folder.parent_path();
    fs::create_directories(parent, ec);
    if (ec) throw io_error(fmt::format("{}: cannot create {}: {}", op, parent.string(), ec.message()));
    const bool replacing = fs::exists(folder);
    if (replacing && !fs::is_directory(folder)) {
        throw io_error(fmt::format("{}: {} exists and is not a folder", op, folder.string()));
    }
    if (replacing && !is_checkpoint(folder)) {
        throw io_error(fmt::format("{}: {} is a folder of other files (no {}, not only .npy files); "
                                   "a checkpoint would replace it whole",
                                   op, folder.string(), manifest_name));
    }

    // A sibling left by a save that crashed holds no checkpoint anyone reads.
    fs::path staging = folder;
    staging += ".saving";
    fs::remove_all(staging, ec);
    if (ec) throw io_error(fmt::format("{}: cannot remove {}: {}", op, staging.string(), ec.message()));
    if (!fs::create_directory(staging, ec) || ec) {
        throw io_error(fmt::format("{}: cannot create {}: {}", op, staging.string(), ec.message()));
    }
    bool placed = false;
    try {
        json manifest = {{"format", manifest_format}, {"version", manifest_version}, {"arrays", json::array()}};
        if (!training.is_null()) manifest["training"] = training;
        for (const auto& a : arrays) {
            fs::path file = file_of(op, staging, a.name);
            Shape shape = shape_of(*a.value);
            const std::string header = npy_header(dtype_of<T>(), shape);
            OutputFile out(op, file);
            out.write(header.data(), header.size());
            out.write(a.value->data(), a.value->size() * sizeof(T));
            out.commit();
            manifest["arrays"].push_back({{"name", a.name},
                                          {"file", file.filename().string()},
                                          {"dtype", dtype_of<T>()},
                                          {"shape", shape},
                                          {"bytes", out.bytes()},
                                          {"fnv1a64", out.checksum()}});
        }
        std::string text = manifest.dump(1) + "\n";
        OutputFile out(op, staging / manifest_name);
        out.write(text.data(), text.size());
        out.commit();
        sync_folder(op, staging);

        fs::path old;
        if (replacing) {
            old = swap_into_place(op, staging, folder);
        } else if (::rename(staging.c_str(), folder.c_str()) != 0) {
            throw io_error(fmt::format("{}: cannot rename {} to {}: {}", op, staging.string(), folder.string(),
                                       system_reason()));
        }
        placed = true;
        sync_folder(op, parent);
        if (!old.empty()) fs::remove_all(old, ec);  // a failure leaves a sibling the next save removes
    } catch (...) {
        if (!placed) fs::remove_all(staging, ec);
        throw;
    }
}

// --- Reading: nothing trusted before it is checked --------------------------------

/// What an .npy header declares, once checked against the file's size.
struct NpyHeader {
    std::string dtype;
    Shape shape;
    std::size_t data_offset = 0;
    std::size_t data_bytes = 0;
};

/// A minimal reader of the Python dict literal an .npy header holds:
/// {'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }
class HeaderParser {
public:
    HeaderParser(const std::string& text, std::function<void(const std::string&)> fail)
        : text_(text), fail_(std::move(fail)) {}

    NpyHeader parse() {
        NpyHeader header;
        bool have_descr = false, have_order = false, have_shape = false;
        expect('{');
        while (skip_spaces(), peek() != '}') {
            std::string key = string_literal();
            expect(':');
            if (key == "descr") {
                header.dtype = string_literal();
                have_descr = true;
            } else if (key == "fortran_order") {
                if (boolean()) fail_("stores its array in Fortran order, which tapegrad does not read");
                have_order = true;
            } else if (key == "shape") {
                header.shape = shape_tuple_literal();
                have_shape = true;
            } else {
                fail_(fmt::format("has an unknown header key '{}'", key));
            }
            skip_spaces();
            if (peek() == ',') ++pos_;
        }
        ++pos_;
        skip_spaces();
        if (pos_ != text_.size()) fail_("has text after its header's dict");
        if (!have_descr || !have_order || !have_shape) fail_("lacks 'descr', 'fortran_order' or 'shape' in its header");
        return header;
    }

private:
    char peek() {
        if (pos_ >= text_.size()) fail_("has a header that ends early");
        return text_[pos_];
    }
    void skip_spaces() {
        while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\n')) ++pos_;
    }
    void expect(char c) {
        skip_spaces();
        if (peek() != c) fail_(fmt::format("has a malformed header (expected '{}' at byte {})", c, pos_));
        ++pos_;
    }
    std::string string_literal() {
        skip_spaces();
        char quote = peek();
        if (quote != '\'' && quote != '"') fail_(fmt::format("has a malformed header (expected a string at byte {})", pos_));
        std::size_t end = text_.find(quote, pos_ + 1);
        if (end == std::string::npos) fail_("has an unterminated string in its header");
        std::string s = text_.substr(pos_ + 1, end - pos_ - 1);
        pos_ = end + 1;
        return s;
    }
    bool boolean() {
        skip_spaces();
        if (text_.compare(pos_, 4, "True") == 0) return pos_ += 4, true;
        if (text_.compare(pos_, 5, "False") == 0) return pos_ += 5, false;
        fail_("has a malformed 'fortran_order' in its header");
        return false;
    }
    Shape shape_tuple_literal() {
        Shape shape;
        expect('(');
        while (skip_spaces(), peek() != ')') {
            if (peek() == '-') fail_("declares a negative extent in its shape");
            if (peek() < '0' || peek() > '9') fail_("has a malformed 'shape' in its header");
            std::size_t extent = 0;
            while (peek() >= '0' && peek() <= '9') {
                if (__builtin_mul_overflow(extent, std::size_t(10), &extent) ||
                    __builtin_add_overflow(extent, std::size_t(peek() - '0'), &extent)) {
                    fail_("declares an extent too large for this machine");
                }
                ++pos_;
            }
            shape.push_back(extent);
            skip_spaces();
            if (peek() == ',') ++pos_;
            if (shape.size() > 32) fail_("declares more than 32 dimensions");
        }
        ++pos_;
        return shape;
    }

    const std::string& text_;
    std::function<void(const std::string&)> fail_;
    std::size_t pos_ = 0;
};

/// An open .npy file whose header has been read and checked.
class NpyFile {
public:
    NpyFile(const char* op, const fs::path& path) : op_(op), path_(path), in_(path, std::ios::binary) {
        if (!in_) fail(fmt::format("cannot be opened: {}", system_reason()));
        std::error_code ec;
        std::uintmax_t size = fs::file_size(path, ec);
        if (ec) fail(fmt::format("cannot be sized: {}", ec.message()));
        file_bytes_ = static_cast<std::size_t>(size);

        char preamble[12] = {};
        if (file_bytes_ < 10) fail(fmt::format("is not an .npy file ({} bytes)", file_bytes_));
        read(preamble, 8);
        if (std::memcmp(preamble, "\x93NUMPY", 6) != 0) fail("is not an .npy file (no \\x93NUMPY magic)");
        const int major = static_cast<unsigned char>(preamble[6]), minor = static_cast<unsigned char>(preamble[7]);
        if (major < 1 || major > 3 || minor != 0) fail(fmt::format("has .npy format version {}.{}, not 1.0, 2.0 or 3.0", major, minor));
        const std::size_t length_bytes = major == 1 ? 2 : 4;
        if (file_bytes_ < 8 + length_bytes) fail("ends inside its header length");
        read(preamble + 8, length_bytes);
        std::size_t header_bytes = 0;
        for (std::size_t i = length_bytes; i-- > 0;) header_bytes = header_bytes * 256 + static_cast<unsigned char>(preamble[8 + i]);
        const std::size_t header_end = 8 + length_bytes + header_bytes;
        if (header_bytes > max_header_bytes || header_end > file_bytes_) {
            fail(fmt::format("claims a header of {} bytes, but the file holds {}", header_bytes, file_bytes_));
        }
        std::string text(header_bytes, '\0');
        read(text.data(), header_bytes);
        header_ = HeaderParser(text, [this](const std::string& what) { fail(what); }).parse();
        header_.data_offset = header_end;

        std::size_t itemsize = item_size(header_.dtype);
        std::size_t needed = itemsize;
        for (std::size_t extent : header_.shape) {
            if (__builtin_mul_overflow(needed, extent, &needed)) fail(fmt::format("declares shape {}, too large for this machine", shape_string(header_.shape)));
        }
        header_.data_bytes = file_bytes_ - header_end;
        if (header_.data_bytes < needed) {
            fail(fmt::format("is truncated: shape {} of {} needs {} bytes of data, the file holds {}",
                             shape_string(header_.shape), header_.dtype, needed, header_.data_bytes));
        }
        if (header_.data_bytes > needed) {
            fail(fmt::format("has {} bytes after the {} bytes its shape {} of {} needs", header_.data_bytes - needed,
                             needed, shape_string(header_.shape), header_.dtype));
        }
    }

    const NpyHeader& header() const { return header_; }

    /// The data, into an array allocated only now that its size is known to be the file's.
    template <class T>
    Array<T> read_array() {
        if (header_.dtype != dtype_of<T>()) {
            fail(fmt::format("holds dtype {}, {} is needed", header_.dtype, dtype_of<T>()));
        }
        Array<T> value = Array<T>::from_shape(header_.shape);
        read(value.data(), header_.data_bytes);
        return value;
    }

    const Checksum& checksum() const { return checksum_; }
    std::size_t file_bytes() const { return file_bytes_; }

    [[noreturn]] void fail(const std::string& what) const {
        throw io_error(fmt::format("{}: {} {}", op_, path_.string(), what));
    }

private:
    /// The byte size of a dtype this reader knows: floats and integers of 1-8 bytes.
    std::size_t item_size(const std::string& dtype) const {
        if (dtype.size() == 3 && (dtype[0] == '<' || dtype[0] == '|' || dtype[0] == '>' || dtype[0] == '=') &&
            std::strchr("fiub", dtype[1]) && std::strchr("1248", dtype[2])) {
            return std::size_t(dtype[2] - '0');
        }
        fail(fmt::format("holds dtype '{}', which tapegrad does not read", dtype));
    }

    void read(void* data, std::size_t n) {
        in_.read(static_cast<char*>(data), static_cast<std::streamsize>(n));
        if (!in_ || static_cast<std::size_t>(in_.gcount()) != n) fail(fmt::format("cannot be read: {}", system_reason()));
        checksum_.add(data, n);
    }

    const char* op_;
    fs::path path_;
    std::ifstream in_;
    std::size_t file_bytes_ = 0;
    NpyHeader header_;
    Checksum checksum_;
};

/// An array as the manifest lists it.
struct ManifestEntry {
    fs::path file;
    std::string dtype;
    Shape shape;
    std::size_t bytes = 0;
    std::string checksum;  // empty: a folder without a manifest
};

/// The arrays of the checkpoint in `folder` by name: from its manifest, or,
/// without one, from the .npy files it holds.
std::map<std::string, ManifestEntry> read_manifest(const char* op, const fs::path& folder, json* training = nullptr) {
    std::error_code ec;
    if (!fs::is_directory(folder, ec)) throw io_error(fmt::format("{}: {} is not a folder", op, folder.string()));
    std::map<std::string, ManifestEntry> entries;
    const fs::path path = folder / manifest_name;
    if (!fs::exists(path)) {
        for (const auto& entry : fs::directory_iterator(folder)) {
            if (entry.path().extension() == ".npy") entries[entry.path().stem().string()].file = entry.path();
        }
        return entries;
    }
    auto fail = [&](const std::string& what) { throw io_error(fmt::format("{}: {} {}", op, path.string(), what)); };
    std::uintmax_t size = fs::file_size(path, ec);
    if (ec || size > max_manifest_bytes) fail(fmt::format("cannot be read or is over {} bytes", max_manifest_bytes));
    std::ifstream in(path, std::ios::binary);
    std::string text(static_cast<std::size_t>(size), '\0');
    if (!in.read(text.data(), static_cast<std::streamsize>(size))) fail("cannot be read");
    try {
        json manifest = json::parse(text);
        if (manifest.at("format") != manifest_format) fail("is not a tapegrad checkpoint manifest");
        if (manifest.at("version") != manifest_version) fail(fmt::format("has version {}, this tapegrad reads {}", manifest.at("version").dump(), manifest_version));
        for (const auto& a : manifest.at("arrays")) {
            std::string name = a.at("name").get<std::string>();
            std::string file = a.at("file").get<std::string>();
            if (!is_file_name(name)) fail(fmt::format("lists '{}', which cannot be a file name", name));
            if (file != name + ".npy") fail(fmt::format("names file '{}' for array '{}'", file, name));
            ManifestEntry entry{file_of(op, folder, name), a.at("dtype").get<std::string>(), a.at("shape").get<Shape>(),
                                a.at("bytes").get<std::size_t>(), a.at("fnv1a64").get<std::string>()};
            if (!entries.emplace(name, std::move(entry)).second) fail(fmt::format("lists '{}' twice", name));
        }
        if (training && manifest.contains("training")) *training = manifest["training"];
    } catch (const json::exception& e) {
        fail(fmt::format("is malformed: {}", e.what()));
    }
    return entries;
}

/// The array of one manifest entry, checked against the entry as well.
template <class T>
Array<T> read_entry(const char* op, const ManifestEntry& entry) {
    NpyFile file(op, entry.file);
    if (!entry.checksum.empty()) {
        const NpyHeader& h = file.header();
        if (h.dtype != entry.dtype || !same_extents(h.shape, entry.shape) || file.file_bytes() != entry.bytes) {
            file.fail(fmt::format("does not match the manifest: {} {} in {} bytes, the manifest says {} {} in {} bytes",
                                  h.dtype, shape_string(h.shape), file.file_bytes(), entry.dtype,
                                  shape_string(entry.shape), entry.bytes));
        }
    }
    Array<T> value = file.read_array<T>();
    if (!entry.checksum.empty() && file.checksum().hex() != entry.checksum) {
        file.fail(fmt::format("has checksum {}, the manifest says {}: the file was changed or damaged",
                              file.checksum().hex(), entry.checksum));
    }
    return value;
}

std::string joined(const std::vector<std::string>& names) { return fmt::format("{}", fmt::join(names, ", ")); }

/// What a checkpoint holds of a model: its parameters, then its buffers, by name.
template <class T>
struct StateEntry {
    std::string name;
    Var<T> parameter;                   // defined for a parameter
    std::shared_ptr<Array<T>> buffer;   // set for a buffer
    const Array<T>& value() const { return buffer ? *buffer : parameter.value(); }
    Array<T>& mutable_value() const { return buffer ? *buffer : parameter.mutable_value(); }
};

template <class T>
std::vector<StateEntry<T>> state_of(const Module<T>& model) {
    std::vector<StateEntry<T>> state;
    for (auto& p : model.named_parameters()) state.push_back({std::move(p.name), std::move(p.var), nullptr});
    for (auto& b : model.named_buffers()) state.push_back({std::move(b.name), Var<T>(), std::move(b.value)});
    return state;
}

}  // namespace

template <class T>
Array<T> read_npy(const fs::path& file) {
    return NpyFile("read_npy", file).read_array<T>();
}

std::string npy_dtype(const fs::path& file) { return NpyFile("npy_dtype", file).header().dtype; }

template <class T>
void save_parameters(const Module<T>& model, const fs::path& folder) {
    auto state = state_of(model);
    std::vector<NamedArray<T>> arrays;
    for (const auto& e : state) arrays.push_back({e.name, &e.value()});
    try {
        write_checkpoint("save_parameters", arrays, folder);
    } catch (const fs::filesystem_error& e) {
        throw io_error(fmt::format("save_parameters: {}", e.what()));
    }
}

template <class T>
void assign_parameters(const Module<T>& model, const std::map<std::string, Array<T>>& values) {
    auto parameters = model.named_parameters();
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
LoadReport load_parameters(const Module<T>& model, const fs::path& folder, LoadOptions options) {
    const char* op = "load_parameters";
    auto state = state_of(model);
    std::map<std::string, ManifestEntry> entries;
    try {
        entries = read_manifest(op, folder);
    } catch (const fs::filesystem_error& e) {
        throw io_error(fmt::format("{}: {}", op, e.what()));
    }

    LoadReport report;
    std::set<std::string> names;
    for (const auto& e : state) {
        names.insert(e.name);
        if (!entries.count(e.name)) report.missing.push_back(fmt::format("{} (shape {})", e.name, shape_string_of(e.value())));
    }
    for (const auto& entry : entries) {
        if (!names.count(entry.first)) report.unexpected.push_back(entry.first);
    }
    if (options.strict && (!report.missing.empty() || !report.unexpected.empty())) {
        std::string what;
        if (!report.missing.empty()) what += fmt::format("; missing from it: {}", joined(report.missing));
        if (!report.unexpected.empty()) what += fmt::format("; not in the model: {}", joined(report.unexpected));
        throw io_error(fmt::format("{}: the checkpoint {} does not match the model{}", op, folder.string(), what));
    }

    std::vector<std::pair<const StateEntry<T>*, Array<T>>> values;
    for (const auto& e : state) {
        auto it = entries.find(e.name);
        if (it == entries.end()) continue;
        Array<T> value = read_entry<T>(op, it->second);
        if (!equal_shapes(value, e.value())) {
            throw shape_error(fmt::format("{}: {} '{}' has shape {} but {} holds shape {}", op,
                                          e.buffer ? "buffer" : "parameter", e.name, shape_string_of(e.value()),
                                          it->second.file.string(), shape_string_of(value)));
        }
        values.emplace_back(&e, std::move(value));
    }
    // Everything read and checked: copying cannot fail any more. In place, so
    // that pointers into a parameter (an optimizer's) stay valid.
    for (auto& [e, value] : values) std::copy(value.begin(), value.end(), e->mutable_value().begin());
    return report;
}

namespace {

constexpr const char* optimizer_prefix = "optimizer.";

}  // namespace

template <class T>
void save_checkpoint(const fs::path& folder, const Module<T>& model, const Optimizer<T>& optimizer, std::size_t step,
                     const LRScheduler<T>* scheduler) {
    auto state = state_of(model);
    std::vector<NamedArray<T>> arrays;
    for (const auto& e : state) arrays.push_back({e.name, &e.value()});
    auto optimizer_state = optimizer.state_arrays();
    for (const auto& [name, value] : optimizer_state) arrays.push_back({optimizer_prefix + name, value});
    json rates = json::array();
    for (std::size_t g = 0; g < optimizer.group_count(); ++g) rates.push_back(double(optimizer.learning_rate(g)));
    json training = {{"step", step},
                     {"optimizer", {{"kind", optimizer.kind()},
                                    {"steps", optimizer.steps()},
                                    {"learning_rates", rates},
                                    {"has_state", !optimizer_state.empty()}}}};
    if (scheduler) training["scheduler"] = {{"last_step", scheduler->last_step()}};
    try {
        write_checkpoint("save_checkpoint", arrays, folder, training);
    } catch (const fs::filesystem_error& e) {
        throw io_error(fmt::format("save_checkpoint: {}", e.what()));
    }
}

template <class T>
std::size_t load_checkpoint(const fs::path& folder, const Module<T>& model, Optimizer<T>& optimizer,
                            LRScheduler<T>* scheduler) {
    const char* op = "load_checkpoint";
    std::map<std::string, ManifestEntry> entries;
    json training;
    try {
        entries = read_manifest(op, folder, &training);
    } catch (const fs::filesystem_error& e) {
        throw io_error(fmt::format("{}: {}", op, e.what()));
    }
    auto fail = [&](const std::string& what) {
        throw io_error(fmt::format("{}: {} {}", op, folder.string(), what));
    };
    if (training.is_null()) fail("holds parameters only (save_parameters), not a training checkpoint");

    std::size_t step = 0, optimizer_steps = 0, scheduler_step = 0;
    std::vector<T> rates;
    bool has_state = false;
    try {
        step = training.at("step").get<std::size_t>();
        const json& o = training.at("optimizer");
        if (o.at("kind").get<std::string>() != optimizer.kind()) {
            fail(fmt::format("was saved by a {} optimizer, not {}", o.at("kind").get<std::string>(), optimizer.kind()));
        }
        optimizer_steps = o.at("steps").get<std::size_t>();
        for (const auto& r : o.at("learning_rates")) rates.push_back(T(r.get<double>()));
        has_state = o.at("has_state").get<bool>();
        if (scheduler && !training.contains("scheduler")) fail("holds no learning-rate schedule");
        if (scheduler) scheduler_step = training.at("scheduler").at("last_step").get<std::size_t>();
    } catch (const json::exception& e) {
        fail(fmt::format("has a malformed training record: {}", e.what()));
    }
    if (rates.size() != optimizer.group_count()) {
        fail(fmt::format("holds {} parameter groups; the optimizer has {}", rates.size(), optimizer.group_count()));
    }

    // Exactly the model's state and (once it stepped) the optimizer's arrays.
    auto state = state_of(model);
    std::vector<std::string> expected;
    for (const auto& e : state) expected.push_back(e.name);
    const auto slots = optimizer.slot_names();
    if (has_state) {
        for (const auto& slot : slots) {
            for (const auto& p : optimizer.parameters()) expected.push_back(optimizer_prefix + p.name + "." + slot);
        }
    }
    std::vector<std::string> missing, unexpected;
    for (const auto& name : expected) {
        if (!entries.count(name)) missing.push_back(name);
    }
    for (const auto& entry : entries) {
        if (std::find(expected.begin(), expected.end(), entry.first) == expected.end()) unexpected.push_back(entry.first);
    }
    if (!missing.empty() || !unexpected.empty()) {
        std::string what;
        if (!missing.empty()) what += fmt::format("; missing from it: {}", joined(missing));
        if (!unexpected.empty()) what += fmt::format("; not in the model or optimizer: {}", joined(unexpected));
        fail(fmt::format("does not match the model and optimizer{}", what));
    }

    std::vector<Array<T>> values;
    for (const auto& e : state) {
        Array<T> value = read_entry<T>(op, entries.at(e.name));
        if (!equal_shapes(value, e.value())) {
            throw shape_error(fmt::format("{}: {} '{}' has shape {} but the checkpoint holds shape {}", op,
                                          e.buffer ? "buffer" : "parameter", e.name, shape_string_of(e.value()),
                                          shape_string_of(value)));
        }
        values.push_back(std::move(value));
    }
    std::vector<Array<T>> optimizer_arrays;
    if (has_state) {
        for (const auto& slot : slots) {
            for (const auto& p : optimizer.parameters()) {
                optimizer_arrays.push_back(read_entry<T>(op, entries.at(optimizer_prefix + p.name + "." + slot)));
            }
        }
    }
    // Everything read. The schedule first (it may reject its step; it sets the
    // rates, which restore then sets to the saved ones exactly), then the
    // optimizer (all or nothing), then the model, which cannot fail.
    if (scheduler) scheduler->set_last_step(scheduler_step);
    optimizer.restore(optimizer_steps, rates, std::move(optimizer_arrays));
    for (std::size_t i = 0; i < state.size(); ++i) {
        std::copy(values[i].begin(), values[i].end(), state[i].mutable_value().begin());
    }
    return step;
}

#define NN_SERIALIZE_INSTANTIATE(T)                                                            \
    template void save_parameters(const Module<T>&, const fs::path&);                          \
    template LoadReport load_parameters(const Module<T>&, const fs::path&, LoadOptions);       \
    template void assign_parameters(const Module<T>&, const std::map<std::string, Array<T>>&); \
    template Array<T> read_npy(const fs::path&);                                               \
    template void save_checkpoint(const fs::path&, const Module<T>&, const Optimizer<T>&, std::size_t,  \
                                  const LRScheduler<T>*);                                      \
    template std::size_t load_checkpoint(const fs::path&, const Module<T>&, Optimizer<T>&, LRScheduler<T>*);

NN_SERIALIZE_INSTANTIATE(float)
NN_SERIALIZE_INSTANTIATE(double)

}  // namespace ad::nn
