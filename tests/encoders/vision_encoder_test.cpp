#include <fstream>
#include <map>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/nn.h>
#include <nlohmann/json.hpp>

#include "janus/core/error.h"
#include "janus/encoders/vision_encoder.h"
#include "janus/io/module_io.h"
#include "janus/io/safetensors.h"
#include "parity_cases.h"
#include "test_util.h"

namespace jt = janus::test;

namespace {

// Writes the timm cases once per test binary run.
const std::string& timm_cases() {
  static const std::string dir = jt::cached_python_case("timm_vit_case.py");
  return dir;
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  return nlohmann::json::parse(f);
}

void check_timm_case(const std::string& name) {
  const auto& dir = timm_cases();
  auto opts = janus::vision_encoder_options_from_json(read_json(dir + "/" + name + ".json"));
  torch::manual_seed(0);
  janus::VisionEncoder enc(opts);
  janus::load_timm_vision(*enc, dir + "/" + name + "_weights.safetensors");
  enc->eval();
  const auto io = janus::load_safetensors(dir + "/" + name + "_io.safetensors");
  torch::NoGradGuard ng;
  const auto out = enc->forward(io.at("images"));
  EXPECT_TRUE(jt::all_close(out.tokens, io.at("tokens"), 1e-5)) << name << " tokens";
  EXPECT_TRUE(jt::all_close(out.pooled, io.at("pooled"), 1e-5)) << name << " pooled";
}

}  // namespace

TEST(VisionEncoder, TimmParityClassToken) { check_timm_case("cls"); }
TEST(VisionEncoder, TimmParityAvgPoolNoClassToken) { check_timm_case("avg"); }
TEST(VisionEncoder, TimmParityResampledPositions) { check_timm_case("resize"); }

TEST(VisionEncoder, TimmFileLoadsWithPlainStrictLoad) {
  // Names are timm's own: a strict load without any rename succeeds (timm built with num_classes=0).
  const auto& dir = timm_cases();
  janus::VisionEncoder enc(janus::vision_encoder_options_from_json(read_json(dir + "/avg.json")));
  EXPECT_TRUE(janus::load_module(*enc, dir + "/avg_weights.safetensors").ok());
}

TEST(VisionEncoder, ShapesAndFlavours) {
  auto o = janus::VisionEncoderOptions().image_size(32).patch_size(8).dim(32).depth(2).heads(4);
  janus::VisionEncoder enc(o);
  const auto out = enc->forward(torch::randn({3, 3, 32, 32}));
  EXPECT_EQ(out.tokens.sizes(), (std::vector<int64_t>{3, 17, 32}));
  EXPECT_EQ(out.pooled.sizes(), (std::vector<int64_t>{3, 32}));
  const auto out2 = enc->forward(torch::randn({1, 3, 48, 24}));
  EXPECT_EQ(out2.tokens.sizes(), (std::vector<int64_t>{1, 1 + 6 * 3, 32}));
  EXPECT_EQ(janus::VisionEncoderOptions::flavour("small").dim(), 384);
  EXPECT_EQ(janus::VisionEncoderOptions::flavour("large").depth(), 24);
  EXPECT_EQ(janus::VisionEncoderOptions::flavour("tiny").heads(), 3);
  EXPECT_EQ(janus::VisionEncoderOptions::flavour("base").dim(), 768);
  EXPECT_THROW(janus::VisionEncoderOptions::flavour("huge"), janus::InputError);
}

TEST(VisionEncoder, BadInputsGiveClearErrors) {
  EXPECT_THROW(janus::VisionEncoder(janus::VisionEncoderOptions().class_token(false)), janus::InputError);
  EXPECT_THROW(janus::VisionEncoder(janus::VisionEncoderOptions().image_size(30).patch_size(8)), janus::InputError);
  janus::VisionEncoder enc(janus::VisionEncoderOptions().image_size(16).patch_size(8).dim(16).depth(1).heads(2));
  EXPECT_THAT(
      [&] {
        enc->forward(torch::randn({1, 3, 20, 16}));
      },
      ::testing::ThrowsMessage<c10::Error>(::testing::HasSubstr("not a multiple of patch_size 8")));
  EXPECT_THAT(
      [&] {
        enc->forward(torch::randn({1, 1, 16, 16}));
      },
      ::testing::ThrowsMessage<c10::Error>(::testing::HasSubstr("expected images [B, 3, H, W]")));
}

