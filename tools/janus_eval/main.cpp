// janus_eval: evaluation front end.
//   janus_eval score caption|vqa|nlvr2|retrieval ...   model-free scoring of prediction files (this file)
//   janus_eval compare a.json b.json                   metric deltas between two results files
// The model-driven mode (`janus_eval --task retrieval|caption|vqa|... --run DIR ...`) is not implemented yet:
// it goes in add_model_eval() below and must produce its results through the same janus::eval score_* /
// metric functions, so both paths write identical JSON.
#include <chrono>
#include <ctime>
#include <fstream>
#include <sstream>

#include "cli.h"
#include "janus/core/fs.h"
#include "janus/eval/score.h"
#include "janus/io/safetensors.h"

namespace {

using nlohmann::json;

json load_json(const std::string& path) {
  const std::string text = janus::read_file(path);
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    throw janus::InputError(fmt::format("{}: not valid UTF-8 JSON: {}", path, e.what()));
  }
}

std::vector<json> load_jsonl(const std::string& path) {
  const std::string text = janus::read_file(path);
  std::vector<json> out;
  std::istringstream in(text);
  std::string line;
  int n = 0, bad = 0;
  std::string first_bad;
  while (std::getline(in, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      out.push_back(json::parse(line));
    } catch (const json::parse_error& e) {
      if (bad++ == 0) first_bad = fmt::format("line {}: {}", n, e.what());
    }
  }
  if (bad)
    throw janus::InputError(fmt::format("{}: {} line(s) are not valid UTF-8 JSON (first: {})", path, bad, first_bad));
  return out;
}

std::string utc_timestamp() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

void print_metrics(const json& metrics, const std::string& indent = "  ") {
  for (const auto& [k, v] : metrics.items()) {
    if (v.is_object()) {
      fmt::print("{}{}:\n", indent, k);
      print_metrics(v, indent + "  ");
    } else if (v.is_number()) {
      fmt::print("{}{:<28} {:>10.4f}\n", indent, k, v.get<double>());
    }
  }
}

void finish(json result, const json& inputs, const std::string& out) {
  result["inputs"] = inputs;
  result["timestamp"] = utc_timestamp();
  result["tool"] = "janus_eval score";
  fmt::print("{} ({} of {} scored)\n", result["task"].get<std::string>(),
             result["counts"].value("scored", result["counts"].value("texts", 0)),
             result["counts"].value("annotated", result["counts"].value("texts", 0)));
  print_metrics(result["metrics"]);
  if (!out.empty()) {
    janus::write_file_atomic(out, result.dump(2) + "\n");
    spdlog::info("wrote {}", out);
  }
}

struct ScoreFlags {
  std::string annotations, results, questions, data, similarity, gt, out, dump_tokens;
  bool per_item = false, allow_partial = false;
};

void add_score(CLI::App& app, ScoreFlags& f) {
  auto* score = app.add_subcommand("score", "score a prediction file in a standard result format (no model)");
  score->require_subcommand(1);
  auto common = [&f](CLI::App* s) {
    s->add_option("--out", f.out, "write the JSON results here");
    s->add_flag("--allow-partial", f.allow_partial, "score only the annotated ids present in the results");
  };
  auto* cap = score->add_subcommand("caption", "BLEU-1..4, CIDEr-D, ROUGE-L (pycocoevalcap-equal)");
  cap->add_option("--annotations", f.annotations, "COCO captions annotations (captions_val2014.json layout)")
      ->required();
  cap->add_option("--results", f.results, "COCO caption results [{image_id, caption}]")->required();
  cap->add_flag("--per-image", f.per_item, "add per-image scores");
  cap->add_option("--dump-tokens", f.dump_tokens, "write the tokenised {gts, res} used for scoring");
  common(cap);
  auto* vqa = score->add_subcommand("vqa", "VQA v2 accuracy (official vqaEval rules)");
  vqa->add_option("--questions", f.questions, "v2_OpenEnded_mscoco_*_questions.json")->required();
  vqa->add_option("--annotations", f.annotations, "v2_mscoco_*_annotations.json")->required();
  vqa->add_option("--results", f.results, "VQA results [{question_id, answer}]")->required();
  vqa->add_flag("--per-question", f.per_item, "add per-question accuracy");
  common(vqa);
  auto* nlvr2 = score->add_subcommand("nlvr2", "NLVR2 accuracy");
  nlvr2->add_option("--data", f.data, "NLVR2 jsonl ({identifier, label})")->required();
  nlvr2->add_option("--results", f.results, "results [{identifier, prediction}]")->required();
  common(nlvr2);
  auto* ret = score->add_subcommand("retrieval", "image<->text R@1/5/10 from a similarity matrix");
  ret->add_option("--similarity", f.similarity, "safetensors with one [N_img, N_txt] tensor (or key 'similarity')")
      ->required();
  ret->add_option("--gt", f.gt, "JSON {txt2img: [...]} or {img2txt: [[...]]}")->required();
  ret->add_option("--out", f.out, "write the JSON results here");
}

