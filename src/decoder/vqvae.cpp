#include "janus/decoder/vqvae.h"

#include <torch/nn/functional/padding.h>
#include <torch/nn/functional/upsampling.h>

#include "janus/core/error.h"

namespace janus {

namespace nnf = torch::nn::functional;

namespace {
torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t k, int64_t stride = 1, int64_t pad = -1) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, k).stride(stride).padding(pad < 0 ? k / 2 : pad));
}
torch::nn::GroupNorm group_norm(int64_t groups, int64_t c) {
  TORCH_CHECK(c % groups == 0, "vqvae: GroupNorm with ", groups, " groups needs channels divisible by it, got ", c);
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(groups, c).eps(1e-6));
}

// One resolution level: res blocks, optional attention per block, optional down/up-sampling conv.
class VqLevelImpl : public torch::nn::Cloneable<VqLevelImpl> {
 public:
  VqLevelImpl(std::vector<int64_t> chans, bool attention, int64_t groups, int mode)
      : chans(std::move(chans)), attention(attention), groups(groups), mode(mode) {
    reset();
  }
  void reset() override {
    res = register_module("res", torch::nn::ModuleList());
    attn = register_module("attn", torch::nn::ModuleList());
    for (size_t i = 0; i + 1 < chans.size(); ++i) {
      res->push_back(VqResBlock(chans[i], chans[i + 1], groups));
      if (attention) attn->push_back(VqAttnBlock(chans[i + 1], groups));
    }
    const int64_t c = chans.back();
    if (mode == 1) sample = register_module("downsample", conv(c, c, 3, 2, 0));
    if (mode == 2) sample = register_module("upsample", conv(c, c, 3));
  }
  at::Tensor forward(at::Tensor x) {
    for (size_t i = 0; i < res->size(); ++i) {
      x = res[i]->as<VqResBlock>()->forward(x);
      if (attention) x = attn[i]->as<VqAttnBlock>()->forward(x);
    }
    if (mode == 1) x = sample->forward(nnf::pad(x, nnf::PadFuncOptions({0, 1, 0, 1})));
    if (mode == 2) {
      x = nnf::interpolate(x, nnf::InterpolateFuncOptions().scale_factor(std::vector<double>{2.0, 2.0}).mode(torch::kNearest));
      x = sample->forward(x);
    }
    return x;
  }
  std::vector<int64_t> chans;
  bool attention;
  int64_t groups;
  int mode;  // 0 none, 1 downsample, 2 upsample
  torch::nn::ModuleList res{nullptr}, attn{nullptr};
  torch::nn::Conv2d sample{nullptr};
};
TORCH_MODULE(VqLevel);

void check_options(const VQVAEOptions& o) {
  TORCH_CHECK(!o.ch_mult().empty(), "vqvae: ch_mult must not be empty");
  TORCH_CHECK(o.ch() > 0 && o.z_channels() > 0 && o.in_channels() > 0 && o.num_res_blocks() >= 0,
              "vqvae: ch, z_channels, in_channels must be > 0 and num_res_blocks >= 0");
  TORCH_CHECK(o.encoder() == "conv" || o.encoder() == "cell", "vqvae: encoder must be conv or cell, got '", o.encoder(),
              "'");
}
}  // namespace

// ---- blocks ---------------------------------------------------------------------------------------------------
at::Tensor group_norm_tokens(torch::nn::GroupNorm& norm, const at::Tensor& x) {
  const int64_t C = x.size(-1), G = norm->options.num_groups();
  TORCH_CHECK(C == norm->options.num_channels(), "vqvae: GroupNorm over ", norm->options.num_channels(),
              " channels got tokens with ", C);
  // GroupNorm of each position's C channels = LayerNorm over each group's C/G channels, then the per-channel affine.
  // ATen's GroupNorm on [N, C, 1, 1] is several times slower than this on CPU (one spatial element per group).
  std::vector<int64_t> grouped(x.sizes().begin(), x.sizes().end() - 1);
  grouped.push_back(G);
  grouped.push_back(C / G);
  auto y = at::layer_norm(x.reshape(grouped), {C / G}, {}, {}, norm->options.eps()).reshape(x.sizes());
  return norm->options.affine() ? at::addcmul(norm->bias, y, norm->weight) : y;
}

