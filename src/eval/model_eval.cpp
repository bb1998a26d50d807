// Model-driven evaluation (include/janus/eval/model_eval.h): data resolution, batching, progress and the tasks.
#include "janus/eval/model_eval.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <numeric>
#include <optional>
#include <random>
#include <set>
#include <unordered_map>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "janus/core/error.h"
#include "janus/core/fs.h"
#include "janus/core/hash.h"
#include "janus/core/json_file.h"
#include "janus/data/factory.h"
#include "janus/data/formats.h"
#include "janus/data/image.h"
#include "janus/data/shapes.h"
#include "janus/eval/caption_metrics.h"
#include "janus/eval/inception.h"
#include "janus/eval/metrics.h"
#include "janus/eval/score.h"
#include "janus/eval/vqa.h"
#include "janus/fusion/attention.h"
#include "janus/io/module_io.h"
#include "janus/io/safetensors.h"
#include "janus/model/model_io.h"
#include "janus/model/run.h"

namespace janus::eval {
namespace fs = std::filesystem;
using nlohmann::json;

const std::vector<std::string>& eval_task_names() {
  static const std::vector<std::string> names{"retrieval", "caption", "vqa", "nlvr2", "classify", "generate", "recon"};
  return names;
}

std::string model_config_hash(const JanusModelOptions& options, const std::string& config_text) {
  return sha256_hex(model_spec(options).dump() + "\n" + config_text);
}

EvalModel eval_model(const RunArtifacts& run) {
  EvalModel m;
  m.model = run.model.ptr().get();
  m.tokenizer = run.tokenizer.get();
  m.answers = run.answers;
  m.weights = run.weights;
  const auto cfg = fs::path(run.dir) / "config.yaml";
  std::error_code ec;
  m.config_hash = model_config_hash(run.model->options, fs::is_regular_file(cfg, ec) ? read_file(cfg.string()) : "");
  return m;
}

// ---------------------------------------------------------------------------------------------------------------
// Data resolution
namespace {

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}
bool is_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}
bool is_shapes_dir(const std::string& data) { return is_file(fs::path(data) / "shapes_info.json"); }
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
// Image root of a task file: its directory, or the Shapes directory when the file sits one level inside one
// (vqa/, nlvr2/, geneval/ name images relative to the Shapes root).
std::string parent_or_dot(const std::string& path) {
  const auto p = fs::path(path).parent_path();
  if (!p.empty() && !p.parent_path().empty() && is_file(p.parent_path() / "shapes_info.json")) {
    return p.parent_path().string();
  }
  return p.empty() ? std::string(".") : p.string();
}
std::string require_file(const fs::path& p, const std::string& task, const std::string& what) {
  if (!is_file(p)) throw_input_error("{}: {} '{}' does not exist", task, what, p.string());
  return p.string();
}

}  // namespace

json resolve_task_data(const std::string& task, const std::string& data, const std::string& split) {
  const auto& names = eval_task_names();
  if (std::find(names.begin(), names.end(), task) == names.end()) {
    throw_input_error("unknown task '{}' (retrieval, caption, vqa, nlvr2, classify, generate, recon, all)", task);
  }
  if (data.empty()) throw_input_error("{}: no --data given", task);
  if (!fs::exists(data)) throw_input_error("{}: data '{}' does not exist", task, data);
  const fs::path d(data);
  if (is_shapes_dir(data)) {
    const std::string s = split;
    if (task == "retrieval" || task == "caption" || task == "recon") {
      return {{"layout", "shapes"},
              {"captions", require_file(d / ("captions_" + s + ".json"), task, "Shapes captions")},
              {"image_root", data}};
    }
    if (task == "vqa") {
      require_file(d / "vqa" / ("annotations_" + s + ".json"), task, "Shapes VQA annotations");
      return {{"layout", "shapes"},
              {"questions", require_file(d / "vqa" / ("questions_" + s + ".json"), task, "Shapes VQA questions")},
              {"annotations", (d / "vqa" / ("annotations_" + s + ".json")).string()},
              {"image_root", data}};
    }
    if (task == "nlvr2") {
      return {{"layout", "shapes"},
              {"nlvr2", require_file(d / "nlvr2" / (s + ".jsonl"), task, "Shapes NLVR2 file")},
              {"image_root", data}};
    }
    if (task == "generate") {
      return {{"layout", "shapes"},
              {"prompts", require_file(d / "geneval" / ("prompts_" + s + ".json"), task, "Shapes prompts")},
              {"image_root", data}};
    }
    throw_input_error(
        "classify: a Shapes directory has no image-classification layout; pass an image folder "
        "(DIR/<class>/*.png, or DIR/{}/<class>/*.png)",
        s);
  }
  if (task == "classify" || (task == "recon" && is_dir(d))) {
    if (!is_dir(d)) throw_input_error("{}: '{}' is not an image folder (DIR/<class>/<image>)", task, data);
    const fs::path root = is_dir(d / split) ? d / split : d;
    return {{"layout", "imagefolder"}, {"images", root.string()}};
  }
  if (is_dir(d)) {
    throw_input_error("{}: '{}' is a directory but neither a Shapes directory (no shapes_info.json) nor a task file",
                      task, data);
  }
  if (task == "retrieval" || task == "caption" || task == "recon") {
    if (!ends_with(data, ".json")) throw_input_error("{}: expected a COCO captions .json, got '{}'", task, data);
    return {{"layout", "coco"}, {"captions", data}, {"image_root", parent_or_dot(data)}};
  }
  if (task == "vqa") {
    const std::string name = d.filename().string();
    const auto q = name.find("questions");
    if (q == std::string::npos)
      throw_input_error("vqa: a VQA questions file name must contain \"questions\": '{}'", data);
    const auto ann = d.parent_path() / (name.substr(0, q) + "annotations" + name.substr(q + 9));
    return {{"layout", "vqa"},
            {"questions", data},
            {"annotations", require_file(ann, task, "VQA annotations (beside the questions)")},
            {"image_root", parent_or_dot(data)}};
  }
  if (task == "nlvr2") {
    if (!ends_with(data, ".jsonl") && !ends_with(data, ".json")) {
      throw_input_error("nlvr2: expected an NLVR2 .jsonl file, got '{}'", data);
    }
    return {{"layout", "nlvr2"}, {"nlvr2", data}, {"image_root", parent_or_dot(data)}};
  }
  // generate
  if (!ends_with(data, ".json")) throw_input_error("generate: expected a prompts .json file, got '{}'", data);
  return {{"layout", "prompts"}, {"prompts", data}, {"image_root", parent_or_dot(data)}};
}

