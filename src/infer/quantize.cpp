#include "janus/infer/quantize.h"

#include <fnmatch.h>

#include <atomic>
#include <cmath>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <unordered_map>

#include <ATen/ops/matmul_native.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/library.h>

#include "janus/core/error.h"
#include "janus/io/module_io.h"
#include "janus/io/safetensors.h"

namespace janus {

// ------------------------------------------------------------------ the aten::matmul hook
//
// LinearImpl::forward (compiled into libtorch) computes x.matmul(weight.t()) (+ bias). Quantised / captured layers
// register the data pointer of their weight here; the hook below runs for every aten::matmul on CPU/CUDA and hands
// matching calls to the layer. Everything else goes to ATen's own (composite, differentiable) matmul.
namespace {

struct Hook {
  QuantLinearImpl* quant = nullptr;                                   // quantised: placeholder weight (strides 0)
  std::function<at::Tensor(const at::Tensor&, const at::Tensor&)> capture;  // calibration: (x, weight^T) -> y
};

std::shared_mutex g_mu;
std::unordered_map<const void*, Hook> g_hooks;
std::atomic<int64_t> g_count{0};

void set_hook(const void* key, Hook h) {
  std::unique_lock<std::shared_mutex> lock(g_mu);
  if (g_hooks.emplace(key, std::move(h)).second) g_count.fetch_add(1);
}

void clear_hook(const void* key) {
  std::unique_lock<std::shared_mutex> lock(g_mu);
  if (g_hooks.erase(key) > 0) g_count.fetch_sub(1);
}

at::Tensor hooked_matmul(const at::Tensor& self, const at::Tensor& other) {
  if (g_count.load(std::memory_order_relaxed) > 0 && other.dim() == 2 && other.numel() > 0) {
    std::shared_lock<std::shared_mutex> lock(g_mu);
    const auto it = g_hooks.find(other.data_ptr());
    if (it != g_hooks.end()) {
      const bool placeholder = other.stride(0) == 0 && other.stride(1) == 0;
      if (it->second.quant && placeholder) return it->second.quant->forward(self);
      if (it->second.capture && !placeholder) return it->second.capture(self, other);
    }
  }
  return at::native::matmul(self, other);
}

TORCH_LIBRARY_IMPL(aten, CPU, m) { m.impl("matmul", TORCH_FN(hooked_matmul)); }
TORCH_LIBRARY_IMPL(aten, AutogradCPU, m) { m.impl("matmul", TORCH_FN(hooked_matmul)); }
TORCH_LIBRARY_IMPL(aten, CUDA, m) { m.impl("matmul", TORCH_FN(hooked_matmul)); }
TORCH_LIBRARY_IMPL(aten, AutogradCUDA, m) { m.impl("matmul", TORCH_FN(hooked_matmul)); }

// ------------------------------------------------------------------ quantisers (float32 CPU)

struct Q8 {
  at::Tensor q, scales;  // int8 [out, in], [out]
};
Q8 quant8(const at::Tensor& w) {
  const auto s = (w.abs().amax(1) / 127.0).clamp_min(1e-10);
  return {(w / s.unsqueeze(1)).round().clamp(-127, 127).to(at::kChar), s};
}

struct Q4 {
  at::Tensor q;   // int32 [out, in] in [0, 15]
  at::Tensor sz;  // [in/g, out, 2] (scale, zero)
};
Q4 quant4(const at::Tensor& w, int64_t g) {
  const int64_t out = w.size(0), in = w.size(1);
  const auto wg = w.view({out, in / g, g});
  const auto mn = wg.amin(-1, true), mx = wg.amax(-1, true);
  const auto scale = ((mx - mn) / 15.0).clamp_min(1e-10);
  const auto q = ((wg - mn) / scale).round().clamp(0, 15).to(at::kInt).view({out, in});
  const auto zero = mn + 8.0 * scale;
  const auto sz = at::stack({scale.squeeze(-1).t(), zero.squeeze(-1).t()}, -1).contiguous();
  return {q, sz};
}

at::Tensor dequant4(const at::Tensor& q, const at::Tensor& sz, int64_t g) {
  // q [out, in] int (0..15), sz [in/g, out, 2] -> [out, in]
  const auto scale = sz.select(-1, 0).t().repeat_interleave(g, 1);
  const auto zero = sz.select(-1, 1).t().repeat_interleave(g, 1);
  return (q.to(scale.scalar_type()) - 8.0) * scale + zero;
}

at::Tensor fake_quant(const at::Tensor& w, int bits, int64_t g) {
  if (bits == 8) {
    const auto r = quant8(w);
    return r.q.to(at::kFloat) * r.scales.unsqueeze(1);
  }
  const auto r = quant4(w, g);
  return dequant4(r.q, r.sz, g);
}

at::Tensor pack_nibbles(const at::Tensor& q) {  // int [out, in] 0..15 -> uint8 [out, in/2], low nibble = even col
  const auto e = q.slice(1, 0, q.size(1), 2).to(at::kByte), o = q.slice(1, 1, q.size(1), 2).to(at::kByte);
  return at::bitwise_or(e, at::bitwise_left_shift(o, 4)).contiguous();
}
at::Tensor unpack_nibbles(const at::Tensor& p) {  // uint8 [out, in/2] -> int32 [out, in]
  const auto lo = at::bitwise_and(p, 15).to(at::kInt), hi = at::bitwise_right_shift(p, 4).to(at::kInt);
  return at::stack({lo, hi}, -1).view({p.size(0), p.size(1) * 2});
}

bool glob_match(const std::string& pattern, const std::string& name) {
  return fnmatch(pattern.c_str(), name.c_str(), 0) == 0;
}

std::map<std::string, torch::nn::LinearImpl*> linear_modules(torch::nn::Module& model) {
  std::map<std::string, torch::nn::LinearImpl*> out;
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    if (auto* l = dynamic_cast<torch::nn::LinearImpl*>(item.value().get())) out[item.key()] = l;
  }
  return out;
}

void check_bits(int bits, int64_t group) {
  if (bits != 8 && bits != 4) throw_input_error("quantize: bits must be 8 or 4, got {}", bits);
  if (bits == 4 && group != 32 && group != 64 && group != 128) {
    throw_input_error("quantize: int4 group size must be 32, 64 or 128, got {}", group);
  }
}

// Hands `linear` over to `q`: registers q as child "quant", clears the bias member and puts the placeholder in.
void attach(torch::nn::LinearImpl& linear, QuantLinear q) {
  linear.register_module("quant", q);
  q->host = &linear;
  linear.bias = at::Tensor();
  q->prepare();
}

}  // namespace

