// janus_train: run one training stage from a config. `--task stage` (default) trains JanusModel on train.stage 1, 2
// or 3 (janus::train::StageTask, docs/training.md); `--task toy` is the built-in toy regression task that exercises
// the trainer alone (tests).
//
// Data parallel: launched by torchrun / janus_launch / srun (WORLD_SIZE > 1), every rank creates the c10d process
// group, wraps the task's model in DistributedDataParallel and runs the same Trainer with the DDP hooks; the data
// source shards each global batch by rank. See docs/distributed.md ("janus_train under torchrun").
#include <memory>
#include <optional>

#include <ATen/Context.h>
#include <ATen/Parallel.h>

#include "cli.h"
#include "janus/core/config.h"
#include "janus/io/module_io.h"
#include "janus/train/distributed.h"
#include "janus/train/stage_task.h"
#include "janus/train/toy_task.h"
#include "janus/train/trainer.h"

namespace {

namespace jd = janus::dist;
namespace jt = janus::train;

// The trainer's hook points filled with the DDP engine. `ddp` is created after the Trainer (which moves the
// model to its device and applies the freeze rules, so DDP sees the final set of trainable parameters).
struct DdpHooks {
  std::shared_ptr<jd::ProcessGroup> pg;
  std::unique_ptr<jd::DistributedDataParallel> ddp;
  std::optional<jd::DistributedDataParallel::NoSyncGuard> no_sync;

  jt::TrainerHooks make() {
    jt::TrainerHooks h;
    // Non-final micro-steps only accumulate locally; the final one's backward launches the bucket all-reduces.
    h.before_backward = [this](int64_t micro, int64_t micro_steps) {
      if (micro + 1 < micro_steps) {
        if (!no_sync) no_sync.emplace(*ddp);
      } else {
        no_sync.reset();
      }
    };
    // Wait for the buckets: grads = mean over ranks before unscale/clip, so clipping sees the global gradient.
    h.sync_grads = [this](const std::string&, const std::vector<at::Tensor>&) {
      no_sync.reset();
      ddp->finish();
    };
    h.any_rank = [this](bool flag) { return pg->any_found_inf(flag); };
    h.after_checkpoint = [this] { pg->barrier(); };
    h.reduce_log = [this](std::map<std::string, double>& values) {
      if (values.empty()) return;
      std::vector<double> v;
      v.reserve(values.size());
      for (const auto& [k, x] : values) v.push_back(x);
      auto t = at::tensor(v, at::kDouble);
      if (pg->device().is_cuda()) t = t.to(pg->device());
      t = pg->average(t).to(at::kCPU);
      size_t i = 0;
      for (auto& [k, x] : values) x = t[static_cast<int64_t>(i++)].item<double>();
    };
    return h;
  }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"janus_train: train a stage from a config (exact resume, atomic checkpoints, data parallel)"};
  janus::cli::Common common;
  janus::cli::add_common(app, common);
  std::string config_path, resume, task = "stage";
  std::vector<std::string> sets;
  int64_t toy_sleep_ms = 0, toy_kill_at = -1;
  int toy_kill_rank = -1;
  double toy_dropout = 0.1;
  bool toy_disc = false, save_rank_weights = false;
  app.add_option("--config", config_path, "YAML config (omitted: all defaults)");
  app.add_option("--set", sets, "override, e.g. --set optim.lr=1e-4 (repeatable)");
  app.add_option("--resume", resume, "auto (newest valid checkpoint of train.run_dir) or a checkpoint directory");
  app.add_option("--task", task, "what to train")->check(CLI::IsMember({"stage", "toy"}))->capture_default_str();
  app.add_option("--toy-step-sleep-ms", toy_sleep_ms, "toy task: sleep per step (for tests)");
  app.add_flag("--toy-discriminator", toy_disc, "toy task: add a discriminator trained by a second optimizer");
  app.add_option("--toy-dropout", toy_dropout, "toy task: dropout probability")
      ->check(CLI::Range(0.0, 0.99))
      ->capture_default_str();
  app.add_option("--toy-kill-at-step", toy_kill_at, "toy task (testing): SIGKILL this process after N applied steps");
  app.add_option("--toy-kill-rank", toy_kill_rank, "toy task (testing): only this rank kills itself (-1: all)");
  app.add_flag("--save-rank-weights", save_rank_weights,
               "testing: every rank also writes its final weights to <run_dir>/final/model.rank<R>.safetensors");

