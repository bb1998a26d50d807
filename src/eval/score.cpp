#include "janus/eval/score.h"

#include <map>
#include <set>
#include <unordered_map>

#include "janus/core/error.h"
#include "janus/eval/caption_metrics.h"
#include "janus/eval/metrics.h"
#include "janus/eval/text.h"
#include "janus/eval/vqa.h"

namespace janus::eval {
namespace {

using nlohmann::json;

// Collects input problems by kind, with a count and a few examples each, and throws one InputError at the end.
class Problems {
 public:
  void add(const std::string& kind, const std::string& example) {
    auto& [count, examples] = items_[kind];
    ++count;
    if (examples.size() < 5) examples.push_back(example);
  }
  void throw_if_any(const std::string& context) const {
    if (items_.empty()) return;
    long total = 0;
    std::string detail;
    for (const auto& [kind, ce] : items_) {
      total += ce.first;
      std::string ex;
      for (const auto& e : ce.second) ex += (ex.empty() ? "" : ", ") + e;
      detail += fmt::format("; {} x {} (e.g. {})", ce.first, kind, ex);
    }
    throw_input_error("{}: {} problem{}{}", context, total, total == 1 ? "" : "s", detail);
  }

 private:
  std::map<std::string, std::pair<long, std::vector<std::string>>> items_;
};

// Ids may be integers (COCO, VQA) or strings; anything else is a type error.
bool id_key(const json& v, std::string& key) {
  if (v.is_number_integer()) {
    key = v.dump();
    return true;
  }
  if (v.is_string()) {
    key = v.get<std::string>();
    return true;
  }
  return false;
}

std::string show(const json& v) {
  std::string s = v.dump();
  return s.size() > 40 ? s.substr(0, 37) + "..." : s;
}

const json& require_array(const json& j, const char* field, const std::string& what) {
  if (!j.is_object() || !j.contains(field) || !j[field].is_array()) {
    throw_input_error("{}: expected an object with an array \"{}\"", what, field);
  }
  return j[field];
}

void check_results_array(const json& results, const std::string& what) {
  if (!results.is_array()) throw_input_error("{}: expected a JSON array of objects, got {}", what, results.type_name());
}

// Coverage: ids annotated but absent from the results.
void check_coverage(std::size_t annotated, std::size_t covered, const std::string& id_name, bool allow_partial,
                    const std::vector<std::string>& missing_examples) {
  if (covered == annotated) return;
  const std::size_t missing = annotated - covered;
  std::string ex;
  for (const auto& e : missing_examples) ex += (ex.empty() ? "" : ", ") + e;
  if (!allow_partial) {
    throw_input_error(
        "results cover {} of {} annotated {}s: {} missing (e.g. {}); pass --allow-partial to score "
        "only those present",
        covered, annotated, id_name, missing, ex);
  }
  spdlog::warn("results cover {} of {} annotated {}s ({} missing); scoring the {} present (--allow-partial)", covered,
               annotated, id_name, missing, covered);
}

json counts(std::size_t annotated, std::size_t scored) {
  return {{"annotated", annotated}, {"scored", scored}, {"missing", annotated - scored}};
}

}  // namespace

json score_caption(const json& annotations, const json& results, const ScoreOptions& opt, json* tokens) {
  const json& anns = require_array(annotations, "annotations", "caption annotations");
  // References per image id, in first-seen order.
  std::vector<std::string> order;
  std::unordered_map<std::string, std::pair<json, std::vector<std::string>>> refs;
  Problems ap;
  for (const auto& a : anns) {
    std::string key;
    if (!a.is_object() || !a.contains("image_id") || !id_key(a["image_id"], key)) {
      ap.add("annotation without an integer/string image_id", show(a));
      continue;
    }
    if (!a.contains("caption") || !a["caption"].is_string()) {
      ap.add("annotation caption that is not a string", show(a));
      continue;
    }
    auto [it, fresh] = refs.try_emplace(key);
    if (fresh) {
      order.push_back(key);
      it->second.first = a["image_id"];
    }
    it->second.second.push_back(a["caption"].get<std::string>());
  }
  ap.throw_if_any("caption annotations");
  if (refs.empty()) throw_input_error("caption annotations: no captions");

  check_results_array(results, "caption results");
  Problems rp;
  std::unordered_map<std::string, std::string> cand;
  for (const auto& r : results) {
    std::string key;
    if (!r.is_object() || !r.contains("image_id") || !id_key(r["image_id"], key)) {
      rp.add("result without an integer/string image_id", show(r));
      continue;
    }
    if (!r.contains("caption") || !r["caption"].is_string()) {
      rp.add("caption that is not a string", show(r["image_id"]));
      continue;
    }
    const std::string c = r["caption"].get<std::string>();
    if (!refs.count(key)) {
      rp.add("image_id not in the annotations", show(r["image_id"]));
    } else if (cand.count(key)) {
      rp.add("duplicate image_id", show(r["image_id"]));
    } else if (strip_whitespace(c).empty()) {
      rp.add("empty caption", show(r["image_id"]));
    } else if (!is_valid_utf8(c)) {
      rp.add("caption that is not UTF-8", show(r["image_id"]));
    }
    cand.emplace(key, c);
  }
  rp.throw_if_any("caption results");

  std::vector<std::string> ids, missing;
  for (const auto& k : order) {
    if (cand.count(k)) {
      ids.push_back(k);
    } else if (missing.size() < 5) {
      missing.push_back(refs[k].first.dump());
    }
  }
  check_coverage(order.size(), ids.size(), "image_id", opt.allow_partial, missing);
  if (ids.empty()) throw_input_error("caption results: no annotated image to score");

  std::vector<std::string> cands;
  std::vector<std::vector<std::string>> rs;
  json gts_tok = json::object(), res_tok = json::object();
  for (const auto& k : ids) {
    cands.push_back(ptb_like_tokenize(cand[k]));
    rs.emplace_back();
    for (const auto& r : refs[k].second) rs.back().push_back(ptb_like_tokenize(r));
    if (tokens) {
      gts_tok[k] = rs.back();
      res_tok[k] = json::array({cands.back()});
    }
  }
  if (tokens) *tokens = {{"gts", gts_tok}, {"res", res_tok}};
  const CaptionScores s = caption_scores(cands, rs);
  json out = {{"task", "caption"},
              {"metrics",
               {{"Bleu_1", s.bleu.corpus[0]},
                {"Bleu_2", s.bleu.corpus[1]},
                {"Bleu_3", s.bleu.corpus[2]},
                {"Bleu_4", s.bleu.corpus[3]},
                {"CIDEr", s.cider.corpus},
                {"ROUGE_L", s.rouge.corpus}}},
              {"counts", counts(order.size(), ids.size())},
              {"tokenizer", "janus ptb_like_tokenize (Java-free PTBTokenizer approximation, docs/eval.md)"}};
  out["counts"]["references"] = [&] {
    std::size_t n = 0;
    for (const auto& r : rs) n += r.size();
    return n;
  }();
  if (opt.per_item) {
    json per = json::array();
    for (std::size_t i = 0; i < ids.size(); ++i) {
      per.push_back({{"image_id", refs[ids[i]].first},
                     {"Bleu_1", s.bleu.per_image[i][0]},
                     {"Bleu_2", s.bleu.per_image[i][1]},
                     {"Bleu_3", s.bleu.per_image[i][2]},
                     {"Bleu_4", s.bleu.per_image[i][3]},
                     {"CIDEr", s.cider.per_image[i]},
                     {"ROUGE_L", s.rouge.per_image[i]}});
    }
    out["per_image"] = per;
  }
  return out;
}

json score_vqa(const json& questions, const json& annotations, const json& results, const ScoreOptions& opt) {
  const json& qs = require_array(questions, "questions", "VQA questions");
  const json& anns = require_array(annotations, "annotations", "VQA annotations");
  std::set<std::string> question_ids;
  for (const auto& q : qs) {
    std::string key;
    if (q.is_object() && q.contains("question_id") && id_key(q["question_id"], key)) question_ids.insert(key);
  }
  struct Gt {
    json id;
    std::vector<std::string> answers;
    std::string answer_type, question_type;
  };
  std::vector<std::string> order;
  std::unordered_map<std::string, Gt> gts;
  Problems ap;
  for (const auto& a : anns) {
    std::string key;
    if (!a.is_object() || !a.contains("question_id") || !id_key(a["question_id"], key)) {
      ap.add("annotation without an integer/string question_id", show(a));
      continue;
    }
    Gt g;
    g.id = a["question_id"];
    if (!a.contains("answers") || !a["answers"].is_array() || a["answers"].empty()) {
      ap.add("annotation without a non-empty answers array", show(g.id));
      continue;
    }
    bool ok = true;
    for (const auto& x : a["answers"]) {
      if (!x.is_object() || !x.contains("answer") || !x["answer"].is_string()) {
        ok = false;
        break;
      }
      g.answers.push_back(x["answer"].get<std::string>());
    }
    if (!ok) {
      ap.add("annotation answer that is not {\"answer\": string}", show(g.id));
      continue;
    }
    g.answer_type = a.value("answer_type", std::string("unknown"));
    g.question_type = a.value("question_type", std::string("unknown"));
    if (gts.count(key)) {
      ap.add("duplicate question_id in annotations", show(g.id));
      continue;
    }
    if (!question_ids.empty() && !question_ids.count(key))
      ap.add("annotated question_id not in the questions", show(g.id));
    order.push_back(key);
    gts.emplace(key, std::move(g));
  }
  ap.throw_if_any("VQA annotations");
  if (gts.empty()) throw_input_error("VQA annotations: no annotations");

  check_results_array(results, "VQA results");
  Problems rp;
  std::unordered_map<std::string, std::string> pred;
  for (const auto& r : results) {
    std::string key;
    if (!r.is_object() || !r.contains("question_id") || !id_key(r["question_id"], key)) {
      rp.add("result without an integer/string question_id", show(r));
      continue;
    }
    if (!r.contains("answer") || !r["answer"].is_string()) {
      rp.add("answer that is not a string", show(r["question_id"]));
      continue;
    }
    if (!gts.count(key)) {
      rp.add("question_id not in the annotations", show(r["question_id"]));
    } else if (pred.count(key)) {
      rp.add("duplicate question_id", show(r["question_id"]));
    }
    pred.emplace(key, r["answer"].get<std::string>());
  }
  rp.throw_if_any("VQA results");

  std::vector<std::string> ids, missing;
  for (const auto& k : order) {
    if (pred.count(k)) {
      ids.push_back(k);
    } else if (missing.size() < 5) {
      missing.push_back(gts[k].id.dump());
    }
  }
  check_coverage(order.size(), ids.size(), "question_id", opt.allow_partial, missing);
  if (ids.empty()) throw_input_error("VQA results: no annotated question to score");
  std::vector<VqaItem> items;
  for (const auto& k : ids) items.push_back({pred[k], gts[k].answers, gts[k].answer_type, gts[k].question_type});
  const VqaResult r = vqa_accuracy(items);
  json out = {
      {"task", "vqa"},
      {"metrics",
       {{"overall", r.overall}, {"perAnswerType", r.per_answer_type}, {"perQuestionType", r.per_question_type}}},
      {"counts", counts(order.size(), ids.size())}};
  out["counts"]["perAnswerType"] = r.answer_type_counts;
  if (opt.per_item) {
    json per = json::array();
    for (std::size_t i = 0; i < ids.size(); ++i)
      per.push_back({{"question_id", gts[ids[i]].id}, {"accuracy", r.per_question[i]}});
    out["per_question"] = per;
  }
  return out;
}

namespace {
// "True"/"False" (any case) or a JSON bool; false when neither.
bool parse_bool(const json& v, bool& out) {
  if (v.is_boolean()) {
    out = v.get<bool>();
    return true;
  }
  if (!v.is_string()) return false;
  std::string s = utf8_lower(strip_whitespace(v.get<std::string>()));
  if (s == "true") return out = true, true;
  if (s == "false") return out = false, true;
  return false;
}
}  // namespace

json score_nlvr2(const std::vector<json>& data, const json& results, const ScoreOptions& opt) {
  std::vector<std::string> order;
  std::unordered_map<std::string, bool> label;
  Problems dp;
  for (std::size_t i = 0; i < data.size(); ++i) {
    const json& d = data[i];
    std::string key;
    bool l = false;
    if (!d.is_object() || !d.contains("identifier") || !d["identifier"].is_string()) {
      dp.add("line without a string identifier", fmt::format("line {}", i + 1));
      continue;
    }
    key = d["identifier"].get<std::string>();
    if (!d.contains("label") || !parse_bool(d["label"], l)) {
      dp.add("label that is not \"True\"/\"False\"", key);
      continue;
    }
    if (label.count(key)) {
      dp.add("duplicate identifier in the data", key);
      continue;
    }
    order.push_back(key);
    label.emplace(key, l);
  }
  dp.throw_if_any("NLVR2 data");
  if (label.empty()) throw_input_error("NLVR2 data: no examples");
  check_results_array(results, "NLVR2 results");
  Problems rp;
  std::unordered_map<std::string, bool> pred;
  for (const auto& r : results) {
    if (!r.is_object() || !r.contains("identifier") || !r["identifier"].is_string()) {
      rp.add("result without a string identifier", show(r));
      continue;
    }
    const std::string key = r["identifier"].get<std::string>();
    bool p = false;
    if (!r.contains("prediction") || !parse_bool(r["prediction"], p)) {
      rp.add("prediction that is not \"True\"/\"False\"", key);
      continue;
    }
    if (!label.count(key)) {
      rp.add("identifier not in the data", key);
    } else if (pred.count(key)) {
      rp.add("duplicate identifier", key);
    }
    pred.emplace(key, p);
  }
  rp.throw_if_any("NLVR2 results");
  std::vector<std::string> missing;
  std::vector<bool> correct;
  for (const auto& k : order) {
    const auto it = pred.find(k);
    if (it == pred.end()) {
      if (missing.size() < 5) missing.push_back(k);
      continue;
    }
    correct.push_back(it->second == label[k]);
  }
  check_coverage(order.size(), correct.size(), "identifier", opt.allow_partial, missing);
  json out = {{"task", "nlvr2"},
              {"metrics", {{"accuracy", accuracy(correct)}}},
              {"counts", counts(order.size(), correct.size())}};
  return out;
}

json score_retrieval(const at::Tensor& sim, const json& gt) {
  if (sim.dim() != 2) throw_input_error("retrieval: similarity must be [N_img, N_txt], got {} dims", sim.dim());
  std::vector<int64_t> txt2img;
  if (gt.is_object() && gt.contains("txt2img")) {
    if (!gt["txt2img"].is_array()) throw_input_error("retrieval ground truth: \"txt2img\" must be an array");
    Problems p;
    for (std::size_t t = 0; t < gt["txt2img"].size(); ++t) {
      const json& v = gt["txt2img"][t];
      if (!v.is_number_integer()) {
        p.add("txt2img entry that is not an integer", fmt::format("text {}", t));
        txt2img.push_back(-1);
      } else {
        txt2img.push_back(v.get<int64_t>());
      }
    }
    p.throw_if_any("retrieval ground truth");
  } else if (gt.is_object() && gt.contains("img2txt")) {
    const json& m = gt["img2txt"];
    if (!m.is_array()) throw_input_error("retrieval ground truth: \"img2txt\" must be an array of arrays");
    txt2img.assign(static_cast<std::size_t>(sim.size(1)), -1);
    Problems p;
    for (std::size_t i = 0; i < m.size(); ++i) {
      if (!m[i].is_array()) {
        p.add("img2txt entry that is not an array", fmt::format("image {}", i));
        continue;
      }
      for (const auto& t : m[i]) {
        if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= sim.size(1)) {
          p.add("text index that is not an integer in [0, N_txt)", fmt::format("image {}: {}", i, show(t)));
        } else if (txt2img[t.get<int64_t>()] != -1) {
          p.add("text listed under two images", fmt::format("text {}", t.get<int64_t>()));
        } else {
          txt2img[t.get<int64_t>()] = static_cast<int64_t>(i);
        }
      }
    }
    if (static_cast<int64_t>(m.size()) != sim.size(0)) {
      p.add("img2txt length differing from the similarity rows", fmt::format("{} vs {}", m.size(), sim.size(0)));
    }
    for (std::size_t t = 0; t < txt2img.size(); ++t) {
      if (txt2img[t] == -1) p.add("text not listed under any image", fmt::format("text {}", t));
    }
    p.throw_if_any("retrieval ground truth");
  } else {
    throw_input_error("retrieval ground truth: expected {{\"txt2img\": [...]}} or {{\"img2txt\": [[...], ...]}}");
  }
  const RetrievalResult r = retrieval_recall(sim, txt2img);
  return {{"task", "retrieval"},
          {"metrics",
           {{"txt_r1", r.i2t_r1},
            {"txt_r5", r.i2t_r5},
            {"txt_r10", r.i2t_r10},
            {"txt_r_mean", r.i2t_mean},
            {"img_r1", r.t2i_r1},
            {"img_r5", r.t2i_r5},
            {"img_r10", r.t2i_r10},
            {"img_r_mean", r.t2i_mean},
            {"r_mean", r.r_mean}}},
          {"counts", {{"images", r.images}, {"texts", r.texts}}}};
}

