#include "janus/encoders/point_cloud_encoder.h"

#include <nlohmann/json.hpp>

#include "janus/core/error.h"
#include "janus/encoders/vision_encoder.h"

namespace janus {

at::Tensor farthest_point_sample(const at::Tensor& xyz, int64_t num_samples) {
  TORCH_CHECK(xyz.dim() == 3 && xyz.size(2) == 3, "farthest_point_sample: expected xyz [B, P, 3], got ", xyz.sizes());
  const int64_t B = xyz.size(0), P = xyz.size(1);
  TORCH_CHECK(num_samples >= 1 && num_samples <= P, "farthest_point_sample: ", num_samples, " samples from ", P,
              " points");
  at::NoGradGuard ng;
  const auto pts = xyz.detach();
  const auto batch = at::arange(B, xyz.options().dtype(at::kLong));
  auto idx = at::empty({B, num_samples}, xyz.options().dtype(at::kLong));
  // Order-independent start: the point farthest from the centroid.
  auto far = (pts - pts.mean(1, true)).pow(2).sum(-1).argmax(1);  // [B]
  auto dist = at::full({B, P}, std::numeric_limits<float>::infinity(), pts.options());
  for (int64_t s = 0; s < num_samples; ++s) {
    idx.select(1, s).copy_(far);
    const auto c = pts.index({batch, far}).unsqueeze(1);  // [B, 1, 3]
    dist = at::minimum(dist, (pts - c).pow(2).sum(-1));
    far = dist.argmax(1);
  }
  return idx;
}

at::Tensor knn_indices(const at::Tensor& centers, const at::Tensor& xyz, int64_t k) {
  TORCH_CHECK(k >= 1 && k <= xyz.size(1), "knn: group_size ", k, " from ", xyz.size(1), " points");
  at::NoGradGuard ng;
  // Per-pair differences (not the |a|^2 + |b|^2 - 2ab expansion), so each distance is independent of point order.
  const auto d = (centers.detach().unsqueeze(2) - xyz.detach().unsqueeze(1)).pow(2).sum(-1);  // [B, G, P]
  return std::get<1>(d.topk(k, -1, /*largest=*/false, /*sorted=*/true));
}

PointCloudEncoderImpl::PointCloudEncoderImpl(const PointCloudEncoderOptions& options_) : options(options_) { reset(); }

void PointCloudEncoderImpl::reset() {
  const auto& o = options;
  if (o.in_channels() < 0 || o.num_groups() <= 0 || o.group_size() <= 0 || o.dim() <= 0 || o.depth() < 0 ||
      (o.depth() > 0 && (o.heads() <= 0 || o.dim() % o.heads() != 0))) {
    throw InputError(fmt::format(
        "point_cloud_encoder: bad options (in_channels {}, num_groups {}, group_size {}, dim {}, depth {}, heads {})",
        o.in_channels(), o.num_groups(), o.group_size(), o.dim(), o.depth(), o.heads()));
  }
  first_fc1 = register_module("first_fc1", torch::nn::Linear(3 + o.in_channels(), 128));
  first_norm = register_module("first_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({128})));
  first_fc2 = register_module("first_fc2", torch::nn::Linear(128, 256));
  second_fc1 = register_module("second_fc1", torch::nn::Linear(512, 512));
  second_norm = register_module("second_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({512})));
  second_fc2 = register_module("second_fc2", torch::nn::Linear(512, o.dim()));
  pos_embed = register_module("pos_embed", Mlp(MlpOptions(3, 128, o.dim())));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.depth(); ++i) blocks->push_back(Block(BlockOptions(o.dim(), o.heads())));
  norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.dim()}).eps(1e-6)));
}

PointCloudOutput PointCloudEncoderImpl::forward(const at::Tensor& points) {
  const auto& o = options;
  TORCH_CHECK(points.dim() == 3 && points.size(2) == 3 + o.in_channels(),
              "point_cloud_encoder: expected points [B, P, ", 3 + o.in_channels(), "], got ", points.sizes());
  const int64_t B = points.size(0), P = points.size(1), G = o.num_groups(), K = o.group_size();
  TORCH_CHECK(P >= G && P >= K, "point_cloud_encoder: ", P, " points, need at least num_groups ", G, " and group_size ",
              K);
  TORCH_CHECK(at::isfinite(points).all().item<bool>(), "point_cloud_encoder: points contain NaN or Inf");
  const auto xyz = points.slice(2, 0, 3);
  const auto batch = at::arange(B, points.options().dtype(at::kLong));
  const auto centre_idx = farthest_point_sample(xyz, G);             // [B, G]
  const auto centers = xyz.index({batch.unsqueeze(1), centre_idx});  // [B, G, 3]
  const auto nbr = knn_indices(centers, xyz, K);                     // [B, G, K]
  auto group = points.index({batch.view({B, 1, 1}), nbr});           // [B, G, K, 3 + C]
  group = at::cat({group.slice(3, 0, 3) - centers.unsqueeze(2), group.slice(3, 3)}, 3);
  // mini-PointNet: shared MLP, max-pool, concat global to each point, MLP, max-pool.
  auto f = first_fc2->forward(at::relu(first_norm->forward(first_fc1->forward(group))));  // [B, G, K, 256]
  auto global = std::get<0>(f.max(2, true)).expand_as(f);
  f = at::cat({global, f}, 3);                                                      // [B, G, K, 512]
  f = second_fc2->forward(at::relu(second_norm->forward(second_fc1->forward(f))));  // [B, G, K, D]
  auto x = std::get<0>(f.max(2)) + pos_embed->forward(centers);                     // [B, G, D]
  for (size_t i = 0; i < blocks->size(); ++i) x = blocks->ptr<BlockImpl>(i)->forward(x);
  x = norm->forward(x);
  return {x, centers, x.mean(1)};
}

PointCloudEncoderOptions point_cloud_encoder_options_from_json(const nlohmann::json& j) {
  PointCloudEncoderOptions o;
  for (const auto& [k, v] : j.items()) {
    if (k == "in_channels")
      o.in_channels(v.get<int64_t>());
    else if (k == "num_groups")
      o.num_groups(v.get<int64_t>());
    else if (k == "group_size")
      o.group_size(v.get<int64_t>());
    else if (k == "dim")
      o.dim(v.get<int64_t>());
    else if (k == "depth")
      o.depth(v.get<int64_t>());
    else if (k == "heads")
      o.heads(v.get<int64_t>());
    else
      throw InputError("point_cloud_encoder: unknown option '" + k + "'");
  }
  return o;
}

}  // namespace janus
