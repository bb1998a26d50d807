#pragma once
// Vision Transformer (ViT) encoder whose registered names are those of timm's VisionTransformer, so a timm
// state dict (num_classes=0, or with head.* dropped) loads without renaming:
//   cls_token [1,1,D], pos_embed [1,N(+1),D], patch_embed.proj.{weight,bias},
//   blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.{weight,bias}, norm | fc_norm.
// Optional residual adapters after each block register as adapters.N.* (absent from timm files).
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include <ATen/ATen.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>
#include <nlohmann/json_fwd.hpp>

#include "janus/core/layers.h"
#include "janus/router/adapter.h"

namespace janus {

// ---- multi-head self-attention with a fused qkv projection (timm Attention names: qkv, proj) ----------------
struct AttentionOptions {
  AttentionOptions(int64_t dim, int64_t heads) : dim_(dim), heads_(heads) {}
  TORCH_ARG(int64_t, dim);
  TORCH_ARG(int64_t, heads);
  TORCH_ARG(bool, qkv_bias) = true;
};

class AttentionImpl : public torch::nn::Cloneable<AttentionImpl> {
 public:
  explicit AttentionImpl(const AttentionOptions& options);
  void reset() override;
  // x [B, N, D]; mask (optional) bool [B, 1|H, N|1, N], true = attend -> [B, N, D]
  at::Tensor forward(const at::Tensor& x, const std::optional<at::Tensor>& mask = std::nullopt);

  AttentionOptions options;
  torch::nn::Linear qkv{nullptr};
  torch::nn::Linear proj{nullptr};
};
TORCH_MODULE(Attention);

// ---- pre-LN transformer block (timm Block names: norm1, attn, norm2, mlp) -------------------------------------
struct BlockOptions {
  BlockOptions(int64_t dim, int64_t heads) : dim_(dim), heads_(heads) {}
  TORCH_ARG(int64_t, dim);
  TORCH_ARG(int64_t, heads);
  TORCH_ARG(double, mlp_ratio) = 4.0;
  TORCH_ARG(bool, qkv_bias) = true;
  TORCH_ARG(double, norm_eps) = 1e-6;
  TORCH_ARG(std::string, act) = "gelu";
};

class BlockImpl : public torch::nn::Cloneable<BlockImpl> {
 public:
  explicit BlockImpl(const BlockOptions& options);
  void reset() override;
  // x + attn(norm1(x)), then + mlp(norm2(x)): [B, N, D] -> [B, N, D]
  at::Tensor forward(const at::Tensor& x, const std::optional<at::Tensor>& mask = std::nullopt);
  // Zeroes attn.proj and mlp.fc2 so the block starts as the identity (used for temporal blocks).
  void zero_init_residual();

  BlockOptions options;
  torch::nn::LayerNorm norm1{nullptr};
  Attention attn{nullptr};
  torch::nn::LayerNorm norm2{nullptr};
  Mlp mlp{nullptr};
};
TORCH_MODULE(Block);

// ---- patch embedding ---------------------------------------------------------------------------------------
// stem "patch": timm's PatchEmbed, one p x p stride-p conv (names: proj).
// stem "conv": the convolutional stem of Xiao et al. 2021 ("Early convolutions help transformers see better"):
//   a 3x3 stride-1 conv, then log2(p) 3x3 stride-2 convs, each conv -> BatchNorm -> ReLU, widths 32, 64, 128, ...
//   capped at dim; then a 1x1 conv to dim (names: stem.N.{weight | running_mean ...}, proj). p must be a power of
//   two. It costs a few 3x3 convs but gives the ViT a locality bias: on 32 px Shapes it is what lets the tiny model
//   tell a small triangle from a small star (docs/encoders.md).
class PatchEmbedImpl : public torch::nn::Cloneable<PatchEmbedImpl> {
 public:
  PatchEmbedImpl(int64_t in_chans, int64_t dim, int64_t patch_size, std::string stem = "patch");
  void reset() override;
  // [B, C, H, W] -> [B, dim, H/p, W/p]
  at::Tensor forward(const at::Tensor& images);
  // Input pixels that reach more than their own patch's token (the conv stem's receptive field overlaps its
  // neighbours' patches); false for the plain patch stem.
  bool mixes_patches() const { return stem_kind == "conv"; }

  int64_t in_chans, dim, patch_size;
  std::string stem_kind;
  torch::nn::Sequential stem{nullptr};  // only with stem "conv"
  torch::nn::Conv2d proj{nullptr};
};
TORCH_MODULE(PatchEmbed);

// ---- ViT ---------------------------------------------------------------------------------------------------
struct VisionEncoderOptions {
  TORCH_ARG(int64_t, image_size) = 224;  // trained resolution (square); pos_embed covers this grid
  TORCH_ARG(int64_t, patch_size) = 16;
  TORCH_ARG(int64_t, in_chans) = 3;
  TORCH_ARG(int64_t, dim) = 768;
  TORCH_ARG(int64_t, depth) = 12;
  TORCH_ARG(int64_t, heads) = 12;
  TORCH_ARG(double, mlp_ratio) = 4.0;
  TORCH_ARG(bool, class_token) = true;
  TORCH_ARG(bool, qkv_bias) = true;
  TORCH_ARG(std::string, global_pool) = "token";  // "token" (needs class_token) or "avg"
  // Norm after pooling instead of before (timm fc_norm). Unset: as timm, i.e. on when global_pool == "avg".
  TORCH_ARG(std::optional<bool>, fc_norm) = std::nullopt;
  TORCH_ARG(double, norm_eps) = 1e-6;
  // Other input sizes: pos_embed is resampled (bicubic, antialias, as timm resample_abs_pos_embed).
  TORCH_ARG(bool, dynamic_image_size) = true;
  TORCH_ARG(int64_t, adapter_dim) = 0;  // > 0: a residual bottleneck Adapter after every block
  // "patch" (timm's single-conv patch embedding, loads timm weights) or "conv" (convolutional stem, see PatchEmbed)
  TORCH_ARG(std::string, stem) = "patch";

