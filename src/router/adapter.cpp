#include "janus/router/adapter.h"

#include <torch/nn/init.h>

namespace janus {

AdapterImpl::AdapterImpl(const AdapterOptions& options_) : options(options_) { reset(); }

void AdapterImpl::reset() {
  TORCH_CHECK(options.dim() > 0 && options.bottleneck() > 0, "adapter: dim ", options.dim(), " and bottleneck ",
              options.bottleneck(), " must be positive");
  down = register_module("down", torch::nn::Linear(options.dim(), options.bottleneck()));
  up = register_module("up", torch::nn::Linear(options.bottleneck(), options.dim()));
  reset_parameters();
}

void AdapterImpl::reset_parameters() {
  torch::NoGradGuard g;
  up->weight.zero_();
  up->bias.zero_();
}

at::Tensor AdapterImpl::forward(const at::Tensor& x) {
  TORCH_CHECK(x.dim() >= 1 && x.size(-1) == options.dim(), "adapter: expected [*, ", options.dim(), "], got ",
              x.sizes());
  return x + up->forward(at::gelu(down->forward(x)));
}

}  // namespace janus
