// janus_model: describe a model (module tree, parameter counts, trainable vs frozen) and its memory plan.
#include <torch/utils.h>

#include "cli.h"
#include "janus/core/config.h"
#include "janus/model/janus_model.h"
#include "janus/model/model_io.h"
#include "janus/router/freeze.h"

int main(int argc, char** argv) {
  CLI::App app{"janus_model: describe model flavours and memory plans"};
  janus::cli::Common common;
  janus::cli::add_common(app, common);
  app.require_subcommand(1);
  std::string config, flavour, run;
  std::vector<std::string> sets;
  int64_t vocab = 32000, gpus = 8, image_size = 0;
  auto* describe = app.add_subcommand("describe", "module tree with parameter counts (trainable vs frozen)");
  describe->add_option("--config", config, "YAML config (model section, train.freeze)");
  describe->add_option("--set", sets, "override key.path=value");
  describe->add_option("--flavour", flavour, "flavour instead of a config: tiny, small, base, 1b");
  describe->add_option("--vocab", vocab, "text vocabulary size when the config does not give one")
      ->capture_default_str();
  describe->add_option("--image-size", image_size, "image size (0: the flavour's)");
  describe->add_option("--run", run, "describe a saved model directory instead");
  describe->add_option("--gpus", gpus, "GPUs for the DDP memory plan")->capture_default_str();
  return janus::cli::run(app, argc, argv, common, [&]() -> int {
    janus::JanusModelOptions opts;
    std::vector<std::string> freeze;
    if (!run.empty()) {
      opts = janus::load_model(run)->options;
    } else if (!config.empty()) {
      const auto cfg = janus::Config::load(config, sets);
      opts = janus::model_options(cfg.model, vocab);
      freeze = cfg.train.freeze;
    } else {
      opts = janus::model_flavour(flavour.empty() ? "tiny" : flavour, vocab, image_size);
    }
    torch::NoGradGuard no_grad;
    janus::JanusModel model(opts);
    for (const auto& f : freeze) janus::freeze(*model, f);
    fmt::print("{}", janus::describe_model(*model));
    // Memory plan for plain DDP (every rank holds a full replica), from the measured tensor sizes.
    int64_t params = 0, trainable = 0;
    for (const auto& p : model->parameters()) {
      params += p.numel();
      if (p.requires_grad()) trainable += p.numel();
    }
    const double gib = 1024.0 * 1024.0 * 1024.0;
    const double w32 = 4.0 * params / gib, g32 = 4.0 * trainable / gib, adam = 8.0 * trainable / gib;
    fmt::print("\nPer-GPU memory with DDP on {} GPUs, AdamW (excluding activations and the c10d buckets):\n", gpus);
    fmt::print("  fp32 weights {:.2f} GiB + fp32 grads {:.2f} GiB + AdamW moments {:.2f} GiB = {:.2f} GiB\n", w32, g32,
               adam, w32 + g32 + adam);
    fmt::print("  bf16 autocast keeps fp32 master weights and grads: same {:.2f} GiB; activations are bf16\n",
               w32 + g32 + adam);
    fmt::print("  gradient buckets (all-reduce) add up to one more gradient copy: {:.2f} GiB\n", g32);
    return 0;
  });
}
