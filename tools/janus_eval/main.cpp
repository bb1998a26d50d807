// janus_eval: evaluation front end.
//   janus_eval score caption|vqa|nlvr2|retrieval ...   model-free scoring of prediction files (this file)
//   janus_eval compare a.json b.json                   metric deltas between two results files
//   janus_eval --task T --run DIR --data PATH ...     model-driven evaluation (janus::eval::evaluate, model_eval.h)
#include <algorithm>
#include <chrono>
#include <ctime>
#include <fstream>
#include <sstream>

#include "cli.h"
#include "janus/core/fs.h"
#include "janus/core/json_file.h"
#include "janus/eval/model_eval.h"
#include "janus/eval/score.h"
#include "janus/io/module_io.h"
#include "janus/io/safetensors.h"
#include "janus/model/model_io.h"
#include "janus/model/run.h"

namespace {

using janus::read_json_file;
using nlohmann::json;

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
    } catch (const json::exception& e) {  // parse_error, and out_of_range for numbers like 1e99999
      if (bad++ == 0) first_bad = fmt::format("line {}: {}", n, e.what());
    }
  }
  if (bad) throw janus::InputError(fmt::format("{}: {} line(s) are not valid JSON (first: {})", path, bad, first_bad));
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
    json r = janus::eval::score_caption(read_json_file(f.annotations, "caption annotations"),
                                        read_json_file(f.results, "caption results"), opt,
                                        f.dump_tokens.empty() ? nullptr : &tokens);
    if (!f.dump_tokens.empty()) janus::write_file_atomic(f.dump_tokens, tokens.dump() + "\n");
    finish(std::move(r), {{"annotations", f.annotations}, {"results", f.results}}, f.out);
  } else if (*score->get_subcommand("vqa")) {
    json r = janus::eval::score_vqa(read_json_file(f.questions, "VQA questions"),
                                    read_json_file(f.annotations, "VQA annotations"),
                                    read_json_file(f.results, "VQA results"), opt);
    finish(std::move(r), {{"questions", f.questions}, {"annotations", f.annotations}, {"results", f.results}}, f.out);
  } else if (*score->get_subcommand("nlvr2")) {
    json r = janus::eval::score_nlvr2(load_jsonl(f.data), read_json_file(f.results, "NLVR2 results"), opt);
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
    json r = janus::eval::score_retrieval(sim, read_json_file(f.gt, "retrieval ground truth"));
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
  const json a = read_json_file(f.a, "results file"), b = read_json_file(f.b, "results file");
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

struct EvalFlags {
  std::string run, config, weights = "auto", tokenizer, answers, task, data, out, device = "cpu";
  janus::eval::EvalOptions opt;
};

void add_model_eval(CLI::App& app, EvalFlags& f) {
  auto& o = f.opt;
  const std::string g = "Model evaluation (no subcommand)";
  app.add_option("--task", f.task, "retrieval, caption, vqa, nlvr2, classify, generate, recon, or all")->group(g);
  app.add_option("--run", f.run, "run directory (config.yaml, model.json, tokenizer.model, final/ or checkpoints/)")
      ->group(g);
  app.add_option("--config", f.config, "config YAML (with --weights) instead of --run")->group(g);
  app.add_option("--weights", f.weights,
                 "with --run: auto|final|ema|latest|FILE|CHECKPOINT_DIR; with --config: the .safetensors file")
      ->group(g);
  app.add_option("--tokenizer", f.tokenizer, "with --config: tokenizer.model (default: the config's data.tokenizer)")
      ->group(g);
  app.add_option("--answers", f.answers, "with --config: answers.json of the VQA head")->group(g);
  app.add_option("--data", f.data, "Shapes directory, or the task's file in the real layout (docs/eval.md)")->group(g);
  app.add_option("--split", o.split, "split of a Shapes directory / sub-folder of an image folder")
      ->capture_default_str()
      ->group(g);
  app.add_option("--limit", o.limit, "at most N images/questions/statements/prompts (0 = all)")->group(g);
  app.add_option("--batch-size", o.batch_size, "evaluation batch size")->capture_default_str()->group(g);
  app.add_option("--out", f.out, "write the JSON results here")->group(g);
  app.add_option("--out-dir", o.out_dir, "write image sheets, generated images and prediction files here")->group(g);
  app.add_option("--device", f.device, "cpu, cuda, cuda:N")->capture_default_str()->group(g);
  app.add_option("--image-root", o.image_root, "root of the images (default: from the data layout)")->group(g);
  app.add_option("--rerank", o.rerank, "retrieval: re-rank each query's top K (0 = off) by --rerank-by")->group(g);
  app.add_option("--rerank-by", o.rerank_by,
                 "retrieval: itm (the ITM head's match probability) or caption (log p(text | image) under the "
                 "caption decoder)")
      ->check(CLI::IsMember({"itm", "caption"}))
      ->capture_default_str()
      ->group(g);
  app.add_option("--rerank-contrastive-weight", o.rerank_contrastive_weight,
                 "retrieval: a candidate's score is the re-rank score + this x its cosine similarity")
      ->capture_default_str()
      ->group(g);
  app.add_option("--beam", o.beam, "caption: beam size (1 = greedy)")->capture_default_str()->group(g);
  app.add_option("--length-penalty", o.length_penalty, "caption: beam score = sum log p / length^this")
      ->capture_default_str()
      ->group(g);
  app.add_option("--max-len", o.max_caption_len, "caption: max tokens incl. bos")->capture_default_str()->group(g);
  app.add_option("--vqa-mode", o.vqa_mode, "vqa: head, generate or auto")->capture_default_str()->group(g);
  app.add_option("--prompt-template", o.prompt_template, "classify: zero-shot prompt")->capture_default_str()->group(g);
  app.add_option("--temperature", o.temperature, "generate: sampling temperature (0 = greedy)")
      ->capture_default_str()
      ->group(g);
  app.add_option("--top-k", o.top_k, "generate: top-k sampling (0 = off)")->group(g);
  app.add_option("--top-p", o.top_p, "generate: nucleus sampling (1 = off)")->group(g);
  app.add_flag("--cfg", o.cfg, "generate: classifier-free guidance")->group(g);
  app.add_option("--cfg-scale", o.cfg_scale, "generate: guidance scale")->capture_default_str()->group(g);
  app.add_option("--seed", o.seed, "generate: sampling seed")->capture_default_str()->group(g);
  app.add_option("--gen-candidates", o.gen_candidates,
                 "generate: samples per prompt; > 1 keeps the one the model scores highest against its prompt "
                 "(best of N, by --gen-rerank-by)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str()
      ->group(g);
  app.add_option("--gen-rerank-by", o.gen_rerank_by,
                 "generate: best-of-N score: contrastive (cosine), caption (log p(prompt | image)), itm, or vqa "
                 "(Shapes prompts: the VQA head's log p of the answers the prompt implies)")
      ->check(CLI::IsMember({"contrastive", "caption", "itm", "vqa"}))
      ->capture_default_str()
      ->group(g);
  app.add_option("--gen-rerank-contrastive-weight", o.gen_rerank_contrastive_weight,
                 "generate: a candidate's score is the caption/itm/vqa score + this x its cosine similarity")
      ->capture_default_str()
      ->group(g);
  app.add_option("--inception", f.opt.inception,
                 "generate: Inception-v3 weights (torchvision layout, safetensors) -> FID and IS")
      ->group(g);
}

// The run (or --config + --weights) as an EvalModel; `keep` owns what the EvalModel points to.
janus::eval::EvalModel load_eval_model(EvalFlags& f, janus::RunArtifacts& keep) {
  const c10::Device device(f.device);
  if (!f.run.empty()) {
    if (!f.config.empty()) throw janus::InputError("give either --run or --config, not both");
    keep = janus::load_run(f.run, {f.weights, device});
    f.opt.mean = keep.config.data.mean;
    f.opt.std = keep.config.data.std;
    f.opt.max_text_len = keep.config.model.max_text_len;
    return janus::eval::eval_model(keep);
  }
  if (f.config.empty()) throw janus::InputError("model evaluation needs --run DIR or --config C --weights W");
  if (f.weights.empty() || f.weights == "auto") throw janus::InputError("--config needs --weights FILE");
  keep.config = janus::Config::load(f.config);
  const std::string tok = f.tokenizer.empty() ? keep.config.data.tokenizer : f.tokenizer;
  if (tok.empty()) throw janus::InputError("--config: no tokenizer (data.tokenizer or --tokenizer)");
  keep.tokenizer = std::make_shared<const janus::Tokenizer>(janus::Tokenizer::load(tok));
  keep.model = janus::JanusModel(janus::model_options(keep.config.model, keep.tokenizer->vocab_size()));
  janus::load_module(*keep.model, f.weights);
  keep.model->to(device);
  keep.model->eval();
  keep.weights = f.weights;
  if (!f.answers.empty()) {
    const json answers = read_json_file(f.answers, "answer vocabulary");
    if (!answers.is_array() ||
        !std::all_of(answers.begin(), answers.end(), [](const json& a) { return a.is_string(); }))
      throw janus::InputError(fmt::format("{}: answer vocabulary must be a JSON list of strings", f.answers));
    keep.answers = answers.get<std::vector<std::string>>();
  }
  f.opt.mean = keep.config.data.mean;
  f.opt.std = keep.config.data.std;
  f.opt.max_text_len = keep.config.model.max_text_len;
  auto m = janus::eval::eval_model(keep);
  m.config_hash = janus::eval::model_config_hash(keep.model->options, janus::read_file(f.config));
  return m;
}

void print_result(const json& r) {
  fmt::print("{} ({} samples, {:.1f} s, {:.1f}/s)\n", r["task"].get<std::string>(), r["counts"].value("samples", 0),
             r.value("seconds", 0.0), r.value("samples_per_second", 0.0));
  print_metrics(r["metrics"]);
  if (r.contains("notes")) {
    for (const auto& n : r["notes"]) fmt::print("  note: {}\n", n.get<std::string>());
  }
}

int run_model_eval(EvalFlags& f) {
  if (f.task.empty()) throw janus::InputError("no subcommand and no --task given (see --help)");
  if (f.data.empty()) throw janus::InputError("--task needs --data PATH");
  if (f.opt.limit < 0) throw janus::InputError(fmt::format("--limit must be >= 0, got {}", f.opt.limit));
  if (f.opt.batch_size < 1) throw janus::InputError(fmt::format("--batch-size must be >= 1, got {}", f.opt.batch_size));
  if (f.opt.beam < 1) throw janus::InputError(fmt::format("--beam must be >= 1, got {}", f.opt.beam));
  std::vector<std::string> tasks;
  if (f.task == "all") {
    tasks = janus::eval::supported_tasks(f.data, f.opt.split);
    if (tasks.empty()) {
      throw janus::InputError(
          fmt::format("--data '{}' fits no task (split '{}'; see docs/eval.md)", f.data, f.opt.split));
    }
  } else {
    janus::eval::resolve_task_data(f.task, f.data, f.opt.split);  // bad layout -> exit 2 before loading the model
    tasks = {f.task};
  }
  janus::RunArtifacts keep;
  const auto model = load_eval_model(f, keep);
  json all = {{"task", "all"}, {"metrics", json::object()}, {"results", json::object()}};
  json single;
  for (const auto& t : tasks) {
    spdlog::info("evaluating {} on {}", t, f.data);
    json r = janus::eval::evaluate(model, t, f.data, f.opt);
    r["timestamp"] = utc_timestamp();
    r["tool"] = "janus_eval";
    print_result(r);
    all["metrics"][t] = r["metrics"];
    all["results"][t] = r;
    single = std::move(r);
  }
  json out = tasks.size() == 1 && f.task != "all" ? single : all;
  if (f.task == "all") {
    out["model"] = all["results"][tasks.front()]["model"];
    out["inputs"] = {{"data", f.data}, {"split", f.opt.split}};
    out["counts"] = json::object();
    for (const auto& t : tasks) out["counts"][t] = all["results"][t]["counts"].value("samples", 0);
    out["timestamp"] = utc_timestamp();
    out["tool"] = "janus_eval";
  }
  if (!f.out.empty()) {
    janus::write_file_atomic(f.out, out.dump(2) + "\n");
    spdlog::info("wrote {}", f.out);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "janus_eval: evaluate a model (--task T --run DIR --data PATH), score prediction files (score ...), compare "
      "results (compare a b)"};
  janus::cli::Common common;
  janus::cli::add_common(app, common);
  app.require_subcommand(0, 1);
  ScoreFlags score_flags;
  CompareFlags compare_flags;
  add_score(app, score_flags);
  add_compare(app, compare_flags);
  EvalFlags eval_flags;
  add_model_eval(app, eval_flags);
  return janus::cli::run(app, argc, argv, common, [&]() -> int {
    if (*app.get_subcommand("score")) return run_score(app, score_flags);
    if (*app.get_subcommand("compare")) return run_compare(compare_flags);
    return run_model_eval(eval_flags);
  });
}
