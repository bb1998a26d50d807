#include "janus/train/checkpoint.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "janus/core/error.h"
#include "janus/core/fs.h"
#include "janus/core/hash.h"

namespace janus::train {
namespace fs = std::filesystem;

namespace {

constexpr const char* kManifest = "manifest.json";
constexpr const char* kFormat = "janus-checkpoint-1";
constexpr const char* kPrefix = "step_";

void fsync_dir(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

// step of a "step_N" directory name, or -1.
int64_t parse_step(const std::string& name) {
  if (name.rfind(kPrefix, 0) != 0 || name.size() == std::string(kPrefix).size()) return -1;
  const auto digits = name.substr(std::string(kPrefix).size());
  if (!std::all_of(digits.begin(), digits.end(), ::isdigit) || digits.size() > 18) return -1;
  return std::stoll(digits);
}

}  // namespace

CheckpointStore::CheckpointStore(std::string root, int64_t keep_last) : root_(std::move(root)), keep_last_(keep_last) {
  if (keep_last_ < 1) throw_input_error("checkpoint.keep_last must be >= 1, got {}", keep_last_);
}

std::string CheckpointStore::dir_name(int64_t step) { return fmt::format("{}{:09d}", kPrefix, step); }

std::string CheckpointStore::write(int64_t step, const std::map<std::string, std::string>& files) {
  std::error_code ec;
  fs::create_directories(root_, ec);
  if (ec) throw_error("cannot create checkpoint directory '{}': {}", root_, ec.message());
  const fs::path final_dir = fs::path(root_) / dir_name(step);
  const fs::path tmp = fs::path(root_) / (dir_name(step) + ".tmp." + std::to_string(::getpid()));
  remove_tree(tmp.string());
  nlohmann::json manifest{{"format", kFormat}, {"step", step}, {"files", nlohmann::json::object()}};
  for (const auto& [name, bytes] : files) {
    if (name == kManifest || name.find('/') != std::string::npos) throw_error("bad checkpoint file name '{}'", name);
    write_file_atomic((tmp / name).string(), bytes);
    manifest["files"][name] = {{"size", bytes.size()}, {"sha256", sha256_hex(bytes)}};
  }
  write_file_atomic((tmp / kManifest).string(), manifest.dump(2));
  if (fs::exists(final_dir)) {
    // Same step written again (e.g. a stop signal right after resuming): move the old one aside first.
    const fs::path old = fs::path(root_) / (dir_name(step) + ".old." + std::to_string(::getpid()));
    fs::rename(final_dir, old);
    fs::rename(tmp, final_dir);
    remove_tree(old.string());
  } else {
    fs::rename(tmp, final_dir);
  }
  fsync_dir(root_);
  // Retention: keep the newest keep_last; also clear temp directories left by crashed writers.
  const auto all = list();
  for (size_t i = static_cast<size_t>(keep_last_); i < all.size(); ++i) remove_tree(all[i]);
  for (const auto& e : fs::directory_iterator(root_, ec)) {
    const auto n = e.path().filename().string();
    if (e.is_directory() && n.find(".tmp.") != std::string::npos && e.path() != tmp) remove_tree(e.path().string());
  }
  return final_dir.string();
}

std::string CheckpointStore::validate(const std::string& dir, const std::vector<std::string>& required) {
  const fs::path d(dir);
  std::error_code dir_ec;
  if (!fs::is_directory(d, dir_ec)) return "not a directory";
  nlohmann::json manifest;
  try {
    manifest = nlohmann::json::parse(read_file((d / kManifest).string()));
  } catch (const std::exception& e) {
    return fmt::format("manifest unreadable: {}", e.what());
  }
  if (!manifest.is_object() || !manifest.contains("format") || manifest["format"] != kFormat ||
      !manifest.contains("files") || !manifest["files"].is_object()) {
    return "manifest has an unknown format";
  }
  for (const auto& r : required) {
    if (!manifest["files"].contains(r)) return fmt::format("manifest does not list '{}'", r);
  }
  for (const auto& [name, entry] : manifest["files"].items()) {
    // Names are plain file names inside the checkpoint: nothing may point outside it.
    if (name.empty() || name == "." || name == ".." || name == kManifest || name.find('/') != std::string::npos ||
        name.find('\0') != std::string::npos) {
      return fmt::format("manifest lists a bad file name '{}'", name.substr(0, 64));
    }
    if (!entry.is_object() || !entry.contains("size") || !entry["size"].is_number_unsigned() ||
        !entry.contains("sha256") || !entry["sha256"].is_string()) {
      return fmt::format("manifest entry of '{}' is malformed", name);
    }
    const auto want_size = entry["size"].get<uint64_t>();
    const fs::path f = d / name;
    std::error_code ec;
    if (!fs::is_regular_file(f, ec)) return fmt::format("file '{}' missing", name);
    const auto size = fs::file_size(f, ec);
    if (ec) return fmt::format("file '{}' missing", name);
    if (size != want_size) return fmt::format("file '{}' has {} bytes, manifest says {}", name, size, want_size);
    try {
      if (sha256_file(f.string()) != entry["sha256"].get<std::string>()) {
        return fmt::format("file '{}' fails its sha256", name);
      }
    } catch (const std::exception& e) {
      return fmt::format("file '{}' unreadable: {}", name, e.what());
    }
  }
  return "";
}

int64_t CheckpointStore::step_of(const std::string& dir) {
  try {
    const auto j = nlohmann::json::parse(read_file((fs::path(dir) / kManifest).string()));
    const auto& step = j.at("step");
    // An integer too large for int64 parses as unsigned or as a double, whose conversion would be undefined.
    const bool ok = step.is_number_integer() &&
                    (step.is_number_unsigned() ? step.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX)
                                               : step.get<int64_t>() >= 0);
    if (!ok)
      throw_input_error("checkpoint '{}': bad manifest: step {} is not a non-negative integer", dir, step.dump());
    return step.get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    throw_input_error("checkpoint '{}': bad manifest: {}", dir, e.what());
  }
}

std::vector<std::string> CheckpointStore::list() const {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  if (!fs::is_directory(root_)) return {};
  for (const auto& e : fs::directory_iterator(root_, ec)) {
    const int64_t s = parse_step(e.path().filename().string());
    if (s >= 0 && e.is_directory()) found.emplace_back(s, e.path().string());
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

std::optional<std::string> CheckpointStore::latest_valid(const std::vector<std::string>& required) const {
  for (const auto& dir : list()) {
    const auto why = validate(dir, required);
    if (why.empty()) return dir;
    spdlog::warn("checkpoint {} is corrupt ({}); falling back to the previous one", dir, why);
  }
  return std::nullopt;
}

const std::vector<std::string>& trainer_checkpoint_files() {
  static const std::vector<std::string> files = {"model.safetensors", "state.safetensors", "state.json", "config.yaml"};
  return files;
}

std::optional<std::string> newest_valid_checkpoint(const std::string& run_dir) {
  // keep_last only matters for write(); this store only reads.
  return CheckpointStore((fs::path(run_dir) / "checkpoints").string(), 1).latest_valid(trainer_checkpoint_files());
}

std::optional<std::string> run_weights_file(const std::string& run_dir, bool prefer_ema) {
  const fs::path dir(run_dir);
  std::error_code ec;
  const auto is_file = [&](const fs::path& p) { return fs::is_regular_file(p, ec); };
  if (prefer_ema && is_file(dir / "final" / "ema.safetensors")) return (dir / "final" / "ema.safetensors").string();
  if (is_file(dir / "final" / "model.safetensors")) return (dir / "final" / "model.safetensors").string();
  if (is_file(dir / "model.safetensors")) return (dir / "model.safetensors").string();
  if (const auto ckpt = newest_valid_checkpoint(run_dir)) return (fs::path(*ckpt) / "model.safetensors").string();
  return std::nullopt;
}

}  // namespace janus::train