namespace {
// Channels-last tokens [B, H, W, C] -> contiguous NCHW. Contiguous matters: permuted (channels-last) strides would
// carry through every later conv (oneDNN keeps its input's layout) into the decoder's GroupNorms, whose channels-last
// CPU kernels are several times slower (stage 1 of the quickstart: ~15 % of the tokenizer's step time).
at::Tensor tokens_to_nchw(const at::Tensor& t) { return t.permute({0, 3, 1, 2}).contiguous(); }
// A 1x1 conv applied to channels-last tokens [..., in] -> [..., out]: the same weights as a matmul.
at::Tensor pointwise_conv(torch::nn::Conv2d& conv, const at::Tensor& x) {
  const auto& w = conv->weight;
  return at::linear(x, w.view({w.size(0), w.size(1)}), conv->bias);
}
// A conv whose kernel equals its stride (f x f, no padding) on [B, C, H, W] -> channels-last tokens
// [B, H/f, W/f, out]: each output is one patch times the flattened kernel.
at::Tensor patch_conv_tokens(torch::nn::Conv2d& conv, const at::Tensor& x) {
  const auto& w = conv->weight;  // [out, C, f, f]
  const int64_t B = x.size(0), C = x.size(1), f = w.size(2);
  TORCH_CHECK(x.dim() == 4 && C == w.size(1) && x.size(2) % f == 0 && x.size(3) % f == 0, "vqvae: the cell encoder ",
              "needs [B, ", w.size(1), ", H, W] with H and W multiples of ", f, ", got ", x.sizes());
  const int64_t h = x.size(2) / f, wd = x.size(3) / f;
  auto patches = x.reshape({B, C, h, f, wd, f}).permute({0, 2, 4, 1, 3, 5}).reshape({B, h, wd, C * f * f});
  return at::linear(patches, w.reshape({w.size(0), C * f * f}), conv->bias);
}
}  // namespace

VqResBlockImpl::VqResBlockImpl(int64_t in_, int64_t out_, int64_t groups_, bool pointwise_)
    : in(in_), out(out_), groups(groups_), pointwise(pointwise_) {
  reset();
}

void VqResBlockImpl::reset() {
  const int64_t k = pointwise ? 1 : 3;
  norm1 = register_module("norm1", group_norm(groups, in));
  conv1 = register_module("conv1", conv(in, out, k));
  norm2 = register_module("norm2", group_norm(groups, out));
  conv2 = register_module("conv2", conv(out, out, k));
  if (in != out) nin_shortcut = register_module("nin_shortcut", conv(in, out, 1));
}

at::Tensor VqResBlockImpl::forward_tokens(const at::Tensor& x) {
  TORCH_CHECK(pointwise, "vqvae: forward_tokens is for pointwise residual blocks");
  auto h = pointwise_conv(conv1, at::silu(group_norm_tokens(norm1, x)));
  h = pointwise_conv(conv2, at::silu(group_norm_tokens(norm2, h)));
  return (nin_shortcut ? pointwise_conv(nin_shortcut, x) : x) + h;
}

at::Tensor VqResBlockImpl::forward(const at::Tensor& x) {
  if (pointwise) return tokens_to_nchw(forward_tokens(x.permute({0, 2, 3, 1})));
  auto h = conv1->forward(at::silu(norm1->forward(x)));
  h = conv2->forward(at::silu(norm2->forward(h)));
  return (nin_shortcut ? nin_shortcut->forward(x) : x) + h;
}

VqAttnBlockImpl::VqAttnBlockImpl(int64_t channels_, int64_t groups_) : channels(channels_), groups(groups_) { reset(); }

void VqAttnBlockImpl::reset() {
  norm = register_module("norm", group_norm(groups, channels));
  q = register_module("q", conv(channels, channels, 1));
  k = register_module("k", conv(channels, channels, 1));
  v = register_module("v", conv(channels, channels, 1));
  proj_out = register_module("proj_out", conv(channels, channels, 1));
}

