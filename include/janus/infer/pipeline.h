#pragma once
// janus::Pipeline: the inference API applications link against (docs/inference.md).
//
//   auto p = janus::Pipeline::load("runs/shapes_caption");             // a run dir (include/janus/model/run.h)
//   std::string c = p.caption(janus::ImageInput::file("cat.png"));
//   auto a = p.answer(janus::ImageInput::bytes(png_bytes), "what colour is the circle?");
//
// Images enter as an ImageInput: encoded bytes (PNG/JPEG/... as received over the wire), a file path, or decoded
// uint8 [H, W, 3] RGB. They are pre-processed exactly as the run was evaluated: short side resized to the model's
// image size, center crop, normalised with the run config's data.mean / data.std.
//
// Batched calls are the primary path (one forward pass for N requests; janus_serve's dynamic batcher calls them);
// the single-item overloads wrap them. Outputs of a batched call for item i equal the single call for item i up to
// float rounding (padding of questions/texts to the longest in the batch is masked).
//
// Thread safety: every public method may be called concurrently from any number of threads on one Pipeline. The
// model's modules keep per-forward state (router gates, LSH buckets), so forward passes are serialised by one mutex
// per Pipeline; input decoding/pre-processing and output post-processing run outside the lock. For parallel
// throughput batch requests (janus_serve does) or load one Pipeline per worker.
//
// Errors: InputError (janus/core/error.h) for undecodable/empty images, empty text, k <= 0, calling answer() on a
// run without a VQA head, classify() without a classification head, a gallery of the wrong width, and any problem
// with the run directory. Other failures are janus::Error.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <c10/core/Device.h>

#include "janus/core/config.h"
#include "janus/model/flavours.h"

namespace janus {

class Tokenizer;
class JanusModelImpl;

struct PipelineOptions {
  std::string device = "cpu";     // "cpu", "cuda", "cuda:1", or "auto" (cuda when available)
  std::string dtype = "fp32";     // "fp32" or "bf16" (weights and activations; outputs are returned as fp32)
  std::string weights = "auto";   // LoadRunOptions::weights: auto | final | ema | latest | path
  int threads = 0;                // > 0: at::set_num_threads(threads) (process-wide); 0 keeps the current setting
  int64_t max_caption_len = 32;   // tokens, including bos
  int64_t max_text_len = 64;      // questions / queries / prompts are truncated to this many tokens
};

// One input image. Decoding happens inside the Pipeline call (InputError naming `name` when it fails).
class ImageInput {
 public:
  static ImageInput file(std::string path);
  static ImageInput bytes(std::string encoded, std::string name = "image bytes");
  static ImageInput rgb(at::Tensor hwc_u8);  // uint8 [H, W, 3] RGB (CPU)

  // uint8 [H, W, 3] RGB; throws InputError when the file/bytes cannot be decoded.
  at::Tensor decode() const;
  const std::string& name() const { return name_; }

 private:
  enum class Kind { kFile, kBytes, kRgb } kind_ = Kind::kRgb;
  std::string data_;  // path or encoded bytes
  std::string name_;
  at::Tensor rgb_;
};

struct Answer {
  std::string answer;                                     // best answer
  double score = 0;                                       // its sigmoid score (VQA heads are trained with BCE)
  std::vector<std::pair<std::string, double>> top;        // best `top_k` answers, best first
};

struct Classification {
  int64_t label = -1;        // argmax class index
  double score = 0;          // its softmax probability
  std::vector<double> probs; // softmax over all classes
};

struct RetrievalHit {
  int64_t index = -1;  // row of the gallery
  double score = 0;    // cosine similarity
};

struct GenerateOptions {
  int64_t n = 1;             // images per prompt
  double cfg_scale = 5.0;    // classifier-free guidance scale; <= 1 disables guidance
  double temperature = 1.0;  // 0: greedy
  int64_t top_k = 0;         // 0: off
  double top_p = 1.0;        // 1: off
  uint64_t seed = 0;         // each prompt is sampled with this seed independently of the other prompts in the call
  // Best of N (as DALL-E re-ranks its samples with CLIP): > 1 draws this many samples for each returned image and
  // keeps the one the model itself scores highest against the prompt (eval::image_text_scores: rerank_by +
  // rerank_contrastive_weight x the cosine of the contrastive embeddings). Costs `candidates` x the sampling.
  int64_t candidates = 1;
  // contrastive | caption | itm | vqa (docs/eval.md, "Best of N"; vqa: Shapes prompts and a VQA head only, the
  // answers the prompt implies by eval::vqa_implied_scores)
  std::string rerank_by = "contrastive";
  double rerank_contrastive_weight = 0.0;  // for caption / itm / vqa
};

class Pipeline {
 public:
  // Loads a run directory (or a janus_quantize output: quant.json is recognised). InputError on any problem.
  static Pipeline load(const std::string& run_dir, const PipelineOptions& options = {});

