#pragma once
// DynamicRouter, exactly the seed's formula:
//   gate = sigmoid(Linear(in_dim, out_dim)(x)),  feat = proj[modality_id](x),  out = gate * feat
// with one projection Linear per modality (image, video, point cloud, text). Names: gate.{weight,bias},
// proj.M.{weight,bias}. A batch mixing modalities is routed in one call: one projection per modality present
// (index-select the samples of that modality, project, scatter back), never a loop over samples.
#include <cstdint>
#include <string>

#include <ATen/ATen.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

namespace janus {

enum class Modality : int64_t { kImage = 0, kVideo = 1, kPointCloud = 2, kText = 3 };
constexpr int64_t kNumModalities = 4;
std::string modality_name(Modality m);
Modality modality_from_name(const std::string& name);  // "image", "video", "point_cloud", "text"; InputError else

struct DynamicRouterOptions {
  DynamicRouterOptions(int64_t in_dim, int64_t out_dim) : in_dim_(in_dim), out_dim_(out_dim) {}
  TORCH_ARG(int64_t, in_dim);
  TORCH_ARG(int64_t, out_dim);
  TORCH_ARG(int64_t, num_modalities) = kNumModalities;
  // Ablation baseline: one plain Linear shared by every modality, no gate (out = proj.0(x)). Only proj.0 exists.
  TORCH_ARG(bool, shared) = false;
};

class DynamicRouterImpl : public torch::nn::Cloneable<DynamicRouterImpl> {
 public:
  explicit DynamicRouterImpl(const DynamicRouterOptions& options);
  void reset() override;
  // x [B, L, in_dim] or [B, in_dim]; modality_id int [B] (each in [0, num_modalities)) -> [B, (L,) out_dim]
  at::Tensor forward(const at::Tensor& x, const at::Tensor& modality_id);
  // Whole batch of one modality.
  at::Tensor forward(const at::Tensor& x, Modality modality);

  DynamicRouterOptions options;
  torch::nn::Linear gate{nullptr};
  torch::nn::ModuleList proj{nullptr};
};
TORCH_MODULE(DynamicRouter);

}  // namespace janus
