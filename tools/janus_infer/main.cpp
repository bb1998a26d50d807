// janus_infer: command-line inference over janus::Pipeline (docs/inference.md).
//   janus_infer --run DIR caption img.jpg [img2 ...]
//   janus_infer --run DIR vqa img.jpg "question"
//   janus_infer --run DIR retrieve --query "text" --gallery DIR [--k 5]
//   janus_infer --run DIR generate "prompt" --n 4 --out DIR [--seed --cfg --temperature --top-k --top-p]
//   janus_infer --run DIR classify img.jpg [...]
// --json prints one JSON document on stdout. Exit codes: 0 ok, 2 bad input, 1 other failures.
#include <algorithm>
#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "janus/data/image.h"
#include "janus/infer/pipeline.h"

namespace fs = std::filesystem;

namespace {

std::vector<janus::ImageInput> image_inputs(const std::vector<std::string>& paths) {
  std::vector<janus::ImageInput> v;
  for (const auto& p : paths) v.push_back(janus::ImageInput::file(p));
  return v;
}

// Image files of a directory (sorted by name), by extension.
std::vector<std::string> list_images(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw janus::InputError(fmt::format("--gallery '{}' is not a directory", dir));
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    auto ext = e.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    if (ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp" || ext == ".webp") {
      out.push_back(e.path().string());
    }
  }
  std::sort(out.begin(), out.end());
  if (out.empty()) throw janus::InputError(fmt::format("--gallery '{}' holds no images (png/jpg/bmp/webp)", dir));
  return out;
}

