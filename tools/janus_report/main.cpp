// janus_report: a Markdown report of training runs and their evaluation (what tools/quickstart.sh writes to
// runs/quickstart/report.md): the metrics table against targets, loss curves as PNG per stage, and the sample
// sheets janus_eval wrote.
//
//   janus_report --out runs/quickstart/report.md --stage "stage 1=runs/quickstart/stage1" ...
//                --eval runs/quickstart/eval.json [--sheets runs/quickstart/eval] [--timings timings.json]
//                [--targets quickstart|none]
#include <cmath>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "janus/core/fs.h"
#include "janus/core/json_file.h"
#include "janus/eval/report.h"

namespace fs = std::filesystem;
namespace je = janus::eval;

namespace {

// Training-loss keys worth a curve: everything the trainer logs except bookkeeping.
bool is_loss_key(const std::string& k) {
  static const std::vector<std::string> skip = {"lr", "grad_norm", "samples_per_s", "time", "nonfinite_steps",
                                                "loss_scale", "epoch"};
  if (std::find(skip.begin(), skip.end(), k) != skip.end()) return false;
  if (k.rfind("val/", 0) == 0 || k.rfind("lr", 0) == 0) return false;
  if (k.find("weight") != std::string::npos || k.find("scale") != std::string::npos) return false;
  // Accuracies, codebook perplexity and GradNorm task weights (w_<task>) are not losses.
  if (k.rfind("w_", 0) == 0 || k.find("perplexity") != std::string::npos) return false;
  if (k.size() > 4 && k.compare(k.size() - 4, 4, "_acc") == 0) return false;
  return true;
}

// Relative path from the report's directory (Markdown links/images).
std::string rel(const fs::path& target, const fs::path& report_dir) {
  return fs::relative(fs::absolute(target), fs::absolute(report_dir)).generic_string();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"janus_report: Markdown report (metrics vs targets, loss curves, sample sheets) of training runs"};
  janus::cli::Common common;
  janus::cli::add_common(app, common);
  std::string out, eval_path, sheets, timings_path, targets = "quickstart", title = "libjanus report";
  std::vector<std::string> stages;
  app.add_option("--out", out, "report.md to write (PNG curves go beside it)")->required();
  app.add_option("--stage", stages, "\"name=RUN_DIR\" (repeatable, in training order)");
  app.add_option("--eval", eval_path, "janus_eval --task all results JSON");
  app.add_option("--sheets", sheets, "janus_eval --out-dir (generate_sheet.png, recon_sheet.png)");
  app.add_option("--timings", timings_path, "JSON {\"step name\": seconds} of the pipeline's wall times");
  app.add_option("--targets", targets, "target set to check")->check(CLI::IsMember({"quickstart", "none"}));
  app.add_option("--title", title, "report title");