// ------------------------------------------------------------------ QuantLinear

QuantLinearImpl::QuantLinearImpl(int64_t in, int64_t out, int b, int64_t g, bool with_bias)
    : in_features(in), out_features(out), group_size(g), bits(b), has_bias(with_bias) {
  check_bits(bits, group_size);
  if (bits == 4 && in % g != 0) throw_input_error("quantize: in_features {} is not a multiple of group {}", in, g);
  reset();
}

QuantLinearImpl::~QuantLinearImpl() {
  if (key_) clear_hook(key_);
}

void QuantLinearImpl::reset() {
  if (bits == 8) {
    qweight = register_buffer("qweight", at::zeros({out_features, in_features}, at::kChar));
    scales = register_buffer("scales", at::ones({out_features}));
  } else {
    qweight = register_buffer("qweight", at::zeros({out_features, in_features / 2}, at::kByte));
    scales = register_buffer("scales", at::zeros({in_features / group_size, out_features, 2}));
  }
  in_scale = register_buffer("in_scale", at::ones({in_features}));
  if (has_bias) bias = register_buffer("bias", at::zeros({out_features}));
}

void QuantLinearImpl::to(torch::Device device, torch::Dtype dtype, bool non_blocking) {
  qweight.set_data(qweight.to(device, /*non_blocking=*/non_blocking));
  for (auto* t : {&scales, &in_scale, &bias}) {
    if (t->defined()) t->set_data(t->to(device, dtype, non_blocking));
  }
  packed4_ = at::Tensor();
}
void QuantLinearImpl::to(torch::Dtype dtype, bool non_blocking) { to(qweight.device(), dtype, non_blocking); }
void QuantLinearImpl::to(torch::Device device, bool non_blocking) { to(device, scales.scalar_type(), non_blocking); }

