#include <cmath>

#include <gtest/gtest.h>

#include <torch/csrc/autograd/autograd.h>

#include "janus/core/error.h"
#include "janus/core/registry.h"
#include "janus/decoder/quality_controller.h"
#include "janus/decoder/vqvae.h"
#include "janus/io/module_io.h"
#include "test_util.h"

namespace janus {
namespace {

VQVAEOptions tiny(std::vector<int64_t> mult = {1, 2, 2, 4}) {
  return VQVAEOptions().in_channels(3).ch(16).ch_mult(mult).num_res_blocks(1).num_groups(8).z_channels(16)
      .codebook_size(64).codebook_dim(8);
}

// Saves a, loads it into b (built with the same options) and checks both give the same codes and decodings.
void expect_save_load_round_trip(VQVAE& a, VQVAE& b, const std::string& name, const at::Tensor& x) {
  auto path = test::temp_dir(name) + "/m.safetensors";
  save_module(*a, path);
  load_module(*b, path);
  a->eval();
  b->eval();
  EXPECT_TRUE(at::equal(a->encode(x), b->encode(x)));
  EXPECT_TRUE(at::equal(a->decode(a->encode(x)), b->decode(b->encode(x))));
}

TEST(VQVAE, ShapesForDownsample8And16) {
  torch::manual_seed(0);
  for (auto mult : {std::vector<int64_t>{1, 2, 2, 4}, std::vector<int64_t>{1, 1, 2, 2, 4}}) {
    VQVAE m(tiny(mult));
    m->eval();
    const int64_t f = m->downsample();
    EXPECT_EQ(f, mult.size() == 4 ? 8 : 16);
    auto x = at::rand({2, 3, 32, 48}) * 2 - 1;
    auto codes = m->encode(x);
    ASSERT_EQ(codes.sizes(), (std::vector<int64_t>{2, 32 / f, 48 / f}));
    EXPECT_EQ(codes.scalar_type(), at::kLong);
    auto img = m->decode(codes);
    EXPECT_EQ(img.sizes(), x.sizes());
    auto out = m->forward(x);
    EXPECT_TRUE(at::equal(out.codes, codes));
    // forward's reconstruction is decode(encode(x)): the straight-through value z + (q - z) equals the code vectors
    // up to float rounding, which the decoder amplifies slightly
    EXPECT_TRUE(test::all_close(out.reconstruction, img, 1e-4));
    EXPECT_THROW(m->encode(at::zeros({1, 3, 20, 32})), c10::Error);
    EXPECT_THROW(m->encode(at::zeros({1, 1, 32, 32})), c10::Error);
  }
}

TEST(VQVAE, KeysFollowLlamaGenNamesAndSaveLoad) {
  torch::manual_seed(1);
  VQVAE a(tiny()), b(tiny());
  auto names = a->named_parameters().keys();
  auto has = [&](const std::string& k) { return std::find(names.begin(), names.end(), k) != names.end(); };
  EXPECT_TRUE(has("encoder.conv_in.weight"));
  EXPECT_TRUE(has("encoder.conv_blocks.0.res.0.conv1.weight"));
  EXPECT_TRUE(has("encoder.conv_blocks.0.downsample.weight"));
  EXPECT_TRUE(has("encoder.mid.1.q.weight"));
  EXPECT_TRUE(has("decoder.conv_blocks.0.upsample.weight"));
  EXPECT_TRUE(has("decoder.conv_out.weight"));
  EXPECT_TRUE(has("quantize.embed"));
  EXPECT_TRUE(has("quant_conv.weight"));
  expect_save_load_round_trip(a, b, "vqvae", at::rand({1, 3, 16, 16}));
}

// Reference for the pointwise blocks: torch's GroupNorm applied to each position's channels of [B, C, H, W].
at::Tensor group_norm_per_position_ref(torch::nn::GroupNorm& norm, const at::Tensor& x) {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  return at::group_norm(x.permute({0, 2, 3, 1}).reshape({B * H * W, C, 1, 1}), norm->options.num_groups(), norm->weight,
                        norm->bias, norm->options.eps())
      .reshape({B, H, W, C})
      .permute({0, 3, 1, 2});
}

// group_norm_tokens (a LayerNorm per channel group plus the module's affine) equals torch's GroupNorm applied to
// each position's channels, in values and in the gradients of input and affine.
TEST(VQVAE, GroupNormTokensEqualsGroupNormOfEachPosition) {
  torch::manual_seed(11);
  torch::nn::GroupNorm norm(torch::nn::GroupNormOptions(4, 16).eps(1e-6));
  torch::NoGradGuard no_grad_init;
  norm->weight.uniform_(0.5, 1.5);
  norm->bias.uniform_(-0.5, 0.5);
  auto x = (at::randn({3, 16, 5, 7}) * 2 + 1).requires_grad_(true);
  auto xr = x.detach().clone().requires_grad_(true);
  auto wr = norm->weight.detach().clone().requires_grad_(true), br = norm->bias.detach().clone().requires_grad_(true);
  {
    at::AutoGradMode grad(true);
    const auto y = group_norm_tokens(norm, x.permute({0, 2, 3, 1})).permute({0, 3, 1, 2});
    ASSERT_EQ(y.sizes(), x.sizes());
    const auto ref = at::group_norm(xr.permute({0, 2, 3, 1}).reshape({3 * 5 * 7, 16, 1, 1}), 4, wr, br, 1e-6)
                         .reshape({3, 5, 7, 16})
                         .permute({0, 3, 1, 2});
    EXPECT_LT((y - ref).abs().max().item<double>(), 1e-5);
    const auto g = at::randn(x.sizes());
    (y * g).sum().backward();
    (ref * g).sum().backward();
  }
  EXPECT_LT((x.grad() - xr.grad()).abs().max().item<double>(), 1e-4);
  EXPECT_LT((norm->weight.grad() - wr.grad()).abs().max().item<double>(), 1e-4);
  EXPECT_LT((norm->bias.grad() - br.grad()).abs().max().item<double>(), 1e-4);
}

// The cell encoder runs on channels-last tokens (patch matmul, 1x1 convs and per-position GroupNorm as matmuls and
// grouped LayerNorms): the same latents and gradients as the conv modules and torch's GroupNorm per position on
// [B, C, H, W] (conv_in, each pointwise block, norm_out, conv_out); a pointwise block's NCHW forward agrees too.
TEST(VQVAE, CellEncoderTokenPathEqualsItsConvModules) {
  torch::manual_seed(13);
  VQVAE m(tiny().encoder("cell"));
  auto& e = *m->encoder;
  const auto x = at::rand({2, 3, 32, 32}) * 2 - 1;
  const auto z = e.forward(x);
  auto h = e.conv_in->forward(x);
  for (auto& mod : *e.mid) {
    auto& blk = *mod->as<VqResBlock>();
    auto r = blk.conv1->forward(at::silu(group_norm_per_position_ref(blk.norm1, h)));
    r = blk.conv2->forward(at::silu(group_norm_per_position_ref(blk.norm2, r)));
    r = (blk.nin_shortcut ? blk.nin_shortcut->forward(h) : h) + r;
    const auto nchw = blk.forward(h);
    EXPECT_TRUE(nchw.is_contiguous());
    EXPECT_LT((nchw - r).abs().max().item<double>(), 1e-4);
    h = r;
  }
  const auto ref = e.conv_out->forward(at::silu(group_norm_per_position_ref(e.norm_out, h)));
  ASSERT_EQ(z.sizes(), ref.sizes());
  EXPECT_TRUE(z.is_contiguous());
  EXPECT_LT((z - ref).abs().max().item<double>(), 1e-4);
  const auto g = at::randn(z.sizes());
  const auto grads = torch::autograd::grad({(z * g).sum()}, {e.conv_in->weight, e.conv_out->weight});
  const auto grads_ref = torch::autograd::grad({(ref * g).sum()}, {e.conv_in->weight, e.conv_out->weight});
  for (size_t i = 0; i < grads.size(); ++i) {
    EXPECT_LT((grads[i] - grads_ref[i]).abs().max().item<double>(),
              1e-3 * (1 + grads_ref[i].abs().max().item<double>()));
  }
}

// encoder "cell": a code depends on its own f x f cell only, and equal cells give equal latents anywhere. The conv
// encoder (LlamaGen's) fails both: its 3x3 convs and image-wide GroupNorm spread a change over every code.
TEST(VQVAE, CellEncoderLatentsDependOnlyOnTheirOwnCell) {
  torch::manual_seed(4);
  for (const std::string kind : {"cell", "conv"}) {
    VQVAE m(tiny().encoder(kind));
    m->eval();
    at::NoGradGuard no_grad;
    const int64_t f = m->downsample();  // 8: 4x4 latents for 32 px
    auto x = at::rand({1, 3, 32, 32}) * 2 - 1;
    auto y = x.clone();
    y.slice(2, 8, 16).slice(3, 16, 24).uniform_(-1, 1);  // cell (1, 2) only
    const auto zx = m->encoder->forward(x), zy = m->encoder->forward(y);
    ASSERT_EQ(zx.sizes(), (std::vector<int64_t>{1, 16, 32 / f, 32 / f}));
    const auto diff = (zx - zy).abs().amax(1)[0];  // [4, 4]
    EXPECT_GT(diff[1][2].item<double>(), 1e-3) << kind;
    if (kind == "cell") {
      diff[1][2] = 0;
      EXPECT_LT(diff.max().item<double>(), 1e-6) << "a change in cell (1, 2) moved other cells' latents";
    } else {
      diff[1][2] = 1;
      EXPECT_GT(diff.min().item<double>(), 1e-6) << "the conv encoder should mix the whole image";
    }
    // The same pattern in two cells of a blank image: equal latents (cell encoder only).
    auto blank = at::zeros({1, 3, 32, 32});
    auto pat = at::rand({1, 3, 8, 8});
    blank.slice(2, 0, 8).slice(3, 8, 16).copy_(pat);
    blank.slice(2, 24, 32).slice(3, 0, 8).copy_(pat);
    const auto z = m->encoder->forward(blank);
    const double gap = (z.select(2, 0).select(2, 1) - z.select(2, 3).select(2, 0)).abs().max().item<double>();
    if (kind == "cell") {
      EXPECT_LT(gap, 1e-5);
    } else {
      EXPECT_GT(gap, 1e-5);
    }
  }
  // Save / load keeps the cell encoder's codes; an unknown encoder is refused.
  VQVAE a(tiny().encoder("cell")), b(tiny().encoder("cell"));
  const auto x = at::rand({2, 3, 16, 24});
  expect_save_load_round_trip(a, b, "vqvae_cell", x);
  EXPECT_EQ(a->decode(a->encode(x)).sizes(), x.sizes());
  EXPECT_THROW(VQVAE(tiny().encoder("vit")), c10::Error);
}

TEST(VQVAE, GradientsReachEncoderThroughStraightThrough) {
  torch::manual_seed(2);
  VQVAE m(tiny());
  auto out = m->forward(at::rand({2, 3, 16, 16}));
  (out.rec_loss + out.quant_loss).backward();
  EXPECT_GT(m->encoder->conv_in->weight.grad().abs().sum().item<double>(), 0.0);
  EXPECT_GT(m->quantize->embed.grad().abs().sum().item<double>(), 0.0);
}

TEST(PatchDiscriminator, OutputIs30x30For256WithThreeLayers) {
  torch::manual_seed(3);
  PatchDiscriminator d(PatchDiscriminatorOptions().ndf(8));
  auto y = d->forward(at::randn({2, 3, 256, 256}));
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{2, 1, 30, 30}));
  // taming layout: conv, lrelu, [conv, bn, lrelu] x 3, conv
  EXPECT_EQ(d->main->size(), 12u);
  auto w = d->main[0]->as<torch::nn::Conv2d>()->weight;
  EXPECT_NEAR(w.std().item<double>(), 0.02, 0.005);
  PatchDiscriminator full;  // ndf 64 key names / shapes like taming
  auto p = full->named_parameters();
  EXPECT_EQ(p["main.2.weight"].sizes(), (std::vector<int64_t>{128, 64, 4, 4}));
  EXPECT_EQ(p["main.3.weight"].sizes(), (std::vector<int64_t>{128}));
  EXPECT_EQ(p["main.11.weight"].sizes(), (std::vector<int64_t>{1, 512, 4, 4}));
}

