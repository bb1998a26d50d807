#pragma once
// Point cloud encoder into point-patch tokens (Point-BERT / Point-MAE tokenizer):
//   farthest-point sampling of num_groups centres, kNN grouping (group_size neighbours per centre), a mini-PointNet
//   on each group's centre-relative points (shared MLP, max-pool, concat global, MLP, max-pool), plus a positional
//   MLP on the centres; then `depth` pre-LN transformer blocks and a final norm.
// Order invariance: FPS starts at the point farthest from the centroid (not at index 0), neighbour sets and max-pools
// do not depend on order, and distances are computed per pair, so permuting the input points leaves the output
// unchanged (up to exact distance ties). LayerNorm replaces Point-MAE's BatchNorm so outputs do not depend on the
// batch.
#include <cstdint>

#include <ATen/ATen.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>
#include <nlohmann/json_fwd.hpp>

#include "janus/core/layers.h"

namespace janus {

struct PointCloudEncoderOptions {
  TORCH_ARG(int64_t, in_channels) = 0;  // extra per-point features after xyz
  TORCH_ARG(int64_t, num_groups) = 64;
  TORCH_ARG(int64_t, group_size) = 32;
  TORCH_ARG(int64_t, dim) = 384;
  TORCH_ARG(int64_t, depth) = 0;  // transformer blocks over the point-patch tokens
  TORCH_ARG(int64_t, heads) = 6;
};

struct PointCloudOutput {
  at::Tensor tokens;   // [B, G, D]
  at::Tensor centers;  // [B, G, 3]
  at::Tensor pooled;   // [B, D] mean of tokens
};

// [B, P, 3] -> indices [B, G] (int64) of farthest-point samples, starting at the point farthest from the centroid.
at::Tensor farthest_point_sample(const at::Tensor& xyz, int64_t num_samples);
// centres [B, G, 3], xyz [B, P, 3] -> indices [B, G, k] of the k nearest points to each centre.
at::Tensor knn_indices(const at::Tensor& centers, const at::Tensor& xyz, int64_t k);

class PointCloudEncoderImpl : public torch::nn::Cloneable<PointCloudEncoderImpl> {
 public:
  explicit PointCloudEncoderImpl(const PointCloudEncoderOptions& options = {});
  void reset() override;
  // points [B, P, 3 + in_channels], P >= max(num_groups, group_size)
  PointCloudOutput forward(const at::Tensor& points);

  PointCloudEncoderOptions options;
  torch::nn::Linear first_fc1{nullptr}, first_fc2{nullptr}, second_fc1{nullptr}, second_fc2{nullptr};
  torch::nn::LayerNorm first_norm{nullptr}, second_norm{nullptr};
  Mlp pos_embed{nullptr};  // 3 -> 128 -> dim
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::LayerNorm norm{nullptr};
};
TORCH_MODULE(PointCloudEncoder);

PointCloudEncoderOptions point_cloud_encoder_options_from_json(const nlohmann::json& j);

}  // namespace janus