at::Tensor QuantLinearImpl::dequantized_weight() const {
  at::Tensor w;
  if (bits == 8) {
    w = qweight.to(at::kFloat) * scales.to(at::kFloat).unsqueeze(1);
  } else {
    w = dequant4(unpack_nibbles(qweight), scales.to(at::kFloat), group_size);
  }
  return w * in_scale.to(at::kFloat).unsqueeze(0);
}

void QuantLinearImpl::prepare() {
  torch::NoGradGuard no_grad;
  // the placeholder: a zero-stride [out, in] view of one element on the model's device/dtype
  if (host) {
    const auto opts = host->weight.defined() ? host->weight.options() : scales.options();
    const auto ph = at::zeros({1}, opts).expand({out_features, in_features});
    if (key_) clear_hook(key_);
    host->weight.set_requires_grad(false);
    host->weight.set_(ph);
    key_ = host->weight.data_ptr();
    Hook h;
    h.quant = this;
    set_hook(key_, h);
  }
  packed4_ = at::Tensor();
  packed_ok_ = false;
  if (!use_packed_kernels || !qweight.is_cpu()) return;
  try {
    if (bits == 4) packed4_ = at::_convert_weight_to_int4pack_for_cpu(unpack_nibbles(qweight).contiguous(), 1);
    // probe: the packed kernel must agree with the fallback on this shape
    packed_ok_ = true;
    const auto x = at::randn({3, in_features}, at::TensorOptions().dtype(scales.scalar_type()));
    const auto a = forward(x), b = forward_fallback(x);
    const double err = (a.to(at::kFloat) - b.to(at::kFloat)).abs().max().item<double>();
    const double ref = b.to(at::kFloat).abs().max().item<double>() + 1e-6;
    const double tol = 3e-2;  // the packed path computes in bf16
    if (!(err <= tol * ref)) {
      spdlog::warn("QuantLinear [{}x{}] int{}: packed kernel disagrees with the fallback (rel {}), not used",
                   out_features, in_features, bits, err / ref);
      packed_ok_ = false;
    }
  } catch (const c10::Error& e) {
    spdlog::debug("QuantLinear [{}x{}] int{}: packed kernel unavailable ({}), using the fallback", out_features,
                  in_features, bits, e.what_without_backtrace());
    packed_ok_ = false;
    packed4_ = at::Tensor();
  }
}

bool QuantLinearImpl::packed_kernel_used() const { return packed_ok_ && use_packed_kernels; }

at::Tensor QuantLinearImpl::forward_fallback(const at::Tensor& x) {
  TORCH_CHECK(x.size(-1) == in_features, "QuantLinear: input has ", x.size(-1), " features, expected ", in_features);
  const auto dt = x.scalar_type();
  at::Tensor w;
  if (bits == 8) {
    w = qweight.to(dt) * scales.to(dt).unsqueeze(1);
  } else {
    w = dequant4(unpack_nibbles(qweight), scales.to(dt), group_size).to(dt);
  }
  auto y = at::native::matmul(x * in_scale.to(dt), w.t());
  if (bias.defined()) y = y + bias.to(dt);
  return y;
}

