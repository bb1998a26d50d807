#pragma once
// Vector quantiser for the generation path (VQ-VAE tokenizer): nearest code in a K x d codebook, euclidean or
// cosine (l2-normalised z and codes, as LlamaGen/Janus VQ-16 with 16384 x 8), straight-through gradients,
// codebook + commitment loss, optional EMA codebook updates with Laplace smoothing and dead-code reset.
#include <cstdint>

#include <ATen/ATen.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

namespace janus {

struct VectorQuantizerOptions {
  VectorQuantizerOptions(int64_t codebook_size, int64_t dim) : codebook_size_(codebook_size), dim_(dim) {}
  TORCH_ARG(int64_t, codebook_size);
  TORCH_ARG(int64_t, dim);
  // Cosine: z and codes are l2-normalised before the nearest-code search and the losses (LlamaGen VQ-16).
  TORCH_ARG(bool, cosine) = false;
  TORCH_ARG(double, beta) = 0.25;  // commitment weight
  // EMA codebook (no gradient to the codebook; the codebook term drops out of the loss).
  TORCH_ARG(bool, ema) = false;
  TORCH_ARG(double, decay) = 0.99;
  TORCH_ARG(double, eps) = 1e-5;  // Laplace smoothing of the EMA counts
  // Codes whose EMA count falls below this are replaced by random vectors of the batch (0 = off). Needs ema.
  TORCH_ARG(double, dead_code_threshold) = 0.0;
};

struct VectorQuantizerOutput {
  at::Tensor quantized;      // same shape as z; straight-through: z + sg[q - z] (z l2-normalised if cosine)
  at::Tensor codes;          // z.shape[:-1], int64
  at::Tensor loss;           // scalar: codebook_loss + beta * commitment_loss (EMA: beta * commitment_loss)
  at::Tensor codebook_loss;  // mean ||sg[z] - e||^2 (0 with EMA)
  at::Tensor commitment_loss;  // mean ||z - sg[e]||^2
  at::Tensor perplexity;     // exp(entropy of this batch's code histogram)
  at::Tensor usage;          // fraction of the codebook used by this batch
};

// Channel-last quantiser. Buffers cluster_size [K] and embed_avg [K, d] always exist (stable checkpoint keys).
class VectorQuantizerImpl : public torch::nn::Cloneable<VectorQuantizerImpl> {
 public:
  explicit VectorQuantizerImpl(const VectorQuantizerOptions& options);
  void reset() override;
  void reset_parameters();

  // z: [..., d] float -> output (EMA update and dead-code reset happen here when training and ema is on).
  VectorQuantizerOutput forward(const at::Tensor& z);
  // Nearest codes only, no state change: [..., d] -> [...] int64.
  at::Tensor encode(const at::Tensor& z) const;
  // Code vectors: [...] int64 -> [..., d] (l2-normalised if cosine).
  at::Tensor lookup(const at::Tensor& codes) const;
  // The codebook used for search and lookup: [K, d] (normalised if cosine).
  at::Tensor effective_codebook() const;
  // Fraction of codes whose EMA count is >= max(threshold, 1e-3) (EMA only; else fraction used since reset_usage).
  double codebook_usage() const;
  void reset_usage();

  VectorQuantizerOptions options;
  at::Tensor embed;         // [K, d] parameter (requires_grad unless ema)
  at::Tensor cluster_size;  // [K] buffer, EMA counts (starts at 1 like vector-quantize-pytorch)
  at::Tensor embed_avg;     // [K, d] buffer, EMA sums (starts at embed)
  at::Tensor seen;          // [K] buffer, codes hit since reset_usage (non-EMA usage tracking)

 private:
  void ema_update(const at::Tensor& flat, const at::Tensor& codes);
};
TORCH_MODULE(VectorQuantizer);

}  // namespace janus
