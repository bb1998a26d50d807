// janus_quantize: weight-only int8 / int4 (AWQ) quantisation of a run directory (docs/inference.md).
//   janus_quantize --run DIR --bits 8|4 [--group 128] [--calib DIR_OR_IMAGE ...] [--no-awq] --out DIR2
#include <algorithm>
#include <filesystem>

#include <fmt/format.h>

#include "cli.h"
#include "janus/infer/quantize.h"

namespace fs = std::filesystem;

namespace {

std::vector<std::string> collect_images(const std::vector<std::string>& paths) {
  std::vector<std::string> out;
  auto is_image = [](const fs::path& p) {
    auto ext = p.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp" || ext == ".webp";
  };
  for (const auto& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<std::string> found;
      for (const auto& e : fs::recursive_directory_iterator(p)) {
        if (e.is_regular_file() && is_image(e.path())) found.push_back(e.path().string());
      }
      std::sort(found.begin(), found.end());
      if (found.empty()) throw janus::InputError(fmt::format("--calib '{}' holds no images", p));
      out.insert(out.end(), found.begin(), found.end());
    } else if (fs::is_regular_file(p, ec)) {
      out.push_back(p);
    } else {
      throw janus::InputError(fmt::format("--calib '{}' does not exist", p));
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"janus_quantize: weight-only int8/int4 quantisation of a run's Linear layers"};
  janus::cli::Common common;
  janus::cli::add_common(app, common);
  std::string run_dir, out_dir;
  std::vector<std::string> calib;
  bool no_awq = false;
  janus::QuantizeRunOptions o;
  app.add_option("--run", run_dir, "run directory")->required();
  app.add_option("--out", out_dir, "output run directory")->required();
  app.add_option("--bits", o.quant.bits, "8 or 4")->capture_default_str();
  app.add_option("--group", o.quant.group_size, "int4 group size: 32, 64 or 128")->capture_default_str();
  app.add_option("--calib", calib, "calibration images: directories (searched recursively) or files");
  app.add_option("--calib-n", o.calib_max_images, "calibration images used at most")->capture_default_str();
  app.add_option("--skip", o.quant.skip, "glob patterns of Linear names to keep fp32 (e.g. '*vqa_head')");
  app.add_option("--min-features", o.quant.min_features, "keep Linear layers smaller than this fp32")
      ->capture_default_str();
  app.add_option("--awq-grid", o.quant.awq_grid, "alpha grid steps")->capture_default_str();
  app.add_flag("--no-awq", no_awq, "plain rounding (no activation-aware scales)");
  return janus::cli::run(app, argc, argv, common, [&]() -> int {
    o.quant.awq = !no_awq;
    o.calib_images = collect_images(calib);
    const auto rep = janus::quantize_run(run_dir, out_dir, o);
    fmt::print("{}\nwrote {}\n", rep.summary(), out_dir);
    return 0;
  });
}