at::Tensor QuantLinearImpl::forward(const at::Tensor& x) {
  const auto dt = x.scalar_type();
  const bool float_in = dt == at::kFloat || dt == at::kBFloat16 || dt == at::kHalf;
  if (!packed_kernel_used() || !x.is_cpu() || !float_in) return forward_fallback(x);
  // Beyond a few dozen rows the packed kernels lose to dequantise + GEMM on this CPU (docs/bench_quant.md).
  if (x.numel() / std::max<int64_t>(in_features, 1) > packed_max_rows) return forward_fallback(x);
  TORCH_CHECK(x.size(-1) == in_features, "QuantLinear: input has ", x.size(-1), " features, expected ", in_features);
  auto shape = x.sizes().vec();
  // ATen's packed CPU kernels are vectorised for bf16/fp16 activations only (their fp32 path is a scalar loop,
  // 10-100x slower than an fp32 GEMM on this CPU; docs/bench_quant.md), so fp32 activations are computed in bf16.
  const auto cd = dt == at::kFloat ? at::kBFloat16 : dt;
  const auto x2 = (x.reshape({-1, in_features}) * in_scale.to(dt)).to(cd).contiguous();
  at::Tensor y;
  if (bits == 8) {
    y = at::_weight_int8pack_mm(x2, qweight, scales.to(cd));
  } else {
    y = at::_weight_int4pack_mm_for_cpu(x2, packed4_, group_size, scales.to(cd).contiguous());
  }
  y = y.to(dt);
  if (bias.defined()) y = y + bias.to(dt);
  shape.back() = out_features;
  return y.view(shape);
}

QuantLinear quantize_linear(const torch::nn::LinearImpl& linear, int bits, int64_t group_size,
                            const at::Tensor& awq_scale) {
  torch::NoGradGuard no_grad;
  const auto w = linear.weight.detach().to(at::kFloat).cpu();
  const int64_t out = w.size(0), in = w.size(1);
  QuantLinear q(in, out, bits, group_size, linear.bias.defined());
  auto ws = w;
  if (awq_scale.defined()) {
    const auto s = awq_scale.to(at::kFloat).cpu();
    ws = w * s.unsqueeze(0);
    q->in_scale.copy_(1.0 / s);
  }
  if (bits == 8) {
    const auto r = quant8(ws);
    q->qweight.copy_(r.q);
    q->scales.copy_(r.scales);
  } else {
    const auto r = quant4(ws, group_size);
    q->qweight.copy_(pack_nibbles(r.q));
    q->scales.copy_(r.sz);
  }
  if (linear.bias.defined()) q->bias.copy_(linear.bias.detach().to(at::kFloat).cpu());
  return q;
}

AwqResult awq_search(const at::Tensor& weight, const at::Tensor& bias, const at::Tensor& x, int bits,
                     int64_t group_size, int64_t grid) {
  torch::NoGradGuard no_grad;
  check_bits(bits, group_size);
  if (grid < 1) throw_input_error("awq: grid must be >= 1");
  const auto w = weight.to(at::kFloat).cpu();
  const auto xs = x.to(at::kFloat).cpu().reshape({-1, w.size(1)});
  (void)bias;  // the bias is not quantised: it cancels in the output error
  const auto ref = at::native::matmul(xs, w.t());
  const auto act = xs.abs().mean(0).clamp_min(1e-6);
  AwqResult best;
  for (int64_t i = 0; i <= grid; ++i) {
    const double alpha = static_cast<double>(i) / static_cast<double>(grid);
    auto s = act.pow(alpha);
    s = s / (s.max() * s.min()).sqrt();
    const auto wq = fake_quant(w * s.unsqueeze(0), bits, group_size);
    const auto y = at::native::matmul(xs / s, wq.t());
    const double mse = (y - ref).pow(2).mean().item<double>();
    if (i == 0) {
      best.mse_plain = mse;
      best.mse_best = mse;
      best.alpha = 0;
      best.scale = at::ones_like(s);
    } else if (mse < best.mse_best) {
      best.mse_best = mse;
      best.alpha = alpha;
      best.scale = s;
    }
  }
  return best;
}

