#pragma once
// GradNorm loss balancing (Chen et al., arXiv:1711.02257), the paper's formulation:
//   G_i   = || grad_W (w_i L_i) ||            W = the last shared layer's parameters
//   r_i   = (L_i(t) / L_i(0)) / mean_j (L_j(t) / L_j(0))
//   L_grad = sum_i | G_i - sg[ mean(G) * r_i^alpha ] |, differentiated w.r.t. the task weights w only
// w is updated by its own Adam (lr, betas 0.9/0.999, eps 1e-8, as torch.optim.Adam), then clamped positive and
// renormalised so sum_i w_i = T. A task whose loss decreased *less* (larger r_i) gets a larger gradient-norm target,
// hence a larger weight. (PyPI gradnorm-pytorch uses r^-alpha, which inverts this for alpha > 0; not used here.)
//
// Usage per optimiser step (gradient accumulation: combine() once per micro-batch, step() once per step):
//   auto total = gradnorm.combine({l_t2i, l_cap, l_vqa}, last_shared_layer_params);
//   total.backward();   // model gradients use the detached weights
//   ...optimizer.step(); gradnorm.step();
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "janus/io/safetensors.h"

namespace janus::train {

class GradNorm {
 public:
  GradNorm(std::vector<std::string> task_names, double alpha = 1.5, double lr = 0.025);

  // losses: one scalar per task (with graph; any floating dtype, computed in float). shared_params: the last
  // shared layer's parameters. Returns sum_i w_i.detach() * L_i (float) and records dL_grad/dw for step().
  // Uses torch::autograd::grad(retain_graph = true) on the shared parameters only: .grad of model parameters is
  // never touched. The first call fixes L_i(0). A micro-batch whose G or L is non-finite records nothing.
  at::Tensor combine(const std::vector<at::Tensor>& losses, const std::vector<at::Tensor>& shared_params);
  // Applies the recorded gradient (mean over the combine() calls since the last step) with Adam, then clamps to
  // > 0 and renormalises to sum T. No-op when nothing was recorded.
  void step();
  at::Tensor weights() const;  // [T] float, detached copy
  const std::vector<std::string>& task_names() const { return names_; }

  // Keys <prefix>{weights, initial_losses, initialized, adam_exp_avg, adam_exp_avg_sq, adam_step, grad_sum,
  // grad_count}: everything needed for an exact resume.
  void save(TensorMap& out, const std::string& prefix) const;
  // InputError naming a missing or mis-shaped key.
  void load(const TensorMap& in, const std::string& prefix);

  // Diagnostics of the last combine(): G_i [T], r_i [T], L_grad scalar (undefined before the first call).
  at::Tensor last_grad_norms() const { return last_g_; }
  at::Tensor last_inverse_rates() const { return last_r_; }
  double last_gradnorm_loss() const { return last_lgrad_; }

  double alpha() const { return alpha_; }
  double lr() const { return lr_; }

 private:
  std::vector<std::string> names_;
  double alpha_, lr_;
  at::Tensor w_;                  // [T] float32, CPU
  at::Tensor l0_;                 // [T] float32, CPU
  bool initialized_ = false;
  at::Tensor exp_avg_, exp_avg_sq_;  // Adam moments [T]
  int64_t adam_step_ = 0;
  at::Tensor grad_sum_;           // [T] accumulated dL_grad/dw
  int64_t grad_count_ = 0;
  at::Tensor last_g_, last_r_;
  double last_lgrad_ = 0.0;
};

}  // namespace janus::train
