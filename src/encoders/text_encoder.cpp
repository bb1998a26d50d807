#include "janus/encoders/text_encoder.h"

#include <regex>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "janus/core/checkpoint_fn.h"
#include "janus/core/error.h"
#include "janus/io/module_io.h"

namespace janus {

namespace {
torch::nn::LayerNorm layer_norm(const TextEncoderOptions& o) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.dim()}).eps(o.norm_eps()));
}
}  // namespace

TextEncoderOptions TextEncoderOptions::flavour(const std::string& name) {
  TextEncoderOptions o;
  if (name == "tiny") return o.dim(128).depth(2).heads(2).mlp_dim(512);
  if (name == "small") return o.dim(512).depth(4).heads(8).mlp_dim(2048);
  if (name == "base") return o.dim(768).depth(12).heads(12).mlp_dim(3072);
  if (name == "large") return o.dim(1024).depth(24).heads(16).mlp_dim(4096);
  throw InputError("text_encoder: unknown flavour '" + name + "' (tiny, small, base, large)");
}

// ---- attention / layer -------------------------------------------------------------------------------------
TextAttentionImpl::TextAttentionImpl(int64_t dim_, int64_t heads_) : dim(dim_), heads(heads_) { reset(); }

void TextAttentionImpl::reset() {
  query = register_module("query", torch::nn::Linear(dim, dim));
  key = register_module("key", torch::nn::Linear(dim, dim));
  value = register_module("value", torch::nn::Linear(dim, dim));
  out = register_module("out", torch::nn::Linear(dim, dim));
}

at::Tensor TextAttentionImpl::forward(const at::Tensor& x, const at::Tensor& mask) {
  const int64_t B = x.size(0), L = x.size(1), hd = dim / heads;
  const auto split = [&](const at::Tensor& t) { return t.view({B, L, heads, hd}).transpose(1, 2); };
  std::optional<at::Tensor> m;
  if (mask.defined()) m = mask;
  auto o =
      at::scaled_dot_product_attention(split(query->forward(x)), split(key->forward(x)), split(value->forward(x)), m);
  return out->forward(o.transpose(1, 2).reshape({B, L, dim}));
}

TextLayerImpl::TextLayerImpl(const TextEncoderOptions& options_) : options(options_) { reset(); }

void TextLayerImpl::reset() {
  attn = register_module("attn", TextAttention(options.dim(), options.heads()));
  attn_norm = register_module("attn_norm", layer_norm(options));
  mlp = register_module("mlp", Mlp(MlpOptions(options.dim(), options.mlp_dim()).act(options.act())));
  mlp_norm = register_module("mlp_norm", layer_norm(options));
}

at::Tensor TextLayerImpl::forward(const at::Tensor& x, const at::Tensor& mask) {
  auto h = attn_norm->forward(x + attn->forward(x, mask));
  return mlp_norm->forward(h + mlp->forward(h));
}

// ---- embeddings / MLM head ---------------------------------------------------------------------------------
TextEmbeddingsImpl::TextEmbeddingsImpl(const TextEncoderOptions& options_) : options(options_) { reset(); }

void TextEmbeddingsImpl::reset() {
  word = register_module("word", torch::nn::Embedding(options.vocab_size(), options.dim()));
  position = register_module("position", torch::nn::Embedding(options.max_positions(), options.dim()));
  if (options.type_vocab_size() > 0) {
    token_type = register_module("token_type", torch::nn::Embedding(options.type_vocab_size(), options.dim()));
  }
  norm = register_module("norm", layer_norm(options));
}

at::Tensor TextEmbeddingsImpl::forward(const at::Tensor& ids, const at::Tensor& token_type_ids) {
  const int64_t L = ids.size(1);
  auto x = word->forward(ids) + position->forward(at::arange(L, ids.options())).unsqueeze(0);
  if (token_type) {
    x = x + (token_type_ids.defined() ? token_type->forward(token_type_ids)
                                      : token_type->weight.select(0, 0).view({1, 1, options.dim()}));
  }
  return norm->forward(x);
}

MlmHeadImpl::MlmHeadImpl(const TextEncoderOptions& options_) : options(options_) { reset(); }

void MlmHeadImpl::reset() {
  transform = register_module("transform", torch::nn::Linear(options.dim(), options.dim()));
  norm = register_module("norm", layer_norm(options));
  bias = register_parameter("bias", at::zeros({options.vocab_size()}));
}

at::Tensor MlmHeadImpl::forward(const at::Tensor& x, const at::Tensor& decoder_weight) {
  auto h = norm->forward(activation(transform->forward(x), options.act()));
  return at::linear(h, decoder_weight, bias);
}

