#include "janus/model/run.h"

#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "janus/core/error.h"
#include "janus/core/fs.h"
#include "janus/core/json_file.h"
#include "janus/io/module_io.h"
#include "janus/model/model_io.h"
#include "janus/train/checkpoint.h"

namespace janus {
namespace fs = std::filesystem;

namespace {

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

// The weights file for `which` (see LoadRunOptions::weights).
std::string pick_weights(const fs::path& dir, const std::string& which) {
  if (which == "auto") {
    // The rule train.init_from shares (train::run_weights_file); evaluation prefers the EMA weights.
    if (const auto w = train::run_weights_file(dir.string(), /*prefer_ema=*/true)) return *w;
    throw_input_error("run '{}' holds no weights: no final/model.safetensors, model.safetensors or valid checkpoint",
                      dir.string());
  }
  if (which == "final" || which == "ema") {
    const auto p = dir / "final" / (which == "final" ? "model.safetensors" : "ema.safetensors");
    if (!is_file(p)) throw_input_error("run '{}': '{}' does not exist", dir.string(), p.string());
    return p.string();
  }
  if (which == "latest") {
    const auto ckpt = train::newest_valid_checkpoint(dir.string());
    if (!ckpt) throw_input_error("run '{}': no valid checkpoint under checkpoints/", dir.string());
    return (fs::path(*ckpt) / "model.safetensors").string();
  }
  std::error_code ec;
  if (fs::is_directory(which, ec)) {
    const auto why = train::CheckpointStore::validate(which, {"model.safetensors"});
    if (!why.empty()) throw_input_error("weights: checkpoint '{}' is not usable: {}", which, why);
    return (fs::path(which) / "model.safetensors").string();
  }
  if (!is_file(which)) throw_input_error("weights: '{}' does not exist", which);
  return which;
}

}  // namespace

RunArtifacts load_run(const std::string& dir_str, const LoadRunOptions& options) {
  const fs::path dir(dir_str);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw_input_error("run directory '{}' does not exist", dir_str);
  RunArtifacts run;
  run.dir = dir_str;
  if (is_file(dir / "config.yaml")) run.config = Config::load_resolved((dir / "config.yaml").string());

  if (!is_file(dir / "model.json")) {
    throw_input_error("run '{}' has no model.json (written when a stage task starts; see docs/model.md)", dir_str);
  }
  const nlohmann::json spec = read_json_file((dir / "model.json").string(), "run model spec");
  run.model = JanusModel(model_options_from_spec(spec));
  run.weights = pick_weights(dir, options.weights);
  LoadOptions lo;  // strict: every tensor, matching shapes
  // Training-only modules a stage task adds to the model (stage 1's VQGAN discriminator "vq_disc") are dropped.
  lo.rename = [](const std::string& k) { return k.rfind("vq_disc.", 0) == 0 ? std::string() : k; };
  const auto report = load_module(*run.model, run.weights, lo);
  spdlog::debug("load_run {}: {}", run.weights, report.summary());
  run.model->to(options.device);
  run.model->eval();

  if (is_file(dir / "tokenizer.model")) {
    run.tokenizer = std::make_shared<const Tokenizer>(Tokenizer::load((dir / "tokenizer.model").string()));
    if (run.tokenizer->vocab_size() != run.model->options.text.vocab_size()) {
      throw_input_error("run '{}': tokenizer.model has {} pieces but the model's text vocabulary is {}", dir_str,
                        run.tokenizer->vocab_size(), run.model->options.text.vocab_size());
    }
  } else {
    throw_input_error("run '{}' has no tokenizer.model", dir_str);
  }

  if (is_file(dir / "answers.json")) {
    const auto j = read_json_file((dir / "answers.json").string(), "answer vocabulary");
    try {
      run.answers = j.get<std::vector<std::string>>();
    } catch (const nlohmann::json::exception& e) {
      throw_input_error("'{}/answers.json' must be a JSON list of strings: {}", dir_str, e.what());
    }
  }
  const auto heads = run.model->options.num_answers;
  if (heads > 0 && static_cast<int64_t>(run.answers.size()) != heads) {
    throw_input_error("run '{}': the VQA head has {} answers but answers.json lists {}", dir_str, heads,
                      run.answers.size());
  }
  return run;
}

void write_run_artifacts(const std::string& dir, const JanusModelOptions& model, const std::string& tokenizer_path,
                         const std::vector<std::string>& answers) {
  fs::create_directories(dir);
  write_file_atomic((fs::path(dir) / "model.json").string(), model_spec(model).dump(2) + "\n");
  if (!tokenizer_path.empty()) {
    const auto src = fs::path(tokenizer_path);
    const auto file = fs::is_directory(src) ? src / "tokenizer.model" : src;
    const auto dst = fs::path(dir) / "tokenizer.model";
    if (fs::weakly_canonical(file) != fs::weakly_canonical(dst)) {
      write_file_atomic(dst.string(), read_file(file.string()));
    }
  }
  if (!answers.empty()) {
    write_file_atomic((fs::path(dir) / "answers.json").string(), nlohmann::json(answers).dump() + "\n");
  }
}

}  // namespace janus