TEST(QualityController, AdaptiveWeightMatchesHandComputedValue) {
  // W = (1, 2); rec = sum W^2 -> grad (2, 4), norm sqrt(20); g = 3 W0 - W1 -> grad (3, -1), norm sqrt(10).
  auto W = at::tensor({1.0f, 2.0f}).requires_grad_(true);
  auto rec = (W * W).sum();
  auto g = 3.0 * W[0] - W[1];
  auto w = QualityControllerImpl::adaptive_weight(rec, g, W, 0.8);
  EXPECT_NEAR(w.item<double>(), std::sqrt(20.0) / (std::sqrt(10.0) + 1e-4) * 0.8, 1e-6);
  EXPECT_FALSE(w.requires_grad());
  // the graphs are retained: both losses can still be back-propagated
  (rec + g).backward();
  EXPECT_TRUE(test::all_close(W.grad(), at::tensor({5.0f, 3.0f}), 1e-6));
  // clamp at 1e4 when the adversarial gradient vanishes
  auto W2 = at::tensor({1.0f, 2.0f}).requires_grad_(true);
  auto w2 = QualityControllerImpl::adaptive_weight((W2 * W2).sum(), (W2 * 0.0).sum(), W2, 0.8);
  EXPECT_NEAR(w2.item<double>(), 1e4 * 0.8, 1e-3);
}

