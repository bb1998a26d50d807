#pragma once
// JanusModel: the unified multimodal model with decoupled visual encoding (docs/model.md).
//
//   understanding: image -> ViT ("vision") -> DynamicRouter ("router") -> Adapter ("adapter") -> tokens [B, N, D]
//                  text  -> TextEncoder ("text") -> DynamicRouter -> Adapter                    -> tokens [B, L, D]
//     bidirectional DualStreamFusion stack ("fusion") over [cls, image, text] -> ITM / NLVR2 / VQA-classify heads
//     contrastive heads on the encoders' pooled vectors ("vision_proj", "text_proj", "logit_scale")
//   generation:    image -> VQ-VAE ("vq") -> codes -> code embeddings -> causal DualStreamFusion stack
//                  ("image_gen.backbone") -> image-code head -> codes -> VQ decoder -> image
//     the same causal stack, with an image prefix from the understanding path, is the text decoder for captions
//     and VQA answers (tied to image_gen.text_embed). With options.caption_decoder "own" the text decoder is a
//     second causal stack of the same shape ("caption_lm"), so captioning and text->image share no weights.
//
// The understanding ViT and the VQ tokenizer never share weights: generation losses give the ViT no gradient and
// understanding losses give the VQ-VAE and code embeddings none (tested).
#include <map>
#include <memory>
#include <optional>
#include <string>

#include <ATen/ATen.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include "janus/decoder/image_token_generator.h"
#include "janus/decoder/vqvae.h"
#include "janus/encoders/text_encoder.h"
#include "janus/encoders/vision_encoder.h"
#include "janus/fusion/fusion.h"
#include "janus/model/flavours.h"
#include "janus/router/adapter.h"
#include "janus/router/dynamic_router.h"

namespace janus {

// Token ids [B, L] int64 with a padding mask [B, L] bool (true = real token).
struct TextInput {
  at::Tensor ids;
  at::Tensor mask;
};

// Every task entry point returns its logits and, when targets were given, its loss (scalar).
struct TaskOutput {
  at::Tensor logits;
  at::Tensor loss;
  std::map<std::string, at::Tensor> extras;
};

struct ContrastiveOutput {
  at::Tensor image_embeds;  // [B, E], l2-normalised
  at::Tensor text_embeds;   // [B, E], l2-normalised
  at::Tensor logit_scale;   // scalar: exp(t), t clamped to <= ln(100)
  at::Tensor loss;          // symmetric InfoNCE over this batch
};

// Adapts the causal FusionTransformer to the generator's CausalBackbone interface.
class FusionBackboneImpl : public CausalBackbone {
 public:
  explicit FusionBackboneImpl(const FusionTransformerOptions& options);
  int64_t dim() const override { return net->options.block().dim(); }
  at::Tensor forward_causal(const at::Tensor& x) override;
  at::Tensor forward_step(const at::Tensor& x, CausalKVCache& cache) override;
  FusionTransformer net{nullptr};
};
TORCH_MODULE(FusionBackbone);

// The text decoder's own causal stack (JanusModelOptions::caption_decoder "own"): word embedding (tied to the LM
// head), position table and causal fusion blocks, shaped like image_gen's but separate from it.
class CaptionLMImpl : public torch::nn::Module {
 public:
  CaptionLMImpl(int64_t vocab, int64_t max_positions, const FusionTransformerOptions& backbone);
  torch::nn::Embedding text_embed{nullptr};
  at::Tensor pos_embed;  // [max_positions, dim]
  std::shared_ptr<FusionBackboneImpl> backbone;
};
TORCH_MODULE(CaptionLM);

class JanusModelImpl : public torch::nn::Cloneable<JanusModelImpl> {
 public:
  explicit JanusModelImpl(const JanusModelOptions& options);
  void reset() override;

  // ---- understanding features ----
  // images [B, 3, H, W] -> routed tokens [B, N, D]
  at::Tensor image_tokens(const at::Tensor& images);
  // text -> routed tokens [B, L, D]
  at::Tensor text_tokens(const TextInput& text);

  // Contrastive embeddings, each side alone (what contrastive() compares): images [B, 3, H, W] -> [B, E] and
  // text -> [B, E], l2-normalised. Retrieval and zero-shot classification embed the two sides separately.
  at::Tensor embed_images(const at::Tensor& images);
  at::Tensor embed_texts(const TextInput& text);

