#include <cmath>
#include <limits>

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include "janus/fusion/attention.h"

namespace janus {

namespace {

struct ChunkParams {
  bool causal = false;
  double scale = 1.0;
  int64_t qc = 1024, kc = 1024;
  int64_t offset = 0;  // causal: query i sits at key position offset + i
};

// Logits of one (query chunk, key chunk) tile with masked entries at -inf; nullopt when the tile is fully
// masked by causality (skipped).
at::Tensor tile_logits(const at::Tensor& qi, const at::Tensor& kj, const at::Tensor& key_mask, const ChunkParams& p,
                       int64_t qs, int64_t ks) {
  auto s = at::matmul(qi, kj.transpose(-2, -1)) * p.scale;  // [B, H, nq, nk]
  const int64_t nq = qi.size(2), nk = kj.size(2);
  at::Tensor masked;
  if (p.causal) {
    auto opts = at::TensorOptions().dtype(at::kLong).device(qi.device());
    auto qpos = at::arange(qs + p.offset, qs + p.offset + nq, opts).unsqueeze(1);
    auto kpos = at::arange(ks, ks + nk, opts).unsqueeze(0);
    masked = (kpos > qpos).view({1, 1, nq, nk});
  }
  if (key_mask.numel() > 0) {
    auto km = key_mask.narrow(1, ks, nk).logical_not().view({key_mask.size(0), 1, 1, nk});
    masked = masked.defined() ? masked.logical_or(km) : km;
  }
  if (masked.defined()) s = s.masked_fill(masked, -std::numeric_limits<double>::infinity());
  return s;
}

bool tile_skipped(const ChunkParams& p, int64_t qs, int64_t nq, int64_t ks) {
  return p.causal && ks > qs + nq - 1 + p.offset;
}

class ChunkedAttentionFunction : public torch::autograd::Function<ChunkedAttentionFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
                            const at::Tensor& v, const at::Tensor& key_mask, bool causal, double scale, int64_t qc,
                            int64_t kc) {
    ChunkParams p{causal, scale, qc, kc, k.size(2) - q.size(2)};
    const int64_t Lq = q.size(2), Lk = k.size(2);
    auto out = at::empty_like(q);
    auto lse = at::empty({q.size(0), q.size(1), Lq}, q.options());
    const double inf = std::numeric_limits<double>::infinity();
    for (int64_t qs = 0; qs < Lq; qs += qc) {
      const int64_t nq = std::min(qc, Lq - qs);
      auto qi = q.narrow(2, qs, nq);
      auto m = at::full({q.size(0), q.size(1), nq}, -inf, q.options());
      auto l = at::zeros_like(m);
      auto acc = at::zeros({q.size(0), q.size(1), nq, q.size(3)}, q.options());
      for (int64_t ks = 0; ks < Lk; ks += kc) {
        if (tile_skipped(p, qs, nq, ks)) break;
        const int64_t nk = std::min(kc, Lk - ks);
        auto s = tile_logits(qi, k.narrow(2, ks, nk), key_mask, p, qs, ks);
        auto m_new = at::maximum(m, std::get<0>(s.max(-1)));
        auto m_safe = at::where(at::isinf(m_new), at::zeros_like(m_new), m_new);
        auto e = at::exp(s - m_safe.unsqueeze(-1));
        auto alpha = at::exp(m - m_safe);
        l = l * alpha + e.sum(-1);
        acc = acc * alpha.unsqueeze(-1) + at::matmul(e, v.narrow(2, ks, nk));
        m = m_new;
      }
      auto empty = l.eq(0);
      auto l_safe = at::where(empty, at::ones_like(l), l);
      out.narrow(2, qs, nq).copy_(acc / l_safe.unsqueeze(-1));
      auto m_safe = at::where(at::isinf(m), at::zeros_like(m), m);
      // Fully masked rows: lse = +inf, so the backward's exp(s - lse) is 0 there.
      lse.narrow(2, qs, nq).copy_(at::where(empty, at::full_like(l, inf), m_safe + at::log(l_safe)));
    }
    ctx->save_for_backward({q, k, v, out, lse, key_mask});
    ctx->saved_data["causal"] = causal;
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["qc"] = qc;
    ctx->saved_data["kc"] = kc;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &q = saved[0], &k = saved[1], &v = saved[2], &out = saved[3], &lse = saved[4], &key_mask = saved[5];
    ChunkParams p{ctx->saved_data["causal"].toBool(), ctx->saved_data["scale"].toDouble(),
                  ctx->saved_data["qc"].toInt(), ctx->saved_data["kc"].toInt(), k.size(2) - q.size(2)};
    auto dout = grads[0].contiguous();
    const int64_t Lq = q.size(2), Lk = k.size(2);
    auto D = (dout * out).sum(-1);  // [B, H, Lq]
    auto dq = at::zeros_like(q), dk = at::zeros_like(k), dv = at::zeros_like(v);
    for (int64_t qs = 0; qs < Lq; qs += p.qc) {
      const int64_t nq = std::min(p.qc, Lq - qs);
      auto qi = q.narrow(2, qs, nq);
      auto doi = dout.narrow(2, qs, nq);
      auto lsei = lse.narrow(2, qs, nq).unsqueeze(-1);
      auto Di = D.narrow(2, qs, nq).unsqueeze(-1);
      auto dqi = dq.narrow(2, qs, nq);
      for (int64_t ks = 0; ks < Lk; ks += p.kc) {
        if (tile_skipped(p, qs, nq, ks)) break;
        const int64_t nk = std::min(p.kc, Lk - ks);
        auto kj = k.narrow(2, ks, nk), vj = v.narrow(2, ks, nk);
        auto pr = at::exp(tile_logits(qi, kj, key_mask, p, qs, ks) - lsei);
        dv.narrow(2, ks, nk).add_(at::matmul(pr.transpose(-2, -1), doi));
        auto ds = pr * (at::matmul(doi, vj.transpose(-2, -1)) - Di);
        dqi.add_(at::matmul(ds, kj), p.scale);
        dk.narrow(2, ks, nk).add_(at::matmul(ds.transpose(-2, -1), qi), p.scale);
      }
    }
    return {dq, dk, dv, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// All queries and keys fit one tile: nothing to bound, so ATen's fused attention (on CPU its flash kernel) computes
// the same result with fewer passes (the quickstart's stage 3 step: ~10 % of it was this function's tiles). Same
// semantics as the tiles: causal queries aligned to the last keys, masked keys excluded, rows without any key give
// 0 with finite gradients (tests/fusion/attention_test.cpp checks all three against the oracle).
at::Tensor one_tile_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& key_mask,
                              bool causal, double scale) {
  const int64_t Lq = q.size(2), Lk = k.size(2);
  if (causal && key_mask.numel() == 0 && Lq == Lk) {
    return at::scaled_dot_product_attention(q, k, v, std::nullopt, 0.0, /*is_causal=*/true, scale);
  }
  at::Tensor allowed;
  if (causal) {
    auto opts = at::TensorOptions().dtype(at::kLong).device(q.device());
    allowed = (at::arange(Lk, opts).unsqueeze(0) <= at::arange(Lk - Lq, Lk, opts).unsqueeze(1)).view({1, 1, Lq, Lk});
  }
  if (key_mask.numel() > 0) {
    auto km = key_mask.view({key_mask.size(0), 1, 1, Lk});
    allowed = allowed.defined() ? allowed.logical_and(km) : km;
  }
  return at::scaled_dot_product_attention(
      q, k, v, allowed.defined() ? std::optional<at::Tensor>(allowed) : std::nullopt, 0.0, /*is_causal=*/false, scale);
}

}  // namespace

at::Tensor chunked_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             const std::optional<at::Tensor>& key_mask, bool causal, double scale, int64_t query_chunk,
                             int64_t key_chunk) {
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "chunked_attention: q, k, v must be [B, H, L, d], got ",
              q.sizes(), ", ", k.sizes(), ", ", v.sizes());
  TORCH_CHECK(q.size(0) == k.size(0) && q.size(1) == k.size(1) && q.size(3) == k.size(3) && k.sizes() == v.sizes(),
              "chunked_attention: shapes disagree: q ", q.sizes(), ", k ", k.sizes(), ", v ", v.sizes());
  TORCH_CHECK(query_chunk > 0 && key_chunk > 0, "chunked_attention: chunk sizes must be > 0");
  TORCH_CHECK(!causal || k.size(2) >= q.size(2), "chunked_attention: causal needs at least as many keys as queries");
  // Autograd functions need defined tensor inputs: "no mask" travels as an empty tensor.
  at::Tensor km = at::empty({0}, q.options().dtype(at::kBool));
  if (key_mask && key_mask->defined()) {
    TORCH_CHECK(key_mask->dim() == 2 && key_mask->size(0) == k.size(0) && key_mask->size(1) == k.size(2),
                "chunked_attention: key_mask must be [B, Lk] = [", k.size(0), ", ", k.size(2), "], got ",
                key_mask->sizes());
    km = key_mask->to(q.device()).to(at::kBool);
  }
  if (q.device().is_cpu() && q.size(2) <= query_chunk && k.size(2) <= key_chunk) {
    return one_tile_attention(q, k, v, km, causal, scale);
  }
  return ChunkedAttentionFunction::apply(q.contiguous(), k.contiguous(), v.contiguous(), km, causal, scale, query_chunk,
                                         key_chunk);
}

ChunkedAttentionImpl::ChunkedAttentionImpl(const ChunkedAttentionOptions& options_) : options(options_) { reset(); }

void ChunkedAttentionImpl::reset() {
  TORCH_CHECK(options.query_chunk() > 0 && options.key_chunk() > 0, "chunked_attention: chunk sizes must be > 0, got ",
              options.query_chunk(), ", ", options.key_chunk());
}

at::Tensor ChunkedAttentionImpl::forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                         const std::optional<at::Tensor>& key_mask) {
  return chunked_attention(q, k, v, key_mask, options.causal(), 1.0 / std::sqrt(static_cast<double>(q.size(-1))),
                           options.query_chunk(), options.key_chunk());
}

}  // namespace janus
