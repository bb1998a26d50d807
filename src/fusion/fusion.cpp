#include "janus/fusion/fusion.h"

#include <cmath>

#include <ATen/ATen.h>

#include "janus/core/checkpoint_fn.h"

namespace janus {

DualStreamFusionImpl::DualStreamFusionImpl(const DualStreamFusionOptions& options_) : options(options_) { reset(); }

void DualStreamFusionImpl::reset() {
  const int64_t D = options.dim(), H = options.num_heads();
  TORCH_CHECK(D > 0 && H > 0 && D % H == 0, "dual_stream_fusion: dim ", D, " must be a positive multiple of num_heads ",
              H);
  TORCH_CHECK(options.mlp_ratio() > 0, "dual_stream_fusion: mlp_ratio must be > 0, got ", options.mlp_ratio());
  TORCH_CHECK(options.chunk() > 0, "dual_stream_fusion: chunk must be > 0, got ", options.chunk());
  auto ln = [&](const char* name) {
    return register_module(name, torch::nn::LayerNorm(torch::nn::LayerNormOptions({D}).eps(options.norm_eps())));
  };
  auto lin = [&](const char* name, int64_t in, int64_t out) {
    return register_module(name, torch::nn::Linear(torch::nn::LinearOptions(in, out)));
  };
  // Registration order fixes the order parameters are initialised in: the dense block keeps the dual-stream one's
  // order minus the generation stream and gate.
  auto norm2_and_mlp = [&] {
    norm2 = ln("norm2");
    mlp = register_module(
        "mlp", Mlp(MlpOptions(D, static_cast<int64_t>(std::llround(D * options.mlp_ratio()))).act(options.act())));
  };
  norm1 = ln("norm1");
  sparse_qkv = lin("sparse_qkv", D, 3 * D);
  sparse_proj = lin("sparse_proj", D, D);
  if (options.dense()) {
    norm2_and_mlp();
    return;
  }
  lsh_qkv = lin("lsh_qkv", D, 2 * D);
  lsh_proj = lin("lsh_proj", D, D);
  gate = lin("gate", 2 * D, D);
  norm2_and_mlp();
  sparse_attn = register_module("sparse_attn", BlockSparseAttention(BlockSparseAttentionOptions()
                                                                        .block_size(options.block_size())
                                                                        .density(options.density())
                                                                        .window(options.window())
                                                                        .num_global(options.num_global())
                                                                        .seed(options.seed())
                                                                        .causal(options.causal())));
  lsh_attn = register_module(
      "lsh_attn",
      LSHAttention(
          LSHAttentionOptions().bucket_size(options.bucket_size()).n_hashes(options.n_hashes()).seed(options.seed())));
}

at::Tensor DualStreamFusionImpl::heads(const at::Tensor& t) const {
  const int64_t H = options.num_heads();
  return t.reshape({t.size(0), t.size(1), H, t.size(2) / H}).transpose(1, 2);
}

at::Tensor DualStreamFusionImpl::merge(const at::Tensor& t) const {
  return t.transpose(1, 2).reshape({t.size(0), t.size(2), t.size(1) * t.size(3)});
}

at::Tensor DualStreamFusionImpl::mix_and_mlp(const at::Tensor& x, const at::Tensor& a, const at::Tensor& b) {
  if (options.dense()) {
    auto y = x + a;
    return y + mlp->forward(norm2->forward(y));
  }
  auto g = at::sigmoid(gate->forward(at::cat({a, b}, -1)));
  last_gate_ = g.detach();
  auto y = x + g * a + (1 - g) * b;
  return y + mlp->forward(norm2->forward(y));
}

at::Tensor DualStreamFusionImpl::forward(const at::Tensor& x, const std::optional<at::Tensor>& key_mask) {
  TORCH_CHECK(x.dim() == 3 && x.size(2) == options.dim(), "dual_stream_fusion: x must be [B, L, ", options.dim(),
              "], got ", x.sizes());
  const int64_t B = x.size(0), L = x.size(1);
  std::optional<at::Tensor> km;
  if (key_mask && key_mask->defined()) {
    TORCH_CHECK(key_mask->dim() == 2 && key_mask->size(0) == B && key_mask->size(1) == L,
                "dual_stream_fusion: key_mask must be [B, L] = [", B, ", ", L, "], got ", key_mask->sizes());
    km = key_mask->to(x.device()).to(at::kBool);
  }
  auto h = norm1->forward(x);

  auto qkv = sparse_qkv->forward(h).chunk(3, -1);
  if (options.dense()) {
    const double scale = 1.0 / std::sqrt(static_cast<double>(options.dim() / options.num_heads()));
    auto a = chunked_attention(heads(qkv[0]), heads(qkv[1]), heads(qkv[2]), km, options.causal(), scale,
                               options.chunk(), options.chunk());
    return mix_and_mlp(x, sparse_proj->forward(merge(a)), at::Tensor());
  }
  auto a = sparse_proj->forward(merge(sparse_attn->forward(heads(qkv[0]), heads(qkv[1]), heads(qkv[2]), km)));

  auto qv = lsh_qkv->forward(h).chunk(2, -1);
  auto qk = heads(qv[0]), v = heads(qv[1]);
  at::Tensor bh;
  if (options.causal()) {
    auto k = qk / qk.norm(2, -1, true).clamp_min(1e-12);
    bh = chunked_attention(qk, k, v, km, true, 1.0 / std::sqrt(static_cast<double>(qk.size(-1))), options.chunk(),
                           options.chunk());
  } else {
    // LSH needs L % (2 * bucket_size) == 0: pad and mask the padding.
    const int64_t step = 2 * options.bucket_size(), Lp = (L + step - 1) / step * step;
    std::optional<at::Tensor> lkm = km;
    if (Lp != L) {
      qk = at::constant_pad_nd(qk, {0, 0, 0, Lp - L});
      v = at::constant_pad_nd(v, {0, 0, 0, Lp - L});
      auto base = km ? *km : at::ones({B, L}, at::TensorOptions().dtype(at::kBool).device(x.device()));
      lkm = at::constant_pad_nd(base, {0, Lp - L}, 0);
    }
    bh = lsh_attn->forward(qk, v, lkm);
    if (Lp != L) bh = bh.narrow(2, 0, L);
  }
  auto b = lsh_proj->forward(merge(bh));
  return mix_and_mlp(x, a, b);
}

at::Tensor DualStreamFusionImpl::forward_step(const at::Tensor& x_new, LayerKVCache& cache) {
  TORCH_CHECK(options.causal(), "dual_stream_fusion: forward_step (KV cache) needs causal = true");
  TORCH_CHECK(x_new.dim() == 3 && x_new.size(2) == options.dim() && x_new.size(1) > 0,
              "dual_stream_fusion: x_new must be [B, T>0, ", options.dim(), "], got ", x_new.sizes());
  const int64_t start = cache.length(), T = x_new.size(1), total = start + T;
  if (start > 0)
    TORCH_CHECK(cache.sparse_k.size(0) == x_new.size(0), "dual_stream_fusion: cache batch ", cache.sparse_k.size(0),
                " != input batch ", x_new.size(0));
  auto h = norm1->forward(x_new);
  auto append = [&](at::Tensor& slot, const at::Tensor& t) { slot = slot.defined() ? at::cat({slot, t}, 2) : t; };

  auto qkv = sparse_qkv->forward(h).chunk(3, -1);
  append(cache.sparse_k, heads(qkv[1]));
  append(cache.sparse_v, heads(qkv[2]));

  // Same masks as the uncached causal forward: key position <= query position, and (understanding stream) the
  // query block's kept key blocks from the prefix-consistent causal layout.
  const auto dev = x_new.device();
  auto lopt = at::TensorOptions().dtype(at::kLong).device(dev);
  auto qpos = at::arange(start, total, lopt).unsqueeze(1);
  auto kpos = at::arange(0, total, lopt).unsqueeze(0);
  auto causal = kpos <= qpos;  // [T, total]
  const double scale = 1.0 / std::sqrt(static_cast<double>(options.dim() / options.num_heads()));
  if (options.dense()) {
    auto a = dense_attention(heads(qkv[0]), cache.sparse_k, cache.sparse_v, causal.view({1, 1, T, total}), scale);
    return mix_and_mlp(x_new, sparse_proj->forward(merge(a)), at::Tensor());
  }
  auto qv = lsh_qkv->forward(h).chunk(2, -1);
  auto qk = heads(qv[0]);
  append(cache.lsh_k, qk / qk.norm(2, -1, true).clamp_min(1e-12));
  append(cache.lsh_v, heads(qv[1]));

  const int64_t bs = options.block_size();
  auto layout = sparse_attn->layout(total).to(dev);
  auto block_ok = layout.index_select(0, at::div(qpos.squeeze(1), bs, "floor"))
                      .index_select(1, at::div(kpos.squeeze(0), bs, "floor"));
  auto a = dense_attention(heads(qkv[0]), cache.sparse_k, cache.sparse_v,
                           causal.logical_and(block_ok).view({1, 1, T, total}), scale);
  auto b = dense_attention(qk, cache.lsh_k, cache.lsh_v, causal.view({1, 1, T, total}), scale);
  return mix_and_mlp(x_new, sparse_proj->forward(merge(a)), lsh_proj->forward(merge(b)));
}

FusionTransformerImpl::FusionTransformerImpl(const FusionTransformerOptions& options_) : options(options_) { reset(); }

void FusionTransformerImpl::reset() {
  TORCH_CHECK(options.depth() > 0, "fusion_transformer: depth must be > 0, got ", options.depth());
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < options.depth(); ++i) {
    auto o = options.block();
    o.seed(options.block().seed() + i);
    blocks->push_back(DualStreamFusion(o));
  }
  norm = register_module(
      "norm",
      torch::nn::LayerNorm(torch::nn::LayerNormOptions({options.block().dim()}).eps(options.block().norm_eps())));
}