  // ---- task entry points (loss when targets are given) ----
  ContrastiveOutput contrastive(const at::Tensor& images, const TextInput& text);
  // labels [B] int64 (1 = match) -> logits [B, 2]
  TaskOutput itm(const at::Tensor& images, const TextInput& text, const at::Tensor& labels = {});
  // Teacher-forced captioning: logits [B, L-1, V] predicting text.ids[:, 1:]; loss over real tokens.
  TaskOutput caption(const at::Tensor& images, const TextInput& text);
  // Greedy caption decoding with the KV cache: [B, <= max_len] ids starting with bos.
  at::Tensor generate_caption(const at::Tensor& images, int64_t bos, int64_t eos, int64_t max_len);
  // Beam-search decoding with the KV cache over the causal stack, after [image tokens; prompt]:
  // images [B, 3, H, W], prompt [B, P] int64 (same length for every row, P >= 1) -> continuation [B, T] int64,
  // T <= max_new, rows padded with eos after their eos. Hypotheses end at eos; an image stops once `beam` have
  // ended (HF early stopping); its best by sum(log p) / generated_length^length_penalty wins (unfinished beams
  // compete when max_new runs out). beam = 1 is exactly greedy decoding (tested against generate_caption).
  at::Tensor beam_generate(const at::Tensor& images, const at::Tensor& prompt, int64_t eos, int64_t max_new,
                           int64_t beam, double length_penalty = 1.0);
  // Beam-search captions in generate_caption's format: [B, <= max_len] ids starting with bos.
  at::Tensor beam_search_caption(const at::Tensor& images, int64_t bos, int64_t eos, int64_t max_len, int64_t beam,
                                 double length_penalty = 1.0);
  // VQA as classification over the answer vocabulary: logits [B, A]; targets [B, A] soft scores (VQA v2
  // min(1, n/3)), trained with binary cross-entropy as is standard for VQA v2.
  TaskOutput vqa(const at::Tensor& images, const TextInput& question, const at::Tensor& targets = {});
  // VQA as answer generation: question and answer as one causal sequence after the image; loss on answer tokens.
  TaskOutput vqa_generate(const at::Tensor& images, const TextInput& question, const TextInput& answer);
  // labels [B] int64 (1 = true) -> logits [B, 2]. options.nlvr2_head "pair": each image fused with the statement
  // on its own and nlvr2_pair_head over the two CLS outputs; "joint": one fusion over both images and nlvr2_head.
  TaskOutput nlvr2(const at::Tensor& image_a, const at::Tensor& image_b, const TextInput& text,
                   const at::Tensor& labels = {});
  // labels [B] -> logits [B, num_classes]
  TaskOutput classify(const at::Tensor& images, const at::Tensor& labels = {});
  // Text -> image codes: text ids [B, Lt], codes [B, N] -> logits [B, N, K], next-code loss. The prompt is padded
  // to options.gen_prompt_len first (as in generate_images).
  TaskOutput image_code_logits(const at::Tensor& text_ids, const at::Tensor& codes);
  // Prompt ids [B, L] right-padded with pad (0) to options.gen_prompt_len (unchanged when it is 0); longer is an error.
  at::Tensor gen_prompt(const at::Tensor& ids) const;
  // What the generator reads of a (padded) prompt. options.gen_text "embed": the ids themselves (image_gen looks
  // them up in its own word embedding). "encoder": the understanding path's text tokens (TextEncoder -> router ->
  // adapter, pads masked) through gen_text_norm and gen_text_proj, [B, L, D], zero at pad positions; an all-pad
  // row (the unconditional prompt training drops to and guidance samples against) is all zero.
  at::Tensor gen_text_input(const at::Tensor& padded_ids);
  // Longest text->image prompt (tokens, bos/eos included) to encode: max_text_len capped at gen_prompt_len when set.
  int64_t gen_prompt_limit(int64_t max_text_len) const;
  // Video prediction: codes of frame t+1 from frame t (+ text): logits [B, N, K].
  TaskOutput video_next_codes(const at::Tensor& text_ids, const at::Tensor& codes_t, const at::Tensor& codes_next);
  // SimMIM on the understanding ViT: masks patches (ratio 0.6, mask patch simmim_mask_patch scaled), L1 on masked
  // pixels only. extras: "mask" [B, 1, H, W], "reconstruction" [B, 3, H, W].
  TaskOutput simmim(const at::Tensor& images, at::Generator& gen);
  // MLM on the text encoder: 15% of real non-special tokens; 80% mask_id, 10% random, 10% kept.
  TaskOutput mlm(const TextInput& text, int64_t mask_id, int64_t num_special, at::Generator& gen);
  // VQ tokenizer forward (reconstruction + codebook/commitment losses).
  VQVAEOutput tokenizer(const at::Tensor& images);
  // prompts [P, Lt] -> images [P * samples, 3, H, W] in the VQ-VAE's pixel range.
  at::Tensor generate_images(const at::Tensor& prompt_ids, const SamplingOptions& sampling);

