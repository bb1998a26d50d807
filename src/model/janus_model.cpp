#include "janus/model/janus_model.h"

#include <algorithm>
#include <any>
#include <cmath>
#include <limits>

#include <ATen/ATen.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/normalization.h>

#include "janus/core/error.h"
#include "janus/router/freeze.h"

namespace janus {
namespace {

// Pads [B, L, D] (and its key mask) at the end to a multiple of `m`: the attention kernels work on whole blocks.
std::pair<at::Tensor, at::Tensor> pad_tokens(const at::Tensor& x, const at::Tensor& mask, int64_t m) {
  const int64_t L = x.size(1);
  const int64_t pad = (m - L % m) % m;
  if (pad == 0) return {x, mask};
  auto px = at::cat({x, at::zeros({x.size(0), pad, x.size(2)}, x.options())}, 1);
  auto pm = at::cat({mask, at::zeros({mask.size(0), pad}, mask.options())}, 1);
  return {px, pm};
}

DualStreamFusionOptions block_options(const JanusModelOptions& o, bool causal) {
  return DualStreamFusionOptions(o.dim, o.fusion_heads)
      .causal(causal)
      .block_size(o.block_size)
      .bucket_size(o.block_size)
      .density(o.density)
      .n_hashes(o.n_hashes)
      .dense(o.fusion_dense);
}

at::Tensor masked_mean_ce(const at::Tensor& logits, const at::Tensor& targets, const at::Tensor& keep) {
  // logits [B, T, V], targets [B, T], keep [B, T] bool
  const auto flat_t = at::where(keep, targets, at::full_like(targets, -100));
  return at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), flat_t.reshape({-1}), {}, at::Reduction::Mean,
                                -100);
}

// Every token of tokens [B, N, D] valid: a [B, N] bool mask of ones (image segments, unpadded sequences).
at::Tensor all_valid(const at::Tensor& tokens) {
  return at::ones({tokens.size(0), tokens.size(1)}, tokens.options().dtype(at::kBool));
}

}  // namespace

// ---- FusionBackbone ----------------------------------------------------------------------------------------------
FusionBackboneImpl::FusionBackboneImpl(const FusionTransformerOptions& options) {
  TORCH_CHECK(options.block().causal(), "fusion_backbone: the generation backbone must be causal");
  net = register_module("fusion", FusionTransformer(options));
}

at::Tensor FusionBackboneImpl::forward_causal(const at::Tensor& x) {
  const int64_t m = 2 * std::max(net->options.block().block_size(), net->options.block().bucket_size());
  auto [px, pm] = pad_tokens(x, all_valid(x), m);  // causal: padding at the end cannot change earlier positions
  return net->forward(px).slice(1, 0, x.size(1));
}

at::Tensor FusionBackboneImpl::forward_step(const at::Tensor& x, CausalKVCache& cache) {
  if (!cache.state.has_value()) cache.state = net->new_cache();
  auto& fc = std::any_cast<KVCache&>(cache.state);
  auto out = net->forward_step(x, fc);
  cache.length = fc.length();
  return out;
}

// ---- CaptionLM ----------------------------------------------------------------------------------------------------
CaptionLMImpl::CaptionLMImpl(int64_t vocab, int64_t max_positions, const FusionTransformerOptions& o) {
  const int64_t D = o.block().dim();
  text_embed = register_module("text_embed", torch::nn::Embedding(vocab, D));
  pos_embed = register_parameter("pos_embed", at::zeros({max_positions, D}));
  backbone = register_module("backbone", std::make_shared<FusionBackboneImpl>(o));
  torch::NoGradGuard no_grad;
  torch::nn::init::normal_(text_embed->weight, 0.0, 0.02);  // as image_gen's (ImageTokenGenerator)
  torch::nn::init::normal_(pos_embed, 0.0, 0.02);
}

// ---- JanusModel --------------------------------------------------------------------------------------------------
JanusModelImpl::JanusModelImpl(const JanusModelOptions& options_) : options(options_) { reset(); }

