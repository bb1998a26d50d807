#include "janus/decoder/conditional_adapter.h"

#include <torch/nn/init.h>

#include "janus/core/error.h"
#include "janus/core/layers.h"
#include "janus/core/text.h"

namespace janus {

TaskAdapterImpl::TaskAdapterImpl(int64_t dim_, int64_t bottleneck_, std::string act_)
    : dim(dim_), bottleneck(bottleneck_), act(std::move(act_)) {
  reset();
}

void TaskAdapterImpl::reset() {
  check_activation(act);
  down = register_module("down", torch::nn::Linear(dim, bottleneck));
  up = register_module("up", torch::nn::Linear(bottleneck, dim));
  task_embed = register_parameter("task_embed", at::zeros({dim}));
  torch::NoGradGuard g;
  torch::nn::init::zeros_(up->weight);
  torch::nn::init::zeros_(up->bias);
  torch::nn::init::normal_(task_embed, 0.0, 0.02);
}

at::Tensor TaskAdapterImpl::forward(const at::Tensor& x) {
  auto h = x + task_embed;
  return h + up->forward(activation(down->forward(h), act));
}

ConditionalAdapterImpl::ConditionalAdapterImpl(const ConditionalAdapterOptions& options_) : options(options_) { reset(); }

void ConditionalAdapterImpl::reset() {
  TORCH_CHECK(options.dim() > 0 && options.bottleneck() > 0, "conditional_adapter: dim and bottleneck must be > 0");
  TORCH_CHECK(!options.tasks().empty(), "conditional_adapter: at least one task is required");
  tasks = register_module("tasks", torch::nn::ModuleDict());
  adapters_.clear();
  for (const auto& t : options.tasks()) {
    TORCH_CHECK(!t.empty() && t.find('.') == std::string::npos, "conditional_adapter: bad task name '", t, "'");
    TORCH_CHECK(!tasks->contains(t), "conditional_adapter: duplicate task '", t, "'");
    adapters_.emplace_back(options.dim(), options.bottleneck(), options.act());
    tasks->update(std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>>{{t, adapters_.back().ptr()}});
  }
}

TaskAdapter& ConditionalAdapterImpl::adapter(const std::string& task) {
  for (size_t i = 0; i < options.tasks().size(); ++i) {
    if (options.tasks()[i] == task) return adapters_[i];
  }
  throw InputError(fmt::format("conditional_adapter: unknown task '{}'{}", task, [&] {
    auto c = closest_match(task, options.tasks());
    return c.empty() ? std::string() : fmt::format(" (did you mean '{}'?)", c);
  }()));
}

at::Tensor ConditionalAdapterImpl::forward(const at::Tensor& x, const std::string& task) {
  TORCH_CHECK(x.dim() >= 1 && x.size(-1) == options.dim(), "conditional_adapter: expected [*, ", options.dim(), "], got ",
              x.sizes());
  return adapter(task)->forward(x);
}

std::vector<at::Tensor> ConditionalAdapterImpl::task_parameters(const std::string& task) { return adapter(task)->parameters(); }

}  // namespace janus
