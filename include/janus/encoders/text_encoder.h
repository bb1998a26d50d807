#pragma once
// Bidirectional (BERT-style, post-LN) text encoder with an MLM head whose decoder is tied to the word embeddings.
//
// Loads HF transformers BertModel / BertForMaskedLM weights through one key map, bert_key_to_janus():
//   [bert.]embeddings.word_embeddings            -> embeddings.word
//   [bert.]embeddings.position_embeddings        -> embeddings.position
//   [bert.]embeddings.token_type_embeddings      -> embeddings.token_type
//   [bert.]embeddings.LayerNorm                  -> embeddings.norm
//   [bert.]encoder.layer.N.attention.self.{query,key,value} -> layers.N.attn.{query,key,value}
//   [bert.]encoder.layer.N.attention.output.dense            -> layers.N.attn.out
//   [bert.]encoder.layer.N.attention.output.LayerNorm        -> layers.N.attn_norm
//   [bert.]encoder.layer.N.intermediate.dense                -> layers.N.mlp.fc1
//   [bert.]encoder.layer.N.output.dense                      -> layers.N.mlp.fc2
//   [bert.]encoder.layer.N.output.LayerNorm                  -> layers.N.mlp_norm
//   [bert.]pooler.dense                          -> pooler
//   cls.predictions.transform.dense              -> mlm.transform
//   cls.predictions.transform.LayerNorm          -> mlm.norm
//   cls.predictions.bias                         -> mlm.bias
//   cls.predictions.decoder.{weight,bias}        -> dropped (tied: word embeddings and mlm.bias)
#include <cstdint>
#include <optional>
#include <string>

#include <ATen/ATen.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>
#include <nlohmann/json_fwd.hpp>

#include "janus/core/layers.h"

namespace janus {

struct TextEncoderOptions {
  TORCH_ARG(int64_t, vocab_size) = 30522;
  TORCH_ARG(int64_t, dim) = 768;
  TORCH_ARG(int64_t, depth) = 12;
  TORCH_ARG(int64_t, heads) = 12;
  TORCH_ARG(int64_t, mlp_dim) = 3072;
  TORCH_ARG(int64_t, max_positions) = 512;
  TORCH_ARG(int64_t, type_vocab_size) = 2;  // 0: no token-type embeddings
  TORCH_ARG(double, norm_eps) = 1e-12;
  TORCH_ARG(std::string, act) = "gelu";
  TORCH_ARG(bool, pooler) = true;    // BertPooler: tanh(Linear(first token))
  TORCH_ARG(bool, mlm_head) = true;  // transform + tied decoder
  // Std of the word-embedding init (BERT: 0.02, like every other weight). A tiny model trained from scratch learns
  // contrastive alignment faster from N(0, 1) word vectors (nn.Embedding's default); see docs/encoders.md.
  TORCH_ARG(double, word_init_std) = 0.02;

 public:
  // BERT shapes: "tiny" (128, 2, 2), "small" (512, 4, 8), "base" (768, 12, 12), "large" (1024, 24, 16).
  static TextEncoderOptions flavour(const std::string& name);
};

// Post-LN BERT self-attention with separate q/k/v projections.
class TextAttentionImpl : public torch::nn::Cloneable<TextAttentionImpl> {
 public:
  TextAttentionImpl(int64_t dim, int64_t heads);
  void reset() override;
  // x [B, L, D], mask bool [B, 1, 1, L] (true = attend) or undefined -> [B, L, D]
  at::Tensor forward(const at::Tensor& x, const at::Tensor& mask);

  int64_t dim, heads;
  torch::nn::Linear query{nullptr}, key{nullptr}, value{nullptr}, out{nullptr};
};
TORCH_MODULE(TextAttention);

class TextLayerImpl : public torch::nn::Cloneable<TextLayerImpl> {
 public:
  explicit TextLayerImpl(const TextEncoderOptions& options);
  void reset() override;
  // x = norm(x + attn(x)); x = norm(x + mlp(x)): [B, L, D] -> [B, L, D]
  at::Tensor forward(const at::Tensor& x, const at::Tensor& mask);

