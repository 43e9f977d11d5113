#pragma once
// Checkpoints of a data-parallel run: rank 0 reads and writes the files (with
// nn/serialize.hpp's atomic saves and all-or-nothing loads), the other ranks
// get what it loaded by broadcast, so no shared file system is needed. Every
// rank calls the same function; every rank learns the outcome: a failure on
// rank 0 is an io_error on every rank ("load_checkpoint: rank 0: <reason>"),
// and a failed load changes no rank's model, optimizer or schedule.
//
//   ad::dist::save_checkpoint(group, "run/ckpt", model, optimizer, step, &schedule);
//   step = ad::dist::load_checkpoint(group, "run/ckpt", model, optimizer, &schedule);

#include <cstddef>
#include <filesystem>

#include "nn/distributed/process_group.hpp"
#include "nn/serialize.hpp"

namespace ad::dist {

/// Rank 0 writes nn::save_checkpoint(folder, model, optimizer, step,
/// scheduler); the other ranks write nothing. Returns on every rank once the
/// save succeeded; if it failed, throws io_error on every rank with rank 0's
/// reason.
template <class T>
void save_checkpoint(ProcessGroup& group, const std::filesystem::path& folder, const nn::Module<T>& model,
                     const nn::Optimizer<T>& optimizer, std::size_t step, const nn::LRScheduler<T>* scheduler = nullptr);

/// Rank 0 loads the checkpoint (nn::load_checkpoint); then every rank's
/// parameters, buffers, optimizer (steps, learning rates, state arrays) and
/// schedule become rank 0's, and every rank returns the saved step. First
/// the ranks check that their models, optimizers and schedules have the
/// same parameters, buffers, shapes, kind and groups as rank 0's. Any failure
/// is an io_error on every rank naming the rank and its reason; a different
/// layout or a checkpoint rank 0 cannot load changes nothing on any rank.
/// (Once rank 0 has loaded, a rank can still refuse its state only if its
/// schedule rejects the saved step; that rank then stays unchanged.)
template <class T>
std::size_t load_checkpoint(ProcessGroup& group, const std::filesystem::path& folder, const nn::Module<T>& model,
                            nn::Optimizer<T>& optimizer, nn::LRScheduler<T>* scheduler = nullptr);

/// Rank 0 writes nn::save_parameters(model, folder); the outcome as save_checkpoint's.
template <class T>
void save_parameters(ProcessGroup& group, const nn::Module<T>& model, const std::filesystem::path& folder);

/// Rank 0 loads nn::load_parameters(model, folder, options); then every
/// rank's parameters and buffers become rank 0's (with strict = false, the
/// ones the checkpoint lacks are rank 0's too), and every rank returns rank
/// 0's report. Failures as load_checkpoint's.
template <class T>
nn::LoadReport load_parameters(ProcessGroup& group, const nn::Module<T>& model, const std::filesystem::path& folder,
                               nn::LoadOptions options = {});

}  // namespace ad::dist
