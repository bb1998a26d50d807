#include "janus/train/optim.h"

#include <cmath>
#include <map>
#include <set>

#include <ATen/ATen.h>
#include <torch/nn/modules/embedding.h>

#include "janus/core/error.h"

namespace janus::train {

namespace {

std::string last_component(const std::string& name) {
  const auto pos = name.rfind('.');
  return pos == std::string::npos ? name : name.substr(pos + 1);
}

std::set<std::string> embedding_weights(const torch::nn::Module& module) {
  std::set<std::string> out;
  for (const auto& item : module.named_modules("", /*include_self=*/true)) {
    const auto* m = item.value().get();
    if (dynamic_cast<const torch::nn::EmbeddingImpl*>(m) || dynamic_cast<const torch::nn::EmbeddingBagImpl*>(m)) {
      out.insert(item.key().empty() ? "weight" : item.key() + ".weight");
    }
  }
  return out;
}

}  // namespace

bool is_no_decay(const std::string& name, const at::Tensor& param, bool in_embedding_module) {
  static const std::set<std::string> kNames{
      "pos_embed",          "cls_token",           "mask_token",         "dist_token",
      "position_embedding", "position_embeddings", "absolute_pos_embed", "relative_position_bias_table"};
  return param.dim() <= 1 || in_embedding_module || kNames.count(last_component(name)) != 0;
}

NamedParams ParamGroups::all() const {
  NamedParams out = decay;
  out.insert(out.end(), no_decay.begin(), no_decay.end());
  return out;
}

ParamGroups split_param_groups(const torch::nn::Module& module, const NamedParams& params) {
  const auto emb = embedding_weights(module);
  ParamGroups g;
  for (const auto& [name, p] : params) {
    if (!p.requires_grad()) continue;
    (is_no_decay(name, p, emb.count(name) != 0) ? g.no_decay : g.decay).emplace_back(name, p);
  }
  return g;
}

void NamedOptimizer::set_lr(double lr) {
  auto& pg = optimizer->param_groups();
  for (size_t i = 0; i < pg.size(); ++i)
    static_cast<torch::optim::AdamWOptions&>(pg[i].options()).lr(lr * (i < lr_scale.size() ? lr_scale[i] : 1.0));
}

double NamedOptimizer::lr() const {
  // The scheduled lr, read back from the first group whose lr is not scaled to zero.
  const auto& pg = optimizer->param_groups();
  for (size_t i = 0; i < pg.size(); ++i) {
    const double scale = i < lr_scale.size() ? lr_scale[i] : 1.0;
    if (scale > 0) return static_cast<const torch::optim::AdamWOptions&>(pg[i].options()).lr() / scale;
  }
  return 0.0;
}

std::vector<at::Tensor> NamedOptimizer::params() const {
  std::vector<at::Tensor> out;
  for (const auto& [n, p] : groups.all()) out.push_back(p);
  return out;
}

void NamedOptimizer::save_state(TensorMap& out, const std::string& prefix) const {
  auto& state = optimizer->state();
  for (const auto& [name, p] : groups.all()) {
    auto it = state.find(p.unsafeGetTensorImpl());
    if (it == state.end()) continue;
    const auto& s = static_cast<const torch::optim::AdamWParamState&>(*it->second);
    out[prefix + name + ".exp_avg"] = s.exp_avg().detach();
    out[prefix + name + ".exp_avg_sq"] = s.exp_avg_sq().detach();
    out[prefix + name + ".step"] = at::scalar_tensor(s.step(), at::kLong);
  }
}

void NamedOptimizer::load_state(const TensorMap& in, const std::string& prefix) {
  auto& state = optimizer->state();
  state.clear();
  for (const auto& [name, p] : groups.all()) {
    const auto a = in.find(prefix + name + ".exp_avg");
    const auto b = in.find(prefix + name + ".exp_avg_sq");
    const auto s = in.find(prefix + name + ".step");
    if (a == in.end() && b == in.end() && s == in.end()) continue;
    if (a == in.end() || b == in.end() || s == in.end()) {
      throw_input_error("checkpoint: optimizer '{}' state of '{}' is incomplete", this->name, name);
    }
    if (a->second.sizes() != p.sizes() || b->second.sizes() != p.sizes()) {
      throw_input_error("checkpoint: optimizer '{}' state of '{}' has shape {} but the parameter has {}", this->name,
                        name, c10::str(a->second.sizes()), c10::str(p.sizes()));
    }
    auto st = std::make_unique<torch::optim::AdamWParamState>();
    st->step(s->second.item<int64_t>());
    st->exp_avg(a->second.to(p.device(), p.scalar_type()).clone());
    st->exp_avg_sq(b->second.to(p.device(), p.scalar_type()).clone());
    state[p.unsafeGetTensorImpl()] = std::move(st);
  }
}

bool has_name_prefix(const std::string& name, const std::string& prefix) {
  return name == prefix || name.rfind(prefix + ".", 0) == 0;
}

NamedOptimizer make_adamw(const std::string& name, const torch::nn::Module& module, const NamedParams& params,
                          double lr, double weight_decay, double beta1, double beta2, double eps,
                          const std::vector<OptimOverride>& overrides) {
  NamedOptimizer o;
  o.name = name;
  o.base_lr = lr;
  o.groups = split_param_groups(module, params);
  // Bucket 0..n-1: the overrides in order (first match wins); bucket n: everything else.
  const size_t n = overrides.size();
  std::vector<std::vector<at::Tensor>> decay(n + 1), no_decay(n + 1);
  std::vector<int64_t> matched(n, 0);
  auto bucket = [&](const std::string& param) {
    for (size_t i = 0; i < n; ++i) {
      if (has_name_prefix(param, overrides[i].prefix)) return i;
    }
    return n;
  };
  for (auto [from, to] : {std::pair{&o.groups.decay, &decay}, std::pair{&o.groups.no_decay, &no_decay}}) {
    for (const auto& [pn, p] : *from) {
      const auto b = bucket(pn);
      (*to)[b].push_back(p);
      if (b < n) ++matched[b];
    }
  }
  for (size_t i = 0; i < n; ++i)
    if (matched[i] == 0)
      throw_input_error(
          "optim.overrides[{}]: '{}' matches no trainable parameter of optimizer '{}' (frozen, misspelt, or "
          "claimed by another optimizer?)",
          i, overrides[i].prefix, name);
  const auto base = torch::optim::AdamWOptions(lr).betas({beta1, beta2}).eps(eps).weight_decay(weight_decay);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  for (size_t b = 0; b <= n; ++b) {
    auto opts = base;
    double scale = 1.0;
    if (b < n) {
      const auto& ov = overrides[b];
      scale = ov.lr_scale;
      opts.lr(lr * scale);
      opts.betas({ov.beta1.value_or(beta1), ov.beta2.value_or(beta2)});
      if (ov.weight_decay) opts.weight_decay(*ov.weight_decay);
    }
    if (!decay[b].empty()) {
      groups.emplace_back(decay[b], std::make_unique<torch::optim::AdamWOptions>(opts));
      o.lr_scale.push_back(scale);
    }
    if (!no_decay[b].empty()) {
      auto nd = opts;
      nd.weight_decay(0.0);
      groups.emplace_back(no_decay[b], std::make_unique<torch::optim::AdamWOptions>(nd));
      o.lr_scale.push_back(scale);
    }
  }
  o.optimizer = std::make_unique<torch::optim::AdamW>(groups, base);
  return o;
}

double LrSchedule::factor(int64_t step) const {
  if (warmup_steps > 0 && step < warmup_steps) return static_cast<double>(step + 1) / warmup_steps;
  const double span = static_cast<double>(std::max<int64_t>(1, total_steps - warmup_steps));
  const double t = std::clamp((step - warmup_steps) / span, 0.0, 1.0);
  if (name == "cosine") return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + std::cos(M_PI * t));
  if (name == "linear") return 1 - (1 - min_lr_ratio) * t;
  if (name == "constant") return 1.0;
  throw_input_error("schedule.name: unknown schedule '{}' (cosine, linear, constant)", name);
}