namespace {
void flatten(const json& j, const std::string& prefix, std::map<std::string, double>& out) {
  if (j.is_number()) {
    out[prefix] = j.get<double>();
  } else if (j.is_object()) {
    for (const auto& [k, v] : j.items()) flatten(v, prefix.empty() ? k : prefix + "/" + k, out);
  }
}
}  // namespace

json compare_results(const json& a, const json& b) {
  if (!a.is_object() || !a.contains("metrics")) throw_input_error("compare: first file has no \"metrics\" object");
  if (!b.is_object() || !b.contains("metrics")) throw_input_error("compare: second file has no \"metrics\" object");
  if (a.value("task", "") != b.value("task", "")) {
    spdlog::warn("compare: different tasks ({} vs {})", a.value("task", "?"), b.value("task", "?"));
  }
  std::map<std::string, double> fa, fb;
  flatten(a["metrics"], "", fa);
  flatten(b["metrics"], "", fb);
  std::set<std::string> keys;
  for (const auto& kv : fa) keys.insert(kv.first);
  for (const auto& kv : fb) keys.insert(kv.first);
  json out = json::object();
  for (const auto& k : keys) {
    json row = {{"a", nullptr}, {"b", nullptr}, {"delta", nullptr}};
    if (fa.count(k)) row["a"] = fa[k];
    if (fb.count(k)) row["b"] = fb[k];
    if (fa.count(k) && fb.count(k)) row["delta"] = fb[k] - fa[k];
    out[k] = row;
  }
  return out;
}

}  // namespace janus::eval
