#include "janus/encoders/vision_encoder.h"

#include <algorithm>
#include <cmath>

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <nlohmann/json.hpp>

#include "janus/core/checkpoint_fn.h"
#include "janus/core/error.h"
#include "janus/io/module_io.h"

namespace janus {

// ---- Attention ---------------------------------------------------------------------------------------------
AttentionImpl::AttentionImpl(const AttentionOptions& options_) : options(options_) { reset(); }

void AttentionImpl::reset() {
  TORCH_CHECK(options.dim() > 0 && options.heads() > 0 && options.dim() % options.heads() == 0, "attention: dim ",
              options.dim(), " is not a positive multiple of heads ", options.heads());
  qkv = register_module(
      "qkv", torch::nn::Linear(torch::nn::LinearOptions(options.dim(), 3 * options.dim()).bias(options.qkv_bias())));
  proj = register_module("proj", torch::nn::Linear(options.dim(), options.dim()));
}

at::Tensor AttentionImpl::forward(const at::Tensor& x, const std::optional<at::Tensor>& mask) {
  TORCH_CHECK(x.dim() == 3 && x.size(2) == options.dim(), "attention: expected [B, N, ", options.dim(), "], got ",
              x.sizes());
  const int64_t B = x.size(0), N = x.size(1), H = options.heads(), hd = options.dim() / H;
  // [B, N, 3, H, hd] -> [3, B, H, N, hd]
  const auto qkv_ = qkv->forward(x).reshape({B, N, 3, H, hd}).permute({2, 0, 3, 1, 4});
  const auto parts = qkv_.unbind(0);
  auto o = at::scaled_dot_product_attention(parts[0], parts[1], parts[2], mask);
  return proj->forward(o.transpose(1, 2).reshape({B, N, options.dim()}));
}

// ---- Block -------------------------------------------------------------------------------------------------
BlockImpl::BlockImpl(const BlockOptions& options_) : options(options_) { reset(); }

void BlockImpl::reset() {
  const auto ln = [&] {
    return torch::nn::LayerNorm(torch::nn::LayerNormOptions({options.dim()}).eps(options.norm_eps()));
  };
  norm1 = register_module("norm1", ln());
  attn =
      register_module("attn", Attention(AttentionOptions(options.dim(), options.heads()).qkv_bias(options.qkv_bias())));
  norm2 = register_module("norm2", ln());
  const auto hidden = static_cast<int64_t>(static_cast<double>(options.dim()) * options.mlp_ratio());
  mlp = register_module("mlp", Mlp(MlpOptions(options.dim(), hidden).act(options.act())));
}

at::Tensor BlockImpl::forward(const at::Tensor& x, const std::optional<at::Tensor>& mask) {
  auto h = x + attn->forward(norm1->forward(x), mask);
  return h + mlp->forward(norm2->forward(h));
}

void BlockImpl::zero_init_residual() {
  torch::NoGradGuard g;
  attn->proj->weight.zero_();
  attn->proj->bias.zero_();
  mlp->fc2->weight.zero_();
  mlp->fc2->bias.zero_();
}

// ---- PatchEmbed --------------------------------------------------------------------------------------------
PatchEmbedImpl::PatchEmbedImpl(int64_t in_chans_, int64_t dim_, int64_t patch_size_, std::string stem_)
    : in_chans(in_chans_), dim(dim_), patch_size(patch_size_), stem_kind(std::move(stem_)) {
  reset();
}

void PatchEmbedImpl::reset() {
  if (stem_kind == "patch") {
    proj = register_module("proj",
                           torch::nn::Conv2d(torch::nn::Conv2dOptions(in_chans, dim, patch_size).stride(patch_size)));
    return;
  }
  if (stem_kind != "conv") throw InputError("vision_encoder: stem '" + stem_kind + "' is not one of patch, conv");
  int64_t levels = 0;
  while ((int64_t{1} << levels) < patch_size) ++levels;
  if ((int64_t{1} << levels) != patch_size) {
    throw InputError(fmt::format("vision_encoder: stem 'conv' needs a power-of-two patch_size, got {}", patch_size));
  }
  stem = register_module("stem", torch::nn::Sequential());
  int64_t in = in_chans;
  for (int64_t i = 0; i <= levels; ++i) {
    const int64_t out = std::min<int64_t>(dim, int64_t{32} << i);
    stem->push_back(
        torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).stride(i == 0 ? 1 : 2).padding(1).bias(false)));
    stem->push_back(torch::nn::BatchNorm2d(out));
    stem->push_back(torch::nn::ReLU());
    in = out;
  }
  proj = register_module("proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, dim, 1)));
}

