#pragma once
// Attention kernels of the fusion area (docs/fusion.md). All work on per-head tensors [B, H, L, d] and take an
// optional key padding mask [B, L] (bool, true = real token). A query whose every key is masked gets a zero output
// (never NaN). None of these modules has parameters; projections live in DualStreamFusion.
#include <cstdint>
#include <optional>
#include <string>

#include <ATen/ATen.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

namespace janus {

// Reference: softmax(q k^T * scale + mask) v with a dense [Lq, Lk] score matrix. `allowed` is a bool tensor
// broadcastable to [B, H, Lq, Lk] (true = may attend); fully masked rows give zeros. Used by tests and the KV
// cache path (one query at a time), never for long sequences.
at::Tensor dense_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const std::optional<at::Tensor>& allowed, double scale);

// ---- block-sparse (BigBird / Sparse Transformer pattern) ----------------------------------------------------------
struct BlockSparseAttentionOptions {
  TORCH_ARG(int64_t, block_size) = 64;
  // Fraction of (query block, key block) pairs kept (of the causal triangle when causal). 1.0 = dense.
  TORCH_ARG(double, density) = 0.3;
  TORCH_ARG(int64_t, window) = 1;      // sliding window: key blocks i-window .. i+window
  TORCH_ARG(int64_t, num_global) = 1;  // the first num_global key blocks are kept for every row
  TORCH_ARG(int64_t, seed) = 0;        // random blocks: fixed per layer; row i uses seed and i only
  TORCH_ARG(bool, causal) = false;
};

// The layout for nb blocks: bool [nb, nb], true = query block i attends to key block j. Diagonal always kept.
// Row i depends only on (options, i, nb) and, when causal, not on nb: the causal layout of nb blocks is the
// top-left corner of the layout of any larger nb (the KV cache relies on that).
at::Tensor make_block_sparse_layout(const BlockSparseAttentionOptions& options, int64_t num_blocks);

class BlockSparseAttentionImpl : public torch::nn::Cloneable<BlockSparseAttentionImpl> {
 public:
  explicit BlockSparseAttentionImpl(const BlockSparseAttentionOptions& options = {});
  void reset() override;
  // q, k, v: [B, H, L, d], key_mask [B, L] bool -> [B, H, L, d]. L need not be a multiple of block_size (padded
  // internally with masked keys). The layout used is layout(ceil(L / block_size)) unless set_layout() fixed one.
  at::Tensor forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     const std::optional<at::Tensor>& key_mask = std::nullopt);
  // The layout used for a sequence of `length` tokens: bool [nb, nb].
  at::Tensor layout(int64_t length) const;
  // Use an explicit layout (bool [nb, nb]) instead of the pattern; sequences must then have nb blocks.
  void set_layout(const at::Tensor& layout);

  BlockSparseAttentionOptions options;

 private:
  at::Tensor explicit_layout_;
};
TORCH_MODULE(BlockSparseAttention);

// ---- exact chunked attention (online softmax, flash-attention style backward) -------------------------------------
struct ChunkedAttentionOptions {
  TORCH_ARG(int64_t, query_chunk) = 512;
  TORCH_ARG(int64_t, key_chunk) = 512;
  TORCH_ARG(bool, causal) = false;
};

// Exact softmax attention computed per (query chunk, key chunk) with an online softmax; backward recomputes the
// chunk scores from the saved log-sum-exp, so peak memory is O(L * d + query_chunk * key_chunk) per head.
at::Tensor chunked_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             const std::optional<at::Tensor>& key_mask, bool causal, double scale, int64_t query_chunk,
                             int64_t key_chunk);

class ChunkedAttentionImpl : public torch::nn::Cloneable<ChunkedAttentionImpl> {
 public:
  explicit ChunkedAttentionImpl(const ChunkedAttentionOptions& options = {});
  void reset() override;
  // q: [B, H, Lq, d], k, v: [B, H, Lk, d], key_mask [B, Lk] -> [B, H, Lq, d]. Causal aligns the last query with
  // the last key (query i sits at position Lk - Lq + i), which is what a KV cache needs.
  at::Tensor forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     const std::optional<at::Tensor>& key_mask = std::nullopt);

  ChunkedAttentionOptions options;
};
TORCH_MODULE(ChunkedAttention);

// ---- LSH attention (Reformer; semantics of reformer-pytorch 1.4.4 LSHAttention) -----------------------------------
struct LSHAttentionOptions {
  TORCH_ARG(int64_t, bucket_size) = 64;
  TORCH_ARG(int64_t, n_hashes) = 4;
  TORCH_ARG(bool, causal) = false;
  TORCH_ARG(int64_t, seed) = 0;  // seeds the generator the rotations are drawn from (fresh each forward)
};

class LSHAttentionImpl : public torch::nn::Cloneable<LSHAttentionImpl> {
 public:
  explicit LSHAttentionImpl(const LSHAttentionOptions& options = {});
  void reset() override;
  // Shared-QK attention. qk, v: [B, H, L, d], key_mask [B, L] -> [B, H, L, d]. Keys are the L2-normalised qk,
  // logits scaled by d^-0.5, self logit -5e4, n_buckets = L / bucket_size. L must be a multiple of
  // 2 * bucket_size (as in reformer-pytorch; pad the input and mask the padding otherwise).
  at::Tensor forward(const at::Tensor& qk, const at::Tensor& v,
                     const std::optional<at::Tensor>& key_mask = std::nullopt);
  // Rotations for the next forward calls: [d, n_hashes, n_buckets / 2] (reformer-pytorch's draw without the
  // leading batch axis). Cleared by clear_rotations(); otherwise drawn from the generator each call.
  void set_rotations(const at::Tensor& rotations);
  void clear_rotations();
  // The buckets of the last forward: [B, H, n_hashes, L] (round offsets not added).
  const at::Tensor& last_buckets() const { return last_buckets_; }
  // The generator the rotations are drawn from (activation checkpointing replays its state on recomputation).
  const at::Generator& generator() const { return generator_; }

  LSHAttentionOptions options;

 private:
  at::Generator generator_;
  at::Tensor rotations_;
  at::Tensor last_buckets_;
};
TORCH_MODULE(LSHAttention);

}  // namespace janus
