#pragma once
// janus::train::Trainer: one training loop for every stage. It owns the optimisers (AdamW with decay/no-decay
// groups, plus any extra optimiser the task asks for), the lr schedule, gradient accumulation, global-norm
// clipping, bf16/fp16 autocast with a dynamic gradient scaler, non-finite step handling, EMA, checkpoints with
// exact resume, SIGTERM/SIGINT handling and metrics. Model, data and losses come from a TrainTask.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "janus/core/config.h"
#include "janus/train/checkpoint.h"
#include "janus/train/metrics.h"
#include "janus/train/optim.h"
#include "janus/train/profiler.h"
#include "janus/train/task.h"

namespace janus::train {

// Where this process sits in a data-parallel job. Single process: rank 0 of 1. The DDP wrapper fills it from
// torchrun's environment. Only rank 0 writes logs, metrics and checkpoints.
// With world_size > 1 the trainer counts samples as world_size x the local batch (equal shards per rank) and
// agrees on SIGTERM/SIGINT stops through TrainerHooks::any_rank, so every rank stops after the same step.
struct DistContext {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  bool is_main() const { return rank == 0; }
};

// Hook points a data-parallel wrapper installs so the trainer runs unchanged under it. All optional.
struct TrainerHooks {
  // Before each micro-batch's backward: (micro, micro_steps). E.g. skip gradient sync except on the last one.
  std::function<void(int64_t, int64_t)> before_backward;
  // After the last micro-batch's backward of one optimiser, before unscaling/clipping: all-reduce (average) the
  // gradients of `params` across ranks. Called with the optimiser's name.
  std::function<void(const std::string&, const std::vector<at::Tensor>&)> sync_grads;
  // Reduces a "this rank saw non-finite gradients" flag (any over ranks). Without sync_grads ranks may disagree.
  std::function<bool(bool)> any_rank;
  // Called by every rank after rank 0 wrote a checkpoint (e.g. a barrier).
  std::function<void()> after_checkpoint;
  // Called by every rank at each log point with the loss parts (means over the steps since the last record, same
  // keys on every rank): replace them by their mean over ranks, so rank 0 logs global values.
  std::function<void(std::map<std::string, double>&)> reduce_log;
};

struct TrainResult {
  int64_t step = 0;             // optimiser steps completed
  bool stopped = false;         // ended early by SIGTERM/SIGINT (after checkpointing)
  int64_t nonfinite_steps = 0;  // skipped steps in this process
  std::string last_checkpoint;
  std::string final_weights;  // <run_dir>/final/model.safetensors when the run completed
};

// The training loop. Construct with the resolved config and a task; then run().
class Trainer {
 public:
  Trainer(const Config& config, TrainTask& task, DistContext dist = {}, TrainerHooks hooks = {});
  ~Trainer();

  // resume: "" = fresh start (init_from applies), "auto" = newest valid checkpoint in <run_dir>/checkpoints if
  // any (falling back past corrupt ones with a warning; fresh start when there is none), otherwise a
  // checkpoint directory (InputError if it is missing or corrupt).
  TrainResult run(const std::string& resume = "");

  std::string save_checkpoint();                 // of the current state; returns its directory ("" on rank != 0)
  void load_checkpoint(const std::string& dir);  // validates the manifest first
  int64_t step() const { return step_; }
  const std::string& run_dir() const { return run_dir_; }
  at::Device device() const { return device_; }
  const NamedOptimizer& optimizer(const std::string& name = "main") const;
  const GradScaler& scaler(const std::string& name = "main") const;
  const Ema* ema() const { return ema_.get(); }

 private:
  struct Opt;
  bool run_step();  // one optimiser step over grad_accum micro-batches; false when it was skipped (non-finite)
  void init_from(const std::string& path);
  std::string checkpoint_dir() const;

  Config config_;
  TrainTask& task_;
  DistContext dist_;
  TrainerHooks hooks_;
  std::string run_dir_;
  at::Device device_{at::kCPU};
  std::shared_ptr<torch::nn::Module> model_;
  NamedParams trainable_;
  std::vector<std::unique_ptr<Opt>> opts_;  // main first
  std::unique_ptr<Ema> ema_;
  LrSchedule schedule_;
  std::unique_ptr<CheckpointStore> store_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<StepProfiler> profiler_;  // train.profile_steps
  int64_t step_ = 0;
  int64_t samples_ = 0;
  int64_t nonfinite_total_ = 0;
  int64_t nonfinite_consecutive_ = 0;
  std::string last_checkpoint_;
  // Per logged key since the last record: the sum of its values and the steps it was logged on (a loss may sit out
  // steps, train.task_every), so each key averages over its own steps.
  struct LogSum {
    double sum = 0, steps = 0;
    void add(double v, int64_t micro_steps) {  // one micro-batch of a step made of `micro_steps`
      sum += v / static_cast<double>(micro_steps);
      steps += 1.0 / static_cast<double>(micro_steps);
    }
  };
  std::map<std::string, LogSum> log_sums_;
  double last_grad_norm_ = 0;
};

// SIGTERM/SIGINT set a flag the trainer checks after every step (it then checkpoints and returns stopped=true).
void install_stop_signal_handlers();
void request_stop();
bool stop_requested();
void clear_stop_request();

// Picks the device for train.device ("auto": cuda:0 when available, else cpu).
at::Device resolve_device(const std::string& spec);
// Data parallel: "auto"/"cuda" resolve to cuda:<local_rank> (one GPU per rank); explicit specs are kept.
at::Device resolve_device(const std::string& spec, int local_rank);

}  // namespace janus::train
