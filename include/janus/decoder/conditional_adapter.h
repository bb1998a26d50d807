#pragma once
// One small parameter set per generation task (e.g. "text_to_image", "video_prediction"), picked at run time:
// x + up(act(down(x))) * scale with a per-task bottleneck; up is zero-initialised so every task starts as identity.
// Only the selected task's parameters enter the graph, so only they receive gradients.
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/moduledict.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

namespace janus {

struct ConditionalAdapterOptions {
  ConditionalAdapterOptions(int64_t dim, int64_t bottleneck) : dim_(dim), bottleneck_(bottleneck) {}
  TORCH_ARG(int64_t, dim);
  TORCH_ARG(int64_t, bottleneck);
  TORCH_ARG(std::vector<std::string>, tasks) = std::vector<std::string>({"text_to_image", "video_prediction"});
  TORCH_ARG(std::string, act) = "gelu";
};

// Keys: tasks.<task>.down.{weight,bias}, tasks.<task>.up.{weight,bias}, tasks.<task>.task_embed
class TaskAdapterImpl : public torch::nn::Cloneable<TaskAdapterImpl> {
 public:
  TaskAdapterImpl(int64_t dim, int64_t bottleneck, std::string act);
  void reset() override;
  at::Tensor forward(const at::Tensor& x);
  int64_t dim, bottleneck;
  std::string act;
  torch::nn::Linear down{nullptr}, up{nullptr};
  at::Tensor task_embed;  // [dim], added to the input: tells the shared backbone which task runs
};
TORCH_MODULE(TaskAdapter);

class ConditionalAdapterImpl : public torch::nn::Cloneable<ConditionalAdapterImpl> {
 public:
  explicit ConditionalAdapterImpl(const ConditionalAdapterOptions& options);
  void reset() override;
  // [*, dim] -> [*, dim] through the adapter of `task` (InputError naming the closest task if unknown).
  at::Tensor forward(const at::Tensor& x, const std::string& task);
  // The parameters of one task (e.g. to build an optimiser that trains only it).
  std::vector<at::Tensor> task_parameters(const std::string& task);
  ConditionalAdapterOptions options;
  torch::nn::ModuleDict tasks{nullptr};

 private:
  TaskAdapter& adapter(const std::string& task);
  std::vector<TaskAdapter> adapters_;
};
TORCH_MODULE(ConditionalAdapter);

}  // namespace janus
