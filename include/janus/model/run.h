#pragma once
// A run directory: what janus_train leaves behind and what every consumer (janus_eval, janus::Pipeline,
// janus_quantize, janus_serve) loads. Layout:
//
//   <run>/config.yaml                       resolved config (written by the trainer)
//   <run>/model.json                        model spec (model_spec), written by the stage task at start
//   <run>/tokenizer.model                   copy of the SentencePiece model the run used
//   <run>/answers.json                      VQA answer vocabulary, ["yes", "no", "2", ...] (index = head output);
//                                           only when model.num_answers > 0
//   <run>/final/model.safetensors           final weights (trainer); final/ema.safetensors with EMA
//   <run>/checkpoints/step_NNNNNNNNN/       checkpoints (model.safetensors inside, manifest-verified)
//
// A bare model directory written by save_model (model.json + model.safetensors, optionally tokenizer.model and
// answers.json beside them) is accepted too.
#include <memory>
#include <string>
#include <vector>

#include <c10/core/Device.h>

#include "janus/core/config.h"
#include "janus/data/tokenizer.h"
#include "janus/model/janus_model.h"

namespace janus {

struct LoadRunOptions {
  // Which weights: "auto" (train::run_weights_file with prefer_ema, the rule train.init_from shares:
  // final/ema.safetensors, else final/model.safetensors, else <dir>/model.safetensors, else the newest checkpoint
  // valid for --resume auto), "final", "ema", "latest" (train::newest_valid_checkpoint), or a path to a
  // .safetensors file or checkpoint directory.
  std::string weights = "auto";
  c10::Device device = c10::kCPU;
};

struct RunArtifacts {
  std::string dir;
  Config config;                                // the run's resolved config (paths not required to exist)
  JanusModel model{nullptr};                    // in eval mode, on options.device
  std::shared_ptr<const Tokenizer> tokenizer;   // thread-safe encode/decode
  std::vector<std::string> answers;             // empty unless the model has a VQA head
  std::string weights;                          // the file the weights came from
};

// Loads a run or model directory. InputError naming the missing/corrupt file on any problem.
RunArtifacts load_run(const std::string& dir, const LoadRunOptions& options = {});

// Writes model.json, tokenizer.model (copied from `tokenizer_path` unless empty) and answers.json (when
// non-empty) into `dir`, atomically each. The stage tasks call this when a run starts.
void write_run_artifacts(const std::string& dir, const JanusModelOptions& model, const std::string& tokenizer_path,
                         const std::vector<std::string>& answers);

}  // namespace janus
