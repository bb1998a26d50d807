#pragma once
#include <any>
// Autoregressive image-token generation over VQ codes: a text prefix (and, for video prediction, the previous
// frame's codes) followed by <begin-of-image> and next-code prediction through a causal transformer with a KV
// cache. Sampling: temperature, top-k, top-p, classifier-free guidance with conditional and unconditional rows
// interleaved in one batch (as Janus does), many prompts x many samples per batch, seeded and deterministic.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include "janus/core/layers.h"
#include "janus/decoder/conditional_adapter.h"

namespace janus {

// Per-layer keys/values of the positions seen so far ([B, H, T, head_dim] each).
// (`state` lets other backbones keep their own cache type here, e.g. the fusion stack's janus::KVCache.)
struct CausalKVCache {
  std::vector<at::Tensor> keys, values;
  std::any state;
  int64_t length = 0;  // positions cached
  void clear() {
    keys.clear();
    values.clear();
    state.reset();
    length = 0;
  }
};

// The causal sequence model the generator runs on. The fusion stack (DualStreamFusion) is meant to implement this
// later; CausalTransformer below is the built-in implementation.
class CausalBackbone : public torch::nn::Module {
 public:
  using torch::nn::Module::Module;
  virtual int64_t dim() const = 0;
  // Full causal pass, no cache: [B, L, D] -> [B, L, D] (position i sees 0..i).
  virtual at::Tensor forward_causal(const at::Tensor& x) = 0;
  // Incremental pass: x [B, T, D] holds positions cache.length .. cache.length+T-1; it sees the cached positions
  // and itself causally, appends its keys/values to the cache, returns [B, T, D].
  virtual at::Tensor forward_step(const at::Tensor& x, CausalKVCache& cache) = 0;
};

struct CausalTransformerOptions {
  CausalTransformerOptions(int64_t dim, int64_t depth, int64_t heads) : dim_(dim), depth_(depth), heads_(heads) {}
  TORCH_ARG(int64_t, dim);
  TORCH_ARG(int64_t, depth);
  TORCH_ARG(int64_t, heads);
  TORCH_ARG(double, mlp_ratio) = 4.0;
};

// Pre-LN block: x + attn(norm1(x)); x + mlp(norm2(x)). Keys norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2.
class CausalBlockImpl : public torch::nn::Cloneable<CausalBlockImpl> {
 public:
  CausalBlockImpl(int64_t dim, int64_t heads, double mlp_ratio);
  void reset() override;
  // past_k/past_v: [B, H, P, hd] or undefined; returns output and writes this block's full k/v (past + new).
  at::Tensor forward(const at::Tensor& x, const at::Tensor& past_k, const at::Tensor& past_v, at::Tensor* k_out,
                     at::Tensor* v_out);
  int64_t dim, heads;
  double mlp_ratio;
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Linear qkv{nullptr}, proj{nullptr};
  Mlp mlp{nullptr};
};
TORCH_MODULE(CausalBlock);

// Simple causal pre-LN transformer (SDPA) implementing CausalBackbone. Keys blocks.i.*, norm.
class CausalTransformerImpl : public CausalBackbone {
 public:
  explicit CausalTransformerImpl(const CausalTransformerOptions& options);
  int64_t dim() const override { return options.dim(); }
  at::Tensor forward_causal(const at::Tensor& x) override;
  at::Tensor forward_step(const at::Tensor& x, CausalKVCache& cache) override;
  CausalTransformerOptions options;
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::LayerNorm norm{nullptr};
};
TORCH_MODULE(CausalTransformer);

struct ImageTokenGeneratorOptions {
  ImageTokenGeneratorOptions(int64_t text_vocab, int64_t codebook_size)
      : text_vocab_(text_vocab), codebook_size_(codebook_size) {}
  TORCH_ARG(int64_t, text_vocab);
  TORCH_ARG(int64_t, codebook_size);
  TORCH_ARG(int64_t, dim) = 256;
  TORCH_ARG(int64_t, depth) = 4;
  TORCH_ARG(int64_t, heads) = 4;
  TORCH_ARG(double, mlp_ratio) = 4.0;
  TORCH_ARG(int64_t, max_positions) = 2048;  // text + (previous frame) + <boi> + image tokens
  TORCH_ARG(int64_t, uncond_token) = 0;      // text id that replaces the prompt in unconditional (CFG) rows
  TORCH_ARG(int64_t, adapter_bottleneck) = 32;  // 0: no ConditionalAdapter
  // > 0: the image codes form a code_grid x code_grid raster, and each input that predicts code k (<boi> for k = 0,
  // code k-1 otherwise) also gets row_embed[k / code_grid] + col_embed[k % code_grid], the 2D place of the code it
  // is about to draw (on top of the 1D pos_embed). 0: 1D positions only.
  TORCH_ARG(int64_t, code_grid) = 0;
};

struct SamplingOptions {
  TORCH_ARG(int64_t, num_tokens) = 256;
  TORCH_ARG(int64_t, samples_per_prompt) = 1;
  TORCH_ARG(double, temperature) = 1.0;  // 0: greedy
  TORCH_ARG(int64_t, top_k) = 0;         // 0: off
  TORCH_ARG(double, top_p) = 1.0;        // 1: off
  TORCH_ARG(bool, cfg) = false;          // interleave unconditional rows and mix logits
  TORCH_ARG(double, cfg_scale) = 5.0;    // logits = u + scale * (c - u)
  TORCH_ARG(uint64_t, seed) = 0;
  TORCH_ARG(bool, use_cache) = true;
};

class ImageTokenGeneratorImpl : public torch::nn::Module {
 public:
  // backbone: nullptr builds a CausalTransformer(dim, depth, heads, mlp_ratio); a given one must have dim() == dim.
  explicit ImageTokenGeneratorImpl(const ImageTokenGeneratorOptions& options,
                                   std::shared_ptr<CausalBackbone> backbone = nullptr);

