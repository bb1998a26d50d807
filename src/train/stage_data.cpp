// Stage tasks: where the data is (resolve_stage_data), which losses run (stage_tasks), the Shapes tokenizer and the
// multi-stream resumable data source.
#include <algorithm>
#include <filesystem>
#include <functional>
#include <set>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "janus/core/error.h"
#include "janus/core/fs.h"
#include "janus/core/json_file.h"
#include "janus/train/stage_task.h"

namespace janus::train {
namespace fs = std::filesystem;

namespace {

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

std::string need_file(const fs::path& p, const std::string& what) {
  if (!is_file(p)) throw_input_error("{}: '{}' does not exist", what, p.string());
  return p.string();
}

std::string optional_file(const fs::path& p) { return is_file(p) ? p.string() : std::string(); }

int64_t stable_hash(const std::string& s) {
  // FNV-1a: stable across runs and platforms (std::hash is not guaranteed to be).
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return static_cast<int64_t>(h >> 1);
}

}  // namespace

StageDataFiles resolve_stage_data(const Config& cfg) {
  const auto& d = cfg.data;
  StageDataFiles f;
  if (d.train.empty()) throw_input_error("data.train: no training data set (a Shapes directory or a COCO captions JSON)");
  if (d.format == "shapes") {
    f.shapes = true;
    const fs::path tr(d.train);
    if (!is_file(tr / "shapes_info.json")) {
      throw_input_error("data.train '{}' is not a Shapes directory (no shapes_info.json; create one with `janus_data "
                        "shapes --out DIR`)",
                        d.train);
    }
    const fs::path va = d.val.empty() ? tr : fs::path(d.val);
    f.image_root_train = tr.string();
    f.image_root_val = va.string();
    f.captions_train = need_file(tr / "captions_train.json", "data.train (Shapes captions)");
    f.captions_val = need_file(va / "captions_val.json", "data.val (Shapes captions)");
    f.vqa_train = optional_file(tr / "vqa" / "questions_train.json");
    f.vqa_val = optional_file(va / "vqa" / "questions_val.json");
    f.nlvr2_train = optional_file(tr / "nlvr2" / "train.jsonl");
    f.nlvr2_val = optional_file(va / "nlvr2" / "val.jsonl");
    f.prompts_train = optional_file(tr / "geneval" / "prompts_train.json");
    f.prompts_val = optional_file(va / "geneval" / "prompts_val.json");
    if (!d.vqa_train.empty()) f.vqa_train = d.vqa_train;
    if (!d.vqa_val.empty()) f.vqa_val = d.vqa_val;
    if (!d.nlvr2_train.empty()) f.nlvr2_train = d.nlvr2_train;
    if (!d.nlvr2_val.empty()) f.nlvr2_val = d.nlvr2_val;
    if (!d.image_root.empty()) f.image_root_train = f.image_root_val = d.image_root;
    f.tokenizer = !d.tokenizer.empty() ? d.tokenizer : optional_file(tr / "tokenizer.model");
  } else if (d.format == "coco") {
    f.captions_train = need_file(d.train, "data.train (COCO captions JSON)");
    f.captions_val = d.val.empty() ? std::string() : need_file(d.val, "data.val (COCO captions JSON)");
    f.image_root_train = d.image_root.empty() ? fs::path(d.train).parent_path().string() : d.image_root;
    f.image_root_val = d.image_root.empty() ? fs::path(d.val).parent_path().string() : d.image_root;
    f.vqa_train = d.vqa_train;
    f.vqa_val = d.vqa_val;
    f.nlvr2_train = d.nlvr2_train;
    f.nlvr2_val = d.nlvr2_val;
    f.tokenizer = d.tokenizer;
  } else {
    throw_input_error("data.format '{}': the stage tasks read 'shapes' (a Shapes directory) or 'coco' (COCO captions "
                      "JSON + data.vqa_* / data.nlvr2_* files)",
                      d.format);
  }
  if (f.tokenizer.empty()) {
    throw_input_error(
        "no tokenizer: set data.tokenizer to a SentencePiece .model (`janus_data tokenizer train --input corpus.txt "
        "--out DIR`), or regenerate the Shapes directory with `janus_data shapes --out DIR` (writes DIR/tokenizer.model)");
  }
  if (fs::is_directory(f.tokenizer)) f.tokenizer = (fs::path(f.tokenizer) / "tokenizer.model").string();
  need_file(f.tokenizer, "data.tokenizer");
  // Explicitly configured VQA files need their annotations beside them.
  for (const auto* q : {&f.vqa_train, &f.vqa_val}) {
    if (q->empty()) continue;
    need_file(*q, "VQA questions file");
    const std::string name = fs::path(*q).filename().string();
    const auto pos = name.find("questions");
    if (pos == std::string::npos) throw_input_error("{}: a VQA questions file name must contain \"questions\"", *q);
    need_file(fs::path(*q).parent_path() / (name.substr(0, pos) + "annotations" + name.substr(pos + 9)),
              "VQA annotations for " + *q);
  }
  for (const auto* n : {&f.nlvr2_train, &f.nlvr2_val}) {
    if (!n->empty()) need_file(*n, "NLVR2 file");
  }
  return f;
}

std::vector<std::string> stage_tasks(const Config& cfg, const StageDataFiles& files) {
  static const std::vector<std::vector<std::string>> allowed = {{"simmim", "mlm", "vq"},
                                                                {"contrastive", "itm", "caption", "nlvr2"},
                                                                {"t2i", "caption", "vqa", "nlvr2", "contrastive"}};
  const int64_t stage = cfg.train.stage;
  const auto& ok = allowed.at(static_cast<size_t>(stage - 1));
  std::vector<std::string> tasks = cfg.train.tasks;
  if (tasks.empty()) {
    if (stage == 1) tasks = {"simmim", "mlm", "vq"};
    if (stage == 2) tasks = {"contrastive", "itm", "caption"};
    if (stage == 3) {
      tasks = {"t2i", "caption"};
      if (!files.vqa_train.empty()) tasks.push_back("vqa");
      if (!files.nlvr2_train.empty()) tasks.push_back("nlvr2");
    }
  }
  std::set<std::string> seen;
  for (const auto& t : tasks) {
    if (std::find(ok.begin(), ok.end(), t) == ok.end()) {
      throw_input_error("train.tasks: '{}' is not a stage {} loss (stage {} has: {})", t, stage, stage,
                        fmt::format("{}", fmt::join(ok, ", ")));
    }
    if (!seen.insert(t).second) throw_input_error("train.tasks: '{}' listed twice", t);
    if (t == "vqa" && files.vqa_train.empty()) {
      throw_input_error("train.tasks has vqa but no VQA training file was found (data.vqa_train{})",
                        files.shapes ? ", or vqa/questions_train.json in the Shapes directory" : "");
    }
    if (t == "nlvr2" && files.nlvr2_train.empty()) {
      throw_input_error("train.tasks has nlvr2 but no NLVR2 training file was found (data.nlvr2_train{})",
                        files.shapes ? ", or nlvr2/train.jsonl in the Shapes directory" : "");
    }
  }
  if (tasks.empty()) throw_input_error("train.tasks: stage {} needs at least one loss", stage);
  if (!cfg.train.loss_weights.empty() && cfg.train.loss_weights.size() != tasks.size()) {
    throw_input_error("train.loss_weights has {} values but the stage trains {} losses ({})",
                      cfg.train.loss_weights.size(), tasks.size(), fmt::format("{}", fmt::join(tasks, ", ")));
  }
  if (!cfg.train.task_every.empty()) {
    if (stage != 3)
      throw_input_error("train.task_every: only stage 3 schedules its losses by step, this is stage {}", stage);
    if (cfg.train.task_every.size() != tasks.size()) {
      throw_input_error("train.task_every has {} values but the stage trains {} losses ({})",
                        cfg.train.task_every.size(), tasks.size(), fmt::format("{}", fmt::join(tasks, ", ")));
    }
    if (cfg.train.loss_balance == "gradnorm") {
      throw_input_error(
          "train.task_every needs train.loss_balance: fixed (GradNorm balances losses that are all "
          "present on every step)");
    }
  }
  return tasks;
}

std::string build_shapes_tokenizer(const std::string& shapes_dir, int64_t vocab_size, uint64_t seed) {
  const fs::path dir(shapes_dir);
  std::vector<std::string> lines;
  auto read_json = [](const fs::path& p) { return read_json_file(p.string(), "Shapes annotation file"); };
  const auto captions = dir / "captions_train.json";
  if (!is_file(captions)) throw_input_error("{}: not a Shapes directory (no captions_train.json)", shapes_dir);
  // (Range-for over a member of a temporary would dangle: keep each parsed file alive.)
  const auto cap = read_json(captions);
  for (const auto& a : cap.at("annotations")) lines.push_back(a.at("caption").get<std::string>());
  if (is_file(dir / "vqa" / "questions_train.json")) {
    const auto q = read_json(dir / "vqa" / "questions_train.json");
    for (const auto& x : q.at("questions")) lines.push_back(x.at("question").get<std::string>());
  }
  if (is_file(dir / "nlvr2" / "train.jsonl")) {
    for (const auto& r : load_nlvr2((dir / "nlvr2" / "train.jsonl").string())) lines.push_back(r.sentence);
  }
  if (is_file(dir / "geneval" / "prompts_train.json")) {
    const auto p = read_json(dir / "geneval" / "prompts_train.json");
    for (const auto& x : p) lines.push_back(x.at("prompt").get<std::string>());
  }
  if (is_file(dir / "videos" / "captions_train.json")) {
    const auto v = read_json(dir / "videos" / "captions_train.json");
    for (const auto& x : v.at("videos")) lines.push_back(x.at("caption").get<std::string>());
  }
  std::string corpus;
  for (const auto& l : lines) corpus += l + "\n";
  const auto corpus_path = (dir / "corpus.txt").string();
  write_file_atomic(corpus_path, corpus);
  TokenizerTrainOptions o;
  o.vocab_size = vocab_size;
  o.seed = seed;
  // BPE, not unigram: on this ~80-word corpus unigram stopped at ~133 pieces, spelled most words letter by letter
  // ("b l u e") and made 21 % of the captions longer than the quickstart's 24 tokens (truncated: the last object
  // of three-object captions was cut off). BPE at 256 pieces keeps every word whole (longest caption 19 tokens).
  o.model_type = "bpe";
  const auto model = Tokenizer::train(corpus_path, shapes_dir, o);
  const auto tok = Tokenizer::load(model);
  size_t longest = 0;
  for (const auto& l : lines) longest = std::max(longest, tok.encode(l, true, true).size());
  spdlog::info("shapes: tokenizer {} ({} pieces) trained on {} sentences; longest sentence {} tokens with bos/eos",
               model, tok.vocab_size(), lines.size(), longest);
  return model;
}

// ---- StageDataSource ---------------------------------------------------------------------------------------------
StageDataSource::StageDataSource(std::vector<Stream> streams, std::shared_ptr<const AnswerVocab> answers)
    : streams_(std::move(streams)), answers_(std::move(answers)) {
  if (streams_.empty()) throw_error("stage data: no stream");
  for (const auto& s : streams_) loaders_.push_back(std::make_unique<DataLoader>(s.dataset, s.options));
}

void StageDataSource::add_stream_tensors(janus::Batch&& b, const std::string& name, const AnswerVocab* answers,
                                         train::Batch& out) {
  const std::string p = name + ".";
  const int64_t B = b.size();
  if (B == 0) throw_input_error("stage data: stream '{}' produced an empty batch (all samples unreadable?)", name);
  if (b.images.defined()) out.tensors[p + "images"] = b.images;
  if (b.images2.defined()) out.tensors[p + "images2"] = b.images2;
  if (b.tokens.defined()) {
    out.tensors[p + "ids"] = b.tokens;
    out.tensors[p + "mask"] = b.attention_mask.to(at::kBool);
  }
  if (b.labels.defined()) out.tensors[p + "labels"] = b.labels;
  std::vector<int64_t> image_ids, text_hash;
  for (const auto& s : b.samples) {
    image_ids.push_back(stable_hash(s.image_paths.empty() ? s.id : s.image_paths.front()));
    text_hash.push_back(stable_hash(s.text));
  }
  out.tensors[p + "image_ids"] = at::tensor(image_ids, at::kLong);
  out.tensors[p + "text_hash"] = at::tensor(text_hash, at::kLong);
  if (answers) {
    // VQA v2 soft scores: min(1, #humans that gave the answer / 3) for answers in the vocabulary.
    const int64_t A = static_cast<int64_t>(answers->answers.size());
    auto targets = at::zeros({B, A}, at::kFloat);
    auto acc = targets.accessor<float, 2>();
    for (int64_t i = 0; i < B; ++i) {
      std::map<int64_t, int> counts;
      for (const auto& a : b.samples[static_cast<size_t>(i)].answers) {
        const auto id = answers->id(normalize_answer(a));
        if (id >= 0) ++counts[id];
      }
      for (const auto& [id, n] : counts) acc[i][id] = std::min(1.0f, static_cast<float>(n) / 3.0f);
    }
    out.tensors[p + "targets"] = targets;
  }
  out.meta[name] = {{"epoch", b.epoch}, {"position", b.position}, {"skipped", b.skipped}};
}

train::Batch StageDataSource::next() {
  train::Batch out;
  for (size_t i = 0; i < streams_.size(); ++i) {
    auto b = loaders_[i]->next();
    const int64_t n = b.size();
    if (b.skipped > 0) {  // the running count of unreadable samples (each is also warned about with its file)
      spdlog::warn("data: stream '{}' skipped {} unreadable sample(s) in this batch; {} of {} skipped so far "
                   "(limit data.max_bad_fraction)",
                   streams_[i].name, b.skipped, loaders_[i]->bad_samples(), loaders_[i]->seen_samples());
    }
    add_stream_tensors(std::move(b), streams_[i].name, streams_[i].name == "vqa" ? answers_.get() : nullptr, out);
    if (i == 0) out.size = n;
  }
  return out;
}

nlohmann::json StageDataSource::state() const {
  nlohmann::json j = nlohmann::json::object();
  for (size_t i = 0; i < streams_.size(); ++i) {
    const auto c = loaders_[i]->cursor();
    j[streams_[i].name] = {{"epoch", c.epoch}, {"position", c.position}};
  }
  return j;
}

void StageDataSource::load_state(const nlohmann::json& state) {
  if (!state.is_object()) throw_input_error("stage data: bad cursor {}", state.dump());
  for (size_t i = 0; i < streams_.size(); ++i) {
    const auto& name = streams_[i].name;
    if (!state.contains(name)) throw_input_error("stage data: the checkpoint has no cursor for stream '{}'", name);
    const auto& c = state.at(name);
    LoaderCursor cur;
    try {
      cur.epoch = c.at("epoch").get<int64_t>();
      cur.position = c.at("position").get<int64_t>();
    } catch (const nlohmann::json::exception& e) {
      throw_input_error("stage data: bad cursor for '{}': {}", name, e.what());
    }
    loaders_[i].reset();  // stop its workers before starting the replacement
    loaders_[i] = std::make_unique<DataLoader>(streams_[i].dataset, streams_[i].options, cur);
  }
}

}  // namespace janus::train