std::map<std::string, at::Tensor> capture_linear_inputs(torch::nn::Module& model,
                                                        const std::function<void()>& run_calibration,
                                                        int64_t max_rows) {
  struct Slot {
    std::string name;
    torch::nn::LinearImpl* linear;
    at::Tensor bias;
    std::vector<at::Tensor> rows;
    int64_t n = 0;
  };
  std::mutex mu;
  std::vector<std::unique_ptr<Slot>> slots;
  std::vector<const void*> keys;
  const int64_t budget = std::max<int64_t>(max_rows, 1) * 8;
  for (auto& [name, l] : linear_modules(model)) {
    if (!l->named_children().is_empty()) continue;  // already quantised
    const void* key = l->weight.data_ptr();
    bool taken = false;
    for (const auto* k : keys) taken = taken || k == key;
    if (taken) continue;  // tied weights: the first name records
    auto slot = std::make_unique<Slot>();
    slot->name = name;
    slot->linear = l;
    slot->bias = l->bias;
    l->bias = at::Tensor();  // route 2-D inputs through matmul too (bias added by the hook)
    Slot* sp = slot.get();
    Hook h;
    h.capture = [sp, &mu, budget](const at::Tensor& x, const at::Tensor& wt) {
      {
        std::lock_guard<std::mutex> lock(mu);
        if (sp->n < budget) {
          auto r = x.detach().reshape({-1, x.size(-1)}).to(at::kFloat).cpu();
          if (sp->n + r.size(0) > budget) r = r.slice(0, 0, budget - sp->n);
          sp->n += r.size(0);
          sp->rows.push_back(r);
        }
      }
      auto y = at::native::matmul(x, wt);
      if (sp->bias.defined()) y = y + sp->bias;
      return y;
    };
    set_hook(key, h);
    keys.push_back(key);
    slots.push_back(std::move(slot));
  }
  auto restore = [&]() {
    for (const auto* k : keys) clear_hook(k);
    for (auto& s : slots) s->linear->bias = s->bias;
  };
  try {
    run_calibration();
  } catch (...) {
    restore();
    throw;
  }
  restore();
  std::map<std::string, at::Tensor> out;
  for (auto& s : slots) {
    if (s->rows.empty()) continue;
    auto x = at::cat(s->rows, 0);
    if (x.size(0) > max_rows) x = x.index_select(0, at::linspace(0, x.size(0) - 1, max_rows).round().to(at::kLong));
    out[s->name] = x;
  }
  return out;
}

std::string QuantizeReport::summary() const {
  return fmt::format("{} Linear layers quantised, {} kept fp32; weights {:.2f} MB -> {:.2f} MB", quantized.size(),
                     skipped.size(), fp32_bytes / 1e6, quant_bytes / 1e6);
}

QuantizeReport quantize_model(torch::nn::Module& model, const QuantizeOptions& options,
                              const std::map<std::string, at::Tensor>& calib) {
  check_bits(options.bits, options.group_size);
  torch::NoGradGuard no_grad;
  QuantizeReport rep;
  rep.spec = {{"format", "janus-wq-1"},
              {"bits", options.bits},
              {"group_size", options.bits == 4 ? options.group_size : 0},
              {"awq", options.awq},
              {"awq_grid", options.awq_grid},
              {"layers", nlohmann::json::object()}};
  for (auto& [name, l] : linear_modules(model)) {
    if (!l->named_children().is_empty()) {
      rep.skipped.push_back(name + " (already quantised)");
      continue;
    }
    const int64_t out = l->weight.size(0), in = l->weight.size(1);
    bool skip = false;
    for (const auto& p : options.skip) skip = skip || glob_match(p, name);
    if (skip) {
      rep.skipped.push_back(name + " (skip pattern)");
      continue;
    }
    if (in < options.min_features || out < options.min_features) {
      rep.skipped.push_back(fmt::format("{} ({}x{} below min_features {})", name, out, in, options.min_features));
      continue;
    }
    if (options.bits == 4 && in % options.group_size != 0) {
      rep.skipped.push_back(fmt::format("{} (in_features {} not a multiple of {})", name, in, options.group_size));
      continue;
    }
    at::Tensor s;
    double alpha = 0;
    const auto it = calib.find(name);
    if (options.awq && it != calib.end()) {
      const auto r = awq_search(l->weight, l->bias, it->second, options.bits, options.group_size, options.awq_grid);
      if (r.alpha > 0) s = r.scale;
      alpha = r.alpha;
      rep.awq_alpha[name] = alpha;
    }
    auto q = quantize_linear(*l, options.bits, options.group_size, s);
    q->use_packed_kernels = options.use_packed_kernels;
    q->to(l->weight.device(), l->weight.scalar_type());
    rep.fp32_bytes += out * in * 4;
    rep.quant_bytes += q->qweight.numel() + q->scales.numel() * 4 + in * 4;
    rep.spec["layers"][name] = {{"in", in}, {"out", out}, {"bias", l->bias.defined()}, {"alpha", alpha}};
    attach(*l, q);
    rep.quantized.push_back(name);
  }
  spdlog::info("quantize: {}", rep.summary());
  return rep;
}

