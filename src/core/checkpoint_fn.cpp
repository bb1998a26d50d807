#include "janus/core/checkpoint_fn.h"

#include <mutex>
#include <string>
#include <utility>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/ivalue.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/grad_mode.h>

namespace janus {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct CheckpointState : torch::CustomClassHolder {
  CheckpointFn fn;
  std::vector<at::Tensor> params;  // the live parameters fn uses (inputs 1..n of the node)
  std::vector<at::Generator> generators;
  std::vector<at::Tensor> states;  // forward-time generator states
  bool autocast_cpu = false, autocast_cuda = false;
  at::ScalarType dtype_cpu = at::kBFloat16, dtype_cuda = at::kHalf;
};

at::Tensor get_state(at::Generator& g) {
  std::lock_guard<std::mutex> lock(g.mutex());
  return g.get_state();
}

void set_state(at::Generator& g, const at::Tensor& s) {
  std::lock_guard<std::mutex> lock(g.mutex());
  g.set_state(s);
}

// Puts the generators and autocast into the forward-time state; restores the current state on destruction.
class ReplayGuard {
 public:
  explicit ReplayGuard(CheckpointState& st) : st_(st) {
    for (auto& g : st_.generators) now_.push_back(get_state(g));
    for (size_t i = 0; i < st_.generators.size(); ++i) set_state(st_.generators[i], st_.states[i]);
    prev_cpu_ = at::autocast::is_autocast_enabled(at::kCPU);
    prev_cuda_ = at::autocast::is_autocast_enabled(at::kCUDA);
    prev_dtype_cpu_ = at::autocast::get_autocast_dtype(at::kCPU);
    prev_dtype_cuda_ = at::autocast::get_autocast_dtype(at::kCUDA);
    at::autocast::set_autocast_enabled(at::kCPU, st_.autocast_cpu);
    at::autocast::set_autocast_enabled(at::kCUDA, st_.autocast_cuda);
    at::autocast::set_autocast_dtype(at::kCPU, st_.dtype_cpu);
    at::autocast::set_autocast_dtype(at::kCUDA, st_.dtype_cuda);
    if (st_.autocast_cpu || st_.autocast_cuda) at::autocast::increment_nesting();
  }
  ~ReplayGuard() {
    if (st_.autocast_cpu || st_.autocast_cuda) {
      // Cached low-precision weight copies of the recomputation must not outlive it.
      if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(at::kCPU, prev_cpu_);
    at::autocast::set_autocast_enabled(at::kCUDA, prev_cuda_);
    at::autocast::set_autocast_dtype(at::kCPU, prev_dtype_cpu_);
    at::autocast::set_autocast_dtype(at::kCUDA, prev_dtype_cuda_);
    for (size_t i = 0; i < now_.size(); ++i) set_state(st_.generators[i], now_[i]);
  }
  ReplayGuard(const ReplayGuard&) = delete;
  ReplayGuard& operator=(const ReplayGuard&) = delete;

 private:
  CheckpointState& st_;
  std::vector<at::Tensor> now_;
  bool prev_cpu_ = false, prev_cuda_ = false;
  at::ScalarType prev_dtype_cpu_ = at::kBFloat16, prev_dtype_cuda_ = at::kHalf;
};

class CheckpointFunction : public torch::autograd::Function<CheckpointFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, at::TensorList params,
                            const c10::intrusive_ptr<CheckpointState>& st) {
    // Function::apply runs this with grad mode off: no graph is recorded for fn.
    for (auto& g : st->generators) st->states.push_back(get_state(g));
    st->autocast_cpu = at::autocast::is_autocast_enabled(at::kCPU);
    st->autocast_cuda = at::autocast::is_autocast_enabled(at::kCUDA);
    st->dtype_cpu = at::autocast::get_autocast_dtype(at::kCPU);
    st->dtype_cuda = at::autocast::get_autocast_dtype(at::kCUDA);
    ctx->save_for_backward({x});
    ctx->saved_data["n_params"] = static_cast<int64_t>(params.size());
    st->params.assign(params.begin(), params.end());
    ctx->saved_data["state"] = c10::IValue::make_capsule(c10::static_intrusive_pointer_cast<torch::CustomClassHolder>(st));
    auto y = st->fn(x);
    TORCH_CHECK(y.defined(), "checkpoint: the checkpointed function returned an undefined tensor");
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto n_params = ctx->saved_data["n_params"].toInt();
    auto st = c10::static_intrusive_pointer_cast<CheckpointState>(ctx->saved_data["state"].toCapsule());
    variable_list result(static_cast<size_t>(n_params) + 2);  // x, params..., state (never a gradient)
    if (!grad_outputs[0].defined()) return result;

    const bool create_graph = at::GradMode::is_enabled();
    auto x = saved[0].detach().requires_grad_(saved[0].is_floating_point() || saved[0].is_complex());
    variable_list inputs;
    if (x.requires_grad()) inputs.push_back(x);
    // The parameters are the forward inputs 1..n_params; their live tensors are what fn uses.
    std::vector<int64_t> param_index;
    for (int64_t i = 0; i < n_params; ++i)
      if (ctx->needs_input_grad(static_cast<size_t>(i + 1))) param_index.push_back(i);
    at::Tensor y;
    {
      ReplayGuard replay(*st);
      torch::autograd::AutoGradMode grad_on(true);
      y = st->fn(x);
    }
    for (auto i : param_index) inputs.push_back(st->params[static_cast<size_t>(i)]);
    if (!y.requires_grad() || inputs.empty()) return result;
    auto grads = torch::autograd::grad({y}, inputs, {grad_outputs[0]}, /*retain_graph=*/create_graph, create_graph,
                                       /*allow_unused=*/true);
    size_t k = 0;
    if (x.requires_grad()) {
      if (ctx->needs_input_grad(0)) result[0] = grads[k];
      ++k;
    }
    for (auto i : param_index) result[static_cast<size_t>(i) + 1] = grads[k++];
    return result;
  }
};

}  // namespace

at::Tensor checkpoint(const CheckpointFn& fn, const at::Tensor& x, const std::vector<at::Tensor>& params,
                      const std::vector<at::Generator>& generators) {
  TORCH_CHECK(fn, "checkpoint: empty function");
  TORCH_CHECK(x.defined(), "checkpoint: undefined input");
  auto st = c10::make_intrusive<CheckpointState>();
  st->fn = fn;
  st->generators.push_back(at::detail::getDefaultCPUGenerator());
  if (x.is_cuda()) st->generators.push_back(at::globalContext().defaultGenerator(x.device()));
  for (const auto& g : generators)
    if (g.defined()) st->generators.push_back(g);
  std::vector<at::Tensor> trainable;
  for (const auto& p : params)
    if (p.defined() && p.requires_grad()) trainable.push_back(p);
  return CheckpointFunction::apply(x, at::TensorList(trainable), st);
}

std::vector<at::Tensor> trainable_parameters(const torch::nn::Module& module) {
  std::vector<at::Tensor> out;
  for (const auto& p : module.parameters(/*recurse=*/true))
    if (p.requires_grad()) out.push_back(p);
  return out;
}

bool use_checkpoint(bool flag, const torch::nn::Module& module) {
  return flag && module.is_training() && at::GradMode::is_enabled();
}

}  // namespace janus