int run_score(CLI::App& app, const ScoreFlags& f) {
  auto* score = app.get_subcommand("score");
  janus::eval::ScoreOptions opt;
  opt.allow_partial = f.allow_partial;
  opt.per_item = f.per_item;
  if (*score->get_subcommand("caption")) {
    json tokens;
    json r = janus::eval::score_caption(load_json(f.annotations), load_json(f.results), opt,
                                        f.dump_tokens.empty() ? nullptr : &tokens);
    if (!f.dump_tokens.empty()) janus::write_file_atomic(f.dump_tokens, tokens.dump() + "\n");
    finish(std::move(r), {{"annotations", f.annotations}, {"results", f.results}}, f.out);
  } else if (*score->get_subcommand("vqa")) {
    json r = janus::eval::score_vqa(load_json(f.questions), load_json(f.annotations), load_json(f.results), opt);
    finish(std::move(r), {{"questions", f.questions}, {"annotations", f.annotations}, {"results", f.results}}, f.out);
  } else if (*score->get_subcommand("nlvr2")) {
    json r = janus::eval::score_nlvr2(load_jsonl(f.data), load_json(f.results), opt);
    finish(std::move(r), {{"data", f.data}, {"results", f.results}}, f.out);
  } else {
    const auto tensors = janus::load_safetensors(f.similarity);
    at::Tensor sim;
    if (tensors.count("similarity")) {
      sim = tensors.at("similarity");
    } else if (tensors.size() == 1) {
      sim = tensors.begin()->second;
    } else {
      throw janus::InputError(fmt::format("{}: expected one tensor or a tensor named 'similarity', found {}",
                                          f.similarity, tensors.size()));
    }
    json r = janus::eval::score_retrieval(sim, load_json(f.gt));
    finish(std::move(r), {{"similarity", f.similarity}, {"gt", f.gt}}, f.out);
  }
  return 0;
}

struct CompareFlags {
  std::string a, b, out;
};

void add_compare(CLI::App& app, CompareFlags& f) {
  auto* cmp = app.add_subcommand("compare", "print metric deltas (b - a) between two results files");
  cmp->add_option("a", f.a, "first results JSON")->required();
  cmp->add_option("b", f.b, "second results JSON")->required();
  cmp->add_option("--out", f.out, "write the deltas as JSON");
}

int run_compare(const CompareFlags& f) {
  const json a = load_json(f.a), b = load_json(f.b);
  const json d = janus::eval::compare_results(a, b);
  fmt::print("{:<32} {:>12} {:>12} {:>12}\n", "metric", "a", "b", "b - a");
  const auto cell = [](const json& v) {
    return v.is_null() ? std::string("-") : fmt::format("{:.4f}", v.get<double>());
  };
  for (const auto& [k, row] : d.items()) {
    fmt::print("{:<32} {:>12} {:>12} {:>12}\n", k, cell(row["a"]), cell(row["b"]),
               row["delta"].is_null() ? std::string("-") : fmt::format("{:+.4f}", row["delta"].get<double>()));
  }
  if (!f.out.empty()) {
    janus::write_file_atomic(f.out, json({{"a", f.a}, {"b", f.b}, {"deltas", d}}).dump(2) + "\n");
  }
  return 0;
}

// Place for the model-driven evaluation (`--task ... --run DIR|--config --weights --data ...`), to be added with
// the model and data areas. It must call the same janus::eval functions as `score`.
void add_model_eval(CLI::App& /*app*/) {}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"janus_eval: score prediction files (score ...), compare results (compare a b)"};
  janus::cli::Common common;
  janus::cli::add_common(app, common);
  app.require_subcommand(1);
  ScoreFlags score_flags;
  CompareFlags compare_flags;
  add_score(app, score_flags);
  add_compare(app, compare_flags);
  add_model_eval(app);
  return janus::cli::run(app, argc, argv, common, [&]() -> int {
    if (*app.get_subcommand("score")) return run_score(app, score_flags);
    if (*app.get_subcommand("compare")) return run_compare(compare_flags);
    throw janus::InputError("no subcommand given");
  });
}
