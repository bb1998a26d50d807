// Retrieval, top-k, PSNR, SSIM, Frechet distance and Inception Score against Python references.
#include <filesystem>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "janus/core/error.h"
#include "janus/core/fs.h"
#include "janus/core/hash.h"
#include "janus/eval/metrics.h"
#include "janus/io/safetensors.h"
#include "test_util.h"

using nlohmann::json;

namespace {
struct Refs {
  janus::TensorMap t;
  json e;
};
// The reference data depend only on the script, so one run is shared by the test processes ctest starts
// (cached under the build tree, keyed by the script's hash).
const Refs& refs() {
  static const Refs r = [] {
    const std::string script = janus::test::source_dir() + "/tests/python/eval_metric_refs.py";
    const std::string dir =
        janus::test::binary_dir() + "/test_cache/metric_refs_" + janus::sha256_file(script).substr(0, 16);
    if (!std::filesystem::exists(dir + "/expected.json")) {
      const std::string tmp = janus::test::temp_dir("metric_refs");
      const auto res = janus::test::run_python("eval_metric_refs.py", {tmp});
      if (res.exit_code != 0) throw std::runtime_error(res.output);
      std::filesystem::create_directories(dir);
      std::filesystem::copy_file(tmp + "/inputs.safetensors", dir + "/inputs.safetensors",
                                 std::filesystem::copy_options::overwrite_existing);
      std::filesystem::copy_file(tmp + "/expected.json", dir + "/expected.json",
                                 std::filesystem::copy_options::overwrite_existing);
    }
    return Refs{janus::load_safetensors(dir + "/inputs.safetensors"),
                json::parse(janus::read_file(dir + "/expected.json"))};
  }();
  return r;
}
}  // namespace

TEST(Retrieval, MatchesItmEvalReference) {
  const auto& r = refs();
  const at::Tensor t2i = r.t.at("txt2img");
  std::vector<int64_t> txt2img(t2i.data_ptr<int64_t>(), t2i.data_ptr<int64_t>() + t2i.numel());
  const auto m = janus::eval::retrieval_recall(r.t.at("sim"), txt2img);
  EXPECT_NEAR(m.i2t_r1, r.e["i2t"][0].get<double>(), 1e-9);
  EXPECT_NEAR(m.i2t_r5, r.e["i2t"][1].get<double>(), 1e-9);
  EXPECT_NEAR(m.i2t_r10, r.e["i2t"][2].get<double>(), 1e-9);
  EXPECT_NEAR(m.t2i_r1, r.e["t2i"][0].get<double>(), 1e-9);
  EXPECT_NEAR(m.t2i_r5, r.e["t2i"][1].get<double>(), 1e-9);
  EXPECT_NEAR(m.t2i_r10, r.e["t2i"][2].get<double>(), 1e-9);
  EXPECT_NEAR(m.r_mean, (m.i2t_mean + m.t2i_mean) / 2, 1e-12);
  EXPECT_GT(m.i2t_r1, 0.0);
  EXPECT_LT(m.i2t_r1, 100.0);
}

TEST(Retrieval, HandCase) {
  // 2 images, 4 texts (2 each). Image 0 ranks text 2 (image 1's) first, then its own text 1.
  const at::Tensor sim = at::tensor({0.1, 0.5, 0.9, 0.0, 0.2, 0.1, 0.3, 0.8}, at::kDouble).view({2, 4});
  const auto m = janus::eval::retrieval_recall(sim, {0, 0, 1, 1});
  EXPECT_DOUBLE_EQ(m.i2t_r1, 50.0);  // image 0 misses at 1, image 1's best text (3) is first
  EXPECT_DOUBLE_EQ(m.i2t_r5, 100.0);
  // t2i: text 0 -> image 1 (0.2 > 0.1) miss; text 1 -> 0 hit; text 2 -> 0 (0.9 > 0.3) miss; text 3 -> 1 hit.
  EXPECT_DOUBLE_EQ(m.t2i_r1, 50.0);
  EXPECT_THROW(janus::eval::retrieval_recall(sim, {0, 0, 1}), janus::InputError);
  EXPECT_THROW(janus::eval::retrieval_recall(sim, {0, 0, 1, 2}), janus::InputError);
}

TEST(Classification, TopKAndAccuracy) {
  const auto& r = refs();
  EXPECT_NEAR(janus::eval::topk_accuracy(r.t.at("logits"), r.t.at("labels"), 1), r.e["top1"].get<double>(), 1e-9);
  EXPECT_NEAR(janus::eval::topk_accuracy(r.t.at("logits"), r.t.at("labels"), 5), r.e["top5"].get<double>(), 1e-9);
  EXPECT_DOUBLE_EQ(janus::eval::accuracy({true, false, true, true}), 75.0);
  EXPECT_THROW(janus::eval::accuracy({}), janus::InputError);
}

TEST(ImageMetrics, PsnrAndSsimMatchReference) {
  const auto& r = refs();
  EXPECT_NEAR(janus::eval::psnr(r.t.at("a"), r.t.at("b")), r.e["psnr"].get<double>(), 1e-9);
  EXPECT_NEAR(janus::eval::ssim(r.t.at("a"), r.t.at("b")), r.e["ssim"].get<double>(), 1e-9);
  EXPECT_NEAR(janus::eval::ssim(r.t.at("a"), r.t.at("a")), 1.0, 1e-12);
  EXPECT_ANY_THROW(janus::eval::ssim(r.t.at("a"), r.t.at("a").slice(2, 0, 8)));
}

TEST(GenerationMetrics, FrechetDistanceMatchesPytorchFid) {
  const auto& r = refs();
  const auto [m1, s1] = janus::eval::feature_statistics(r.t.at("f1"));
  const auto [m2, s2] = janus::eval::feature_statistics(r.t.at("f2"));
  const double fid = janus::eval::frechet_distance(m1, s1, m2, s2);
  const double want = r.e["fid"].get<double>();
  EXPECT_NEAR(fid, want, 1e-3 * want);
  EXPECT_NEAR(janus::eval::frechet_distance(m1, s1, m1, s1), 0.0, 1e-6 * want);
  // Rank-deficient covariances (40 samples, 64 dims).
  const auto [m3, s3] = janus::eval::feature_statistics(r.t.at("f3"));
  const auto [m4, s4] = janus::eval::feature_statistics(r.t.at("f4"));
  const double fs = janus::eval::frechet_distance(m3, s3, m4, s4);
  const double want_s = r.e["fid_singular"].get<double>();
  EXPECT_NEAR(fs, want_s, 1e-3 * want_s);
  std::cout << "[fid] " << fid << " vs " << want << "; singular " << fs << " vs " << want_s << "\n";
}

TEST(GenerationMetrics, InceptionScoreMatchesReference) {
  const auto& r = refs();
  const auto is = janus::eval::inception_score(r.t.at("probs"), 10);
  EXPECT_NEAR(is.mean, r.e["is_mean"].get<double>(), 1e-9);
  EXPECT_NEAR(is.std, r.e["is_std"].get<double>(), 1e-9);
}
