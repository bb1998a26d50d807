// Hard negative captions by word substitution (include/janus/data/text_negatives.h).
#include <algorithm>
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "janus/core/error.h"
#include "janus/data/shapes.h"
#include "janus/data/text_negatives.h"

namespace {

using Groups = std::vector<std::vector<std::string>>;

std::set<std::string> outcomes(const janus::TextNegatives& n, const std::string& text, int seeds = 400) {
  std::set<std::string> out;
  for (int s = 0; s < seeds; ++s) {
    const auto e = n.make(text, static_cast<uint64_t>(s));
    EXPECT_TRUE(e.has_value()) << text;
    if (e) out.insert(*e);
  }
  return out;
}

}  // namespace

// With one group the edits are: swap the two different colours, or replace either colour by a third word. Every
// outcome is one of exactly those, and each of them occurs.
TEST(TextNegatives, SwapsAndReplacesWithinAGroup) {
  const janus::TextNegatives n(Groups{{"red", "blue", "green"}});
  const auto got = outcomes(n, "a red circle, and a blue square.");
  const std::set<std::string> want = {
      "a blue circle, and a red square.",    // swap: the binding changes, the words do not
      "a blue circle, and a blue square.",   // replace red
      "a green circle, and a blue square.",  // replace red
      "a red circle, and a red square.",     // replace blue
      "a red circle, and a green square.",   // replace blue
  };
  EXPECT_EQ(got, want);
}

// A group whose words occur only once allows no swap; two occurrences of the same word allow none either.
TEST(TextNegatives, NoSwapWithoutTwoDifferentWords) {
  const janus::TextNegatives n(Groups{{"left", "right"}, {"small", "large"}});
  EXPECT_EQ(outcomes(n, "a small star to the left of a circle"),
            (std::set<std::string>{"a large star to the left of a circle", "a small star to the right of a circle"}));
  EXPECT_EQ(outcomes(n, "a small star and a small circle"),
            (std::set<std::string>{"a large star and a small circle", "a small star and a large circle"}));
}

TEST(TextNegatives, WholeWordsOnlyAndDeterministic) {
  const janus::TextNegatives n(Groups{{"red", "blue"}});
  EXPECT_FALSE(n.make("a reddish bluebird", 3).has_value());  // "red" inside a word is not the word
  EXPECT_FALSE(n.make("", 3).has_value());
  for (uint64_t s = 0; s < 20; ++s) EXPECT_EQ(n.make("a red and a blue one", s), n.make("a red and a blue one", s));
}

TEST(TextNegatives, BadGroupsNameTheProblem) {
  const auto message = [](const std::vector<std::string>& g) {
    try {
      (void)janus::TextNegatives::from_strings(g);
    } catch (const janus::InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message({"red"}).find("group 1 needs at least two distinct words"), std::string::npos);
  EXPECT_NE(message({"red red"}).find("group 1 needs at least two"), std::string::npos);
  EXPECT_NE(message({"red blue", "Left right"}).find("'Left' is not a lower-case word"), std::string::npos);
  EXPECT_NE(message({"red blue", "blue green"}).find("'blue' is in groups 1 and 2"), std::string::npos);
  EXPECT_EQ(message({"red blue", "left right"}), "no error");
}

// On the built-in benchmark every caption has a negative, and no negative is a caption of its own scene.
TEST(TextNegatives, ShapesCaptionsAllGetAFalseNegative) {
  const auto n = janus::TextNegatives::shapes();
  int swaps = 0, total = 0;
  for (int64_t i = 0; i < 60; ++i) {
    const auto scene = janus::make_shapes_scene(0, "train", i, 32);
    const auto caps = janus::shapes_captions(scene, 0);
    for (size_t c = 0; c < caps.size(); ++c) {
      const auto e = n.make(caps[c], static_cast<uint64_t>(i * 10 + static_cast<int64_t>(c)));
      ASSERT_TRUE(e.has_value()) << caps[c];
      EXPECT_EQ(std::find(caps.begin(), caps.end(), *e), caps.end()) << *e << " is a caption of scene " << i;
      // The same words in another order (a swap) or one word different (a replacement).
      std::multiset<char> a(caps[c].begin(), caps[c].end()), b(e->begin(), e->end());
      swaps += a == b ? 1 : 0;
      ++total;
    }
  }
  EXPECT_GT(swaps, total / 10) << "binding swaps should be common on multi-object captions";
  EXPECT_LT(swaps, total) << "replacements should occur too";
}
