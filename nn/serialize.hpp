#pragma once
// Checkpoints: a folder holding one NumPy .npy file per parameter, named by
// the parameter ("layers.0.weight.npy"), so numpy.load reads them and PyTorch
// weights can be brought in by name, and a manifest.json that lists every
// file with its dtype, shape, size in bytes and checksum (FNV-1a, 64 bits).
//
// Saving is atomic as a whole: the new checkpoint is written and synced to
// disk in a sibling folder ("<folder>.saving"), which then trades places with
// the old one in one rename (Linux's RENAME_EXCHANGE). After a crash at any
// instant, `folder` holds the complete old checkpoint or the complete new one;
// at most the one sibling is left behind, and the next save removes it. Every
// write, sync, close and rename is checked: a failed save is an io_error
// naming the file and the system's reason, and the old checkpoint stays.
//
// Loading validates every file before it allocates for it or assigns
// anything: the .npy header, the dtype, the shape against the file's size,
// the checksum against the manifest. Anything else is an io_error naming the
// file and what is wrong; the model is unchanged.

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "nn/module.hpp"
#include "nn/optim.hpp"
#include "nn/scheduler.hpp"

namespace ad::nn {

/// Writes every parameter and buffer of `model` (Module::named_parameters,
/// named_buffers) as a checkpoint in `folder` (created,
/// with its parents, if missing). An existing `folder` must be a checkpoint
/// (it holds a manifest.json, or only .npy files): anything else is an
/// io_error, so that a mistyped path never replaces a folder of other files.
template <class T>
void save_parameters(const Module<T>& model, const std::filesystem::path& folder);

struct LoadOptions {
    /// Every parameter of the model must be in the checkpoint and every array
    /// of the checkpoint in the model (PyTorch's strict=True). With false,
    /// the parameters found are loaded and the rest reported.
    bool strict = true;
};

/// The names a checkpoint and a model did not share (PyTorch's
/// missing_keys and unexpected_keys).
struct LoadReport {
    std::vector<std::string> missing;     // parameters of the model the checkpoint lacks
    std::vector<std::string> unexpected;  // arrays of the checkpoint the model lacks
};

/// Reads the parameters and buffers of `model` from the checkpoint in `folder` (a folder
/// of .npy files without a manifest, as numpy or an older tapegrad wrote it,
/// is read too, without checksums). Throws io_error for a file that is not
/// what it claims, a dtype other than T's, or (strict) names that do not
/// match; shape_error for a shape other than the parameter's. In every case
/// nothing is assigned.
template <class T>
LoadReport load_parameters(const Module<T>& model, const std::filesystem::path& folder, LoadOptions options = {});

/// Assigns values to parameters by name, all or nothing: throws value_error
/// when a parameter has no value and shape_error when a shape differs, before
/// changing any parameter. Names in `values` that the model lacks are an
/// error too (a typo would otherwise silently keep the old weights).
template <class T>
void assign_parameters(const Module<T>& model, const std::map<std::string, Array<T>>& values);

/// A training checkpoint, to stop and resume a run: the model's parameters
/// and buffers, the optimizer's state (its step count, each group's learning
/// rate, and its per-parameter arrays, saved as "optimizer.<parameter>.<slot>",
/// e.g. "optimizer.layers.0.weight.exp_avg"), the schedule's step, and the
/// caller's training step, in one atomic save like save_parameters'. A run
/// resumed from it continues bitwise as the uninterrupted run would (the data
/// order is the caller's: DataLoader::set_epoch restores it).
template <class T>
void save_checkpoint(const std::filesystem::path& folder, const Module<T>& model, const Optimizer<T>& optimizer,
                     std::size_t step, const LRScheduler<T>* scheduler = nullptr);

/// Loads a save_checkpoint into the model, the optimizer (of the same kind and
/// groups, made for the same model) and the schedule, and returns the saved
/// step. Names must match exactly; all or nothing, with save_parameters'
/// checks; a folder of parameters only is an io_error.
template <class T>
std::size_t load_checkpoint(const std::filesystem::path& folder, const Module<T>& model, Optimizer<T>& optimizer,
                            LRScheduler<T>* scheduler = nullptr);

/// The array in an .npy file of dtype T ("<f4" for float, "<f8" for double),
/// C order. The header and the shape are checked against the file's size
/// before the array is allocated: a truncated file, a file with bytes after
/// its data, a header that claims more than the file holds, a negative or
/// overflowing shape, Fortran order or another dtype is an io_error naming
/// the file and the problem.
template <class T>
Array<T> read_npy(const std::filesystem::path& file);

/// The dtype an .npy file declares, e.g. "<f8", from a header checked as
/// read_npy checks it; throws io_error otherwise.
std::string npy_dtype(const std::filesystem::path& file);

}  // namespace ad::nn
