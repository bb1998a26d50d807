// janus_bench_alloc: training steps/s and minor page faults per step with glibc's default malloc against
// janus::tune_malloc_for_tensors() (what every janus_* tool applies), on the quickstart's stage-1 workload: the
// VQ-VAE of configs/quickstart/stage1.yaml (width 16, 32 px, downsample 4, EMA codebook), batch 32, AdamW,
// forward + backward. Baseline: the glibc defaults, measured first in the same process (the tuning cannot be
// undone).
// Usage: janus_bench_alloc [steps=40] [threads=2]
#include <chrono>
#include <cstdlib>

#include <sys/resource.h>

#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <torch/nn.h>
#include <torch/optim/adamw.h>

#include "janus/core/allocator.h"
#include "janus/core/config.h"
#include "janus/decoder/vqvae.h"
#include "janus/model/model_io.h"

namespace {
long minor_faults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

struct Result {
  double steps_per_s;
  double faults_per_step;
};

Result run(janus::VQVAE& vq, torch::optim::AdamW& opt, const at::Tensor& x, int64_t steps) {
  auto step = [&] {
    opt.zero_grad();
    const auto out = vq->forward(x);
    (at::mse_loss(out.reconstruction, x) + out.quant_loss).backward();
    opt.step();
  };
  for (int i = 0; i < 5; ++i) step();  // warm-up: first-touch allocations, oneDNN primitive caches
  const long f0 = minor_faults();
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < steps; ++i) step();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return {static_cast<double>(steps) / s, static_cast<double>(minor_faults() - f0) / static_cast<double>(steps)};
}
}  // namespace

int main(int argc, char** argv) {
  const int64_t steps = argc > 1 ? std::atoll(argv[1]) : 40;
  const int threads = argc > 2 ? std::atoi(argv[2]) : 2;
  if (steps < 1 || threads < 1) {
    fmt::print(stderr, "usage: janus_bench_alloc [steps>=1] [threads>=1]\n");
    return 2;
  }
  at::set_num_threads(threads);
  torch::manual_seed(0);
  // The tokenizer exactly as the shipped quickstart config builds it (the text vocabulary does not matter here).
  const auto cfg = janus::Config::load_resolved(std::string(JANUS_SOURCE_DIR) + "/configs/quickstart/stage1.yaml");
  janus::VQVAE vq(janus::model_options(cfg.model, 1000).vq);
  torch::optim::AdamW opt(vq->parameters(), torch::optim::AdamWOptions(1e-3));
  const auto x = at::rand({32, 3, 32, 32});
  fmt::print("VQ-VAE width 16, 32 px, batch 32, fwd+bwd+AdamW, {} thread(s), {} timed steps per row\n", threads, steps);
  const auto base = run(vq, opt, x, steps);
  fmt::print("  glibc defaults (baseline): {:7.2f} steps/s, {:8.0f} minor faults/step\n", base.steps_per_s,
             base.faults_per_step);
  const auto t = janus::tune_malloc_for_tensors();
  fmt::print("  {}\n", t.reason);
  if (!t.applied) return 0;
  const auto tuned = run(vq, opt, x, steps);
  fmt::print("  tuned malloc:              {:7.2f} steps/s, {:8.0f} minor faults/step  ({:.2f}x steps/s)\n",
             tuned.steps_per_s, tuned.faults_per_step, tuned.steps_per_s / base.steps_per_s);
  return 0;
}
