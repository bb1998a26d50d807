// Hard negative captions by word substitution (include/janus/data/text_negatives.h).
#include "janus/data/text_negatives.h"

#include <algorithm>
#include <map>
#include <random>
#include <sstream>

#include "janus/core/error.h"
#include "janus/data/shapes.h"

namespace janus {
namespace {

bool word_char(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// The caption as alternating pieces; `word[i]` says whether piece i is a word.
struct Pieces {
  std::vector<std::string> text;
  std::vector<bool> word;
};

Pieces split(const std::string& s) {
  Pieces p;
  for (size_t i = 0; i < s.size();) {
    const bool w = word_char(s[i]);
    size_t j = i;
    while (j < s.size() && word_char(s[j]) == w) ++j;
    p.text.push_back(s.substr(i, j - i));
    p.word.push_back(w);
    i = j;
  }
  return p;
}

}  // namespace

TextNegatives::TextNegatives(std::vector<std::vector<std::string>> groups) : groups_(std::move(groups)) {
  std::map<std::string, size_t> owner;
  for (size_t g = 0; g < groups_.size(); ++g) {
    auto& words = groups_[g];
    for (const auto& w : words) {
      if (w.empty() || !std::all_of(w.begin(), w.end(), word_char)) {
        throw_input_error("text negatives: group {}: '{}' is not a lower-case word of [a-z0-9]", g + 1, w);
      }
      const auto [it, fresh] = owner.emplace(w, g);
      if (!fresh && it->second != g) {
        throw_input_error("text negatives: '{}' is in groups {} and {}; a word may belong to one group only", w,
                          it->second + 1, g + 1);
      }
    }
    std::sort(words.begin(), words.end());
    words.erase(std::unique(words.begin(), words.end()), words.end());
    if (words.size() < 2) throw_input_error("text negatives: group {} needs at least two distinct words", g + 1);
  }
}

TextNegatives TextNegatives::from_strings(const std::vector<std::string>& groups) {
  std::vector<std::vector<std::string>> g;
  for (const auto& s : groups) {
    std::istringstream in(s);
    std::vector<std::string> words;
    for (std::string w; in >> w;) words.push_back(w);
    g.push_back(std::move(words));
  }
  return TextNegatives(std::move(g));
}

TextNegatives TextNegatives::shapes() {
  return TextNegatives(
      {shapes_colours(), shapes_kinds(), shapes_sizes(), {"left", "right"}, {"above", "below"}, {"top", "bottom"}});
}

std::optional<std::string> TextNegatives::make(const std::string& text, uint64_t seed) const {
  auto p = split(text);
  // Occurrences of each group's words: (piece index, word).
  std::vector<std::vector<size_t>> at(groups_.size());
  for (size_t i = 0; i < p.text.size(); ++i) {
    if (!p.word[i]) continue;
    for (size_t g = 0; g < groups_.size(); ++g) {
      if (std::binary_search(groups_[g].begin(), groups_[g].end(), p.text[i])) at[g].push_back(i);
    }
  }
  // Edits: (group, swap?) for every group that occurs; a swap needs two different words of the group.
  std::vector<std::pair<size_t, bool>> edits;
  for (size_t g = 0; g < groups_.size(); ++g) {
    if (at[g].empty()) continue;
    edits.emplace_back(g, false);
    for (size_t a = 1; a < at[g].size(); ++a) {
      if (p.text[at[g][a]] != p.text[at[g][0]]) {
        edits.emplace_back(g, true);
        break;
      }
    }
  }
  if (edits.empty()) return std::nullopt;
  std::mt19937_64 rng(seed);
  const auto pick = [&](size_t n) {
    return static_cast<size_t>(std::uniform_int_distribution<uint64_t>(0, n - 1)(rng));
  };
  const auto [g, swap] = edits[pick(edits.size())];
  const auto& occ = at[g];
  if (swap) {
    // Two occurrences with different words: the first at random, the second among those that differ from it.
    for (;;) {
      const size_t a = occ[pick(occ.size())];
      std::vector<size_t> other;
      for (size_t i : occ) {
        if (p.text[i] != p.text[a]) other.push_back(i);
      }
      if (other.empty()) continue;  // every other occurrence is the same word; another first pick will differ
      std::swap(p.text[a], p.text[other[pick(other.size())]]);
      break;
    }
  } else {
    const size_t a = occ[pick(occ.size())];
    std::vector<std::string> choices;
    for (const auto& w : groups_[g]) {
      if (w != p.text[a]) choices.push_back(w);
    }
    p.text[a] = choices[pick(choices.size())];
  }
  std::string out;
  for (const auto& s : p.text) out += s;
  return out;
}

}  // namespace janus
