// janus_bench_quant: fp32 vs int8 vs int4 weight-only quantisation latency on CPU (docs/bench_quant.md).
//   1. Linear layers at the small/base flavour widths (qkv, proj, fc1, fc2) for M = 1 (a decode step),
//      ("packed" columns = QuantLinear::forward: ATen packed kernels up to 32 rows, the fallback beyond)
//      M = 16 and M = 256 rows (a ViT forward), through ATen's packed kernels and the dequantise fallback.
//   2. End to end through janus::Pipeline on a random-weight run of --flavour (small by default): embed_images
//      (batch 8), embed_texts (batch 8) and greedy captioning (batch 1 and 4), fp32 vs janus_quantize'd int8 and
//      int4-g128, plus the output deviation from fp32 (embedding cosine, caption token agreement).
// Ratios are against fp32 measured in the same run. Usage:
//   janus_bench_quant [--flavour small|base] [--threads N] [--reps R] [--skip-e2e] [--skip-layers]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <torch/nn/modules/linear.h>
#include <torch/utils.h>

#include "janus/core/fs.h"
#include "janus/core/logging.h"
#include "janus/data/image.h"
#include "janus/data/tokenizer.h"
#include "janus/infer/pipeline.h"
#include "janus/infer/quantize.h"
#include "janus/io/module_io.h"
#include "janus/model/janus_model.h"
#include "janus/model/run.h"

namespace fs = std::filesystem;

namespace {

double time_ms(const std::function<void()>& f, int reps) {
  f();  // warm-up
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto a = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];  // median
}

void bench_layers(const std::string& flavour, int reps) {
  const int64_t D = flavour == "base" ? 768 : 512, H = 4 * D;
  struct Shape {
    const char* name;
    int64_t in, out;
  };
  const std::vector<Shape> shapes{{"qkv", D, 3 * D}, {"proj", D, D}, {"fc1", D, H}, {"fc2", H, D}};
  fmt::print("\n## Linear layers ({} width D={}), median of {} reps, ms\n\n", flavour, D, reps);
  fmt::print("| layer | M | fp32 | int8 packed | int4-g128 packed | int8 fallback | int8 x | int4 x |\n");
  fmt::print("|---|---|---|---|---|---|---|---|\n");
  double sum32 = 0, sum8 = 0, sum4 = 0;
  for (const int64_t M : {int64_t{1}, int64_t{16}, int64_t{256}}) {
    for (const auto& s : shapes) {
      torch::manual_seed(0);
      torch::nn::Linear lin(torch::nn::LinearOptions(s.in, s.out));
      const auto x = at::randn({M, s.in});
      auto q8 = janus::quantize_linear(*lin, 8, 128);
      auto q4 = janus::quantize_linear(*lin, 4, 128);
      auto q8f = janus::quantize_linear(*lin, 8, 128);
      q8->prepare();
      q4->prepare();
      q8f->use_packed_kernels = false;
      q8f->prepare();
      torch::NoGradGuard ng;
      const double t32 = time_ms([&] { lin->forward(x); }, reps);
      const double t8 = time_ms([&] { q8->forward(x); }, reps);
      const double t4 = time_ms([&] { q4->forward(x); }, reps);
      const double t8f = time_ms([&] { q8f->forward(x); }, reps);
      sum32 += t32;
      sum8 += t8;
      sum4 += t4;
      fmt::print("| {} {}x{} | {} | {:.3f} | {:.3f} | {:.3f} | {:.3f} | {:.2f} | {:.2f} |\n", s.name, s.out, s.in, M,
                 t32, t8, t4, t8f, t32 / t8, t32 / t4);
    }
  }
  fmt::print("\nAll layers summed: fp32 {:.2f} ms, int8 {:.2f} ms ({:.2f}x), int4 {:.2f} ms ({:.2f}x)\n", sum32, sum8,
             sum32 / sum8, sum4, sum32 / sum4);
}

std::string make_run(const std::string& dir, const std::string& flavour) {
  std::string text;
  const char* colours[] = {"red", "green", "blue", "cyan", "yellow", "magenta"};
  const char* shapes[] = {"circle", "square", "triangle", "star"};
  for (int i = 0; i < 600; ++i) {
    text += fmt::format("a {} {} to the left of a {} {}\n", colours[i % 6], shapes[i % 4], colours[(i / 6) % 6],
                        shapes[(i / 4) % 4]);
  }
  janus::write_file_atomic(dir + "/corpus.txt", text);
  const auto tok = janus::Tokenizer::train(dir + "/corpus.txt", dir + "/tok", {100});
  auto o = janus::model_flavour(flavour, janus::Tokenizer::load(tok).vocab_size());
  o.num_answers = 16;
  torch::manual_seed(0);
  janus::JanusModel model(o);
  const auto run = dir + "/run";
  std::vector<std::string> answers;
  for (int i = 0; i < 16; ++i) answers.push_back(std::to_string(i));
  janus::write_run_artifacts(run, o, tok, answers);
  fs::create_directories(run + "/final");
  janus::save_module(*model, run + "/final/model.safetensors");
  return run;
}

