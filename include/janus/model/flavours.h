#pragma once
// Model flavours: a config names one ("tiny", "small", "base", "1b") and may override fields.
#include <string>
#include <vector>

#include "janus/decoder/vqvae.h"
#include "janus/encoders/text_encoder.h"
#include "janus/encoders/vision_encoder.h"

namespace janus {

struct JanusModelOptions {
  std::string flavour = "tiny";
  // understanding path
  VisionEncoderOptions vision;
  TextEncoderOptions text;
  int64_t dim = 128;                // fusion width (router output)
  int64_t adapter_bottleneck = 32;  // residual adapter after the router; 0 disables
  int64_t fusion_depth = 2;         // bidirectional DualStreamFusion blocks (ITM, NLVR2, VQA classification)
  int64_t fusion_heads = 4;
  int64_t block_size = 16;  // block-sparse block and LSH bucket size in the fusion blocks
  double density = 0.5;
  int64_t n_hashes = 2;
  int64_t embed_dim = 128;  // contrastive embedding width
  // Ablation switches (issue 12): "shared" routes every modality through one plain Linear (no gate); "dense" makes
  // every fusion block a plain transformer block (one exact attention, no LSH stream, no gate).
  bool router_shared = false;
  // Contrastive embeddings from the encoders' pooled output ("token": class/first token) or the mean of the
  // (unpadded) tokens ("mean"), before the projection.
  std::string embed_pool = "token";
  // Position table added to the routed image tokens (image_tokens()) before the fusion (VQA, NLVR2, ITM) and the
  // caption decoder: "none" (the tokens carry only the ViT's own position table, added before its blocks) or
  // "sincos" (a learned table, class token row 0, started at MAE's 2-D sin-cos table).
  std::string image_pos = "none";
  // Append the ViT's patch embeddings (conv stem / patch projection, before any block: each holds only its own
  // patch), through a Linear ("local_proj") and with the image_pos grid rows, to the routed image tokens. After one
  // ViT block every token carries every object, so a reader of the ViT's outputs gets what is in the image but not
  // where; the local tokens give both at once. Needs image_pos "sincos".
  bool image_local_tokens = false;
  bool fusion_dense = false;
  // NLVR2 head. "pair" (ViLT's, also ALBEF's and BLIP's layout): each image is fused with the statement on its own,
  // [cls, image, text], and an MLP (Linear 2D -> 2D, LayerNorm, GELU, Linear 2D -> 2) reads the two CLS outputs
  // side by side ("nlvr2_pair_head"). "joint": one fusion over [cls, image a, image b, text] and a Linear on its
  // CLS ("nlvr2_head"; model.json files written before 2026-12-07 have no key and mean this).
  std::string nlvr2_head = "pair";
  // generation path
  VQVAEOptions vq;
  int64_t causal_depth = 2;     // causal fusion stack shared by text generation and image-token generation
  // The text decoder (captions, VQA answers, caption re-ranking): "shared" runs it on image_gen's causal stack, word
  // embedding and positions (the design); "own" gives it a second stack of the same shape ("caption_lm"), so the
  // captioning and text->image losses do not pull the same weights. model.json files written before 2026-12-07 have
  // no key and mean "shared".
  std::string caption_decoder = "shared";
  // Where the text->image generator's inputs say they are: "1d" = the learned position table only; "2d" = plus a
  // learned row and column embedding of the code each input predicts (ImageTokenGeneratorOptions::code_grid).
  // model.json files written before 2026-12-07 have no key and mean "1d".
  std::string gen_code_pos = "1d";
  // What the text->image generator reads of its prompt: "embed" = its own word embedding of the ids (image_gen's
  // text_embed); "encoder" = the understanding path's text tokens (TextEncoder -> router -> adapter), normalised and
  // projected (gen_text_norm, gen_text_proj), so the generator starts from the encoder's stage 1-2 training.
  // model.json files written before 2026-12-08 have no key and mean "embed".
  std::string gen_text = "embed";
  int64_t max_positions = 256;  // of the causal stack: image tokens + text, or text + <boi> + codes
  // Text->image prompts are right-padded (pad id 0) to this many tokens before <boi>, in training and in sampling,
  // so the codes always sit at the same positions (the generator takes no padding mask). 0 = prompts as given.
  int64_t gen_prompt_len = 0;
  // heads
  int64_t num_answers = 0;         // VQA answer vocabulary (classification head); 0: no head
  int64_t num_classes = 0;         // image classification head; 0: none
  int64_t simmim_mask_patch = 32;  // SimMIM mask patch at 224 px, scaled with the image size

  int64_t image_size() const { return vision.image_size(); }
  int64_t image_tokens() const;  // routed image tokens fed to the fusion stacks
  int64_t code_tokens() const;   // VQ codes per image
  void validate() const;         // InputError naming the field
};

// The registered flavours, for a text vocabulary of `vocab_size` and images of `image_size` (0 keeps the default).
JanusModelOptions model_flavour(const std::string& name, int64_t vocab_size, int64_t image_size = 0);
std::vector<std::string> model_flavour_names();

}  // namespace janus
