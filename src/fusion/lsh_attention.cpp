#include <cmath>
#include <limits>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "janus/fusion/attention.h"

namespace janus {

namespace {
constexpr double kSelfLogit = -5e4;  // reformer-pytorch TOKEN_SELF_ATTN_VALUE

// Each chunk sees itself and the chunk before it; chunk 0 wraps to the last one (of the last round).
at::Tensor look_one_back(const at::Tensor& x) {
  auto extra = at::cat({x.narrow(1, x.size(1) - 1, 1), x.narrow(1, 0, x.size(1) - 1)}, 1);
  return at::cat({x, extra}, 2);
}

at::Tensor gather_rows(const at::Tensor& values, const at::Tensor& indices) {  // [N, T, d], [N, S] -> [N, S, d]
  return values.gather(1, indices.unsqueeze(-1).expand({-1, -1, values.size(-1)}));
}
}  // namespace

LSHAttentionImpl::LSHAttentionImpl(const LSHAttentionOptions& options_) : options(options_) { reset(); }

void LSHAttentionImpl::reset() {
  TORCH_CHECK(options.bucket_size() > 0, "lsh_attention: bucket_size must be > 0, got ", options.bucket_size());
  TORCH_CHECK(options.n_hashes() > 0, "lsh_attention: n_hashes must be > 0, got ", options.n_hashes());
  generator_ = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(options.seed()));
  rotations_ = at::Tensor();
}

void LSHAttentionImpl::set_rotations(const at::Tensor& rotations) {
  TORCH_CHECK(rotations.dim() == 3 && rotations.size(1) == options.n_hashes(),
              "lsh_attention: rotations must be [d, n_hashes=", options.n_hashes(), ", n_buckets/2], got ",
              rotations.sizes());
  rotations_ = rotations;
}

void LSHAttentionImpl::clear_rotations() { rotations_ = at::Tensor(); }

at::Tensor LSHAttentionImpl::forward(const at::Tensor& qk, const at::Tensor& v,
                                     const std::optional<at::Tensor>& key_mask) {
  TORCH_CHECK(qk.dim() == 4 && qk.sizes() == v.sizes(), "lsh_attention: qk and v must both be [B, H, L, d], got ",
              qk.sizes(), " and ", v.sizes());
  const int64_t B = qk.size(0), H = qk.size(1), L = qk.size(2), d = qk.size(3);
  const int64_t bs = options.bucket_size(), nh = options.n_hashes();
  TORCH_CHECK(L % (2 * bs) == 0, "lsh_attention: sequence length ", L,
              " is not a multiple of 2 * bucket_size = ", 2 * bs, " (pad it and pass a key_mask)");
  const int64_t N = B * H, n_buckets = L / bs, n_chunks = nh * n_buckets;
  const auto dev = qk.device();
  auto x = qk.reshape({N, L, d});
  auto vv = v.reshape({N, L, d});

  at::Tensor rot;
  if (rotations_.defined()) {
    TORCH_CHECK(rotations_.size(0) == d && rotations_.size(2) == n_buckets / 2, "lsh_attention: injected rotations ",
                rotations_.sizes(), " do not fit d=", d, ", n_buckets/2=", n_buckets / 2, " (L=", L, ")");
    rot = rotations_.to(dev, qk.scalar_type());
  } else {
    rot = at::randn({d, nh, n_buckets / 2}, generator_, at::TensorOptions().dtype(qk.scalar_type())).to(dev);
  }

  at::Tensor buckets, sticker, undo_sort;
  {
    at::NoGradGuard no_grad;
    auto rotated = at::einsum("btf,fhi->bhti", {x, rot});        // [N, nh, L, n_buckets/2]
    buckets = at::argmax(at::cat({rotated, -rotated}, -1), -1);  // [N, nh, L]
    last_buckets_ = buckets.reshape({B, H, nh, L});
    auto offsets = (at::arange(nh, buckets.options()) * n_buckets).view({1, nh, 1});
    buckets = (buckets + offsets).reshape({N, nh * L});
    auto ticker = at::arange(nh * L, buckets.options()).unsqueeze(0).expand_as(buckets);
    auto keys = L * buckets + ticker.remainder(L);  // unique, so the sort order is fully determined
    sticker = std::get<1>(keys.sort(-1));
    undo_sort = std::get<1>(sticker.sort(-1));
  }

  auto st = sticker.remainder(L);  // position of each sorted slot
  auto bq_t = st.reshape({N, n_chunks, bs});
  auto bqk = gather_rows(x, st).reshape({N, n_chunks, bs, d});
  auto bv = look_one_back(gather_rows(vv, st).reshape({N, n_chunks, bs, d}));
  auto bk = look_one_back(bqk / bqk.norm(2, -1, true).clamp_min(1e-12));
  auto bkv_t = look_one_back(bq_t);

  auto dots = at::matmul(bqk, bk.transpose(-2, -1)) * std::pow(static_cast<double>(d), -0.5);  // [N, C, bs, 2bs]
  const double masked_value = qk.scalar_type() == at::kDouble ? -std::numeric_limits<double>::max()
                                                              : -static_cast<double>(std::numeric_limits<float>::max());
  // One in-place pass per mask (dots is a fresh tensor): keeps the O(L) working set small.
  if (key_mask && key_mask->defined()) {
    TORCH_CHECK(key_mask->dim() == 2 && key_mask->size(0) == B && key_mask->size(1) == L,
                "lsh_attention: key_mask must be [B, L] = [", B, ", ", L, "], got ", key_mask->sizes());
    auto km = key_mask->to(dev).to(at::kBool).unsqueeze(1).expand({B, H, L}).reshape({N, L});
    auto mq = km.gather(1, st).reshape({N, n_chunks, bs});
    auto mkv = look_one_back(mq);
    dots.masked_fill_(mq.unsqueeze(-1).logical_and(mkv.unsqueeze(-2)).logical_not(), masked_value);
  }
  if (options.causal()) dots.masked_fill_(bq_t.unsqueeze(-1) < bkv_t.unsqueeze(-2), masked_value);
  dots.masked_fill_(bq_t.unsqueeze(-1) == bkv_t.unsqueeze(-2), kSelfLogit);

  auto lse = at::logsumexp(dots, -1, true);
  auto probs = at::exp(dots - lse);
  auto so = at::matmul(probs, bv).reshape({N, nh * L, d});
  auto slogits = lse.reshape({N, nh * L});
  auto o = gather_rows(so, undo_sort).reshape({N, nh, L, d});
  auto logits = slogits.gather(1, undo_sort).reshape({N, nh, L, 1});
  auto w = at::exp(logits - at::logsumexp(logits, 1, true));
  return (o * w).sum(1).reshape({B, H, L, d});
}

}  // namespace janus
