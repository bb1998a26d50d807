#pragma once
// Adversarial quality controller for the VQ-VAE (VQGAN / taming-transformers): PatchGAN discriminator, hinge
// losses, adaptive generator weight from gradient norms at the decoder's last layer, disc_start warm-up, and the
// discriminator's own AdamW optimiser. An optional perceptual-loss hook (no LPIPS weights ship: off by default).
#include <cstdint>
#include <functional>
#include <memory>

#include <ATen/ATen.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/pimpl.h>
#include <torch/optim/adamw.h>

namespace janus {

struct PatchDiscriminatorOptions {
  TORCH_ARG(int64_t, in_channels) = 3;
  TORCH_ARG(int64_t, ndf) = 64;
  TORCH_ARG(int64_t, n_layers) = 3;
  // taming uses BatchNorm2d (its ActNorm is optional); "batch" or "none".
  TORCH_ARG(std::string, norm) = "batch";
};

// taming NLayerDiscriminator: keys main.0 (conv), main.2 (conv), main.3 (norm) ... as in PyTorch.
class PatchDiscriminatorImpl : public torch::nn::Cloneable<PatchDiscriminatorImpl> {
 public:
  explicit PatchDiscriminatorImpl(const PatchDiscriminatorOptions& options = {});
  void reset() override;
  void reset_parameters();  // conv N(0, 0.02); norm weight N(1, 0.02), bias 0
  // [B, C, H, W] -> patch logits [B, 1, H', W'] (256 -> 30 with n_layers 3)
  at::Tensor forward(const at::Tensor& x);
  PatchDiscriminatorOptions options;
  torch::nn::Sequential main{nullptr};
};
TORCH_MODULE(PatchDiscriminator);

struct QualityControllerOptions {
  TORCH_ARG(PatchDiscriminatorOptions, discriminator);
  TORCH_ARG(double, disc_weight) = 0.8;
  TORCH_ARG(int64_t, disc_start) = 0;   // global step from which the adversarial terms are on
  TORCH_ARG(double, disc_factor) = 1.0;
  TORCH_ARG(double, lr) = 1e-4;
  TORCH_ARG(double, beta1) = 0.5;
  TORCH_ARG(double, beta2) = 0.9;
  TORCH_ARG(double, weight_decay) = 0.0;
  TORCH_ARG(double, perceptual_weight) = 0.0;  // > 0 needs a perceptual hook
};

struct GeneratorLossOutput {
  at::Tensor loss;      // disc_factor * d_weight * g_loss (0 before disc_start)
  at::Tensor g_loss;    // -mean D(x_hat)
  at::Tensor d_weight;  // adaptive weight (detached, x disc_weight); 0 before disc_start
  double disc_factor = 0.0;
};

struct DiscriminatorStepOutput {
  at::Tensor loss;  // disc_factor * hinge loss (detached)
  at::Tensor logits_real, logits_fake;  // means (detached)
  bool stepped = false;
};

class QualityControllerImpl : public torch::nn::Module {
 public:
  explicit QualityControllerImpl(const QualityControllerOptions& options = {});

  double disc_factor_at(int64_t step) const { return step >= options.disc_start() ? options.disc_factor() : 0.0; }
  // ||grad_W rec|| / (||grad_W g|| + 1e-4), clamped to [0, 1e4], detached, x disc_weight. Keeps both graphs.
  static at::Tensor adaptive_weight(const at::Tensor& rec_loss, const at::Tensor& g_loss, const at::Tensor& last_layer,
                                    double disc_weight);
  // L1 (+ perceptual_weight * hook(x, x_hat) when enabled).
  at::Tensor reconstruction_loss(const at::Tensor& x, const at::Tensor& x_hat) const;
  // Generator-side adversarial term; rec_loss is the (full) reconstruction loss, last_layer the decoder's last conv.
  GeneratorLossOutput generator_loss(const at::Tensor& x_hat, const at::Tensor& rec_loss, const at::Tensor& last_layer,
                                     int64_t step);
  // 0.5 * (mean relu(1 - D(x)) + mean relu(1 + D(x_hat)))
  static at::Tensor hinge_d_loss(const at::Tensor& logits_real, const at::Tensor& logits_fake);
  // One discriminator update with its own optimiser (x_hat is detached here). No update before disc_start.
  DiscriminatorStepOutput discriminator_step(const at::Tensor& x, const at::Tensor& x_hat, int64_t step);

  QualityControllerOptions options;
  PatchDiscriminator discriminator{nullptr};
  std::unique_ptr<torch::optim::AdamW> optimizer;
  std::function<at::Tensor(const at::Tensor&, const at::Tensor&)> perceptual;  // optional, e.g. an LPIPS module
};
TORCH_MODULE(QualityController);

}  // namespace janus
