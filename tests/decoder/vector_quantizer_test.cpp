#include <gtest/gtest.h>

#include "janus/decoder/vector_quantizer.h"
#include "janus/io/module_io.h"
#include "janus/io/safetensors.h"
#include "test_util.h"

namespace janus {
namespace {

class VqParity : public ::testing::TestWithParam<std::string> {};

TEST_P(VqParity, ForwardAndOneEmaStepMatchVectorQuantizePytorch) {
  static std::string dir;
  if (dir.empty()) {
    dir = test::temp_dir("vqp");
    auto r = test::run_python("vq_parity.py", {dir});
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  const bool cosine = GetParam() == "cosine";
  auto t = load_safetensors(dir + "/" + GetParam() + ".safetensors");
  VectorQuantizer vq(VectorQuantizerOptions(64, 8).cosine(cosine).ema(true).decay(0.9).eps(1e-5).beta(0.25));
  {
    torch::NoGradGuard g;
    vq->embed.copy_(t.at("embed"));
    vq->embed_avg.copy_(t.at("embed"));
    vq->cluster_size.fill_(1.0);
  }
  vq->train();
  auto x = t.at("x").clone().requires_grad_(true);
  auto out = vq->forward(x);
  EXPECT_TRUE(at::equal(out.codes, t.at("codes")));
  EXPECT_TRUE(test::all_close(out.quantized, t.at("quantize"), 1e-5));
  EXPECT_TRUE(test::all_close(out.loss, t.at("loss"), 1e-5));
  ((out.quantized * t.at("gw")).sum() + out.loss).backward();
  EXPECT_TRUE(test::all_close(x.grad(), t.at("grad_x"), 1e-5));
  EXPECT_TRUE(test::all_close(vq->embed, t.at("embed_after"), 1e-5));
  EXPECT_TRUE(test::all_close(vq->cluster_size, t.at("cluster_size_after"), 1e-5));
  EXPECT_TRUE(test::all_close(vq->embed_avg, t.at("embed_avg_after"), 1e-5));
  // The codebook really moved (the test can fail if the EMA step were skipped).
  EXPECT_GT((vq->embed - t.at("embed")).abs().max().item<double>(), 1e-3);
}
INSTANTIATE_TEST_SUITE_P(Decoder, VqParity, ::testing::Values("euclid", "cosine"));

TEST(VectorQuantizer, NearestCodeStraightThroughAndLoss) {
  torch::manual_seed(0);
  VectorQuantizer vq(VectorQuantizerOptions(16, 4));
  auto z = at::randn({2, 5, 4}).requires_grad_(true);
  auto out = vq->forward(z);
  ASSERT_EQ(out.codes.sizes(), (std::vector<int64_t>{2, 5}));
  // brute-force nearest code
  auto e = vq->embed.detach();
  auto d = (z.detach().unsqueeze(-2) - e).pow(2).sum(-1);
  EXPECT_TRUE(at::equal(out.codes, d.argmin(-1)));
  auto q = e.index_select(0, out.codes.reshape({-1})).reshape({2, 5, 4});
  EXPECT_TRUE(test::all_close(out.quantized, q, 1e-6));
  const double mse = (z.detach() - q).pow(2).mean().item<double>();
  EXPECT_NEAR(out.loss.item<double>(), mse * 1.25, 1e-6);
  // straight-through: d(sum quantized)/dz = 1; codebook receives the codebook-term gradient
  (out.quantized.sum() + out.loss).backward();
  EXPECT_TRUE(test::all_close(z.grad(), at::ones_like(z) + 0.25 * 2.0 * (z.detach() - q) / z.numel(), 1e-6));
  ASSERT_TRUE(vq->embed.grad().defined());
  EXPECT_GT(vq->embed.grad().abs().sum().item<double>(), 0.0);
  EXPECT_GE(out.perplexity.item<double>(), 1.0);
  EXPECT_LE(out.perplexity.item<double>(), 10.0 + 1e-4);
}

TEST(VectorQuantizer, CosineCodesAreUnitNorm) {
  torch::manual_seed(1);
  VectorQuantizer vq(VectorQuantizerOptions(32, 8).cosine(true));
  auto out = vq->forward(at::randn({4, 3, 8}) * 5.0);
  EXPECT_TRUE(test::all_close(out.quantized.norm(2, -1), at::ones({4, 3}), 1e-5));
  EXPECT_THROW(vq->forward(at::randn({4, 7})), c10::Error);
  EXPECT_THROW(vq->lookup(at::full({2}, 32, at::kLong)), c10::Error);
}

TEST(VectorQuantizer, DeadCodesAreReplacedByBatchVectors) {
  torch::manual_seed(2);
  VectorQuantizer vq(VectorQuantizerOptions(32, 4).ema(true).decay(0.5).dead_code_threshold(0.6));
  {
    torch::NoGradGuard g;
    // all codes far away except code 0, so only code 0 is used on the first batch
    vq->embed.fill_(100.0);
    vq->embed[0].zero_();
    vq->embed_avg.copy_(vq->embed);
  }
  vq->train();
  auto z = at::randn({64, 4});
  vq->forward(z);
  // counts of unused codes fell to 0.5 < 0.6: they were reset to batch vectors with count = threshold
  auto cs = vq->cluster_size;
  EXPECT_EQ((cs < 0.6).sum().item<int64_t>(), 0);
  auto e = vq->embed.detach();
  int64_t from_batch = 0;
  for (int64_t k = 1; k < 32; ++k) {
    auto d = (z - e[k]).abs().sum(-1).min().item<double>();
    if (d < 1e-6) ++from_batch;
  }
  EXPECT_EQ(from_batch, 31);
  EXPECT_NEAR(vq->codebook_usage(), 1.0, 1e-9);
  // usage now spreads over many codes
  vq->eval();
  auto out = vq->forward(z);
  EXPECT_GT(out.perplexity.item<double>(), 5.0);
}

TEST(VectorQuantizer, SaveLoadRoundTrip) {
  torch::manual_seed(3);
  VectorQuantizer a(VectorQuantizerOptions(16, 4).cosine(true).ema(true));
  VectorQuantizer b(VectorQuantizerOptions(16, 4).cosine(true).ema(true));
  auto path = test::temp_dir("vqsave") + "/vq.safetensors";
  save_module(*a, path);
  load_module(*b, path);
  auto z = at::randn({3, 4});
  EXPECT_TRUE(at::equal(a->encode(z), b->encode(z)));
  EXPECT_TRUE(at::equal(a->embed, b->embed));
}

}  // namespace
}  // namespace janus
