#pragma once
// Data parallelism on PyTorch's own c10d engine: ProcessGroupGloo on CPU, ProcessGroupNCCL on CUDA, rendezvous
// through c10d::TCPStore from torchrun's or Slurm's environment. Model code stays single-device; the pieces here
// wrap it from outside (see docs/distributed.md for the trainer contract).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/function.h>
#include <torch/nn/module.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include "janus/core/config.h"

namespace janus::dist {

// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it back). For MASTER_PORT of local
// launches and tests; Error when no socket can be bound.
int free_loopback_port();

// Where this process sits in the job, read from the launcher's environment.
struct LaunchEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  bool agent_store = false;     // torchrun's agent hosts the TCPStore (TORCHELASTIC_USE_AGENT_STORE=True)
  std::string source = "none";  // "torchrun", "slurm" or "none" (single process)

  // torchrun variables (RANK, WORLD_SIZE, ...) win over Slurm's (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID,
  // first host of SLURM_NODELIST; MASTER_PORT or 29500). Neither present: a single process. Throws InputError
  // naming the variable on malformed values (non-integer, rank outside [0, world_size), ...).
  static LaunchEnv from_env();
};

// First host name of a Slurm node list: "node[003-005,7],gpu1" -> "node003". Throws InputError when empty.
std::string first_slurm_host(const std::string& nodelist);

// One c10d process group (a Backend: Gloo or NCCL) plus the store it rendezvoused through. Collective failures
// (a peer died, a timeout) surface as janus::Error naming the ranks that stopped answering.
class ProcessGroup {
 public:
  // Rendezvous and create the backend. `device` CPU -> Gloo, CUDA -> NCCL (cfg.backend may force one; "nccl" on
  // CPU is an InputError). world_size 1 needs no network (an in-memory store). Timeouts: cfg.timeout_s.
  static std::shared_ptr<ProcessGroup> create(const ParallelConfig& cfg, const LaunchEnv& env,
                                              c10::Device device = c10::Device(c10::kCPU));
  // create(cfg, LaunchEnv::from_env(), device).
  static std::shared_ptr<ProcessGroup> from_env(const ParallelConfig& cfg, c10::Device device = c10::Device(c10::kCPU));
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const { return env_.rank; }
  int size() const { return env_.world_size; }
  int local_rank() const { return env_.local_rank; }
  bool is_main() const { return env_.rank == 0; }
  const LaunchEnv& env() const { return env_; }
  c10::Device device() const { return device_; }
  const std::string& backend_name() const { return backend_name_; }
  const c10::intrusive_ptr<c10d::Backend>& backend() const { return backend_; }
  const c10::intrusive_ptr<c10d::Store>& store() const { return store_; }

  // Asynchronous collectives: the returned work must be passed to wait() (which translates failures).
  c10::intrusive_ptr<c10d::Work> allreduce_async(at::Tensor& t, c10d::ReduceOp op = c10d::ReduceOp::SUM);
  c10::intrusive_ptr<c10d::Work> broadcast_async(at::Tensor& t, int root = 0);
  void wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what);

  // Blocking helpers. Tensors must live on device() and be contiguous.
  void allreduce(at::Tensor& t, c10d::ReduceOp op = c10d::ReduceOp::SUM);
  void broadcast(at::Tensor& t, int root = 0);
  // [n, ...] on every rank -> [world*n, ...] ordered by rank (no autograd; see all_gather_with_grad).
  at::Tensor all_gather(const at::Tensor& t);
  void barrier();
  // Mean over ranks, for logging losses/metrics.
  double average(double value);
  at::Tensor average(const at::Tensor& t);
  // True on every rank when any rank saw a non-finite gradient (MAX all-reduce of the flag); for the grad scaler.
  bool any_found_inf(bool local_found_inf);

  // Turns a failure of a collective into a janus::Error naming the lost ranks (uses the store heartbeats).
  [[noreturn]] void fail(const char* what, const std::string& cause);

 private:
  ProcessGroup() = default;
  void start_heartbeat();
  std::string diagnose_lost_ranks();

  LaunchEnv env_;
  c10::Device device_{c10::kCPU};
  std::string backend_name_;
  std::chrono::milliseconds timeout_{300000};
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::Store> heartbeat_store_;  // own connection so heartbeats never queue behind waits
  c10::intrusive_ptr<c10d::Backend> backend_;
  std::thread heartbeat_;
  std::atomic<bool> stop_{false};
  std::mutex stop_mutex_;
  std::condition_variable stop_cv_;
};

struct DdpOptions {
  double bucket_mb = 25;          // gradient bucket capacity
  bool broadcast_buffers = true;  // buffers too, not only parameters, at construction
};

