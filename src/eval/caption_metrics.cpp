// Ports of pycocoevalcap 1.2 bleu_scorer.py, cider_scorer.py and rouge.py. Quirks kept on purpose (they are
// what the official numbers contain): CIDEr's "length" counts bigrams, ROUGE splits on single spaces.
#include "janus/eval/caption_metrics.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include "janus/core/error.h"
#include "janus/eval/text.h"

namespace janus::eval {
namespace {

constexpr int kN = 4;

// n-gram counts, one map per order (key: the n words joined by single spaces).
using NgramCounts = std::array<std::unordered_map<std::string, int>, kN>;

NgramCounts precook(const std::string& s, int& length) {
  const auto words = split_whitespace(s);
  length = static_cast<int>(words.size());
  NgramCounts counts;
  for (int k = 1; k <= kN; ++k) {
    for (int i = 0; i + k <= length; ++i) {
      std::string g = words[i];
      for (int j = 1; j < k; ++j) g += ' ' + words[i + j];
      ++counts[k - 1][g];
    }
  }
  return counts;
}

void check_sizes(const std::vector<std::string>& c, const std::vector<std::vector<std::string>>& r) {
  if (c.size() != r.size()) {
    throw_input_error("caption metrics: {} candidates but {} reference lists", c.size(), r.size());
  }
  for (std::size_t i = 0; i < r.size(); ++i) {
    if (r[i].empty()) throw_input_error("caption metrics: image #{} has no reference captions", i);
  }
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool is_word_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u >= 0x80 || std::isalnum(u);
}

// Splits a PTB clitic off the end of a word: n't 's 're 've 'll 'd 'm.
void push_with_clitics(const std::string& w, std::vector<std::string>& out) {
  if (w.empty()) return;
  if (w.size() > 3 && w.compare(w.size() - 3, 3, "n't") == 0) {
    out.push_back(w.substr(0, w.size() - 3));
    out.emplace_back("n't");
    return;
  }
  static const char* kClitics[] = {"'s", "'re", "'ve", "'ll", "'d", "'m"};
  for (const char* c : kClitics) {
    const std::size_t n = std::char_traits<char>::length(c);
    if (w.size() > n && w.compare(w.size() - n, n, c) == 0) {
      out.push_back(w.substr(0, w.size() - n));
      out.emplace_back(c);
      return;
    }
  }
  out.push_back(w);
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  std::size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
  return s;
}

}  // namespace

std::string ptb_like_tokenize(const std::string& caption) {
  std::string s = utf8_lower(caption);
  // Unicode quotes, dashes and the ellipsis become their ASCII forms, which the rules below handle.
  static const std::pair<const char*, const char*> kMap[] = {{"\u2019", "'"},  {"\u2018", "'"},  {"\u201c", "\""},
                                                             {"\u201d", "\""}, {"\u00ab", "\""}, {"\u00bb", "\""},
                                                             {"\u2013", " "},  {"\u2014", " "},  {"\u2026", " "}};
  for (const auto& [from, to] : kMap) s = replace_all(s, from, to);

  std::vector<std::string> tokens;
  for (const std::string& word : split_whitespace(s)) {
    std::string cur;
    const auto flush = [&] {
      // Quotes at the edges of a piece are quotation marks, not apostrophes.
      std::size_t b = 0, e = cur.size();
      while (b < e && cur[b] == '\'') ++b;
      while (e > b && cur[e - 1] == '\'') --e;
      push_with_clitics(cur.substr(b, e - b), tokens);
      cur.clear();
    };
    for (std::size_t i = 0; i < word.size(); ++i) {
      const char c = word[i];
      const char prev = i > 0 ? word[i - 1] : ' ';
      const char next = i + 1 < word.size() ? word[i + 1] : ' ';
      switch (c) {
        case '?':
        case '!':
        case ';':
        case '"':
        case '(':
        case ')':
        case '[':
        case ']':
        case '{':
        case '}':
        case '`':
          flush();
          break;
        case '.':
        case ',':
        case ':':
          if (is_digit(prev) && is_digit(next)) {
            cur += c;  // 3.5, 1,000, 10:30 stay one token
          } else {
            flush();
          }
          break;
        case '-':
          if (is_word_char(prev) && is_word_char(next)) {
            cur += c;  // black-and-white
          } else {
            flush();
          }
          break;
        case '$':
        case '%':
        case '#':
          flush();
          tokens.emplace_back(1, c);
          break;
        default:
          cur += c;
      }
    }
    flush();
  }
  std::string out;
  for (const auto& t : tokens) {
    if (t.empty()) continue;
    if (!out.empty()) out += ' ';
    out += t;
  }
  return out;
}

BleuScores bleu(const std::vector<std::string>& candidates, const std::vector<std::vector<std::string>>& references) {
  check_sizes(candidates, references);
  constexpr double kSmall = 1e-9, kTiny = 1e-15;
  BleuScores out;
  double total_test = 0, total_ref = 0;
  std::array<double, kN> total_guess{}, total_correct{};
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    // cook_refs: reference lengths and max count of every n-gram over the references.
    std::vector<int> ref_lens;
    std::array<std::unordered_map<std::string, int>, kN> max_counts;
    for (const auto& r : references[i]) {
      int len = 0;
      const auto counts = precook(r, len);
      ref_lens.push_back(len);
      for (int k = 0; k < kN; ++k) {
        for (const auto& [g, c] : counts[k]) max_counts[k][g] = std::max(max_counts[k][g], c);
      }
    }
    int test_len = 0;
    const auto counts = precook(candidates[i], test_len);
    // "closest": min over (|l - testlen|, l), so ties go to the shorter reference.
    int ref_len = ref_lens[0];
    for (int l : ref_lens) {
      const int d = std::abs(l - test_len), best = std::abs(ref_len - test_len);
      if (d < best || (d == best && l < ref_len)) ref_len = l;
    }
    std::array<double, kN> guess{}, correct{};
    for (int k = 0; k < kN; ++k) {
      guess[k] = std::max(0, test_len - k);
      for (const auto& [g, c] : counts[k]) {
        const auto it = max_counts[k].find(g);
        correct[k] += std::min(it == max_counts[k].end() ? 0 : it->second, c);
      }
      total_guess[k] += guess[k];
      total_correct[k] += correct[k];
    }
    total_test += test_len;
    total_ref += ref_len;
    std::array<double, kN> s{};
    double b = 1.0;
    for (int k = 0; k < kN; ++k) {
      b *= (correct[k] + kTiny) / (guess[k] + kSmall);
      s[k] = std::pow(b, 1.0 / (k + 1));
    }
    const double ratio = (test_len + kTiny) / (ref_len + kSmall);
    if (ratio < 1) {
      for (int k = 0; k < kN; ++k) s[k] *= std::exp(1 - 1 / ratio);
    }
    out.per_image.push_back(s);
  }
  double b = 1.0;
  for (int k = 0; k < kN; ++k) {
    b *= (total_correct[k] + kTiny) / (total_guess[k] + kSmall);
    out.corpus[k] = std::pow(b, 1.0 / (k + 1));
  }
  const double ratio = (total_test + kTiny) / (total_ref + kSmall);
  if (ratio < 1) {
    for (int k = 0; k < kN; ++k) out.corpus[k] *= std::exp(1 - 1 / ratio);
  }
  return out;
}