GradScaler::GradScaler(bool enabled, double init_scale, double growth_factor, double backoff_factor,
                       int64_t growth_interval)
    : enabled_(enabled),
      growth_factor_(growth_factor),
      backoff_factor_(backoff_factor),
      growth_interval_(growth_interval),
      scale_(at::full({1}, enabled ? init_scale : 1.0, at::kFloat)),
      growth_tracker_(at::zeros({1}, at::kInt)) {}

at::Tensor GradScaler::scale(const at::Tensor& loss) {
  if (!enabled_) return loss;
  if (scale_.device() != loss.device()) {
    scale_ = scale_.to(loss.device());
    growth_tracker_ = growth_tracker_.to(loss.device());
  }
  return loss * scale_.to(loss.scalar_type());
}

bool GradScaler::unscale(const std::vector<at::Tensor>& params) {
  // Gradients grouped by device: the fused kernel wants found_inf and inv_scale on the grads' device.
  std::map<std::string, std::vector<at::Tensor>> by_device;
  for (const auto& p : params) {
    if (p.grad().defined()) by_device[p.grad().device().str()].push_back(p.grad());
  }
  bool finite = true;
  for (auto& [dev, grads] : by_device) {
    const auto device = grads.front().device();
    auto found_inf = at::zeros({1}, at::TensorOptions().dtype(at::kFloat).device(device));
    auto inv =
        enabled_ ? scale_.to(device).to(at::kDouble).reciprocal().to(at::kFloat) : at::ones({1}, found_inf.options());
    at::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf, inv);
    if (found_inf.item<float>() != 0.0f) finite = false;
  }
  return finite;
}

