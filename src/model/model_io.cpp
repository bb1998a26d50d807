#include "janus/model/model_io.h"

#include <filesystem>

#include "janus/core/error.h"
#include "janus/core/fs.h"
#include "janus/core/json_file.h"
#include "janus/io/module_io.h"

namespace janus {

namespace {
// The architecture overrides on top of a flavour (ModelConfig's router, fusion, embed_pool, nlvr2_head, vision_stem,
// gen_depth, caption_decoder and vq_* fields), from the config or from model.json.
void apply(JanusModelOptions& o, const ModelConfig& v, const std::string& where) {
  o.router_shared = v.router == "shared";
  o.fusion_dense = v.fusion == "dense";
  o.embed_pool = v.embed_pool;
  o.nlvr2_head = v.nlvr2_head;
  o.image_pos = v.image_pos;
  o.image_local_tokens = v.image_local_tokens;
  if (v.vision_stem != "patch" && v.vision_stem != "conv")
    throw InputError(fmt::format("{}vision_stem must be patch or conv, got '{}'", where, v.vision_stem));
  o.vision.stem(v.vision_stem);
  if (v.vq_downsample != 0) {
    const int64_t f = v.vq_downsample;
    int64_t levels = 0;
    while ((int64_t{1} << levels) < f) ++levels;
    if ((int64_t{1} << levels) != f || f < 2) {
      throw InputError(fmt::format("{}vq_downsample must be a power of two >= 2 (or 0), got {}", where, f));
    }
    // Keep the flavour's channel multipliers for the first `levels` resolutions and its widest for the last.
    auto cm = o.vq.ch_mult();
    std::vector<int64_t> out(cm.begin(), cm.begin() + std::min<int64_t>(levels, static_cast<int64_t>(cm.size()) - 1));
    while (static_cast<int64_t>(out.size()) < levels) out.push_back(cm[cm.size() - 2]);
    out.push_back(cm.back());
    o.vq.ch_mult(out);
  }
  if (v.vq_ch != 0) {
    if (v.vq_ch % o.vq.num_groups() != 0) {
      throw InputError(fmt::format("{}vq_ch {} is not a multiple of the VQ-VAE's GroupNorm groups {}", where, v.vq_ch,
                                   o.vq.num_groups()));
    }
    o.vq.ch(v.vq_ch);
  }
  if (v.vq_encoder != "conv" && v.vq_encoder != "cell")
    throw InputError(fmt::format("{}vq_encoder must be conv or cell, got '{}'", where, v.vq_encoder));
  o.vq.encoder(v.vq_encoder);
  if (v.vq_codebook_size < 0)
    throw InputError(fmt::format("{}vq_codebook_size must be >= 0, got {}", where, v.vq_codebook_size));
  if (v.vq_codebook_size > 0) o.vq.codebook_size(v.vq_codebook_size);
  if (v.gen_depth < 0) throw InputError(fmt::format("{}gen_depth must be >= 0, got {}", where, v.gen_depth));
  if (v.gen_depth > 0) o.causal_depth = v.gen_depth;
  o.caption_decoder = v.caption_decoder;
  o.gen_code_pos = v.gen_code_pos;  // checked by JanusModelOptions::validate(), as nlvr2_head
  o.gen_text = v.gen_text;
  if (v.vq_codebook == "ema")
    o.vq.ema(true);
  else if (v.vq_codebook == "gradient")
    o.vq.ema(false);
  else if (v.vq_codebook != "flavour")
    throw InputError(fmt::format("{}vq_codebook must be flavour, gradient or ema, got '{}'", where, v.vq_codebook));
  if (v.vq_dead_code_threshold > 0.0) {
    if (!o.vq.ema()) {
      throw InputError(fmt::format("{}vq_dead_code_threshold {} needs the EMA codebook (vq_codebook: ema)", where,
                                   v.vq_dead_code_threshold));
    }
    o.vq.dead_code_threshold(v.vq_dead_code_threshold);
  }
}
}  // namespace

JanusModelOptions model_options(const ModelConfig& cfg, int64_t tokenizer_vocab) {
  const int64_t vocab = cfg.vocab_size > 0 ? cfg.vocab_size : tokenizer_vocab;
  if (vocab <= 0)
    throw InputError("model.vocab_size is 0 and no tokenizer gives a vocabulary size (set data.tokenizer)");
  auto o = model_flavour(cfg.flavour, vocab, cfg.image_size);
  o.num_answers = cfg.num_answers;
  o.num_classes = cfg.num_classes;
  apply(o, cfg, "model.");
  o.text.word_init_std(cfg.text_word_init_std);  // init only: not part of model.json
  o.gen_prompt_len = std::min(cfg.max_text_len, o.text.max_positions());
  o.validate();
  return o;
}

nlohmann::json model_spec(const JanusModelOptions& o) {
  const int64_t f = int64_t{1} << (o.vq.ch_mult().size() - 1);
  return {{"format", "janus-model-1"},
          {"flavour", o.flavour},
          {"vocab_size", o.text.vocab_size()},
          {"image_size", o.image_size()},
          {"num_answers", o.num_answers},
          {"num_classes", o.num_classes},
          {"router", o.router_shared ? "shared" : "dynamic"},
          {"fusion", o.fusion_dense ? "dense" : "dual_stream"},
          {"embed_pool", o.embed_pool},
          {"nlvr2_head", o.nlvr2_head},
          {"image_pos", o.image_pos},
          {"image_local_tokens", o.image_local_tokens},
          {"gen_prompt_len", o.gen_prompt_len},
          {"vision_stem", o.vision.stem()},
          {"vq_downsample", f},
          {"vq_ch", o.vq.ch()},
          {"vq_codebook", o.vq.ema() ? "ema" : "gradient"},
          {"vq_dead_code_threshold", o.vq.dead_code_threshold()},
          {"vq_encoder", o.vq.encoder()},
          {"vq_codebook_size", o.vq.codebook_size()},
          {"gen_depth", o.causal_depth},
          {"caption_decoder", o.caption_decoder},
          {"gen_code_pos", o.gen_code_pos},
          {"gen_text", o.gen_text}};
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
  // Architecture overrides (absent in model.json files written before they existed: the flavour's).
  ModelConfig v;  // its defaults are the flavour's
  auto opt_string = [&](const char* key, std::initializer_list<const char*> allowed, std::string& field) {
    if (!spec.contains(key)) return;
    const auto& j = spec.at(key);
    if (j.is_string()) {
      for (const char* a : allowed) {
        if (j.get<std::string>() == a) {
          field = a;
          return;
        }
      }
    }
    std::string list;
    for (const char* a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
    throw InputError(fmt::format("model.json: '{}' is {}, expected one of {}", key, j.dump(), list));
  };
  opt_string("router", {"dynamic", "shared"}, v.router);
  opt_string("fusion", {"dual_stream", "dense"}, v.fusion);
  opt_string("embed_pool", {"token", "mean"}, v.embed_pool);
  opt_string("image_pos", {"none", "sincos"}, v.image_pos);
  v.nlvr2_head = "joint";  // absent before 2026-12-07: one fusion over both images
  opt_string("nlvr2_head", {"pair", "joint"}, v.nlvr2_head);
  if (spec.contains("image_local_tokens")) {
    if (!spec.at("image_local_tokens").is_boolean())
      throw InputError("model.json: 'image_local_tokens' must be a boolean");
    v.image_local_tokens = spec.at("image_local_tokens").get<bool>();
  }
  opt_string("vision_stem", {"patch", "conv"}, v.vision_stem);
  opt_string("vq_codebook", {"gradient", "ema"}, v.vq_codebook);
  opt_string("vq_encoder", {"conv", "cell"}, v.vq_encoder);
  opt_string("caption_decoder", {"shared", "own"}, v.caption_decoder);
  opt_string("gen_code_pos", {"1d", "2d"}, v.gen_code_pos);
  opt_string("gen_text", {"embed", "encoder"}, v.gen_text);
  if (spec.contains("vq_codebook_size")) {
    if (!spec.at("vq_codebook_size").is_number_integer() || spec.at("vq_codebook_size").get<int64_t>() < 1)
      throw InputError("model.json: 'vq_codebook_size' must be an integer >= 1");
    v.vq_codebook_size = spec.at("vq_codebook_size").get<int64_t>();
  }
  if (spec.contains("gen_depth")) {
    if (!spec.at("gen_depth").is_number_integer() || spec.at("gen_depth").get<int64_t>() < 1)
      throw InputError("model.json: 'gen_depth' must be an integer >= 1");
    v.gen_depth = spec.at("gen_depth").get<int64_t>();
  }
  if (spec.contains("vq_downsample")) {
    if (!spec.at("vq_downsample").is_number_integer()) throw InputError("model.json: 'vq_downsample' must be an integer");
    v.vq_downsample = spec.at("vq_downsample").get<int64_t>();
  }
  if (spec.contains("vq_ch")) {
    if (!spec.at("vq_ch").is_number_integer() || spec.at("vq_ch").get<int64_t>() < 1)
      throw InputError("model.json: 'vq_ch' must be an integer >= 1");
    v.vq_ch = spec.at("vq_ch").get<int64_t>();
  }
  if (spec.contains("vq_dead_code_threshold")) {
    if (!spec.at("vq_dead_code_threshold").is_number() || spec.at("vq_dead_code_threshold").get<double>() < 0)
      throw InputError("model.json: 'vq_dead_code_threshold' must be a number >= 0");
    v.vq_dead_code_threshold = spec.at("vq_dead_code_threshold").get<double>();
  }
  apply(o, v, "model.json: ");
  if (spec.contains("gen_prompt_len")) {  // absent before 2026-12-06: prompts as given
    if (!spec.at("gen_prompt_len").is_number_integer())
      throw InputError("model.json: 'gen_prompt_len' must be an integer");
    o.gen_prompt_len = spec.at("gen_prompt_len").get<int64_t>();
  }
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