void JanusModelImpl::reset() {
  options.validate();
  const auto& o = options;
  const int64_t D = o.dim, Dv = o.vision.dim(), V = o.text.vocab_size();
  vision = register_module("vision", VisionEncoder(o.vision));
  text = register_module("text", TextEncoder(o.text));
  router = register_module("router", DynamicRouter(DynamicRouterOptions(Dv, D).shared(o.router_shared)));
  if (o.adapter_bottleneck > 0) adapter = register_module("adapter", Adapter(AdapterOptions(D, o.adapter_bottleneck)));
  FusionTransformerOptions fo(D, o.fusion_heads, o.fusion_depth);
  fo.block(block_options(o, /*causal=*/false));
  fusion = register_module("fusion", FusionTransformer(fo));
  cls_token = register_parameter("cls_token", at::zeros({1, 1, D}));
  type_embed = register_parameter("type_embed", at::zeros({3, D}));
  const int64_t g = vision->grid_size(), P = vision->num_prefix_tokens();
  if (o.image_pos == "sincos") image_pos = register_parameter("image_pos", at::zeros({P + g * g, D}));
  if (o.image_local_tokens) local_proj = register_module("local_proj", torch::nn::Linear(Dv, D));
  vision_proj =
      register_module("vision_proj", torch::nn::Linear(torch::nn::LinearOptions(Dv, o.embed_dim).bias(false)));
  text_proj =
      register_module("text_proj", torch::nn::Linear(torch::nn::LinearOptions(o.text.dim(), o.embed_dim).bias(false)));
  logit_scale = register_parameter("logit_scale", at::full({}, std::log(1.0 / 0.07)));
  itm_head = register_module("itm_head", torch::nn::Linear(D, 2));
  if (o.nlvr2_head == "pair") {
    nlvr2_pair_head = register_module("nlvr2_pair_head",
                                      torch::nn::Sequential(torch::nn::Linear(2 * D, 2 * D),
                                                            torch::nn::LayerNorm(torch::nn::LayerNormOptions({2 * D})),
                                                            torch::nn::GELU(), torch::nn::Linear(2 * D, 2)));
  } else {
    nlvr2_head = register_module("nlvr2_head", torch::nn::Linear(D, 2));
  }
  if (o.num_answers > 0) vqa_head = register_module("vqa_head", torch::nn::Linear(D, o.num_answers));
  if (o.num_classes > 0) cls_head = register_module("cls_head", torch::nn::Linear(Dv, o.num_classes));
  mask_token = register_parameter("mask_token", at::zeros({1, 1, Dv}));
  const int64_t p = o.vision.patch_size();
  simmim_head = register_module("simmim_head", torch::nn::Linear(Dv, p * p * o.vision.in_chans()));
  vq = register_module("vq", VQVAE(o.vq));
  FusionTransformerOptions co(D, o.fusion_heads, o.causal_depth);
  co.block(block_options(o, /*causal=*/true));
  auto backbone = std::make_shared<FusionBackboneImpl>(co);
  // the VQ codes' raster side (code_tokens() is a square number: image_size / downsample, squared)
  const auto code_grid = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(o.code_tokens()))));
  image_gen = register_module("image_gen", ImageTokenGenerator(ImageTokenGeneratorOptions(V, o.vq.codebook_size())
                                                                   .dim(D)
                                                                   .heads(o.fusion_heads)
                                                                   .depth(o.causal_depth)
                                                                   .max_positions(o.max_positions)
                                                                   .code_grid(o.gen_code_pos == "2d" ? code_grid : 0),
                                                               backbone));
  if (o.caption_decoder == "own") caption_lm = register_module("caption_lm", CaptionLM(V, o.max_positions, co));
  lm_bias = register_parameter("lm_bias", at::zeros({V}));
  torch::NoGradGuard no_grad;
  torch::nn::init::normal_(cls_token, 0.0, 0.02);
  torch::nn::init::normal_(type_embed, 0.0, 0.02);
  torch::nn::init::normal_(mask_token, 0.0, 0.02);
  if (image_pos.defined()) {
    image_pos.slice(0, P).copy_(sincos_2d_position_table(g, D));
  }
  if (o.gen_text == "encoder") {  // last, so the other parameters draw the same initial values with or without it
    gen_text_norm = register_module("gen_text_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({D})));
    gen_text_proj = register_module("gen_text_proj", torch::nn::Linear(D, D));
  }
}

at::Tensor JanusModelImpl::image_tokens(const at::Tensor& images) {
  std::pair<int64_t, int64_t> grid;
  const auto patches = vision->patchify(images, &grid);  // [B, gh*gw, Dv], each from its own patch only
  auto t = router->forward(vision->encode(vision->add_positions(patches, grid)).tokens, Modality::kImage);
  if (adapter) t = adapter->forward(t);
  if (!image_pos.defined()) return t;
  const int64_t P = vision->num_prefix_tokens();
  const auto pos = resample_position_table(image_pos.unsqueeze(0), P, grid.first, grid.second);
  t = t + pos;
  if (!local_proj) return t;
  return at::cat({t, local_proj->forward(patches) + pos.slice(1, P)}, 1);
}

