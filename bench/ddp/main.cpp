// janus_bench_ddp: training throughput (samples/s) of an MLP on 1 rank vs 2 ranks (Gloo, loopback), one compute
// thread per rank, same per-rank batch (weak scaling). Prints the ratio measured in the same run.
//   janus_bench_ddp [--steps N] [--batch B] [--width W] [--bucket-mb M]
// The binary re-executes itself as the ranks (JANUS_BENCH_DDP_WORKER=1 plus torchrun-style variables).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>

#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/sgd.h>

#include "janus/train/distributed.h"

namespace {

struct Args {
  int steps = 30;
  int batch = 64;
  int width = 1024;
  double bucket_mb = 25;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--steps")
      a.steps = std::atoi(argv[i + 1]);
    else if (k == "--batch")
      a.batch = std::atoi(argv[i + 1]);
    else if (k == "--width")
      a.width = std::atoi(argv[i + 1]);
    else if (k == "--bucket-mb")
      a.bucket_mb = std::atof(argv[i + 1]);
    else {
      std::fprintf(stderr, "janus_bench_ddp: unknown flag %s\n", k.c_str());
      std::exit(2);
    }
  }
  return a;
}

int worker(const Args& a) {
  at::set_num_threads(1);
  janus::ParallelConfig cfg;
  cfg.backend = "gloo";
  cfg.timeout_s = 120;
  auto pg = janus::dist::ProcessGroup::from_env(cfg);
  torch::manual_seed(0);
  auto model = torch::nn::Sequential(
      torch::nn::Linear(a.width, a.width), torch::nn::ReLU(), torch::nn::Linear(a.width, a.width), torch::nn::ReLU(),
      torch::nn::Linear(a.width, a.width), torch::nn::ReLU(), torch::nn::Linear(a.width, 16));
  janus::dist::DistributedDataParallel ddp(model.ptr(), pg, janus::dist::DdpOptions{a.bucket_mb, true});
  torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(1e-3));
  auto x = at::randn({a.batch, a.width});
  auto y = at::randn({a.batch, 16});
  auto step = [&] {
    opt.zero_grad();
    at::mse_loss(model->forward(x), y).backward();
    ddp.finish();
    opt.step();
  };
  for (int i = 0; i < 3; ++i) step();
  pg->barrier();
  const auto t0 = std::chrono::steady_clock::now();
  timespec c0{}, c1{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
  for (int i = 0; i < a.steps; ++i) step();
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
  const double cpu = pg->average((c1.tv_sec - c0.tv_sec) + 1e-9 * (c1.tv_nsec - c0.tv_nsec)) * pg->size();
  pg->barrier();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (pg->is_main()) {
    const double samples = static_cast<double>(a.steps) * a.batch * pg->size();
    std::printf("%.3f %.6f\n", samples / s, cpu / samples);
  }
  return 0;
}


struct Result {
  double samples_per_s = 0;
  double cpu_s_per_sample = 0;  // all ranks' process CPU time (compute + Gloo threads) per sample
};

Result run_world(int world, int argc, char** argv) {
  char exe[4096];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  exe[n > 0 ? n : 0] = '\0';
  std::string flags;
  for (int i = 1; i < argc; ++i) flags += std::string(" '") + argv[i] + "'";
  const std::string out = "/tmp/janus_bench_ddp_" + std::to_string(getpid()) + ".txt";
  std::ostringstream cmd;
  cmd << "export JANUS_BENCH_DDP_WORKER=1 OMP_NUM_THREADS=1 WORLD_SIZE=" << world
      << " MASTER_ADDR=127.0.0.1 MASTER_PORT=" << janus::dist::free_loopback_port() << "; ";
  for (int r = 0; r < world; ++r) {
    cmd << "RANK=" << r << " LOCAL_RANK=" << r << " '" << exe << "'" << flags << (r == 0 ? " > " + out : " > /dev/null")
        << " 2>/dev/null & ";
  }
  cmd << "wait";
  if (std::system(cmd.str().c_str()) != 0) {
    std::fprintf(stderr, "janus_bench_ddp: a rank failed (world %d)\n", world);
    std::exit(1);
  }
  Result v;
  std::ifstream(out) >> v.samples_per_s >> v.cpu_s_per_sample;
  std::remove(out.c_str());
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  if (std::getenv("JANUS_BENCH_DDP_WORKER") != nullptr) return worker(a);
  std::printf(
      "ddp bench: MLP width %d (4 linear layers, %.1f MiB of gradients), batch %d per rank, %d steps, "
      "1 compute thread per rank, Gloo on loopback\n",
      a.width, (3.0 * a.width * a.width + 16.0 * a.width) * 4 / 1048576.0, a.batch, a.steps);
  const Result one = run_world(1, argc, argv);
  const Result two = run_world(2, argc, argv);
  std::printf("1 rank : %10.1f samples/s  %8.3f CPU ms/sample\n", one.samples_per_s, 1e3 * one.cpu_s_per_sample);
  std::printf("2 ranks: %10.1f samples/s  %8.3f CPU ms/sample\n", two.samples_per_s, 1e3 * two.cpu_s_per_sample);
  std::printf("speed-up (wall): %.2fx (goal >= 1.7x; needs 2 otherwise idle cores)\n",
              two.samples_per_s / one.samples_per_s);
  std::printf("work efficiency: %.2f (CPU per sample, 1 rank / 2 ranks; 1.0 = DDP adds no CPU work)\n",
              one.cpu_s_per_sample / two.cpu_s_per_sample);
  return 0;
}
