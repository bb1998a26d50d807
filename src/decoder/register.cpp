// janus_module registry entries for the generation path.
#include <nlohmann/json.hpp>

#include "janus/core/registry.h"
#include "janus/decoder/conditional_adapter.h"
#include "janus/decoder/image_token_generator.h"
#include "janus/decoder/quality_controller.h"
#include "janus/decoder/vector_quantizer.h"
#include "janus/decoder/vqvae.h"

namespace janus {
namespace {

using nlohmann::json;

JANUS_REGISTER_MODULE(ModuleEntry{
    "vector_quantizer",
    "nearest-code vector quantiser (euclidean or cosine), straight-through, commitment loss, optional EMA codebook",
    {{"codebook_size", "int", nullptr, "number of codes K", true},
     {"dim", "int", nullptr, "code dimension d", true},
     {"cosine", "bool", false, "l2-normalise z and codes (LlamaGen VQ-16)"},
     {"beta", "float", 0.25, "commitment weight"},
     {"ema", "bool", false, "EMA codebook updates instead of a codebook loss"},
     {"decay", "float", 0.99, "EMA decay"},
     {"eps", "float", 1e-5, "Laplace smoothing of EMA counts"},
     {"dead_code_threshold", "float", 0.0, "EMA count below which a code is reset (0 = off)"}},
    {{"z", "[..., d] float"}},
    {{"quantized", "[..., d] float"}, {"codes", "[...] int64"}, {"loss", "[] float"}, {"perplexity", "[] float"}},
    [](const json& o) {
      auto m = VectorQuantizer(VectorQuantizerOptions(o["codebook_size"].get<int64_t>(), o["dim"].get<int64_t>())
                                   .cosine(o["cosine"].get<bool>())
                                   .beta(o["beta"].get<double>())
                                   .ema(o["ema"].get<bool>())
                                   .decay(o["decay"].get<double>())
                                   .eps(o["eps"].get<double>())
                                   .dead_code_threshold(o["dead_code_threshold"].get<double>()));
      m->eval();
      return RunnableModule{m.ptr(), [m](const TensorMap& in) mutable {
                              auto r = m->forward(in.at("z"));
                              return TensorMap{{"quantized", r.quantized}, {"codes", r.codes}, {"loss", r.loss},
                                               {"perplexity", r.perplexity}};
                            }};
    }});

VQVAEOptions vqvae_options(const json& o) {
  return VQVAEOptions()
      .in_channels(o["in_channels"].get<int64_t>())
      .ch(o["ch"].get<int64_t>())
      .ch_mult(o["ch_mult"].get<std::vector<int64_t>>())
      .num_res_blocks(o["num_res_blocks"].get<int64_t>())
      .num_groups(o["num_groups"].get<int64_t>())
      .mid_attention(o["mid_attention"].get<bool>())
      .z_channels(o["z_channels"].get<int64_t>())
      .codebook_size(o["codebook_size"].get<int64_t>())
      .codebook_dim(o["codebook_dim"].get<int64_t>())
      .cosine(o["cosine"].get<bool>())
      .beta(o["beta"].get<double>());
}

JANUS_REGISTER_MODULE(ModuleEntry{
    "vqvae",
    "VQ-VAE image tokenizer (LlamaGen VQ-16 layout): image -> codes -> reconstruction",
    {{"in_channels", "int", 3, "image channels"},
     {"ch", "int", 128, "base channels"},
     {"ch_mult", "int_list", json::array({1, 1, 2, 2, 4}), "channel multipliers; downsample = 2^(len-1)"},
     {"num_res_blocks", "int", 2, "residual blocks per level"},
     {"num_groups", "int", 32, "GroupNorm groups"},
     {"mid_attention", "bool", true, "attention in the middle block and lowest level"},
     {"z_channels", "int", 256, "encoder output channels"},
     {"codebook_size", "int", 16384, "codes"},
     {"codebook_dim", "int", 8, "code dimension"},
     {"cosine", "bool", true, "l2-normalised codes"},
     {"beta", "float", 0.25, "commitment weight"}},
    {{"image", "[B, C, H, W] float in [-1, 1], H, W multiples of the downsample factor"}},
    {{"reconstruction", "[B, C, H, W] float"}, {"codes", "[B, H/f, W/f] int64"}, {"quant_loss", "[] float"}},
    [](const json& o) {
      auto m = VQVAE(vqvae_options(o));
      m->eval();
      return RunnableModule{m.ptr(), [m](const TensorMap& in) mutable {
                              auto r = m->forward(in.at("image"));
                              return TensorMap{{"reconstruction", r.reconstruction}, {"codes", r.codes},
                                               {"quant_loss", r.quant_loss}};
                            }};
    }});

JANUS_REGISTER_MODULE(ModuleEntry{
    "patch_discriminator",
    "PatchGAN discriminator (taming NLayerDiscriminator): 4x4 convs, LeakyReLU 0.2, BatchNorm",
    {{"in_channels", "int", 3, "image channels"},
     {"ndf", "int", 64, "base filters"},
     {"n_layers", "int", 3, "strided layers"},
     {"norm", "string", "batch", "batch or none"}},
    {{"x", "[B, C, H, W] float"}},
    {{"logits", "[B, 1, H', W'] float (30x30 for 256x256, n_layers 3)"}},
    [](const json& o) {
      auto m = PatchDiscriminator(PatchDiscriminatorOptions()
                                      .in_channels(o["in_channels"].get<int64_t>())
                                      .ndf(o["ndf"].get<int64_t>())
                                      .n_layers(o["n_layers"].get<int64_t>())
                                      .norm(o["norm"].get<std::string>()));
      m->eval();
      return RunnableModule{m.ptr(), [m](const TensorMap& in) mutable { return TensorMap{{"logits", m->forward(in.at("x"))}}; }};
    }});

JANUS_REGISTER_MODULE(ModuleEntry{
    "conditional_adapter",
    "per-task bottleneck adapter (text_to_image, video_prediction) selected at run time",
    {{"dim", "int", nullptr, "feature size", true},
     {"bottleneck", "int", 32, "adapter width"},
     {"tasks", "string_list", json::array({"text_to_image", "video_prediction"}), "task names"},
     {"act", "string", "gelu", "activation"},
     {"task", "string", "text_to_image", "task used by `run`"}},
    {{"x", "[*, dim] float"}},
    {{"y", "[*, dim] float"}},
    [](const json& o) {
      auto m = ConditionalAdapter(ConditionalAdapterOptions(o["dim"].get<int64_t>(), o["bottleneck"].get<int64_t>())
                                      .tasks(o["tasks"].get<std::vector<std::string>>())
                                      .act(o["act"].get<std::string>()));
      const std::string task = o["task"].get<std::string>();
      m->forward(at::zeros({1, o["dim"].get<int64_t>()}), task);  // unknown task -> InputError at build time
      return RunnableModule{m.ptr(), [m, task](const TensorMap& in) mutable {
                              return TensorMap{{"y", m->forward(in.at("x"), task)}};
                            }};
    }});

JANUS_REGISTER_MODULE(ModuleEntry{
    "causal_transformer",
    "causal pre-LN transformer (SDPA), the built-in CausalBackbone of the image-token generator",
    {{"dim", "int", nullptr, "model width", true},
     {"depth", "int", 4, "blocks"},
     {"heads", "int", 4, "attention heads"},
     {"mlp_ratio", "float", 4.0, "MLP hidden / dim"}},
    {{"x", "[B, L, dim] float"}},
    {{"y", "[B, L, dim] float"}},
    [](const json& o) {
      auto m = CausalTransformer(CausalTransformerOptions(o["dim"].get<int64_t>(), o["depth"].get<int64_t>(),
                                                          o["heads"].get<int64_t>())
                                     .mlp_ratio(o["mlp_ratio"].get<double>()));
      return RunnableModule{m.ptr(), [m](const TensorMap& in) mutable {
                              return TensorMap{{"y", m->forward_causal(in.at("x"))}};
                            }};
    }});

JANUS_REGISTER_MODULE(ModuleEntry{
    "image_token_generator",
    "autoregressive next-VQ-code model conditioned on a text prefix (teacher-forced logits)",
    {{"text_vocab", "int", nullptr, "text vocabulary", true},
     {"codebook_size", "int", nullptr, "VQ codes", true},
     {"dim", "int", 256, "model width"},
     {"depth", "int", 4, "blocks"},
     {"heads", "int", 4, "attention heads"},
     {"mlp_ratio", "float", 4.0, "MLP hidden / dim"},
     {"max_positions", "int", 2048, "learned positions"},
     {"uncond_token", "int", 0, "text id of unconditional rows"},
     {"adapter_bottleneck", "int", 32, "ConditionalAdapter width (0 = none)"}},
    {{"text", "[B, Lt] int64"}, {"codes", "[B, N] int64"}},
    {{"logits", "[B, N, codebook_size] float; logits[:, i] predicts codes[:, i]"}},
    [](const json& o) {
      auto m = ImageTokenGenerator(ImageTokenGeneratorOptions(o["text_vocab"].get<int64_t>(), o["codebook_size"].get<int64_t>())
                                       .dim(o["dim"].get<int64_t>())
                                       .depth(o["depth"].get<int64_t>())
                                       .heads(o["heads"].get<int64_t>())
                                       .mlp_ratio(o["mlp_ratio"].get<double>())
                                       .max_positions(o["max_positions"].get<int64_t>())
                                       .uncond_token(o["uncond_token"].get<int64_t>())
                                       .adapter_bottleneck(o["adapter_bottleneck"].get<int64_t>()));
      return RunnableModule{m.ptr(), [m](const TensorMap& in) mutable {
                              return TensorMap{{"logits", m->forward(in.at("text"), in.at("codes"))}};
                            }};
    }});

}  // namespace
}  // namespace janus
