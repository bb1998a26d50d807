#include <gtest/gtest.h>

#include "janus/core/error.h"
#include "janus/core/fs.h"
#include "janus/data/shapes.h"
#include "janus/data/tokenizer.h"
#include "test_util.h"

namespace {
std::string corpus(const std::string& dir) {
  std::string text;
  for (int64_t i = 0; i < 300; ++i) {
    for (const auto& c : janus::shapes_captions(janus::make_shapes_scene(3, "train", i, 64), 3)) text += c + "\n";
  }
  janus::write_file_atomic(dir + "/corpus.txt", text);
  return dir + "/corpus.txt";
}
}  // namespace

TEST(DataTokenizer, TrainLoadSpecialTokensRoundTrip) {
  const auto d = janus::test::temp_dir("tok");
  const auto c = corpus(d);
  const auto r = janus::test::run(janus::test::tool("janus_data") + " tokenizer train --input " + c +
                                  " --vocab 80 --out " + d + "/tok");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto t = janus::Tokenizer::load(d + "/tok");
  EXPECT_EQ(t.vocab_size(), 80);
  EXPECT_EQ(t.id_to_piece(0), "<pad>");
  EXPECT_EQ(t.id_to_piece(2), "<s>");
  EXPECT_EQ(t.id_to_piece(3), "</s>");
  EXPECT_EQ(t.piece_to_id("<mask>"), janus::SpecialTokens::mask);
  EXPECT_EQ(t.piece_to_id("<image_start>"), janus::SpecialTokens::image_start);
  EXPECT_EQ(t.piece_to_id("<image_end>"), janus::SpecialTokens::image_end);
  const std::string s = "a small red circle to the left of a blue square";
  const auto ids = t.encode(s);
  ASSERT_GE(ids.size(), 4u);
  EXPECT_EQ(ids.front(), janus::SpecialTokens::bos);
  EXPECT_EQ(ids.back(), janus::SpecialTokens::eos);
  EXPECT_EQ(t.decode(ids), s);
  const auto m = t.encode("a <mask> circle", false, false);
  EXPECT_NE(std::find(m.begin(), m.end(), janus::SpecialTokens::mask), m.end());
  const auto tr = t.encode(s, true, true, 5);
  EXPECT_EQ(tr.size(), 5u);
  EXPECT_EQ(tr.back(), janus::SpecialTokens::eos);
  const auto b = t.encode_batch({"a red circle", s}, 0);
  EXPECT_EQ(b.ids.size(0), 2);
  EXPECT_EQ(b.ids.size(1), static_cast<int64_t>(ids.size()));
  EXPECT_EQ(b.attention_mask[0].sum().item<int64_t>(), static_cast<int64_t>(t.encode("a red circle").size()));
  EXPECT_EQ(b.ids[0][-1].item<int64_t>(), janus::SpecialTokens::pad);
  EXPECT_EQ(t.encode_batch({"a"}, 16, true).ids.size(1), 16);
  // Same corpus + seed -> the same model.
  janus::Tokenizer::train(c, d + "/tok2", {80});
  // (the .model embeds the input path, so compare the pieces and scores)
  EXPECT_TRUE(janus::read_file(d + "/tok/tokenizer.vocab") == janus::read_file(d + "/tok2/tokenizer.vocab"));
  janus::write_file_atomic(d + "/bad.model", "nope");
  EXPECT_THROW(janus::Tokenizer::load(d + "/bad.model"), janus::InputError);
  EXPECT_THROW(t.decode({100000}), janus::InputError);
}