  Pipeline(Pipeline&&) noexcept;
  Pipeline& operator=(Pipeline&&) noexcept;
  ~Pipeline();

  // ---- batched (primary) ----
  std::vector<std::string> caption(const std::vector<ImageInput>& images);
  // questions.size() == images.size(); `top_k` alternatives per answer.
  std::vector<Answer> answer(const std::vector<ImageInput>& images, const std::vector<std::string>& questions,
                             int64_t top_k = 5);
  at::Tensor embed_images(const std::vector<ImageInput>& images);    // [N, E] float32 CPU, l2-normalised
  at::Tensor embed_texts(const std::vector<std::string>& texts);     // [N, E] float32 CPU, l2-normalised
  std::vector<Classification> classify(const std::vector<ImageInput>& images);
  // For each prompt, opts.n images uint8 [H, W, 3] RGB (CPU).
  std::vector<std::vector<at::Tensor>> generate(const std::vector<std::string>& prompts,
                                                const GenerateOptions& opts = {});

  // ---- single item ----
  std::string caption(const ImageInput& image);
  Answer answer(const ImageInput& image, const std::string& question, int64_t top_k = 5);
  at::Tensor embed_image(const ImageInput& image);  // [E]
  at::Tensor embed_text(const std::string& text);   // [E]
  Classification classify(const ImageInput& image);
  std::vector<at::Tensor> generate(const std::string& prompt, const GenerateOptions& opts = {});

  // ---- retrieval ----
  // Top-k gallery rows by cosine similarity to the query text; gallery [G, E] (e.g. from embed_images).
  std::vector<RetrievalHit> retrieve(const std::string& query, const at::Tensor& gallery, int64_t k = 5);
  std::vector<RetrievalHit> retrieve(const std::string& query, const std::vector<ImageInput>& gallery, int64_t k = 5);

  // ---- facts about the loaded run ----
  const std::string& run_dir() const;
  const Config& config() const;                  // the run's resolved config (defaults if it has none)
  const JanusModelOptions& model_options() const;
  const std::vector<std::string>& answers() const;  // VQA answer vocabulary (empty without a head)
  bool has_vqa_head() const;
  int64_t num_classes() const;  // 0 without a classification head
  int64_t embed_dim() const;
  int64_t image_size() const;   // input side after pre-processing
  c10::Device device() const;
  at::ScalarType dtype() const;
  std::string quantization() const;  // "none", "int8" or "int4-g<group>" (from quant.json)
  const Tokenizer& tokenizer() const;

  // Pre-processing only: images -> float [N, 3, S, S] on CPU (fp32), as fed to the model.
  at::Tensor preprocess(const std::vector<ImageInput>& images) const;

  // The underlying model (eval mode). NOT guarded by the Pipeline's mutex: for tools/benchmarks that own the
  // Pipeline on one thread (e.g. janus_quantize).
  JanusModelImpl& model();

 private:
  struct Impl;
  explicit Pipeline(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace janus
