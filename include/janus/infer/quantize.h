#pragma once
// Weight-only quantisation of nn::Linear layers (docs/inference.md#quantisation).
//
//   int8: per-output-channel symmetric, q = round(w / s) in [-127, 127], s = max|w_row| / 127.
//   int4: group-wise asymmetric along the input dimension (group 32/64/128): per group of `group` inputs of one
//         output row, scale = (max - min) / 15 and q = round((w - min) / scale) in [0, 15]; dequantised
//         w = (q - 8) * scale + zero with zero = min + 8 * scale (the layout of ATen's int4 CPU kernel).
//   AWQ:  per-input-channel scales s = mean|x|^alpha (normalised so sqrt(max s * min s) = 1), alpha searched on a
//         grid over [0, 1] minimising the layer's output MSE on calibration activations; the weight is quantised as
//         W * diag(s) and the input is multiplied by 1/s at run time (kept as an input multiplier `in_scale`, not
//         folded into the preceding op). alpha = 0 is plain rounding, so the search never does worse on the
//         calibration data.
//
// Execution: CPU uses ATen's packed kernels (at::_weight_int8pack_mm, at::_convert_weight_to_int4pack_for_cpu +
// at::_weight_int4pack_mm_for_cpu); elsewhere (CUDA, shapes the kernels reject) the weight is dequantised to the
// activation dtype and multiplied (correct, not fast).
//
// How a quantised layer replaces a Linear "in place": LibTorch's LinearImpl::forward is not virtual, so the model's
// code keeps calling it. A quantised LinearImpl gets a QuantLinear child ("<name>.quant": qweight, scales,
// in_scale, bias) and its `weight` member is replaced by a zero-stride placeholder of the same shape (no memory);
// its `bias` member is cleared so LinearImpl::forward computes x.matmul(weight.t()). libjanus registers an
// aten::matmul kernel (CPU/CUDA and their autograd keys) that recognises the placeholder and calls QuantLinear;
// every other matmul goes to ATen's own implementation unchanged. verify_quantized_model() checks the route on every
// layer. Do not clone() a quantised model (the clone's placeholders are not registered).
//
// On disk (janus_quantize output): a run directory with the original model.json / tokenizer.model / answers.json /
// config.yaml, quant.json (format, bits, group size, AWQ settings, per-layer shapes) and final/model.safetensors
// holding every non-quantised tensor plus, per quantised layer, <name>.quant.{qweight, scales, in_scale, bias}
// (no <name>.weight). int4 qweight is stored portably as uint8 [out, in / 2] (low nibble = even column); the ATen
// CPU packing is done at load time.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

namespace janus {

struct QuantizeOptions {
  int bits = 8;                // 8 or 4
  int64_t group_size = 128;    // int4 only: 32, 64 or 128 (must divide in_features; else the layer is skipped)
  bool awq = true;             // activation-aware scale search (needs calibration activations)
  int64_t awq_grid = 20;       // alpha in {0, 1/grid, ..., 1}
  int64_t awq_max_rows = 512;  // calibration rows kept per layer for the search
  int64_t min_features = 32;   // Linear layers with in or out features below this stay fp32
  std::vector<std::string> skip;  // glob patterns of module names kept fp32, e.g. "*vqa_head", "vq.*"
  bool use_packed_kernels = true; // false: always the dequantise-then-matmul fallback (for tests/benchmarks)
};

// Quantised weights of one Linear [out, in]. forward(x [..., in]) -> [..., out] (bias included).
class QuantLinearImpl : public torch::nn::Cloneable<QuantLinearImpl> {
 public:
  QuantLinearImpl(int64_t in_features, int64_t out_features, int bits, int64_t group_size, bool has_bias);
  ~QuantLinearImpl() override;
  void reset() override;
  // Integer weights keep their dtype; float tensors follow `dtype`.
  void to(torch::Device device, torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Device device, bool non_blocking = false) override;
  at::Tensor forward(const at::Tensor& x);
  at::Tensor forward_fallback(const at::Tensor& x);  // dequantise-then-matmul, any device/dtype
  at::Tensor dequantized_weight() const;             // [out, in] float32 (already divided by in_scale)
  // (Re)builds the runtime kernel layout (int4 CPU packing); called after loading / moving devices.
  void prepare();
  bool packed_kernel_used() const;  // whether forward() takes the ATen packed path for `x` on CPU

