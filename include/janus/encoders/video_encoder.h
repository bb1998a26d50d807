#pragma once
// Video encoder, factorised space-time: every frame goes through a VisionEncoder (names vision.*, so timm ViT
// weights load with prefix "vision"), then temporal_depth pre-LN blocks attend over frames at each spatial
// position (temporal_blocks.N.*, learned temporal_pos [1, max_frames, D]).
// temporal_pos starts at zero and the temporal blocks' output projections (attn.proj, mlp.fc2) start at zero, so
// a fresh VideoEncoder equals the image path frame by frame. With T = 1 the temporal stage is skipped (attention
// over one frame carries no temporal information), so T = 1 is exactly the image path for any weights.
#include <cstdint>

#include <ATen/ATen.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>
#include <nlohmann/json_fwd.hpp>

#include "janus/encoders/vision_encoder.h"

namespace janus {

struct VideoEncoderOptions {
  TORCH_ARG(VisionEncoderOptions, vision) = {};
  TORCH_ARG(int64_t, max_frames) = 16;
  TORCH_ARG(int64_t, temporal_depth) = 1;
  TORCH_ARG(int64_t, temporal_heads) = 0;  // 0: vision heads
};

struct VideoOutput {
  at::Tensor tokens;  // [B, T, N, D] (N tokens per frame, as the VisionEncoder gives)
  at::Tensor pooled;  // [B, D]: per-frame pooling (VisionEncoder::pool) averaged over frames
};

class VideoEncoderImpl : public torch::nn::Cloneable<VideoEncoderImpl> {
 public:
  explicit VideoEncoderImpl(const VideoEncoderOptions& options = {});
  void reset() override;
  // video [B, T, C, H, W], 1 <= T <= max_frames
  VideoOutput forward(const at::Tensor& video);

  VideoEncoderOptions options;
  VisionEncoder vision{nullptr};
  at::Tensor temporal_pos;  // [1, max_frames, D]
  torch::nn::ModuleList temporal_blocks{nullptr};
};
TORCH_MODULE(VideoEncoder);

// {"vision": {VisionEncoder options}, "max_frames", "temporal_depth", "temporal_heads"}
VideoEncoderOptions video_encoder_options_from_json(const nlohmann::json& j);

}  // namespace janus
