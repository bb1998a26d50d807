#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/nn.h>

#include "janus/core/error.h"
#include "janus/encoders/point_cloud_encoder.h"
#include "janus/encoders/video_encoder.h"
#include "janus/io/module_io.h"
#include "test_util.h"

namespace jt = janus::test;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

namespace {
janus::VideoEncoderOptions small_video() {
  return janus::VideoEncoderOptions()
      .vision(janus::VisionEncoderOptions().image_size(16).patch_size(8).dim(16).depth(1).heads(2))
      .max_frames(4)
      .temporal_depth(2);
}
void randomise(torch::nn::Module& m, const std::string& prefix) {
  torch::NoGradGuard g;
  for (auto& p : m.named_parameters()) {
    if (p.key().rfind(prefix, 0) == 0) p.value().normal_(0.0, 0.3);
  }
}
}  // namespace

TEST(VideoEncoder, SingleFrameIsTheImagePath) {
  torch::manual_seed(0);
  janus::VideoEncoder v(small_video());
  randomise(*v, "temporal");  // any temporal weights: T = 1 must still equal the image path
  v->eval();
  const auto frame = torch::randn({2, 3, 16, 16});
  const auto video = v->forward(frame.unsqueeze(1));
  const auto image = v->vision->forward(frame);
  EXPECT_EQ(video.tokens.sizes(), (std::vector<int64_t>{2, 1, 5, 16}));
  EXPECT_TRUE(torch::equal(video.tokens.squeeze(1), image.tokens));
  EXPECT_TRUE(torch::equal(video.pooled, image.pooled));
}

TEST(VideoEncoder, FreshTemporalStageIsIdentityThenMixesFrames) {
  torch::manual_seed(1);
  janus::VideoEncoder v(small_video());
  v->eval();
  auto video = torch::randn({2, 3, 3, 16, 16});
  const auto out = v->forward(video);
  EXPECT_EQ(out.tokens.sizes(), (std::vector<int64_t>{2, 3, 5, 16}));
  EXPECT_EQ(out.pooled.sizes(), (std::vector<int64_t>{2, 16}));
  const auto frame0 = v->vision->forward(video.select(1, 0));
  EXPECT_TRUE(jt::all_close(out.tokens.select(1, 0), frame0.tokens, 1e-6));
  randomise(*v, "temporal");
  const auto a = v->forward(video).tokens.select(1, 0);
  auto video2 = video.clone();
  video2.select(1, 2).normal_();  // change only the last frame
  const auto b = v->forward(video2).tokens.select(1, 0);
  EXPECT_GT((a - b).abs().max().item<double>(), 1e-4);  // frame 0's tokens see other frames
}

TEST(VideoEncoder, SaveLoadAndErrors) {
  const auto dir = jt::temp_dir();
  torch::manual_seed(2);
  janus::VideoEncoder a(small_video());
  randomise(*a, "");
  janus::VideoEncoder b(small_video());
  janus::save_module(*a, dir + "/v.safetensors");
  EXPECT_TRUE(janus::load_module(*b, dir + "/v.safetensors").ok());
  const auto x = torch::randn({1, 2, 3, 16, 16});
  EXPECT_TRUE(torch::equal(a->forward(x).tokens, b->forward(x).tokens));
  EXPECT_TRUE(janus::module_state(*a).count("vision.blocks.0.attn.qkv.weight"));
  EXPECT_THAT(
      [&] {
        a->forward(torch::randn({1, 5, 3, 16, 16}));
      },
      ThrowsMessage<c10::Error>(HasSubstr("max_frames 4")));
  EXPECT_THAT(
      [&] {
        a->forward(torch::randn({1, 3, 16, 16}));
      },
      ThrowsMessage<c10::Error>(HasSubstr("[B, T, C, H, W]")));
}

TEST(PointCloudEncoder, OutputInvariantToPointOrder) {
  torch::manual_seed(3);
  janus::PointCloudEncoder enc(
      janus::PointCloudEncoderOptions().in_channels(2).num_groups(8).group_size(6).dim(32).depth(1).heads(4));
  enc->eval();
  const auto pts = torch::randn({2, 100, 5});
  const auto perm = torch::randperm(100);
  const auto a = enc->forward(pts);
  const auto b = enc->forward(pts.index_select(1, perm));
  EXPECT_EQ(a.tokens.sizes(), (std::vector<int64_t>{2, 8, 32}));
  EXPECT_EQ(a.centers.sizes(), (std::vector<int64_t>{2, 8, 3}));
  EXPECT_TRUE(jt::all_close(b.centers, a.centers, 0));
  EXPECT_TRUE(jt::all_close(b.tokens, a.tokens, 1e-5));
  EXPECT_TRUE(jt::all_close(b.pooled, a.pooled, 1e-5));
  // The output does depend on the points themselves.
  EXPECT_GT((enc->forward(pts * 1.5).tokens - a.tokens).abs().max().item<double>(), 1e-3);
}

TEST(PointCloudEncoder, FarthestPointSamplingAndKnn) {
  // Corners of a square plus a point near the centre: FPS starts at the corner farthest from the centroid.
  const auto xyz =
      torch::tensor({{0.f, 0.f, 0.f}, {1.f, 0.f, 0.f}, {0.f, 1.f, 0.f}, {1.1f, 1.1f, 0.f}, {0.5f, 0.4f, 0.f}})
          .unsqueeze(0);
  const auto idx = janus::farthest_point_sample(xyz, 4);
  EXPECT_EQ(idx[0][0].item<int64_t>(), 3);
  EXPECT_EQ(idx[0][1].item<int64_t>(), 0);
  EXPECT_EQ(std::get<0>(at::_unique(idx)).numel(), 4);
  const auto nn = janus::knn_indices(xyz.index_select(1, torch::tensor({4})), xyz, 2);
  EXPECT_EQ(nn[0][0][0].item<int64_t>(), 4);  // a point is its own nearest neighbour
  EXPECT_THROW(janus::farthest_point_sample(xyz, 6), c10::Error);
}

TEST(PointCloudEncoder, SaveLoadAndErrors) {
  const auto dir = jt::temp_dir();
  auto o = janus::PointCloudEncoderOptions().num_groups(4).group_size(4).dim(16).depth(1).heads(2);
  torch::manual_seed(4);
  janus::PointCloudEncoder a(o);
  torch::manual_seed(5);
  janus::PointCloudEncoder b(o);
  const auto pts = torch::randn({1, 20, 3});
  ASSERT_FALSE(torch::allclose(a->forward(pts).tokens, b->forward(pts).tokens));
  janus::save_module(*a, dir + "/p.safetensors");
  EXPECT_TRUE(janus::load_module(*b, dir + "/p.safetensors").ok());
  EXPECT_TRUE(torch::equal(a->forward(pts).tokens, b->forward(pts).tokens));
  EXPECT_THAT(
      [&] {
        a->forward(torch::randn({1, 3, 3}));
      },
      ThrowsMessage<c10::Error>(HasSubstr("need at least num_groups 4")));
  EXPECT_THAT(
      [&] {
        a->forward(torch::randn({1, 20, 4}));
      },
      ThrowsMessage<c10::Error>(HasSubstr("expected points [B, P, 3]")));
  auto bad = pts.clone();
  bad[0][3][1] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THAT([&] { a->forward(bad); }, ThrowsMessage<c10::Error>(HasSubstr("NaN")));
}