  int64_t in_features, out_features, group_size;
  int bits;
  bool has_bias;
  bool use_packed_kernels = true;
  int64_t packed_max_rows = 32;  // inputs with more rows (tokens) use the dequantise fallback (faster there)
  torch::nn::LinearImpl* host = nullptr;  // the Linear this replaces (non-owning; it owns this module)
  at::Tensor qweight;   // int8 [out, in] | uint8 [out, in/2]
  at::Tensor scales;    // int8: [out] | int4: [in/group, out, 2] (scale, zero); float (follows the model dtype)
  at::Tensor in_scale;  // [in]: x is multiplied by this before the matmul (1/s of AWQ; ones without)
  at::Tensor bias;      // [out] or undefined

 private:
  at::Tensor packed4_;  // ATen int4 CPU packing of qweight (runtime only, built by prepare())
  bool packed_ok_ = false;
  const void* key_ = nullptr;  // data pointer of the host's placeholder weight, registered for the matmul hook
};
TORCH_MODULE(QuantLinear);

// Quantises a Linear's weight [out, in] (AWQ scale `s` [in] or undefined) into a QuantLinear (bias copied).
QuantLinear quantize_linear(const torch::nn::LinearImpl& linear, int bits, int64_t group_size,
                            const at::Tensor& awq_scale = {});

// AWQ search for one layer: activations x [M, in] -> best s [in] (ones when alpha = 0 wins) and the chosen alpha.
struct AwqResult {
  at::Tensor scale;
  double alpha = 0;
  double mse_plain = 0, mse_best = 0;
};
AwqResult awq_search(const at::Tensor& weight, const at::Tensor& bias, const at::Tensor& x, int bits,
                     int64_t group_size, int64_t grid);

// Records the inputs of every Linear under `model` while `run_calibration()` runs the model (any forward passes),
// keeping at most `max_rows` rows per layer (evenly subsampled). Returns name -> [M, in] float32 CPU.
std::map<std::string, at::Tensor> capture_linear_inputs(torch::nn::Module& model,
                                                        const std::function<void()>& run_calibration,
                                                        int64_t max_rows = 1024);

struct QuantizeReport {
  std::vector<std::string> quantized, skipped;  // module names (skipped: "name (reason)")
  int64_t fp32_bytes = 0, quant_bytes = 0;      // weight bytes of the quantised layers before/after
  std::map<std::string, double> awq_alpha;      // chosen alpha per layer (with AWQ)
  nlohmann::json spec;                          // what quant.json holds
  std::string summary() const;
};

// Quantises every eligible Linear of `model` in place. `calib` (may be empty): inputs per layer name as returned by
// capture_linear_inputs; layers without activations are quantised with plain rounding.
QuantizeReport quantize_model(torch::nn::Module& model, const QuantizeOptions& options,
                              const std::map<std::string, at::Tensor>& calib = {});

// Rebuilds the quantised structure described by a quant.json `spec` (empty buffers of the right shapes), so that
// load_quantized_weights can fill it.
void apply_quant_spec(torch::nn::Module& model, const nlohmann::json& spec);
// Saves / loads the weights of a quantised model (every tensor except the placeholders). Loading is strict.
void save_quantized_weights(torch::nn::Module& model, const nlohmann::json& spec, const std::string& path);
void load_quantized_weights(torch::nn::Module& model, const std::string& path);
// Throws Error when any quantised Linear does not route to its QuantLinear (see the header comment).
void verify_quantized_model(torch::nn::Module& model);
// The quantised Linear layers of a model (name -> QuantLinear).
std::vector<std::pair<std::string, QuantLinear>> quantized_layers(torch::nn::Module& model);

}  // namespace janus

namespace janus {

struct QuantizeRunOptions {
  QuantizeOptions quant;
  std::vector<std::string> calib_images;  // image files for AWQ calibration (empty: random-noise images, weak)
  std::vector<std::string> calib_texts;   // texts (empty: a built-in list of short captions and questions)
  int64_t calib_max_images = 32;
  int64_t calib_caption_len = 16;  // greedy caption steps run for calibrating the causal stack
};

// Quantises the run at `run_dir` and writes a run directory at `out_dir` (see the header comment) that
// Pipeline::load recognises. Calibration runs the understanding paths (embeddings, captioning, VQA and
// classification heads when present) on the calibration images/texts.
QuantizeReport quantize_run(const std::string& run_dir, const std::string& out_dir, const QuantizeRunOptions& options);

}  // namespace janus