at::Tensor FusionTransformerImpl::forward(const at::Tensor& x, const std::optional<at::Tensor>& key_mask) {
  auto y = x;
  const bool ckpt = use_checkpoint(activation_checkpointing_, *this);
  for (size_t i = 0; i < blocks->size(); ++i) {
    auto block = blocks->ptr<DualStreamFusionImpl>(i);
    if (ckpt) {
      // The LSH stream draws fresh rotations each forward: its generator is replayed too.
      std::vector<at::Generator> gens;
      if (!block->options.causal() && !block->options.dense()) gens.push_back(block->lsh_attn->generator());
      y = checkpoint([block, key_mask](const at::Tensor& t) { return block->forward(t, key_mask); }, y,
                     trainable_parameters(*block), gens);
    } else {
      y = block->forward(y, key_mask);
    }
  }
  return norm->forward(y);
}

KVCache FusionTransformerImpl::new_cache() const {
  KVCache c;
  c.layers.resize(static_cast<size_t>(options.depth()));
  return c;
}

at::Tensor FusionTransformerImpl::forward_step(const at::Tensor& x_new, KVCache& cache) {
  TORCH_CHECK(cache.layers.size() == blocks->size(), "fusion_transformer: cache has ", cache.layers.size(),
              " layers, the model ", blocks->size(), " (use new_cache())");
  auto y = x_new;
  for (size_t i = 0; i < blocks->size(); ++i)
    y = blocks[i]->as<DualStreamFusionImpl>()->forward_step(y, cache.layers[i]);
  return norm->forward(y);
}

}  // namespace janus