at::Tensor JanusModelImpl::text_tokens(const TextInput& t) {
  auto r = router->forward(text->forward(t.ids, t.mask).tokens, Modality::kText);
  return adapter ? adapter->forward(r) : r;
}

at::Tensor JanusModelImpl::fuse_cls(const std::vector<at::Tensor>& segments, const std::vector<at::Tensor>& masks) {
  const int64_t B = segments.front().size(0);
  std::vector<at::Tensor> xs{cls_token.expand({B, 1, options.dim})};
  std::vector<at::Tensor> ms{at::ones({B, 1}, segments.front().options().dtype(at::kBool))};
  for (std::size_t i = 0; i < segments.size(); ++i) {
    xs.push_back(segments[i] + type_embed[static_cast<int64_t>(std::min<std::size_t>(i, 2))]);
    ms.push_back(masks[i].to(at::kBool));
  }
  auto [x, m] = pad_tokens(at::cat(xs, 1), at::cat(ms, 1), 2 * options.block_size);
  return fusion->forward(x, m).select(1, 0);
}

namespace {
at::Tensor l2_normalize(const at::Tensor& x) { return x / x.norm(2, {-1}, /*keepdim=*/true).clamp_min(1e-12); }
}  // namespace

at::Tensor JanusModelImpl::embed_images(const at::Tensor& images) {
  auto out = vision->forward(images);
  if (options.embed_pool == "mean") {
    const int64_t prefix = options.vision.class_token() ? 1 : 0;
    return l2_normalize(vision_proj->forward(out.tokens.slice(1, prefix).mean(1)));
  }
  return l2_normalize(vision_proj->forward(out.pooled));
}

at::Tensor JanusModelImpl::embed_texts(const TextInput& t) {
  auto out = text->forward(t.ids, t.mask);
  if (options.embed_pool == "mean") {
    const auto m = t.mask.to(out.tokens.scalar_type()).unsqueeze(-1);
    return l2_normalize(text_proj->forward((out.tokens * m).sum(1) / m.sum(1).clamp_min(1.0)));
  }
  return l2_normalize(text_proj->forward(out.pooled));
}

ContrastiveOutput JanusModelImpl::contrastive(const at::Tensor& images, const TextInput& t) {
  ContrastiveOutput out;
  out.image_embeds = embed_images(images);
  out.text_embeds = embed_texts(t);
  out.logit_scale = logit_scale.clamp_max(std::log(100.0)).exp();
  const auto logits = out.logit_scale * at::matmul(out.image_embeds, out.text_embeds.t());
  const auto labels = at::arange(logits.size(0), logits.options().dtype(at::kLong));
  out.loss = 0.5 * (at::cross_entropy_loss(logits, labels) + at::cross_entropy_loss(logits.t(), labels));
  return out;
}

TaskOutput JanusModelImpl::itm(const at::Tensor& images, const TextInput& t, const at::Tensor& labels) {
  const auto img = image_tokens(images);
  const auto txt = text_tokens(t);
  TaskOutput out;
  out.logits = itm_head->forward(fuse_cls({img, txt}, {all_valid(img), t.mask}));
  if (labels.defined()) out.loss = at::cross_entropy_loss(out.logits, labels);
  return out;
}

torch::nn::Embedding& JanusModelImpl::lm_embed() { return caption_lm ? caption_lm->text_embed : image_gen->text_embed; }
const at::Tensor& JanusModelImpl::lm_pos() { return caption_lm ? caption_lm->pos_embed : image_gen->pos_embed; }
CausalBackbone& JanusModelImpl::lm_backbone() {
  return caption_lm ? static_cast<CausalBackbone&>(*caption_lm->backbone) : *image_gen->backbone;
}

at::Tensor JanusModelImpl::lm_logits(const at::Tensor& prefix, const at::Tensor& ids) {
  const int64_t N = prefix.size(1), L = ids.size(1);
  TORCH_CHECK(N + L <= options.max_positions, "janus_model: image tokens ", N, " + text ", L, " exceed max_positions ",
              options.max_positions);
  auto seq = at::cat({prefix, lm_embed()->forward(ids)}, 1) + lm_pos().slice(0, 0, N + L);
  auto h = lm_backbone().forward_causal(seq);
  return at::linear(h.slice(1, N, N + L - 1), lm_embed()->weight, lm_bias);
}

