#pragma once
// VQA v2 accuracy exactly as the official evaluator (GT-Vision-Lab/VQA PythonEvaluationTools/vqaEval.py).
#include <map>
#include <string>
#include <vector>

namespace janus::eval {

// vqaEval.processPunctuation: each punctuation mark in the official list is deleted when it touches a space
// (or the answer contains digit,digit), otherwise replaced by a space; then periods not followed by a digit
// are removed (at most 32 of them: the official code passes re.UNICODE as re.sub's `count`).
std::string vqa_process_punctuation(const std::string& text);
// vqaEval.processDigitArticle: lower-case, split on whitespace, number words (none, zero..ten) -> digits,
// drop a/an/the, apply the contractions map, join with single spaces.
std::string vqa_process_digit_article(const std::string& text);
// The full answer normalisation applied to predictions: newline/tab -> space, strip, punctuation, digits/articles.
std::string vqa_normalize_answer(const std::string& answer);

// Accuracy in [0, 1] of one prediction against the ground-truth answers (normally 10): the mean over the
// leave-one-out subsets of min(1, matches / 3). GT answers get processPunctuation only, and only when they are
// not all identical (the official code path). The prediction is normalised here.
double vqa_question_accuracy(const std::string& prediction, const std::vector<std::string>& gt_answers);

struct VqaItem {
  std::string prediction;
  std::vector<std::string> gt_answers;
  std::string answer_type;    // "yes/no", "number", "other"
  std::string question_type;  // e.g. "what color is the"
};
struct VqaResult {
  double overall = 0.0;                           // x100, unrounded (the official prints round(x, 2))
  std::map<std::string, double> per_answer_type;  // x100
  std::map<std::string, double> per_question_type;
  std::map<std::string, long> answer_type_counts;
  std::vector<double> per_question;  // x100, same order as the input
};
VqaResult vqa_accuracy(const std::vector<VqaItem>& items);

}  // namespace janus::eval
