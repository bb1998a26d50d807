#include "janus/decoder/image_token_generator.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/init.h>

#include "janus/core/error.h"

namespace janus {

// ---- causal transformer ----------------------------------------------------------------------------------------
CausalBlockImpl::CausalBlockImpl(int64_t dim_, int64_t heads_, double mlp_ratio_)
    : dim(dim_), heads(heads_), mlp_ratio(mlp_ratio_) {
  reset();
}

void CausalBlockImpl::reset() {
  TORCH_CHECK(heads > 0 && dim % heads == 0, "causal_transformer: dim ", dim, " is not a multiple of heads ", heads);
  norm1 = register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
  // attn.qkv / attn.proj as timm names them; registered through a child module "attn".
  auto attn = std::make_shared<torch::nn::Module>("attn");
  qkv = attn->register_module("qkv", torch::nn::Linear(dim, 3 * dim));
  proj = attn->register_module("proj", torch::nn::Linear(dim, dim));
  register_module("attn", attn);
  norm2 = register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
  mlp = register_module("mlp", Mlp(MlpOptions(dim, static_cast<int64_t>(dim * mlp_ratio))));
}

at::Tensor CausalBlockImpl::forward(const at::Tensor& x, const at::Tensor& past_k, const at::Tensor& past_v,
                                    at::Tensor* k_out, at::Tensor* v_out) {
  const int64_t B = x.size(0), T = x.size(1), hd = dim / heads;
  auto parts = qkv->forward(norm1->forward(x)).reshape({B, T, 3, heads, hd}).permute({2, 0, 3, 1, 4});
  auto q = parts[0], k = parts[1], v = parts[2];  // [B, H, T, hd]
  const int64_t P = past_k.defined() ? past_k.size(2) : 0;
  if (P > 0) {
    k = at::cat({past_k, k}, 2);
    v = at::cat({past_v, v}, 2);
  }
  at::Tensor o;
  if (P == 0) {
    o = at::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/T > 1);
  } else if (T == 1) {
    o = at::scaled_dot_product_attention(q, k, v);
  } else {
    // query i (absolute P + i) sees keys 0 .. P + i
    auto qi = at::arange(T, x.options().dtype(at::kLong)).unsqueeze(1) + P;
    auto kj = at::arange(P + T, x.options().dtype(at::kLong)).unsqueeze(0);
    o = at::scaled_dot_product_attention(q, k, v, kj <= qi);
  }
  if (k_out) *k_out = k;
  if (v_out) *v_out = v;
  auto h = x + proj->forward(o.transpose(1, 2).reshape({B, T, dim}));
  return h + mlp->forward(norm2->forward(h));
}

CausalTransformerImpl::CausalTransformerImpl(const CausalTransformerOptions& options_) : options(options_) {
  TORCH_CHECK(options.depth() > 0, "causal_transformer: depth must be > 0");
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < options.depth(); ++i) blocks->push_back(CausalBlock(options.dim(), options.heads(), options.mlp_ratio()));
  norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({options.dim()})));
}

at::Tensor CausalTransformerImpl::forward_causal(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 3 && x.size(2) == options.dim(), "causal_transformer: expected [B, L, ", options.dim(), "], got ",
              x.sizes());
  auto h = x;
  for (auto& b : *blocks) h = b->as<CausalBlock>()->forward(h, {}, {}, nullptr, nullptr);
  return norm->forward(h);
}

at::Tensor CausalTransformerImpl::forward_step(const at::Tensor& x, CausalKVCache& cache) {
  TORCH_CHECK(x.dim() == 3 && x.size(2) == options.dim(), "causal_transformer: expected [B, T, ", options.dim(), "], got ",
              x.sizes());
  const auto depth = static_cast<size_t>(options.depth());
  if (cache.keys.empty()) {
    cache.keys.resize(depth);
    cache.values.resize(depth);
  }
  TORCH_CHECK(cache.keys.size() == depth, "causal_transformer: cache has ", cache.keys.size(), " layers, model has ", depth);
  if (cache.length > 0) {
    TORCH_CHECK(cache.keys[0].size(0) == x.size(0), "causal_transformer: cache batch ", cache.keys[0].size(0),
                " != input batch ", x.size(0));
  }
  auto h = x;
  for (size_t i = 0; i < depth; ++i) {
    at::Tensor k, v;
    h = blocks[i]->as<CausalBlock>()->forward(h, cache.keys[i], cache.values[i], &k, &v);
    cache.keys[i] = k;
    cache.values[i] = v;
  }
  cache.length += x.size(1);
  return norm->forward(h);
}

