// caption_app: a program outside the libjanus tree, using only its installed public API (janus::Pipeline).
//
//   caption_app RUN_DIR IMAGE [QUESTION] [--bf16]   caption an image (and answer a question with a VQA head)
//   caption_app --self-test                          build a random-weight run dir, then exercise the Pipeline on
//                                                    it: caption, answer, embeddings, retrieval, int8 quantisation
//
// A random-weight model captions nonsense; the self-test checks the plumbing (shapes, determinism, batched ==
// single, quantised outputs close to fp32), which is what the package test needs to prove.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <janus/data/image.h>
#include <janus/data/tokenizer.h>
#include <janus/janus.h>
#include <janus/model/run.h>

namespace fs = std::filesystem;

namespace {

int usage() {
  std::fprintf(stderr, "usage: caption_app RUN_DIR IMAGE [QUESTION] [--bf16]\n       caption_app --self-test\n");
  return 2;
}

// The two things an app does with a run: caption an image, answer a question about it.
void describe(janus::Pipeline& p, const std::string& image, const std::string& question) {
  const auto img = janus::ImageInput::file(image);
  std::printf("caption: %s\n", p.caption(img).c_str());
  if (question.empty()) return;
  if (!p.has_vqa_head()) {
    std::printf("(this run has no VQA head; no answer)\n");
    return;
  }
  const auto a = p.answer(img, question, 3);
  std::printf("Q: %s\nA: %s (%.3f)", question.c_str(), a.answer.c_str(), a.score);
  for (std::size_t i = 1; i < a.top.size(); ++i) std::printf("  | %s (%.3f)", a.top[i].first.c_str(), a.top[i].second);
  std::printf("\n");
}

// A tiny random-weight run directory, written with the public API exactly as a stage task would.
std::string make_run(const std::string& dir) {
  std::string corpus;
  const char* colours[] = {"red", "green", "blue", "yellow"};
  const char* shapes[] = {"circle", "square", "star"};
  for (int i = 0; i < 300; ++i) {
    corpus += std::string("a ") + colours[i % 4] + " " + shapes[i % 3] + " next to a " + colours[(i / 4) % 4] + " " +
              shapes[(i / 3) % 3] + "\nis the " + shapes[i % 3] + " " + colours[(i / 3) % 4] + "?\n";
  }
  janus::write_file_atomic(dir + "/corpus.txt", corpus);
  janus::TokenizerTrainOptions to;
  to.vocab_size = 60;
  const auto tok = janus::Tokenizer::train(dir + "/corpus.txt", dir + "/tok", to);
  auto o = janus::model_flavour("tiny", janus::Tokenizer::load(tok).vocab_size(), 32);
  o.num_answers = 2;
  janus::JanusModel model(o);
  const auto run = dir + "/run";
  janus::write_run_artifacts(run, o, tok, {"yes", "no"});
  fs::create_directories(run + "/final");
  janus::save_module(*model, run + "/final/model.safetensors");
  return run;
}

bool check(bool ok, const char* what) {
  std::printf("  [%s] %s\n", ok ? "ok" : "FAILED", what);
  return ok;
}

int self_test() {
  const auto dir = (fs::temp_directory_path() / "caption_app_self_test").string();
  janus::remove_tree(dir);
  fs::create_directories(dir);
  const auto run = make_run(dir);
  std::vector<std::string> files;
  for (int i = 0; i < 3; ++i) {
    const auto f = dir + "/img" + std::to_string(i) + ".png";
    janus::write_image_file(f, at::randint(0, 256, {40 + 8 * i, 48, 3}, at::kLong).to(at::kByte));
    files.push_back(f);
  }
  janus::PipelineOptions po;
  po.max_caption_len = 8;
  auto p = janus::Pipeline::load(run, po);
  describe(p, files[0], "is the circle red?");

  bool ok = true;
  std::vector<janus::ImageInput> imgs;
  for (const auto& f : files) imgs.push_back(janus::ImageInput::file(f));
  const auto caps = p.caption(imgs);
  ok &= check(caps.size() == 3 && caps[1] == p.caption(imgs[1]), "batched caption == single caption");
  ok &= check(p.caption(janus::ImageInput::bytes(janus::read_file(files[2]))) == caps[2], "bytes input == file input");
  const auto e = p.embed_images(imgs);
  ok &= check(e.size(0) == 3 && e.size(1) == p.embed_dim(), "image embeddings [3, E]");
  const auto hits = p.retrieve("a red circle", e, 2);
  ok &= check(hits.size() == 2 && hits[0].score >= hits[1].score, "retrieval ranks by cosine");
  bool rejected = false;
  try {
    p.caption(janus::ImageInput::bytes("definitely not a png"));
  } catch (const janus::InputError&) {
    rejected = true;
  }
  ok &= check(rejected, "undecodable image -> janus::InputError");

  janus::QuantizeRunOptions qo;
  qo.quant.bits = 8;
  qo.calib_images = files;
  qo.calib_caption_len = 4;
  janus::quantize_run(run, dir + "/run_int8", qo);
  auto q = janus::Pipeline::load(dir + "/run_int8", po);
  const double cos = (q.embed_images(imgs) * e).sum(1).min().item<double>();
  std::printf("  int8 image-embedding cosine vs fp32: %.5f (%s)\n", cos, q.quantization().c_str());
  ok &= check(q.quantization() == "int8" && cos > 0.99, "int8 quantised run loads and stays close to fp32");

  janus::remove_tree(dir);
  std::printf("libjanus %s caption_app self-test %s\n", janus::version(), ok ? "passed" : "FAILED");
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  janus::init_logging("warn");
  if (argc == 2 && std::strcmp(argv[1], "--self-test") == 0) {
    try {
      return self_test();
    } catch (const std::exception& ex) {
      std::fprintf(stderr, "caption_app self-test: %s\n", ex.what());
      return 1;
    }
  }
  std::vector<std::string> pos;
  janus::PipelineOptions po;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--bf16") == 0) {
      po.dtype = "bf16";
    } else if (argv[i][0] == '-' && argv[i][1] == '-') {
      return usage();
    } else {
      pos.emplace_back(argv[i]);
    }
  }
  if (pos.size() < 2 || pos.size() > 3) return usage();
  try {
    auto p = janus::Pipeline::load(pos[0], po);
    describe(p, pos[1], pos.size() == 3 ? pos[2] : "");
    return 0;
  } catch (const janus::InputError& ex) {
    std::fprintf(stderr, "caption_app: %s\n", ex.what());
    return 2;
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "caption_app: %s\n", ex.what());
    return 1;
  }
}
