#pragma once
// A small, fully deterministic TrainTask used to exercise the trainer end to end (tests, `janus_train --task toy`)
// until the real stage tasks plug in: a regression net with an embedding, LayerNorm and dropout (so parameter
// groups, RNG state and exact resume are all exercised), synthetic data generated per batch index from the seed
// (the cursor is just the index), and an optional tiny discriminator trained by a second optimiser.
#include <cstdint>
#include <memory>

#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include "janus/train/task.h"

namespace janus::train {

struct ToyNetOptions {
  ToyNetOptions() = default;
  TORCH_ARG(int64_t, in_dim) = 8;
  TORCH_ARG(int64_t, hidden) = 32;
  TORCH_ARG(int64_t, out_dim) = 4;
  TORCH_ARG(int64_t, vocab) = 16;
  TORCH_ARG(double, dropout) = 0.1;
  TORCH_ARG(bool, discriminator) = false;
};

class ToyNetImpl : public torch::nn::Cloneable<ToyNetImpl> {
 public:
  explicit ToyNetImpl(ToyNetOptions options = {});
  void reset() override;
  // x [B, in_dim] float, tokens [B] int64 -> [B, out_dim]
  at::Tensor forward(const at::Tensor& x, const at::Tensor& tokens);
  // y [B, out_dim] -> [B, 1] realness score (discriminator only)
  at::Tensor discriminate(const at::Tensor& y);

  ToyNetOptions options;
  torch::nn::Embedding embed{nullptr};
  torch::nn::Linear fc1{nullptr}, fc2{nullptr}, disc{nullptr};
  torch::nn::LayerNorm norm{nullptr};
  torch::nn::Dropout drop{nullptr};
};
TORCH_MODULE(ToyNet);

// Global batch `i` (world_size x batch_size rows) is a pure function of (seed, i, its row count): x ~ N(0, 1),
// tokens uniform, y = tanh(x A) + 0.1 sin(token). Data parallel (DistributedSampler semantics): rank r yields rows
// [r*batch_size, (r+1)*batch_size) of global batch i, so the union of the ranks' batches is exactly the batch a
// single process with batch_size x world_size would see. The cursor (the global batch index) is the same on
// every rank, so rank 0's checkpoint resumes every rank exactly.
class ToyDataSource : public DataSource {
 public:
  ToyDataSource(ToyNetOptions net, int64_t batch_size, uint64_t seed, int rank = 0, int world_size = 1);
  Batch next() override;
  nlohmann::json state() const override { return {{"index", index_}}; }
  void load_state(const nlohmann::json& state) override;
  int64_t index() const { return index_; }

 private:
  ToyNetOptions net_;
  int64_t batch_size_;
  uint64_t seed_;
  int rank_;
  int world_size_;
  int64_t index_ = 0;
  at::Tensor a_;
};

struct ToyTaskOptions {
  ToyNetOptions net;
  int64_t batch_size = 16;
  uint64_t seed = 0;
  int64_t step_sleep_ms = 0;  // slows each step down (lets tests signal/kill a run mid-way)
  int rank = 0;               // data-parallel shard of this process
  int world_size = 1;
  int64_t kill_at_step = -1;  // testing: SIGKILL this process after this many applied steps (-1: never)
  int kill_rank = -1;         // ... only on this rank (-1: every rank)
};

class ToyTask : public TrainTask {
 public:
  explicit ToyTask(ToyTaskOptions options);
  std::shared_ptr<torch::nn::Module> model() override { return net_.ptr(); }
  DataSource& data() override { return data_; }
  StepOutput compute_loss(const Batch& batch, const StepContext& ctx) override;
  std::vector<ExtraOptimizerSpec> extra_optimizers() const override;
  void after_step(const StepContext& ctx) override;
  void save_state(TensorMap& tensors, nlohmann::json& meta) const override;
  void load_state(const TensorMap& tensors, const nlohmann::json& meta) override;
  int64_t steps_seen() const { return steps_seen_; }
  ToyNet net() const { return net_; }

 private:
  ToyTaskOptions opt_;
  ToyNet net_{nullptr};
  ToyDataSource data_;
  int64_t steps_seen_ = 0;  // task-owned state that checkpoints must carry
};

}  // namespace janus::train
