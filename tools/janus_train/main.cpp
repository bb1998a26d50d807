// janus_train: run one training stage from a config. Until the stage tasks (model + data) are merged, the only
// task is the built-in toy regression task (`--task toy`), which exercises the whole trainer end to end.
#include <ATen/Context.h>
#include <ATen/Parallel.h>

#include "cli.h"
#include "janus/core/config.h"
#include "janus/train/toy_task.h"
#include "janus/train/trainer.h"

int main(int argc, char** argv) {
  CLI::App app{"janus_train: train a stage from a config (exact resume, atomic checkpoints)"};
  janus::cli::Common common;
  janus::cli::add_common(app, common);
  std::string config_path, resume, task = "toy";
  std::vector<std::string> sets;
  int64_t toy_sleep_ms = 0;
  bool toy_disc = false;
  app.add_option("--config", config_path, "YAML config (omitted: all defaults)");
  app.add_option("--set", sets, "override, e.g. --set optim.lr=1e-4 (repeatable)");
  app.add_option("--resume", resume, "auto (newest valid checkpoint of train.run_dir) or a checkpoint directory");
  app.add_option("--task", task, "what to train")->check(CLI::IsMember({"toy"}))->capture_default_str();
  app.add_option("--toy-step-sleep-ms", toy_sleep_ms, "toy task: sleep per step (for tests)");
  app.add_flag("--toy-discriminator", toy_disc, "toy task: add a discriminator trained by a second optimizer");

  return janus::cli::run(app, argc, argv, common, [&]() -> int {
    const janus::Config config =
        config_path.empty() ? janus::Config::from_yaml("", sets, "<defaults>") : janus::Config::load(config_path, sets);
    if (app.count("--log-level") == 0) janus::set_log_level(config.log.level);
    if (config.train.threads > 0) at::set_num_threads(static_cast<int>(config.train.threads));
    at::manual_seed(static_cast<uint64_t>(config.train.seed));
    janus::train::install_stop_signal_handlers();

    janus::train::ToyTaskOptions to;
    to.batch_size = config.data.batch_size;
    to.seed = static_cast<uint64_t>(config.train.seed);
    to.step_sleep_ms = toy_sleep_ms;
    to.net.discriminator(toy_disc);
    janus::train::ToyTask toy(to);

    janus::train::Trainer trainer(config, toy);
    const auto result = trainer.run(resume);
    if (result.stopped) spdlog::info("stopped at step {} after a signal; resume with --resume auto", result.step);
    return 0;
  });
}
