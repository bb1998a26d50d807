// VQA v2 accuracy: hand-checked vectors for every rule of the official vqaEval.py.
#include <gtest/gtest.h>

#include "janus/core/error.h"
#include "janus/eval/vqa.h"

using janus::eval::vqa_normalize_answer;
using janus::eval::vqa_process_digit_article;
using janus::eval::vqa_process_punctuation;
using janus::eval::vqa_question_accuracy;

namespace {
std::vector<std::string> gt(std::initializer_list<std::pair<const char*, int>> parts) {
  std::vector<std::string> out;
  for (const auto& [a, n] : parts) out.insert(out.end(), n, a);
  return out;
}
}  // namespace

TEST(VqaNormalisation, PunctuationTouchingSpaceIsDeletedOtherwiseSpaced) {
  EXPECT_EQ(vqa_process_punctuation("hello, world"), "hello world");  // ", " present -> ',' deleted
  EXPECT_EQ(vqa_process_punctuation("red,blue"), "red blue");         // no space, no digit,digit -> space
  EXPECT_EQ(vqa_process_punctuation("t-shirt"), "t shirt");
  EXPECT_EQ(vqa_process_punctuation("a - b"), "a  b");
  EXPECT_EQ(vqa_process_punctuation("(left)"), " left ");
  EXPECT_EQ(vqa_process_punctuation("what?!"), "what  ");
  EXPECT_EQ(vqa_process_punctuation("don't"), "don't");  // apostrophe is not in the list
  EXPECT_EQ(vqa_process_punctuation("a/b;c"), "a b c");
}

TEST(VqaNormalisation, DigitCommaDigitDeletesEveryMark) {
  EXPECT_EQ(vqa_process_punctuation("1,000"), "1000");
  // Once any digit,digit occurs, every listed mark is deleted, not spaced.
  EXPECT_EQ(vqa_process_punctuation("1,000 t-shirts"), "1000 tshirts");
}

TEST(VqaNormalisation, PeriodsNotFollowedByDigitAreRemovedAtMost32) {
  EXPECT_EQ(vqa_process_punctuation("yes."), "yes");
  EXPECT_EQ(vqa_process_punctuation("3.5"), "3.5");
  EXPECT_EQ(vqa_process_punctuation("e.g."), "eg");
  EXPECT_EQ(vqa_process_punctuation(".5 ."), ".5 ");
  // re.sub(..., re.UNICODE) passes 32 as `count` in the official code.
  EXPECT_EQ(vqa_process_punctuation(std::string(40, '.')), std::string(8, '.'));
}

TEST(VqaNormalisation, NumberWordsArticlesContractions) {
  EXPECT_EQ(vqa_process_digit_article("Two Dogs"), "2 dogs");
  EXPECT_EQ(vqa_process_digit_article("none"), "0");
  EXPECT_EQ(vqa_process_digit_article("zero one ten eleven"), "0 1 10 eleven");  // only none/zero..ten
  EXPECT_EQ(vqa_process_digit_article("the cat"), "cat");
  EXPECT_EQ(vqa_process_digit_article("An apple a day"), "apple day");
  EXPECT_EQ(vqa_process_digit_article("dont know"), "don't know");
  EXPECT_EQ(vqa_process_digit_article("isnt it"), "isn't it");
  EXPECT_EQ(vqa_process_digit_article("Im"), "im");  // the map's capitalised keys never match after lower()
  EXPECT_EQ(vqa_process_digit_article("oclock"), "o'clock");
  EXPECT_EQ(vqa_process_digit_article("  many   spaces\t"), "many spaces");
  EXPECT_EQ(vqa_normalize_answer("\tThe Two.\n"), "2");
}