  return janus::cli::run(app, argc, argv, common, [&]() -> int {
    const janus::Config config =
        config_path.empty() ? janus::Config::from_yaml("", sets, "<defaults>") : janus::Config::load(config_path, sets);
    if (app.count("--log-level") == 0) janus::set_log_level(config.log.level);
    if (config.train.threads > 0) at::set_num_threads(static_cast<int>(config.train.threads));
    // Same seed on every rank: identical initial weights (DDP broadcasts rank 0's anyway) and identical RNG
    // streams, so rank 0's checkpointed RNG state is every rank's state (exact resume under DDP).
    at::manual_seed(static_cast<uint64_t>(config.train.seed));
    jt::install_stop_signal_handlers();

    const auto env = jd::LaunchEnv::from_env();
    DdpHooks dh;
    jt::DistContext dist;
    if (env.world_size > 1) {
      const auto device = jt::resolve_device(config.train.device, env.local_rank);  // cuda:<local_rank> on GPUs
      dh.pg = jd::ProcessGroup::create(config.parallel, env, device);  // also re-inits logging with "rank R"
      dist.rank = dh.pg->rank();
      dist.world_size = dh.pg->size();
      dist.local_rank = dh.pg->local_rank();
      // Only rank 0 reports progress; the others keep warnings and errors (e.g. a lost peer).
      if (!dh.pg->is_main() && app.count("--log-level") == 0 && spdlog::get_level() < spdlog::level::warn) {
        spdlog::set_level(spdlog::level::warn);
      }
      spdlog::info("data parallel: {} ranks ({} via {}), backend {}, global batch {} x {} x grad_accum {}",
                   dist.world_size, env.source, env.agent_store ? "the agent's store" : "rank 0's store",
                   dh.pg->backend_name(), config.data.batch_size, dist.world_size, config.train.grad_accum);
    }

    std::unique_ptr<jt::TrainTask> owned;
    if (task == "toy") {
      jt::ToyTaskOptions to;
      to.batch_size = config.data.batch_size;
      to.seed = static_cast<uint64_t>(config.train.seed);
      to.step_sleep_ms = toy_sleep_ms;
      to.net.discriminator(toy_disc);
      to.net.dropout(toy_dropout);
      to.rank = dist.rank;
      to.world_size = dist.world_size;
      to.kill_at_step = toy_kill_at;
      to.kill_rank = toy_kill_rank;
      owned = std::make_unique<jt::ToyTask>(to);
    } else {
      jt::StageTaskOptions so;
      so.rank = dist.rank;
      so.world_size = dist.world_size;
      so.pg = dh.pg;
      owned = std::make_unique<jt::StageTask>(config, so);
    }
    jt::TrainTask& train_task = *owned;

    jt::Trainer trainer(config, train_task, dist, dh.pg ? dh.make() : jt::TrainerHooks{});
    if (dh.pg) {
      jd::DdpOptions o;
      o.bucket_mb = config.parallel.bucket_mb;
      dh.ddp = std::make_unique<jd::DistributedDataParallel>(train_task.model(), dh.pg, o);
    }
    const auto result = trainer.run(resume);
    if (save_rank_weights && !result.stopped) {
      const auto path = trainer.run_dir() + "/final/model.rank" + std::to_string(dist.rank) + ".safetensors";
      janus::save_module(*train_task.model(), path);
    }
    if (result.stopped) spdlog::info("stopped at step {} after a signal; resume with --resume auto", result.step);
    return 0;
  });
}
