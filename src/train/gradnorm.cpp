#include "janus/train/gradnorm.h"

#include <cmath>

#include <ATen/autocast_mode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <spdlog/spdlog.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/grad_mode.h>

#include "janus/core/error.h"

namespace janus::train {
namespace {

constexpr double kBeta1 = 0.9, kBeta2 = 0.999, kAdamEps = 1e-8;
constexpr double kMinWeight = 1e-6;  // weights are kept strictly positive before renormalising

at::Tensor float_cpu(int64_t n, double value = 0.0) { return at::full({n}, value, at::kFloat); }

const at::Tensor& need(const TensorMap& in, const std::string& key, at::IntArrayRef shape) {
  auto it = in.find(key);
  if (it == in.end()) throw_input_error("gradnorm: checkpoint key '{}' is missing", key);
  if (it->second.sizes() != shape)
    throw_input_error("gradnorm: checkpoint key '{}' has shape {}, expected {}", key,
                      c10::str(it->second.sizes()), c10::str(shape));
  return it->second;
}

}  // namespace

GradNorm::GradNorm(std::vector<std::string> task_names, double alpha, double lr)
    : names_(std::move(task_names)), alpha_(alpha), lr_(lr) {
  if (names_.empty()) throw_input_error("gradnorm: needs at least one task");
  if (!(lr_ > 0.0) || !std::isfinite(lr_)) throw_input_error("gradnorm: lr must be > 0, got {}", lr_);
  if (!std::isfinite(alpha_)) throw_input_error("gradnorm: alpha must be finite, got {}", alpha_);
  const auto T = static_cast<int64_t>(names_.size());
  w_ = float_cpu(T, 1.0);
  l0_ = float_cpu(T);
  exp_avg_ = float_cpu(T);
  exp_avg_sq_ = float_cpu(T);
  grad_sum_ = float_cpu(T);
}

at::Tensor GradNorm::combine(const std::vector<at::Tensor>& losses, const std::vector<at::Tensor>& shared_params) {
  const auto T = static_cast<int64_t>(names_.size());
  if (static_cast<int64_t>(losses.size()) != T)
    throw_input_error("gradnorm: got {} losses for {} tasks", losses.size(), T);
  if (shared_params.empty()) throw_input_error("gradnorm: no shared parameters given");
  for (size_t i = 0; i < losses.size(); ++i)
    if (!losses[i].defined() || losses[i].numel() != 1)
      throw_input_error("gradnorm: loss of task '{}' must be a defined scalar", names_[i]);

  // g_i = ||grad_W L_i|| (so G_i = w_i g_i, w_i > 0); only the shared parameters are differentiated.
  std::vector<at::Tensor> params;
  for (const auto& p : shared_params)
    if (p.defined() && p.requires_grad()) params.push_back(p);
  if (params.empty()) throw_input_error("gradnorm: none of the shared parameters requires grad");
  auto g = float_cpu(T);
  auto lt = float_cpu(T);
  {
    torch::autograd::AutoGradMode grad_on(true);
    for (int64_t i = 0; i < T; ++i) {
      const auto loss = losses[i].reshape({}).to(at::kFloat);
      lt[i] = loss.detach().cpu();
      if (!loss.requires_grad()) continue;  // a constant loss has zero gradient on W
      auto grads = torch::autograd::grad({loss}, params, {}, /*retain_graph=*/true, /*create_graph=*/false,
                                         /*allow_unused=*/true);
      at::Tensor sq = at::zeros({}, at::kDouble);
      for (const auto& gr : grads)
        if (gr.defined()) sq = sq + gr.detach().to(at::kDouble).pow(2).sum().cpu();
      g[i] = sq.sqrt().to(at::kFloat);
    }
  }

  const bool finite = at::isfinite(g).all().item<bool>() && at::isfinite(lt).all().item<bool>();
  if (!initialized_ && finite) {
    l0_ = lt.clone();
    initialized_ = true;
  }
  if (finite && initialized_) {
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    torch::autograd::AutoGradMode grad_on(true);
    auto ratio = lt / l0_;
    auto r = ratio / ratio.mean();
    auto w = w_.clone().requires_grad_(true);
    auto G = w * g;
    auto target = (G.detach().mean() * r.pow(alpha_)).detach();
    auto lgrad = (G - target).abs().sum();
    auto dw = torch::autograd::grad({lgrad}, {w})[0];
    grad_sum_ += dw.detach();
    ++grad_count_;
    last_g_ = G.detach().clone();
    last_r_ = r.detach().clone();
    last_lgrad_ = lgrad.item<double>();
  } else if (!finite) {
    spdlog::warn("gradnorm: non-finite loss or gradient norm, weight update skipped for this micro-batch");
  }

  const auto device = losses.front().device();
  const auto wd = w_.to(device);
  at::Tensor total;
  for (int64_t i = 0; i < T; ++i) {
    auto term = wd[i] * losses[i].reshape({}).to(at::kFloat);
    total = total.defined() ? total + term : term;
  }
  return total;
}

void GradNorm::step() {
  if (grad_count_ == 0) return;
  at::NoGradGuard no_grad;
  auto grad = grad_sum_ / static_cast<double>(grad_count_);
  // torch.optim.Adam (single tensor, no weight decay, no amsgrad), same operation order.
  ++adam_step_;
  exp_avg_.lerp_(grad, 1.0 - kBeta1);
  exp_avg_sq_.mul_(kBeta2).addcmul_(grad, grad, 1.0 - kBeta2);
  const double bc1 = 1.0 - std::pow(kBeta1, static_cast<double>(adam_step_));
  const double bc2 = 1.0 - std::pow(kBeta2, static_cast<double>(adam_step_));
  const double step_size = lr_ / bc1;
  auto denom = (exp_avg_sq_.sqrt() / std::sqrt(bc2)).add_(kAdamEps);
  w_.addcdiv_(exp_avg_, denom, -step_size);
  w_.clamp_min_(kMinWeight);
  w_.mul_(static_cast<double>(names_.size()) / w_.sum().item<double>());
  grad_sum_.zero_();
  grad_count_ = 0;
}

at::Tensor GradNorm::weights() const { return w_.clone(); }

void GradNorm::save(TensorMap& out, const std::string& prefix) const {
  out[prefix + "weights"] = w_.clone();
  out[prefix + "initial_losses"] = l0_.clone();
  out[prefix + "initialized"] = at::full({1}, initialized_ ? 1 : 0, at::kLong);
  out[prefix + "adam_exp_avg"] = exp_avg_.clone();
  out[prefix + "adam_exp_avg_sq"] = exp_avg_sq_.clone();
  out[prefix + "adam_step"] = at::full({1}, adam_step_, at::kLong);
  out[prefix + "grad_sum"] = grad_sum_.clone();
  out[prefix + "grad_count"] = at::full({1}, grad_count_, at::kLong);
}

void GradNorm::load(const TensorMap& in, const std::string& prefix) {
  const int64_t T = static_cast<int64_t>(names_.size());
  const std::vector<int64_t> vec{T}, one{1};
  auto f = [&](const char* key) { return need(in, prefix + key, vec).to(at::kCPU, at::kFloat).clone(); };
  auto i = [&](const char* key) { return need(in, prefix + key, one).to(at::kCPU, at::kLong).item<int64_t>(); };
  // Validate everything before touching the state.
  auto w = f("weights"), l0 = f("initial_losses"), m = f("adam_exp_avg"), v = f("adam_exp_avg_sq"),
       gs = f("grad_sum");
  const auto init = i("initialized"), step = i("adam_step"), count = i("grad_count");
  if (!(w > 0).all().item<bool>() || !at::isfinite(w).all().item<bool>())
    throw_input_error("gradnorm: checkpoint key '{}weights' holds non-positive or non-finite weights", prefix);
  w_ = w;
  l0_ = l0;
  exp_avg_ = m;
  exp_avg_sq_ = v;
  grad_sum_ = gs;
  initialized_ = init != 0;
  adam_step_ = step;
  grad_count_ = count;
}

}  // namespace janus::train