void apply_quant_spec(torch::nn::Module& model, const nlohmann::json& spec) {
  try {
    if (spec.value("format", "") != "janus-wq-1") {
      throw_input_error("quant.json: unknown format '{}' (expected janus-wq-1)", spec.value("format", ""));
    }
    const int bits = spec.at("bits").get<int>();
    const int64_t group = spec.value("group_size", int64_t{0});
    check_bits(bits, bits == 4 ? group : 128);
    auto linears = linear_modules(model);
    for (const auto& [name, layer] : spec.at("layers").items()) {
      const auto it = linears.find(name);
      if (it == linears.end()) throw_input_error("quant.json: the model has no Linear layer '{}'", name);
      auto* l = it->second;
      const int64_t in = layer.at("in").get<int64_t>(), out = layer.at("out").get<int64_t>();
      if (l->weight.size(0) != out || l->weight.size(1) != in) {
        throw_input_error("quant.json: layer '{}' is {}x{} but the model's is {}x{}", name, out, in,
                          l->weight.size(0), l->weight.size(1));
      }
      QuantLinear q(in, out, bits, bits == 4 ? group : 128, layer.at("bias").get<bool>());
      attach(*l, q);
    }
  } catch (const nlohmann::json::exception& e) {
    throw_input_error("quant.json: {}", e.what());
  }
}

std::vector<std::pair<std::string, QuantLinear>> quantized_layers(torch::nn::Module& model) {
  std::vector<std::pair<std::string, QuantLinear>> out;
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    if (auto q = std::dynamic_pointer_cast<QuantLinearImpl>(item.value())) {
      const auto& k = item.key();
      out.emplace_back(k.size() > 6 ? k.substr(0, k.size() - 6) : k, QuantLinear(q));  // strip ".quant"
    }
  }
  return out;
}

void save_quantized_weights(torch::nn::Module& model, const nlohmann::json& spec, const std::string& path) {
  std::set<std::string> hosts;
  for (auto& [name, q] : quantized_layers(model)) {
    hosts.insert(name + ".weight");
    hosts.insert(name + ".bias");
  }
  TensorMap tensors;
  for (const auto& [k, v] : module_state(model)) {
    if (hosts.count(k) == 0) tensors[k] = v.detach().cpu().contiguous();
  }
  save_safetensors(path, tensors, {{"format", "janus-wq-1"}, {"quant", spec.dump()}});
}

void load_quantized_weights(torch::nn::Module& model, const std::string& path) {
  LoadOptions lo;
  lo.strict = false;
  const auto rep = load_module(model, path, lo);
  std::set<std::string> allowed;
  for (auto& [name, q] : quantized_layers(model)) {
    allowed.insert(name + ".weight");
    allowed.insert(name + ".bias");
  }
  std::vector<std::string> missing;
  for (const auto& m : rep.missing) {
    if (allowed.count(m) == 0) missing.push_back(m);
  }
  if (!missing.empty() || !rep.unexpected.empty() || !rep.mismatched.empty()) {
    LoadReport r = rep;
    r.missing = missing;
    throw_input_error("quantised weights '{}' do not match the model: {}", path, r.summary());
  }
  for (auto& [name, q] : quantized_layers(model)) q->prepare();
}

void verify_quantized_model(torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  for (auto& [name, q] : quantized_layers(model)) {
    TORCH_CHECK(q->host, "QuantLinear ", name, " has no host Linear");
    const auto x = at::randn({2, 3, q->in_features}, q->host->weight.options());
    const auto a = q->host->forward(x);
    const auto b = q->forward(x);
    if (!at::allclose(a.to(at::kFloat), b.to(at::kFloat), 1e-4, 1e-4)) {
      throw_error("quantised layer '{}' does not route to its QuantLinear (LinearImpl::forward changed?)", name);
    }
  }
}

}  // namespace janus
