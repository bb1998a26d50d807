#pragma once
// Random-weight tiny run directories for the inference tests (no trained model is needed to test plumbing,
// batching, thread safety and quantisation parity).
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <torch/torch.h>

#include "janus/core/fs.h"
#include "janus/data/image.h"
#include "janus/data/tokenizer.h"
#include "janus/io/module_io.h"
#include "janus/model/janus_model.h"
#include "janus/model/run.h"
#include "test_util.h"

namespace janus::test {

inline std::string make_tokenizer(const std::string& dir) {
  std::string text;
  const char* colours[] = {"red", "green", "blue", "cyan", "yellow", "magenta"};
  const char* shapes[] = {"circle", "square", "triangle", "star"};
  for (int i = 0; i < 400; ++i) {
    text += fmt::format("a {} {} to the left of a {} {}\n", colours[i % 6], shapes[i % 4], colours[(i / 6) % 6],
                        shapes[(i / 4) % 4]);
    text += fmt::format("what colour is the {}? how many {}s are there?\n", shapes[i % 4], shapes[(i / 4) % 4]);
  }
  write_file_atomic(dir + "/corpus.txt", text);
  return Tokenizer::train(dir + "/corpus.txt", dir + "/tok", {80});
}

struct RunSpec {
  std::string flavour = "tiny";
  int64_t image_size = 32;
  int64_t num_answers = 3;
  int64_t num_classes = 4;
  uint64_t seed = 0;
};

// Writes a run dir (model.json, tokenizer.model, answers.json, final/model.safetensors) under `dir`/run.
inline std::string make_run(const std::string& dir, const RunSpec& spec = {}) {
  const auto tok_path = make_tokenizer(dir);
  const auto vocab = Tokenizer::load(tok_path).vocab_size();
  auto o = model_flavour(spec.flavour, vocab, spec.image_size);
  o.num_answers = spec.num_answers;
  o.num_classes = spec.num_classes;
  torch::manual_seed(spec.seed);
  JanusModel model(o);
  const std::string run = dir + "/run";
  std::vector<std::string> answers;
  for (int64_t i = 0; i < spec.num_answers; ++i) answers.push_back(i == 0 ? "yes" : i == 1 ? "no" : std::to_string(i));
  write_run_artifacts(run, o, tok_path, answers);
  std::filesystem::create_directories(run + "/final");
  save_module(*model, run + "/final/model.safetensors");
  return run;
}

// A random RGB image file (PNG) of the given size.
inline std::string make_image(const std::string& dir, const std::string& name, int64_t h, int64_t w, int seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(seed));
  const auto img = at::randint(0, 256, {h, w, 3}, gen, at::kLong).to(at::kByte);
  const auto path = dir + "/" + name;
  write_image_file(path, img);
  return path;
}

}  // namespace janus::test