TEST(QualityController, HingeLossesDiscStartAndOwnOptimizer) {
  auto lr = at::tensor({2.0f, 0.5f, -1.0f}), lf = at::tensor({-2.0f, 0.0f, 3.0f});
  // 0.5 * (mean(0, 0.5, 2) + mean(0, 1, 4))
  EXPECT_NEAR(QualityControllerImpl::hinge_d_loss(lr, lf).item<double>(), 0.5 * (2.5 / 3 + 5.0 / 3), 1e-6);

  torch::manual_seed(4);
  VQVAE m(tiny({1, 2}));
  QualityController qc(QualityControllerOptions().disc_start(5).discriminator(PatchDiscriminatorOptions().ndf(8).n_layers(2)));
  auto x = at::rand({2, 3, 32, 32}) * 2 - 1;
  auto out = m->forward(x);
  auto rec = qc->reconstruction_loss(x, out.reconstruction);
  auto before = qc->generator_loss(out.reconstruction, rec, m->decoder->last_layer(), 4);
  EXPECT_EQ(before.disc_factor, 0.0);
  EXPECT_EQ(before.d_weight.item<double>(), 0.0);
  auto after = qc->generator_loss(out.reconstruction, rec, m->decoder->last_layer(), 5);
  EXPECT_EQ(after.disc_factor, 1.0);
  auto expect = QualityControllerImpl::adaptive_weight(rec, after.g_loss, m->decoder->last_layer(), 0.8);
  EXPECT_NEAR(after.d_weight.item<double>(), expect.item<double>(), 1e-6);
  EXPECT_GT(after.d_weight.item<double>(), 0.0);
  EXPECT_NEAR(after.loss.item<double>(), (after.d_weight * after.g_loss).item<double>(), 1e-6);
  (rec + after.loss).backward();
  EXPECT_GT(m->decoder->conv_out->weight.grad().abs().sum().item<double>(), 0.0);

  auto w0 = qc->discriminator->main[0]->as<torch::nn::Conv2d>()->weight.clone();
  auto s0 = qc->discriminator_step(x, out.reconstruction, 4);
  EXPECT_FALSE(s0.stepped);
  EXPECT_EQ(s0.loss.item<double>(), 0.0);
  EXPECT_TRUE(at::equal(w0, qc->discriminator->main[0]->as<torch::nn::Conv2d>()->weight));
  auto s1 = qc->discriminator_step(x, out.reconstruction, 5);
  EXPECT_TRUE(s1.stepped);
  EXPECT_GT(s1.loss.item<double>(), 0.0);
  EXPECT_FALSE(at::equal(w0, qc->discriminator->main[0]->as<torch::nn::Conv2d>()->weight));
  // perceptual hook is off by default; a weight without a hook is a config error
  QualityController qp(QualityControllerOptions().perceptual_weight(1.0));
  EXPECT_THROW(qp->reconstruction_loss(x, x), ConfigError);
  qp->perceptual = [](const at::Tensor& a, const at::Tensor& b) { return (a - b).pow(2).mean(); };
  EXPECT_NEAR(qp->reconstruction_loss(x, x * 0.0).item<double>(),
              (x.abs().mean() + x.pow(2).mean()).item<double>(), 1e-6);
}

