#pragma once
// The pieces around an optimiser step: AdamW parameter groups, the learning-rate schedule, the dynamic fp16
// gradient scaler, an EMA of weights, and (de)serialising AdamW state by parameter name.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/Tensor.h>
#include <torch/nn/module.h>
#include <torch/optim/adamw.h>

#include "janus/core/config.h"
#include "janus/io/safetensors.h"

namespace janus::train {

using NamedParams = std::vector<std::pair<std::string, at::Tensor>>;

// True when a parameter should get no weight decay: tensors with ndim <= 1 (biases, norm scales, scalars such
// as a contrastive temperature), weights of torch::nn::Embedding modules, and timm's token/position tables by
// name (last component pos_embed, cls_token, mask_token, dist_token, position_embedding(s),
// absolute_pos_embed, relative_position_bias_table).
bool is_no_decay(const std::string& name, const at::Tensor& param, bool in_embedding_module);

// Trainable (requires_grad) named parameters of `module`, split into (decay, no_decay).
struct ParamGroups {
  NamedParams decay;
  NamedParams no_decay;
  NamedParams all() const;
};
ParamGroups split_param_groups(const torch::nn::Module& module, const NamedParams& params);

// An AdamW over the two groups (weight decay only on the first); lr of all groups is set by the schedule. With
// overrides, each override's parameters form their own (decay, no_decay) torch groups with its settings.
struct NamedOptimizer {
  std::string name;
  ParamGroups groups;
  double base_lr = 0;
  std::unique_ptr<torch::optim::AdamW> optimizer;
  std::vector<double> lr_scale;  // per torch param group: its lr is lr_scale[i] x the scheduled lr

  void set_lr(double lr);
  double lr() const;
  std::vector<at::Tensor> params() const;  // in group order
  // AdamW state as tensors: "<prefix><param>.exp_avg", ".exp_avg_sq", ".step" (int64 scalar). Parameters
  // without state yet (never stepped) are absent.
  void save_state(TensorMap& out, const std::string& prefix) const;
  // Restores state for every parameter (missing entries -> no state); InputError on shape mismatches.
  void load_state(const TensorMap& in, const std::string& prefix);
};

// True when parameter `name` is `prefix` or lies under it ("vq" covers "vq.enc.weight", not "vq_head.weight").
bool has_name_prefix(const std::string& name, const std::string& prefix);

// `overrides` (optim.overrides, parsed): each must match at least one of `params` (InputError otherwise).
NamedOptimizer make_adamw(const std::string& name, const torch::nn::Module& module, const NamedParams& params,
                          double lr, double weight_decay, double beta1, double beta2, double eps,
                          const std::vector<OptimOverride>& overrides = {});

// lr(step) = base * factor(step). Linear warmup over warmup_steps (factor (step+1)/warmup), then
// cosine:  min + (1-min) * 0.5 * (1 + cos(pi * t)), linear: 1 - (1-min) * t, constant: 1,
// with t = (step - warmup) / max(1, total - warmup) in [0, 1] and min = min_lr_ratio.
struct LrSchedule {
  std::string name = "cosine";
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  double min_lr_ratio = 0.0;
  double factor(int64_t step) const;
};

// Dynamic loss scaling like torch.amp.GradScaler: scale the loss, unscale gradients in place with
// at::_amp_foreach_non_finite_check_and_unscale_, skip the step when any is non-finite, and update the scale with
// at::_amp_update_scale_ (x growth_factor after growth_interval clean steps, x backoff_factor on overflow).
// Disabled, scale() is the identity and unscale() only detects non-finite gradients.
class GradScaler {
 public:
  GradScaler(bool enabled, double init_scale = 65536.0, double growth_factor = 2.0, double backoff_factor = 0.5,
             int64_t growth_interval = 2000);
  bool enabled() const { return enabled_; }
  at::Tensor scale(const at::Tensor& loss);
  // Unscales the gradients (defined ones) in place; returns true when all are finite.
  bool unscale(const std::vector<at::Tensor>& params);
  void update(bool found_inf);  // call once per optimiser step, after unscale
  double scale_value() const;
  void save_state(TensorMap& out, const std::string& prefix) const;
  void load_state(const TensorMap& in, const std::string& prefix);

 private:
  bool enabled_;
  double growth_factor_, backoff_factor_;
  int64_t growth_interval_;
  at::Tensor scale_;           // float32 [1]
  at::Tensor growth_tracker_;  // int32 [1]
};

// Exponential moving average of trainable parameters: shadow = decay * shadow + (1 - decay) * param.
class Ema {
 public:
  Ema(const NamedParams& params, double decay);
  void update(const NamedParams& params);
  const TensorMap& shadow() const { return shadow_; }
  void save_state(TensorMap& out, const std::string& prefix) const;
  void load_state(const TensorMap& in, const std::string& prefix);

 private:
  double decay_;
  TensorMap shadow_;
};

// Global L2 norm of the defined gradients (float64 accumulation), and in-place clipping to max_norm like
// torch.nn.utils.clip_grad_norm_. Returns the norm before clipping.
double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm);

// The top-level module a parameter belongs to: the first component of its name ("vq.enc.0.weight" -> "vq");
// "<root>" for a parameter registered on the model itself.
std::string top_module_of(const std::string& param);

// Gradient norms by top-level module (float64 accumulation, before clipping), and, when max_norm > 0, each
// module's gradients clipped to max_norm on their own. Parameters without a gradient are left out; a module with
// no gradient at all is absent from the result.
std::map<std::string, double> clip_grad_norm_by_module(const NamedParams& params, double max_norm);

}  // namespace janus::train
