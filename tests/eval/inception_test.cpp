// Inception-v3 vs torchvision's inception_v3 with random weights (key names and eval-mode outputs).
#include <gtest/gtest.h>

#include "janus/eval/inception.h"
#include "janus/io/module_io.h"
#include "janus/io/safetensors.h"
#include "test_util.h"

TEST(InceptionV3, MatchesTorchvisionWithRandomWeights) {
  const std::string dir = janus::test::temp_dir("inception");
  const auto r = janus::test::run_python("eval_inception_case.py", {dir, "1", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto io = janus::load_safetensors(dir + "/io.safetensors");

  janus::eval::InceptionV3 with_aux(janus::eval::InceptionV3Options().aux_logits(true).transform_input(true));
  janus::load_module(*with_aux, dir + "/weights.safetensors");  // strict: every torchvision key, nothing else
  with_aux->eval();
  torch::NoGradGuard no_grad;
  const auto out = with_aux->forward(io.at("x"));
  EXPECT_TRUE(janus::test::all_close(out.pool, io.at("pool"), 1e-4, 1e-4));
  EXPECT_TRUE(janus::test::all_close(out.logits, io.at("logits"), 1e-4, 1e-4));
  EXPECT_FALSE(out.aux.defined());

  // aux_logits = false has torchvision's key set minus AuxLogits.*; same outputs.
  janus::eval::InceptionV3 no_aux(janus::eval::InceptionV3Options().transform_input(true));
  janus::LoadOptions lo;
  lo.rename = [](const std::string& k) { return k.rfind("AuxLogits.", 0) == 0 ? std::string() : k; };
  janus::load_module(*no_aux, dir + "/weights.safetensors", lo);
  no_aux->eval();
  EXPECT_TRUE(janus::test::all_close(no_aux->forward(io.at("x")).logits, io.at("logits"), 1e-4, 1e-4));

  with_aux->train();
  const auto tr = with_aux->forward(at::randn({2, 3, 299, 299}));  // the aux head needs 299 inputs, as in torchvision
  ASSERT_TRUE(tr.aux.defined());
  EXPECT_EQ(tr.aux.sizes(), (std::vector<int64_t>{2, 1000}));
  EXPECT_ANY_THROW(with_aux->forward(at::zeros({1, 3, 64, 64})));
}