TaskOutput JanusModelImpl::caption(const at::Tensor& images, const TextInput& t) {
  TORCH_CHECK(t.ids.size(1) >= 2, "janus_model: captions need at least bos + one token");
  TaskOutput out;
  out.logits = lm_logits(image_tokens(images), t.ids);
  out.loss = masked_mean_ce(out.logits, t.ids.slice(1, 1), t.mask.slice(1, 1).to(at::kBool));
  return out;
}

at::Tensor JanusModelImpl::generate_caption(const at::Tensor& images, int64_t bos, int64_t eos, int64_t max_len) {
  torch::NoGradGuard no_grad;
  const auto prefix = image_tokens(images);
  const int64_t B = prefix.size(0), N = prefix.size(1);
  max_len = std::min(max_len, options.max_positions - N);
  auto ids = at::full({B, 1}, bos, at::TensorOptions().dtype(at::kLong).device(prefix.device()));
  CausalKVCache cache;
  auto x = at::cat({prefix, lm_embed()->forward(ids)}, 1) + lm_pos().slice(0, 0, N + 1);
  auto h = lm_backbone().forward_step(x, cache).select(1, -1);
  auto done = at::zeros({B}, ids.options().dtype(at::kBool));
  for (int64_t t = 1; t < max_len; ++t) {
    auto next = at::linear(h, lm_embed()->weight, lm_bias).argmax(-1);
    next = at::where(done, at::full_like(next, eos), next);
    ids = at::cat({ids, next.unsqueeze(1)}, 1);
    done = done | (next == eos);
    if (done.all().item<bool>()) break;
    auto e = lm_embed()->forward(next.unsqueeze(1)) + lm_pos().slice(0, N + t, N + t + 1);
    h = lm_backbone().forward_step(e, cache).select(1, -1);
  }
  return ids;
}

namespace {
// Selects rows `idx` of every cached key/value (the built-in CausalTransformer's and the fusion stack's).
void reorder_cache(CausalKVCache& cache, const at::Tensor& idx) {
  for (auto& k : cache.keys) k = k.index_select(0, idx);
  for (auto& v : cache.values) v = v.index_select(0, idx);
  if (auto* fc = std::any_cast<KVCache>(&cache.state)) {
    for (auto& l : fc->layers) {
      for (at::Tensor* t : {&l.sparse_k, &l.sparse_v, &l.lsh_k, &l.lsh_v}) {
        if (t->defined()) *t = t->index_select(0, idx);
      }
    }
  }
}
}  // namespace

