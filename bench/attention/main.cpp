// janus_bench_attention: forward+backward time and peak memory of the fusion attentions vs dense SDPA and
// reformer-pytorch LSHAttention (docs/bench_attention.md).
//
// Every (implementation, L) runs in its own child process (this binary with --child, or the Python script), so
// the peak memory of one case cannot hide another's. Peak memory = VmHWM - VmRSS measured just before the first
// fwd+bwd call (peak RSS delta; /proc/self/clear_refs resets the high-water mark where the kernel allows it).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "janus/fusion/attention.h"

namespace {

double proc_status_mib(const std::string& key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(key + ":", 0) == 0) {
      std::istringstream is(line.substr(key.size() + 1));
      double kb = 0;
      is >> kb;
      return kb / 1024.0;
    }
  }
  return 0.0;
}

int run_child(const std::string& impl, int64_t L, int threads, int reps) {
  at::set_num_threads(threads);
  at::manual_seed(0);
  const int64_t B = 1, H = 4, d = 64;
  auto q = at::randn({B, H, L, d}).requires_grad_();
  auto k = at::randn({B, H, L, d}).requires_grad_();
  auto v = at::randn({B, H, L, d}).requires_grad_();
  auto r = at::randn({B, H, L, d});
  janus::BlockSparseAttention sparse(janus::BlockSparseAttentionOptions().block_size(64).density(0.3));
  janus::LSHAttention lsh(janus::LSHAttentionOptions().bucket_size(64).n_hashes(4));
  janus::ChunkedAttention chunked(janus::ChunkedAttentionOptions().query_chunk(512).key_chunk(512));
  auto step = [&] {
    at::Tensor out;
    std::vector<at::Tensor> inputs{q, k, v};
    if (impl == "dense_sdpa") {
      out = at::scaled_dot_product_attention(q, k, v);
    } else if (impl == "dense_math") {
      out = at::matmul(at::softmax(at::matmul(q, k.transpose(-2, -1)) / 8.0, -1), v);
    } else if (impl == "block_sparse") {
      out = sparse->forward(q, k, v);
    } else if (impl == "lsh") {
      out = lsh->forward(q, v);
      inputs = {q, v};
    } else if (impl == "chunked") {
      out = chunked->forward(q, k, v);
    } else {
      throw std::invalid_argument("unknown implementation " + impl);
    }
    torch::autograd::grad({(out * r).sum()}, inputs);
  };
  const double rss0 = proc_status_mib("VmRSS");
  {
    std::ofstream clear("/proc/self/clear_refs");
    if (clear) clear << "5";
  }
  step();
  const double peak = proc_status_mib("VmHWM") - rss0;
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    step();
    best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::printf("RESULT %s %lld %.2f %.1f\n", impl.c_str(), static_cast<long long>(L), best, peak);
  return 0;
}

struct Result {
  double ms = NAN, mib = NAN;
};

Result run_and_parse(const std::string& cmd) {
  Result res;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return res;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p)) {
    char name[64];
    long long L = 0;
    double ms = 0, mib = 0;
    if (std::sscanf(buf, "RESULT %63s %lld %lf %lf", name, &L, &ms, &mib) == 4) res = {ms, mib};
  }
  pclose(p);
  return res;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"fusion attention benchmark: fwd+bwd, d=64, 4 heads, batch 1, fp32"};
  std::string child;
  std::vector<int64_t> lengths{1024, 2048, 4096, 8192};
  int threads = 1, reps = 2;
  bool no_python = false;
  app.add_option("--child", child, "internal: run one implementation");
  app.add_option("--lengths", lengths, "sequence lengths");
  app.add_option("--threads", threads, "intra-op threads (same for every implementation and Python)");
  app.add_option("--reps", reps, "timed repetitions after one warm-up (the minimum is reported)");
  app.add_flag("--no-python", no_python, "skip reformer-pytorch");
  CLI11_PARSE(app, argc, argv);
  if (!child.empty()) return run_child(child, lengths.front(), threads, reps);

  const std::vector<std::string> impls{"dense_sdpa", "dense_math", "block_sparse", "lsh", "chunked"};
  std::map<std::pair<std::string, int64_t>, Result> res;
  for (auto L : lengths) {
    for (const auto& impl : impls)
      res[{impl, L}] = run_and_parse(
          fmt::format("'{}' --child {} --lengths {} --threads {} --reps {}", argv[0], impl, L, threads, reps));
    if (!no_python)
      res[{"reformer_lsh", L}] = run_and_parse(fmt::format("'{}' '{}/bench/attention/reformer_lsh.py' {} {} {}",
                                                           JANUS_PYTHON, JANUS_SOURCE_DIR, L, threads, reps));
  }
  std::printf("fwd+bwd, B=1, H=4, d=64, fp32, %d thread(s), min of %d reps; peak = RSS high-water delta (MiB)\n\n",
              threads, reps);
  std::printf("| impl | L | ms | peak MiB | time / dense_sdpa | peak / dense_sdpa |\n|---|---|---|---|---|---|\n");
  auto all = impls;
  all.push_back("reformer_lsh");
  for (auto L : lengths)
    for (const auto& impl : all) {
      auto it = res.find({impl, L});
      if (it == res.end()) continue;
      const auto& base = res[{"dense_sdpa", L}];
      std::printf("| %s | %lld | %.1f | %.1f | %.3f | %.3f |\n", impl.c_str(), static_cast<long long>(L), it->second.ms,
                  it->second.mib, it->second.ms / base.ms, it->second.mib / base.mib);
    }
  std::printf("\nGoals:\n");
  auto goal = [&](const char* what, double value, double limit) {
    std::printf("  %-48s %.3f (goal <= %.3f) %s\n", what, value, limit, value <= limit ? "met" : "MISSED");
  };
  auto has = [&](const std::string& impl, int64_t L) { return res.count({impl, L}) > 0; };
  if (has("block_sparse", 4096))
    goal("block_sparse(0.3) time / dense_sdpa at L=4096", res[{"block_sparse", 4096}].ms / res[{"dense_sdpa", 4096}].ms,
         0.45);
  if (has("lsh", 8192)) {
    goal("lsh time / dense_sdpa at L=8192", res[{"lsh", 8192}].ms / res[{"dense_sdpa", 8192}].ms, 0.35);
    if (has("reformer_lsh", 8192))
      goal("lsh time / reformer-pytorch at L=8192", res[{"lsh", 8192}].ms / res[{"reformer_lsh", 8192}].ms, 0.5);
    goal("chunked peak / dense_sdpa peak at L=8192", res[{"chunked", 8192}].mib / res[{"dense_sdpa", 8192}].mib, 0.25);
    goal("chunked peak / dense_math peak at L=8192", res[{"chunked", 8192}].mib / res[{"dense_math", 8192}].mib, 0.25);
  }
  return 0;
}
