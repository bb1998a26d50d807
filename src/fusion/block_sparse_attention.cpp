#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include <ATen/ATen.h>

#include "janus/core/error.h"
#include "janus/fusion/attention.h"

namespace janus {

namespace {
// A masked logit that stays finite: exp() underflows to exactly 0, and a fully masked row stays NaN-free
// (uniform weights, zeroed afterwards).
constexpr double kMaskedLogit = -1e30;

void check_qkv(const char* who, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, who, ": q, k, v must be [B, H, L, d], got ", q.sizes(),
              ", ", k.sizes(), ", ", v.sizes());
  TORCH_CHECK(q.size(0) == k.size(0) && q.size(1) == k.size(1) && q.size(3) == k.size(3), who, ": q ", q.sizes(),
              " and k ", k.sizes(), " disagree on B, H or d");
  TORCH_CHECK(k.sizes() == v.sizes(), who, ": k ", k.sizes(), " and v ", v.sizes(), " differ");
}

void check_key_mask(const char* who, const std::optional<at::Tensor>& key_mask, int64_t batch, int64_t length) {
  if (!key_mask || !key_mask->defined()) return;
  TORCH_CHECK(key_mask->dim() == 2 && key_mask->size(0) == batch && key_mask->size(1) == length, who,
              ": key_mask must be [B, L] = [", batch, ", ", length, "], got ", key_mask->sizes());
}
}  // namespace

at::Tensor dense_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const std::optional<at::Tensor>& allowed, double scale) {
  auto s = at::matmul(q, k.transpose(-2, -1)) * scale;
  if (allowed && allowed->defined()) s = s.masked_fill(allowed->logical_not(), kMaskedLogit);
  auto out = at::matmul(at::softmax(s, -1), v);
  if (allowed && allowed->defined()) {
    auto any = allowed->any(-1, /*keepdim=*/true).expand({q.size(0), q.size(1), q.size(2), 1});
    out = out * any.to(out.scalar_type());
  }
  return out;
}

at::Tensor make_block_sparse_layout(const BlockSparseAttentionOptions& o, int64_t nb) {
  TORCH_CHECK(nb > 0, "block_sparse_attention: need at least one block, got ", nb);
  TORCH_CHECK(o.density() > 0.0 && o.density() <= 1.0, "block_sparse_attention: density ", o.density(),
              " is not in (0, 1]");
  TORCH_CHECK(o.window() >= 0 && o.num_global() >= 0, "block_sparse_attention: window and num_global must be >= 0");
  auto layout = at::zeros({nb, nb}, at::kBool);
  auto acc = layout.accessor<bool, 2>();
  for (int64_t i = 0; i < nb; ++i) {
    const int64_t eligible = o.causal() ? i + 1 : nb;
    const int64_t target = std::max<int64_t>(1, std::llround(o.density() * static_cast<double>(eligible)));
    int64_t kept = 0;
    auto keep = [&](int64_t j) {
      if (j < 0 || j >= eligible || acc[i][j]) return;
      acc[i][j] = true;
      ++kept;
    };
    keep(i);
    for (int64_t w = 1; w <= o.window(); ++w) {
      keep(i - w);
      keep(i + w);
    }
    for (int64_t g = 0; g < o.num_global(); ++g) keep(g);
    if (kept >= target) continue;
    std::vector<int64_t> rest;
    for (int64_t j = 0; j < eligible; ++j)
      if (!acc[i][j]) rest.push_back(j);
    // mt19937_64 is fully specified, and a hand-written Fisher-Yates keeps the draw the same on every stdlib.
    std::mt19937_64 rng(static_cast<uint64_t>(o.seed()) * 1000003ULL + static_cast<uint64_t>(i) * 7919ULL + 17ULL);
    for (size_t a = 0; a < rest.size() && kept < target; ++a) {
      const size_t b = a + static_cast<size_t>(rng() % (rest.size() - a));
      std::swap(rest[a], rest[b]);
      keep(rest[a]);
    }
  }
  return layout;
}

BlockSparseAttentionImpl::BlockSparseAttentionImpl(const BlockSparseAttentionOptions& options_) : options(options_) {
  reset();
}

void BlockSparseAttentionImpl::reset() {
  TORCH_CHECK(options.block_size() > 0, "block_sparse_attention: block_size must be > 0, got ", options.block_size());
  TORCH_CHECK(options.density() > 0.0 && options.density() <= 1.0, "block_sparse_attention: density ",
              options.density(), " is not in (0, 1]");
}

void BlockSparseAttentionImpl::set_layout(const at::Tensor& layout) {
  TORCH_CHECK(layout.dim() == 2 && layout.size(0) == layout.size(1),
              "block_sparse_attention: layout must be square [nb, nb], got ", layout.sizes());
  explicit_layout_ = layout.to(at::kBool).cpu().contiguous();
}

at::Tensor BlockSparseAttentionImpl::layout(int64_t length) const {
  const int64_t nb = (length + options.block_size() - 1) / options.block_size();
  if (explicit_layout_.defined()) {
    TORCH_CHECK(explicit_layout_.size(0) == nb, "block_sparse_attention: explicit layout has ",
                explicit_layout_.size(0), " blocks but a sequence of ", length, " tokens needs ", nb);
    return explicit_layout_;
  }
  return make_block_sparse_layout(options, nb);
}