  TextEncoderOptions options;
  TextAttention attn{nullptr};
  torch::nn::LayerNorm attn_norm{nullptr};
  Mlp mlp{nullptr};
  torch::nn::LayerNorm mlp_norm{nullptr};
};
TORCH_MODULE(TextLayer);

// word + position (+ token type) embeddings, then LayerNorm.
class TextEmbeddingsImpl : public torch::nn::Cloneable<TextEmbeddingsImpl> {
 public:
  explicit TextEmbeddingsImpl(const TextEncoderOptions& options);
  void reset() override;
  // ids [B, L], token_type_ids [B, L] or undefined (zeros) -> [B, L, D]
  at::Tensor forward(const at::Tensor& ids, const at::Tensor& token_type_ids);

  TextEncoderOptions options;
  torch::nn::Embedding word{nullptr}, position{nullptr}, token_type{nullptr};
  torch::nn::LayerNorm norm{nullptr};
};
TORCH_MODULE(TextEmbeddings);

// BertLMPredictionHead: norm(act(transform(x))) @ word_embeddings^T + bias.
class MlmHeadImpl : public torch::nn::Cloneable<MlmHeadImpl> {
 public:
  explicit MlmHeadImpl(const TextEncoderOptions& options);
  void reset() override;
  // x [B, L, D], tied decoder weight [V, D] -> [B, L, V]
  at::Tensor forward(const at::Tensor& x, const at::Tensor& decoder_weight);

  TextEncoderOptions options;
  torch::nn::Linear transform{nullptr};
  torch::nn::LayerNorm norm{nullptr};
  at::Tensor bias;  // [V]
};
TORCH_MODULE(MlmHead);

struct TextOutput {
  at::Tensor tokens;  // [B, L, D]
  at::Tensor pooled;  // [B, D]: tanh(pooler(tokens[:, 0])) with the pooler, else tokens[:, 0]
};

class TextEncoderImpl : public torch::nn::Cloneable<TextEncoderImpl> {
 public:
  explicit TextEncoderImpl(const TextEncoderOptions& options = {});
  void reset() override;
  void reset_parameters();  // BERT init: normal(0.02) weights, zero biases

  // input_ids [B, L] int64; attention_mask [B, L] (nonzero = real token, 0 = padding); token_type_ids [B, L].
  // Padding keys are masked out; every row needs at least one real token.
  TextOutput forward(const at::Tensor& input_ids, const std::optional<at::Tensor>& attention_mask = std::nullopt,
                     const std::optional<at::Tensor>& token_type_ids = std::nullopt);
  // tokens [B, L, D] -> logits [B, L, vocab] (decoder weight = embeddings.word.weight)
  at::Tensor mlm_logits(const at::Tensor& tokens);
  // Activation checkpointing of every block in training forwards (grad enabled, training mode): blocks keep only
  // their input and recompute in backward (janus/core/checkpoint_fn.h). Not an option: a runtime switch, off by
  // default, copied by clone(); never affects eval/no-grad forwards.
  void set_activation_checkpointing(bool on) { activation_checkpointing_ = on; }
  bool activation_checkpointing() const { return activation_checkpointing_; }

  TextEncoderOptions options;
  TextEmbeddings embeddings{nullptr};
  torch::nn::ModuleList layers{nullptr};
  torch::nn::Linear pooler{nullptr};
  MlmHead mlm{nullptr};  // only with mlm_head

 private:
  bool activation_checkpointing_ = false;
};
TORCH_MODULE(TextEncoder);

// HF BertModel / BertForMaskedLM key -> TextEncoder key ("" = drop). Unknown keys are returned unchanged
// (a strict load then reports them).
std::string bert_key_to_janus(const std::string& hf_key);
// Loads an HF BERT safetensors file through bert_key_to_janus (strict).
void load_hf_bert(TextEncoderImpl& encoder, const std::string& path);

TextEncoderOptions text_encoder_options_from_json(const nlohmann::json& j);

}  // namespace janus
