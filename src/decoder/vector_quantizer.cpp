#include "janus/decoder/vector_quantizer.h"

#include <cmath>

#include <torch/nn/init.h>

#include "janus/core/error.h"

namespace janus {

namespace {
at::Tensor l2norm(const at::Tensor& x) {
  // F.normalize(x, dim=-1, eps=1e-6) as vector-quantize-pytorch and LlamaGen.
  return x / x.norm(2, -1, true).clamp_min(1e-6);
}
}  // namespace

VectorQuantizerImpl::VectorQuantizerImpl(const VectorQuantizerOptions& options_) : options(options_) { reset(); }

void VectorQuantizerImpl::reset() {
  TORCH_CHECK(options.codebook_size() > 0 && options.dim() > 0, "vector_quantizer: codebook_size and dim must be > 0, got ",
              options.codebook_size(), " x ", options.dim());
  TORCH_CHECK(options.decay() >= 0.0 && options.decay() < 1.0, "vector_quantizer: decay must be in [0, 1), got ",
              options.decay());
  TORCH_CHECK(options.beta() >= 0.0, "vector_quantizer: beta must be >= 0, got ", options.beta());
  TORCH_CHECK(options.dead_code_threshold() <= 0.0 || options.ema(),
              "vector_quantizer: dead_code_threshold needs ema=true (counts are EMA counts)");
  const int64_t K = options.codebook_size(), d = options.dim();
  embed = register_parameter("embed", at::empty({K, d}), !options.ema());
  cluster_size = register_buffer("cluster_size", at::ones({K}));
  embed_avg = register_buffer("embed_avg", at::empty({K, d}));
  seen = register_buffer("seen", at::zeros({K}));
  reset_parameters();
}

void VectorQuantizerImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  // kaiming_uniform like vector-quantize-pytorch's uniform_init, normalised for cosine.
  torch::nn::init::kaiming_uniform_(embed);
  if (options.cosine()) embed.copy_(l2norm(embed));
  cluster_size.fill_(1.0);
  embed_avg.copy_(embed);
  seen.zero_();
}

at::Tensor VectorQuantizerImpl::effective_codebook() const { return options.cosine() ? l2norm(embed) : embed; }

at::Tensor VectorQuantizerImpl::encode(const at::Tensor& z) const {
  TORCH_CHECK(z.dim() >= 1 && z.size(-1) == options.dim(), "vector_quantizer: expected [..., ", options.dim(),
              "] input, got ", z.sizes());
  at::NoGradGuard no_grad;
  auto flat = z.reshape({-1, options.dim()}).to(at::kFloat);
  auto e = effective_codebook().detach();
  at::Tensor codes;
  if (options.cosine()) {
    codes = at::matmul(l2norm(flat), e.t()).argmax(-1);
  } else {
    auto dist = flat.pow(2).sum(-1, true) + e.pow(2).sum(-1).unsqueeze(0) - 2.0 * at::matmul(flat, e.t());
    codes = dist.argmin(-1);
  }
  auto shape = z.sizes().vec();
  shape.pop_back();
  return codes.reshape(shape);
}

at::Tensor VectorQuantizerImpl::lookup(const at::Tensor& codes) const {
  TORCH_CHECK(codes.scalar_type() == at::kLong, "vector_quantizer: codes must be int64, got ", codes.scalar_type());
  if (codes.numel() > 0) {
    const int64_t lo = codes.min().item<int64_t>(), hi = codes.max().item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi < options.codebook_size(), "vector_quantizer: code ids must be in [0, ",
                options.codebook_size(), "), got range [", lo, ", ", hi, "]");
  }
  auto shape = codes.sizes().vec();
  shape.push_back(options.dim());
  return effective_codebook().index_select(0, codes.reshape({-1})).reshape(shape);
}