// ---- encoder -----------------------------------------------------------------------------------------------
TextEncoderImpl::TextEncoderImpl(const TextEncoderOptions& options_) : options(options_) { reset(); }

void TextEncoderImpl::reset() {
  const auto& o = options;
  if (!(o.word_init_std() > 0.0)) {
    throw InputError(fmt::format("text_encoder: word_init_std must be > 0, got {}", o.word_init_std()));
  }
  if (o.dim() <= 0 || o.heads() <= 0 || o.dim() % o.heads() != 0 || o.vocab_size() <= 0 || o.max_positions() <= 0 ||
      o.mlp_dim() <= 0 || o.depth() < 0 || o.type_vocab_size() < 0) {
    throw InputError(
        fmt::format("text_encoder: bad shape (dim {}, heads {}, vocab {}, max_positions {}, mlp_dim {}, depth {})",
                    o.dim(), o.heads(), o.vocab_size(), o.max_positions(), o.mlp_dim(), o.depth()));
  }
  check_activation(o.act());
  embeddings = register_module("embeddings", TextEmbeddings(o));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.depth(); ++i) layers->push_back(TextLayer(o));
  if (o.pooler()) pooler = register_module("pooler", torch::nn::Linear(o.dim(), o.dim()));
  if (o.mlm_head()) mlm = register_module("mlm", MlmHead(o));
  reset_parameters();
}

void TextEncoderImpl::reset_parameters() {
  torch::NoGradGuard g;
  for (auto& m : modules(/*include_self=*/false)) {
    if (auto* lin = m->as<torch::nn::Linear>()) {
      lin->weight.normal_(0.0, 0.02);
      if (lin->bias.defined()) lin->bias.zero_();
    } else if (auto* emb = m->as<torch::nn::Embedding>()) {
      emb->weight.normal_(0.0, 0.02);
    }
  }
  embeddings->word->weight.normal_(0.0, options.word_init_std());
}

TextOutput TextEncoderImpl::forward(const at::Tensor& input_ids, const std::optional<at::Tensor>& attention_mask,
                                    const std::optional<at::Tensor>& token_type_ids) {
  TORCH_CHECK(input_ids.dim() == 2 && input_ids.scalar_type() == at::kLong,
              "text_encoder: input_ids must be int64 [B, L], got ", input_ids.scalar_type(), " ", input_ids.sizes());
  const int64_t B = input_ids.size(0), L = input_ids.size(1);
  TORCH_CHECK(L >= 1 && L <= options.max_positions(), "text_encoder: sequence length ", L,
              " is outside [1, max_positions ", options.max_positions(), "]");
  if (input_ids.numel() > 0) {
    const auto lo = input_ids.min().item<int64_t>(), hi = input_ids.max().item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi < options.vocab_size(), "text_encoder: token ids span [", lo, ", ", hi,
                "] but vocab_size is ", options.vocab_size());
  }
  at::Tensor types;
  if (token_type_ids && token_type_ids->defined()) {
    TORCH_CHECK(token_type_ids->sizes() == input_ids.sizes(), "text_encoder: token_type_ids ", token_type_ids->sizes(),
                " must match input_ids ", input_ids.sizes());
    TORCH_CHECK(options.type_vocab_size() > 0, "text_encoder: token_type_ids given but type_vocab_size is 0");
    types = token_type_ids->to(at::kLong);
    TORCH_CHECK(types.min().item<int64_t>() >= 0 && types.max().item<int64_t>() < options.type_vocab_size(),
                "text_encoder: token_type_ids outside [0, ", options.type_vocab_size(), ")");
  }
  at::Tensor mask;
  if (attention_mask && attention_mask->defined()) {
    TORCH_CHECK(attention_mask->sizes() == input_ids.sizes(), "text_encoder: attention_mask ", attention_mask->sizes(),
                " must match input_ids ", input_ids.sizes());
    const auto keep = attention_mask->ne(0);
    TORCH_CHECK(keep.any(1).all().item<bool>(), "text_encoder: a sequence in the batch has no unmasked token");
    mask = keep.view({B, 1, 1, L});
  }
  auto x = embeddings->forward(input_ids, types);
  const bool ckpt = use_checkpoint(activation_checkpointing_, *this);
  for (size_t i = 0; i < layers->size(); ++i) {
    auto layer = layers->ptr<TextLayerImpl>(i);
    if (ckpt)
      x = checkpoint([layer, mask](const at::Tensor& t) { return layer->forward(t, mask); }, x,
                     trainable_parameters(*layer));
    else
      x = layer->forward(x, mask);
  }
  auto first = x.select(1, 0);
  return {x, pooler ? at::tanh(pooler->forward(first)) : first};
}