void print(bool as_json, const nlohmann::json& j, const std::string& text) {
  if (as_json) {
    fmt::print("{}\n", j.dump(2));
  } else {
    fmt::print("{}", text);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"janus_infer: caption, answer, retrieve, generate and classify with a trained run"};
  janus::cli::Common common;
  janus::cli::add_common(app, common);
  std::string run_dir;
  janus::PipelineOptions po;
  bool as_json = false;
  app.add_option("--run", run_dir, "run directory (or janus_quantize output)")->required();
  app.add_option("--device", po.device, "cpu, cuda, cuda:N or auto")->capture_default_str();
  app.add_option("--dtype", po.dtype, "fp32 or bf16")->capture_default_str();
  app.add_option("--weights", po.weights, "auto, final, ema, latest or a .safetensors path")->capture_default_str();
  app.add_option("--threads", po.threads, "intra-op threads (0: default)")->capture_default_str();
  app.add_option("--max-len", po.max_caption_len, "maximum caption length in tokens")->capture_default_str();
  app.add_flag("--json", as_json, "print JSON on stdout");
  app.require_subcommand(1);

  auto* cap = app.add_subcommand("caption", "caption images");
  std::vector<std::string> cap_images;
  cap->add_option("images", cap_images, "image files")->required();

  auto* vqa = app.add_subcommand("vqa", "answer a question about an image (needs a VQA head)");
  std::string vqa_image, question;
  int64_t vqa_top = 3;
  vqa->add_option("image", vqa_image, "image file")->required();
  vqa->add_option("question", question, "question")->required();
  vqa->add_option("--top-k", vqa_top, "alternatives to print")->capture_default_str();

  auto* ret = app.add_subcommand("retrieve", "rank a directory of images by similarity to a text query");
  std::string query, gallery;
  int64_t k = 5;
  ret->add_option("--query", query, "text query")->required();
  ret->add_option("--gallery", gallery, "directory of images")->required();
  ret->add_option("--k", k, "results")->capture_default_str();

  auto* gen = app.add_subcommand("generate", "generate images from a prompt");
  std::string prompt, out_dir;
  janus::GenerateOptions go;
  gen->add_option("prompt", prompt, "text prompt")->required();
  gen->add_option("--out", out_dir, "output directory for PNGs")->required();
  gen->add_option("--n", go.n, "images")->capture_default_str();
  gen->add_option("--seed", go.seed, "sampling seed")->capture_default_str();
  gen->add_option("--cfg", go.cfg_scale, "classifier-free guidance scale (<= 1: off)")->capture_default_str();
  gen->add_option("--temperature", go.temperature, "sampling temperature (0: greedy)")->capture_default_str();
  gen->add_option("--top-k", go.top_k, "top-k (0: off)")->capture_default_str();
  gen->add_option("--top-p", go.top_p, "top-p (1: off)")->capture_default_str();
  gen->add_option("--candidates", go.candidates,
                  "best of N: each image is the best of this many samples by the model's own score against the prompt")
      ->capture_default_str();
  gen->add_option("--rerank-by", go.rerank_by,
                  "best-of-N score: contrastive, caption, itm or vqa (Shapes prompts: the VQA head's log p of the "
                  "answers the prompt implies)")
      ->check(CLI::IsMember({"contrastive", "caption", "itm", "vqa"}))
      ->capture_default_str();
  gen->add_option("--rerank-contrastive-weight", go.rerank_contrastive_weight,
                  "best-of-N score = the caption/itm/vqa score + this x the cosine similarity")
      ->capture_default_str();

  auto* cls = app.add_subcommand("classify", "classify images (needs a classification head)");
  std::vector<std::string> cls_images;
  cls->add_option("images", cls_images, "image files")->required();

  return janus::cli::run(app, argc, argv, common, [&]() -> int {
    auto p = janus::Pipeline::load(run_dir, po);
    nlohmann::json j;
    std::string text;
    if (cap->parsed()) {
      const auto caps = p.caption(image_inputs(cap_images));
      j = nlohmann::json::array();
      for (std::size_t i = 0; i < caps.size(); ++i) {
        j.push_back({{"image", cap_images[i]}, {"caption", caps[i]}});
        text += fmt::format("{}\t{}\n", cap_images[i], caps[i]);
      }
    } else if (vqa->parsed()) {
      const auto a = p.answer(janus::ImageInput::file(vqa_image), question, vqa_top);
      j = {{"image", vqa_image}, {"question", question}, {"answer", a.answer}, {"score", a.score}};
      j["top"] = nlohmann::json::array();
      text = fmt::format("{}\t{:.4f}\n", a.answer, a.score);
      for (const auto& [ans, s] : a.top) {
        j["top"].push_back({{"answer", ans}, {"score", s}});
        if (!as_json && &ans != &a.top.front().first) text += fmt::format("  {}\t{:.4f}\n", ans, s);
      }
    } else if (ret->parsed()) {
      const auto files = list_images(gallery);
      const auto hits = p.retrieve(query, image_inputs(files), k);
      j = {{"query", query}, {"results", nlohmann::json::array()}};
      for (const auto& h : hits) {
        j["results"].push_back({{"image", files[h.index]}, {"score", h.score}});
        text += fmt::format("{:.4f}\t{}\n", h.score, files[h.index]);
      }
    } else if (gen->parsed()) {
      const auto imgs = p.generate(prompt, go);
      fs::create_directories(out_dir);
      j = {{"prompt", prompt}, {"seed", go.seed}, {"images", nlohmann::json::array()}};
      for (std::size_t i = 0; i < imgs.size(); ++i) {
        const auto path = (fs::path(out_dir) / fmt::format("{:03d}.png", i)).string();
        janus::write_image_file(path, imgs[i]);
        j["images"].push_back(path);
        text += path + "\n";
      }
    } else if (cls->parsed()) {
      const auto cs = p.classify(image_inputs(cls_images));
      j = nlohmann::json::array();
      for (std::size_t i = 0; i < cs.size(); ++i) {
        j.push_back({{"image", cls_images[i]}, {"label", cs[i].label}, {"score", cs[i].score}});
        text += fmt::format("{}\t{}\t{:.4f}\n", cls_images[i], cs[i].label, cs[i].score);
      }
    }
    print(as_json, j, text);
    return 0;
  });
}