VectorQuantizerOutput VectorQuantizerImpl::forward(const at::Tensor& z_in) {
  TORCH_CHECK(z_in.dim() >= 1 && z_in.size(-1) == options.dim(), "vector_quantizer: expected [..., ", options.dim(),
              "] input, got ", z_in.sizes());
  TORCH_CHECK(z_in.is_floating_point(), "vector_quantizer: input must be floating point");
  auto z = z_in.to(at::kFloat);
  if (options.cosine()) z = l2norm(z);
  auto codes = encode(z);
  auto q = lookup(codes);
  VectorQuantizerOutput out;
  out.commitment_loss = at::mse_loss(z, q.detach());
  if (options.ema()) {
    out.codebook_loss = at::zeros({}, z.options());
    out.loss = options.beta() * out.commitment_loss;
  } else {
    out.codebook_loss = at::mse_loss(q, z.detach());
    out.loss = out.codebook_loss + options.beta() * out.commitment_loss;
  }
  out.quantized = z + (q - z).detach();
  out.codes = codes;
  {
    at::NoGradGuard no_grad;
    const int64_t K = options.codebook_size();
    auto counts = at::bincount(codes.reshape({-1}), {}, K).to(at::kFloat);
    auto p = counts / std::max<int64_t>(codes.numel(), 1);
    out.perplexity = at::exp(-(p * at::log(p.clamp_min(1e-10))).sum());
    out.usage = (counts > 0).to(at::kFloat).mean();
    if (is_training()) {
      seen.masked_fill_(counts > 0, 1.0);
      if (options.ema()) ema_update(z.detach().reshape({-1, options.dim()}), codes.reshape({-1}));
    }
  }
  return out;
}

void VectorQuantizerImpl::ema_update(const at::Tensor& flat, const at::Tensor& codes) {
  // vector-quantize-pytorch Codebook.update_codebook: lerp counts and sums by (1 - decay), then
  // embed = embed_avg / (laplace(cluster_size) * n), re-normalised for cosine; then expire dead codes.
  const int64_t K = options.codebook_size();
  const double w = 1.0 - options.decay();
  auto onehot = at::one_hot(codes, K).to(at::kFloat);  // [N, K]
  cluster_size.lerp_(onehot.sum(0), w);
  embed_avg.lerp_(at::matmul(onehot.t(), flat), w);
  auto n = cluster_size.sum();
  auto smoothed = (cluster_size + options.eps()) / (n + K * options.eps()) * n;
  auto normalized = embed_avg / smoothed.unsqueeze(1);
  if (options.cosine()) normalized = l2norm(normalized);
  embed.detach().copy_(normalized);

  if (options.dead_code_threshold() <= 0.0) return;
  auto dead = (cluster_size < options.dead_code_threshold()).nonzero().reshape({-1});
  int64_t num_dead = dead.numel();
  if (num_dead == 0 || flat.size(0) == 0) return;
  const int64_t num_samples = flat.size(0);
  // Like vector-quantize-pytorch: with more dead codes than samples, replace a random subset now.
  if (num_dead > num_samples) {
    dead = dead.index_select(0, at::randperm(num_dead, at::kLong).slice(0, 0, num_samples));
    num_dead = num_samples;
  }
  auto pick = at::randperm(num_samples, at::kLong).slice(0, 0, num_dead);
  auto sampled = flat.index_select(0, pick);
  if (options.cosine()) sampled = l2norm(sampled);
  const double reset_size = options.dead_code_threshold();
  embed.detach().index_copy_(0, dead, sampled);
  cluster_size.index_fill_(0, dead, reset_size);
  embed_avg.index_copy_(0, dead, sampled * reset_size);
}

double VectorQuantizerImpl::codebook_usage() const {
  if (options.ema()) {
    const double thr = std::max(options.dead_code_threshold(), 1e-3);
    return (cluster_size >= thr).to(at::kFloat).mean().item<double>();
  }
  return seen.mean().item<double>();
}

void VectorQuantizerImpl::reset_usage() {
  at::NoGradGuard no_grad;
  seen.zero_();
}

}  // namespace janus
