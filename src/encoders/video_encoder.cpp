#include "janus/encoders/video_encoder.h"

#include <nlohmann/json.hpp>

#include "janus/core/error.h"

namespace janus {

VideoEncoderImpl::VideoEncoderImpl(const VideoEncoderOptions& options_) : options(options_) { reset(); }

void VideoEncoderImpl::reset() {
  const auto& v = options.vision();
  const int64_t heads = options.temporal_heads() > 0 ? options.temporal_heads() : v.heads();
  if (options.max_frames() <= 0 || options.temporal_depth() < 0 || v.dim() % heads != 0) {
    throw InputError(
        fmt::format("video_encoder: max_frames {} must be positive, temporal_depth {} >= 0, dim {} a "
                    "multiple of temporal_heads {}",
                    options.max_frames(), options.temporal_depth(), v.dim(), heads));
  }
  vision = register_module("vision", VisionEncoder(v));
  temporal_pos = register_parameter("temporal_pos", at::zeros({1, options.max_frames(), v.dim()}));
  temporal_blocks = register_module("temporal_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < options.temporal_depth(); ++i) {
    Block b(BlockOptions(v.dim(), heads).mlp_ratio(v.mlp_ratio()).qkv_bias(v.qkv_bias()).norm_eps(v.norm_eps()));
    torch::NoGradGuard g;
    for (auto& m : b->modules()) {
      if (auto* lin = m->as<torch::nn::Linear>()) {
        lin->weight.normal_(0.0, 0.02);
        if (lin->bias.defined()) lin->bias.zero_();
      }
    }
    b->zero_init_residual();
    temporal_blocks->push_back(b);
  }
}

VideoOutput VideoEncoderImpl::forward(const at::Tensor& video) {
  TORCH_CHECK(video.dim() == 5, "video_encoder: expected video [B, T, C, H, W], got ", video.sizes());
  const int64_t B = video.size(0), T = video.size(1);
  TORCH_CHECK(T >= 1 && T <= options.max_frames(), "video_encoder: ", T, " frames, expected 1..max_frames ",
              options.max_frames());
  const auto frames = vision->forward(video.flatten(0, 1));  // [B*T, N, D]
  const int64_t N = frames.tokens.size(1), D = frames.tokens.size(2);
  if (T == 1) return {frames.tokens.view({B, 1, N, D}), frames.pooled};
  // [B, T, N, D] -> [B*N, T, D]: attention over frames at each spatial position.
  auto x = frames.tokens.view({B, T, N, D}).permute({0, 2, 1, 3}).reshape({B * N, T, D});
  x = x + temporal_pos.slice(1, 0, T);
  for (size_t i = 0; i < temporal_blocks->size(); ++i) x = temporal_blocks->ptr<BlockImpl>(i)->forward(x);
  auto tokens = x.view({B, N, T, D}).permute({0, 2, 1, 3}).contiguous();  // [B, T, N, D]
  auto pooled = vision->pool(tokens.flatten(0, 1)).view({B, T, -1}).mean(1);
  return {tokens, pooled};
}

VideoEncoderOptions video_encoder_options_from_json(const nlohmann::json& j) {
  VideoEncoderOptions o;
  for (const auto& [k, v] : j.items()) {
    if (k == "vision")
      o.vision(vision_encoder_options_from_json(v));
    else if (k == "max_frames")
      o.max_frames(v.get<int64_t>());
    else if (k == "temporal_depth")
      o.temporal_depth(v.get<int64_t>());
    else if (k == "temporal_heads")
      o.temporal_heads(v.get<int64_t>());
    else
      throw InputError("video_encoder: unknown option '" + k + "'");
  }
  return o;
}

}  // namespace janus