// Bucketed gradient all-reduce for a module, driven by autograd post-accumulate hooks: as soon as every
// parameter of a bucket has its gradient accumulated, the bucket is all-reduced asynchronously while backward
// continues. Buckets are launched in a fixed order on every rank (bucket i waits for buckets < i), so ranks
// with different ready orders still issue matching collectives.
//
// Per optimizer step:   for micro-steps 1..k-1: { auto g = ddp.no_sync(); loss.backward(); }
//                       last micro-step: loss.backward(); ddp.finish();  then clip, scaler, step.
// finish() waits for every bucket, launches the ones whose parameters got no gradient (unused parameters count
// as zero) and leaves param.grad() = mean over ranks. Parameters are broadcast from rank 0 at construction.
class DistributedDataParallel {
 public:
  DistributedDataParallel(std::shared_ptr<torch::nn::Module> module, std::shared_ptr<ProcessGroup> pg,
                          DdpOptions options = {});
  ~DistributedDataParallel();
  DistributedDataParallel(const DistributedDataParallel&) = delete;
  DistributedDataParallel& operator=(const DistributedDataParallel&) = delete;

  // While a guard lives, backward only accumulates locally (non-final gradient-accumulation micro-steps).
  class NoSyncGuard {
   public:
    explicit NoSyncGuard(DistributedDataParallel& ddp);
    ~NoSyncGuard();
    NoSyncGuard(const NoSyncGuard&) = delete;
    NoSyncGuard& operator=(const NoSyncGuard&) = delete;

   private:
    DistributedDataParallel& ddp_;
    bool previous_;
  };
  NoSyncGuard no_sync() { return NoSyncGuard(*this); }

  // Waits for all buckets; afterwards every rank holds the averaged gradients. Call once per synced backward.
  void finish();
  // Re-broadcasts parameters and buffers from rank 0 (construction does it; call after loading a checkpoint on
  // rank 0 only).
  void broadcast_state();

  const std::shared_ptr<torch::nn::Module>& module() const { return module_; }
  const std::shared_ptr<ProcessGroup>& process_group() const { return pg_; }
  size_t num_buckets() const { return buckets_.size(); }
  // Bucket index of every parameter (in module->parameters() order), for tests and logging.
  std::vector<size_t> bucket_of_parameters() const;
  // Number of buckets launched from hooks (during backward) in the last synced step: overlap evidence.
  size_t buckets_launched_in_backward() const { return launched_in_backward_; }

 private:
  struct Bucket {
    std::vector<size_t> params;    // indices into params_
    std::vector<int64_t> offsets;  // element offsets in flat
    at::Tensor flat;
    size_t pending = 0;
    bool ready = false;
    c10::intrusive_ptr<c10d::Work> work;
  };
  void on_grad_ready(size_t param_index);
  void launch_ready_buckets(bool from_hook);
  void launch(Bucket& b);
  void reset_step();

  std::shared_ptr<torch::nn::Module> module_;
  std::shared_ptr<ProcessGroup> pg_;
  DdpOptions options_;
  std::vector<at::Tensor> params_;
  std::vector<size_t> param_bucket_;
  std::vector<bool> param_ready_;
  std::vector<Bucket> buckets_;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;  // keeps hooks alive
  struct HookTarget;
  std::shared_ptr<HookTarget> hook_target_;  // hooks reach the wrapper through it; cleared on destruction
  size_t next_bucket_ = 0;
  size_t launched_in_backward_ = 0;
  bool sync_ = true;
  bool step_active_ = false;
  std::mutex mutex_;
};

// All-gather along dim 0 with gradient: forward [n, ...] -> [world*n, ...] (rank order); backward all-reduces
// (SUM) the incoming gradient and returns this rank's slice, so every rank's loss trains every rank's features.
at::Tensor all_gather_with_grad(const at::Tensor& x, const std::shared_ptr<ProcessGroup>& pg);

// CLIP contrastive loss over the global batch with the local-loss formulation (open_clip ClipLoss with
// gather_with_grad=True, local_loss=True): this rank's [n, D] normalized features against all gathered ones,
// labels arange(n) + rank*n, (CE(image->text) + CE(text->image)) / 2. Averaged over ranks (DDP does it for the
// gradients) it equals the single-process loss on the global batch. pg may be null (single process).
// negative_text_features [m, D] (optional, this rank's): extra captions that match no image, appended to the
// image->text side's candidates (NegCLIP hard negatives, train.text_negatives); the text->image side is unchanged.
at::Tensor gathered_clip_loss(const at::Tensor& image_features, const at::Tensor& text_features,
                              const at::Tensor& logit_scale, const std::shared_ptr<ProcessGroup>& pg,
                              const at::Tensor& negative_text_features = {});

}  // namespace janus::dist
