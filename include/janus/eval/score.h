#pragma once
// Model-free scoring of prediction files in the standard result formats (`janus_eval score ...`). Each function
// validates its inputs (collecting every problem with counts, then throwing one InputError), calls the metric
// functions of caption_metrics.h / vqa.h / metrics.h, and returns the JSON results object:
//   {"task", "metrics": {...}, "counts": {...}, optional "per_image"/"per_question"}.
// The tool adds "inputs" (paths) and "timestamp"; the model-driven eval path builds the same objects.
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

namespace janus::eval {

struct ScoreOptions {
  bool allow_partial = false;  // score only the annotated ids present in the results instead of failing
  bool per_item = false;       // add per-image / per-question scores
};

// COCO captions: annotations {"annotations": [{"image_id", "caption"}, ...]} (captions_val2014.json layout),
// results [{"image_id", "caption"}, ...]. Both sides go through ptb_like_tokenize. Metric keys follow
// pycocoevalcap's COCOEvalCap: Bleu_1..Bleu_4, CIDEr, ROUGE_L. If `tokens` is given it receives
// {"gts": {id: [tokenised refs]}, "res": {id: [tokenised candidate]}} for re-scoring with pycocoevalcap.
nlohmann::json score_caption(const nlohmann::json& annotations, const nlohmann::json& results, const ScoreOptions& opt,
                             nlohmann::json* tokens = nullptr);

// VQA v2: questions {"questions": [...]}, annotations {"annotations": [{"question_id", "answer_type",
// "question_type", "answers": [{"answer"}, ...]}]}, results [{"question_id", "answer"}, ...].
nlohmann::json score_vqa(const nlohmann::json& questions, const nlohmann::json& annotations,
                         const nlohmann::json& results, const ScoreOptions& opt);

// NLVR2: data = the parsed lines of a jsonl file ({"identifier", "label": "True"/"False"}), results
// [{"identifier", "prediction": "True"/"False"}].
nlohmann::json score_nlvr2(const std::vector<nlohmann::json>& data, const nlohmann::json& results,
                           const ScoreOptions& opt);

// Retrieval: sim [N_img, N_txt]; gt {"txt2img": [image index of each text]} or {"img2txt": [[text indices]]}.
nlohmann::json score_retrieval(const at::Tensor& sim, const nlohmann::json& gt);

// Differences of every numeric leaf under "metrics" in two results objects: {"key": {"a", "b", "delta"}},
// keys flattened with '/'. Keys present in only one side get a null on the other.
nlohmann::json compare_results(const nlohmann::json& a, const nlohmann::json& b);

}  // namespace janus::eval
