// quantize_run: load a run, calibrate, quantise, write a quantised run directory.
#include <filesystem>
#include <random>

#include <spdlog/spdlog.h>

#include "janus/core/error.h"
#include "janus/core/fs.h"
#include "janus/infer/pipeline.h"
#include "janus/infer/quantize.h"
#include "janus/model/janus_model.h"

namespace janus {
namespace fs = std::filesystem;

namespace {

const char* kDefaultTexts[] = {
    "a red circle",
    "a blue square to the left of a green triangle",
    "two yellow stars above a magenta circle",
    "a photo of a dog on the grass",
    "what colour is the circle?",
    "how many squares are there?",
    "is there a triangle in the image?",
    "a small cyan square below a large red star",
};

}  // namespace

QuantizeReport quantize_run(const std::string& run_dir, const std::string& out_dir, const QuantizeRunOptions& o) {
  if (fs::weakly_canonical(run_dir) == fs::weakly_canonical(out_dir)) {
    throw_input_error("quantize: --out must differ from --run ('{}')", out_dir);
  }
  PipelineOptions po;
  po.max_caption_len = o.calib_caption_len;
  auto p = Pipeline::load(run_dir, po);
  if (p.quantization() != "none") throw_input_error("quantize: '{}' is already quantised ({})", run_dir, p.quantization());

  std::vector<ImageInput> images;
  for (const auto& f : o.calib_images) {
    if (static_cast<int64_t>(images.size()) >= o.calib_max_images) break;
    images.push_back(ImageInput::file(f));
  }
  if (images.empty()) {
    spdlog::warn("quantize: no calibration images given; calibrating on random-noise images (pass --calib)");
    auto gen = at::make_generator<at::CPUGeneratorImpl>(0);
    for (int i = 0; i < 8; ++i) {
      images.push_back(ImageInput::rgb(at::randint(0, 256, {p.image_size(), p.image_size(), 3}, gen, at::kLong)
                                           .to(at::kByte)));
    }
  }
  std::vector<std::string> texts = o.calib_texts;
  if (texts.empty()) texts.assign(std::begin(kDefaultTexts), std::end(kDefaultTexts));

  std::map<std::string, at::Tensor> calib;
  if (o.quant.awq) {
    calib = capture_linear_inputs(
        p.model(),
        [&] {
          const std::size_t bs = 8;
          for (std::size_t i = 0; i < images.size(); i += bs) {
            const std::vector<ImageInput> chunk(images.begin() + i, images.begin() + std::min(images.size(), i + bs));
            p.embed_images(chunk);
            p.caption(chunk);
            if (p.has_vqa_head()) {
              std::vector<std::string> qs;
              for (std::size_t j = 0; j < chunk.size(); ++j) qs.push_back(texts[(i + j) % texts.size()]);
              p.answer(chunk, qs);
            }
            if (p.num_classes() > 0) p.classify(chunk);
          }
          p.embed_texts(texts);
        },
        o.quant.awq_max_rows);
    spdlog::info("quantize: calibration activations for {} Linear layers ({} images, {} texts)", calib.size(),
                 images.size(), texts.size());
  }
  auto rep = quantize_model(p.model(), o.quant, calib);
  rep.spec["source_run"] = run_dir;
  rep.spec["calib_images"] = o.calib_images.empty() ? int64_t{0} : static_cast<int64_t>(images.size());

  fs::create_directories(fs::path(out_dir) / "final");
  for (const char* f : {"model.json", "tokenizer.model", "answers.json", "config.yaml"}) {
    const auto src = fs::path(run_dir) / f;
    std::error_code ec;
    if (fs::is_regular_file(src, ec)) write_file_atomic((fs::path(out_dir) / f).string(), read_file(src.string()));
  }
  save_quantized_weights(p.model(), rep.spec, (fs::path(out_dir) / "final" / "model.safetensors").string());
  write_file_atomic((fs::path(out_dir) / "quant.json").string(), rep.spec.dump(2) + "\n");
  return rep;
}

}  // namespace janus