at::Tensor VqAttnBlockImpl::forward(const at::Tensor& x) {
  const auto B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  auto h = norm->forward(x);
  auto to_seq = [&](const at::Tensor& t) { return t.reshape({B, 1, C, H * W}).transpose(2, 3); };  // [B,1,HW,C]
  auto o = at::scaled_dot_product_attention(to_seq(q->forward(h)), to_seq(k->forward(h)), to_seq(v->forward(h)));
  o = o.transpose(2, 3).reshape({B, C, H, W});
  return x + proj_out->forward(o);
}

// ---- encoder / decoder ----------------------------------------------------------------------------------------
VqEncoderImpl::VqEncoderImpl(const VQVAEOptions& options_) : options(options_) { reset(); }

void VqEncoderImpl::reset() {
  check_options(options);
  const auto& m = options.ch_mult();
  const int64_t g = options.num_groups(), ch = options.ch(), n = static_cast<int64_t>(m.size());
  if (options.encoder() == "cell") {
    // Each code from its own cell: a stride-f patch conv, then per-position blocks (no spatial mixing).
    const int64_t f = int64_t{1} << (n - 1), c = ch * m.back();
    conv_in = register_module("conv_in", conv(options.in_channels(), c, f, f, 0));
    mid = register_module("mid", torch::nn::ModuleList());
    for (int64_t j = 0; j <= options.num_res_blocks(); ++j) mid->push_back(VqResBlock(c, c, g, /*pointwise=*/true));
    norm_out = register_module("norm_out", group_norm(g, c));
    conv_out = register_module("conv_out", conv(c, options.z_channels(), 1));
    return;
  }
  conv_in = register_module("conv_in", conv(options.in_channels(), ch, 3));
  conv_blocks = register_module("conv_blocks", torch::nn::ModuleList());
  int64_t c = ch;
  for (int64_t i = 0; i < n; ++i) {
    std::vector<int64_t> chans{c};
    for (int64_t j = 0; j < options.num_res_blocks(); ++j) chans.push_back(ch * m[i]);
    if (options.num_res_blocks() == 0) chans.push_back(c);
    const bool attn = options.mid_attention() && i == n - 1;
    conv_blocks->push_back(VqLevel(chans, attn, g, i + 1 < n ? 1 : 0));
    c = chans.back();
  }
  mid = register_module("mid", torch::nn::ModuleList());
  mid->push_back(VqResBlock(c, c, g));
  if (options.mid_attention()) mid->push_back(VqAttnBlock(c, g));
  mid->push_back(VqResBlock(c, c, g));
  norm_out = register_module("norm_out", group_norm(g, c));
  conv_out = register_module("conv_out", conv(c, options.z_channels(), 3));
}

at::Tensor VqEncoderImpl::forward(const at::Tensor& x) {
  if (options.encoder() == "cell") {
    // Channels-last tokens [B, H/f, W/f, C] throughout (nothing mixes positions), NCHW again at the end.
    auto t = patch_conv_tokens(conv_in, x);
    for (auto& blk : *mid) t = blk->as<VqResBlock>()->forward_tokens(t);
    return tokens_to_nchw(pointwise_conv(conv_out, at::silu(group_norm_tokens(norm_out, t))));
  }
  auto h = conv_in->forward(x);
  for (auto& level : *conv_blocks) h = level->as<VqLevel>()->forward(h);
  for (auto& blk : *mid) {
    if (auto r = blk->as<VqResBlock>()) h = r->forward(h);
    else h = blk->as<VqAttnBlock>()->forward(h);
  }
  return conv_out->forward(at::silu(norm_out->forward(h)));
}

VqDecoderImpl::VqDecoderImpl(const VQVAEOptions& options_) : options(options_) { reset(); }

