// janus_serve's models: ModelHandler adapters over janus::Pipeline (see include/janus/infer/server_models.h).
#include "janus/infer/server_models.h"

#include <cmath>
#include <map>
#include <tuple>

#include <fmt/format.h>

#include "janus/core/error.h"
#include "janus/data/shapes.h"
#include "janus/eval/model_eval.h"
#include "janus/infer/pipeline.h"

namespace janus::serve {
namespace {

// Requests carrying only decoded inputs; the batch thread concatenates them in request order.
struct ImageWork : PreparedRequest {
  std::vector<ImageInput> images;
  std::vector<std::string> texts;  // questions (vqa)
};
struct TextWork : PreparedRequest {
  std::vector<std::string> texts;
};
struct GenerateWork : PreparedRequest {
  std::vector<std::string> prompts;
  GenerateOptions options;
};

std::vector<ImageInput> decode_images(const Tensor& t) {
  std::vector<ImageInput> out;
  out.reserve(t.elements.size());
  for (size_t i = 0; i < t.elements.size(); ++i) {
    out.push_back(ImageInput::rgb(decode_request_image(t.elements[i], t.binary, fmt::format("{}[{}]", t.name, i))));
  }
  return out;
}

std::vector<std::string> texts_of(const Tensor& t) {
  for (size_t i = 0; i < t.elements.size(); ++i) {
    if (t.elements[i].empty()) throw ProtocolError(fmt::format("input '{}'[{}] is empty", t.name, i));
  }
  return t.elements;
}

// Concatenates one member of every request of the batch, in request order (what the batched Pipeline call takes).
template <class Work, class T>
std::vector<T> gather(const std::vector<PreparedRequest*>& batch, std::vector<T> Work::*member) {
  std::vector<T> all;
  for (auto* p : batch) {
    const auto& v = static_cast<Work*>(p)->*member;
    all.insert(all.end(), v.begin(), v.end());
  }
  return all;
}

// Splits the concatenated batch result back into per-request slices.
std::vector<int64_t> offsets(const std::vector<PreparedRequest*>& batch) {
  std::vector<int64_t> off{0};
  for (auto* p : batch) off.push_back(off.back() + p->items);
  return off;
}

Tensor rows_fp32(const std::string& name, const at::Tensor& m, int64_t begin, int64_t end) {
  const auto part = m.slice(0, begin, end).contiguous().to(at::kFloat);
  return Tensor::fp32(name, {end - begin, part.size(1)}, part.data_ptr<float>());
}

class HandlerBase : public ModelHandler {
 public:
  explicit HandlerBase(std::shared_ptr<Pipeline> p) : pipeline_(std::move(p)) {}
  const ModelMetadata& metadata() const override { return md_; }