// ---- generator --------------------------------------------------------------------------------------------------
ImageTokenGeneratorImpl::ImageTokenGeneratorImpl(const ImageTokenGeneratorOptions& options_,
                                                 std::shared_ptr<CausalBackbone> backbone_)
    : options(options_) {
  TORCH_CHECK(options.text_vocab() > 0 && options.codebook_size() > 0 && options.max_positions() > 0,
              "image_token_generator: text_vocab, codebook_size, max_positions must be > 0");
  TORCH_CHECK(options.uncond_token() >= 0 && options.uncond_token() < options.text_vocab(),
              "image_token_generator: uncond_token ", options.uncond_token(), " outside [0, ", options.text_vocab(), ")");
  const int64_t D = options.dim();
  if (!backbone_) {
    backbone_ = std::make_shared<CausalTransformerImpl>(
        CausalTransformerOptions(D, options.depth(), options.heads()).mlp_ratio(options.mlp_ratio()));
  }
  TORCH_CHECK(backbone_->dim() == D, "image_token_generator: backbone dim ", backbone_->dim(), " != dim ", D);
  text_embed = register_module("text_embed", torch::nn::Embedding(options.text_vocab(), D));
  code_embed = register_module("code_embed", torch::nn::Embedding(options.codebook_size() + 1, D));
  pos_embed = register_parameter("pos_embed", at::zeros({options.max_positions(), D}));
  frame_embed = register_parameter("frame_embed", at::zeros({D}));
  TORCH_CHECK(options.code_grid() >= 0, "image_token_generator: code_grid must be >= 0, got ", options.code_grid());
  if (options.code_grid() > 0) {
    row_embed = register_parameter("row_embed", at::zeros({options.code_grid(), D}));
    col_embed = register_parameter("col_embed", at::zeros({options.code_grid(), D}));
  }
  backbone = register_module("backbone", backbone_);
  head = register_module("head", torch::nn::Linear(D, options.codebook_size()));
  if (options.adapter_bottleneck() > 0) {
    adapter = register_module("adapter", ConditionalAdapter(ConditionalAdapterOptions(D, options.adapter_bottleneck())));
  }
  torch::NoGradGuard g;
  torch::nn::init::normal_(text_embed->weight, 0.0, 0.02);
  torch::nn::init::normal_(code_embed->weight, 0.0, 0.02);
  torch::nn::init::normal_(pos_embed, 0.0, 0.02);
  torch::nn::init::normal_(frame_embed, 0.0, 0.02);
  if (row_embed.defined()) {
    torch::nn::init::normal_(row_embed, 0.0, 0.02);
    torch::nn::init::normal_(col_embed, 0.0, 0.02);
  }
}

at::Tensor ImageTokenGeneratorImpl::code_places(int64_t first, int64_t T) const {
  const int64_t g = options.code_grid();
  if (g <= 0) return {};
  TORCH_CHECK(first >= 0 && first + T <= g * g, "image_token_generator: codes ", first, "..", first + T - 1,
              " outside the ", g, "x", g, " code grid");
  const auto k = at::arange(first, first + T, at::TensorOptions().dtype(at::kLong).device(row_embed.device()));
  return row_embed.index_select(0, at::div(k, g, "floor")) + col_embed.index_select(0, at::remainder(k, g));
}

at::Tensor ImageTokenGeneratorImpl::prefix(const at::Tensor& text, const at::Tensor& prev_frame, const std::string& task) {
  std::vector<at::Tensor> parts;
  int64_t B = -1;
  if (text.defined() && text.numel() > 0) {
    B = text.size(0);
    if (at::isFloatingType(text.scalar_type())) {  // an embedded prompt (e.g. the text encoder's features)
      TORCH_CHECK(text.dim() == 3 && text.size(2) == options.dim(),
                  "image_token_generator: an embedded prompt must be [B, Lt, ", options.dim(), "], got ", text.sizes());
      parts.push_back(text.to(pos_embed.scalar_type()));
    } else {
      TORCH_CHECK(text.dim() == 2 && text.scalar_type() == at::kLong,
                  "image_token_generator: text must be [B, Lt] int64 or [B, Lt, dim] floating, got ", text.sizes(), " ",
                  text.scalar_type());
      TORCH_CHECK(text.min().item<int64_t>() >= 0 && text.max().item<int64_t>() < options.text_vocab(),
                  "image_token_generator: text ids outside [0, ", options.text_vocab(), ")");
      parts.push_back(text_embed->forward(text));
    }
  }
  if (prev_frame.defined()) {
    TORCH_CHECK(prev_frame.dim() == 2 && prev_frame.scalar_type() == at::kLong,
                "image_token_generator: previous frame codes must be [B, M] int64, got ", prev_frame.sizes());
    TORCH_CHECK(B < 0 || prev_frame.size(0) == B, "image_token_generator: text batch ", B, " != frame batch ",
                prev_frame.size(0));
    TORCH_CHECK(prev_frame.min().item<int64_t>() >= 0 && prev_frame.max().item<int64_t>() < options.codebook_size(),
                "image_token_generator: frame codes outside [0, ", options.codebook_size(), ")");
    B = prev_frame.size(0);
    parts.push_back(code_embed->forward(prev_frame) + frame_embed);
  }
  TORCH_CHECK(B > 0, "image_token_generator: need a text prefix or a previous frame");
  auto boi = at::full({B, 1}, options.codebook_size(), at::TensorOptions().dtype(at::kLong).device(pos_embed.device()));
  auto boi_e = code_embed->forward(boi);
  if (options.code_grid() > 0) boi_e = boi_e + code_places(0, 1);  // <boi> predicts code 0
  parts.push_back(boi_e);
  auto x = at::cat(parts, 1);
  const int64_t L = x.size(1);
  TORCH_CHECK(L <= options.max_positions(), "image_token_generator: prefix of ", L, " positions exceeds max_positions ",
              options.max_positions());
  x = x + pos_embed.slice(0, 0, L);
  return adapter ? adapter->forward(x, task) : x;
}