at::Tensor JanusModelImpl::beam_generate(const at::Tensor& images, const at::Tensor& prompt, int64_t eos,
                                         int64_t max_new, int64_t beam, double length_penalty) {
  TORCH_CHECK(beam >= 1, "beam_generate: beam size must be >= 1, got ", beam);
  TORCH_CHECK(prompt.dim() == 2 && prompt.size(1) >= 1 && prompt.size(0) == images.size(0),
              "beam_generate: prompt must be [B, P>=1] with B = ", images.size(0), " images, got ", prompt.sizes());
  torch::NoGradGuard no_grad;
  const auto prefix = image_tokens(images);
  const int64_t B = prefix.size(0), N = prefix.size(1), P = prompt.size(1), K = beam;
  max_new = std::min(max_new, options.max_positions - N - P);
  const auto long_opts = at::TensorOptions().dtype(at::kLong).device(prefix.device());
  if (max_new <= 0) return at::empty({B, 0}, long_opts);
  auto embed = lm_embed();
  const auto& pos = lm_pos();
  CausalKVCache cache;
  auto x = at::cat({prefix.repeat_interleave(K, 0), embed->forward(prompt.to(long_opts).repeat_interleave(K, 0))}, 1) +
           pos.slice(0, 0, N + P);
  auto h = lm_backbone().forward_step(x, cache).select(1, -1);  // [B*K, D]

  const double neg_inf = -std::numeric_limits<double>::infinity();
  std::vector<double> scores(static_cast<size_t>(B * K), neg_inf);           // running sum of log p per live beam
  for (int64_t b = 0; b < B; ++b) scores[static_cast<size_t>(b * K)] = 0.0;  // beams start identical: keep one
  std::vector<std::vector<int64_t>> seqs(static_cast<size_t>(B * K));
  struct Hyp {
    double score;
    std::vector<int64_t> ids;
  };
  std::vector<std::vector<Hyp>> finished(static_cast<size_t>(B));
  std::vector<bool> done(static_cast<size_t>(B), false);
  const auto normalised = [&](double s, size_t len) {
    return s / std::pow(static_cast<double>(std::max<size_t>(len, 1)), length_penalty);
  };
  for (int64_t t = 0; t < max_new; ++t) {
    const auto logp = at::log_softmax(at::linear(h, embed->weight, lm_bias).to(at::kFloat), -1);
    const int64_t V = logp.size(1);
    const auto total =
        (logp + at::tensor(scores, at::kDouble).to(logp.device()).to(at::kFloat).unsqueeze(1)).view({B, K * V});
    const auto top = total.topk(std::min<int64_t>(2 * K, K * V), 1);
    const auto vals = std::get<0>(top).to(at::kCPU).to(at::kDouble).contiguous();
    const auto idx = std::get<1>(top).to(at::kCPU).contiguous();
    const auto* pv = vals.data_ptr<double>();
    const auto* pi = idx.data_ptr<int64_t>();
    const int64_t C = vals.size(1);
    std::vector<int64_t> src(static_cast<size_t>(B * K)), tok(static_cast<size_t>(B * K));
    std::vector<double> next_scores(static_cast<size_t>(B * K), neg_inf);
    for (int64_t b = 0; b < B; ++b) {
      int64_t live = 0;
      if (!done[static_cast<size_t>(b)]) {
        for (int64_t c = 0; c < C && live < K; ++c) {
          const double v = pv[b * C + c];
          if (v == neg_inf) break;
          const int64_t row = b * K + pi[b * C + c] / V, token = pi[b * C + c] % V;
          if (token == eos) {
            if (c < K) {  // an ended hypothesis counts only when it ranks among the top `beam`
              auto ids = seqs[static_cast<size_t>(row)];
              ids.push_back(eos);
              const size_t len = ids.size();
              finished[static_cast<size_t>(b)].push_back({normalised(v, len), std::move(ids)});
            }
            continue;
          }
          src[static_cast<size_t>(b * K + live)] = row;
          tok[static_cast<size_t>(b * K + live)] = token;
          next_scores[static_cast<size_t>(b * K + live)] = v;
          ++live;
        }
        if (static_cast<int64_t>(finished[static_cast<size_t>(b)].size()) >= K) done[static_cast<size_t>(b)] = true;
      }
      for (; live < K; ++live) {  // finished images (or no candidates left): dead rows that keep shapes
        src[static_cast<size_t>(b * K + live)] = b * K;
        tok[static_cast<size_t>(b * K + live)] = eos;
      }
    }
    std::vector<std::vector<int64_t>> next_seqs(static_cast<size_t>(B * K));
    for (size_t r = 0; r < next_seqs.size(); ++r) {
      next_seqs[r] = seqs[static_cast<size_t>(src[r])];
      next_seqs[r].push_back(tok[r]);
    }
    seqs = std::move(next_seqs);
    scores = std::move(next_scores);
    if (std::all_of(done.begin(), done.end(), [](bool d) { return d; }) || t + 1 == max_new) break;
    reorder_cache(cache, at::tensor(src, at::kLong).to(prefix.device()));
    const auto e = embed->forward(at::tensor(tok, at::kLong).to(prefix.device()).unsqueeze(1)) +
                   pos.slice(0, N + P + t, N + P + t + 1);
    h = lm_backbone().forward_step(e, cache).select(1, -1);
  }
  // Images that ran out of steps: their live beams compete with the ended ones.
  std::vector<std::vector<int64_t>> best(static_cast<size_t>(B));
  size_t longest = 0;
  for (int64_t b = 0; b < B; ++b) {
    auto& fin = finished[static_cast<size_t>(b)];
    if (!done[static_cast<size_t>(b)]) {
      for (int64_t k = 0; k < K; ++k) {
        const auto r = static_cast<size_t>(b * K + k);
        if (scores[r] != neg_inf) fin.push_back({normalised(scores[r], seqs[r].size()), seqs[r]});
      }
    }
    TORCH_CHECK(!fin.empty(), "beam_generate: no hypothesis for image ", b);
    // First of the best: stable under ties, so beam 1 keeps the greedy choice.
    const auto it =
        std::max_element(fin.begin(), fin.end(), [](const Hyp& a, const Hyp& c) { return a.score < c.score; });
    best[static_cast<size_t>(b)] = it->ids;
    longest = std::max(longest, it->ids.size());
  }
  auto out = at::full({B, static_cast<int64_t>(longest)}, eos, at::kLong);
  for (int64_t b = 0; b < B; ++b) {
    const auto& ids = best[static_cast<size_t>(b)];
    for (size_t i = 0; i < ids.size(); ++i) out[b][static_cast<int64_t>(i)] = ids[i];
  }
  return out.to(prefix.device());
}

