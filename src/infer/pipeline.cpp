#include "janus/infer/pipeline.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <mutex>
#include <random>

#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/nn/module.h>
#include <torch/cuda.h>
#include <torch/types.h>

#include "janus/core/error.h"
#include "janus/core/fs.h"
#include "janus/core/json_file.h"
#include "janus/data/image.h"
#include "janus/data/tokenizer.h"
#include "janus/decoder/image_output.h"
#include "janus/eval/model_eval.h"
#include "janus/fusion/attention.h"
#include "janus/infer/quantize.h"
#include "janus/model/janus_model.h"
#include "janus/model/model_io.h"
#include "janus/model/run.h"

namespace janus {
namespace fs = std::filesystem;

// ---------------------------------------------------------------- ImageInput

ImageInput ImageInput::file(std::string path) {
  ImageInput in;
  in.kind_ = Kind::kFile;
  in.name_ = path;
  in.data_ = std::move(path);
  return in;
}

ImageInput ImageInput::bytes(std::string encoded, std::string name) {
  ImageInput in;
  in.kind_ = Kind::kBytes;
  in.data_ = std::move(encoded);
  in.name_ = std::move(name);
  return in;
}

ImageInput ImageInput::rgb(at::Tensor hwc_u8) {
  ImageInput in;
  in.kind_ = Kind::kRgb;
  in.rgb_ = std::move(hwc_u8);
  in.name_ = "rgb tensor";
  return in;
}

at::Tensor ImageInput::decode() const {
  switch (kind_) {
    case Kind::kFile:
      if (data_.empty()) throw_input_error("image: empty file path");
      return decode_image_file(data_);
    case Kind::kBytes:
      if (data_.empty()) throw_input_error("image '{}': no bytes", name_);
      return decode_image_bytes(data_, name_);
    case Kind::kRgb:
      break;
  }
  if (!rgb_.defined() || rgb_.dim() != 3 || rgb_.size(2) != 3 || rgb_.scalar_type() != at::kByte ||
      rgb_.size(0) < 1 || rgb_.size(1) < 1) {
    throw_input_error("image: expected a uint8 [H, W, 3] RGB tensor, got {}",
                      rgb_.defined() ? fmt::format("{} {}", std::string(c10::toString(rgb_.scalar_type())),
                                                   fmt::join(rgb_.sizes(), "x"))
                                     : std::string("an undefined tensor"));
  }
  return rgb_.cpu().contiguous();
}

// ---------------------------------------------------------------- Pipeline::Impl

struct Pipeline::Impl {
  PipelineOptions options;
  std::string dir;
  Config config;
  JanusModel model{nullptr};
  std::shared_ptr<const Tokenizer> tokenizer;
  std::vector<std::string> answers;
  c10::Device device = c10::kCPU;
  at::ScalarType dtype = at::kFloat;
  std::string quant = "none";
  ImageTransform transform;
  std::mutex mu;  // serialises forward passes (the modules keep per-forward state)
  std::vector<LSHAttentionImpl*> lsh;  // re-seeded before every forward pass (see Forward)

  // Holds the model for one forward pass: the lock, no autograd, and the LSH attention generators re-seeded so
  // that a call's result does not depend on the calls before it (LSHAttention draws fresh rotations per forward).
  struct Forward {
    explicit Forward(Impl& impl) : lock(impl.mu) {
      for (auto* l : impl.lsh) l->reset();
    }
    std::lock_guard<std::mutex> lock;
    torch::NoGradGuard no_grad;
  };

  TextInput encode(const std::vector<std::string>& texts, const char* what, int64_t max_len) const {
    for (std::size_t i = 0; i < texts.size(); ++i) {
      const bool blank = std::all_of(texts[i].begin(), texts[i].end(), [](unsigned char c) { return std::isspace(c); });
      if (blank) throw_input_error("{} {}: empty text", what, i);
    }
    const auto b = tokenizer->encode_batch(texts, max_len);
    return {b.ids.to(device), b.attention_mask.to(at::kBool).to(device)};
  }

