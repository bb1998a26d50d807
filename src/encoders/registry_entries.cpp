// janus_module registry entries for the encoders (vision, text, video, point cloud).
#include <nlohmann/json.hpp>

#include "janus/core/registry.h"
#include "janus/encoders/point_cloud_encoder.h"
#include "janus/encoders/text_encoder.h"
#include "janus/encoders/video_encoder.h"
#include "janus/encoders/vision_encoder.h"

namespace janus {
namespace {

std::vector<OptionSpec> vision_option_specs() {
  return {{"flavour", "string", "base", "tiny | small | base | large: preset dim/depth/heads (patch 16)"},
          {"dim", "int", 0, "token width; 0 = from flavour"},
          {"depth", "int", 0, "blocks; 0 = from flavour"},
          {"heads", "int", 0, "attention heads; 0 = from flavour"},
          {"image_size", "int", 224, "trained (square) image size; pos_embed covers this grid"},
          {"patch_size", "int", 16, "patch size"},
          {"in_chans", "int", 3, "input channels"},
          {"mlp_ratio", "float", 4.0, "MLP hidden = dim * mlp_ratio"},
          {"class_token", "bool", true, "prepend a class token"},
          {"qkv_bias", "bool", true, "bias on the qkv projection"},
          {"global_pool", "string", "token", "token | avg"},
          {"fc_norm", "json", nullptr, "norm after pooling; null = timm default (on for avg)"},
          {"norm_eps", "float", 1e-6, "LayerNorm eps"},
          {"dynamic_image_size", "bool", true, "resample pos_embed (bicubic) for other image sizes"},
          {"adapter_dim", "int", 0, "> 0: residual bottleneck adapter after every block"}};
}

VisionEncoderOptions vision_from_resolved(nlohmann::json o) {
  for (const char* k : {"dim", "depth", "heads"}) {
    if (o[k].get<int64_t>() == 0) o.erase(k);
  }
  return vision_encoder_options_from_json(o);
}

JANUS_REGISTER_MODULE(ModuleEntry{"vision_encoder",
                                  "ViT with timm VisionTransformer parameter names (cls_token, pos_embed, "
                                  "patch_embed.proj, blocks.N.*, norm|fc_norm)",
                                  vision_option_specs(),
                                  {{"images", "[B, C, H, W] float (H, W multiples of patch_size)"}},
                                  {{"tokens", "[B, N, D] float"}, {"pooled", "[B, D] float"}},
                                  [](const nlohmann::json& o) {
                                    auto m = VisionEncoder(vision_from_resolved(o));
                                    return RunnableModule{
                                        m.ptr(), [m](const TensorMap& in) mutable {
                                          auto out = m->forward(in.at("images"));
                                          return TensorMap{{"tokens", out.tokens}, {"pooled", out.pooled}};
                                        }};
                                  }});

JANUS_REGISTER_MODULE(ModuleEntry{
    "text_encoder",
    "post-LN BERT encoder + tied MLM head; HF BertModel weights load through bert_key_to_janus",
    {{"flavour", "string", "base", "tiny | small | base | large: preset dim/depth/heads/mlp_dim"},
     {"dim", "int", 0, "width; 0 = from flavour"},
     {"depth", "int", 0, "layers; 0 = from flavour"},
     {"heads", "int", 0, "attention heads; 0 = from flavour"},
     {"mlp_dim", "int", 0, "MLP hidden width; 0 = from flavour"},
     {"vocab_size", "int", 30522, "vocabulary size"},
     {"max_positions", "int", 512, "learned positions"},
     {"type_vocab_size", "int", 2, "token types (0 = none)"},
     {"norm_eps", "float", 1e-12, "LayerNorm eps"},
     {"act", "string", "gelu", "MLP activation"},
     {"pooler", "bool", true, "BertPooler tanh(Linear(first token))"},
     {"mlm_head", "bool", true, "MLM head tied to the word embeddings"}},
    {{"input_ids", "[B, L] int64"},
     {"attention_mask", "[B, L] (nonzero = token, 0 = padding)", true},
     {"token_type_ids", "[B, L] int64", true}},
    {{"tokens", "[B, L, D] float"}, {"pooled", "[B, D] float"}, {"mlm_logits", "[B, L, vocab] float (with mlm_head)"}},
    [](const nlohmann::json& resolved) {
      auto o = resolved;
      for (const char* k : {"dim", "depth", "heads", "mlp_dim"}) {
        if (o[k].get<int64_t>() == 0) o.erase(k);
      }
      auto m = TextEncoder(text_encoder_options_from_json(o));
      return RunnableModule{m.ptr(), [m](const TensorMap& in) mutable {
                              auto get = [&](const char* k) {
                                return in.count(k) ? std::optional<at::Tensor>(in.at(k)) : std::nullopt;
                              };
                              auto out = m->forward(in.at("input_ids"), get("attention_mask"), get("token_type_ids"));
                              TensorMap r{{"tokens", out.tokens}, {"pooled", out.pooled}};
                              if (m->mlm) r["mlm_logits"] = m->mlm_logits(out.tokens);
                              return r;
                            }};
    }});

JANUS_REGISTER_MODULE(ModuleEntry{
    "video_encoder",
    "per-frame ViT (vision.*) + factorised temporal attention over frames (temporal_blocks.N.*, temporal_pos)",
    {{"vision", "json", nlohmann::json::object(), "vision_encoder options (same keys; defaults as vision_encoder)"},
     {"max_frames", "int", 16, "longest clip (temporal_pos length)"},
     {"temporal_depth", "int", 1, "temporal blocks"},
     {"temporal_heads", "int", 0, "0 = vision heads"}},
    {{"video", "[B, T, C, H, W] float"}},
    {{"tokens", "[B, T, N, D] float"}, {"pooled", "[B, D] float"}},
    [](const nlohmann::json& o) {
      auto& reg = ModuleRegistry::global();
      VideoEncoderOptions opts;
      opts.vision(vision_from_resolved(reg.resolve_options("vision_encoder", o["vision"])))
          .max_frames(o["max_frames"].get<int64_t>())
          .temporal_depth(o["temporal_depth"].get<int64_t>())
          .temporal_heads(o["temporal_heads"].get<int64_t>());
      auto m = VideoEncoder(opts);
      return RunnableModule{m.ptr(), [m](const TensorMap& in) mutable {
                              auto out = m->forward(in.at("video"));
                              return TensorMap{{"tokens", out.tokens}, {"pooled", out.pooled}};
                            }};
    }});

JANUS_REGISTER_MODULE(ModuleEntry{
    "point_cloud_encoder",
    "farthest-point sampling + kNN groups + mini-PointNet -> point-patch tokens (+ positional MLP on centres)",
    {{"in_channels", "int", 0, "extra per-point features after xyz"},
     {"num_groups", "int", 64, "sampled centres (tokens)"},
     {"group_size", "int", 32, "neighbours per centre"},
     {"dim", "int", 384, "token width"},
     {"depth", "int", 0, "transformer blocks over the tokens"},
     {"heads", "int", 6, "attention heads (depth > 0)"}},
    {{"points", "[B, P, 3 + in_channels] float"}},
    {{"tokens", "[B, G, D] float"}, {"centers", "[B, G, 3] float"}, {"pooled", "[B, D] float"}},
    [](const nlohmann::json& o) {
      auto m = PointCloudEncoder(point_cloud_encoder_options_from_json(o));
      return RunnableModule{
          m.ptr(), [m](const TensorMap& in) mutable {
            auto out = m->forward(in.at("points"));
            return TensorMap{{"tokens", out.tokens}, {"centers", out.centers}, {"pooled", out.pooled}};
          }};
    }});

}  // namespace
}  // namespace janus