CorpusScore cider_d(const std::vector<std::string>& candidates, const std::vector<std::vector<std::string>>& references,
                    double sigma) {
  check_sizes(candidates, references);
  const std::size_t n_img = candidates.size();
  std::vector<NgramCounts> test(n_img);
  std::vector<std::vector<NgramCounts>> refs(n_img);
  std::unordered_map<std::string, double> df;
  for (std::size_t i = 0; i < n_img; ++i) {
    int len = 0;
    test[i] = precook(candidates[i], len);
    std::unordered_set<std::string> seen;
    for (const auto& r : references[i]) {
      refs[i].push_back(precook(r, len));
      for (const auto& m : refs[i].back()) {
        for (const auto& kv : m) seen.insert(kv.first);
      }
    }
    for (const auto& g : seen) df[g] += 1.0;
  }
  const double ref_len = std::log(static_cast<double>(n_img));

  struct Vec {
    std::array<std::unordered_map<std::string, double>, kN> v;
    std::array<double, kN> norm{};
    int length = 0;  // pycocoevalcap counts bigrams here (its `n == 1` test is on the 0-based order)
  };
  const auto counts2vec = [&](const NgramCounts& c) {
    Vec out;
    for (int k = 0; k < kN; ++k) {
      for (const auto& [g, tf] : c[k]) {
        const auto it = df.find(g);
        const double d = std::log(std::max(1.0, it == df.end() ? 0.0 : it->second));
        const double w = static_cast<double>(tf) * (ref_len - d);
        out.v[k][g] = w;
        out.norm[k] += w * w;
        if (k == 1) out.length += tf;
      }
      out.norm[k] = std::sqrt(out.norm[k]);
    }
    return out;
  };

  CorpusScore out;
  double sum = 0;
  for (std::size_t i = 0; i < n_img; ++i) {
    const Vec h = counts2vec(test[i]);
    std::array<double, kN> score{};
    for (const auto& rc : refs[i]) {
      const Vec r = counts2vec(rc);
      const double delta = static_cast<double>(h.length - r.length);
      for (int k = 0; k < kN; ++k) {
        double val = 0;
        for (const auto& [g, wh] : h.v[k]) {
          const auto it = r.v[k].find(g);
          const double wr = it == r.v[k].end() ? 0.0 : it->second;
          val += std::min(wh, wr) * wr;
        }
        if (h.norm[k] != 0 && r.norm[k] != 0) val /= h.norm[k] * r.norm[k];
        val *= std::pow(M_E, -(delta * delta) / (2 * sigma * sigma));
        score[k] += val;
      }
    }
    double avg = (score[0] + score[1] + score[2] + score[3]) / kN;
    avg /= static_cast<double>(refs[i].size());
    avg *= 10.0;
    out.per_image.push_back(avg);
    sum += avg;
  }
  out.corpus = n_img ? sum / static_cast<double>(n_img) : 0.0;
  return out;
}