at::Tensor PatchEmbedImpl::forward(const at::Tensor& images) {
  TORCH_CHECK(images.dim() == 4 && images.size(1) == in_chans, "patch_embed: expected images [B, ", in_chans,
              ", H, W], got ", images.sizes());
  TORCH_CHECK(images.size(2) % patch_size == 0 && images.size(3) % patch_size == 0, "patch_embed: image size ",
              images.size(2), "x", images.size(3), " is not a multiple of patch_size ", patch_size);
  return proj->forward(stem ? stem->forward(images) : images);
}

// ---- VisionEncoder -----------------------------------------------------------------------------------------
VisionEncoderOptions VisionEncoderOptions::flavour(const std::string& name) {
  VisionEncoderOptions o;
  if (name == "tiny") return o.dim(192).depth(12).heads(3);
  if (name == "small") return o.dim(384).depth(12).heads(6);
  if (name == "base") return o.dim(768).depth(12).heads(12);
  if (name == "large") return o.dim(1024).depth(24).heads(16);
  throw InputError("vision_encoder: unknown flavour '" + name + "' (tiny, small, base, large)");
}

VisionEncoderImpl::VisionEncoderImpl(const VisionEncoderOptions& options_) : options(options_) { reset(); }

bool VisionEncoderImpl::uses_fc_norm() const {
  return options.fc_norm().has_value() ? *options.fc_norm() : options.global_pool() == "avg";
}

void VisionEncoderImpl::reset() {
  const auto& o = options;
  if (o.global_pool() != "token" && o.global_pool() != "avg") {
    throw InputError("vision_encoder: global_pool '" + o.global_pool() + "' is not one of token, avg");
  }
  if (o.global_pool() == "token" && !o.class_token()) {
    throw InputError("vision_encoder: global_pool 'token' needs class_token = true");
  }
  if (o.patch_size() <= 0 || o.image_size() <= 0 || o.image_size() % o.patch_size() != 0) {
    throw InputError(fmt::format("vision_encoder: image_size {} is not a positive multiple of patch_size {}",
                                 o.image_size(), o.patch_size()));
  }
  if (o.dim() <= 0 || o.heads() <= 0 || o.dim() % o.heads() != 0 || o.depth() < 0 || o.in_chans() <= 0) {
    throw InputError(
        fmt::format("vision_encoder: dim {} must be a positive multiple of heads {} (depth {}, in_chans {})", o.dim(),
                    o.heads(), o.depth(), o.in_chans()));
  }
  patch_embed = register_module("patch_embed", PatchEmbed(o.in_chans(), o.dim(), o.patch_size(), o.stem()));
  if (o.class_token()) cls_token = register_parameter("cls_token", at::zeros({1, 1, o.dim()}));
  const int64_t g = grid_size();
  pos_embed = register_parameter("pos_embed", at::zeros({1, num_prefix_tokens() + g * g, o.dim()}));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.depth(); ++i) {
    blocks->push_back(
        Block(BlockOptions(o.dim(), o.heads()).mlp_ratio(o.mlp_ratio()).qkv_bias(o.qkv_bias()).norm_eps(o.norm_eps())));
  }
  if (o.adapter_dim() > 0) {
    adapters = register_module("adapters", torch::nn::ModuleList());
    for (int64_t i = 0; i < o.depth(); ++i) adapters->push_back(Adapter(AdapterOptions(o.dim(), o.adapter_dim())));
  }
  const auto ln = torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.dim()}).eps(o.norm_eps()));
  if (uses_fc_norm()) {
    fc_norm = register_module("fc_norm", ln);
  } else {
    norm = register_module("norm", ln);
  }
  reset_parameters();
}