at::Tensor JanusModelImpl::beam_search_caption(const at::Tensor& images, int64_t bos, int64_t eos, int64_t max_len,
                                               int64_t beam, double length_penalty) {
  const int64_t B = images.size(0);
  const auto start = at::full({B, 1}, bos, at::TensorOptions().dtype(at::kLong).device(images.device()));
  const auto rest = beam_generate(images, start, eos, max_len - 1, beam, length_penalty);
  return at::cat({start, rest.to(start.device())}, 1);
}

TaskOutput JanusModelImpl::vqa(const at::Tensor& images, const TextInput& q, const at::Tensor& targets) {
  TORCH_CHECK(vqa_head, "janus_model: the VQA classification head needs model num_answers > 0");
  const auto img = image_tokens(images);
  TaskOutput out;
  out.logits = vqa_head->forward(fuse_cls({img, text_tokens(q)}, {all_valid(img), q.mask}));
  if (targets.defined()) {
    out.loss = at::binary_cross_entropy_with_logits(out.logits, targets.to(out.logits.scalar_type())) * targets.size(1);
  }
  return out;
}

TaskOutput JanusModelImpl::vqa_generate(const at::Tensor& images, const TextInput& q, const TextInput& a) {
  const auto ids = at::cat({q.ids, a.ids}, 1);
  TaskOutput out;
  out.logits = lm_logits(image_tokens(images), ids);
  // Loss on answer tokens only: positions of a.ids within ids, shifted by one for next-token prediction.
  auto keep = at::cat({at::zeros_like(q.mask, q.mask.options().dtype(at::kBool)), a.mask.to(at::kBool)}, 1).slice(1, 1);
  out.loss = masked_mean_ce(out.logits, ids.slice(1, 1), keep);
  return out;
}

TaskOutput JanusModelImpl::nlvr2(const at::Tensor& image_a, const at::Tensor& image_b, const TextInput& t,
                                 const at::Tensor& labels) {
  TORCH_CHECK(image_a.size(0) == image_b.size(0) && image_a.size(0) == t.ids.size(0),
              "janus_model: nlvr2 needs as many left images, right images and statements, got ", image_a.size(0), ", ",
              image_b.size(0), " and ", t.ids.size(0));
  TaskOutput out;
  if (nlvr2_pair_head) {
    // Both pairs in one batch: rows [0, B) are (left, text), rows [B, 2B) (right, text).
    const int64_t B = image_a.size(0);
    const auto img = image_tokens(at::cat({image_a, image_b}, 0));
    const auto txt = text_tokens(t).repeat({2, 1, 1});
    const auto cls = fuse_cls({img, txt}, {all_valid(img), t.mask.repeat({2, 1})});
    out.logits = nlvr2_pair_head->forward(at::cat({cls.slice(0, 0, B), cls.slice(0, B)}, -1));
  } else {
    const auto a = image_tokens(image_a), b = image_tokens(image_b);
    out.logits = nlvr2_head->forward(fuse_cls({a, b, text_tokens(t)}, {all_valid(a), all_valid(b), t.mask}));
  }
  if (labels.defined()) out.loss = at::cross_entropy_loss(out.logits, labels);
  return out;
}

TaskOutput JanusModelImpl::classify(const at::Tensor& images, const at::Tensor& labels) {
  TORCH_CHECK(cls_head, "janus_model: classification needs model num_classes > 0");
  TaskOutput out;
  out.logits = cls_head->forward(vision->forward(images).pooled);
  if (labels.defined()) out.loss = at::cross_entropy_loss(out.logits, labels);
  return out;
}

int64_t JanusModelImpl::gen_prompt_limit(int64_t max_text_len) const {
  return options.gen_prompt_len > 0 ? std::min(max_text_len, options.gen_prompt_len) : max_text_len;
}

at::Tensor JanusModelImpl::gen_prompt(const at::Tensor& ids) const {
  const int64_t P = options.gen_prompt_len;
  if (P <= 0 || !ids.defined()) return ids;
  TORCH_CHECK(ids.dim() == 2, "janus_model: prompt ids must be [B, L], got ", ids.sizes());
  TORCH_CHECK(ids.size(1) <= P, "janus_model: prompt of ", ids.size(1), " tokens exceeds gen_prompt_len ", P);
  if (ids.size(1) == P) return ids;
  return at::cat({ids, at::full({ids.size(0), P - ids.size(1)}, int64_t{0} /* SpecialTokens::pad */, ids.options())},
                 1);
}

