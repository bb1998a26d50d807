#include "janus/model/model_io.h"

#include <filesystem>

#include "janus/core/error.h"
#include "janus/core/fs.h"
#include "janus/core/json_file.h"
#include "janus/io/module_io.h"

namespace janus {

JanusModelOptions model_options(const ModelConfig& cfg, int64_t tokenizer_vocab) {
  const int64_t vocab = cfg.vocab_size > 0 ? cfg.vocab_size : tokenizer_vocab;
  if (vocab <= 0)
    throw InputError("model.vocab_size is 0 and no tokenizer gives a vocabulary size (set data.tokenizer)");
  auto o = model_flavour(cfg.flavour, vocab, cfg.image_size);
  o.num_answers = cfg.num_answers;
  o.num_classes = cfg.num_classes;
  o.validate();
  return o;
}

nlohmann::json model_spec(const JanusModelOptions& o) {
  return {{"format", "janus-model-1"},    {"flavour", o.flavour},         {"vocab_size", o.text.vocab_size()},
          {"image_size", o.image_size()}, {"num_answers", o.num_answers}, {"num_classes", o.num_classes}};
}

JanusModelOptions model_options_from_spec(const nlohmann::json& spec) {
  auto get = [&](const char* key) -> const nlohmann::json& {
    if (!spec.is_object() || !spec.contains(key)) throw InputError(fmt::format("model.json: missing '{}'", key));
    return spec.at(key);
  };
  if (get("format") != "janus-model-1")
    throw InputError(fmt::format("model.json: unknown format {}", get("format").dump()));
  for (const char* k : {"vocab_size", "image_size", "num_answers", "num_classes"}) {
    if (!get(k).is_number_integer()) throw InputError(fmt::format("model.json: '{}' must be an integer", k));
  }
  if (!get("flavour").is_string()) throw InputError("model.json: 'flavour' must be a string");
  auto o = model_flavour(get("flavour").get<std::string>(), get("vocab_size").get<int64_t>(),
                         get("image_size").get<int64_t>());
  o.num_answers = get("num_answers").get<int64_t>();
  o.num_classes = get("num_classes").get<int64_t>();
  if (o.num_answers < 0 || o.num_classes < 0) throw InputError("model.json: num_answers/num_classes must be >= 0");
  o.validate();
  return o;
}

void save_model(const JanusModelImpl& model, const std::string& dir) {
  std::filesystem::create_directories(dir);
  const auto spec = model_spec(model.options);
  save_module(model, dir + "/model.safetensors", {{"janus_model", spec.dump()}});
  write_file_atomic(dir + "/model.json", spec.dump(2) + "\n");
}

JanusModel load_model(const std::string& dir) {
  const nlohmann::json spec = read_json_file(dir + "/model.json", "model spec");
  JanusModel model(model_options_from_spec(spec));
  load_module(*model, dir + "/model.safetensors");
  return model;
}

}  // namespace janus