at::Tensor BlockSparseAttentionImpl::forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                             const std::optional<at::Tensor>& key_mask) {
  check_qkv("block_sparse_attention", q, k, v);
  TORCH_CHECK(q.size(2) == k.size(2), "block_sparse_attention: q and k lengths differ (", q.size(2), " vs ", k.size(2),
              "); use the KV cache path for decoding");
  const int64_t B = q.size(0), H = q.size(1), L = q.size(2), d = q.size(3), bs = options.block_size();
  check_key_mask("block_sparse_attention", key_mask, B, L);
  const int64_t nb = (L + bs - 1) / bs, Lp = nb * bs;
  const auto lay = layout(L);

  // Rows of kept key blocks, padded to the widest row with masked dummies (index 0).
  auto lay_acc = lay.accessor<bool, 2>();
  std::vector<std::vector<int64_t>> rows(nb);
  int64_t W = 0;
  for (int64_t i = 0; i < nb; ++i) {
    for (int64_t j = 0; j < nb; ++j)
      if (lay_acc[i][j]) rows[i].push_back(j);
    W = std::max<int64_t>(W, static_cast<int64_t>(rows[i].size()));
  }
  TORCH_CHECK(W > 0, "block_sparse_attention: layout keeps no block at all");
  auto idx = at::zeros({nb, W}, at::kLong);
  auto valid = at::zeros({nb, W}, at::kBool);
  bool has_dummy = false;
  {
    auto ia = idx.accessor<int64_t, 2>();
    auto va = valid.accessor<bool, 2>();
    for (int64_t i = 0; i < nb; ++i)
      for (int64_t w = 0; w < W; ++w) {
        const bool real = w < static_cast<int64_t>(rows[i].size());
        ia[i][w] = real ? rows[i][w] : 0;
        va[i][w] = real;
        has_dummy = has_dummy || !real;
      }
  }
  const auto dev = q.device();
  idx = idx.to(dev);
  valid = valid.to(dev);

  at::Tensor qp = q, kp = k, vp = v;
  std::optional<at::Tensor> kmask;
  if (key_mask && key_mask->defined()) kmask = key_mask->to(dev).to(at::kBool);
  if (Lp != L) {
    qp = at::constant_pad_nd(q, {0, 0, 0, Lp - L});
    kp = at::constant_pad_nd(k, {0, 0, 0, Lp - L});
    vp = at::constant_pad_nd(v, {0, 0, 0, Lp - L});
    auto base = kmask ? *kmask : at::ones({B, L}, at::TensorOptions().dtype(at::kBool).device(dev));
    kmask = at::constant_pad_nd(base, {0, Lp - L}, 0);
  }

  // Gather the kept key blocks of every query block without permuting: [B, H, nb*W, bs, d] is a view of
  // [B*H, nb, W*bs, d], so (B*H) acts as the batch and nb as the "head" axis of the fused SDPA kernel.
  auto gather = [&](const at::Tensor& t) {
    return t.reshape({B, H, nb, bs, d}).index_select(2, idx.reshape({-1})).view({B * H, nb, W * bs, d});
  };
  auto qb = qp.reshape({B * H, nb, bs, d});
  auto kb = gather(kp);
  auto vb = gather(vp);

  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  std::optional<at::Tensor> allowed;  // [B or 1, nb, bs, W*bs]
  if (has_dummy || options.causal() || kmask) {
    auto a = valid.reshape({1, nb, 1, W, 1}).expand({1, nb, bs, W, bs}).reshape({1, nb, bs, W * bs});
    if (options.causal()) {
      auto ar = at::arange(bs, at::TensorOptions().dtype(at::kLong).device(dev));
      auto kpos = (idx.unsqueeze(-1) * bs + ar).reshape({1, nb, 1, W * bs});
      auto qpos = (at::arange(nb, ar.options()).unsqueeze(-1) * bs + ar).reshape({1, nb, bs, 1});
      a = a.logical_and(kpos <= qpos);
    }
    if (kmask) {
      auto km = kmask->reshape({B, nb, bs}).index_select(1, idx.reshape({-1})).reshape({B, 1, nb, W * bs});
      a = a.logical_and(km.permute({0, 2, 1, 3}));  // [B, nb, 1, W*bs]
    }
    allowed = a;
  }

  at::Tensor out;
  if (allowed) {
    const int64_t Bm = allowed->size(0);  // 1 unless a padding mask is given
    auto bias = at::zeros(allowed->sizes(), q.options()).masked_fill(allowed->logical_not(), kMaskedLogit);
    if (Bm == 1) {
      out = at::scaled_dot_product_attention(qb, kb, vb, bias, 0.0, false, scale);  // broadcast over B*H
    } else {
      bias = bias.unsqueeze(1).expand({B, H, nb, bs, W * bs}).reshape({B * H, nb, bs, W * bs});
      out = at::scaled_dot_product_attention(qb, kb, vb, bias, 0.0, false, scale);
    }
    auto any = allowed->any(-1).to(q.scalar_type()).unsqueeze(1).expand({B, H, nb, bs}).reshape({B * H, nb, bs, 1});
    out = out * any;
  } else {
    out = at::scaled_dot_product_attention(qb, kb, vb, std::nullopt, 0.0, false, scale);
  }
  out = out.view({B, H, Lp, d});
  if (Lp != L) out = out.narrow(2, 0, L);
  return out;
}

}  // namespace janus