at::Tensor JanusModelImpl::gen_text_input(const at::Tensor& ids) {
  if (options.gen_text != "encoder") return ids;
  TORCH_CHECK(ids.defined() && ids.dim() == 2 && ids.scalar_type() == at::kLong,
              "janus_model: prompt ids must be [B, L] int64, got ", ids.sizes());
  const auto real = ids.ne(0);  // SpecialTokens::pad; also the unconditional prompt's token
  // an all-pad row (unconditional) would leave the encoder's attention nothing to attend to: encode it unmasked,
  // then zero it like every pad position
  const auto any = real.any(1, /*keepdim=*/true);
  const auto mask = at::logical_or(real, any.logical_not());
  auto t = text_tokens(TextInput{ids, mask.to(at::kLong)});
  t = gen_text_proj->forward(gen_text_norm->forward(t));
  return t * real.unsqueeze(-1).to(t.scalar_type());
}

TaskOutput JanusModelImpl::image_code_logits(const at::Tensor& text_ids, const at::Tensor& codes) {
  TaskOutput out;
  out.logits = image_gen->forward(gen_text_input(gen_prompt(text_ids)), codes);
  out.loss = at::cross_entropy_loss(out.logits.reshape({-1, out.logits.size(-1)}), codes.reshape({-1}));
  return out;
}

TaskOutput JanusModelImpl::video_next_codes(const at::Tensor& text_ids, const at::Tensor& codes_t,
                                            const at::Tensor& codes_next) {
  TaskOutput out;
  out.logits = image_gen->forward(text_ids, codes_next, codes_t);
  out.loss = at::cross_entropy_loss(out.logits.reshape({-1, out.logits.size(-1)}), codes_next.reshape({-1}));
  return out;
}

TaskOutput JanusModelImpl::simmim(const at::Tensor& images, at::Generator& gen) {
  const int64_t B = images.size(0), C = images.size(1), H = images.size(2), W = images.size(3);
  const int64_t p = options.vision.patch_size();
  // Mask patch: 32 px at 224, scaled with the image size, as a whole number of model patches (>= 1).
  const double scaled = static_cast<double>(options.simmim_mask_patch) * static_cast<double>(H) / 224.0;
  const int64_t mp = std::max<int64_t>(1, std::llround(scaled / static_cast<double>(p))) * p;
  TORCH_CHECK(H % mp == 0 && W % mp == 0, "simmim: image ", H, "x", W, " is not a multiple of the mask patch ", mp);
  const int64_t mh = H / mp, mw = W / mp, n = mh * mw;
  const int64_t masked = static_cast<int64_t>(std::ceil(0.6 * static_cast<double>(n)));
  auto scores = at::rand({B, n}, gen, at::TensorOptions().dtype(at::kFloat));
  auto order = scores.argsort(/*dim=*/1, /*descending=*/false);
  auto m = at::zeros({B, n}, at::kFloat).scatter_(1, order.slice(1, 0, masked), 1.0).to(images.device());
  const int64_t s = mp / p;  // model patches per mask patch
  auto patch_mask = m.view({B, mh, 1, mw, 1}).expand({B, mh, s, mw, s}).reshape({B, mh * s * mw * s, 1});
  const int64_t gh = H / p, gw = W / p;  // H, W are multiples of mp, itself a multiple of p
  auto pixel_mask = patch_mask.view({B, 1, gh, 1, gw, 1}).expand({B, 1, gh, p, gw, p}).reshape({B, 1, H, W});
  std::pair<int64_t, int64_t> grid;
  // A conv stem's 3x3 receptive fields reach into neighbouring patches: blank the masked pixels themselves (to the
  // normalised mean, 0), or the visible tokens would carry the answer.
  auto tokens = vision->patchify(
      vision->patch_embed->mixes_patches() ? images * (1 - pixel_mask.to(images.dtype())) : images, &grid);
  tokens = tokens * (1 - patch_mask) + mask_token.to(tokens.dtype()) * patch_mask;
  auto enc = vision->encode(vision->add_positions(tokens, grid)).tokens.slice(1, vision->num_prefix_tokens());
  auto pix = simmim_head->forward(enc);  // [B, gh*gw, p*p*C]
  auto rec = pix.view({B, gh, gw, p, p, C}).permute({0, 5, 1, 3, 2, 4}).reshape({B, C, gh * p, gw * p});
  TaskOutput out;
  out.loss = ((images - rec).abs() * pixel_mask).sum() / (pixel_mask.sum() + 1e-5) / static_cast<double>(C);
  out.logits = rec;
  out.extras["mask"] = pixel_mask;
  out.extras["reconstruction"] = rec;
  return out;
}