void GradScaler::update(bool found_inf) {
  if (!enabled_) return;
  auto fi = at::full({1}, found_inf ? 1.0 : 0.0, scale_.options());
  at::_amp_update_scale_(scale_, growth_tracker_, fi, growth_factor_, backoff_factor_, growth_interval_);
}

double GradScaler::scale_value() const { return scale_.item<double>(); }

void GradScaler::save_state(TensorMap& out, const std::string& prefix) const {
  out[prefix + "scale"] = scale_.cpu();
  out[prefix + "growth_tracker"] = growth_tracker_.cpu();
}

void GradScaler::load_state(const TensorMap& in, const std::string& prefix) {
  const auto s = in.find(prefix + "scale");
  const auto g = in.find(prefix + "growth_tracker");
  if (s == in.end() || g == in.end()) throw_input_error("checkpoint: grad scaler state '{}' missing", prefix);
  scale_ = s->second.to(scale_.device(), at::kFloat).clone().reshape({1});
  growth_tracker_ = g->second.to(growth_tracker_.device(), at::kInt).clone().reshape({1});
}

Ema::Ema(const NamedParams& params, double decay) : decay_(decay) {
  for (const auto& [n, p] : params) shadow_[n] = p.detach().to(at::kFloat).clone();
}

void Ema::update(const NamedParams& params) {
  at::NoGradGuard ng;
  for (const auto& [n, p] : params) {
    auto& s = shadow_.at(n);
    s.mul_(decay_).add_(p.detach().to(at::kFloat), 1.0 - decay_);
  }
}

void Ema::save_state(TensorMap& out, const std::string& prefix) const {
  for (const auto& [n, s] : shadow_) out[prefix + n] = s;
}

void Ema::load_state(const TensorMap& in, const std::string& prefix) {
  for (auto& [n, s] : shadow_) {
    const auto it = in.find(prefix + n);
    if (it == in.end()) throw_input_error("checkpoint: EMA weights of '{}' missing", n);
    if (it->second.sizes() != s.sizes()) throw_input_error("checkpoint: EMA weights of '{}' have the wrong shape", n);
    s.copy_(it->second);
  }
}

double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm) {
  std::vector<at::Tensor> grads, norms;
  for (const auto& p : params) {
    if (p.grad().defined()) {
      grads.push_back(p.grad());
      norms.push_back(at::linalg_vector_norm(p.grad().detach(), 2, std::nullopt, false, at::kFloat));
    }
  }
  if (grads.empty()) return 0.0;
  const auto total = at::linalg_vector_norm(at::stack(norms), 2);
  if (max_norm > 0) {
    const auto coef = (max_norm / (total + 1e-6)).clamp_max(1.0);
    for (auto& g : grads) g.mul_(coef.to(g.device(), g.scalar_type()));
  }
  return total.item<double>();
}

std::string top_module_of(const std::string& param) {
  const auto pos = param.find('.');
  return pos == std::string::npos ? "<root>" : param.substr(0, pos);
}

std::map<std::string, double> clip_grad_norm_by_module(const NamedParams& params, double max_norm) {
  std::map<std::string, std::vector<at::Tensor>> by_module;
  for (const auto& [name, p] : params)
    if (p.grad().defined()) by_module[top_module_of(name)].push_back(p);
  std::map<std::string, double> norms;
  for (const auto& [module, ps] : by_module) norms[module] = clip_grad_norm(ps, max_norm);
  return norms;
}

}  // namespace janus::train