std::vector<std::string> supported_tasks(const std::string& data, const std::string& split) {
  std::vector<std::string> out;
  for (const auto& t : eval_task_names()) {
    try {
      resolve_task_data(t, data, split);
      out.push_back(t);
    } catch (const InputError&) {
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Shared machinery
namespace {

class Progress {
 public:
  Progress(const EvalOptions& o, std::string task, std::string phase, int64_t total)
      : cb_(o.progress),
        task_(std::move(task)),
        phase_(std::move(phase)),
        total_(total),
        start_(std::chrono::steady_clock::now()),
        last_log_(start_) {}
  void advance(int64_t n) {
    done_ += n;
    EvalProgress p;
    p.task = task_;
    p.phase = phase_;
    p.done = done_;
    p.total = total_;
    const auto now = std::chrono::steady_clock::now();
    p.seconds = std::chrono::duration<double>(now - start_).count();
    p.per_second = p.seconds > 0 ? static_cast<double>(done_) / p.seconds : 0.0;
    p.eta_seconds = p.per_second > 0 ? static_cast<double>(total_ - done_) / p.per_second : 0.0;
    if (cb_) {
      cb_(p);
      return;
    }
    if (done_ >= total_ || std::chrono::duration<double>(now - last_log_).count() >= 2.0) {
      last_log_ = now;
      spdlog::info("[{}] {} {}/{} ({:.0f}%), {:.1f}/s, ETA {:.0f} s", task_, phase_, done_, total_,
                   total_ > 0 ? 100.0 * static_cast<double>(done_) / static_cast<double>(total_) : 100.0, p.per_second,
                   p.eta_seconds);
    }
  }

 private:
  std::function<void(const EvalProgress&)> cb_;
  std::string task_, phase_;
  int64_t total_, done_ = 0;
  std::chrono::steady_clock::time_point start_, last_log_;
};

struct Ctx {
  const EvalModel& m;
  const EvalOptions& o;
  JanusModelImpl& model;
  const Tokenizer& tok;
  c10::Device device;
  ImageTransform transform;
  std::vector<LSHAttentionImpl*> lsh;
  // LSH attention draws fresh bucket rotations on every call; re-seeding before each batch makes every result
  // independent of batch size, batch composition and of the forward calls that came before.
  void reseed() const {
    for (auto* l : lsh) l->reset();
  }
};

int64_t limited(int64_t n, int64_t limit) { return limit > 0 ? std::min(n, limit) : n; }

// A decoded image (uint8 [H, W, 3]) -> the model's normalised input [3, H, W] (the eval transform is deterministic).
at::Tensor model_image(const Ctx& c, const at::Tensor& u8) {
  std::mt19937_64 rng(0);
  return transform_image(u8, c.transform, rng);
}

at::Tensor load_image(const Ctx& c, const std::string& root, const std::string& rel) {
  return model_image(c, decode_image_file(resolve_under(root, rel)));
}

// Normalised model images [B, 3, H, W] -> uint8 [B, H, W, 3] RGB.
at::Tensor to_u8(const at::Tensor& x, const EvalOptions& o) {
  const auto mean = at::tensor(o.mean, at::kFloat).view({1, 3, 1, 1});
  const auto sd = at::tensor(o.std, at::kFloat).view({1, 3, 1, 1});
  const auto px = (x.detach().to(at::kCPU).to(at::kFloat) * sd + mean).clamp(0, 1);
  return (px * 255.0).round().to(at::kByte).permute({0, 2, 3, 1}).contiguous();
}
// Normalised model images -> float [B, 3, H, W] in [0, 1].
at::Tensor to_unit(const at::Tensor& x, const EvalOptions& o) {
  const auto mean = at::tensor(o.mean, at::kFloat).view({1, 3, 1, 1});
  const auto sd = at::tensor(o.std, at::kFloat).view({1, 3, 1, 1});
  return (x.detach().to(at::kCPU).to(at::kFloat) * sd + mean).clamp(0, 1);
}

TextInput encode_texts(const Ctx& c, const std::vector<std::string>& texts) {
  // Padded to max_text_len, not to the batch's longest text: the outputs then never depend on batch composition.
  const auto b = c.tok.encode_batch(texts, c.o.max_text_len, /*pad_to_max=*/true);
  return {b.ids.to(c.device), b.attention_mask.to(at::kBool).to(c.device)};
}

// Cuts at the first eos (and drops a leading bos) and decodes.
std::string decode_ids(const Tokenizer& tok, const at::Tensor& row) {
  const auto r = row.to(at::kCPU).contiguous();
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < r.size(0); ++i) {
    const int64_t v = r[i].item<int64_t>();
    if (v == SpecialTokens::eos) break;
    ids.push_back(v);
  }
  return tok.decode(ids);
}

std::string out_path(const EvalOptions& o, const std::string& name) {
  fs::create_directories(o.out_dir);
  return (fs::path(o.out_dir) / name).string();
}

// With --out-dir: writes one result row per sample as `name` (the official results-file layout) and records its
// path in out["outputs"]["results"].
template <class Row>
void write_results(const EvalOptions& o, json& out, const std::string& name, size_t n, Row row) {
  if (o.out_dir.empty()) return;
  json res = json::array();
  for (size_t i = 0; i < n; ++i) res.push_back(row(i));
  const auto p = out_path(o, name);
  write_file_atomic(p, res.dump(1) + "\n");
  out["outputs"]["results"] = p;
}

// Unique images of a COCO captions file (first-seen order) and their captions.
struct CaptionSet {
  std::vector<int64_t> image_ids;
  std::vector<std::string> files;
  std::vector<std::vector<std::string>> captions;
};
CaptionSet caption_set(const std::string& path, int64_t limit) {
  const auto recs = load_coco_captions(path);
  CaptionSet s;
  std::map<int64_t, size_t> pos;
  for (const auto& r : recs) {
    auto it = pos.find(r.image_id);
    if (it == pos.end()) {
      if (limit > 0 && static_cast<int64_t>(s.image_ids.size()) >= limit) continue;
      it = pos.emplace(r.image_id, s.image_ids.size()).first;
      s.image_ids.push_back(r.image_id);
      s.files.push_back(r.file);
      s.captions.emplace_back();
    }
    s.captions[it->second].push_back(r.caption);
  }
  if (s.image_ids.empty()) throw_input_error("{}: no captions", path);
  return s;
}

// Loads images [i0, i1) of a caption set as one batch on the device.
at::Tensor caption_images(const Ctx& c, const CaptionSet& s, const std::string& root, int64_t i0, int64_t i1) {
  std::vector<at::Tensor> xs;
  for (int64_t i = i0; i < i1; ++i) xs.push_back(load_image(c, root, s.files[static_cast<size_t>(i)]));
  return at::stack(xs).to(c.device);
}

double elapsed(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// ---------------------------------------------------------------------------------------------------------------
// retrieval
}  // namespace

at::Tensor caption_log_likelihood(JanusModelImpl& model, const at::Tensor& images, const TextInput& text) {
  const auto logits = model.caption(images, text).logits.to(at::kFloat);
  const auto target = text.ids.slice(1, 1);
  const auto logp = at::log_softmax(logits, -1).gather(-1, target.unsqueeze(-1)).squeeze(-1);
  return (logp * text.mask.slice(1, 1).to(at::kFloat)).sum(1);
}

at::Tensor image_text_scores(JanusModelImpl& model, const at::Tensor& images, const TextInput& text,
                             const std::string& by, double contrastive_weight) {
  if (by != "contrastive" && by != "caption" && by != "itm") {
    throw_input_error("image-text score '{}' is not contrastive, caption or itm", by);
  }
  TORCH_CHECK(images.dim() == 4 && text.ids.dim() == 2 && images.size(0) == text.ids.size(0),
              "image_text_scores: images [B, 3, H, W] and text [B, L] must have the same B, got ", images.sizes(),
              " and ", text.ids.sizes());
  torch::NoGradGuard ng;
  const auto cosine = [&]() {
    return (model.embed_images(images).to(at::kFloat) * model.embed_texts(text).to(at::kFloat)).sum(1).to(at::kCPU);
  };
  if (by == "contrastive") return cosine();
  at::Tensor s = by == "caption"
                     ? caption_log_likelihood(model, images, text).to(at::kCPU)
                     : at::softmax(model.itm(images, text).logits.to(at::kFloat), -1).select(1, 1).to(at::kCPU);
  if (contrastive_weight != 0.0) s = s + contrastive_weight * cosine();
  return s;
}

void check_rerank_by(const std::string& by, const std::string& what) {
  if (by != "contrastive" && by != "caption" && by != "itm" && by != "vqa") {
    throw_input_error("{} '{}' is not contrastive, caption, itm or vqa", what, by);
  }
}

at::Tensor vqa_implied_scores(JanusModelImpl& model, const at::Tensor& images,
                              const std::vector<std::vector<ImpliedQuestion>>& questions,
                              const std::vector<std::string>& answers,
                              const std::function<TextInput(const std::vector<std::string>&)>& encode,
                              int64_t batch_size, const std::function<void()>& before_batch) {
  if (!model.vqa_head) throw_input_error("vqa scores: the model has no VQA head (num_answers = 0)");
  if (static_cast<int64_t>(answers.size()) != model.options.num_answers) {
    throw_input_error("vqa scores: the VQA head has {} answers but {} answer strings were given",
                      model.options.num_answers, answers.size());
  }
  TORCH_CHECK(images.dim() == 4 && images.size(0) == static_cast<int64_t>(questions.size()),
              "vqa_implied_scores: images [B, 3, H, W] and B question lists, got ", images.sizes(), " and ",
              questions.size());
  TORCH_CHECK(batch_size > 0, "vqa_implied_scores: batch_size must be > 0");
  std::unordered_map<std::string, int64_t> answer_index;
  for (size_t k = 0; k < answers.size(); ++k) answer_index.emplace(answers[k], static_cast<int64_t>(k));
  std::vector<int64_t> img, ans;
  std::vector<std::string> texts;
  for (size_t b = 0; b < questions.size(); ++b) {
    for (const auto& q : questions[b]) {
      const auto it = answer_index.find(q.answer);
      if (it == answer_index.end()) continue;
      img.push_back(static_cast<int64_t>(b));
      ans.push_back(it->second);
      texts.push_back(q.question);
    }
  }
  auto out = at::zeros({static_cast<int64_t>(questions.size())}, at::kFloat);
  torch::NoGradGuard ng;
  const auto n = static_cast<int64_t>(texts.size());
  for (int64_t q0 = 0; q0 < n; q0 += batch_size) {
    const int64_t q1 = std::min(n, q0 + batch_size);
    const auto rows = at::tensor(std::vector<int64_t>(img.begin() + q0, img.begin() + q1), at::kLong);
    if (before_batch) before_batch();
    const auto logits = model
                            .vqa(images.index_select(0, rows.to(images.device())),
                                 encode(std::vector<std::string>(texts.begin() + q0, texts.begin() + q1)))
                            .logits.to(at::kFloat)
                            .to(at::kCPU);
    const auto a = at::tensor(std::vector<int64_t>(ans.begin() + q0, ans.begin() + q1), at::kLong);
    out.index_add_(0, rows, at::log_sigmoid(logits.gather(1, a.unsqueeze(1)).squeeze(1)));
  }
  return out;
}

namespace {
// The scenes of a Shapes captions file's images, in the order of s.image_ids (what janus_data shapes records in
// images[]). InputError naming the file and image when one is missing or malformed.
std::vector<ShapesScene> shapes_scenes_of(const std::string& captions_file, const CaptionSet& s) {
  const auto j = read_json_file(captions_file, "Shapes captions");
  std::map<int64_t, const json*> by_id;
  for (const auto& im : j.at("images")) by_id[im.at("id").get<int64_t>()] = &im;
  std::vector<ShapesScene> out;
  for (const auto id : s.image_ids) {
    const auto it = by_id.find(id);
    if (it == by_id.end()) throw_input_error("{}: image {} is not in images[]", captions_file, id);
    try {
      out.push_back(shapes_scene_from_json(*it->second));
    } catch (const InputError& e) {
      throw_input_error("{}: {}", captions_file, e.what());
    }
  }
  return out;
}

// The best R@1 (identical-text counting) any model can expect on Shapes data, from the scenes the captions file
// records: each query's candidates scored by shapes_caption_probabilities (the chance that a text is among an
// image's captions given what the image shows), ties counted as the expected hit rate of a random pick among them.
json shapes_retrieval_ceiling(const std::string& captions_file, const CaptionSet& s,
                              const std::vector<std::string>& norm, const std::vector<std::vector<int64_t>>& rel_txt,
                              const std::vector<std::vector<int64_t>>& rel_img) {
  const auto scenes = shapes_scenes_of(captions_file, s);
  const int64_t Ni = static_cast<int64_t>(s.image_ids.size()), Nt = static_cast<int64_t>(norm.size());
  std::vector<std::map<std::string, double>> prob(static_cast<size_t>(Ni));
  for (int64_t i = 0; i < Ni; ++i) {
    for (const auto& [t, p] : shapes_caption_probabilities(scenes[static_cast<size_t>(i)]))
      prob[static_cast<size_t>(i)][ptb_like_tokenize(t)] = p;
  }
  const auto p_of = [&](int64_t i, int64_t t) {
    const auto& m = prob[static_cast<size_t>(i)];
    const auto it = m.find(norm[static_cast<size_t>(t)]);
    return it == m.end() ? 0.0 : it->second;
  };
  // Expected hit of a random pick among the best-scored candidates.
  const auto best_pick = [](int64_t n, const std::function<double(int64_t)>& score,
                            const std::function<bool(int64_t)>& relevant) {
    double best = -1;
    int64_t tied = 0, hits = 0;
    for (int64_t k = 0; k < n; ++k) {
      const double v = score(k);
      if (v > best) {
        best = v;
        tied = hits = 0;
      }
      if (v == best) {
        ++tied;
        hits += relevant(k) ? 1 : 0;
      }
    }
    return tied == 0 ? 0.0 : static_cast<double>(hits) / static_cast<double>(tied);
  };
  double i2t = 0, t2i = 0;
  for (int64_t i = 0; i < Ni; ++i) {
    const auto& rel = rel_txt[static_cast<size_t>(i)];
    i2t += best_pick(
        Nt, [&](int64_t t) { return p_of(i, t); },
        [&](int64_t t) { return std::find(rel.begin(), rel.end(), t) != rel.end(); });
  }
  for (int64_t t = 0; t < Nt; ++t) {
    const auto& rel = rel_img[static_cast<size_t>(t)];
    t2i += best_pick(
        Ni, [&](int64_t i) { return p_of(i, t); },
        [&](int64_t i) { return std::find(rel.begin(), rel.end(), i) != rel.end(); });
  }
  return {{"txt_r1", 100.0 * i2t / static_cast<double>(Ni)}, {"img_r1", 100.0 * t2i / static_cast<double>(Nt)}};
}

json run_retrieval(const Ctx& c, const json& in) {
  const auto root = c.o.image_root.empty() ? in["image_root"].get<std::string>() : c.o.image_root;
  const auto s = caption_set(in["captions"].get<std::string>(), c.o.limit);
  const int64_t Ni = static_cast<int64_t>(s.image_ids.size());
  std::vector<std::string> texts;
  std::vector<int64_t> txt2img;
  for (int64_t i = 0; i < Ni; ++i) {
    for (const auto& t : s.captions[static_cast<size_t>(i)]) {
      texts.push_back(t);
      txt2img.push_back(i);
    }
  }
  const int64_t Nt = static_cast<int64_t>(texts.size());
  const int64_t B = c.o.batch_size;
  std::vector<at::Tensor> ie, te;
  {
    Progress p(c.o, "retrieval", "images", Ni);
    for (int64_t i = 0; i < Ni; i += B) {
      const int64_t j = std::min(Ni, i + B);
      c.reseed();
      ie.push_back(c.model.embed_images(caption_images(c, s, root, i, j)).to(at::kCPU).to(at::kFloat));
      p.advance(j - i);
    }
  }
  {
    Progress p(c.o, "retrieval", "texts", Nt);
    for (int64_t i = 0; i < Nt; i += B) {
      const int64_t j = std::min(Nt, i + B);
      c.reseed();
      te.push_back(
          c.model.embed_texts(encode_texts(c, {texts.begin() + i, texts.begin() + j})).to(at::kCPU).to(at::kFloat));
      p.advance(j - i);
    }
  }
  const auto img = at::cat(ie), txt = at::cat(te);
  json out = retrieval_from_embeddings(img, txt, txt2img);
  at::Tensor sim_i2t = at::matmul(img, txt.t()), sim_t2i = sim_i2t.clone();

  const at::Tensor sim_contrastive = c.o.rerank > 0 ? sim_i2t.clone() : sim_i2t;  // re-ranking rewrites sim_i2t
  if (c.o.rerank > 0) {
    if (c.o.rerank_by != "itm" && c.o.rerank_by != "caption") {
      throw_input_error("retrieval: rerank_by '{}' is not itm or caption", c.o.rerank_by);
    }
    // Each query's top-k candidates are re-scored (placed above every non-candidate); the rest keep their
    // contrastive order below. itm: BLIP's match probability; caption: log p(text | image) under the caption decoder.
    const int64_t k_txt = std::min(c.o.rerank, Nt), k_img = std::min(c.o.rerank, Ni);
    const auto pair_score = [&](const std::vector<int64_t>& ii, const std::vector<int64_t>& tt) {
      std::vector<at::Tensor> imgs;
      std::vector<std::string> tx;
      std::map<int64_t, at::Tensor> cache;
      for (size_t q = 0; q < ii.size(); ++q) {
        auto it = cache.find(ii[q]);
        if (it == cache.end()) {
          it = cache.emplace(ii[q], load_image(c, root, s.files[static_cast<size_t>(ii[q])])).first;
        }
        imgs.push_back(it->second);
        tx.push_back(texts[static_cast<size_t>(tt[q])]);
      }
      c.reseed();
      // The cosine part is added from the precomputed similarities below.
      return image_text_scores(c.model, at::stack(imgs).to(c.device), encode_texts(c, tx), c.o.rerank_by);
    };
    const auto rescore = [&](at::Tensor& sim, bool rows_are_images, int64_t k, const std::string& phase) {
      const int64_t Q = sim.size(0);
      const auto top = std::get<1>(sim.topk(k, 1));
      std::vector<std::vector<double>> score(static_cast<size_t>(Q), std::vector<double>(static_cast<size_t>(k)));
      Progress p(c.o, "retrieval", phase, Q * k);
      std::vector<int64_t> qi, ci, ri;
      const auto flush = [&]() {
        if (qi.empty()) return;
        std::vector<int64_t> ii = rows_are_images ? qi : ci, tt = rows_are_images ? ci : qi;
        const auto sc = pair_score(ii, tt).to(at::kDouble);
        for (size_t n = 0; n < qi.size(); ++n) {
          score[static_cast<size_t>(qi[n])][static_cast<size_t>(ri[n])] =
              sc[static_cast<int64_t>(n)].item<double>() +
              c.o.rerank_contrastive_weight * sim[qi[n]][ci[n]].item<double>();
        }
        p.advance(static_cast<int64_t>(qi.size()));
        qi.clear();
        ci.clear();
        ri.clear();
      };
      for (int64_t q = 0; q < Q; ++q) {
        for (int64_t r = 0; r < k; ++r) {
          qi.push_back(q);
          ci.push_back(top[q][r].item<int64_t>());
          ri.push_back(r);
          if (static_cast<int64_t>(qi.size()) >= B) flush();
        }
      }
      flush();
      // Only the order matters to the recalls: candidates get 2 + k - (their place by score; ties keep the
      // contrastive order), above every non-candidate's cosine similarity (<= 1), which keeps its order.
      auto res = sim.to(at::kDouble).clone();
      for (int64_t q = 0; q < Q; ++q) {
        std::vector<int64_t> order(static_cast<size_t>(k));
        std::iota(order.begin(), order.end(), 0);
        const auto& v = score[static_cast<size_t>(q)];
        std::stable_sort(order.begin(), order.end(),
                         [&](int64_t a, int64_t b) { return v[static_cast<size_t>(a)] > v[static_cast<size_t>(b)]; });
        for (int64_t place = 0; place < k; ++place) {
          res[q][top[q][order[static_cast<size_t>(place)]].item<int64_t>()] = static_cast<double>(2 + k - place);
        }
      }
      sim = res.to(sim.scalar_type());
    };
    torch::NoGradGuard ng;
    rescore(sim_i2t, true, k_txt, c.o.rerank_by + " re-rank i2t");
    auto t2i = sim_t2i.t().contiguous();
    rescore(t2i, false, k_img, c.o.rerank_by + " re-rank t2i");
    sim_t2i = t2i.t().contiguous();
    const auto a = score_retrieval(sim_i2t, {{"txt2img", txt2img}});
    const auto b = score_retrieval(sim_t2i, {{"txt2img", txt2img}});
    json m = out["metrics"];
    for (const auto& key : {"txt_r1", "txt_r5", "txt_r10", "txt_r_mean"}) m[key] = a["metrics"][key];
    for (const auto& key : {"img_r1", "img_r5", "img_r10", "img_r_mean"}) m[key] = b["metrics"][key];
    m["r_mean"] = (m["txt_r_mean"].get<double>() + m["img_r_mean"].get<double>()) / 2.0;
    out["metrics_contrastive"] = out["metrics"];
    out["metrics"] = m;
  }

  // Identical-text variant: a text whose tokenised form equals one of an image's captions is relevant to it.
  std::map<std::string, std::vector<int64_t>> by_text;  // tokenised text -> images having it
  std::vector<std::string> norm(texts.size());
  for (int64_t t = 0; t < Nt; ++t) {
    norm[static_cast<size_t>(t)] = ptb_like_tokenize(texts[static_cast<size_t>(t)]);
    auto& v = by_text[norm[static_cast<size_t>(t)]];
    if (v.empty() || v.back() != txt2img[static_cast<size_t>(t)]) v.push_back(txt2img[static_cast<size_t>(t)]);
  }
  std::vector<std::vector<int64_t>> rel_txt(static_cast<size_t>(Ni)), rel_img(static_cast<size_t>(Nt));
  for (int64_t t = 0; t < Nt; ++t) {
    const auto& imgs = by_text[norm[static_cast<size_t>(t)]];
    rel_img[static_cast<size_t>(t)] = imgs;
    for (int64_t i : imgs) rel_txt[static_cast<size_t>(i)].push_back(t);
  }
  const auto identical = [&](const at::Tensor& i2t, const at::Tensor& t2i) {
    json ident = retrieval_recall_sets(i2t, rel_txt, rel_img);
    const auto b = retrieval_recall_sets(t2i, rel_txt, rel_img);
    for (const auto& key : {"img_r1", "img_r5", "img_r10", "img_r_mean"}) ident[key] = b[key];
    ident["r_mean"] = (ident["txt_r_mean"].get<double>() + ident["img_r_mean"].get<double>()) / 2.0;
    return ident;
  };
  out["metrics"]["identical_text_counts"] = identical(sim_i2t, sim_t2i);
  if (in.value("layout", "") == "shapes") {
    out["metrics"]["identical_text_counts"]["ceiling"] =
        shapes_retrieval_ceiling(in["captions"].get<std::string>(), s, norm, rel_txt, rel_img);
  }
  if (c.o.rerank > 0) out["metrics_contrastive"]["identical_text_counts"] = identical(sim_contrastive, sim_contrastive);
  // Error analysis: the first misses at rank 1 (identical-text counting) in each direction, with what was retrieved.
  {
    constexpr size_t kMaxMisses = 8;
    const auto top_txt = sim_i2t.argmax(1).to(at::kCPU), top_img = sim_t2i.argmax(0).to(at::kCPU);
    json i2t = json::array(), t2i = json::array();
    for (int64_t i = 0; i < Ni && i2t.size() < kMaxMisses; ++i) {
      const int64_t t = top_txt[i].item<int64_t>();
      const auto& rel = rel_txt[static_cast<size_t>(i)];
      if (std::find(rel.begin(), rel.end(), t) != rel.end()) continue;
      i2t.push_back({{"image_id", s.image_ids[static_cast<size_t>(i)]},
                     {"retrieved", texts[static_cast<size_t>(t)]},
                     {"references", s.captions[static_cast<size_t>(i)]}});
    }
    for (int64_t t = 0; t < Nt && t2i.size() < kMaxMisses; ++t) {
      const int64_t i = top_img[t].item<int64_t>();
      const auto& rel = rel_img[static_cast<size_t>(t)];
      if (std::find(rel.begin(), rel.end(), i) != rel.end()) continue;
      t2i.push_back({{"query", texts[static_cast<size_t>(t)]},
                     {"image_id", s.image_ids[static_cast<size_t>(txt2img[static_cast<size_t>(t)])]},
                     {"retrieved_image_id", s.image_ids[static_cast<size_t>(i)]},
                     {"retrieved_image_captions", s.captions[static_cast<size_t>(i)]}});
    }
    out["misses"] = {{"image_to_text", i2t}, {"text_to_image", t2i}};
  }
  out["counts"]["distinct_texts"] = by_text.size();
  int64_t shared = 0;
  for (const auto& [t, imgs] : by_text) shared += imgs.size() > 1 ? 1 : 0;
  out["counts"]["texts_shared_by_images"] = shared;
  out["counts"]["samples"] = Ni;
  out["inputs"] = in;
  if (c.o.rerank > 0) {
    out["options"]["rerank"] = c.o.rerank;
    out["options"]["rerank_by"] = c.o.rerank_by;
    out["options"]["rerank_contrastive_weight"] = c.o.rerank_contrastive_weight;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// caption
json run_caption(const Ctx& c, const json& in) {
  const auto root = c.o.image_root.empty() ? in["image_root"].get<std::string>() : c.o.image_root;
  const auto s = caption_set(in["captions"].get<std::string>(), c.o.limit);
  const int64_t N = static_cast<int64_t>(s.image_ids.size()), B = c.o.batch_size;
  std::vector<std::string> preds;
  {
    Progress p(c.o, "caption", c.o.beam > 1 ? fmt::format("beam {}", c.o.beam) : std::string("greedy"), N);
    for (int64_t i = 0; i < N; i += B) {
      const int64_t j = std::min(N, i + B);
      const auto imgs = caption_images(c, s, root, i, j);
      c.reseed();
      const auto ids =
          c.o.beam > 1 ? c.model.beam_search_caption(imgs, SpecialTokens::bos, SpecialTokens::eos, c.o.max_caption_len,
                                                     c.o.beam, c.o.length_penalty)
                       : c.model.generate_caption(imgs, SpecialTokens::bos, SpecialTokens::eos, c.o.max_caption_len);
      for (int64_t r = 0; r < ids.size(0); ++r) preds.push_back(decode_ids(c.tok, ids[r]));
      p.advance(j - i);
    }
  }
  std::vector<std::string> cands;
  std::vector<std::vector<std::string>> refs;
  int64_t exact = 0, empty = 0;
  for (int64_t i = 0; i < N; ++i) {
    cands.push_back(ptb_like_tokenize(preds[static_cast<size_t>(i)]));
    refs.emplace_back();
    for (const auto& r : s.captions[static_cast<size_t>(i)]) refs.back().push_back(ptb_like_tokenize(r));
    if (cands.back().empty()) ++empty;
    if (std::find(refs.back().begin(), refs.back().end(), cands.back()) != refs.back().end()) ++exact;
  }
  const CaptionScores sc = caption_scores(cands, refs);
  json out = {{"task", "caption"},
              {"metrics",
               {{"Bleu_1", sc.bleu.corpus[0]},
                {"Bleu_2", sc.bleu.corpus[1]},
                {"Bleu_3", sc.bleu.corpus[2]},
                {"Bleu_4", sc.bleu.corpus[3]},
                {"CIDEr", sc.cider.corpus},
                {"ROUGE_L", sc.rouge.corpus},
                {"exact_match", 100.0 * static_cast<double>(exact) / static_cast<double>(N)}}},
              {"counts", {{"samples", N}, {"empty_captions", empty}}},
              {"tokenizer", "janus ptb_like_tokenize (Java-free PTBTokenizer approximation, docs/eval.md)"},
              {"inputs", in}};
  int64_t nrefs = 0;
  for (const auto& r : refs) nrefs += static_cast<int64_t>(r.size());
  out["counts"]["references"] = nrefs;
  if (in.value("layout", "") == "shapes") {
    // Where the captions put things, against the scenes (shapes_caption_position): region captions of one-object
    // images and relation captions, as % of the captions of each kind.
    const auto scenes = shapes_scenes_of(in["captions"].get<std::string>(), s);
    int64_t nreg = 0, h = 0, v = 0, reg_ok = 0, nrel = 0, axis = 0, rel_ok = 0;
    for (int64_t i = 0; i < N; ++i) {
      const auto pc = shapes_caption_position(scenes[static_cast<size_t>(i)], preds[static_cast<size_t>(i)]);
      if (pc.kind == ShapesPositionCheck::Kind::kRegion) {
        ++nreg;
        h += pc.horizontal;
        v += pc.vertical;
        reg_ok += pc.correct;
      } else if (pc.kind == ShapesPositionCheck::Kind::kRelation) {
        ++nrel;
        axis += pc.axis;
        rel_ok += pc.correct;
      }
    }
    const auto pct = [](int64_t k, int64_t n) { return n > 0 ? json(100.0 * k / static_cast<double>(n)) : json(); };
    out["metrics"]["position"] = {
        {"region",
         {{"captions", nreg},
          {"horizontal", pct(h, nreg)},
          {"vertical", pct(v, nreg)},
          {"correct", pct(reg_ok, nreg)}}},
        {"relation", {{"captions", nrel}, {"axis", pct(axis, nrel)}, {"correct", pct(rel_ok, nrel)}}}};
  }
  json ex = json::array();
  for (int64_t i = 0; i < std::min<int64_t>(N, 8); ++i) {
    ex.push_back({{"image_id", s.image_ids[static_cast<size_t>(i)]},
                  {"prediction", preds[static_cast<size_t>(i)]},
                  {"references", s.captions[static_cast<size_t>(i)]}});
  }
  out["examples"] = ex;
  out["options"] = {{"beam", c.o.beam}, {"length_penalty", c.o.length_penalty}, {"max_len", c.o.max_caption_len}};
  write_results(c.o, out, "caption_results.json", static_cast<size_t>(N), [&](size_t i) {
    return json{{"image_id", s.image_ids[i]}, {"caption", preds[i]}};
  });
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// vqa
json run_vqa(const Ctx& c, const json& in) {
  DatasetOptions dopt;
  dopt.transform = c.transform;
  dopt.image_root = c.o.image_root.empty() ? in["image_root"].get<std::string>() : c.o.image_root;
  const auto ds = open_dataset("vqa", in["questions"].get<std::string>(), c.o.split, dopt, 1);
  const int64_t N = limited(ds->size(), c.o.limit), B = c.o.batch_size;
  if (N == 0) throw_input_error("vqa: '{}' has no questions", in["questions"].get<std::string>());
  std::string mode = c.o.vqa_mode;
  if (mode == "auto") mode = c.model.vqa_head ? "head" : "generate";
  if (mode != "head" && mode != "generate")
    throw_input_error("vqa: mode must be head, generate or auto, got '{}'", mode);
  if (mode == "head") {
    if (!c.model.vqa_head) throw_input_error("vqa: the model has no VQA classification head (num_answers = 0)");
    if (static_cast<int64_t>(c.m.answers.size()) != c.model.options.num_answers) {
      throw_input_error("vqa: the VQA head has {} answers but {} answer strings were given (answers.json)",
                        c.model.options.num_answers, c.m.answers.size());
    }
  }
  std::vector<VqaItem> items;
  std::vector<std::string> qids;
  json examples = json::array();
  Progress p(c.o, "vqa", mode, N);
  for (int64_t i = 0; i < N; i += B) {
    const int64_t j = std::min(N, i + B);
    std::vector<Sample> ss;
    for (int64_t k = i; k < j; ++k) ss.push_back(ds->get(k, 0));
    std::vector<std::string> preds(ss.size());
    if (mode == "head") {
      std::vector<at::Tensor> imgs;
      std::vector<std::string> qs;
      for (const auto& s : ss) {
        imgs.push_back(s.images.at(0));
        qs.push_back(s.text);
      }
      c.reseed();
      const auto logits = c.model.vqa(at::stack(imgs).to(c.device), encode_texts(c, qs)).logits;
      const auto best = logits.argmax(-1).to(at::kCPU);
      for (size_t k = 0; k < ss.size(); ++k) {
        preds[k] = c.m.answers.at(static_cast<size_t>(best[static_cast<int64_t>(k)].item<int64_t>()));
      }
    } else {
      // Generative: prompt = the question as the loader encodes it (bos .. eos); the greedy continuation up to the
      // next eos is the answer. Questions of equal token length share a forward pass.
      std::map<size_t, std::vector<size_t>> by_len;
      std::vector<std::vector<int64_t>> enc(ss.size());
      for (size_t k = 0; k < ss.size(); ++k) {
        enc[k] = c.tok.encode(ss[k].text, true, true, c.o.max_text_len);
        by_len[enc[k].size()].push_back(k);
      }
      for (const auto& [len, ks] : by_len) {
        std::vector<at::Tensor> imgs, prompts;
        for (size_t k : ks) {
          imgs.push_back(ss[k].images.at(0));
          prompts.push_back(at::tensor(enc[k], at::kLong));
        }
        c.reseed();
        const auto ids = c.model.beam_generate(at::stack(imgs).to(c.device), at::stack(prompts).to(c.device),
                                               SpecialTokens::eos, c.o.max_answer_len, 1);
        for (size_t n = 0; n < ks.size(); ++n) preds[ks[n]] = decode_ids(c.tok, ids[static_cast<int64_t>(n)]);
      }
    }
    for (size_t k = 0; k < ss.size(); ++k) {
      items.push_back({preds[k], ss[k].answers, ss[k].answer_type.empty() ? "unknown" : ss[k].answer_type,
                       ss[k].question_type.empty() ? "unknown" : ss[k].question_type});
      qids.push_back(ss[k].id);
      if (examples.size() < 8) {
        examples.push_back(
            {{"question_id", ss[k].id}, {"question", ss[k].text}, {"prediction", preds[k]}, {"answer", ss[k].answer}});
      }
    }
    p.advance(j - i);
  }
  const VqaResult r = vqa_accuracy(items);
  json out = {
      {"task", "vqa"},
      {"metrics",
       {{"overall", r.overall}, {"perAnswerType", r.per_answer_type}, {"perQuestionType", r.per_question_type}}},
      {"counts", {{"samples", N}, {"annotated", ds->size()}, {"perAnswerType", r.answer_type_counts}}},
      {"options", {{"mode", mode}}},
      {"examples", examples},
      {"inputs", in}};
  write_results(c.o, out, "vqa_results.json", items.size(), [&](size_t k) {
    return json{{"question_id", std::stoll(qids[k])}, {"answer", items[k].prediction}};
  });
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// nlvr2
json run_nlvr2(const Ctx& c, const json& in) {
  DatasetOptions dopt;
  dopt.transform = c.transform;
  dopt.image_root = c.o.image_root.empty() ? in["image_root"].get<std::string>() : c.o.image_root;
  const auto ds = open_dataset("nlvr2", in["nlvr2"].get<std::string>(), c.o.split, dopt);
  const int64_t N = limited(ds->size(), c.o.limit), B = c.o.batch_size;
  if (N == 0) throw_input_error("nlvr2: '{}' has no statements", in["nlvr2"].get<std::string>());
  std::vector<bool> correct;
  std::map<std::string, std::vector<bool>> groups;  // NLVR2 consistency: one group per sentence
  std::map<std::string, std::vector<bool>> by_label, by_kind;  // accuracy on true / false statements, Shapes kinds
  std::map<std::string, int64_t> kind_true;                    // true statements per Shapes kind
  bool shapes_kinds = true;                                    // every statement is one of the Shapes templates
  std::vector<std::pair<std::string, bool>> predictions;       // (identifier, predicted truth) for nlvr2_results.json
  int64_t predicted_true = 0;
  Progress p(c.o, "nlvr2", "statements", N);
  for (int64_t i = 0; i < N; i += B) {
    const int64_t j = std::min(N, i + B);
    std::vector<at::Tensor> a, b;
    std::vector<std::string> tx;
    std::vector<Sample> ss;
    for (int64_t k = i; k < j; ++k) {
      ss.push_back(ds->get(k, 0));
      a.push_back(ss.back().images.at(0));
      b.push_back(ss.back().images.at(1));
      tx.push_back(ss.back().text);
    }
    c.reseed();
    const auto pred = c.model.nlvr2(at::stack(a).to(c.device), at::stack(b).to(c.device), encode_texts(c, tx))
                          .logits.argmax(-1)
                          .to(at::kCPU);
    for (size_t k = 0; k < ss.size(); ++k) {
      const int64_t y = pred[static_cast<int64_t>(k)].item<int64_t>();
      predicted_true += y;
      correct.push_back(y == ss[k].label);
      predictions.emplace_back(ss[k].id, y == 1);
      by_label[ss[k].label == 1 ? "true" : "false"].push_back(correct.back());
      const auto kind = shapes_nlvr2_statement_kind(ss[k].text);
      shapes_kinds = shapes_kinds && !kind.empty();
      if (shapes_kinds) {
        by_kind[kind].push_back(correct.back());
        kind_true[kind] += ss[k].label == 1 ? 1 : 0;
      }
      // identifier split-set-pair-sentence: a sentence's group drops the pair index
      auto parts = ss[k].id;
      std::vector<std::string> f;
      size_t start = 0, pos;
      while ((pos = parts.find('-', start)) != std::string::npos) {
        f.push_back(parts.substr(start, pos - start));
        start = pos + 1;
      }
      f.push_back(parts.substr(start));
      const std::string key = f.size() == 4 ? f[0] + "-" + f[1] + "-" + f[3] : parts;
      groups[key].push_back(correct.back());
    }
    p.advance(j - i);
  }
  json out = {{"task", "nlvr2"},
              {"metrics", {{"accuracy", accuracy(correct)}}},
              {"counts", {{"samples", N}, {"annotated", ds->size()}, {"predicted_true", predicted_true}}},
              {"inputs", in}};
  // Accuracy on the true and on the false statements (a model that answers one way for everything shows as 100 / 0),
  // and on Shapes data by statement template (shapes_nlvr2_statement_kind).
  const auto breakdown = [&](const std::map<std::string, std::vector<bool>>& parts, const std::string& name) {
    for (const auto& [k, v] : parts) {
      out["metrics"][name][k] = accuracy(v);
      out["counts"][name][k] = v.size();
    }
  };
  breakdown(by_label, "by_label");
  if (shapes_kinds) {
    breakdown(by_kind, "by_statement");
    // What always answering a template's more frequent label scores: the baseline each template is read against.
    for (const auto& [k, v] : by_kind) {
      const auto n = static_cast<int64_t>(v.size()), t = kind_true[k];
      out["metrics"]["by_statement_majority"][k] =
          100.0 * static_cast<double>(std::max(t, n - t)) / static_cast<double>(n);
    }
  }
  write_results(c.o, out, "nlvr2_results.json", predictions.size(), [&](size_t k) {
    return json{{"identifier", predictions[k].first}, {"prediction", predictions[k].second ? "True" : "False"}};
  });
  const bool grouped = std::any_of(groups.begin(), groups.end(), [](const auto& g) { return g.second.size() > 1; });
  if (grouped) {
    int64_t consistent = 0;
    for (const auto& [k, g] : groups) consistent += std::all_of(g.begin(), g.end(), [](bool x) { return x; }) ? 1 : 0;
    out["metrics"]["consistency"] = 100.0 * static_cast<double>(consistent) / static_cast<double>(groups.size());
    out["counts"]["sentences"] = groups.size();
  } else {
    out["notes"].push_back("no consistency: every sentence has a single image pair in this data (as in Shapes)");
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// classify
json run_classify(const Ctx& c, const json& in) {
  const std::string root = in["images"].get<std::string>();
  const auto index = index_image_folder(root);
  const int64_t C = static_cast<int64_t>(index.classes.size());
  if (C < 2) throw_input_error("classify: '{}' has {} class folder(s); need >= 2", root, C);
  const int64_t Nall = static_cast<int64_t>(index.files.size());
  if (Nall == 0) throw_input_error("classify: '{}' has no images", root);
  // --limit takes an evenly spaced subset so that every class stays represented.
  std::vector<int64_t> pick;
  const int64_t N = limited(Nall, c.o.limit);
  for (int64_t k = 0; k < N; ++k) pick.push_back(k * Nall / N);
  const bool head = static_cast<bool>(c.model.cls_head);
  if (head && c.model.options.num_classes != C) {
    throw_input_error("classify: the model's head has {} classes but '{}' has {} class folders",
                      c.model.options.num_classes, root, C);
  }
  std::vector<std::string> prompts;
  for (auto name : index.classes) {
    std::replace(name.begin(), name.end(), '_', ' ');
    std::string p = c.o.prompt_template;
    const auto at = p.find("{class}");
    if (at == std::string::npos) throw_input_error("classify: the prompt template must contain {{class}}: '{}'", p);
    prompts.push_back(p.replace(at, 7, name));
  }
  c.reseed();
  const auto class_emb = c.model.embed_texts(encode_texts(c, prompts)).to(at::kCPU).to(at::kFloat);
  std::vector<at::Tensor> head_logits, zs_logits;
  std::vector<int64_t> labels;
  Progress p(c.o, "classify", "images", N);
  for (int64_t i = 0; i < N; i += c.o.batch_size) {
    const int64_t j = std::min(N, i + c.o.batch_size);
    std::vector<at::Tensor> xs;
    std::mt19937_64 rng(0);
    for (int64_t k = i; k < j; ++k) {
      const auto f = static_cast<size_t>(pick[static_cast<size_t>(k)]);
      xs.push_back(transform_image(decode_image_file(index.files[f]), c.transform, rng));
      labels.push_back(index.labels[f]);
    }
    const auto x = at::stack(xs).to(c.device);
    c.reseed();
    if (head) head_logits.push_back(c.model.classify(x).logits.to(at::kCPU).to(at::kFloat));
    zs_logits.push_back(at::matmul(c.model.embed_images(x).to(at::kCPU).to(at::kFloat), class_emb.t()));
    p.advance(j - i);
  }
  const auto y = at::tensor(labels, at::kLong);
  const int64_t k5 = std::min<int64_t>(5, C);
  json m;
  if (head) {
    const auto lg = at::cat(head_logits);
    m["top1"] = topk_accuracy(lg, y, 1);
    m["top5"] = topk_accuracy(lg, y, k5);
  }
  const auto zs = at::cat(zs_logits);
  m["zero_shot"] = {{"top1", topk_accuracy(zs, y, 1)}, {"top5", topk_accuracy(zs, y, k5)}};
  json out = {{"task", "classify"},
              {"metrics", m},
              {"counts", {{"samples", N}, {"images", Nall}, {"classes", C}}},
              {"options", {{"prompt_template", c.o.prompt_template}}},
              {"classes", index.classes},
              {"inputs", in}};
  if (!head) out["notes"].push_back("the model has no classification head (num_classes = 0): zero-shot only");
  if (C < 5) out["notes"].push_back(fmt::format("top5 is top-{} ({} classes)", C, C));
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// generate
InceptionV3 load_inception(const std::string& path) {
  if (!is_file(path)) throw_input_error("generate: Inception weights '{}' do not exist", path);
  bool aux = false;
  for (const auto& [k, v] : load_safetensors(path)) aux = aux || k.rfind("AuxLogits.", 0) == 0;
  InceptionV3 net(InceptionV3Options().aux_logits(aux));
  load_module(*net, path);
  net->eval();
  return net;
}

// uint8 [N, H, W, 3] -> torchvision Inception input [N, 3, 299, 299] (ImageNet mean/std).
at::Tensor inception_input(const at::Tensor& u8) {
  auto x = u8.permute({0, 3, 1, 2}).to(at::kFloat) / 255.0;
  x = at::upsample_bilinear2d(x, {299, 299}, /*align_corners=*/false);
  const auto mean = at::tensor(std::vector<float>{0.485f, 0.456f, 0.406f}).view({1, 3, 1, 1});
  const auto sd = at::tensor(std::vector<float>{0.229f, 0.224f, 0.225f}).view({1, 3, 1, 1});
  return (x - mean) / sd;
}

json run_generate(const Ctx& c, const json& in) {
  const std::string prompts_path = in["prompts"].get<std::string>();
  const json list = read_json_file(prompts_path, "generate prompts list");
  if (!list.is_array()) throw_input_error("{}: expected a JSON list of {{prompt, spec?, reference?}}", prompts_path);
  const auto root = c.o.image_root.empty() ? in["image_root"].get<std::string>() : c.o.image_root;
  const int64_t N = limited(static_cast<int64_t>(list.size()), c.o.limit);
  if (N == 0) throw_input_error("{}: no prompts", prompts_path);
  std::vector<std::string> prompts(static_cast<size_t>(N));
  std::vector<std::optional<PromptSpec>> specs(static_cast<size_t>(N));
  std::vector<std::string> refs(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) {
    const auto& e = list[static_cast<size_t>(i)];
    if (!e.is_object() || !e.contains("prompt") || !e["prompt"].is_string()) {
      throw_input_error("{}: entry {} has no string \"prompt\"", prompts_path, i);
    }
    prompts[static_cast<size_t>(i)] = e["prompt"];
    if (e.contains("spec")) specs[static_cast<size_t>(i)] = PromptSpec::from_json(e["spec"]);
    if (e.contains("reference") && e["reference"].is_string()) refs[static_cast<size_t>(i)] = e["reference"];
  }
  // Prompts of equal token length share a generate_images call (the generator takes no padding mask; the model pads
  // each to its gen_prompt_len, the length it was trained with).
  const int64_t prompt_len = c.model.gen_prompt_limit(c.o.max_text_len);
  std::map<size_t, std::vector<int64_t>> by_len;
  std::vector<std::vector<int64_t>> enc(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) {
    enc[static_cast<size_t>(i)] = c.tok.encode(prompts[static_cast<size_t>(i)], true, true, prompt_len);
    by_len[enc[static_cast<size_t>(i)].size()].push_back(i);
  }
  const int64_t K = c.o.gen_candidates;
  if (K < 1) throw_input_error("generate: gen_candidates must be >= 1, got {}", K);
  if (K > 1) check_rerank_by(c.o.gen_rerank_by, "generate: gen_rerank_by");
  // vqa: the questions each prompt implies, read from its text (not from the check's spec), before any sampling
  std::vector<std::vector<ImpliedQuestion>> implied;
  if (K > 1 && c.o.gen_rerank_by == "vqa") {
    if (!c.model.vqa_head)
      throw_input_error("generate: gen_rerank_by vqa needs the model's VQA head (num_answers > 0)");
    for (const auto& p : prompts) implied.push_back(shapes_prompt_questions(PromptSpec::from_prompt(p)));
  }
  std::vector<at::Tensor> images(static_cast<size_t>(N));                  // uint8 [H, W, 3], the kept sample
  std::vector<at::Tensor> candidates(static_cast<size_t>(K > 1 ? N : 0));  // uint8 [K, H, W, 3] (best-of-N)
  std::vector<int64_t> chosen(static_cast<size_t>(N), 0);
  std::vector<std::vector<double>> cand_scores(static_cast<size_t>(K > 1 ? N : 0));
  {
    Progress p(c.o, "generate", K > 1 ? fmt::format("images (best of {})", K) : "images", N);
    int64_t call = 0;
    for (const auto& [len, idx] : by_len) {
      for (size_t a = 0; a < idx.size(); a += static_cast<size_t>(c.o.batch_size)) {
        const size_t b = std::min(idx.size(), a + static_cast<size_t>(c.o.batch_size));
        std::vector<at::Tensor> rows;
        for (size_t k = a; k < b; ++k) rows.push_back(at::tensor(enc[static_cast<size_t>(idx[k])], at::kLong));
        SamplingOptions so;
        so.temperature(c.o.temperature).top_k(c.o.top_k).top_p(c.o.top_p).cfg(c.o.cfg).cfg_scale(c.o.cfg_scale);
        so.samples_per_prompt(K).seed(c.o.seed + static_cast<uint64_t>(call++));
        c.reseed();
        // rows (k - a) * K .. (k - a) * K + K - 1 are prompt idx[k]'s samples
        const auto u8 = to_u8(c.model.generate_images(at::stack(rows).to(c.device), so), c.o);
        if (K == 1) {
          for (size_t k = a; k < b; ++k) images[static_cast<size_t>(idx[k])] = u8[static_cast<int64_t>(k - a)];
          p.advance(static_cast<int64_t>(b - a));
          continue;
        }
        // Each sample, as the understanding path sees a decoded image, scored against its own prompt.
        std::vector<at::Tensor> xs;
        std::vector<std::string> texts;
        for (int64_t r = 0; r < u8.size(0); ++r) {
          xs.push_back(model_image(c, u8[r]));
          texts.push_back(prompts[static_cast<size_t>(idx[a + static_cast<size_t>(r / K)])]);
        }
        std::vector<at::Tensor> sc;
        const bool by_vqa = c.o.gen_rerank_by == "vqa";
        for (size_t r0 = 0; r0 < xs.size(); r0 += static_cast<size_t>(c.o.batch_size)) {
          const size_t r1 = std::min(xs.size(), r0 + static_cast<size_t>(c.o.batch_size));
          const auto x =
              at::stack(std::vector<at::Tensor>(xs.begin() + static_cast<long>(r0), xs.begin() + static_cast<long>(r1)))
                  .to(c.device);
          const std::vector<std::string> tx(texts.begin() + static_cast<long>(r0),
                                            texts.begin() + static_cast<long>(r1));
          if (!by_vqa || c.o.gen_rerank_contrastive_weight != 0.0) c.reseed();
          at::Tensor part = by_vqa ? at::Tensor()
                                   : image_text_scores(c.model, x, encode_texts(c, tx), c.o.gen_rerank_by,
                                                       c.o.gen_rerank_contrastive_weight);
          if (by_vqa) {
            std::vector<std::vector<ImpliedQuestion>> qs;
            for (size_t r = r0; r < r1; ++r)
              qs.push_back(implied[static_cast<size_t>(idx[a + r / static_cast<size_t>(K)])]);
            part = vqa_implied_scores(
                c.model, x, qs, c.m.answers, [&](const std::vector<std::string>& t) { return encode_texts(c, t); },
                c.o.batch_size, [&]() { c.reseed(); });
            if (c.o.gen_rerank_contrastive_weight != 0.0) {
              c.reseed();
              part = part + c.o.gen_rerank_contrastive_weight *
                                image_text_scores(c.model, x, encode_texts(c, tx), "contrastive", 0.0);
            }
          }
          sc.push_back(part);
        }
        const auto scores = at::cat(sc).to(at::kDouble).view({static_cast<int64_t>(b - a), K});
        for (size_t k = a; k < b; ++k) {
          const auto i = static_cast<size_t>(idx[k]);
          const int64_t r = static_cast<int64_t>(k - a);
          candidates[i] = u8.slice(0, r * K, r * K + K);
          for (int64_t j = 0; j < K; ++j) {
            cand_scores[i].push_back(scores[r][j].item<double>());
            if (cand_scores[i][static_cast<size_t>(j)] > cand_scores[i][static_cast<size_t>(chosen[i])]) chosen[i] = j;
          }
          images[i] = candidates[i][chosen[i]];
        }
        p.advance(static_cast<int64_t>(b - a));
      }
    }
  }
  json m = json::object();
  json counts = {{"samples", N}};
  // The check of every candidate (of the one image with K = 1), once: checks[i][j] for prompt i's candidate j.
  std::vector<std::vector<GenevalScore>> checks(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) {
    const auto k = static_cast<size_t>(i);
    if (!specs[k]) continue;
    if (K == 1) {
      checks[k].push_back(shapes_geneval_check(images[k], *specs[k]));
    } else {
      for (int64_t j = 0; j < K; ++j) checks[k].push_back(shapes_geneval_check(candidates[k][j], *specs[k]));
    }
  }
  // Shapes-GenEval of one image per prompt (pick(i) -> its candidate's index); undefined json when no prompt has a
  // spec.
  const auto geneval_of = [&](const std::function<int64_t(size_t)>& pick) {
    int64_t scored = 0, correct = 0;
    double overall = 0, colour = 0, shape = 0, count = 0, position = 0;
    for (int64_t i = 0; i < N; ++i) {
      if (!specs[static_cast<size_t>(i)]) continue;
      const auto& g = checks[static_cast<size_t>(i)].at(static_cast<size_t>(pick(static_cast<size_t>(i))));
      ++scored;
      correct += g.correct ? 1 : 0;
      overall += g.overall;
      colour += g.colour;
      shape += g.shape;
      count += g.count;
      position += g.position;
    }
    if (scored == 0) return json();
    const double n = static_cast<double>(scored);
    return json{{"overall", overall / n}, {"correct", static_cast<double>(correct) / n},
                {"colour", colour / n},   {"shape", shape / n},
                {"count", count / n},     {"position", position / n}};
  };
  int64_t scored = 0;
  for (const auto& sp : specs) scored += sp ? 1 : 0;
  counts["geneval_scored"] = scored;
  if (scored > 0) {
    m["geneval"] = geneval_of([&](size_t i) { return chosen[i]; });
    if (K > 1) {
      // The same samples without re-ranking (each prompt's first), and with a perfect scorer (any candidate correct).
      m["geneval_first_sample"] = geneval_of([](size_t) { return int64_t{0}; });
      int64_t any = 0;
      for (const auto& cs : checks) {
        any += std::any_of(cs.begin(), cs.end(), [](const GenevalScore& g) { return g.correct; }) ? 1 : 0;
      }
      m["geneval_any_candidate"] = {{"correct", static_cast<double>(any) / static_cast<double>(scored)}};
    }
  }
  json notes = json::array();
  if (scored == 0) notes.push_back("no prompt has a \"spec\": no Shapes-GenEval score");
  if (K > 1) {
    notes.push_back(fmt::format(
        "best of {} samples per prompt, ranked by the model's own {} score against the prompt{}; geneval_first_sample "
        "is the first sample of each prompt (no re-ranking)",
        K, c.o.gen_rerank_by,
        c.o.gen_rerank_by != "contrastive" && c.o.gen_rerank_contrastive_weight != 0.0
            ? fmt::format(" + {} x cosine", c.o.gen_rerank_contrastive_weight)
            : std::string()));
  }
  std::vector<at::Tensor> ref_u8(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) {
    if (!refs[static_cast<size_t>(i)].empty()) {
      ref_u8[static_cast<size_t>(i)] = decode_image_file(resolve_under(root, refs[static_cast<size_t>(i)]));
    }
  }
  // Two ceilings from the references: the same check on the tokenizer's reconstructions of them (what a generator
  // that produced the references' own codes would score, i.e. the ceiling the VQ tokenizer puts on this benchmark),
  // and on the references themselves (how often the analytic checker accepts a ground-truth render at this image
  // size: small shapes at 32 px can be misread).
  {
    struct Tally {
      int64_t n = 0, ok = 0;
      double overall = 0;
      void add(const GenevalScore& g) {
        ++n;
        ok += g.correct ? 1 : 0;
        overall += g.overall;
      }
      json to_json() const {
        return {{"correct", static_cast<double>(ok) / static_cast<double>(n)},
                {"overall", overall / static_cast<double>(n)}};
      }
    } tokenizer, reference;
    torch::NoGradGuard ng;
    for (int64_t i = 0; i < N; ++i) {
      const auto k = static_cast<size_t>(i);
      if (!specs[k] || !ref_u8[k].defined()) continue;
      reference.add(shapes_geneval_check(ref_u8[k], *specs[k]));
      c.reseed();
      const auto x = model_image(c, ref_u8[k]).unsqueeze(0).to(c.device);  // the references decoded above
      tokenizer.add(shapes_geneval_check(to_u8(c.model.tokenizer(x).reconstruction, c.o)[0], *specs[k]));
    }
    if (tokenizer.n > 0) {
      m["geneval_tokenizer_ceiling"] = tokenizer.to_json();
      m["geneval_reference"] = reference.to_json();
    }
  }
  if (!c.o.inception.empty()) {
    std::vector<at::Tensor> gen_list, ref_list;
    for (int64_t i = 0; i < N; ++i) {
      gen_list.push_back(images[static_cast<size_t>(i)]);
      if (ref_u8[static_cast<size_t>(i)].defined()) ref_list.push_back(ref_u8[static_cast<size_t>(i)]);
    }
    if (ref_list.size() < 2 || gen_list.size() < 2) {
      throw_input_error("generate: FID needs >= 2 generated and >= 2 reference images (prompts' \"reference\")");
    }
    auto net = load_inception(c.o.inception);
    torch::NoGradGuard ng;
    const auto features = [&](const std::vector<at::Tensor>& xs, const std::string& phase) {
      std::vector<at::Tensor> pool, prob;
      Progress p(c.o, "generate", phase, static_cast<int64_t>(xs.size()));
      for (size_t a = 0; a < xs.size(); a += 16) {
        const size_t b = std::min(xs.size(), a + 16);
        const auto o = net->forward(inception_input(
            at::stack(std::vector<at::Tensor>(xs.begin() + static_cast<long>(a), xs.begin() + static_cast<long>(b)))));
        pool.push_back(o.pool.to(at::kDouble));
        prob.push_back(at::softmax(o.logits.to(at::kDouble), -1));
        p.advance(static_cast<int64_t>(b - a));
      }
      return std::make_pair(at::cat(pool), at::cat(prob));
    };
    const auto [gp, gprob] = features(gen_list, "inception (generated)");
    const auto [rp, rprob] = features(ref_list, "inception (references)");
    const auto [mu1, s1] = feature_statistics(gp);
    const auto [mu2, s2] = feature_statistics(rp);
    m["fid"] = frechet_distance(mu1, s1, mu2, s2);
    const int64_t splits = std::min<int64_t>(10, static_cast<int64_t>(gen_list.size()));
    const auto is = inception_score(gprob, splits);
    m["inception_score"] = is.mean;
    m["inception_score_std"] = is.std;
    counts["fid_generated"] = gen_list.size();
    counts["fid_references"] = ref_list.size();
    notes.push_back(
        fmt::format("FID/IS from {} generated vs {} reference images (few images give biased FID); "
                    "Inception input: bilinear resize to 299, ImageNet mean/std (torchvision)",
                    gen_list.size(), ref_list.size()));
  }
  json out = {{"task", "generate"},
              {"metrics", m},
              {"counts", counts},
              {"options",
               {{"temperature", c.o.temperature},
                {"top_k", c.o.top_k},
                {"top_p", c.o.top_p},
                {"cfg", c.o.cfg},
                {"cfg_scale", c.o.cfg_scale},
                {"seed", c.o.seed},
                {"gen_candidates", K}}},
              {"inputs", in}};
  if (K > 1) {
    out["options"]["gen_rerank_by"] = c.o.gen_rerank_by;
    out["options"]["gen_rerank_contrastive_weight"] = c.o.gen_rerank_contrastive_weight;
    // Per prompt: every candidate's score and the one kept (the first of the highest).
    json best = json::array();
    for (int64_t i = 0; i < N; ++i) {
      best.push_back({{"chosen", chosen[static_cast<size_t>(i)]}, {"scores", cand_scores[static_cast<size_t>(i)]}});
    }
    out["best_of"] = best;
  }
  if (!notes.empty()) out["notes"] = notes;
  if (!c.o.out_dir.empty()) {
    const auto dir = fs::path(out_path(c.o, "generated"));
    fs::create_directories(dir);
    json files = json::array();
    for (int64_t i = 0; i < N; ++i) {
      const auto id =
          list[static_cast<size_t>(i)].contains("id") ? list[static_cast<size_t>(i)]["id"].dump() : std::to_string(i);
      const auto f = (dir / (id + ".png")).string();
      write_image_file(f, images[static_cast<size_t>(i)]);
      files.push_back(f);
      for (int64_t j = 0; j < (K > 1 ? K : 0); ++j) {  // best-of-N: every candidate beside the kept one
        write_image_file((dir / fmt::format("{}_candidate{}.png", id, j)).string(),
                         candidates[static_cast<size_t>(i)][j]);
      }
    }
    // Sheet: generated | reference, captioned with the prompt.
    std::vector<at::Tensor> cells;
    std::vector<std::string> caps;
    const int64_t show = std::min<int64_t>(N, 16);
    for (int64_t i = 0; i < show; ++i) {
      cells.push_back(images[static_cast<size_t>(i)]);
      caps.push_back(prompts[static_cast<size_t>(i)]);
      if (ref_u8[static_cast<size_t>(i)].defined()) {
        cells.push_back(ref_u8[static_cast<size_t>(i)]);
        caps.push_back("(reference)");
      } else {
        cells.push_back(at::full_like(images[static_cast<size_t>(i)], 255));
        caps.push_back("");
      }
    }
    const auto sheet = out_path(c.o, "generate_sheet.png");
    write_image_sheet(sheet, cells, 4, caps, 160);
    out["outputs"] = {{"images", dir.string()}, {"sheet", sheet}};
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// recon
json run_recon(const Ctx& c, const json& in) {
  std::vector<std::string> files;
  std::string root;
  if (in["layout"] == "imagefolder") {
    root = in["images"].get<std::string>();
    files = index_image_folder(root).files;
  } else {
    root = c.o.image_root.empty() ? in["image_root"].get<std::string>() : c.o.image_root;
    const auto s = caption_set(in["captions"].get<std::string>(), 0);
    files = s.files;
  }
  const int64_t N = limited(static_cast<int64_t>(files.size()), c.o.limit), B = c.o.batch_size;
  if (N == 0) throw_input_error("recon: no images");
  double psnr_sum = 0, ssim_sum = 0;
  std::vector<at::Tensor> originals, recons;  // a few for the sheet
  Progress p(c.o, "recon", "images", N);
  torch::NoGradGuard ng;
  for (int64_t i = 0; i < N; i += B) {
    const int64_t j = std::min(N, i + B);
    std::vector<at::Tensor> xs;
    for (int64_t k = i; k < j; ++k) xs.push_back(load_image(c, root, files[static_cast<size_t>(k)]));
    const auto x = at::stack(xs).to(c.device);
    c.reseed();
    const auto rec = c.model.tokenizer(x).reconstruction;
    const auto a = to_unit(rec, c.o), b = to_unit(x, c.o);
    // Per-image means, summed, so batching never changes the result.
    for (int64_t k = 0; k < a.size(0); ++k) {
      psnr_sum += psnr(a.slice(0, k, k + 1), b.slice(0, k, k + 1));
      ssim_sum += ssim(a.slice(0, k, k + 1), b.slice(0, k, k + 1));
    }
    if (originals.size() < 16) {
      const auto ou = to_u8(x, c.o), ru = to_u8(rec, c.o);
      for (int64_t k = 0; k < ou.size(0) && originals.size() < 16; ++k) {
        originals.push_back(ou[k]);
        recons.push_back(ru[k]);
      }
    }
    p.advance(j - i);
  }
  json out = {{"task", "recon"},
              {"metrics", {{"psnr", psnr_sum / static_cast<double>(N)}, {"ssim", ssim_sum / static_cast<double>(N)}}},
              {"counts", {{"samples", N}, {"images", files.size()}}},
              {"inputs", in}};
  if (!c.o.out_dir.empty()) {
    std::vector<at::Tensor> cells;
    std::vector<std::string> caps;
    for (size_t k = 0; k < originals.size(); ++k) {
      cells.push_back(originals[k]);
      caps.push_back("original");
      cells.push_back(recons[k]);
      caps.push_back("recon");
    }
    const auto sheet = out_path(c.o, "recon_sheet.png");
    write_image_sheet(sheet, cells, 8, caps, 96);
    out["outputs"] = {{"sheet", sheet}};
  }
  return out;
}

int64_t parameter_count(const JanusModelImpl& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

}  // namespace

json evaluate(const EvalModel& m, const std::string& task, const std::string& data, const EvalOptions& o) {
  if (!m.model) throw InputError("evaluate: no model given");
  if (!m.tokenizer) throw InputError("evaluate: no tokenizer given");
  if (o.batch_size < 1) throw_input_error("evaluate: batch size must be >= 1, got {}", o.batch_size);
  if (o.limit < 0) throw_input_error("evaluate: limit must be >= 0, got {}", o.limit);
  if (o.beam < 1) throw_input_error("evaluate: beam size must be >= 1, got {}", o.beam);
  if (o.mean.size() != 3 || o.std.size() != 3) throw InputError("evaluate: mean and std need 3 values");
  const json in = resolve_task_data(task, data, o.split);
  auto& model = *m.model;
  const bool was_training = model.is_training();
  model.eval();
  struct Restore {
    JanusModelImpl& m;
    bool training;
    ~Restore() { m.train(training); }
  } restore{model, was_training};
  torch::NoGradGuard no_grad;
  const auto params = model.parameters();
  const c10::Device device = params.empty() ? c10::Device(c10::kCPU) : params.front().device();
  ImageTransform t;
  t.resize_short = model.options.image_size();
  t.crop = model.options.image_size();
  t.mean = o.mean;
  t.std = o.std;
  std::vector<LSHAttentionImpl*> lsh;
  for (const auto& mod : model.modules()) {
    if (auto* l = dynamic_cast<LSHAttentionImpl*>(mod.get())) lsh.push_back(l);
  }
  const Ctx c{m, o, model, *m.tokenizer, device, t, lsh};
  const auto t0 = std::chrono::steady_clock::now();
  json out;
  if (task == "retrieval")
    out = run_retrieval(c, in);
  else if (task == "caption")
    out = run_caption(c, in);
  else if (task == "vqa")
    out = run_vqa(c, in);
  else if (task == "nlvr2")
    out = run_nlvr2(c, in);
  else if (task == "classify")
    out = run_classify(c, in);
  else if (task == "generate")
    out = run_generate(c, in);
  else
    out = run_recon(c, in);
  const double secs = elapsed(t0);
  out["split"] = o.split;
  out["seconds"] = secs;
  const int64_t n = out["counts"].value("samples", int64_t{0});
  out["samples_per_second"] = secs > 0 ? static_cast<double>(n) / secs : 0.0;
  out["model"] = {{"weights", m.weights},
                  {"config_hash", m.config_hash},
                  {"flavour", model.options.flavour},
                  {"parameters", parameter_count(model)}};
  if (!out.contains("options")) out["options"] = json::object();
  out["options"]["limit"] = o.limit;
  out["options"]["batch_size"] = o.batch_size;
  return out;
}

json evaluate(JanusModelImpl& model, const Tokenizer& tokenizer, const std::vector<std::string>& answers,
              const std::string& task, const std::string& data, const EvalOptions& options) {
  EvalModel m;
  m.model = &model;
  m.tokenizer = &tokenizer;
  m.answers = answers;
  m.config_hash = model_config_hash(model.options);
  return evaluate(m, task, data, options);
}

// ---------------------------------------------------------------------------------------------------------------
json retrieval_from_embeddings(const at::Tensor& image_embeds, const at::Tensor& text_embeds,
                               const std::vector<int64_t>& txt2img) {
  TORCH_CHECK(image_embeds.dim() == 2 && text_embeds.dim() == 2 && image_embeds.size(1) == text_embeds.size(1),
              "retrieval_from_embeddings: expected [Ni, E] and [Nt, E], got ", image_embeds.sizes(), " and ",
              text_embeds.sizes());
  const auto sim = at::matmul(image_embeds.to(at::kCPU).to(at::kFloat), text_embeds.to(at::kCPU).to(at::kFloat).t());
  return score_retrieval(sim, {{"txt2img", txt2img}});
}

json retrieval_recall_sets(const at::Tensor& sim_in, const std::vector<std::vector<int64_t>>& relevant_texts,
                           const std::vector<std::vector<int64_t>>& relevant_images) {
  const auto sim = sim_in.to(at::kCPU).to(at::kDouble).contiguous();
  TORCH_CHECK(sim.dim() == 2 && sim.size(0) == static_cast<int64_t>(relevant_texts.size()) &&
                  sim.size(1) == static_cast<int64_t>(relevant_images.size()),
              "retrieval_recall_sets: sim ", sim.sizes(), " vs ", relevant_texts.size(), " images and ",
              relevant_images.size(), " texts");
  // Best rank of any relevant item in one score row (ties: lower index first).
  const auto best_rank = [](const at::Tensor& row, const std::vector<int64_t>& rel) {
    const auto* p = row.data_ptr<double>();
    const int64_t n = row.size(0);
    int64_t best = n;
    for (int64_t r : rel) {
      int64_t rank = 0;
      for (int64_t j = 0; j < n; ++j) rank += (p[j] > p[r] || (p[j] == p[r] && j < r)) ? 1 : 0;
      best = std::min(best, rank);
    }
    return best;
  };
  const auto recall = [&](const at::Tensor& m, const std::vector<std::vector<int64_t>>& rel) {
    std::array<double, 3> hits{0, 0, 0};
    for (int64_t q = 0; q < m.size(0); ++q) {
      const auto row = m[q].contiguous();
      const int64_t r = best_rank(row, rel[static_cast<size_t>(q)]);
      hits[0] += r < 1;
      hits[1] += r < 5;
      hits[2] += r < 10;
    }
    for (auto& h : hits) h = m.size(0) > 0 ? 100.0 * h / static_cast<double>(m.size(0)) : 0.0;
    return hits;
  };
  const auto i2t = recall(sim, relevant_texts);
  const auto t2i = recall(sim.t().contiguous(), relevant_images);
  const double im = (i2t[0] + i2t[1] + i2t[2]) / 3.0, tm = (t2i[0] + t2i[1] + t2i[2]) / 3.0;
  return {{"txt_r1", i2t[0]}, {"txt_r5", i2t[1]},  {"txt_r10", i2t[2]}, {"txt_r_mean", im},         {"img_r1", t2i[0]},
          {"img_r5", t2i[1]}, {"img_r10", t2i[2]}, {"img_r_mean", tm},  {"r_mean", (im + tm) / 2.0}};
}

void write_image_sheet(const std::string& path, const std::vector<at::Tensor>& images, int64_t cols,
                       const std::vector<std::string>& captions, int64_t cell) {
  if (images.empty()) throw InputError("write_image_sheet: no images");
  cols = std::max<int64_t>(1, std::min<int64_t>(cols, static_cast<int64_t>(images.size())));
  const int64_t rows = (static_cast<int64_t>(images.size()) + cols - 1) / cols;
  const int text_h = captions.empty() ? 0 : 28, pad = 4;
  const int cw = static_cast<int>(cell) + pad, ch = static_cast<int>(cell) + text_h + pad;
  cv::Mat sheet(static_cast<int>(rows) * ch + pad, static_cast<int>(cols) * cw + pad, CV_8UC3,
                cv::Scalar(255, 255, 255));
  for (size_t i = 0; i < images.size(); ++i) {
    const auto img = images[i].to(at::kCPU).to(at::kByte).contiguous();
    TORCH_CHECK(img.dim() == 3 && img.size(2) == 3, "write_image_sheet: images must be uint8 [H, W, 3]");
    cv::Mat rgb(static_cast<int>(img.size(0)), static_cast<int>(img.size(1)), CV_8UC3, img.data_ptr<uint8_t>());
    cv::Mat bgr, big;
    cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
    cv::resize(bgr, big, cv::Size(static_cast<int>(cell), static_cast<int>(cell)), 0, 0, cv::INTER_NEAREST);
    const int x = pad + static_cast<int>(static_cast<int64_t>(i) % cols) * cw;
    const int y = pad + static_cast<int>(static_cast<int64_t>(i) / cols) * ch;
    big.copyTo(sheet(cv::Rect(x, y, big.cols, big.rows)));
    if (i < captions.size() && !captions[i].empty()) {
      // Two lines of at most ~cell/6 characters each.
      const size_t per = static_cast<size_t>(std::max<int64_t>(8, cell / 6));
      const std::string& s = captions[i];
      for (int line = 0; line < 2 && static_cast<size_t>(line) * per < s.size(); ++line) {
        cv::putText(sheet, s.substr(static_cast<size_t>(line) * per, per),
                    cv::Point(x, y + static_cast<int>(cell) + 11 + 12 * line), cv::FONT_HERSHEY_PLAIN, 0.8,
                    cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
      }
    }
  }
  const auto parent = fs::path(path).parent_path();
  if (!parent.empty()) fs::create_directories(parent);
  if (!cv::imwrite(path, sheet)) throw_input_error("write_image_sheet: cannot write '{}'", path);
}

}  // namespace janus::eval
