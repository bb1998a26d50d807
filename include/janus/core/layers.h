#pragma once
// Small building blocks shared by the areas.
#include <cstdint>
#include <string>

#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

namespace janus {

// Activation by name: "gelu" (erf), "gelu_tanh", "relu", "silu", "identity". InputError on others.
at::Tensor activation(const at::Tensor& x, const std::string& name);
void check_activation(const std::string& name);

struct MlpOptions {
  MlpOptions(int64_t in_features, int64_t hidden_features, int64_t out_features = 0)
      : in_features_(in_features), hidden_features_(hidden_features), out_features_(out_features) {}
  TORCH_ARG(int64_t, in_features);
  TORCH_ARG(int64_t, hidden_features);
  TORCH_ARG(int64_t, out_features) = 0;  // 0: same as in_features
  TORCH_ARG(std::string, act) = "gelu";
  TORCH_ARG(bool, bias) = true;
  TORCH_ARG(double, dropout) = 0.0;
};

// Two-layer MLP: fc2(drop(act(fc1(x)))). Names match timm's Mlp (fc1, fc2).
class MlpImpl : public torch::nn::Cloneable<MlpImpl> {
 public:
  explicit MlpImpl(const MlpOptions& options);
  void reset() override;
  // [*, in_features] -> [*, out_features]
  at::Tensor forward(const at::Tensor& x);

  MlpOptions options;
  torch::nn::Linear fc1{nullptr};
  torch::nn::Linear fc2{nullptr};
  torch::nn::Dropout drop{nullptr};
};
TORCH_MODULE(Mlp);

}  // namespace janus
