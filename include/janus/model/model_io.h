#pragma once
// Whole-model save/load: <dir>/model.safetensors (every parameter and buffer) + <dir>/model.json (how to rebuild it).
#include <string>

#include <nlohmann/json.hpp>

#include "janus/core/config.h"
#include "janus/model/janus_model.h"

namespace janus {

// Options from the config's model section: a flavour plus overrides. vocab_size: model.vocab_size, or
// `tokenizer_vocab` when that is 0.
JanusModelOptions model_options(const ModelConfig& cfg, int64_t tokenizer_vocab);

nlohmann::json model_spec(const JanusModelOptions& o);                  // what model.json holds
JanusModelOptions model_options_from_spec(const nlohmann::json& spec);  // InputError naming bad fields

void save_model(const JanusModelImpl& model, const std::string& dir);
// Rebuilds the model from model.json and loads model.safetensors strictly.
JanusModel load_model(const std::string& dir);

}  // namespace janus
