#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/nn.h>
#include <nlohmann/json.hpp>

#include "janus/core/error.h"
#include "janus/encoders/text_encoder.h"
#include "janus/io/module_io.h"
#include "janus/io/safetensors.h"
#include "parity_cases.h"
#include "test_util.h"

namespace jt = janus::test;

namespace {

const std::string& bert_case() {
  static const std::string dir = jt::cached_python_case("hf_bert_case.py");
  return dir;
}

janus::TextEncoderOptions case_options(bool mlm) {
  std::ifstream f(bert_case() + "/config.json");
  auto o = janus::text_encoder_options_from_json(nlohmann::json::parse(f));
  return mlm ? o.pooler(false).mlm_head(true) : o.pooler(true).mlm_head(false);
}

}  // namespace

TEST(TextEncoder, HfBertModelParityWithPaddingMask) {
  janus::TextEncoder enc(case_options(false));
  janus::load_hf_bert(*enc, bert_case() + "/model_weights.safetensors");
  enc->eval();
  const auto io = janus::load_safetensors(bert_case() + "/io.safetensors");
  torch::NoGradGuard ng;
  const auto out = enc->forward(io.at("input_ids"), io.at("attention_mask"), io.at("token_type_ids"));
  // All positions (padding query rows too: HF only masks keys, as we do).
  EXPECT_TRUE(jt::all_close(out.tokens, io.at("hidden"), 1e-5));
  EXPECT_TRUE(jt::all_close(out.pooled, io.at("pooled"), 1e-5));
  // The mask matters: without it the padded sequences change.
  const auto unmasked = enc->forward(io.at("input_ids"), std::nullopt, io.at("token_type_ids"));
  EXPECT_GT((unmasked.tokens[1] - io.at("hidden")[1]).abs().max().item<double>(), 1e-3);
}

TEST(TextEncoder, HfBertForMaskedLMParityTiedDecoder) {
  janus::TextEncoder enc(case_options(true));
  janus::load_hf_bert(*enc, bert_case() + "/mlm_weights.safetensors");
  enc->eval();
  const auto io = janus::load_safetensors(bert_case() + "/io.safetensors");
  torch::NoGradGuard ng;
  const auto out = enc->forward(io.at("input_ids"), io.at("attention_mask"), io.at("token_type_ids"));
  EXPECT_TRUE(jt::all_close(out.tokens, io.at("mlm_hidden"), 1e-5));
  EXPECT_TRUE(jt::all_close(enc->mlm_logits(out.tokens), io.at("mlm_logits"), 1e-5));
}

TEST(TextEncoder, DecoderIsTiedToWordEmbeddings) {
  janus::TextEncoder enc(
      janus::TextEncoderOptions().vocab_size(20).dim(8).depth(1).heads(2).mlp_dim(16).max_positions(8));
  const auto ids = torch::randint(0, 20, {2, 5});
  auto logits = enc->mlm_logits(enc->forward(ids).tokens);
  logits.sum().backward();
  // The word embedding receives gradient from both its lookup and the decoder; no separate decoder weight exists.
  for (const auto& p : enc->named_parameters()) EXPECT_EQ(p.key().find("decoder"), std::string::npos) << p.key();
  EXPECT_TRUE(enc->embeddings->word->weight.grad().defined());
}

// word_init_std sets the word-embedding init alone (BERT's 0.02 everywhere else); it must be positive.
TEST(TextEncoder, WordInitStd) {
  auto o = janus::TextEncoderOptions().vocab_size(400).dim(64).depth(1).heads(2).mlp_dim(64).max_positions(8);
  torch::manual_seed(0);
  janus::TextEncoder bert(o);
  EXPECT_NEAR(bert->embeddings->word->weight.std().item<double>(), 0.02, 0.002);
  torch::manual_seed(0);
  janus::TextEncoder wide(o.word_init_std(1.0));
  EXPECT_NEAR(wide->embeddings->word->weight.std().item<double>(), 1.0, 0.05);
  EXPECT_NEAR(wide->embeddings->position->weight.std().item<double>(), 0.02, 0.004);
  EXPECT_NEAR(wide->layers[0]->as<janus::TextLayerImpl>()->attn->query->weight.std().item<double>(), 0.02, 0.004);
  EXPECT_THROW(janus::TextEncoder(o.word_init_std(0.0)), janus::InputError);
}

TEST(TextEncoder, KeyMap) {
  EXPECT_EQ(janus::bert_key_to_janus("bert.encoder.layer.11.attention.self.query.weight"),
            "layers.11.attn.query.weight");
  EXPECT_EQ(janus::bert_key_to_janus("encoder.layer.0.output.LayerNorm.bias"), "layers.0.mlp_norm.bias");
  EXPECT_EQ(janus::bert_key_to_janus("encoder.layer.0.intermediate.dense.weight"), "layers.0.mlp.fc1.weight");
  EXPECT_EQ(janus::bert_key_to_janus("cls.predictions.decoder.weight"), "");
  EXPECT_EQ(janus::bert_key_to_janus("cls.predictions.bias"), "mlm.bias");
  EXPECT_EQ(janus::bert_key_to_janus("pooler.dense.bias"), "pooler.bias");
}

TEST(TextEncoder, ShapesSaveLoadAndErrors) {
  const auto dir = jt::temp_dir();
  auto o = janus::TextEncoderOptions().vocab_size(30).dim(16).depth(2).heads(4).mlp_dim(32).max_positions(10);
  torch::manual_seed(3);
  janus::TextEncoder a(o);
  torch::manual_seed(4);
  janus::TextEncoder b(o);
  a->eval();
  b->eval();
  const auto ids = torch::randint(0, 30, {2, 6});
  const auto out = a->forward(ids);
  EXPECT_EQ(out.tokens.sizes(), (std::vector<int64_t>{2, 6, 16}));
  EXPECT_EQ(out.pooled.sizes(), (std::vector<int64_t>{2, 16}));
  EXPECT_EQ(a->mlm_logits(out.tokens).sizes(), (std::vector<int64_t>{2, 6, 30}));
  janus::save_module(*a, dir + "/t.safetensors");
  EXPECT_TRUE(janus::load_module(*b, dir + "/t.safetensors").ok());
  EXPECT_TRUE(torch::equal(a->forward(ids).tokens, b->forward(ids).tokens));
  using ::testing::HasSubstr;
  using ::testing::ThrowsMessage;
  EXPECT_THAT(
      [&] {
        a->forward(torch::full({1, 3}, 30, torch::kLong));
      },
      ThrowsMessage<c10::Error>(HasSubstr("vocab_size is 30")));
  EXPECT_THAT(
      [&] {
        a->forward(torch::zeros({1, 11}, torch::kLong));
      },
      ThrowsMessage<c10::Error>(HasSubstr("max_positions 10")));
  EXPECT_THAT(
      [&] {
        a->forward(torch::zeros({1, 3}, torch::kLong), torch::zeros({1, 3}));
      },
      ThrowsMessage<c10::Error>(HasSubstr("no unmasked token")));
}
