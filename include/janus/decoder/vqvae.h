#pragma once
// VQ-VAE image tokenizer in the shape of LlamaGen's VQ-16 (which Janus uses): conv encoder/decoder with residual
// blocks, GroupNorm, SiLU, optional mid attention; quant_conv / post_quant_conv around a VectorQuantizer.
// Checkpoint keys follow LlamaGen's names (encoder.conv_blocks.i.res.j.conv1, quantize.embed, ...).
#include <cstdint>
#include <vector>

#include <ATen/ATen.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include "janus/decoder/vector_quantizer.h"

namespace janus {

struct VQVAEOptions {
  TORCH_ARG(int64_t, in_channels) = 3;
  TORCH_ARG(int64_t, ch) = 128;
  // Downsample factor = 2^(len(ch_mult) - 1): [1,1,2,2,4] -> 16, [1,2,2,4] -> 8.
  TORCH_ARG(std::vector<int64_t>, ch_mult) = std::vector<int64_t>({1, 1, 2, 2, 4});
  TORCH_ARG(int64_t, num_res_blocks) = 2;
  TORCH_ARG(int64_t, num_groups) = 32;  // GroupNorm groups (must divide every channel count)
  TORCH_ARG(bool, mid_attention) = true;
  TORCH_ARG(int64_t, z_channels) = 256;
  TORCH_ARG(int64_t, codebook_size) = 16384;
  TORCH_ARG(int64_t, codebook_dim) = 8;
  TORCH_ARG(bool, cosine) = true;  // l2-normalised codes like VQ-16
  TORCH_ARG(double, beta) = 0.25;
  TORCH_ARG(bool, ema) = false;
  TORCH_ARG(double, decay) = 0.99;
  TORCH_ARG(double, dead_code_threshold) = 0.0;
  // "conv": LlamaGen's encoder (3x3 convs, GroupNorm over the image: every code sees the whole image).
  // "cell": each code from its own f x f cell only (a stride-f patch conv, then num_res_blocks + 1 residual blocks
  // of 1x1 convs with per-position GroupNorm): a cell's code is a function of its pixels, so equal cells get equal
  // codes wherever they are and whatever else is in the image. The decoder is the same in both.
  TORCH_ARG(std::string, encoder) = "conv";
};

// GroupNorm -> SiLU -> conv3x3 twice, 1x1 shortcut when channels change. Names: norm1 conv1 norm2 conv2 nin_shortcut.
// pointwise: 1x1 convs and GroupNorm over each position's channels only (no mixing across positions).
class VqResBlockImpl : public torch::nn::Cloneable<VqResBlockImpl> {
 public:
  VqResBlockImpl(int64_t in, int64_t out, int64_t groups, bool pointwise = false);
  void reset() override;
  at::Tensor forward(const at::Tensor& x);  // [B, in, H, W] -> [B, out, H, W] (pointwise: via forward_tokens)
  // pointwise only: the block on channels-last tokens [..., in] -> [..., out] (1x1 convs as matmuls; the cell
  // encoder runs in this layout, several times faster on CPU than 1x1 convs on [B, C, H, W]).
  at::Tensor forward_tokens(const at::Tensor& x);
  int64_t in, out, groups;
  bool pointwise;
  torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, nin_shortcut{nullptr};
};
TORCH_MODULE(VqResBlock);

// GroupNorm over each position's channels alone, on channels-last tokens: [..., C] -> [..., C], statistics per
// position and group (what the pointwise blocks use).
at::Tensor group_norm_tokens(torch::nn::GroupNorm& norm, const at::Tensor& x);

// Single-head spatial self-attention (norm, q, k, v, proj_out as 1x1 convs).
class VqAttnBlockImpl : public torch::nn::Cloneable<VqAttnBlockImpl> {
 public:
  VqAttnBlockImpl(int64_t channels, int64_t groups);
  void reset() override;
  at::Tensor forward(const at::Tensor& x);  // [B, C, H, W] -> same
  int64_t channels, groups;
  torch::nn::GroupNorm norm{nullptr};
  torch::nn::Conv2d q{nullptr}, k{nullptr}, v{nullptr}, proj_out{nullptr};
};
TORCH_MODULE(VqAttnBlock);

class VqEncoderImpl : public torch::nn::Cloneable<VqEncoderImpl> {
 public:
  explicit VqEncoderImpl(const VQVAEOptions& options);
  void reset() override;
  at::Tensor forward(const at::Tensor& x);  // [B, in_channels, H, W] -> [B, z_channels, H/f, W/f]
  VQVAEOptions options;
  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  torch::nn::ModuleList conv_blocks{nullptr};  // each: res (ModuleList), downsample (Conv2d stride 2) except last
  torch::nn::ModuleList mid{nullptr};          // res, [attn], res
  torch::nn::GroupNorm norm_out{nullptr};
};
TORCH_MODULE(VqEncoder);

class VqDecoderImpl : public torch::nn::Cloneable<VqDecoderImpl> {
 public:
  explicit VqDecoderImpl(const VQVAEOptions& options);
  void reset() override;
  at::Tensor forward(const at::Tensor& z);  // [B, z_channels, h, w] -> [B, in_channels, h*f, w*f]
  // The last conv's weight: W of the adaptive GAN weight.
  at::Tensor last_layer() const { return conv_out->weight; }
  VQVAEOptions options;
  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  torch::nn::ModuleList mid{nullptr};
  torch::nn::ModuleList conv_blocks{nullptr};  // each: res (ModuleList), upsample conv except last
  torch::nn::GroupNorm norm_out{nullptr};
};
TORCH_MODULE(VqDecoder);

struct VQVAEOutput {
  at::Tensor reconstruction;   // [B, C, H, W]
  at::Tensor codes;            // [B, h, w]
  at::Tensor quant_loss;       // VQ codebook + commitment loss
  at::Tensor rec_loss;         // mean |x - x_hat| (L1); stage 1 picks L1/L2 by train.vq_rec_loss
  at::Tensor mse_loss;
  at::Tensor perplexity;
  at::Tensor usage;
};

class VQVAEImpl : public torch::nn::Cloneable<VQVAEImpl> {
 public:
  explicit VQVAEImpl(const VQVAEOptions& options = {});
  void reset() override;

  int64_t downsample() const;
  // [B, C, H, W] (H, W multiples of downsample()) -> codes [B, H/f, W/f] int64
  at::Tensor encode(const at::Tensor& img);
  // codes [B, h, w] -> image [B, C, h*f, w*f]
  at::Tensor decode(const at::Tensor& codes);
  // Full pass with straight-through quantisation and losses.
  VQVAEOutput forward(const at::Tensor& img);

  VQVAEOptions options;
  VqEncoder encoder{nullptr};
  VqDecoder decoder{nullptr};
  VectorQuantizer quantize{nullptr};
  torch::nn::Conv2d quant_conv{nullptr}, post_quant_conv{nullptr};

 private:
  void check_image(const at::Tensor& img) const;
};
TORCH_MODULE(VQVAE);

}  // namespace janus
