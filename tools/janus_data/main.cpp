// janus_data: build the Shapes benchmark, train/inspect SentencePiece tokenizers, convert Fashion-MNIST, and
// check GenEval-style prompts against images.
#include <filesystem>

#include "cli.h"
#include "janus/core/fs.h"
#include "janus/data/formats.h"
#include "janus/data/idx.h"
#include "janus/data/image.h"
#include "janus/data/shapes.h"
#include "janus/train/stage_task.h"
#include "janus/data/tokenizer.h"

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  CLI::App app{"janus_data: datasets, tokenizer and the built-in Shapes benchmark"};
  janus::cli::Common common;
  janus::cli::add_common(app, common);
  app.require_subcommand(1);

  janus::ShapesOptions so;
  auto* shapes = app.add_subcommand("shapes", "generate the Shapes benchmark (COCO/VQA/NLVR2/GenEval/video/points)");
  shapes->add_option("--out", so.out, "output directory")->required();
  shapes->add_option("--train", so.train, "training images")->capture_default_str();
  shapes->add_option("--val", so.val, "validation images")->capture_default_str();
  shapes->add_option("--size", so.size, "image side in pixels")->capture_default_str();
  shapes->add_option("--seed", so.seed, "seed; same seed, same files")->capture_default_str();
  shapes->add_option("--videos", so.videos, "training videos (val gets a quarter)")->capture_default_str();
  shapes->add_option("--video-frames", so.video_frames, "frames per video")->capture_default_str();
  shapes->add_option("--clouds", so.clouds, "training point clouds (val gets a quarter)")->capture_default_str();
  shapes->add_option("--cloud-points", so.cloud_points, "points per cloud")->capture_default_str();
  shapes->add_option("--threads", so.threads, "writer threads")->capture_default_str();
  int64_t shapes_vocab = 256;
  shapes->add_option("--tokenizer-vocab", shapes_vocab,
                     "also write corpus.txt and train DIR/tokenizer.model with this many pieces (0: skip)")
      ->check(CLI::Range(int64_t{0}, int64_t{100000}))
      ->capture_default_str();

  auto* tok = app.add_subcommand("tokenizer", "train or inspect a SentencePiece tokenizer");
  tok->require_subcommand(1);
  auto* tok_train = tok->add_subcommand("train", "train on a text corpus (one sentence per line)");
  std::string tok_input, tok_out;
  janus::TokenizerTrainOptions to;
  tok_train->add_option("--input", tok_input, "corpus file")->required();
  tok_train->add_option("--vocab", to.vocab_size, "vocabulary size (incl. 7 special tokens)")->capture_default_str();
  tok_train->add_option("--out", tok_out, "output directory (tokenizer.model, tokenizer.vocab)")->required();
  tok_train->add_option("--model-type", to.model_type, "unigram, bpe, char, word")->capture_default_str();
  tok_train->add_option("--seed", to.seed, "seed")->capture_default_str();
  auto* tok_encode = tok->add_subcommand("encode", "print the ids of a text");
  std::string tok_model, tok_text;
  tok_encode->add_option("--model", tok_model, "tokenizer.model or its directory")->required();
  tok_encode->add_option("--text", tok_text, "text")->required();

  auto* fm = app.add_subcommand("fashion-mnist", "convert Fashion-MNIST IDX files to an image folder");
  std::string fm_src = "/usr/share/datasets/fashion-mnist", fm_out;
  int64_t fm_limit = 0;
  fm->add_option("--src", fm_src, "directory with the (gzipped) IDX files")->capture_default_str();
  fm->add_option("--out", fm_out, "output directory (train/<class>/, test/<class>/)")->required();
  fm->add_option("--limit", fm_limit, "at most this many images per split (0 = all)")->capture_default_str();

  auto* gc = app.add_subcommand("geneval-check", "score images against a GenEval-style prompts file");
  std::string gc_prompts, gc_images;
  gc->add_option("--prompts", gc_prompts, "prompts JSON written by `janus_data shapes`")->required();
  gc->add_option("--images", gc_images, "directory of <id>.png images (default: each prompt's reference image)");

  return janus::cli::run(app, argc, argv, common, [&]() -> int {
    if (*shapes) {
      const auto st = janus::generate_shapes(so);
      spdlog::info("shapes: {} images in {:.3f} s ({:.0f} images/s), everything in {:.3f} s -> {}", st.images,
                   st.image_seconds, st.images / std::max(1e-9, st.image_seconds), st.total_seconds, so.out);
      if (shapes_vocab > 0) janus::train::build_shapes_tokenizer(so.out, shapes_vocab, so.seed);
      return 0;
    }
    if (*tok_train) {
      const auto path = janus::Tokenizer::train(tok_input, tok_out, to);
      const auto t = janus::Tokenizer::load(path);
      spdlog::info("tokenizer: {} pieces -> {}", t.vocab_size(), path);
      return 0;
    }
    if (*tok_encode) {
      const auto t = janus::Tokenizer::load(tok_model);
      for (auto id : t.encode(tok_text)) fmt::print("{} ", id);
      fmt::print("\n");
      return 0;
    }
    if (*fm) {
      for (const std::string split : {"train", "t10k"}) {
        auto find = [&](const std::string& stem) {
          for (const std::string ext : {".gz", ""}) {
            const auto p = fs::path(fm_src) / (stem + ext);
            if (fs::exists(p)) return p.string();
          }
          throw janus::InputError(fmt::format("{}: {} not found (install dataset-fashion-mnist)", fm_src, stem));
        };
        const auto n = janus::idx_to_image_folder(
            find(split + "-images-idx3-ubyte"), find(split + "-labels-idx1-ubyte"), janus::fashion_mnist_classes(),
            (fs::path(fm_out) / (split == "train" ? "train" : "test")).string(), fm_limit);
        spdlog::info("fashion-mnist {}: {} images", split, n);
      }
      return 0;
    }
    if (*gc) {
      const auto doc = nlohmann::json::parse(janus::read_file(gc_prompts), nullptr, false);
      if (!doc.is_array()) throw janus::InputError(fmt::format("{}: $: expected an array of prompts", gc_prompts));
      double sum = 0;
      int64_t correct = 0;
      for (const auto& p : doc) {
        const auto spec = janus::PromptSpec::from_json(p.at("spec"));
        const std::string file =
            gc_images.empty()
                ? (fs::path(gc_prompts).parent_path().parent_path() / p.at("reference").get<std::string>()).string()
                : (fs::path(gc_images) / fmt::format("{}.png", p.at("id").get<int64_t>())).string();
        const auto g = janus::shapes_geneval_check(janus::decode_image_file(file), spec);
        sum += g.overall;
        correct += g.correct;
      }
      const double n = std::max<double>(1, static_cast<double>(doc.size()));
      fmt::print("{}\n",
                 nlohmann::json{{"prompts", doc.size()}, {"overall", sum / n}, {"correct", correct / n}}.dump());
      return 0;
    }
    return 2;
  });
}