 public:
  // ViT-Ti/S/B/L shapes at patch 16: "tiny" (192, 12, 3), "small" (384, 12, 6), "base" (768, 12, 12),
  // "large" (1024, 24, 16). InputError for other names.
  static VisionEncoderOptions flavour(const std::string& name);
};

struct VisionOutput {
  at::Tensor tokens;  // [B, N, D], N = (1 if class_token) + grid_h * grid_w
  at::Tensor pooled;  // [B, D]
};

class VisionEncoderImpl : public torch::nn::Cloneable<VisionEncoderImpl> {
 public:
  explicit VisionEncoderImpl(const VisionEncoderOptions& options = {});
  void reset() override;
  void reset_parameters();

  // images [B, C, H, W] (H, W multiples of patch_size) -> tokens [B, N, D], pooled [B, D]
  VisionOutput forward(const at::Tensor& images);

  // Pieces of forward for callers that edit patch tokens (e.g. SimMIM mask tokens):
  // images -> patch tokens [B, gh*gw, D] (no positions), grid = {gh, gw}
  at::Tensor patchify(const at::Tensor& images, std::pair<int64_t, int64_t>* grid = nullptr);
  // patch tokens [B, gh*gw, D] -> [B, N, D]: class token prepended, position embeddings added
  at::Tensor add_positions(const at::Tensor& patch_tokens, std::pair<int64_t, int64_t> grid);
  // [B, N, D] -> blocks (+ adapters) -> final norm -> {tokens, pooled}
  VisionOutput encode(const at::Tensor& tokens);
  // Final tokens [B, N, D] -> pooled [B, D] (class token or mean of patch tokens, then fc_norm if used)
  at::Tensor pool(const at::Tensor& tokens);
  // pos_embed resampled to a grid: [1, P + gh*gw, D] with P = 1 if class_token else 0
  at::Tensor position_embedding(int64_t grid_h, int64_t grid_w) const;

  int64_t num_prefix_tokens() const { return options.class_token() ? 1 : 0; }
  int64_t grid_size() const { return options.image_size() / options.patch_size(); }
  bool uses_fc_norm() const;
  // Activation checkpointing of every block in training forwards (grad enabled, training mode): blocks keep only
  // their input and recompute in backward (janus/core/checkpoint_fn.h). Not an option: a runtime switch, off by
  // default, copied by clone(); never affects eval/no-grad forwards.
  void set_activation_checkpointing(bool on) { activation_checkpointing_ = on; }
  bool activation_checkpointing() const { return activation_checkpointing_; }

  VisionEncoderOptions options;
  PatchEmbed patch_embed{nullptr};
  at::Tensor cls_token;  // [1, 1, D] (undefined without class token)
  at::Tensor pos_embed;  // [1, P + g*g, D]
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::ModuleList adapters{nullptr};  // only with adapter_dim > 0
  torch::nn::LayerNorm norm{nullptr};       // before pooling (undefined when fc_norm)
  torch::nn::LayerNorm fc_norm{nullptr};    // after pooling (undefined otherwise)

 private:
  bool activation_checkpointing_ = false;
};
TORCH_MODULE(VisionEncoder);

// Options from JSON (keys as the TORCH_ARG names; "flavour" first picks a preset; fc_norm may be null).
// Unknown keys throw InputError.
VisionEncoderOptions vision_encoder_options_from_json(const nlohmann::json& j);

// Loads a timm VisionTransformer safetensors file: head.* keys are dropped, missing adapters.* are allowed
// (they start as identity); anything else missing/unexpected/mismatched throws InputError.
void load_timm_vision(VisionEncoderImpl& encoder, const std::string& path);

// MAE's 2-D sin-cos position table (get_2d_sincos_pos_embed) for a g x g grid: [g * g, dim], row-major over (row,
// column); the first half of the channels encode the column, the second half the row. dim must be a multiple of 4.
at::Tensor sincos_2d_position_table(int64_t grid, int64_t dim);

// A position table [1, P + g*g, D] (P prefix rows, then a g x g grid) resampled to a gh x gw grid as timm's
// resample_abs_pos_embed does (bicubic, antialias, align_corners=False); the prefix rows are kept.
at::Tensor resample_position_table(const at::Tensor& table, int64_t prefix, int64_t grid_h, int64_t grid_w);

}  // namespace janus
