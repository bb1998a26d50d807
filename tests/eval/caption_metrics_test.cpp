// Caption metrics vs PyPI pycocoevalcap 1.2 on a few hundred seeded caption sets, plus tokenizer rules.
#include <cmath>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "janus/core/error.h"
#include "janus/core/fs.h"
#include "janus/eval/caption_metrics.h"
#include "test_util.h"

using janus::eval::ptb_like_tokenize;
using nlohmann::json;

namespace {

constexpr double kTol = 1e-6;

json read_json(const std::string& path) { return json::parse(janus::read_file(path)); }

}  // namespace

TEST(CaptionTokenizer, LowercasesAndDropsPtbPunctuation) {
  EXPECT_EQ(ptb_like_tokenize("A Man, riding a Horse!"), "a man riding a horse");
  EXPECT_EQ(ptb_like_tokenize("  Two dogs ... on the grass.  "), "two dogs on the grass");
  EXPECT_EQ(ptb_like_tokenize("\"Quoted\" (words) [here] {too}; yes: no?"), "quoted words here too yes no");
  EXPECT_EQ(ptb_like_tokenize("a man -- and - a dog"), "a man and a dog");
  EXPECT_EQ(ptb_like_tokenize("...!?"), "");
}

TEST(CaptionTokenizer, KeepsNumbersAndHyphenatedWords) {
  EXPECT_EQ(ptb_like_tokenize("3.5 miles, 1,000 people at 10:30."), "3.5 miles 1,000 people at 10:30");
  EXPECT_EQ(ptb_like_tokenize("A black-and-white T-shirt"), "a black-and-white t-shirt");
  EXPECT_EQ(ptb_like_tokenize("costs $5 or 50%"), "costs $ 5 or 50 %");
}

TEST(CaptionTokenizer, SplitsCliticsLikePtb) {
  EXPECT_EQ(ptb_like_tokenize("Don't touch the dog's bone"), "do n't touch the dog 's bone");
  EXPECT_EQ(ptb_like_tokenize("They're here, it's fine, I'm ok"), "they 're here it 's fine i 'm ok");
  EXPECT_EQ(ptb_like_tokenize("the dogs' bowls"), "the dogs bowls");
  EXPECT_EQ(ptb_like_tokenize("o'clock"), "o'clock");
}

TEST(CaptionTokenizer, HandlesUnicode) {
  EXPECT_EQ(ptb_like_tokenize("Crème Brûlée at the CAFÉ"), "crème brûlée at the café");
  EXPECT_EQ(ptb_like_tokenize("“Über” cool — really…"), "über cool really");
  EXPECT_EQ(ptb_like_tokenize("don’t\u00a0stop"), "do n't stop");
  EXPECT_EQ(ptb_like_tokenize("日本 の 猫"), "日本 の 猫");
}

TEST(CaptionMetrics, HandComputedBleuAndRouge) {
  // candidate "a b c d", reference "a b c e": p1 = 3/4, p2 = 2/3, p3 = 1/2, p4 = 0 (+tiny).
  const auto b = janus::eval::bleu({"a b c d"}, {{"a b c e"}});
  EXPECT_NEAR(b.corpus[0], 0.75, 1e-9);
  EXPECT_NEAR(b.corpus[1], std::sqrt(0.75 * 2.0 / 3.0), 1e-9);
  EXPECT_NEAR(b.corpus[2], std::cbrt(0.75 * 2.0 / 3.0 * 0.5), 1e-9);
  EXPECT_LT(b.corpus[3], 1e-3);
  // LCS = 3, P = R = 3/4 -> F = 3/4.
  EXPECT_NEAR(janus::eval::rouge_l({"a b c d"}, {{"a b c e"}}).corpus, 0.75, 1e-12);
  // One image: idf is log(1) - log(1) = 0 everywhere, so CIDEr-D is 0 (pycocoevalcap's behaviour).
  EXPECT_EQ(janus::eval::cider_d({"a b c d"}, {{"a b c d"}}).corpus, 0.0);
}

