#pragma once
// The model-independent contract between janus::Trainer and what it trains. A stage (SimMIM + MLM + VQ, InfoNCE +
// ITM, generation fine-tuning) is a TrainTask; the trainer owns everything around the step (optimisers, schedule,
// precision, accumulation, clipping, checkpoints, metrics) and never looks inside the model.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/Tensor.h>
#include <torch/nn/module.h>
#include <nlohmann/json.hpp>

#include "janus/io/safetensors.h"

namespace janus::train {

// One micro-batch: named tensors (images, ids, masks, ...) plus free-form metadata. `size` is the number of
// samples (for samples/s); the trainer never interprets the tensors.
struct Batch {
  TensorMap tensors;
  nlohmann::json meta = nlohmann::json::object();
  int64_t size = 0;

  const at::Tensor& at(const std::string& name) const;  // InputError naming the missing key
};

// A resumable stream of training batches. The cursor (state()) must capture everything needed so that after
// load_state(state()) the source yields exactly the batches it would have yielded next: the trainer saves it at
// step boundaries and restores it on resume.
class DataSource {
 public:
  virtual ~DataSource() = default;
  virtual Batch next() = 0;
  virtual nlohmann::json state() const = 0;
  virtual void load_state(const nlohmann::json& state) = 0;
};

// What the trainer tells compute_loss.
struct StepContext {
  int64_t step = 0;  // optimiser step being computed (0-based; the step count after it is step + 1)
  int64_t total_steps = 0;
  int64_t micro = 0;  // micro-batch index within the step (gradient accumulation)
  int64_t micro_steps = 1;
  std::string optimizer = "main";  // which optimiser this forward/backward feeds ("main" or an extra one)
  bool training = true;
};

// The loss of one micro-batch for one optimiser. `total` is what gets back-propagated (undefined = nothing to do
// for this optimiser at this step, e.g. the discriminator before disc_start). `parts` are logged (detached by the
// trainer) as "<optimizer>/<name>" for extra optimisers and "<name>" for the main one.
struct StepOutput {
  at::Tensor total;
  std::map<std::string, at::Tensor> parts;
};

// A second optimiser over a subset of the model's parameters (e.g. the VQGAN discriminator). Parameters are
// selected by name prefix (module path, e.g. "decoder.discriminator"); they are removed from the main optimiser.
// Each extra optimiser runs its own forward/backward pass per step after the main one (alternating G/D steps).
struct ExtraOptimizerSpec {
  std::string name;  // e.g. "disc"; used in checkpoints and logs
  std::vector<std::string> param_prefixes;
  double lr = 1e-4;  // peak lr; follows the same schedule as the main optimiser
  double weight_decay = 0.0;
};

class TrainTask {
 public:
  virtual ~TrainTask() = default;
  // The whole trainable model. Parameter names (named_parameters) are checkpoint keys and freeze-rule targets.
  virtual std::shared_ptr<torch::nn::Module> model() = 0;
  virtual DataSource& data() = 0;
  // Forward + loss for one micro-batch. Called under the trainer's autocast; must not call backward().
  virtual StepOutput compute_loss(const Batch& batch, const StepContext& ctx) = 0;
  virtual std::vector<ExtraOptimizerSpec> extra_optimizers() const { return {}; }
  // Called once per optimiser step after all optimisers stepped (e.g. EMA codebook bookkeeping, GradNorm).
  virtual void after_step(const StepContext& /*ctx*/) {}
  // Extra state that is neither a parameter nor a buffer (loss-balancing weights, counters): saved into and
  // restored from checkpoints. Tensor keys are namespaced by the trainer.
  virtual void save_state(TensorMap& /*tensors*/, nlohmann::json& /*meta*/) const {}
  virtual void load_state(const TensorMap& /*tensors*/, const nlohmann::json& /*meta*/) {}
  // Periodic validation (eval.every_steps, rank 0 only, after the step's metrics record): returns flat
  // {name: number} logged as "val/<name>" to metrics.jsonl and TensorBoard. Must not change training state
  // (RNG, data cursor, parameters); the trainer restores train mode afterwards. ctx.step = steps completed.
  virtual nlohmann::json validate(const StepContext& /*ctx*/) { return nlohmann::json::object(); }
};

}  // namespace janus::train