void VisionEncoderImpl::reset_parameters() {
  torch::NoGradGuard g;
  // timm-like init: trunc-normal(0.02) ~ normal(0.02) for embeddings and Linear weights, zero biases.
  pos_embed.normal_(0.0, 0.02);
  if (cls_token.defined()) cls_token.normal_(0.0, 1e-6);
  for (auto& b : blocks->children()) {
    for (auto& m : b->modules()) {
      if (auto* lin = m->as<torch::nn::Linear>()) {
        lin->weight.normal_(0.0, 0.02);
        if (lin->bias.defined()) lin->bias.zero_();
      }
    }
  }
}

at::Tensor VisionEncoderImpl::position_embedding(int64_t gh, int64_t gw) const {
  const int64_t g = grid_size();
  if (gh == g && gw == g) return pos_embed;
  TORCH_CHECK(options.dynamic_image_size(), "vision_encoder: patch grid ", gh, "x", gw, " differs from the trained ", g,
              "x", g, " and dynamic_image_size is off");
  return resample_position_table(pos_embed, num_prefix_tokens(), gh, gw);
}

at::Tensor resample_position_table(const at::Tensor& table, int64_t P, int64_t gh, int64_t gw) {
  const int64_t D = table.size(-1);
  const auto g = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(table.size(1) - P))));
  TORCH_CHECK(table.dim() == 3 && table.size(0) == 1 && P >= 0 && g * g == table.size(1) - P,
              "resample_position_table: expected [1, ", P, " + g*g, D], got ", table.sizes());
  if (gh == g && gw == g) return table;
  auto prefix = table.slice(1, 0, P);
  auto grid = table.slice(1, P).to(at::kFloat).reshape({1, g, g, D}).permute({0, 3, 1, 2});
  // timm resample_abs_pos_embed: bicubic, antialias=True, align_corners=False
  grid = at::_upsample_bicubic2d_aa(grid, {gh, gw}, false, std::nullopt, std::nullopt);
  grid = grid.permute({0, 2, 3, 1}).reshape({1, gh * gw, D}).to(table.scalar_type());
  return P > 0 ? at::cat({prefix, grid}, 1) : grid;
}

at::Tensor sincos_2d_position_table(int64_t grid, int64_t dim) {
  TORCH_CHECK(grid > 0 && dim > 0 && dim % 4 == 0, "sincos_2d_position_table: grid ", grid, ", dim ", dim,
              " (dim must be a positive multiple of 4)");
  const int64_t q = dim / 4;
  // omega_i = 1 / 10000^(i / q); one half of the channels for the column, the other for the row: [sin, cos] each.
  const auto omega = 1.0 / at::pow(10000.0, at::arange(q, at::kDouble) / static_cast<double>(q));
  const auto pos = at::arange(grid, at::kDouble);
  const auto col = pos.repeat({grid}), row = pos.repeat_interleave(grid);  // token k = row * grid + col
  const auto half = [&](const at::Tensor& p) {
    const auto out = at::outer(p, omega);
    return at::cat({at::sin(out), at::cos(out)}, 1);
  };
  return at::cat({half(col), half(row)}, 1).to(at::kFloat);
}

at::Tensor VisionEncoderImpl::patchify(const at::Tensor& images, std::pair<int64_t, int64_t>* grid) {
  auto x = patch_embed->forward(images);  // [B, D, gh, gw]
  if (grid) *grid = {x.size(2), x.size(3)};
  return x.flatten(2).transpose(1, 2);
}

at::Tensor VisionEncoderImpl::add_positions(const at::Tensor& patch_tokens, std::pair<int64_t, int64_t> grid) {
  TORCH_CHECK(patch_tokens.dim() == 3 && patch_tokens.size(1) == grid.first * grid.second &&
                  patch_tokens.size(2) == options.dim(),
              "vision_encoder: patch tokens ", patch_tokens.sizes(), " do not match grid ", grid.first, "x",
              grid.second, " and dim ", options.dim());
  auto x = patch_tokens;
  if (cls_token.defined()) x = at::cat({cls_token.expand({x.size(0), -1, -1}), x}, 1);
  return x + position_embedding(grid.first, grid.second);
}