at::Tensor ImageTokenGeneratorImpl::embed_codes(const at::Tensor& codes, int64_t start, int64_t first_target,
                                                const std::string& task) {
  const int64_t T = codes.size(1);
  TORCH_CHECK(start + T <= options.max_positions(), "image_token_generator: ", start + T,
              " positions exceed max_positions ", options.max_positions());
  auto x = code_embed->forward(codes) + pos_embed.slice(0, start, start + T);
  if (options.code_grid() > 0) x = x + code_places(first_target, T);
  return adapter ? adapter->forward(x, task) : x;
}

at::Tensor ImageTokenGeneratorImpl::forward(const at::Tensor& text, const at::Tensor& codes, const at::Tensor& prev_frame) {
  TORCH_CHECK(codes.dim() == 2 && codes.scalar_type() == at::kLong && codes.size(1) >= 1,
              "image_token_generator: codes must be [B, N>=1] int64, got ", codes.sizes());
  TORCH_CHECK(codes.min().item<int64_t>() >= 0 && codes.max().item<int64_t>() < options.codebook_size(),
              "image_token_generator: codes outside [0, ", options.codebook_size(), ")");
  const std::string task = prev_frame.defined() ? "video_prediction" : "text_to_image";
  auto p = prefix(text, prev_frame, task);
  TORCH_CHECK(p.size(0) == codes.size(0), "image_token_generator: prefix batch ", p.size(0), " != codes batch ", codes.size(0));
  const int64_t Lp = p.size(1), N = codes.size(1);
  auto x = N > 1 ? at::cat({p, embed_codes(codes.slice(1, 0, N - 1), Lp, 1, task)}, 1) : p;
  auto h = backbone->forward_causal(x);
  return head->forward(h.slice(1, Lp - 1, Lp - 1 + N));
}

at::Tensor ImageTokenGeneratorImpl::loss(const at::Tensor& text, const at::Tensor& codes, const at::Tensor& prev_frame) {
  auto logits = forward(text, codes, prev_frame);
  return at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), codes.reshape({-1}));
}

at::Tensor ImageTokenGeneratorImpl::sample(const at::Tensor& logits_in, const SamplingOptions& s, at::Generator& gen) const {
  auto logits = logits_in.to(at::kFloat);
  if (s.cfg()) {
    auto c = logits.slice(0, 0, logits.size(0), 2), u = logits.slice(0, 1, logits.size(0), 2);
    logits = u + s.cfg_scale() * (c - u);
  }
  if (s.temperature() <= 0.0) return logits.argmax(-1);
  logits = logits / s.temperature();
  const int64_t K = logits.size(-1);
  if (s.top_k() > 0 && s.top_k() < K) {
    auto kth = std::get<0>(logits.topk(s.top_k(), -1)).select(-1, s.top_k() - 1).unsqueeze(-1);
    logits = logits.masked_fill(logits < kth, -std::numeric_limits<float>::infinity());
  }
  if (s.top_p() < 1.0) {
    auto [sorted, idx] = logits.sort(-1, /*descending=*/true);
    auto cum = sorted.softmax(-1).cumsum(-1);
    // drop a token when the mass before it already reaches top_p (the first token always stays)
    auto drop = (cum - sorted.softmax(-1)) >= s.top_p();
    auto mask = at::zeros_like(drop).scatter(-1, idx, drop);
    logits = logits.masked_fill(mask, -std::numeric_limits<float>::infinity());
  }
  return at::multinomial(logits.softmax(-1), 1, false, gen).squeeze(-1);
}