  return janus::cli::run(app, argc, argv, common, [&]() -> int {
    const fs::path report_dir = fs::path(out).parent_path().empty() ? fs::path(".") : fs::path(out).parent_path();
    fs::create_directories(report_dir);
    std::string md = fmt::format("# {}\n\n", title);

    // ---- metrics vs targets ----
    nlohmann::json ev;
    if (!eval_path.empty()) {
      ev = janus::read_json_file(eval_path, "eval results");
      const auto& m = ev.contains("metrics") ? ev["metrics"] : ev;
      const auto num = [&](const std::string& p) { return je::json_number(m, p); };
      md += "## Held-out metrics\n\n";
      if (ev.contains("model")) {
        md += fmt::format("Model: `{}` flavour, {} parameters, weights `{}`. Data: `{}` split `{}`.\n\n",
                          ev["model"].value("flavour", "?"), ev["model"].value("parameters", 0),
                          ev["model"].value("weights", "?"),
                          ev.contains("inputs") ? ev["inputs"].value("data", ev["inputs"].dump()) : "?",
                          ev.contains("split")    ? ev.value("split", "?")
                          : ev.contains("inputs") ? ev["inputs"].value("split", "?")
                                                  : "?");
      }
      std::vector<je::Target> t;
      // Recalls and accuracies are x100 in janus_eval's output; retrieval counts a retrieved caption whose text is
      // identical to a ground-truth caption as a hit (Shapes captions are templated, issue 12).
      const auto rec = [&](const std::string& k) {
        const double v = num("retrieval.identical_text_counts." + k);
        return std::isfinite(v) ? v : num("retrieval." + k);
      };
      // --task all nests each task's full result under results.<task>; a --task retrieval file has it at the top.
      const nlohmann::json* retrieval = je::json_find(ev, "results.retrieval");
      if (!retrieval && ev.value("task", "") == "retrieval") retrieval = &ev;
      const nlohmann::json* rerank = retrieval ? je::json_find(*retrieval, "options.rerank") : nullptr;
      const nlohmann::json* rerank_by = retrieval ? je::json_find(*retrieval, "options.rerank_by") : nullptr;
      const std::string how =
          rerank ? fmt::format(", top {} re-ranked by {}", rerank->dump(),
                               rerank_by && rerank_by->is_string() ? rerank_by->get<std::string>() : std::string("itm"))
                 : std::string();
      t.push_back({"retrieval image->text R@1 (%)" + how, rec("txt_r1"), 95});
      t.push_back({"retrieval text->image R@1 (%)" + how, rec("img_r1"), 95});
      t.push_back({"VQA accuracy (%)", num("vqa.overall"), 85});
      t.push_back({"NLVR2 accuracy (%)", num("nlvr2.accuracy"), 80});
      t.push_back({"caption CIDEr-D", num("caption.CIDEr"), 1.0});
      t.push_back({"tokenizer PSNR (dB)", num("recon.psnr"), 28});
      const nlohmann::json* generate = je::json_find(ev, "results.generate");
      if (!generate && ev.value("task", "") == "generate") generate = &ev;
      const nlohmann::json* candidates = generate ? je::json_find(*generate, "options.gen_candidates") : nullptr;
      const nlohmann::json* gen_by = generate ? je::json_find(*generate, "options.gen_rerank_by") : nullptr;
      const bool best_of = candidates && candidates->is_number_integer() && candidates->get<int64_t>() > 1;
      t.push_back({"Shapes-GenEval (binary correct)" +
                       (best_of ? fmt::format(", best of {} samples by the model's {} score", candidates->dump(),
                                              gen_by && gen_by->is_string() ? gen_by->get<std::string>() : "?")
                                : std::string()),
                   num("generate.geneval.correct"), 0.6});
      if (targets == "quickstart") {
        md += je::targets_table(t);
      } else {
        md += "| metric | value |\n|---|---|\n";
        for (const auto& x : t) md += fmt::format("| {} | {} |\n", x.name, je::format_metric(x.value));
      }
      md += "\nMore detail:\n\n| metric | value |\n|---|---|\n";
      if (rerank) {
        for (const auto& [name, key] :
             std::vector<std::pair<std::string, std::string>>{{"image->text", "txt_r1"}, {"text->image", "img_r1"}}) {
          md += fmt::format(
              "| retrieval {} R@1 of the contrastive embeddings alone, before re-ranking (%) | {} |\n", name,
              je::format_metric(je::json_number(*retrieval, "metrics_contrastive.identical_text_counts." + key)));
        }
      }
      if (je::json_find(m, "retrieval.identical_text_counts.ceiling")) {
        md += fmt::format(
            "| retrieval R@1 ceiling image->text / text->image (%): the best any model can expect, since the "
            "captions' object order and size mentions are not visible in the image (docs/eval.md) | {} / {} |\n",
            je::format_metric(num("retrieval.identical_text_counts.ceiling.txt_r1")),
            je::format_metric(num("retrieval.identical_text_counts.ceiling.img_r1")));
      }
      if (best_of) {
        md += fmt::format("| Shapes-GenEval of each prompt's first sample, without best-of-N (binary) | {} |\n",
                          je::format_metric(num("generate.geneval_first_sample.correct")));
        md += fmt::format(
            "| Shapes-GenEval if a perfect scorer picked among the samples (any candidate correct, binary) | {} |\n",
            je::format_metric(num("generate.geneval_any_candidate.correct")));
      }
      for (const auto& [name, path] : std::vector<std::pair<std::string, std::string>>{
               {"retrieval image->text R@5 (%)", "retrieval.identical_text_counts.txt_r5"},
               {"retrieval text->image R@5 (%)", "retrieval.identical_text_counts.img_r5"},
               {"retrieval image->text R@1, strict per-image (%)", "retrieval.txt_r1"},
               {"retrieval text->image R@1, strict per-image (%)", "retrieval.img_r1"},
               {"caption BLEU-4", "caption.Bleu_4"},
               {"caption exact match (%)", "caption.exact_match"},
               {"caption position: one-object region captions with the right thirds (%)",
                "caption.position.region.correct"},
               {"caption position: relation captions with the right relation (%; the direction at chance is half "
                "the right-axis share below)",
                "caption.position.relation.correct"},
               {"caption position: relation captions with the right axis, left/right vs above/below (%)",
                "caption.position.relation.axis"},
               {"VQA yes/no (%)", "vqa.perAnswerType.yes/no"},
               {"VQA number (%)", "vqa.perAnswerType.number"},
               {"VQA other (%)", "vqa.perAnswerType.other"},
               {"tokenizer SSIM", "recon.ssim"},
               {"Shapes-GenEval overall (mean of parts)", "generate.geneval.overall"},
               {"Shapes-GenEval colour", "generate.geneval.colour"},
               {"Shapes-GenEval shape", "generate.geneval.shape"},
               {"Shapes-GenEval count", "generate.geneval.count"},
               {"Shapes-GenEval position", "generate.geneval.position"},
               {"Shapes-GenEval of the tokenizer's reconstructions of the references (ceiling, binary)",
                "generate.geneval_tokenizer_ceiling.correct"},
               {"Shapes-GenEval of the reference images themselves (the checker's ceiling, binary)",
                "generate.geneval_reference.correct"}}) {
        const double v = num(path);
        md += fmt::format("| {} | {} |\n", name, je::format_metric(v));
      }
      // VQA by question type (the VQA evaluation API's perQuestionType; Shapes: "how many", "what shape is the",
      // "what color is the", "is there a", "is the" = relative position).
      if (const auto* per_type = je::json_find(m, "vqa.perQuestionType"); per_type && per_type->is_object()) {
        for (const auto& [k, v] : per_type->items()) {
          if (v.is_number())
            md += fmt::format("| VQA \"{}\" questions (%) | {} |\n", k, je::format_metric(v.get<double>()));
        }
      }
      // NLVR2 by Shapes statement template, beside what always answering the template's more frequent label scores.
      const auto* by_statement = je::json_find(m, "nlvr2.by_statement");
      const auto* majority = je::json_find(m, "nlvr2.by_statement_majority");
      if (by_statement && by_statement->is_object()) {
        for (const auto& [k, v] : by_statement->items()) {
          if (!v.is_number()) continue;
          const auto* base = majority && majority->is_object() && majority->contains(k) ? &(*majority)[k] : nullptr;
          md += fmt::format("| NLVR2 \"{}\" statements (%; always the frequent label: {}) | {} |\n", k,
                            base && base->is_number() ? je::format_metric(base->get<double>()) : std::string("?"),
                            je::format_metric(v.get<double>()));
        }
      }
      md += "\n";
      // Retrieval misses at rank 1 (janus_eval --task retrieval lists the first 8 per direction).
      const nlohmann::json* misses = retrieval ? je::json_find(*retrieval, "misses") : nullptr;
      const auto str = [](const nlohmann::json& j, const char* k) {
        if (!j.is_object() || !j.contains(k)) return std::string("?");
        const auto& v = j[k];
        if (v.is_string()) return v.get<std::string>();
        if (v.is_array()) {
          std::string r;
          for (const auto& x : v) r += (r.empty() ? "" : "; ") + (x.is_string() ? x.get<std::string>() : x.dump());
          return r;
        }
        return v.dump();
      };
      if (misses != nullptr && misses->is_object()) {
        const auto& i2t = misses->value("image_to_text", nlohmann::json::array());
        const auto& t2i = misses->value("text_to_image", nlohmann::json::array());
        if (!i2t.empty() || !t2i.empty()) md += "### Retrieval misses at rank 1 (first 8 per direction)\n\n";
        if (!i2t.empty()) {
          md += "| image | retrieved caption | the image's captions |\n|---|---|---|\n";
          for (const auto& x : i2t)
            md += fmt::format("| {} | {} | {} |\n", str(x, "image_id"), str(x, "retrieved"), str(x, "references"));
          md += "\n";
        }
        if (!t2i.empty()) {
          md += "| caption | its image | retrieved image | the retrieved image's captions |\n|---|---|---|---|\n";
          for (const auto& x : t2i)
            md += fmt::format("| {} | {} | {} | {} |\n", str(x, "query"), str(x, "image_id"),
                              str(x, "retrieved_image_id"), str(x, "retrieved_image_captions"));
          md += "\n";
        }
      }
    }

    // ---- wall times ----
    if (!timings_path.empty() && fs::exists(timings_path)) {
      const auto tj = janus::read_json_file(timings_path, "timings file");
      md += "## Wall time\n\n| step | seconds |\n|---|---|\n";
      double total = 0;
      for (const auto& [k, v] : tj.items()) {
        if (!v.is_number()) continue;
        md += fmt::format("| {} | {:.0f} |\n", k, v.get<double>());
        if (k != "total") total += v.get<double>();
      }
      const double wall = tj.contains("total") && tj["total"].is_number() ? tj["total"].get<double>() : total;
      md += fmt::format("\nTotal {:.1f} minutes (target <= 20 minutes after dependencies are cached): {}.\n\n",
                        wall / 60.0, wall <= 20 * 60 ? "met" : "**missed**");
    }

    // ---- loss curves ----
    if (!stages.empty()) md += "## Training\n\n";
    for (const auto& s : stages) {
      const auto eq = s.find('=');
      if (eq == std::string::npos || eq == 0) janus::throw_input_error("--stage '{}': expected name=RUN_DIR", s);
      const std::string name = s.substr(0, eq), dir = s.substr(eq + 1);
      const auto metrics_file = fs::path(dir) / "metrics.jsonl";
      if (!fs::exists(metrics_file)) {
        md += fmt::format("### {}\n\nNo metrics.jsonl in `{}` (not trained yet).\n\n", name, dir);
        continue;
      }
      const auto series = je::read_metrics_jsonl(metrics_file.string());
      std::vector<je::Series> losses;
      std::string firstlast = "| loss | first | last |\n|---|---|---|\n";
      for (const auto& [k, ser] : series) {
        if (!is_loss_key(k) || ser.points.empty()) continue;
        losses.push_back(ser);
        firstlast += fmt::format("| {} | {:.4g} (step {:.0f}) | {:.4g} (step {:.0f}) |\n", k, ser.points.front().second,
                                 ser.points.front().first, ser.points.back().second, ser.points.back().first);
      }
      std::string file_stem = name;
      for (auto& c : file_stem) {
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
      }
      md += fmt::format("### {}\n\nRun `{}`.\n\n", name, dir);
      if (!losses.empty()) {
        const auto png = report_dir / fmt::format("loss_{}.png", file_stem);
        je::PlotOptions po;
        po.title = name + ": training losses";
        // Losses span orders of magnitude (and some go negative: adversarial terms) — log scale when all positive.
        bool positive = true;
        for (const auto& l : losses) {
          for (const auto& p : l.points) positive = positive && p.second > 0;
        }
        po.log_y = positive;
        je::plot_series_png(losses, png.string(), po);
        md += fmt::format("![{} losses]({})\n\n", name, rel(png, report_dir));
      }
      md += firstlast + "\n";
    }

    // ---- sheets ----
    if (!sheets.empty()) {
      md += "## Samples\n\n";
      const auto gen = fs::path(sheets) / "generate_sheet.png";
      const auto rec = fs::path(sheets) / "recon_sheet.png";
      if (fs::exists(gen)) {
        md += fmt::format("Generated images for fixed validation prompts (each beside the reference scene of its "
                          "prompt; prompts are written on the sheet):\n\n![generated]({})\n\n",
                          rel(gen, report_dir));
      }
      if (fs::exists(rec)) {
        md += fmt::format("Tokenizer reconstructions beside the originals:\n\n![reconstructions]({})\n\n",
                          rel(rec, report_dir));
      }
    }
    janus::write_file_atomic(out, md);
    spdlog::info("report written: {}", out);
    return 0;
  });
}