TEST(VqaAccuracy, LeaveOneOutMinOneMatchesOverThree) {
  EXPECT_DOUBLE_EQ(vqa_question_accuracy("yes", gt({{"yes", 10}})), 1.0);
  EXPECT_DOUBLE_EQ(vqa_question_accuracy("no", gt({{"yes", 10}})), 0.0);
  // 3 x "2", 7 x "3": dropping a "2" leaves 2 matches (2/3), dropping a "3" leaves 3 (1) -> (3*2/3 + 7)/10.
  EXPECT_NEAR(vqa_question_accuracy("2", gt({{"2", 3}, {"3", 7}})), 0.9, 1e-12);
  // A single matching annotator: 9 subsets with 1 match (1/3), one with 0.
  EXPECT_NEAR(vqa_question_accuracy("red", gt({{"red", 1}, {"blue", 9}})), 0.3, 1e-12);
  EXPECT_NEAR(vqa_question_accuracy("red", gt({{"red", 2}, {"blue", 8}})), (2 * (1.0 / 3) + 8 * (2.0 / 3)) / 10, 1e-12);
}

TEST(VqaAccuracy, PredictionIsNormalised) {
  EXPECT_NEAR(vqa_question_accuracy("Three.", gt({{"3", 3}, {"4", 7}})), 0.9, 1e-12);
  EXPECT_DOUBLE_EQ(vqa_question_accuracy("Two.", gt({{"2", 10}})), 1.0);
  EXPECT_DOUBLE_EQ(vqa_question_accuracy("a banana", gt({{"banana", 5}, {"bananas", 5}})), 1.0);
  EXPECT_DOUBLE_EQ(vqa_question_accuracy("dont know", gt({{"don't know", 4}, {"no", 6}})), 1.0);
  EXPECT_DOUBLE_EQ(vqa_question_accuracy("\tyes\n", gt({{"yes", 10}})), 1.0);
}

TEST(VqaAccuracy, GroundTruthOnlyGetsPunctuationAndOnlyWhenAnswersDiffer) {
  // Differing GT answers: processPunctuation turns "t-shirt" into "t shirt", matching the normalised prediction.
  EXPECT_DOUBLE_EQ(vqa_question_accuracy("T-Shirt", gt({{"t-shirt", 4}, {"shirt", 6}})), 1.0);
  // Identical GT answers are left alone; "the dog" never equals the normalised prediction "dog".
  EXPECT_DOUBLE_EQ(vqa_question_accuracy("the dog", gt({{"the dog", 10}})), 0.0);
  // GT answers never get processDigitArticle: "two" stays "two" while the prediction becomes "2".
  EXPECT_DOUBLE_EQ(vqa_question_accuracy("two", gt({{"two", 5}, {"three", 5}})), 0.0);
  // processPunctuation("yes!") = "yes " (spaced, trailing blank kept) != "yes".
  EXPECT_DOUBLE_EQ(vqa_question_accuracy("yes!", gt({{"yes!", 3}, {"no", 7}})), 0.0);
}

TEST(VqaAccuracy, AggregatesPerAnswerType) {
  std::vector<janus::eval::VqaItem> items = {
      {"yes", gt({{"yes", 10}}), "yes/no", "is the"},
      {"no", gt({{"yes", 10}}), "yes/no", "is the"},
      {"2", gt({{"2", 3}, {"3", 7}}), "number", "how many"},
      {"red", gt({{"red", 1}, {"blue", 9}}), "other", "what color is the"},
  };
  const auto r = janus::eval::vqa_accuracy(items);
  EXPECT_NEAR(r.overall, 100.0 * (1 + 0 + 0.9 + 0.3) / 4, 1e-9);
  EXPECT_NEAR(r.per_answer_type.at("yes/no"), 50.0, 1e-9);
  EXPECT_NEAR(r.per_answer_type.at("number"), 90.0, 1e-9);
  EXPECT_NEAR(r.per_answer_type.at("other"), 30.0, 1e-9);
  EXPECT_NEAR(r.per_question_type.at("is the"), 50.0, 1e-9);
  EXPECT_EQ(r.answer_type_counts.at("yes/no"), 2);
  ASSERT_EQ(r.per_question.size(), 4u);
  EXPECT_NEAR(r.per_question[2], 90.0, 1e-9);
  EXPECT_THROW(janus::eval::vqa_accuracy({}), janus::InputError);
  EXPECT_THROW(vqa_question_accuracy("x", {}), janus::InputError);
}