TEST(VisionEncoder, SaveLoadRoundTripAndAdaptersStartAsIdentity) {
  const auto dir = jt::temp_dir();
  auto o = janus::VisionEncoderOptions().image_size(16).patch_size(8).dim(16).depth(2).heads(2);
  torch::manual_seed(1);
  janus::VisionEncoder a(o);
  torch::manual_seed(2);
  janus::VisionEncoder b(o);
  a->eval();
  b->eval();
  const auto x = torch::randn({2, 3, 16, 16});
  ASSERT_FALSE(torch::allclose(a->forward(x).tokens, b->forward(x).tokens));
  janus::save_module(*a, dir + "/v.safetensors");
  EXPECT_TRUE(janus::load_module(*b, dir + "/v.safetensors").ok());
  EXPECT_TRUE(torch::equal(a->forward(x).tokens, b->forward(x).tokens));
  // Same weights + adapters after every block: identical output at init.
  janus::VisionEncoder c(janus::VisionEncoderOptions(o).adapter_dim(4));
  janus::load_timm_vision(*c, dir + "/v.safetensors");
  c->eval();
  EXPECT_TRUE(torch::equal(a->forward(x).pooled, c->forward(x).pooled));
}

// The convolutional stem (stem: conv): token shapes as the patch stem, the registered names and widths, BatchNorm
// running statistics saved and loaded with the weights, and clear errors for patch sizes it cannot build.
TEST(VisionEncoder, ConvStemNamesStatisticsAndRoundTrip) {
  const auto dir = jt::temp_dir();
  auto o = janus::VisionEncoderOptions().image_size(32).patch_size(8).dim(64).depth(1).heads(2).stem("conv");
  torch::manual_seed(1);
  janus::VisionEncoder a(o);
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& p : a->named_parameters()) shapes[p.key()] = p.value().sizes().vec();
  // 3x3 stride-1 conv, then log2(8) = 3 stride-2 convs; widths 32, 64, then capped at dim 64; 1x1 projection.
  EXPECT_EQ(shapes.at("patch_embed.stem.0.weight"), (std::vector<int64_t>{32, 3, 3, 3}));
  EXPECT_EQ(shapes.at("patch_embed.stem.3.weight"), (std::vector<int64_t>{64, 32, 3, 3}));
  EXPECT_EQ(shapes.at("patch_embed.stem.9.weight"), (std::vector<int64_t>{64, 64, 3, 3}));
  EXPECT_EQ(shapes.count("patch_embed.stem.12.weight"), 0u);
  EXPECT_EQ(shapes.at("patch_embed.proj.weight"), (std::vector<int64_t>{64, 64, 1, 1}));
  EXPECT_EQ(shapes.count("patch_embed.stem.0.bias"), 0u);  // conv -> BatchNorm: no conv bias
  const auto x = torch::randn({3, 3, 32, 32});
  const auto out = a->forward(x);  // training mode: batch statistics, running statistics move
  EXPECT_EQ(out.tokens.sizes(), (std::vector<int64_t>{3, 17, 64}));
  EXPECT_TRUE(a->patch_embed->mixes_patches());
  bool moved = false;
  for (const auto& b : a->named_buffers()) {
    if (b.key() == "patch_embed.stem.1.running_mean") moved = b.value().abs().sum().item<double>() > 0;
  }
  EXPECT_TRUE(moved) << "BatchNorm running_mean did not move in a training forward";
  a->eval();
  const auto ya = a->forward(x).tokens;
  EXPECT_FALSE(torch::allclose(ya, out.tokens, 1e-4, 1e-4)) << "eval used batch statistics";
  janus::save_module(*a, dir + "/v.safetensors");
  torch::manual_seed(2);
  janus::VisionEncoder b(o);
  b->eval();
  ASSERT_FALSE(torch::allclose(ya, b->forward(x).tokens));
  EXPECT_TRUE(janus::load_module(*b, dir + "/v.safetensors").ok());
  EXPECT_TRUE(torch::equal(ya, b->forward(x).tokens)) << "running statistics were not saved or not loaded";
  // A patch-stem file does not load into a conv-stem encoder (and the reverse): names differ, not silently ignored.
  janus::VisionEncoder patch(janus::VisionEncoderOptions(o).stem("patch"));
  EXPECT_THAT([&] { janus::load_module(*patch, dir + "/v.safetensors"); },
              ::testing::ThrowsMessage<janus::InputError>(::testing::HasSubstr("patch_embed.proj.weight")));
  EXPECT_FALSE(patch->patch_embed->mixes_patches());
  // JSON options and errors.
  EXPECT_EQ(janus::vision_encoder_options_from_json({{"stem", "conv"}, {"patch_size", 4}}).stem(), "conv");
  EXPECT_THAT([&] { janus::VisionEncoder(janus::VisionEncoderOptions(o).image_size(36).patch_size(6)); },
              ::testing::ThrowsMessage<janus::InputError>(::testing::HasSubstr("power-of-two patch_size, got 6")));
  EXPECT_THAT([&] { janus::VisionEncoder(janus::VisionEncoderOptions(o).stem("resnet")); },
              ::testing::ThrowsMessage<janus::InputError>(::testing::HasSubstr("stem 'resnet'")));
}