VisionOutput VisionEncoderImpl::encode(const at::Tensor& tokens) {
  auto x = tokens;
  const bool ckpt = use_checkpoint(activation_checkpointing_, *this);
  for (size_t i = 0; i < blocks->size(); ++i) {
    auto block = blocks->ptr<BlockImpl>(i);
    std::shared_ptr<AdapterImpl> adapter = adapters ? adapters->ptr<AdapterImpl>(i) : nullptr;
    if (ckpt) {
      auto params = trainable_parameters(*block);
      if (adapter) {
        auto more = trainable_parameters(*adapter);
        params.insert(params.end(), more.begin(), more.end());
      }
      x = checkpoint(
          [block, adapter](const at::Tensor& t) {
            auto y = block->forward(t);
            return adapter ? adapter->forward(y) : y;
          },
          x, params);
    } else {
      x = block->forward(x);
      if (adapter) x = adapter->forward(x);
    }
  }
  if (norm) x = norm->forward(x);
  return {x, pool(x)};
}

at::Tensor VisionEncoderImpl::pool(const at::Tensor& x) {
  at::Tensor pooled = options.global_pool() == "token" ? x.select(1, 0) : x.slice(1, num_prefix_tokens()).mean(1);
  return fc_norm ? fc_norm->forward(pooled) : pooled;
}

VisionOutput VisionEncoderImpl::forward(const at::Tensor& images) {
  std::pair<int64_t, int64_t> grid;
  auto x = patchify(images, &grid);
  return encode(add_positions(x, grid));
}

void load_timm_vision(VisionEncoderImpl& encoder, const std::string& path) {
  LoadOptions lo;
  lo.strict = false;
  lo.rename = [](const std::string& k) { return k.rfind("head.", 0) == 0 ? std::string() : k; };
  const auto r = load_module(encoder, path, lo);
  LoadReport bad = r;
  bad.missing.clear();
  for (const auto& k : r.missing) {
    if (k.rfind("adapters.", 0) != 0) bad.missing.push_back(k);
  }
  if (!bad.ok()) throw InputError("load_timm_vision: " + path + ": " + bad.summary());
  spdlog::debug("load_timm_vision: {}: {}", path, r.summary());
}

}  // namespace janus

namespace janus {

VisionEncoderOptions vision_encoder_options_from_json(const nlohmann::json& j) {
  VisionEncoderOptions o;
  if (j.contains("flavour") && !j["flavour"].is_null() && !j["flavour"].get<std::string>().empty()) {
    o = VisionEncoderOptions::flavour(j["flavour"].get<std::string>());
  }
  for (const auto& [k, v] : j.items()) {
    if (k == "flavour") continue;
    if (k == "image_size")
      o.image_size(v.get<int64_t>());
    else if (k == "patch_size")
      o.patch_size(v.get<int64_t>());
    else if (k == "in_chans")
      o.in_chans(v.get<int64_t>());
    else if (k == "dim")
      o.dim(v.get<int64_t>());
    else if (k == "depth")
      o.depth(v.get<int64_t>());
    else if (k == "heads")
      o.heads(v.get<int64_t>());
    else if (k == "mlp_ratio")
      o.mlp_ratio(v.get<double>());
    else if (k == "class_token")
      o.class_token(v.get<bool>());
    else if (k == "qkv_bias")
      o.qkv_bias(v.get<bool>());
    else if (k == "global_pool")
      o.global_pool(v.get<std::string>());
    else if (k == "fc_norm")
      o.fc_norm(v.is_null() ? std::optional<bool>() : std::optional<bool>(v.get<bool>()));
    else if (k == "norm_eps")
      o.norm_eps(v.get<double>());
    else if (k == "dynamic_image_size")
      o.dynamic_image_size(v.get<bool>());
    else if (k == "adapter_dim")
      o.adapter_dim(v.get<int64_t>());
    else if (k == "stem")
      o.stem(v.get<std::string>());
    else
      throw InputError("vision_encoder: unknown option '" + k + "'");
  }
  return o;
}

}  // namespace janus
