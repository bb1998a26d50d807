#include <gtest/gtest.h>
#include <torch/nn.h>
#include <nlohmann/json.hpp>

#include "janus/core/registry.h"
#include "janus/io/module_io.h"
#include "janus/io/safetensors.h"
#include "parity_cases.h"
#include "test_util.h"

namespace jt = janus::test;

namespace {
struct Case {
  std::string name;
  nlohmann::json options;
  janus::TensorMap inputs;
  std::map<std::string, std::vector<int64_t>> shapes;
};

std::vector<Case> cases() {
  return {
      {"vision_encoder",
       {{"flavour", "tiny"}, {"depth", 1}, {"image_size", 32}, {"patch_size", 16}},
       {{"images", torch::randn({2, 3, 32, 32})}},
       {{"tokens", {2, 5, 192}}, {"pooled", {2, 192}}}},
      {"text_encoder",
       {{"flavour", "tiny"}, {"depth", 1}, {"vocab_size", 50}, {"max_positions", 16}},
       {{"input_ids", torch::randint(0, 50, {2, 7})}, {"attention_mask", torch::ones({2, 7}, torch::kLong)}},
       {{"tokens", {2, 7, 128}}, {"pooled", {2, 128}}, {"mlm_logits", {2, 7, 50}}}},
      {"video_encoder",
       {{"vision", {{"image_size", 16}, {"patch_size", 8}, {"dim", 16}, {"depth", 1}, {"heads", 2}}},
        {"max_frames", 4}},
       {{"video", torch::randn({1, 3, 3, 16, 16})}},
       {{"tokens", {1, 3, 5, 16}}, {"pooled", {1, 16}}}},
      {"point_cloud_encoder",
       {{"num_groups", 8}, {"group_size", 4}, {"dim", 32}, {"depth", 1}, {"heads", 4}},
       {{"points", torch::randn({2, 40, 3})}},
       {{"tokens", {2, 8, 32}}, {"centers", {2, 8, 3}}, {"pooled", {2, 32}}}},
      {"dynamic_router",
       {{"in_dim", 6}, {"out_dim", 5}},
       {{"x", torch::randn({3, 4, 6})}, {"modality_id", torch::tensor({0, 3, 1}, torch::kLong)}},
       {{"y", {3, 4, 5}}}},
      {"adapter", {{"dim", 6}, {"bottleneck", 2}}, {{"x", torch::randn({3, 6})}}, {{"y", {3, 6}}}},
  };
}
}  // namespace

TEST(EncoderRegistry, EveryModuleBuildsRunsAndRoundTrips) {
  auto& reg = janus::ModuleRegistry::global();
  const auto dir = jt::temp_dir();
  for (const auto& c : cases()) {
    SCOPED_TRACE(c.name);
    ASSERT_TRUE(reg.contains(c.name));
    torch::manual_seed(0);
    auto a = reg.build(c.name, c.options);
    a.module->eval();
    const auto out = reg.run(c.name, a, c.inputs);
    for (const auto& [k, shape] : c.shapes) {
      ASSERT_TRUE(out.count(k)) << k;
      EXPECT_EQ(out.at(k).sizes(), shape) << k;
    }
    janus::save_module(*a.module, dir + "/" + c.name + ".safetensors");
    torch::manual_seed(1);
    auto b = reg.build(c.name, c.options);
    b.module->eval();
    EXPECT_TRUE(janus::load_module(*b.module, dir + "/" + c.name + ".safetensors").ok());
    const auto out2 = reg.run(c.name, b, c.inputs);
    for (const auto& [k, v] : out) EXPECT_TRUE(torch::equal(v, out2.at(k))) << k;
  }
}

TEST(EncoderRegistry, JanusModuleRunsTimmWeights) {
  // End to end through the CLI: timm weights load strictly by their own names and reproduce timm's tokens.
  const auto case_dir = jt::cached_python_case("timm_vit_case.py");
  const auto dir = jt::temp_dir();
  const auto io = janus::load_safetensors(case_dir + "/avg_io.safetensors");
  janus::save_safetensors(dir + "/in.safetensors", {{"images", io.at("images")}});
  const std::string opts = R"({"image_size": 32, "patch_size": 8, "dim": 48, "depth": 3, "heads": 3,
      "class_token": false, "global_pool": "avg", "qkv_bias": false, "mlp_ratio": 2.0})";
  const auto r = jt::run(jt::tool("janus_module") + " run --name vision_encoder --options " + jt::quote(opts) +
                         " --weights " + case_dir + "/avg_weights.safetensors --inputs " + dir +
                         "/in.safetensors --out " + dir + "/out.safetensors 2>&1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto out = janus::load_safetensors(dir + "/out.safetensors");
  EXPECT_TRUE(jt::all_close(out.at("tokens"), io.at("tokens"), 1e-5));
  EXPECT_TRUE(jt::all_close(out.at("pooled"), io.at("pooled"), 1e-5));
}