  // Activation checkpointing per transformer block of the ViT, the text encoder, the bidirectional fusion stack
  // and the causal generation/LM stack (image_gen.backbone), for training forwards only (docs/model.md). Losses
  // and gradients are unchanged (tested to 1e-6); KV-cache decoding and eval forwards are unaffected.
  void set_activation_checkpointing(bool on);
  bool activation_checkpointing() const;

  JanusModelOptions options;
  VisionEncoder vision{nullptr};
  TextEncoder text{nullptr};
  DynamicRouter router{nullptr};
  Adapter adapter{nullptr};
  FusionTransformer fusion{nullptr};
  at::Tensor cls_token;   // [1, 1, D] first token of the bidirectional fusion sequence
  // [3, D] segment embeddings, by position in the fused sequence: row 0 the first segment (image), row 1 the second
  // (the text in ITM, VQA and the pair NLVR2 head; the second image in the joint NLVR2 head), row 2 the joint head's
  // text
  at::Tensor type_embed;
  at::Tensor image_pos;   // [P + g*g, D] added to the routed image tokens (options.image_pos "sincos"), else undefined;
                          // the local tokens (image_local_tokens) get its grid rows too
  torch::nn::Linear vision_proj{nullptr}, text_proj{nullptr};
  torch::nn::Linear local_proj{nullptr};  // ViT patch embeddings -> local image tokens (options.image_local_tokens)
  at::Tensor logit_scale;  // scalar, init ln(1/0.07)
  torch::nn::Linear itm_head{nullptr};
  torch::nn::Linear nlvr2_head{nullptr};           // options.nlvr2_head "joint" only
  torch::nn::Sequential nlvr2_pair_head{nullptr};  // "pair" only: Linear(2D, 2D), LayerNorm, GELU, Linear(2D, 2)
  torch::nn::Linear vqa_head{nullptr};  // only with num_answers > 0
  torch::nn::Linear cls_head{nullptr};  // only with num_classes > 0
  at::Tensor mask_token;                // [1, 1, Dv] SimMIM
  torch::nn::Linear simmim_head{nullptr};
  VQVAE vq{nullptr};
  ImageTokenGenerator image_gen{nullptr};
  CaptionLM caption_lm{nullptr};  // options.caption_decoder "own" only
  torch::nn::LayerNorm gen_text_norm{nullptr};  // options.gen_text "encoder" only: text tokens -> generator prefix
  torch::nn::Linear gen_text_proj{nullptr};
  at::Tensor lm_bias;             // [V] bias of the text LM head (weight tied to the text decoder's word embedding)

 private:
  // [cls, segments...] through the bidirectional fusion -> its CLS output [B, D]; segment i gets type_embed row
  // min(i, 2).
  at::Tensor fuse_cls(const std::vector<at::Tensor>& segments, const std::vector<at::Tensor>& masks);
  // Causal LM over [prefix; text]: logits for text positions 1..L-1.
  at::Tensor lm_logits(const at::Tensor& prefix, const at::Tensor& ids);
  // The text decoder's parts: caption_lm's with caption_decoder "own", else image_gen's.
  torch::nn::Embedding& lm_embed();
  const at::Tensor& lm_pos();
  CausalBackbone& lm_backbone();
};
TORCH_MODULE(JanusModel);

// Freezes what a stage must not train and reports it, e.g. patterns {"vision.*", "text.*"}.
std::string describe_model(const JanusModelImpl& model);

}  // namespace janus