 protected:
  std::shared_ptr<Pipeline> pipeline_;
  ModelMetadata md_;
};

class CaptionHandler : public HandlerBase {
 public:
  explicit CaptionHandler(std::shared_ptr<Pipeline> p) : HandlerBase(std::move(p)) {
    md_.name = "caption";
    md_.inputs = {{"image", DataType::kBytes, {-1}}};
    md_.outputs = {{"caption", DataType::kBytes, {-1}}};
  }
  std::unique_ptr<PreparedRequest> prepare(const InferRequest& r) const override {
    auto w = std::make_unique<ImageWork>();
    w->images = decode_images(*r.input("image"));
    return w;
  }
  std::vector<std::vector<Tensor>> run(const std::vector<PreparedRequest*>& batch) override {
    const auto caps = pipeline_->caption(gather(batch, &ImageWork::images));
    const auto off = offsets(batch);
    std::vector<std::vector<Tensor>> out;
    for (size_t i = 0; i < batch.size(); ++i) {
      out.push_back({Tensor::bytes("caption", {batch[i]->items}, {caps.begin() + off[i], caps.begin() + off[i + 1]})});
    }
    return out;
  }
};

class VqaHandler : public HandlerBase {
 public:
  explicit VqaHandler(std::shared_ptr<Pipeline> p) : HandlerBase(std::move(p)) {
    if (!pipeline_->has_vqa_head()) throw InputError("the run has no VQA head (model.num_answers = 0)");
    md_.name = "vqa";
    md_.inputs = {{"image", DataType::kBytes, {-1}}, {"question", DataType::kBytes, {-1}}};
    md_.outputs = {{"answer", DataType::kBytes, {-1}}, {"score", DataType::kFP32, {-1}}};
  }
  std::unique_ptr<PreparedRequest> prepare(const InferRequest& r) const override {
    auto w = std::make_unique<ImageWork>();
    w->images = decode_images(*r.input("image"));
    w->texts = texts_of(*r.input("question"));
    return w;
  }
  std::vector<std::vector<Tensor>> run(const std::vector<PreparedRequest*>& batch) override {
    const auto answers = pipeline_->answer(gather(batch, &ImageWork::images), gather(batch, &ImageWork::texts), 1);
    const auto off = offsets(batch);
    std::vector<std::vector<Tensor>> out;
    for (size_t i = 0; i < batch.size(); ++i) {
      std::vector<std::string> a;
      std::vector<float> s;
      for (int64_t k = off[i]; k < off[i + 1]; ++k) {
        a.push_back(answers[k].answer);
        s.push_back(static_cast<float>(answers[k].score));
      }
      const int64_t n = batch[i]->items;
      out.push_back({Tensor::bytes("answer", {n}, a), Tensor::fp32("score", {n}, s.data())});
    }
    return out;
  }
};

class EmbedTextHandler : public HandlerBase {
 public:
  explicit EmbedTextHandler(std::shared_ptr<Pipeline> p) : HandlerBase(std::move(p)) {
    md_.name = "embed_text";
    md_.inputs = {{"text", DataType::kBytes, {-1}}};
    md_.outputs = {{"embedding", DataType::kFP32, {-1, pipeline_->embed_dim()}}};
  }
  std::unique_ptr<PreparedRequest> prepare(const InferRequest& r) const override {
    auto w = std::make_unique<TextWork>();
    w->texts = texts_of(*r.input("text"));
    return w;
  }
  std::vector<std::vector<Tensor>> run(const std::vector<PreparedRequest*>& batch) override {
    const auto e = pipeline_->embed_texts(gather(batch, &TextWork::texts));
    const auto off = offsets(batch);
    std::vector<std::vector<Tensor>> out;
    for (size_t i = 0; i < batch.size(); ++i) out.push_back({rows_fp32("embedding", e, off[i], off[i + 1])});
    return out;
  }
};

class EmbedImageHandler : public HandlerBase {
 public:
  explicit EmbedImageHandler(std::shared_ptr<Pipeline> p) : HandlerBase(std::move(p)) {
    md_.name = "embed_image";
    md_.inputs = {{"image", DataType::kBytes, {-1}}};
    md_.outputs = {{"embedding", DataType::kFP32, {-1, pipeline_->embed_dim()}}};
  }
  std::unique_ptr<PreparedRequest> prepare(const InferRequest& r) const override {
    auto w = std::make_unique<ImageWork>();
    w->images = decode_images(*r.input("image"));
    return w;
  }
  std::vector<std::vector<Tensor>> run(const std::vector<PreparedRequest*>& batch) override {
    const auto e = pipeline_->embed_images(gather(batch, &ImageWork::images));
    const auto off = offsets(batch);
    std::vector<std::vector<Tensor>> out;
    for (size_t i = 0; i < batch.size(); ++i) out.push_back({rows_fp32("embedding", e, off[i], off[i + 1])});
    return out;
  }
};

double number_param(const nlohmann::json& params, const char* key, double def, double lo, double hi) {
  if (!params.contains(key)) return def;
  const auto& v = params.at(key);
  if (!v.is_number()) throw ProtocolError(fmt::format("parameter '{}' must be a number", key));
  const double d = v.get<double>();
  if (!std::isfinite(d) || d < lo || d > hi) {
    throw ProtocolError(fmt::format("parameter '{}' = {} is outside [{}, {}]", key, d, lo, hi));
  }
  return d;
}

class GenerateHandler : public HandlerBase {
 public:
  explicit GenerateHandler(std::shared_ptr<Pipeline> p) : HandlerBase(std::move(p)) {
    md_.name = "generate";
    md_.inputs = {{"prompt", DataType::kBytes, {-1}}};
    md_.outputs = {{"images", DataType::kUInt8, {-1, -1, -1, 3}}};
    md_.parameters = {"seed", "cfg_scale", "temperature", "top_k", "top_p", "candidates", "rerank_by"};
  }
  std::unique_ptr<PreparedRequest> prepare(const InferRequest& r) const override {
    auto w = std::make_unique<GenerateWork>();
    w->prompts = texts_of(*r.input("prompt"));
    const auto& p = r.parameters;
    w->options.n = 1;
    w->options.seed = static_cast<uint64_t>(number_param(p, "seed", 0, 0, 9007199254740991.0));
    w->options.cfg_scale = number_param(p, "cfg_scale", w->options.cfg_scale, 0, 100);
    w->options.temperature = number_param(p, "temperature", w->options.temperature, 0, 100);
    w->options.top_k = static_cast<int64_t>(number_param(p, "top_k", 0, 0, 1 << 20));
    w->options.top_p = number_param(p, "top_p", 1.0, 0, 1);
    if (w->options.top_p <= 0) throw ProtocolError("parameter 'top_p' must be in (0, 1]");
    w->options.candidates = static_cast<int64_t>(number_param(p, "candidates", 1, 1, 64));
    if (p.contains("rerank_by")) {
      const auto& v = p.at("rerank_by");
      if (!v.is_string()) throw ProtocolError("parameter 'rerank_by' must be a string");
      w->options.rerank_by = v.get<std::string>();
      try {
        eval::check_rerank_by(w->options.rerank_by, "parameter 'rerank_by'");
      } catch (const InputError& e) {
        throw ProtocolError(e.what());
      }
    }
    // vqa re-ranking reads each prompt as a Shapes prompt: a prompt it cannot read fails this request alone,
    // here, not the batch it would share a generate() call with
    if (w->options.rerank_by == "vqa" && w->options.candidates > 1) {
      if (!pipeline_->has_vqa_head())
        throw ProtocolError("parameter 'rerank_by' = vqa needs a VQA head; this model has none");
      for (const auto& pr : w->prompts) {
        try {
          PromptSpec::from_prompt(pr);
        } catch (const InputError& e) {
          throw ProtocolError(fmt::format("rerank_by vqa: {}", e.what()));
        }
      }
    }
    return w;
  }
  std::vector<std::vector<Tensor>> run(const std::vector<PreparedRequest*>& batch) override {
    // Requests with the same sampling options share one generate() call; each prompt is seeded on its own, so
    // the grouping does not change any image.
    using Key = std::tuple<uint64_t, double, double, int64_t, double, int64_t, std::string>;
    std::map<Key, std::vector<size_t>> groups;
    for (size_t i = 0; i < batch.size(); ++i) {
      const auto& o = static_cast<GenerateWork*>(batch[i])->options;
      groups[Key{o.seed, o.cfg_scale, o.temperature, o.top_k, o.top_p, o.candidates, o.rerank_by}].push_back(i);
    }
    std::vector<std::vector<Tensor>> out(batch.size());
    for (const auto& [key, members] : groups) {
      std::vector<std::string> prompts;
      for (const size_t i : members) {
        const auto& pr = static_cast<GenerateWork*>(batch[i])->prompts;
        prompts.insert(prompts.end(), pr.begin(), pr.end());
      }
      const auto images = pipeline_->generate(prompts, static_cast<GenerateWork*>(batch[members[0]])->options);
      size_t k = 0;
      for (const size_t i : members) {
        std::vector<at::Tensor> mine;
        for (int64_t j = 0; j < batch[i]->items; ++j, ++k) mine.push_back(images.at(k).at(0));
        const auto stacked = at::stack(mine).contiguous().to(at::kByte);
        std::vector<int64_t> shape(stacked.sizes().begin(), stacked.sizes().end());
        out[i] = {Tensor::uint8("images", shape, stacked.data_ptr<uint8_t>())};
      }
    }
    return out;
  }
};

}  // namespace

at::Tensor decode_request_image(const std::string& element, bool binary, const std::string& what) {
  const std::string bytes = binary ? element : base64_decode(element);
  try {
    return ImageInput::bytes(bytes, what).decode();
  } catch (const InputError&) {
    throw;
  } catch (const std::exception& e) {
    throw InputError(fmt::format("{}: {}", what, e.what()));
  }
}

std::vector<std::string> pipeline_model_names() { return {"caption", "vqa", "embed_text", "embed_image", "generate"}; }

std::shared_ptr<ModelHandler> make_pipeline_handler(const std::string& name, std::shared_ptr<Pipeline> pipeline) {
  if (name == "caption") return std::make_shared<CaptionHandler>(std::move(pipeline));
  if (name == "vqa") return std::make_shared<VqaHandler>(std::move(pipeline));
  if (name == "embed_text") return std::make_shared<EmbedTextHandler>(std::move(pipeline));
  if (name == "embed_image") return std::make_shared<EmbedImageHandler>(std::move(pipeline));
  if (name == "generate") return std::make_shared<GenerateHandler>(std::move(pipeline));
  throw InputError(fmt::format("unknown model '{}' (known: caption, vqa, embed_text, embed_image, generate)", name));
}

}  // namespace janus::serve