CorpusScore rouge_l(const std::vector<std::string>& candidates, const std::vector<std::vector<std::string>>& references,
                    double beta) {
  check_sizes(candidates, references);
  const auto lcs = [](const std::vector<std::string>& a, const std::vector<std::string>& b) {
    std::vector<int> prev(b.size() + 1, 0), cur(b.size() + 1, 0);
    for (std::size_t i = 1; i <= a.size(); ++i) {
      for (std::size_t j = 1; j <= b.size(); ++j) {
        cur[j] = a[i - 1] == b[j - 1] ? prev[j - 1] + 1 : std::max(prev[j], cur[j - 1]);
      }
      std::swap(prev, cur);
    }
    return prev[b.size()];
  };
  CorpusScore out;
  double sum = 0;
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    const auto c = split_on(candidates[i], ' ');
    double prec_max = 0, rec_max = 0;
    bool first = true;
    for (const auto& ref : references[i]) {
      const auto r = split_on(ref, ' ');
      const double l = lcs(r, c);
      const double p = l / static_cast<double>(c.size()), rc = l / static_cast<double>(r.size());
      prec_max = first ? p : std::max(prec_max, p);
      rec_max = first ? rc : std::max(rec_max, rc);
      first = false;
    }
    double s = 0.0;
    if (prec_max != 0 && rec_max != 0) {
      s = ((1 + beta * beta) * prec_max * rec_max) / (rec_max + beta * beta * prec_max);
    }
    out.per_image.push_back(s);
    sum += s;
  }
  out.corpus = candidates.empty() ? 0.0 : sum / static_cast<double>(candidates.size());
  return out;
}

CaptionScores caption_scores(const std::vector<std::string>& candidates,
                             const std::vector<std::vector<std::string>>& references) {
  check_sizes(candidates, references);
  if (candidates.empty()) throw_input_error("caption metrics: nothing to score (0 images)");
  return {bleu(candidates, references), cider_d(candidates, references), rouge_l(candidates, references)};
}

}  // namespace janus::eval