TEST(CaptionMetrics, RejectsMismatchedInputs) {
  EXPECT_THROW(janus::eval::caption_scores({"a"}, {}), janus::InputError);
  EXPECT_THROW(janus::eval::caption_scores({"a"}, {{}}), janus::InputError);
}

TEST(CaptionMetrics, ParityWithPycocoevalcapOnSeededSets) {
  const std::string dir = janus::test::temp_dir("caption_parity");
  auto r = janus::test::run_python("eval_caption_cases.py", {"gen", dir, "20261124", "300"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json cases = read_json(dir + "/cases.json");
  ASSERT_EQ(cases.size(), 300u);
  // Tokenise here; the same strings go to pycocoevalcap. Sets marked raw go in untokenised (tabs, NBSP,
  // double spaces, capitals), which checks the scorers' own splitting rules too.
  json tokenised = json::array();
  for (const auto& c : cases) {
    const bool raw = c["raw"].get<bool>();
    json t = {{"cands", json::array()}, {"refs", json::array()}};
    for (const auto& s : c["cands"]) t["cands"].push_back(raw ? s.get<std::string>() : ptb_like_tokenize(s));
    for (const auto& rs : c["refs"]) {
      json refs = json::array();
      for (const auto& s : rs) refs.push_back(raw ? s.get<std::string>() : ptb_like_tokenize(s));
      t["refs"].push_back(refs);
    }
    tokenised.push_back(t);
  }
  janus::write_file_atomic(dir + "/tokenised.json", tokenised.dump());
  r = janus::test::run_python("eval_caption_cases.py", {"score", dir + "/tokenised.json", dir + "/expected.json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json expected = read_json(dir + "/expected.json");
  ASSERT_EQ(expected.size(), tokenised.size());

  int images = 0, nonzero_cider = 0, nonzero_bleu4 = 0;
  double worst = 0;
  for (std::size_t i = 0; i < tokenised.size(); ++i) {
    const auto cands = tokenised[i]["cands"].get<std::vector<std::string>>();
    const auto refs = tokenised[i]["refs"].get<std::vector<std::vector<std::string>>>();
    const auto s = janus::eval::caption_scores(cands, refs);
    const json& e = expected[i];
    const auto check = [&](double got, double want, const char* what, std::size_t img) {
      worst = std::max(worst, std::abs(got - want));
      EXPECT_NEAR(got, want, kTol) << what << " set " << i << " image " << img;
    };
    for (int k = 0; k < 4; ++k) check(s.bleu.corpus[k], e["bleu"][k].get<double>(), "BLEU corpus", 0);
    check(s.cider.corpus, e["cider"].get<double>(), "CIDEr corpus", 0);
    check(s.rouge.corpus, e["rouge"].get<double>(), "ROUGE-L corpus", 0);
    for (std::size_t j = 0; j < cands.size(); ++j) {
      for (int k = 0; k < 4; ++k) check(s.bleu.per_image[j][k], e["bleu_per"][j][k].get<double>(), "BLEU", j);
      check(s.cider.per_image[j], e["cider_per"][j].get<double>(), "CIDEr", j);
      check(s.rouge.per_image[j], e["rouge_per"][j].get<double>(), "ROUGE-L", j);
      ++images;
      nonzero_cider += s.cider.per_image[j] > 1e-3;
      nonzero_bleu4 += s.bleu.per_image[j][3] > 1e-3;
    }
  }
  // The sets must exercise the metrics, not only produce zeros.
  EXPECT_GT(images, 1000);
  EXPECT_GT(nonzero_cider, images / 3);
  EXPECT_GT(nonzero_bleu4, images / 5);
  std::cout << "[caption parity] " << tokenised.size() << " sets, " << images << " images, max |diff| = " << worst
            << "\n";
}