at::Tensor ImageTokenGeneratorImpl::run(const at::Tensor& text, const at::Tensor& prev_frame, const std::string& task,
                                        const SamplingOptions& s, const at::Tensor& uncond_text) {
  TORCH_CHECK(s.num_tokens() > 0 && s.samples_per_prompt() > 0, "image_token_generator: num_tokens and samples_per_prompt must be > 0");
  TORCH_CHECK(s.top_p() > 0.0 && s.top_p() <= 1.0, "image_token_generator: top_p must be in (0, 1], got ", s.top_p());
  TORCH_CHECK(s.top_k() >= 0, "image_token_generator: top_k must be >= 0");
  const int64_t S = s.samples_per_prompt();
  at::Tensor t = text.defined() && text.numel() > 0 ? text.repeat_interleave(S, 0) : at::Tensor();
  at::Tensor f = prev_frame.defined() ? prev_frame.repeat_interleave(S, 0) : at::Tensor();
  if (s.cfg()) {
    TORCH_CHECK(t.defined(), "image_token_generator: classifier-free guidance needs a text prompt");
    // rows: cond0, uncond0, cond1, uncond1, ...; unconditional rows keep the frame and drop the text
    at::Tensor u;
    if (at::isFloatingType(t.scalar_type())) {
      TORCH_CHECK(uncond_text.defined() && uncond_text.dim() == 3 && uncond_text.size(0) == 1 &&
                      uncond_text.size(1) == t.size(1) && uncond_text.size(2) == t.size(2),
                  "image_token_generator: guidance with an embedded prompt [B, ", t.size(1), ", ", t.size(2),
                  "] needs its unconditional embedding [1, ", t.size(1), ", ", t.size(2), "]");
      u = uncond_text.to(t.scalar_type()).expand_as(t);
    } else {
      u = uncond_prompt(t);
    }
    auto shape = t.sizes().vec();
    shape[0] = -1;
    t = at::stack({t, u}, 1).reshape(shape);
    if (f.defined()) f = f.repeat_interleave(2, 0);
  }
  const int64_t N = s.num_tokens();
  at::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(s.seed());
  auto x = prefix(t, f, task);
  const int64_t R = x.size(0), Lp = x.size(1), B = s.cfg() ? R / 2 : R;
  TORCH_CHECK(Lp + N - 1 <= options.max_positions(), "image_token_generator: ", Lp + N - 1,
              " positions exceed max_positions ", options.max_positions());
  auto out = at::empty({B, N}, at::TensorOptions().dtype(at::kLong));
  CausalKVCache cache;
  at::Tensor seq = x;
  at::Tensor last = s.use_cache() ? backbone->forward_step(x, cache).select(1, Lp - 1)
                                  : backbone->forward_causal(x).select(1, Lp - 1);
  for (int64_t i = 0; i < N; ++i) {
    auto tok = sample(head->forward(last).cpu(), s, gen);  // [B]
    out.select(1, i).copy_(tok);
    if (i + 1 == N) break;
    auto rows = (s.cfg() ? tok.repeat_interleave(2) : tok).to(x.device()).unsqueeze(1);  // [R, 1]
    auto e = embed_codes(rows, Lp + i, i + 1, task);
    if (s.use_cache()) {
      last = backbone->forward_step(e, cache).select(1, 0);
    } else {
      seq = at::cat({seq, e}, 1);
      last = backbone->forward_causal(seq).select(1, -1);
    }
  }
  return out.to(x.device());
}

at::Tensor ImageTokenGeneratorImpl::uncond_prompt(const at::Tensor& text) const {
  return at::full_like(text, options.uncond_token());
}

at::Tensor ImageTokenGeneratorImpl::generate(const at::Tensor& text, const SamplingOptions& sampling,
                                             const at::Tensor& uncond_text) {
  TORCH_CHECK(text.defined() && (text.dim() == 2 || (text.dim() == 3 && at::isFloatingType(text.scalar_type()))) &&
                  text.numel() > 0,
              "image_token_generator: generate needs text [P, Lt] (ids) or [P, Lt, dim] (embedded)");
  return run(text, {}, "text_to_image", sampling, uncond_text);
}

at::Tensor ImageTokenGeneratorImpl::predict_next_frame(const at::Tensor& frame_codes, const at::Tensor& text,
                                                       SamplingOptions sampling) {
  TORCH_CHECK(frame_codes.defined() && frame_codes.dim() == 2, "image_token_generator: frame codes must be [B, N]");
  sampling.num_tokens(frame_codes.size(1));
  return run(text, frame_codes, "video_prediction", sampling);
}

}  // namespace janus
