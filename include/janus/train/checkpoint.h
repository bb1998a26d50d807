#pragma once
// Checkpoint directories: <root>/step_<NNNNNNNNN>/ holding named files plus manifest.json with each file's size and
// sha256. A checkpoint is written into a temp directory (every file fsync'ed), then renamed into place and the
// parent directory fsync'ed, so a crash leaves either the complete checkpoint or none. Readers trust a checkpoint
// only when every file matches its manifest entry.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace janus::train {

class CheckpointStore {
 public:
  CheckpointStore(std::string root, int64_t keep_last);

  const std::string& root() const { return root_; }
  static std::string dir_name(int64_t step);  // "step_000000042"

  // Writes `files` (name -> bytes) as the checkpoint of `step`, replacing one of the same step, then deletes all
  // but the newest keep_last checkpoints. Returns the checkpoint directory.
  std::string write(int64_t step, const std::map<std::string, std::string>& files);

  // "" when `dir` is a complete, uncorrupted checkpoint, otherwise the reason (one line). Never throws for a bad
  // manifest (any content is a reason). `required`: file names the manifest must list (a manifest damaged into
  // listing fewer files must not let unverified files through).
  static std::string validate(const std::string& dir, const std::vector<std::string>& required = {});
  // Step recorded in the manifest (InputError if unreadable).
  static int64_t step_of(const std::string& dir);

  // Checkpoint directories under root, newest step first (not validated).
  std::vector<std::string> list() const;
  // The newest valid checkpoint; every newer invalid one is reported with spdlog::warn (and skipped).
  std::optional<std::string> latest_valid(const std::vector<std::string>& required = {}) const;

 private:
  std::string root_;
  int64_t keep_last_;
};

// Files every trainer checkpoint holds (Trainer::save_checkpoint writes them). A checkpoint whose manifest does not
// list each of them is corrupt: `--resume auto` and run_weights_file validate against this list.
const std::vector<std::string>& trainer_checkpoint_files();

// The newest valid checkpoint under <run_dir>/checkpoints/, by the validity rule of `--resume auto`
// (CheckpointStore::validate with trainer_checkpoint_files(); newer corrupt ones are skipped with a warning).
std::optional<std::string> newest_valid_checkpoint(const std::string& run_dir);

// The weights file a run directory stands for. The one rule shared by load_run (weights "auto") and
// train.init_from, first match wins:
//   1. <run_dir>/final/ema.safetensors, only when prefer_ema (load_run: evaluation uses the EMA weights);
//   2. <run_dir>/final/model.safetensors: a finished run's final weights are what the user means, even when the
//      run was later extended and interrupted (name the checkpoint directory to get its newer weights);
//   3. <run_dir>/model.safetensors (a save_model directory);
//   4. model.safetensors of newest_valid_checkpoint(run_dir).
// std::nullopt when the directory holds none of them.
std::optional<std::string> run_weights_file(const std::string& run_dir, bool prefer_ema = false);

}  // namespace janus::train