TaskOutput JanusModelImpl::mlm(const TextInput& t, int64_t mask_id, int64_t num_special, at::Generator& gen) {
  const auto ids = t.ids;
  const int64_t V = options.text.vocab_size();
  auto candidates = t.mask.to(at::kBool) & (ids >= num_special);
  auto r = at::rand(ids.sizes(), gen, at::TensorOptions().dtype(at::kFloat)).to(ids.device());
  auto selected = candidates & (r < 0.15);
  if (!selected.any().item<bool>() && candidates.any().item<bool>()) {
    // Keep the loss defined for tiny batches: select the candidate with the smallest draw.
    auto masked_r = at::where(candidates, r, at::full_like(r, 2.0));
    selected =
        at::zeros_like(candidates).view({-1}).index_fill_(0, masked_r.view({-1}).argmin(), true).view(ids.sizes());
  }
  auto r2 = at::rand(ids.sizes(), gen, at::TensorOptions().dtype(at::kFloat)).to(ids.device());
  auto random_ids =
      at::randint(num_special, V, ids.sizes(), gen, at::TensorOptions().dtype(at::kLong)).to(ids.device());
  auto inputs = at::where(selected & (r2 < 0.8), at::full_like(ids, mask_id), ids);
  inputs = at::where(selected & (r2 >= 0.8) & (r2 < 0.9), random_ids, inputs);
  auto labels = at::where(selected, ids, at::full_like(ids, -100));
  TaskOutput out;
  out.logits = text->mlm_logits(text->forward(inputs, t.mask).tokens);
  out.loss = at::cross_entropy_loss(out.logits.reshape({-1, V}), labels.reshape({-1}), {}, at::Reduction::Mean, -100);
  out.extras["selected"] = selected;
  return out;
}

VQVAEOutput JanusModelImpl::tokenizer(const at::Tensor& images) { return vq->forward(images); }

at::Tensor JanusModelImpl::generate_images(const at::Tensor& prompt_ids, const SamplingOptions& sampling) {
  torch::NoGradGuard no_grad;
  SamplingOptions s = sampling;
  s.num_tokens(options.code_tokens());
  const auto prompt = gen_text_input(gen_prompt(prompt_ids));
  // an embedded prompt's unconditional rows are all zero (gen_text_input of the all-pad prompt)
  const auto uncond =
      prompt.dim() == 3 ? at::zeros({1, prompt.size(1), prompt.size(2)}, prompt.options()) : at::Tensor();
  auto codes = image_gen->generate(prompt, s, uncond);
  const int64_t g = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(options.code_tokens()))));
  return vq->decode(codes.view({codes.size(0), g, g}));
}

void JanusModelImpl::set_activation_checkpointing(bool on) {
  vision->set_activation_checkpointing(on);
  text->set_activation_checkpointing(on);
  fusion->set_activation_checkpointing(on);
  auto backbone = std::dynamic_pointer_cast<FusionBackboneImpl>(image_gen->backbone);
  TORCH_CHECK(backbone, "janus_model: image_gen.backbone is not the fusion stack");
  backbone->net->set_activation_checkpointing(on);
  if (caption_lm) caption_lm->backbone->net->set_activation_checkpointing(on);
}

bool JanusModelImpl::activation_checkpointing() const { return fusion->activation_checkpointing(); }

std::string describe_model(const JanusModelImpl& model) {
  std::string out = fmt::format("JanusModel flavour '{}'\n", model.options.flavour);
  int64_t total = 0;
  for (const auto& child : model.named_children()) {
    int64_t n = 0;
    for (const auto& p : child.value()->parameters()) n += p.numel();
    total += n;
    const auto rep = parameter_report(*child.value());
    out += fmt::format("  {:<12} {:>14L} params  (trainable {:L}, frozen {:L})\n", child.key(), n, rep.trainable,
                       rep.frozen);
  }
  int64_t own = 0;
  for (const auto& p : model.named_parameters(/*recurse=*/false)) own += p.value().numel();
  total += own;
  out += fmt::format("  {:<12} {:>14L} params\n", "(own)", own);
  out += fmt::format("  {:<12} {:>14L} params; {}\n", "total", total, parameter_report(model).summary());
  return out;
}

}  // namespace janus