void VqDecoderImpl::reset() {
  check_options(options);
  const auto& m = options.ch_mult();
  const int64_t g = options.num_groups(), ch = options.ch(), n = static_cast<int64_t>(m.size());
  int64_t c = ch * m.back();
  conv_in = register_module("conv_in", conv(options.z_channels(), c, 3));
  mid = register_module("mid", torch::nn::ModuleList());
  mid->push_back(VqResBlock(c, c, g));
  if (options.mid_attention()) mid->push_back(VqAttnBlock(c, g));
  mid->push_back(VqResBlock(c, c, g));
  conv_blocks = register_module("conv_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < n; ++i) {
    const int64_t out = ch * m[n - 1 - i];
    std::vector<int64_t> chans{c};
    for (int64_t j = 0; j < options.num_res_blocks() + 1; ++j) chans.push_back(out);
    const bool attn = options.mid_attention() && i == 0;
    conv_blocks->push_back(VqLevel(chans, attn, g, i + 1 < n ? 2 : 0));
    c = out;
  }
  norm_out = register_module("norm_out", group_norm(g, c));
  conv_out = register_module("conv_out", conv(c, options.in_channels(), 3));
}

at::Tensor VqDecoderImpl::forward(const at::Tensor& z) {
  auto h = conv_in->forward(z);
  for (auto& blk : *mid) {
    if (auto r = blk->as<VqResBlock>()) h = r->forward(h);
    else h = blk->as<VqAttnBlock>()->forward(h);
  }
  for (auto& level : *conv_blocks) h = level->as<VqLevel>()->forward(h);
  return conv_out->forward(at::silu(norm_out->forward(h)));
}

// ---- VQVAE ------------------------------------------------------------------------------------------------------
VQVAEImpl::VQVAEImpl(const VQVAEOptions& options_) : options(options_) { reset(); }

void VQVAEImpl::reset() {
  check_options(options);
  encoder = register_module("encoder", VqEncoder(options));
  decoder = register_module("decoder", VqDecoder(options));
  quantize = register_module("quantize", VectorQuantizer(VectorQuantizerOptions(options.codebook_size(), options.codebook_dim())
                                                             .cosine(options.cosine())
                                                             .beta(options.beta())
                                                             .ema(options.ema())
                                                             .decay(options.decay())
                                                             .dead_code_threshold(options.dead_code_threshold())));
  quant_conv = register_module("quant_conv", conv(options.z_channels(), options.codebook_dim(), 1));
  post_quant_conv = register_module("post_quant_conv", conv(options.codebook_dim(), options.z_channels(), 1));
}

int64_t VQVAEImpl::downsample() const { return int64_t{1} << (options.ch_mult().size() - 1); }

void VQVAEImpl::check_image(const at::Tensor& img) const {
  const int64_t f = downsample();
  TORCH_CHECK(img.dim() == 4 && img.size(1) == options.in_channels(), "vqvae: expected image [B, ", options.in_channels(),
              ", H, W], got ", img.sizes());
  TORCH_CHECK(img.size(2) % f == 0 && img.size(3) % f == 0, "vqvae: image size ", img.size(2), "x", img.size(3),
              " is not a multiple of the downsample factor ", f);
}

at::Tensor VQVAEImpl::encode(const at::Tensor& img) {
  check_image(img);
  auto z = quant_conv->forward(encoder->forward(img)).permute({0, 2, 3, 1});  // [B, h, w, d]
  return quantize->encode(z);
}

at::Tensor VQVAEImpl::decode(const at::Tensor& codes) {
  TORCH_CHECK(codes.dim() == 3, "vqvae: decode expects codes [B, h, w], got ", codes.sizes());
  auto q = quantize->lookup(codes).permute({0, 3, 1, 2});
  return decoder->forward(post_quant_conv->forward(q));
}

VQVAEOutput VQVAEImpl::forward(const at::Tensor& img) {
  check_image(img);
  auto z = quant_conv->forward(encoder->forward(img)).permute({0, 2, 3, 1});
  auto vq = quantize->forward(z);
  auto rec = decoder->forward(post_quant_conv->forward(vq.quantized.permute({0, 3, 1, 2})));
  VQVAEOutput out;
  out.reconstruction = rec;
  out.codes = vq.codes;
  out.quant_loss = vq.loss;
  out.rec_loss = (img - rec).abs().mean();
  out.mse_loss = (img - rec).pow(2).mean();
  out.perplexity = vq.perplexity;
  out.usage = vq.usage;
  return out;
}

}  // namespace janus
