#pragma once
// Residual bottleneck adapter: x + up(gelu(down(x))). `up` is zero-initialised, so a fresh adapter is the
// identity and can be inserted into a trained model without changing its outputs.
#include <cstdint>

#include <ATen/ATen.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

namespace janus {

struct AdapterOptions {
  AdapterOptions(int64_t dim, int64_t bottleneck) : dim_(dim), bottleneck_(bottleneck) {}
  TORCH_ARG(int64_t, dim);
  TORCH_ARG(int64_t, bottleneck);
};

class AdapterImpl : public torch::nn::Cloneable<AdapterImpl> {
 public:
  explicit AdapterImpl(const AdapterOptions& options);
  void reset() override;
  void reset_parameters();  // down: torch Linear default init; up: zeros (weight and bias)
  // [*, dim] -> [*, dim]
  at::Tensor forward(const at::Tensor& x);

  AdapterOptions options;
  torch::nn::Linear down{nullptr};
  torch::nn::Linear up{nullptr};
};
TORCH_MODULE(Adapter);

}  // namespace janus
