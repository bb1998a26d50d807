#pragma once
// Dual-stream fusion blocks (docs/fusion.md); `dense` turns a block into a plain transformer block (ablation).
// Each dual-stream block, pre-LN:
//   h = norm1(x)
//   a = sparse_proj(BlockSparseAttention(sparse_qkv(h)))      understanding stream
//   b = lsh_proj(LSHAttention(lsh_qkv(h)))                     generation stream (shared-QK: lsh_qkv gives qk, v)
//   g = sigmoid(gate(cat(a, b)));  x = x + g*a + (1-g)*b;  x = x + mlp(norm2(x))
//
// Causal variant (options.causal = true, for generation):
//   understanding stream: causal BlockSparseAttention (causal layouts are prefix-consistent, so a token's kept
//     key blocks never depend on later tokens);
//   generation stream: EXACT causal attention with Reformer's shared-QK keys (k = l2-normalised qk, logits scaled
//     by d^-0.5, no self-mask), computed with chunked_attention. LSH is not used when causal: its buckets, sort
//     order and chunking depend on the whole sequence, so it cannot be decoded token by token.
//   The KV cache path (forward_step) computes the same two attentions over the cached keys with a dense
//   [T_new, T_cache] score matrix per step, so cached decoding equals the uncached causal forward (tested to 1e-5).
//
// Typical decoding loop (the image-token generator):
//   FusionTransformerOptions opt(dim, heads, depth);
//   opt.block().causal(true);
//   FusionTransformer net(opt);
//   auto cache = net->new_cache();
//   auto y = net->forward_step(prompt_embeddings, cache);      // [B, T0, D], fills the cache
//   for (...) { y = net->forward_step(next_embedding, cache); } // [B, 1, D] each
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include "janus/core/layers.h"
#include "janus/fusion/attention.h"

namespace janus {

struct DualStreamFusionOptions {
  DualStreamFusionOptions(int64_t dim, int64_t num_heads) : dim_(dim), num_heads_(num_heads) {}
  TORCH_ARG(int64_t, dim);
  TORCH_ARG(int64_t, num_heads);
  TORCH_ARG(double, mlp_ratio) = 4.0;
  TORCH_ARG(std::string, act) = "gelu";
  TORCH_ARG(double, norm_eps) = 1e-6;
  TORCH_ARG(bool, causal) = false;
  // understanding stream
  TORCH_ARG(int64_t, block_size) = 64;
  TORCH_ARG(double, density) = 0.3;
  TORCH_ARG(int64_t, window) = 1;
  TORCH_ARG(int64_t, num_global) = 1;
  TORCH_ARG(int64_t, seed) = 0;  // block-sparse random blocks and LSH rotations
  // generation stream
  TORCH_ARG(int64_t, bucket_size) = 64;
  TORCH_ARG(int64_t, n_hashes) = 4;
  TORCH_ARG(int64_t, chunk) = 1024;  // query/key chunk of the exact causal attention
  // Ablation baseline: a plain pre-LN transformer block. One exact (chunked) attention over all tokens, no
  // generation stream, no gate: x = x + proj(attn(norm1(x))); x = x + mlp(norm2(x)). Only norm1, sparse_qkv,
  // sparse_proj, norm2 and mlp exist.
  TORCH_ARG(bool, dense) = false;
};

// Keys/values of one block for incremental decoding, [B, H, T, head_dim] each (undefined until the first step).
struct LayerKVCache {
  at::Tensor sparse_k, sparse_v;  // understanding stream
  at::Tensor lsh_k, lsh_v;        // generation stream (k already l2-normalised)
  int64_t length() const { return sparse_k.defined() ? sparse_k.size(2) : 0; }
};

struct KVCache {
  std::vector<LayerKVCache> layers;
  int64_t length() const { return layers.empty() ? 0 : layers.front().length(); }
};

class DualStreamFusionImpl : public torch::nn::Cloneable<DualStreamFusionImpl> {
 public:
  explicit DualStreamFusionImpl(const DualStreamFusionOptions& options);
  void reset() override;
  // x [B, L, D], key_mask [B, L] bool (true = real token) -> [B, L, D]
  at::Tensor forward(const at::Tensor& x, const std::optional<at::Tensor>& key_mask = std::nullopt);
  // Causal only. x_new [B, T, D] are the tokens at positions cache.length() .. +T; appends their keys/values to
  // `cache` and returns [B, T, D] equal to forward() at those positions.
  at::Tensor forward_step(const at::Tensor& x_new, LayerKVCache& cache);
  // Gate of the last forward/forward_step: [B, L, D] (detached), for inspection.
  const at::Tensor& last_gate() const { return last_gate_; }

  DualStreamFusionOptions options;
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Linear sparse_qkv{nullptr}, sparse_proj{nullptr};
  torch::nn::Linear lsh_qkv{nullptr}, lsh_proj{nullptr};
  torch::nn::Linear gate{nullptr};
  Mlp mlp{nullptr};
  BlockSparseAttention sparse_attn{nullptr};
  LSHAttention lsh_attn{nullptr};

 private:
  at::Tensor mix_and_mlp(const at::Tensor& x, const at::Tensor& a, const at::Tensor& b);
  at::Tensor heads(const at::Tensor& t) const;  // [B, L, D] -> [B, H, L, hd]
  at::Tensor merge(const at::Tensor& t) const;  // [B, H, L, hd] -> [B, L, D]
  at::Tensor last_gate_;
};
TORCH_MODULE(DualStreamFusion);

struct FusionTransformerOptions {
  FusionTransformerOptions(int64_t dim, int64_t num_heads, int64_t depth) : block_(dim, num_heads), depth_(depth) {}
  TORCH_ARG(DualStreamFusionOptions, block);  // block i uses seed block.seed + i
  TORCH_ARG(int64_t, depth);
};

// depth DualStreamFusion blocks + final LayerNorm ("norm").
class FusionTransformerImpl : public torch::nn::Cloneable<FusionTransformerImpl> {
 public:
  explicit FusionTransformerImpl(const FusionTransformerOptions& options);
  void reset() override;
  // x [B, L, D], key_mask [B, L] -> [B, L, D]
  at::Tensor forward(const at::Tensor& x, const std::optional<at::Tensor>& key_mask = std::nullopt);
  // An empty cache with one entry per block.
  KVCache new_cache() const;
  // Causal only: x_new [B, T, D] at positions cache.length() .. + T -> [B, T, D]; updates the cache.
  at::Tensor forward_step(const at::Tensor& x_new, KVCache& cache);
  // Activation checkpointing of every block in training forwards (grad enabled, training mode): blocks keep only
  // their input and recompute in backward (janus/core/checkpoint_fn.h). Not an option: a runtime switch, off by
  // default, copied by clone(); never affects eval/no-grad forwards nor forward_step (the KV-cache path).
  void set_activation_checkpointing(bool on) { activation_checkpointing_ = on; }
  bool activation_checkpointing() const { return activation_checkpointing_; }

  FusionTransformerOptions options;
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::LayerNorm norm{nullptr};

 private:
  bool activation_checkpointing_ = false;
};
TORCH_MODULE(FusionTransformer);

}  // namespace janus
