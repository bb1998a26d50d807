#include <fstream>

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
