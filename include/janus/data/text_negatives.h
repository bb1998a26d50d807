#pragma once
// Hard negative captions by word substitution, for the contrastive loss (NegCLIP: Yuksekgonul et al., "When and
// why vision-language models behave like bags-of-words", ICLR 2023). In-batch negatives rarely differ from a
// caption only in which colour goes with which shape, so InfoNCE alone never has to encode the binding; a caption
// with two of its words swapped, or one word replaced, is a negative that does.
//
// Words come in groups of interchangeable words (colours, shapes, sizes, "left right", ...). A negative of a
// caption is made by one edit, picked uniformly among those the caption allows:
//   swap:    two occurrences of different words of one group trade places ("a red circle and a blue square" ->
//            "a blue circle and a red square");
//   replace: one occurrence becomes another word of its group ("to the left of" -> "to the right of").
// Matching is on whole lower-case words (runs of [a-z0-9]); everything else in the caption is kept as it is.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace janus {

class TextNegatives {
 public:
  // Each group: at least two distinct lower-case words of [a-z0-9]; a word may belong to one group only.
  // InputError naming the group otherwise.
  explicit TextNegatives(std::vector<std::vector<std::string>> groups);
  // Groups given as strings of space-separated words ("red green blue"), as in train.text_negative_groups.
  static TextNegatives from_strings(const std::vector<std::string>& groups);
  // The built-in Shapes benchmark's vocabulary: its colours, shapes and sizes, and the direction words of its
  // captions (left/right, above/below, top/bottom).
  static TextNegatives shapes();

  // A caption that differs from `text` by one edit; nullopt when no word of any group occurs. Deterministic in
  // (text, seed).
  std::optional<std::string> make(const std::string& text, uint64_t seed) const;

  const std::vector<std::vector<std::string>>& groups() const { return groups_; }

 private:
  std::vector<std::vector<std::string>> groups_;
};

}  // namespace janus
