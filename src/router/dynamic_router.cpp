#include "janus/router/dynamic_router.h"

#include <fmt/format.h>

#include "janus/core/error.h"

namespace janus {

std::string modality_name(Modality m) {
  switch (m) {
    case Modality::kImage:
      return "image";
    case Modality::kVideo:
      return "video";
    case Modality::kPointCloud:
      return "point_cloud";
    case Modality::kText:
      return "text";
  }
  return "unknown";
}

Modality modality_from_name(const std::string& name) {
  for (int64_t i = 0; i < kNumModalities; ++i) {
    if (modality_name(static_cast<Modality>(i)) == name) return static_cast<Modality>(i);
  }
  throw InputError("modality '" + name + "' is not one of image, video, point_cloud, text");
}

DynamicRouterImpl::DynamicRouterImpl(const DynamicRouterOptions& options_) : options(options_) { reset(); }

void DynamicRouterImpl::reset() {
  if (options.in_dim() <= 0 || options.out_dim() <= 0 || options.num_modalities() <= 0) {
    throw InputError(fmt::format("dynamic_router: in_dim {}, out_dim {}, num_modalities {} must be positive",
                                 options.in_dim(), options.out_dim(), options.num_modalities()));
  }
  proj = register_module("proj", torch::nn::ModuleList());
  if (options.shared()) {
    gate = nullptr;
    proj->push_back(torch::nn::Linear(options.in_dim(), options.out_dim()));
    return;
  }
  gate = register_module("gate", torch::nn::Linear(options.in_dim(), options.out_dim()));
  for (int64_t m = 0; m < options.num_modalities(); ++m)
    proj->push_back(torch::nn::Linear(options.in_dim(), options.out_dim()));
}

at::Tensor DynamicRouterImpl::forward(const at::Tensor& x, const at::Tensor& modality_id) {
  TORCH_CHECK((x.dim() == 2 || x.dim() == 3) && x.size(-1) == options.in_dim(), "dynamic_router: expected x [B, (L,) ",
              options.in_dim(), "], got ", x.sizes());
  TORCH_CHECK(
      modality_id.dim() == 1 && modality_id.size(0) == x.size(0) && !at::isFloatingType(modality_id.scalar_type()),
      "dynamic_router: modality_id must be an integer tensor [", x.size(0), "], got ", modality_id.scalar_type(), " ",
      modality_id.sizes());
  const auto ids = modality_id.to(x.device(), at::kLong);
  if (ids.numel() > 0) {
    const auto lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi < options.num_modalities(), "dynamic_router: modality ids span [", lo, ", ", hi,
                "], expected [0, ", options.num_modalities(), ")");
  }
  if (options.shared()) return proj->ptr<torch::nn::LinearImpl>(0)->forward(x);
  const auto g = at::sigmoid(gate->forward(x));
  // One projection per modality present: gather its samples, project, then undo the grouping.
  std::vector<at::Tensor> parts, order;
  for (int64_t m = 0; m < options.num_modalities(); ++m) {
    const auto idx = ids.eq(m).nonzero().squeeze(1);
    if (idx.numel() == 0) continue;
    parts.push_back(proj->ptr<torch::nn::LinearImpl>(m)->forward(x.index_select(0, idx)));
    order.push_back(idx);
  }
  if (parts.empty()) return g * at::zeros_like(g);  // empty batch
  auto feat = parts.size() == 1 ? parts[0] : at::cat(parts, 0);
  if (parts.size() > 1 || ids.size(0) != feat.size(0)) {
    feat = feat.index_select(0, at::argsort(at::cat(order, 0)));
  }
  return g * feat;
}

at::Tensor DynamicRouterImpl::forward(const at::Tensor& x, Modality modality) {
  return forward(x, at::full({x.dim() > 0 ? x.size(0) : 0}, static_cast<int64_t>(modality), at::kLong));
}

}  // namespace janus
