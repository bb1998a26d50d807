#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/nn.h>

#include "janus/core/error.h"
#include "janus/core/layers.h"
#include "janus/io/module_io.h"
#include "test_util.h"

using ::testing::HasSubstr;

TEST(ModuleIO, SaveLoadRoundTrip) {
  const auto dir = janus::test::temp_dir();
  torch::manual_seed(0);
  janus::Mlp a(janus::MlpOptions(4, 8));
  torch::manual_seed(1);
  janus::Mlp b(janus::MlpOptions(4, 8));
  const auto x = torch::randn({2, 4});
  ASSERT_FALSE(torch::allclose(a->forward(x), b->forward(x)));
  janus::save_module(*a, dir + "/m.safetensors");
  const auto report = janus::load_module(*b, dir + "/m.safetensors");
  EXPECT_TRUE(report.ok());
  EXPECT_TRUE(torch::equal(a->forward(x), b->forward(x)));
}

TEST(ModuleIO, StrictErrorListsEveryProblem) {
  const auto dir = janus::test::temp_dir();
  janus::save_safetensors(
      dir + "/w.safetensors",
      {{"fc1.weight", torch::zeros({8, 4})}, {"fc2.weight", torch::zeros({3, 3})}, {"extra.bias", torch::zeros({1})}});
  janus::Mlp m(janus::MlpOptions(4, 8));
  const auto before = m->fc1->weight.clone();
  try {
    janus::load_module(*m, dir + "/w.safetensors");
    FAIL() << "no throw";
  } catch (const janus::InputError& e) {
    const std::string msg = e.what();
    EXPECT_THAT(msg, HasSubstr("missing 2 [fc1.bias, fc2.bias]"));
    EXPECT_THAT(msg, HasSubstr("unexpected 1 [extra.bias]"));
    EXPECT_THAT(msg, HasSubstr("fc2.weight: file [3, 3] vs module [4, 8]"));
  }
  EXPECT_TRUE(torch::equal(m->fc1->weight, before));  // strict failure loads nothing
}

TEST(ModuleIO, NonStrictReportsAndLoadsWhatMatches) {
  const auto dir = janus::test::temp_dir();
  janus::save_safetensors(dir + "/w.safetensors", {{"fc1.weight", torch::ones({8, 4})}, {"junk", torch::ones({2})}});
  janus::Mlp m(janus::MlpOptions(4, 8));
  janus::LoadOptions opts;
  opts.strict = false;
  const auto r = janus::load_module(*m, dir + "/w.safetensors", opts);
  EXPECT_EQ(r.missing.size(), 3u);
  EXPECT_EQ(r.unexpected, std::vector<std::string>{"junk"});
  EXPECT_TRUE(torch::equal(m->fc1->weight, torch::ones({8, 4})));
}

TEST(ModuleIO, PrefixAndRename) {
  janus::Mlp src(janus::MlpOptions(4, 8));
  janus::TensorMap state;
  for (const auto& [k, v] : janus::module_state(*src)) state["model.mlp." + k] = v;
  state["model.other"] = torch::zeros({1});
  janus::Mlp dst(janus::MlpOptions(4, 8));
  janus::LoadOptions opts;
  opts.prefix = "model";
  opts.rename = [](const std::string& k) { return k.rfind("mlp.", 0) == 0 ? k.substr(4) : std::string(); };
  EXPECT_TRUE(janus::load_module_state(*dst, state, opts).ok());
  EXPECT_TRUE(torch::equal(dst->fc2->weight, src->fc2->weight));
}

TEST(ModuleIO, DtypeIsConvertedOnLoad) {
  janus::Mlp a(janus::MlpOptions(4, 8));
  janus::TensorMap half;
  for (const auto& [k, v] : janus::module_state(*a)) half[k] = v.to(torch::kBFloat16);
  janus::Mlp b(janus::MlpOptions(4, 8));
  janus::load_module_state(*b, half);
  EXPECT_EQ(b->fc1->weight.scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::allclose(b->fc1->weight, a->fc1->weight, 0, 1e-2));
}