  // Teacher-forced next-code logits: text [B, Lt] int64 (or embedded, [B, Lt, dim] floating), codes [B, N] int64
  // (prev_frame [B, M] for video prediction, or undefined) -> [B, N, K]; logits[:, i] predicts codes[:, i].
  at::Tensor forward(const at::Tensor& text, const at::Tensor& codes, const at::Tensor& prev_frame = {});
  at::Tensor loss(const at::Tensor& text, const at::Tensor& codes, const at::Tensor& prev_frame = {});
  // text [P, Lt] -> codes [P * samples_per_prompt, num_tokens]; rows p*S .. p*S+S-1 belong to prompt p.
  // The prompt may also come embedded, [P, Lt, dim] floating (e.g. a text encoder's features, as JanusModel's
  // gen_text "encoder"): it then replaces text_embed's lookup, and guidance needs uncond_text [1, Lt, dim], the
  // embedding its unconditional rows get (training must drop prompts to the same embedding).
  at::Tensor generate(const at::Tensor& text, const SamplingOptions& sampling, const at::Tensor& uncond_text = {});
  // The unconditional prompt classifier-free guidance samples against (and training drops prompts to): every
  // position of text [B, Lt] replaced by options.uncond_token.
  at::Tensor uncond_prompt(const at::Tensor& text) const;
  // Video prediction: codes of frame t+1 from frame t [B, N] (+ text [B, Lt], may be undefined or [B, 0]).
  // Returns [B * samples_per_prompt, N] (num_tokens is taken from the frame).
  at::Tensor predict_next_frame(const at::Tensor& frame_codes, const at::Tensor& text, SamplingOptions sampling);

  // row_embed + col_embed of codes first .. first + T - 1: [T, dim] (undefined when code_grid is 0).
  at::Tensor code_places(int64_t first, int64_t T) const;

  ImageTokenGeneratorOptions options;
  torch::nn::Embedding text_embed{nullptr};
  torch::nn::Embedding code_embed{nullptr};  // codebook_size + 1 rows; the last is <begin-of-image>
  at::Tensor pos_embed;                      // [max_positions, dim]
  at::Tensor frame_embed;                    // [dim], marks previous-frame tokens in video prediction
  at::Tensor row_embed, col_embed;           // [code_grid, dim] each (options.code_grid > 0 only)
  std::shared_ptr<CausalBackbone> backbone;
  torch::nn::Linear head{nullptr};
  ConditionalAdapter adapter{nullptr};

 private:
  at::Tensor prefix(const at::Tensor& text, const at::Tensor& prev_frame, const std::string& task);
  // codes [B, T] at absolute positions start.. ; the first of them predicts code first_target (for code_grid).
  at::Tensor embed_codes(const at::Tensor& codes, int64_t start, int64_t first_target, const std::string& task);
  at::Tensor run(const at::Tensor& text, const at::Tensor& prev_frame, const std::string& task,
                 const SamplingOptions& sampling, const at::Tensor& uncond_text = {});
  at::Tensor sample(const at::Tensor& logits, const SamplingOptions& sampling, at::Generator& gen) const;
};
TORCH_MODULE(ImageTokenGenerator);

}  // namespace janus
