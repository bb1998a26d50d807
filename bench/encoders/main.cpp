// janus_bench_encoders: VisionEncoder forward+backward vs timm eager on identical weights and inputs, same run,
// same thread count; and the DynamicRouter parameter-count comparison behind the "-15% parameters" claim.
//
// usage: janus_bench_encoders [--threads N] [--warmup W] [--iters I] [--batch B] [--flavour small]
//                             [--image-size 224] [--skip-timm]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <ATen/Parallel.h>
#include <torch/nn.h>
#include <nlohmann/json.hpp>

#include "janus/encoders/vision_encoder.h"
#include "janus/io/module_io.h"
#include "janus/io/safetensors.h"
#include "janus/router/dynamic_router.h"

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

std::string run_capture(const std::string& cmd, int* rc) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    *rc = -1;
    return out;
  }
  char buf[4096];
  while (fgets(buf, sizeof buf, p)) out += buf;
  *rc = pclose(p);
  return out;
}

int64_t linear_params(int64_t in, int64_t out) { return in * out + out; }

void router_claim() {
  std::printf("\n== DynamicRouter parameter count (4 modalities) ==\n");
  std::printf("%-12s %-12s %14s %18s %10s %18s %10s\n", "in_dim", "out_dim", "router", "separate(gate+proj)", "delta",
              "proj-only (no gate)", "delta");
  const std::vector<std::pair<int64_t, int64_t>> widths = {{384, 768}, {768, 768}, {768, 2048}, {1024, 4096}};
  for (const auto& [in, out] : widths) {
    janus::DynamicRouter r(janus::DynamicRouterOptions(in, out));
    int64_t router = 0;
    for (const auto& p : r->parameters()) router += p.numel();
    // A full separate stack per modality at the same widths: its own gate Linear + its own projection Linear.
    const int64_t separate = janus::kNumModalities * 2 * linear_params(in, out);
    // Projection per modality with no gate at all (the cheapest alternative).
    const int64_t proj_only = janus::kNumModalities * linear_params(in, out);
    std::printf("%-12lld %-12lld %14lld %18lld %+9.1f%% %18lld %+9.1f%%\n", static_cast<long long>(in),
                static_cast<long long>(out), static_cast<long long>(router), static_cast<long long>(separate),
                100.0 * (static_cast<double>(router) / static_cast<double>(separate) - 1.0),
                static_cast<long long>(proj_only),
                100.0 * (static_cast<double>(router) / static_cast<double>(proj_only) - 1.0));
  }
}

}  // namespace

int main(int argc, char** argv) {
  int threads = at::get_num_threads(), warmup = 1, iters = 3, batch = 8, image_size = 224;
  std::string flavour = "small";
  bool skip_timm = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "janus_bench_encoders: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return std::string(argv[++i]);
    };
    if (a == "--threads")
      threads = std::stoi(next());
    else if (a == "--warmup")
      warmup = std::stoi(next());
    else if (a == "--iters")
      iters = std::stoi(next());
    else if (a == "--batch")
      batch = std::stoi(next());
    else if (a == "--image-size")
      image_size = std::stoi(next());
    else if (a == "--flavour")
      flavour = next();
    else if (a == "--skip-timm")
      skip_timm = true;
    else {
      std::fprintf(stderr, "janus_bench_encoders: unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  at::set_num_threads(threads);
  torch::manual_seed(0);
  auto opts = janus::VisionEncoderOptions::flavour(flavour).image_size(image_size);
  janus::VisionEncoder enc(opts);
  enc->train();
  const auto images = torch::randn({batch, 3, image_size, image_size});

  char tmpl[] = "/tmp/janus_bench_encoders_XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  janus::save_module(*enc, dir + "/weights.safetensors");
  janus::save_safetensors(dir + "/input.safetensors", {{"images", images}});
  std::ofstream(dir + "/config.json") << nlohmann::json{
      {"image_size", opts.image_size()},
      {"patch_size", opts.patch_size()},
      {"dim", opts.dim()},
      {"depth", opts.depth()},
      {"heads", opts.heads()}}.dump();

  std::printf("== VisionEncoder (ViT-%s/%lld @ %d, batch %d, fp32, %d threads) forward+backward ==\n", flavour.c_str(),
              static_cast<long long>(opts.patch_size()), image_size, batch, threads);
  std::vector<double> times;
  double loss = 0.0;
  for (int i = 0; i < warmup + iters; ++i) {
    enc->zero_grad(/*set_to_none=*/true);
    const auto t0 = std::chrono::steady_clock::now();
    auto out = enc->forward(images);
    auto l = out.tokens.sin().mean();  // not tokens.mean(): LayerNorm makes that ~0
    l.backward();
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    loss = l.item<double>();
    if (i >= warmup) times.push_back(dt);
  }
  double pooled_sum = 0.0;
  {
    torch::NoGradGuard ng;
    pooled_sum = enc->forward(images).pooled.to(at::kDouble).abs().sum().item<double>();
  }
  const double j_med = median(times), j_min = *std::min_element(times.begin(), times.end());
  std::printf("libjanus: median %.4f s  min %.4f s  (%d iters)  loss %.8f\n", j_med, j_min, iters, loss);

  int rc = 0;
  if (!skip_timm) {
    const std::string cmd = std::string(JANUS_PYTHON) + " " + JANUS_SOURCE_DIR + "/bench/encoders/timm_vit_bench.py " +
                            dir + " " + std::to_string(threads) + " " + std::to_string(warmup) + " " +
                            std::to_string(iters);
    const auto text = run_capture(cmd + " 2>&1", &rc);
    nlohmann::json r;
    try {
      r = nlohmann::json::parse(text.substr(text.rfind('{')));
    } catch (const std::exception&) {
      std::fprintf(stderr, "timm side failed (rc %d):\n%s\n", rc, text.c_str());
      return 1;
    }
    const auto t = r["times"].get<std::vector<double>>();
    const double t_med = median(t), t_min = *std::min_element(t.begin(), t.end());
    std::printf("timm:     median %.4f s  min %.4f s  (%d iters)  loss %.8f  threads %d\n", t_med, t_min, iters,
                r["loss"].get<double>(), r["threads"].get<int>());
    std::printf("same weights check: pooled abs-sum libjanus %.6f timm %.6f; loss diff %.2e\n", pooled_sum,
                r["pooled_sum"].get<double>(), std::abs(loss - r["loss"].get<double>()));
    std::printf("ratio libjanus/timm: median %.3fx  min %.3fx  (<= 1.0 means libjanus is as fast or faster)\n",
                j_med / t_med, j_min / t_min);
  }
  router_claim();
  std::string rm = "rm -rf " + dir;
  rc = std::system(rm.c_str());
  return 0;
}
