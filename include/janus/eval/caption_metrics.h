#pragma once
// Caption metrics equal to PyPI pycocoevalcap 1.2 (Bleu(4), Cider, Rouge) on the same tokenised inputs, and a
// Java-free tokenizer standing in for pycocoevalcap's PTBTokenizer (see docs/eval.md for its exact rules).
//
// Inputs are parallel vectors: candidates[i] is the one candidate for image i, references[i] its references
// (at least one). All strings are already tokenised (tokens separated by spaces), exactly as pycocoevalcap's
// scorers expect after PTBTokenizer.
#include <array>
#include <string>
#include <vector>

namespace janus::eval {

// Lower-cases, splits punctuation and clitics off words the way Stanford's PTBTokenizer does for ordinary
// captions, then drops the tokens pycocoevalcap removes (. , ? ! : ; - -- ... quotes brackets). Returns the
// tokens joined by single spaces. Documented approximation: see docs/eval.md "Tokenisation".
std::string ptb_like_tokenize(const std::string& caption);

struct BleuScores {
  std::array<double, 4> corpus{};                // BLEU-1..4 over the whole set ("closest" reference length)
  std::vector<std::array<double, 4>> per_image;  // pycocoevalcap's per-sentence BLEU-1..4
};
BleuScores bleu(const std::vector<std::string>& candidates, const std::vector<std::vector<std::string>>& references);

struct CorpusScore {
  double corpus = 0.0;  // mean of per_image
  std::vector<double> per_image;
};
// CIDEr-D as pycocoevalcap's Cider: n = 1..4, sigma = 6, idf from the references of this set, x10.
CorpusScore cider_d(const std::vector<std::string>& candidates, const std::vector<std::vector<std::string>>& references,
                    double sigma = 6.0);
// ROUGE-L as pycocoevalcap's Rouge (beta = 1.2, max precision/recall over references).
CorpusScore rouge_l(const std::vector<std::string>& candidates, const std::vector<std::vector<std::string>>& references,
                    double beta = 1.2);

struct CaptionScores {
  BleuScores bleu;
  CorpusScore cider;
  CorpusScore rouge;
};
// All three on the same tokenised inputs. Throws InputError when sizes differ or an image has no references.
CaptionScores caption_scores(const std::vector<std::string>& candidates,
                             const std::vector<std::vector<std::string>>& references);

}  // namespace janus::eval