at::Tensor TextEncoderImpl::mlm_logits(const at::Tensor& tokens) {
  TORCH_CHECK(mlm, "text_encoder: built without mlm_head");
  TORCH_CHECK(tokens.dim() == 3 && tokens.size(2) == options.dim(), "text_encoder: mlm_logits expects [B, L, ",
              options.dim(), "], got ", tokens.sizes());
  return mlm->forward(tokens, embeddings->word->weight);
}

// ---- HF key map --------------------------------------------------------------------------------------------
std::string bert_key_to_janus(const std::string& hf_key) {
  std::string k = hf_key;
  if (k.rfind("bert.", 0) == 0) k = k.substr(5);
  static const std::vector<std::pair<std::regex, std::string>> rules = {
      {std::regex(R"(^embeddings\.word_embeddings\.)"), "embeddings.word."},
      {std::regex(R"(^embeddings\.position_embeddings\.)"), "embeddings.position."},
      {std::regex(R"(^embeddings\.token_type_embeddings\.)"), "embeddings.token_type."},
      {std::regex(R"(^embeddings\.LayerNorm\.)"), "embeddings.norm."},
      {std::regex(R"(^encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.)"), "layers.$1.attn.$2."},
      {std::regex(R"(^encoder\.layer\.(\d+)\.attention\.output\.dense\.)"), "layers.$1.attn.out."},
      {std::regex(R"(^encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.)"), "layers.$1.attn_norm."},
      {std::regex(R"(^encoder\.layer\.(\d+)\.intermediate\.dense\.)"), "layers.$1.mlp.fc1."},
      {std::regex(R"(^encoder\.layer\.(\d+)\.output\.dense\.)"), "layers.$1.mlp.fc2."},
      {std::regex(R"(^encoder\.layer\.(\d+)\.output\.LayerNorm\.)"), "layers.$1.mlp_norm."},
      {std::regex(R"(^pooler\.dense\.)"), "pooler."},
      {std::regex(R"(^cls\.predictions\.transform\.dense\.)"), "mlm.transform."},
      {std::regex(R"(^cls\.predictions\.transform\.LayerNorm\.)"), "mlm.norm."},
      {std::regex(R"(^cls\.predictions\.bias$)"), "mlm.bias"},
  };
  if (k.rfind("cls.predictions.decoder.", 0) == 0) return "";  // tied to embeddings.word.weight / mlm.bias
  if (k == "embeddings.position_ids" || k == "embeddings.token_type_ids") return "";  // buffers in older files
  for (const auto& [re, rep] : rules) {
    if (std::regex_search(k, re)) return std::regex_replace(k, re, rep, std::regex_constants::format_first_only);
  }
  return hf_key;
}

void load_hf_bert(TextEncoderImpl& encoder, const std::string& path) {
  LoadOptions lo;
  lo.rename = bert_key_to_janus;
  load_module(encoder, path, lo);
}

TextEncoderOptions text_encoder_options_from_json(const nlohmann::json& j) {
  TextEncoderOptions o;
  if (j.contains("flavour") && j["flavour"].is_string() && !j["flavour"].get<std::string>().empty()) {
    o = TextEncoderOptions::flavour(j["flavour"].get<std::string>());
  }
  for (const auto& [k, v] : j.items()) {
    if (k == "flavour") continue;
    if (k == "vocab_size")
      o.vocab_size(v.get<int64_t>());
    else if (k == "dim")
      o.dim(v.get<int64_t>());
    else if (k == "depth")
      o.depth(v.get<int64_t>());
    else if (k == "heads")
      o.heads(v.get<int64_t>());
    else if (k == "mlp_dim")
      o.mlp_dim(v.get<int64_t>());
    else if (k == "max_positions")
      o.max_positions(v.get<int64_t>());
    else if (k == "type_vocab_size")
      o.type_vocab_size(v.get<int64_t>());
    else if (k == "norm_eps")
      o.norm_eps(v.get<double>());
    else if (k == "act")
      o.act(v.get<std::string>());
    else if (k == "pooler")
      o.pooler(v.get<bool>());
    else if (k == "mlm_head")
      o.mlm_head(v.get<bool>());
    else
      throw InputError("text_encoder: unknown option '" + k + "'");
  }
  return o;
}

}  // namespace janus