void bench_e2e(const std::string& flavour, int reps) {
  const auto dir = (fs::temp_directory_path() / fmt::format("janus_bench_quant_{}", flavour)).string();
  fs::create_directories(dir);
  const auto run = make_run(dir, flavour);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  std::vector<std::string> files;
  for (int i = 0; i < 8; ++i) {
    const auto f = fmt::format("{}/img{}.png", dir, i);
    janus::write_image_file(f, at::randint(0, 256, {96, 96, 3}, gen, at::kLong).to(at::kByte));
    files.push_back(f);
  }
  std::vector<janus::ImageInput> imgs;
  for (const auto& f : files) imgs.push_back(janus::ImageInput::file(f));
  const std::vector<janus::ImageInput> one{imgs[0]}, four(imgs.begin(), imgs.begin() + 4);
  const std::vector<std::string> texts{"a red circle", "a blue square to the left of a green star", "a cyan star",
                                       "two yellow triangles", "a magenta circle above a red square", "a green star",
                                       "three blue circles", "a red triangle to the left of a cyan square"};
  struct Variant {
    std::string name, dir;
  };
  std::vector<Variant> variants{{"fp32", run}};
  for (int bits : {8, 4}) {
    janus::QuantizeRunOptions qo;
    qo.quant.bits = bits;
    qo.quant.group_size = 128;
    qo.calib_images = files;
    qo.quant.awq_grid = 10;  // the search affects accuracy only, not latency
    qo.quant.awq_max_rows = 256;
    qo.calib_caption_len = 8;
    const auto out = fmt::format("{}/q{}", dir, bits);
    const auto rep = janus::quantize_run(run, out, qo);
    variants.push_back({bits == 8 ? "int8" : "int4-g128", out});
    fmt::print("quantised {}: {}\n", variants.back().name, rep.summary());
  }
  janus::PipelineOptions po;
  po.max_caption_len = 16;
  fmt::print("\n## End to end, janus::Pipeline, {} flavour (random weights), median of {} reps, ms\n\n", flavour, reps);
  fmt::print("| variant | embed_images x8 | embed_texts x8 | caption x1 | caption x4 | image cos | text cos | "
             "caption token agreement |\n|---|---|---|---|---|---|---|---|\n");
  at::Tensor ref_img, ref_txt;
  std::vector<std::string> ref_caps;
  std::vector<double> base(4, 0.0);
  for (const auto& v : variants) {
    auto p = janus::Pipeline::load(v.dir, po);
    const double t_img = time_ms([&] { p.embed_images(imgs); }, reps);
    const double t_txt = time_ms([&] { p.embed_texts(texts); }, reps);
    const double t_c1 = time_ms([&] { p.caption(one); }, reps);
    const double t_c4 = time_ms([&] { p.caption(four); }, reps);
    const auto e_img = p.embed_images(imgs), e_txt = p.embed_texts(texts);
    const auto caps = p.caption(four);
    std::string dev = "| 1 | 1 | 1 |";
    if (v.name == "fp32") {
      ref_img = e_img;
      ref_txt = e_txt;
      ref_caps = caps;
      base = {t_img, t_txt, t_c1, t_c4};
    } else {
      // token agreement: fraction of caption tokens equal position by position to fp32's
      int64_t same = 0, total = 0;
      for (std::size_t i = 0; i < caps.size(); ++i) {
        const auto a = p.tokenizer().encode(caps[i], false, false), b = p.tokenizer().encode(ref_caps[i], false, false);
        total += static_cast<int64_t>(std::max(a.size(), b.size()));
        for (std::size_t j = 0; j < std::min(a.size(), b.size()); ++j) same += a[j] == b[j];
      }
      dev = fmt::format("| {:.4f} | {:.4f} | {:.2f} |", (e_img * ref_img).sum(1).min().item<double>(),
                        (e_txt * ref_txt).sum(1).min().item<double>(),
                        total ? static_cast<double>(same) / static_cast<double>(total) : 1.0);
    }
    fmt::print("| {} | {:.1f} ({:.2f}x) | {:.1f} ({:.2f}x) | {:.1f} ({:.2f}x) | {:.1f} ({:.2f}x) {}\n", v.name, t_img,
               base[0] / t_img, t_txt, base[1] / t_txt, t_c1, base[2] / t_c1, t_c4, base[3] / t_c4, dev);
  }
  janus::remove_tree(dir);
}

}  // namespace

int main(int argc, char** argv) {
  janus::init_logging("warn");
  std::string flavour = "small";
  int threads = 1, reps = 5;
  bool layers = true, e2e = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--flavour") {
      flavour = next();
    } else if (a == "--threads") {
      threads = std::stoi(next());
    } else if (a == "--reps") {
      reps = std::stoi(next());
    } else if (a == "--skip-e2e") {
      e2e = false;
    } else if (a == "--skip-layers") {
      layers = false;
    } else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  at::set_num_threads(threads);
  fmt::print("janus_bench_quant: flavour {}, {} thread(s), torch intra-op threads {}\n", flavour, threads,
             at::get_num_threads());
  if (layers) bench_layers(flavour, reps);
  if (e2e) bench_e2e(flavour, reps);
  return 0;
}
