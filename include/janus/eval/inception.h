#pragma once
// Inception-v3 in torchvision's `inception_v3` layout (parameter and buffer names identical, so a
// torchvision state_dict saved as safetensors loads strictly). Used for FID / Inception Score features; no
// weights ship with libjanus: load a user-supplied file with janus::load_module.
#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

namespace janus::eval {

struct InceptionV3Options {
  TORCH_ARG(int64_t, num_classes) = 1000;
  TORCH_ARG(bool, aux_logits) = false;       // registers AuxLogits.* (only run in training mode, as torchvision)
  TORCH_ARG(bool, transform_input) = false;  // torchvision's ImageNet-normalised -> [-1, 1] re-scaling
};

// conv (no bias) -> BatchNorm(eps 1e-3) -> ReLU; names conv.*, bn.*.
struct InceptionConvOptions {
  InceptionConvOptions(int64_t in, int64_t out, std::vector<int64_t> kernel, std::vector<int64_t> stride = {1, 1},
                       std::vector<int64_t> padding = {0, 0})
      : in_(in), out_(out), kernel_(std::move(kernel)), stride_(std::move(stride)), padding_(std::move(padding)) {}
  TORCH_ARG(int64_t, in);
  TORCH_ARG(int64_t, out);
  TORCH_ARG(std::vector<int64_t>, kernel);
  TORCH_ARG(std::vector<int64_t>, stride);
  TORCH_ARG(std::vector<int64_t>, padding);
};
class InceptionConvImpl : public torch::nn::Cloneable<InceptionConvImpl> {
 public:
  explicit InceptionConvImpl(InceptionConvOptions o) : options(std::move(o)) { reset(); }
  void reset() override;
  at::Tensor forward(const at::Tensor& x);  // [B, in, H, W] -> [B, out, H', W']
  InceptionConvOptions options;
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
};
TORCH_MODULE(InceptionConv);

struct InceptionV3Output {
  at::Tensor logits;  // [B, num_classes]
  at::Tensor pool;    // [B, 2048] (avg-pooled Mixed_7c, the FID feature)
  at::Tensor aux;     // [B, num_classes] in training mode with aux_logits, else undefined
};

class InceptionV3Impl : public torch::nn::Cloneable<InceptionV3Impl> {
 public:
  explicit InceptionV3Impl(InceptionV3Options o = {}) : options(std::move(o)) { reset(); }
  void reset() override;
  // Truncated-normal(std 0.1) conv/linear weights, BN weight 1 / bias 0 (torchvision's init_weights).
  void reset_parameters();
  // x: [B, 3, H, W] with H, W >= 75 -> logits [B, num_classes], pool [B, 2048].
  InceptionV3Output forward(const at::Tensor& x);
  InceptionV3Options options;

 private:
  std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>> blocks_;
  torch::nn::Linear fc_{nullptr};
  std::shared_ptr<torch::nn::Module> aux_;
};
TORCH_MODULE(InceptionV3);

}  // namespace janus::eval