  at::Tensor images_to_device(const at::Tensor& x) const { return x.to(device, dtype); }
};

namespace {

c10::Device parse_device(const std::string& s) {
  if (s == "auto") return torch::cuda::is_available() ? c10::Device(c10::kCUDA) : c10::Device(c10::kCPU);
  try {
    c10::Device d(s);
    if (d.is_cuda() && !torch::cuda::is_available()) throw_input_error("device '{}': CUDA is not available", s);
    return d;
  } catch (const c10::Error&) {
    throw_input_error("device '{}': expected cpu, cuda, cuda:N or auto", s);
  }
}

at::ScalarType parse_dtype(const std::string& s) {
  if (s == "fp32" || s == "float32") return at::kFloat;
  if (s == "bf16" || s == "bfloat16") return at::kBFloat16;
  throw_input_error("dtype '{}': expected fp32 or bf16", s);
}

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

// Loads a janus_quantize output directory (quant.json beside the usual run files).
RunArtifacts load_quantized_run(const std::string& dir, const std::string& weights, nlohmann::json* spec_out) {
  const fs::path d(dir);
  RunArtifacts run;
  run.dir = dir;
  if (is_file(d / "config.yaml")) run.config = Config::load_resolved((d / "config.yaml").string());
  const nlohmann::json spec = read_json_file((d / "model.json").string(), "quantised run's model spec");
  const nlohmann::json qspec = read_json_file((d / "quant.json").string(), "quantised run's quant spec");
  run.model = JanusModel(model_options_from_spec(spec));
  apply_quant_spec(*run.model, qspec);
  run.weights = weights == "auto" || weights == "final" ? (d / "final" / "model.safetensors").string() : weights;
  if (!is_file(run.weights)) throw_input_error("quantised run '{}': weights '{}' do not exist", dir, run.weights);
  load_quantized_weights(*run.model, run.weights);
  run.model->eval();
  if (!is_file(d / "tokenizer.model")) throw_input_error("run '{}' has no tokenizer.model", dir);
  run.tokenizer = std::make_shared<const Tokenizer>(Tokenizer::load((d / "tokenizer.model").string()));
  if (is_file(d / "answers.json")) {
    const auto j = read_json_file((d / "answers.json").string(), "answer vocabulary");
    try {
      run.answers = j.get<std::vector<std::string>>();
    } catch (const nlohmann::json::exception& e) {
      throw_input_error("'{}/answers.json' must be a JSON list of strings: {}", dir, e.what());
    }
  }
  if (run.model->options.num_answers > 0 &&
      static_cast<int64_t>(run.answers.size()) != run.model->options.num_answers) {
    throw_input_error("run '{}': the VQA head has {} answers but answers.json lists {}", dir,
                      run.model->options.num_answers, run.answers.size());
  }
  *spec_out = qspec;
  return run;
}

// Ids up to and including the first eos.
std::vector<int64_t> until_eos(const at::Tensor& row) {
  std::vector<int64_t> ids;
  const auto r = row.cpu().contiguous();
  const auto* p = r.data_ptr<int64_t>();
  for (int64_t i = 0; i < r.numel(); ++i) {
    ids.push_back(p[i]);
    if (p[i] == SpecialTokens::eos) break;
  }
  return ids;
}

void quant_prepare(torch::nn::Module& model) {
  for (auto& [name, q] : quantized_layers(model)) q->prepare();
}

}  // namespace

Pipeline::Pipeline(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Pipeline::Pipeline(Pipeline&&) noexcept = default;
Pipeline& Pipeline::operator=(Pipeline&&) noexcept = default;
Pipeline::~Pipeline() = default;

Pipeline Pipeline::load(const std::string& run_dir, const PipelineOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->dir = run_dir;
  impl->device = parse_device(options.device);
  impl->dtype = parse_dtype(options.dtype);
  if (options.threads < 0) throw_input_error("threads must be >= 0, got {}", options.threads);
  if (options.max_caption_len < 2) throw_input_error("max_caption_len must be >= 2");
  if (options.max_text_len < 2) throw_input_error("max_text_len must be >= 2");
  if (options.threads > 0) at::set_num_threads(options.threads);
  std::error_code ec;
  if (!fs::is_directory(run_dir, ec)) throw_input_error("run directory '{}' does not exist", run_dir);

  RunArtifacts run;
  if (is_file(fs::path(run_dir) / "quant.json")) {
    nlohmann::json spec;
    run = load_quantized_run(run_dir, options.weights, &spec);
    const int bits = spec.value("bits", 0);
    impl->quant = bits == 4 ? fmt::format("int4-g{}", spec.value("group_size", 0)) : fmt::format("int{}", bits);
  } else {
    LoadRunOptions lo;
    lo.weights = options.weights;
    run = load_run(run_dir, lo);
  }
  impl->config = std::move(run.config);
  impl->model = run.model;
  impl->tokenizer = run.tokenizer;
  impl->answers = std::move(run.answers);
  impl->model->to(impl->device, impl->dtype);
  impl->model->eval();
  if (impl->quant != "none") {
    quant_prepare(*impl->model);
    verify_quantized_model(*impl->model);
  }

  for (const auto& item : impl->model->named_modules()) {
    if (auto* l = dynamic_cast<LSHAttentionImpl*>(item.value().get())) impl->lsh.push_back(l);
  }
  const int64_t side = impl->model->options.image_size();
  impl->transform.resize_short = side;
  impl->transform.crop = side;
  impl->transform.mean = impl->config.data.mean;
  impl->transform.std = impl->config.data.std;
  spdlog::info("pipeline: loaded {} ({} flavour, {} px, {}, {}, quantisation {})", run_dir,
               impl->model->options.flavour, side, impl->device.str(), std::string(c10::toString(impl->dtype)),
               impl->quant);
  return Pipeline(std::move(impl));
}

at::Tensor Pipeline::preprocess(const std::vector<ImageInput>& images) const {
  std::vector<at::Tensor> xs;
  xs.reserve(images.size());
  std::mt19937_64 rng(0);  // center crop, no flip: nothing random is drawn
  for (const auto& im : images) xs.push_back(transform_image(im.decode(), impl_->transform, rng));
  if (xs.empty()) return at::empty({0, 3, image_size(), image_size()});
  return at::stack(xs);
}

// ---- batched ----

std::vector<std::string> Pipeline::caption(const std::vector<ImageInput>& images) {
  if (images.empty()) return {};
  const auto x = impl_->images_to_device(preprocess(images));
  at::Tensor ids;
  {
    Impl::Forward fwd(*impl_);
    ids = impl_->model->generate_caption(x, SpecialTokens::bos, SpecialTokens::eos, impl_->options.max_caption_len);
  }
  ids = ids.cpu();
  std::vector<std::string> out;
  for (int64_t i = 0; i < ids.size(0); ++i) out.push_back(impl_->tokenizer->decode(until_eos(ids[i])));
  return out;
}

std::vector<Answer> Pipeline::answer(const std::vector<ImageInput>& images, const std::vector<std::string>& questions,
                                     int64_t top_k) {
  if (!has_vqa_head()) {
    throw_input_error("answer: the run '{}' has no VQA head (model num_answers = 0); train a VQA stage", impl_->dir);
  }
  if (images.size() != questions.size()) {
    throw_input_error("answer: {} images but {} questions", images.size(), questions.size());
  }
  if (top_k < 1) throw_input_error("answer: top_k must be >= 1, got {}", top_k);
  if (images.empty()) return {};
  const auto q = impl_->encode(questions, "question", impl_->options.max_text_len);
  const auto x = impl_->images_to_device(preprocess(images));
  at::Tensor probs;
  {
    Impl::Forward fwd(*impl_);
    probs = impl_->model->vqa(x, q).logits.to(at::kFloat).sigmoid().cpu();
  }
  const int64_t k = std::min<int64_t>(top_k, probs.size(1));
  const auto [vals, idx] = probs.topk(k, 1);
  std::vector<Answer> out(images.size());
  for (int64_t i = 0; i < probs.size(0); ++i) {
    for (int64_t j = 0; j < k; ++j) {
      out[i].top.emplace_back(impl_->answers.at(idx[i][j].item<int64_t>()), vals[i][j].item<double>());
    }
    out[i].answer = out[i].top.front().first;
    out[i].score = out[i].top.front().second;
  }
  return out;
}

at::Tensor Pipeline::embed_images(const std::vector<ImageInput>& images) {
  if (images.empty()) return at::empty({0, embed_dim()});
  const auto x = impl_->images_to_device(preprocess(images));
  at::Tensor e;
  {
    Impl::Forward fwd(*impl_);
    auto& m = *impl_->model;
    e = m.vision_proj->forward(m.vision->forward(x).pooled);
  }
  e = e.to(at::kFloat).cpu();
  return e / e.norm(2, {-1}, true).clamp_min(1e-12);
}

at::Tensor Pipeline::embed_texts(const std::vector<std::string>& texts) {
  if (texts.empty()) return at::empty({0, embed_dim()});
  const auto t = impl_->encode(texts, "text", impl_->options.max_text_len);
  at::Tensor e;
  {
    Impl::Forward fwd(*impl_);
    auto& m = *impl_->model;
    e = m.text_proj->forward(m.text->forward(t.ids, t.mask).pooled);
  }
  e = e.to(at::kFloat).cpu();
  return e / e.norm(2, {-1}, true).clamp_min(1e-12);
}

std::vector<Classification> Pipeline::classify(const std::vector<ImageInput>& images) {
  if (num_classes() == 0) {
    throw_input_error("classify: the run '{}' has no classification head (model num_classes = 0)", impl_->dir);
  }
  if (images.empty()) return {};
  const auto x = impl_->images_to_device(preprocess(images));
  at::Tensor probs;
  {
    Impl::Forward fwd(*impl_);
    probs = impl_->model->classify(x).logits.to(at::kFloat).softmax(-1).cpu().contiguous();
  }
  std::vector<Classification> out(images.size());
  for (int64_t i = 0; i < probs.size(0); ++i) {
    const auto row = probs[i];
    out[i].probs.assign(row.data_ptr<float>(), row.data_ptr<float>() + row.numel());
    out[i].label = row.argmax().item<int64_t>();
    out[i].score = out[i].probs[out[i].label];
  }
  return out;
}

std::vector<std::vector<at::Tensor>> Pipeline::generate(const std::vector<std::string>& prompts,
                                                        const GenerateOptions& opts) {
  if (opts.n < 1 || opts.n > 64) throw_input_error("generate: n must be in [1, 64], got {}", opts.n);
  if (opts.temperature < 0) throw_input_error("generate: temperature must be >= 0, got {}", opts.temperature);
  if (opts.top_k < 0) throw_input_error("generate: top_k must be >= 0, got {}", opts.top_k);
  if (!(opts.top_p > 0 && opts.top_p <= 1)) throw_input_error("generate: top_p must be in (0, 1], got {}", opts.top_p);
  if (opts.cfg_scale < 0) throw_input_error("generate: cfg_scale must be >= 0, got {}", opts.cfg_scale);
  if (opts.candidates < 1 || opts.candidates > 64) {
    throw_input_error("generate: candidates must be in [1, 64], got {}", opts.candidates);
  }
  eval::check_rerank_by(opts.rerank_by, "generate: rerank_by");
  const int64_t K = opts.candidates;
  // vqa: the questions each prompt implies (a prompt outside the Shapes grammar is named before any sampling)
  std::vector<std::vector<ImpliedQuestion>> implied;
  if (K > 1 && opts.rerank_by == "vqa") {
    if (!has_vqa_head()) {
      throw_input_error("generate: rerank_by vqa needs a VQA head, and the run '{}' has none (num_answers = 0)",
                        impl_->dir);
    }
    for (const auto& p : prompts) implied.push_back(shapes_prompt_questions(PromptSpec::from_prompt(p)));
  }
  auto& m = *impl_->model;
  // text + <boi> + codes must fit the causal stack's positions
  const int64_t room = m.image_gen->options.max_positions() - m.options.code_tokens() - 1;
  const int64_t max_len = std::min(m.gen_prompt_limit(impl_->options.max_text_len), room);
  if (max_len < 2) throw_error("generate: the model has no room for a prompt (max_positions too small)");
  std::vector<std::vector<at::Tensor>> out;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    const auto t = impl_->encode({prompts[i]}, "prompt", max_len);
    SamplingOptions s;
    s.samples_per_prompt(opts.n * K)
        .temperature(opts.temperature)
        .top_k(opts.top_k)
        .top_p(opts.top_p)
        .cfg(opts.cfg_scale > 1.0)
        .cfg_scale(opts.cfg_scale)
        .seed(opts.seed);
    at::Tensor img;
    {
      Impl::Forward fwd(*impl_);
      img = m.generate_images(t.ids, s);
    }
    const auto u8 = to_uint8_image(img.to(at::kFloat).cpu());  // [n * K, H, W, 3]
    std::vector<at::Tensor> imgs;
    if (K == 1) {
      for (int64_t j = 0; j < u8.size(0); ++j) imgs.push_back(u8[j].contiguous());
    } else {
      // Every sample as the understanding path sees a decoded image, scored against the prompt; rows j*K ..
      // j*K+K-1 compete for image j (ties keep the first).
      std::vector<ImageInput> ins;
      for (int64_t j = 0; j < u8.size(0); ++j) ins.push_back(ImageInput::rgb(u8[j].contiguous()));
      const auto x = impl_->images_to_device(preprocess(ins));
      const auto text = impl_->encode(std::vector<std::string>(static_cast<size_t>(u8.size(0)), prompts[i]), "prompt",
                                      impl_->options.max_text_len);
      at::Tensor scores;
      {
        Impl::Forward fwd(*impl_);
        if (opts.rerank_by == "vqa") {
          scores = eval::vqa_implied_scores(
              m, x, std::vector<std::vector<ImpliedQuestion>>(static_cast<size_t>(u8.size(0)), implied[i]),
              impl_->answers,
              [&](const std::vector<std::string>& q) {
                return impl_->encode(q, "question", impl_->options.max_text_len);
              },
              64);
          if (opts.rerank_contrastive_weight != 0.0) {
            scores = scores + opts.rerank_contrastive_weight * eval::image_text_scores(m, x, text, "contrastive");
          }
        } else {
          scores = eval::image_text_scores(m, x, text, opts.rerank_by, opts.rerank_contrastive_weight);
        }
      }
      const auto best = scores.to(at::kDouble).view({opts.n, K}).argmax(1);
      for (int64_t j = 0; j < opts.n; ++j) imgs.push_back(u8[j * K + best[j].item<int64_t>()].contiguous());
    }
    out.push_back(std::move(imgs));
  }
  return out;
}

// ---- single item ----

std::string Pipeline::caption(const ImageInput& image) { return caption(std::vector<ImageInput>{image}).front(); }
Answer Pipeline::answer(const ImageInput& image, const std::string& question, int64_t top_k) {
  return answer(std::vector<ImageInput>{image}, std::vector<std::string>{question}, top_k).front();
}
at::Tensor Pipeline::embed_image(const ImageInput& image) { return embed_images({image})[0]; }
at::Tensor Pipeline::embed_text(const std::string& text) { return embed_texts({text})[0]; }
Classification Pipeline::classify(const ImageInput& image) { return classify(std::vector<ImageInput>{image}).front(); }
std::vector<at::Tensor> Pipeline::generate(const std::string& prompt, const GenerateOptions& opts) {
  return generate(std::vector<std::string>{prompt}, opts).front();
}

// ---- retrieval ----

std::vector<RetrievalHit> Pipeline::retrieve(const std::string& query, const at::Tensor& gallery, int64_t k) {
  if (k < 1) throw_input_error("retrieve: k must be >= 1, got {}", k);
  if (!gallery.defined() || gallery.dim() != 2 || gallery.size(1) != embed_dim()) {
    throw_input_error("retrieve: gallery must be [G, {}] embeddings, got {}", embed_dim(),
                      gallery.defined() ? fmt::format("[{}]", fmt::join(gallery.sizes(), ", ")) : "undefined");
  }
  if (!at::isFloatingType(gallery.scalar_type())) throw_input_error("retrieve: gallery must be floating point");
  const auto q = embed_text(query);
  auto g = gallery.to(at::kFloat).cpu();
  g = g / g.norm(2, {-1}, true).clamp_min(1e-12);
  const auto scores = at::matmul(g, q);
  std::vector<RetrievalHit> hits;
  if (g.size(0) == 0) return hits;
  const auto [vals, idx] = scores.topk(std::min<int64_t>(k, g.size(0)));
  for (int64_t i = 0; i < idx.size(0); ++i) hits.push_back({idx[i].item<int64_t>(), vals[i].item<double>()});
  return hits;
}

std::vector<RetrievalHit> Pipeline::retrieve(const std::string& query, const std::vector<ImageInput>& gallery,
                                             int64_t k) {
  return retrieve(query, embed_images(gallery), k);
}

// ---- facts ----

const std::string& Pipeline::run_dir() const { return impl_->dir; }
const Config& Pipeline::config() const { return impl_->config; }
const JanusModelOptions& Pipeline::model_options() const { return impl_->model->options; }
const std::vector<std::string>& Pipeline::answers() const { return impl_->answers; }
bool Pipeline::has_vqa_head() const { return static_cast<bool>(impl_->model->vqa_head); }
int64_t Pipeline::num_classes() const { return impl_->model->cls_head ? impl_->model->options.num_classes : 0; }
int64_t Pipeline::embed_dim() const { return impl_->model->options.embed_dim; }
int64_t Pipeline::image_size() const { return impl_->model->options.image_size(); }
c10::Device Pipeline::device() const { return impl_->device; }
at::ScalarType Pipeline::dtype() const { return impl_->dtype; }
std::string Pipeline::quantization() const { return impl_->quant; }
const Tokenizer& Pipeline::tokenizer() const { return *impl_->tokenizer; }
JanusModelImpl& Pipeline::model() { return *impl_->model; }

}  // namespace janus
