#include "janus/model/flavours.h"

#include "janus/core/error.h"
#include "janus/core/text.h"

namespace janus {

int64_t JanusModelOptions::image_tokens() const {
  const int64_t g = vision.image_size() / vision.patch_size();
  return g * g * (image_local_tokens ? 2 : 1) + (vision.class_token() ? 1 : 0);
}

int64_t JanusModelOptions::code_tokens() const {
  const int64_t f = int64_t{1} << (vq.ch_mult().size() - 1);
  const int64_t g = vision.image_size() / f;
  return g * g;
}

void JanusModelOptions::validate() const {
  auto bad = [&](const std::string& what) { throw InputError(fmt::format("model ({}): {}", flavour, what)); };
  if (vision.dim() != text.dim()) {
    bad(fmt::format("the router needs equal encoder widths, got vision.dim {} and text.dim {}", vision.dim(),
                    text.dim()));
  }
  if (vision.image_size() % vision.patch_size() != 0) {
    bad(fmt::format("image_size {} is not a multiple of patch_size {}", vision.image_size(), vision.patch_size()));
  }
  const int64_t f = int64_t{1} << (vq.ch_mult().size() - 1);
  if (vision.image_size() % f != 0) {
    bad(fmt::format("image_size {} is not a multiple of the VQ-VAE downsampling {}", vision.image_size(), f));
  }
  if (embed_pool != "token" && embed_pool != "mean") bad(fmt::format("embed_pool '{}' is not token or mean", embed_pool));
  if (image_pos != "none" && image_pos != "sincos") bad(fmt::format("image_pos '{}' is not none or sincos", image_pos));
  if (nlvr2_head != "pair" && nlvr2_head != "joint")
    bad(fmt::format("nlvr2_head '{}' is not pair or joint", nlvr2_head));
  if (caption_decoder != "shared" && caption_decoder != "own")
    bad(fmt::format("caption_decoder '{}' is not shared or own", caption_decoder));
  if (gen_code_pos != "1d" && gen_code_pos != "2d") bad(fmt::format("gen_code_pos '{}' is not 1d or 2d", gen_code_pos));
  if (gen_text != "embed" && gen_text != "encoder") bad(fmt::format("gen_text '{}' is not embed or encoder", gen_text));
  if (image_local_tokens && image_pos != "sincos") bad("image_local_tokens needs image_pos sincos (their positions)");
  if (image_pos == "sincos" && dim % 4 != 0) bad(fmt::format("image_pos sincos needs dim divisible by 4, got {}", dim));
  if (dim % fusion_heads != 0) bad(fmt::format("dim {} is not divisible by fusion_heads {}", dim, fusion_heads));
  if (image_tokens() + text.max_positions() > max_positions) {
    bad(fmt::format("max_positions {} < image tokens {} + text positions {}", max_positions, image_tokens(),
                    text.max_positions()));
  }
  if (gen_prompt_len < 0 || gen_prompt_len > text.max_positions()) {
    bad(fmt::format("gen_prompt_len {} is outside [0, text positions {}]", gen_prompt_len, text.max_positions()));
  }
  if (text.max_positions() + 1 + code_tokens() > max_positions) {
    bad(fmt::format("max_positions {} < text positions {} + 1 + image codes {}", max_positions, text.max_positions(),
                    code_tokens()));
  }
}

namespace {
JanusModelOptions tiny(int64_t vocab) {
  JanusModelOptions o;
  o.flavour = "tiny";
  o.vision = VisionEncoderOptions().image_size(64).patch_size(8).dim(128).depth(4).heads(4).class_token(true);
  o.text = TextEncoderOptions().vocab_size(vocab).dim(128).depth(2).heads(4).mlp_dim(512).max_positions(40);
  o.dim = 128;
  o.adapter_bottleneck = 32;
  o.fusion_depth = 2;
  o.fusion_heads = 4;
  o.block_size = 16;
  o.density = 0.5;
  o.n_hashes = 2;
  o.embed_dim = 128;
  o.vq = VQVAEOptions()
             .ch(32)
             .ch_mult({1, 2, 2, 4})
             .num_res_blocks(1)
             .num_groups(8)
             .mid_attention(false)
             .z_channels(64)
             .codebook_size(512)
             .codebook_dim(8);
  o.causal_depth = 2;
  o.max_positions = 160;
  return o;
}
JanusModelOptions small(int64_t vocab) {
  JanusModelOptions o;
  o.flavour = "small";
  o.vision = VisionEncoderOptions::flavour("small");
  o.text = TextEncoderOptions().vocab_size(vocab).dim(384).depth(6).heads(6).mlp_dim(1536).max_positions(64);
  o.dim = 512;
  o.adapter_bottleneck = 64;
  o.fusion_depth = 4;
  o.fusion_heads = 8;
  o.block_size = 64;
  o.density = 0.3;
  o.n_hashes = 4;
  o.embed_dim = 256;
  o.vq = VQVAEOptions()
             .ch(64)
             .ch_mult({1, 1, 2, 2, 4})
             .num_res_blocks(2)
             .num_groups(32)
             .z_channels(256)
             .codebook_size(16384)
             .codebook_dim(8);
  o.causal_depth = 8;
  o.max_positions = 512;
  return o;
}
JanusModelOptions base(int64_t vocab) {
  JanusModelOptions o = small(vocab);
  o.flavour = "base";
  o.vision = VisionEncoderOptions::flavour("base");
  o.text = TextEncoderOptions().vocab_size(vocab).dim(768).depth(12).heads(12).mlp_dim(3072).max_positions(64);
  o.dim = 768;
  o.fusion_depth = 6;
  o.fusion_heads = 12;
  o.embed_dim = 512;
  o.vq = VQVAEOptions()
             .ch(128)
             .ch_mult({1, 1, 2, 2, 4})
             .num_res_blocks(2)
             .num_groups(32)
             .z_channels(256)
             .codebook_size(16384)
             .codebook_dim(8);
  o.causal_depth = 12;
  return o;
}
JanusModelOptions one_b(int64_t vocab) {
  JanusModelOptions o = base(vocab);
  o.flavour = "1b";
  o.vision = VisionEncoderOptions::flavour("large");
  o.text = TextEncoderOptions().vocab_size(vocab).dim(1024).depth(12).heads(16).mlp_dim(4096).max_positions(128);
  o.dim = 1024;
  o.adapter_bottleneck = 128;
  o.fusion_depth = 6;
  o.fusion_heads = 16;
  o.embed_dim = 768;
  o.causal_depth = 18;
  o.max_positions = 1024;
  return o;
}
}  // namespace

std::vector<std::string> model_flavour_names() { return {"tiny", "small", "base", "1b"}; }

JanusModelOptions model_flavour(const std::string& name, int64_t vocab_size, int64_t image_size) {
  if (vocab_size <= 0) throw InputError(fmt::format("model: vocab_size must be positive, got {}", vocab_size));
  JanusModelOptions o;
  if (name == "tiny")
    o = tiny(vocab_size);
  else if (name == "small")
    o = small(vocab_size);
  else if (name == "base")
    o = base(vocab_size);
  else if (name == "1b")
    o = one_b(vocab_size);
  else {
    const auto best = closest_match(name, model_flavour_names());
    throw InputError(fmt::format("unknown model flavour '{}'{} (flavours: tiny, small, base, 1b)", name,
                                 best.empty() ? "" : fmt::format(" (did you mean '{}'?)", best)));
  }
  if (image_size > 0) o.vision.image_size(image_size);
  o.validate();
  return o;
}

}  // namespace janus
