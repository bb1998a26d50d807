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

}  // namespace janus::train
