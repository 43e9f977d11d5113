#pragma once
// Checkpoints: one NumPy .npy file per parameter, named by the parameter
// ("layers.0.weight.npy"), in a folder, so numpy.load reads them and PyTorch
// weights can be brought in by name. Each file is written under a temporary
// name and renamed into place, so a crash never leaves a half-written file
// under a real name. Loading reads and checks every file before it assigns
// any: a missing file, a wrong shape or a wrong dtype throws and leaves the
// model unchanged.

#include <filesystem>
#include <map>
#include <string>

#include "nn/module.hpp"

namespace ad::nn {

/// Writes every parameter of `model` into `folder` (created if missing).
/// Throws io_error when a file cannot be written.
template <class T>
void save_parameters(const Module<T>& model, const std::filesystem::path& folder);

/// Reads every parameter of `model` from `folder`. Throws io_error for a
/// missing or unreadable file or a dtype other than T's, shape_error for a
/// shape other than the parameter's; in every case nothing is assigned.
template <class T>
void load_parameters(const Module<T>& model, const std::filesystem::path& folder);

/// Assigns values to parameters by name, all or nothing: throws value_error
/// when a parameter has no value and shape_error when a shape differs, before
/// changing any parameter. Names in `values` that the model lacks are an
/// error too (a typo would otherwise silently keep the old weights).
template <class T>
void assign_parameters(const Module<T>& model, const std::map<std::string, Array<T>>& values);

/// The dtype an .npy file declares, e.g. "<f8"; throws io_error when the file
/// cannot be read or is not an .npy file.
std::string npy_dtype(const std::filesystem::path& file);

}  // namespace ad::nn