TEST(DecoderRegistry, ModulesAreRegisteredAndRun) {
  auto& reg = ModuleRegistry::global();
  for (const char* n : {"vector_quantizer", "vqvae", "patch_discriminator", "conditional_adapter", "causal_transformer",
                        "image_token_generator"}) {
    EXPECT_TRUE(reg.contains(n)) << n;
  }
  auto m = reg.build("vqvae", {{"ch", 16}, {"ch_mult", {1, 2, 2, 4}}, {"num_res_blocks", 1}, {"num_groups", 8},
                               {"z_channels", 16}, {"codebook_size", 32}});
  auto out = reg.run("vqvae", m, {{"image", at::rand({1, 3, 16, 16})}});
  EXPECT_EQ(out.at("codes").sizes(), (std::vector<int64_t>{1, 2, 2}));
  EXPECT_EQ(out.at("reconstruction").sizes(), (std::vector<int64_t>{1, 3, 16, 16}));
  auto d = reg.build("patch_discriminator", {{"ndf", 8}});
  EXPECT_EQ(reg.run("patch_discriminator", d, {{"x", at::rand({1, 3, 64, 64})}}).at("logits").sizes(),
            (std::vector<int64_t>{1, 1, 6, 6}));
  EXPECT_THROW(reg.build("conditional_adapter", {{"dim", 8}, {"task", "text_to_imag"}}), InputError);
  auto g = reg.build("image_token_generator", {{"text_vocab", 10}, {"codebook_size", 16}, {"dim", 32}, {"depth", 1}});
  auto logits = reg.run("image_token_generator", g,
                        {{"text", at::randint(10, {2, 3}, at::kLong)}, {"codes", at::randint(16, {2, 5}, at::kLong)}});
  EXPECT_EQ(logits.at("logits").sizes(), (std::vector<int64_t>{2, 5, 16}));
}

}  // namespace
}  // namespace janus
