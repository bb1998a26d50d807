#include "janus/decoder/quality_controller.h"

#include <torch/autograd.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>

#include "janus/core/error.h"

namespace janus {

PatchDiscriminatorImpl::PatchDiscriminatorImpl(const PatchDiscriminatorOptions& options_) : options(options_) { reset(); }

void PatchDiscriminatorImpl::reset() {
  TORCH_CHECK(options.n_layers() >= 1 && options.ndf() > 0 && options.in_channels() > 0,
              "patch_discriminator: n_layers >= 1, ndf > 0 and in_channels > 0 required");
  TORCH_CHECK(options.norm() == "batch" || options.norm() == "none", "patch_discriminator: norm must be batch or none, got '",
              options.norm(), "'");
  const bool bn = options.norm() == "batch";
  const int64_t ndf = options.ndf();
  auto c4 = [](int64_t in, int64_t out, int64_t stride, bool bias) {
    return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 4).stride(stride).padding(1).bias(bias));
  };
  auto lrelu = [] { return torch::nn::LeakyReLU(torch::nn::LeakyReLUOptions().negative_slope(0.2)); };
  main = torch::nn::Sequential();
  main->push_back(c4(options.in_channels(), ndf, 2, true));
  main->push_back(lrelu());
  int64_t mult = 1, prev = 1;
  for (int64_t n = 1; n <= options.n_layers(); ++n) {
    prev = mult;
    mult = std::min<int64_t>(int64_t{1} << n, 8);
    main->push_back(c4(ndf * prev, ndf * mult, n < options.n_layers() ? 2 : 1, !bn));
    if (bn) main->push_back(torch::nn::BatchNorm2d(ndf * mult));
    main->push_back(lrelu());
  }
  main->push_back(c4(ndf * mult, 1, 1, true));
  register_module("main", main);
  reset_parameters();
}

void PatchDiscriminatorImpl::reset_parameters() {
  torch::NoGradGuard g;
  for (auto& m : main->children()) {
    if (auto c = m->as<torch::nn::Conv2d>()) {
      torch::nn::init::normal_(c->weight, 0.0, 0.02);
    } else if (auto b = m->as<torch::nn::BatchNorm2d>()) {
      torch::nn::init::normal_(b->weight, 1.0, 0.02);
      torch::nn::init::zeros_(b->bias);
    }
  }
}

at::Tensor PatchDiscriminatorImpl::forward(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == options.in_channels(), "patch_discriminator: expected [B, ", options.in_channels(),
              ", H, W], got ", x.sizes());
  return main->forward(x);
}

QualityControllerImpl::QualityControllerImpl(const QualityControllerOptions& options_) : options(options_) {
  TORCH_CHECK(options.disc_weight() >= 0.0 && options.lr() > 0.0, "quality_controller: disc_weight >= 0 and lr > 0 required");
  discriminator = register_module("discriminator", PatchDiscriminator(options.discriminator()));
  optimizer = std::make_unique<torch::optim::AdamW>(
      discriminator->parameters(), torch::optim::AdamWOptions(options.lr())
                                       .betas({options.beta1(), options.beta2()})
                                       .weight_decay(options.weight_decay()));
}

at::Tensor QualityControllerImpl::adaptive_weight(const at::Tensor& rec_loss, const at::Tensor& g_loss,
                                                  const at::Tensor& last_layer, double disc_weight) {
  TORCH_CHECK(last_layer.requires_grad(), "quality_controller: last_layer must require grad");
  auto rec_grad = torch::autograd::grad({rec_loss}, {last_layer}, {}, /*retain_graph=*/true)[0];
  auto g_grad = torch::autograd::grad({g_loss}, {last_layer}, {}, /*retain_graph=*/true)[0];
  auto w = rec_grad.norm() / (g_grad.norm() + 1e-4);
  return w.clamp(0.0, 1e4).detach() * disc_weight;
}

at::Tensor QualityControllerImpl::reconstruction_loss(const at::Tensor& x, const at::Tensor& x_hat) const {
  TORCH_CHECK(x.sizes() == x_hat.sizes(), "quality_controller: x ", x.sizes(), " and x_hat ", x_hat.sizes(), " differ");
  auto loss = (x - x_hat).abs().mean();
  if (options.perceptual_weight() > 0.0) {
    if (!perceptual) throw ConfigError("quality_controller: perceptual_weight > 0 but no perceptual hook is set");
    loss = loss + options.perceptual_weight() * perceptual(x, x_hat).mean();
  }
  return loss;
}

GeneratorLossOutput QualityControllerImpl::generator_loss(const at::Tensor& x_hat, const at::Tensor& rec_loss,
                                                          const at::Tensor& last_layer, int64_t step) {
  GeneratorLossOutput out;
  out.disc_factor = disc_factor_at(step);
  out.g_loss = -discriminator->forward(x_hat).mean();
  if (out.disc_factor == 0.0) {
    // Before disc_start both adversarial terms are off; skip the two extra backward passes.
    out.d_weight = at::zeros({}, x_hat.options());
    out.loss = out.g_loss * 0.0;
    return out;
  }
  out.d_weight = adaptive_weight(rec_loss, out.g_loss, last_layer, options.disc_weight());
  out.loss = out.disc_factor * out.d_weight * out.g_loss;
  return out;
}

at::Tensor QualityControllerImpl::hinge_d_loss(const at::Tensor& logits_real, const at::Tensor& logits_fake) {
  return 0.5 * (at::relu(1.0 - logits_real).mean() + at::relu(1.0 + logits_fake).mean());
}

DiscriminatorStepOutput QualityControllerImpl::discriminator_step(const at::Tensor& x, const at::Tensor& x_hat, int64_t step) {
  DiscriminatorStepOutput out;
  const double factor = disc_factor_at(step);
  auto real = discriminator->forward(x.detach());
  auto fake = discriminator->forward(x_hat.detach());
  auto loss = factor * hinge_d_loss(real, fake);
  if (factor > 0.0) {
    optimizer->zero_grad();
    loss.backward();
    optimizer->step();
    out.stepped = true;
  }
  out.loss = loss.detach();
  out.logits_real = real.detach().mean();
  out.logits_fake = fake.detach().mean();
  return out;
}

}  // namespace janus
