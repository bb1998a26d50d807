#include <gtest/gtest.h>

#include "janus/core/error.h"
#include "janus/decoder/conditional_adapter.h"
#include "janus/decoder/image_output.h"
#include "janus/decoder/image_token_generator.h"
#include "janus/io/module_io.h"
#include "test_util.h"

namespace janus {
namespace {

ImageTokenGenerator small_gen(uint64_t seed = 0) {
  torch::manual_seed(seed);
  auto g = ImageTokenGenerator(ImageTokenGeneratorOptions(50, 64).dim(32).depth(2).heads(4).max_positions(128));
  g->eval();
  return g;
}

TEST(CausalTransformer, StepWithCacheEqualsFullCausalPass) {
  torch::manual_seed(0);
  CausalTransformer t(CausalTransformerOptions(32, 2, 4));
  auto x = at::randn({3, 11, 32});
  auto full = t->forward_causal(x);
  CausalKVCache cache;
  auto a = t->forward_step(x.slice(1, 0, 4), cache);   // prefix chunk
  auto b = t->forward_step(x.slice(1, 4, 5), cache);   // one token
  auto c = t->forward_step(x.slice(1, 5, 11), cache);  // chunk after a prefix (offset causal mask)
  EXPECT_EQ(cache.length, 11);
  EXPECT_TRUE(test::all_close(at::cat({a, b, c}, 1), full, 1e-5));
  // causality: changing a later token leaves earlier outputs unchanged
  auto x2 = x.clone();
  x2.select(1, 7).add_(1.0);
  EXPECT_TRUE(test::all_close(t->forward_causal(x2).slice(1, 0, 7), full.slice(1, 0, 7), 1e-6));
  CausalKVCache bad;
  t->forward_step(x, bad);
  EXPECT_THROW(t->forward_step(at::randn({2, 1, 32}), bad), c10::Error);
}

TEST(ImageTokenGenerator, CachedSamplingEqualsUncachedSampling) {
  auto g = small_gen(1);
  auto text = at::randint(1, 50, {3, 5}, at::kLong);
  auto s = SamplingOptions().num_tokens(24).samples_per_prompt(4).temperature(0.9).top_k(20).top_p(0.9).seed(7);
  for (bool cfg : {false, true}) {
    s.cfg(cfg).cfg_scale(3.0);
    auto cached = g->generate(text, SamplingOptions(s).use_cache(true));
    auto uncached = g->generate(text, SamplingOptions(s).use_cache(false));
    ASSERT_EQ(cached.sizes(), (std::vector<int64_t>{12, 24}));
    EXPECT_TRUE(at::equal(cached, uncached)) << "cfg " << cfg;
    EXPECT_GE(cached.min().item<int64_t>(), 0);
    EXPECT_LT(cached.max().item<int64_t>(), 64);
  }
}

TEST(ImageTokenGenerator, CfgScaleOneEqualsPlainConditionalSampling) {
  auto g = small_gen(2);
  auto text = at::randint(1, 50, {2, 4}, at::kLong);
  auto s = SamplingOptions().num_tokens(20).samples_per_prompt(3).seed(3);
  auto plain = g->generate(text, SamplingOptions(s).cfg(false));
  auto cfg1 = g->generate(text, SamplingOptions(s).cfg(true).cfg_scale(1.0));
  EXPECT_TRUE(at::equal(plain, cfg1));
  // a strong guidance scale does change the samples (the unconditional rows are really used)
  auto cfg5 = g->generate(text, SamplingOptions(s).cfg(true).cfg_scale(5.0));
  EXPECT_FALSE(at::equal(plain, cfg5));
  // The unconditional prompt (stage 3 trains on it too) is every position uncond_token, same shape.
  const auto u = g->uncond_prompt(text);
  EXPECT_EQ(u.sizes(), text.sizes());
  EXPECT_TRUE(u.eq(g->options.uncond_token()).all().item<bool>());
}

TEST(ImageTokenGenerator, SeededDeterministicAndSamplesDiffer) {
  auto g = small_gen(3);
  auto text = at::randint(1, 50, {2, 4}, at::kLong);
  auto s = SamplingOptions().num_tokens(16).samples_per_prompt(2).seed(11);
  auto a = g->generate(text, s), b = g->generate(text, s);
  EXPECT_TRUE(at::equal(a, b));
  EXPECT_FALSE(at::equal(a, g->generate(text, SamplingOptions(s).seed(12))));
  EXPECT_FALSE(at::equal(a[0], a[1]));  // two samples of one prompt
}

TEST(ImageTokenGenerator, GreedyGenerationMatchesTeacherForcedArgmax) {
  auto g = small_gen(4);
  auto text = at::randint(1, 50, {2, 6}, at::kLong);
  auto codes = g->generate(text, SamplingOptions().num_tokens(12).temperature(0.0));
  auto logits = g->forward(text, codes);
  EXPECT_TRUE(at::equal(logits.argmax(-1), codes));
  // top_k = 1 is greedy as well
  EXPECT_TRUE(at::equal(g->generate(text, SamplingOptions().num_tokens(12).top_k(1).seed(5)), codes));
  // top_p tiny keeps only the most likely code
  EXPECT_TRUE(at::equal(g->generate(text, SamplingOptions().num_tokens(12).top_p(1e-6).seed(5)), codes));
  auto loss = g->loss(text, codes);
  EXPECT_TRUE(std::isfinite(loss.item<double>()));
}

// code_grid: each input gets the row/column embedding of the code it predicts. Cached sampling, uncached sampling
// and the teacher-forced pass agree; the embeddings change the output (they are used) and get gradients; codes
// beyond the grid are an error; save/load keeps them.
// An embedded prompt [B, Lt, dim] (what JanusModel's gen_text "encoder" passes) takes the place of the word
// embedding's lookup: given the lookup itself it is the same model, in training and in guided sampling, where the
// unconditional rows get the embedding the caller names.
TEST(ImageTokenGenerator, EmbeddedPromptActsAsItsIds) {
  auto g = small_gen(7);
  torch::NoGradGuard ng;
  const auto text = at::randint(1, 50, {2, 5}, at::kLong);
  const auto emb = g->text_embed->forward(text);
  const auto codes = at::randint(0, 64, {2, 9}, at::kLong);
  EXPECT_TRUE(at::equal(g->forward(emb, codes), g->forward(text, codes)));
  const auto s = SamplingOptions().num_tokens(9).samples_per_prompt(2).temperature(0.9).seed(4).cfg(true).cfg_scale(3);
  const auto uncond = g->text_embed->forward(g->uncond_prompt(text.slice(0, 0, 1)));  // [1, 5, dim]
  const auto from_ids = g->generate(text, s);
  EXPECT_TRUE(at::equal(g->generate(emb, s, uncond), from_ids));
  EXPECT_TRUE(at::equal(g->generate(emb, SamplingOptions(s).use_cache(false), uncond), from_ids));
  // another unconditional embedding is another guidance (same seed, other codes; a constant shift would not do:
  // the pre-LN blocks remove it)
  EXPECT_FALSE(at::equal(g->generate(emb, s, uncond + at::randn_like(uncond)), from_ids));
  EXPECT_EQ(g->generate(emb, SamplingOptions(s).cfg(false)).sizes(), (std::vector<int64_t>{4, 9}));
  EXPECT_THROW(g->generate(emb, s), c10::Error);                         // guidance without an unconditional embedding
  EXPECT_THROW(g->generate(emb, s, uncond.slice(1, 0, 4)), c10::Error);  // wrong length
  EXPECT_THROW(g->forward(at::randn({2, 5, 31}), codes), c10::Error);    // wrong width
}

TEST(ImageTokenGenerator, CodeGridPlacesAgreeAcrossCachedUncachedAndTeacherForced) {
  torch::manual_seed(6);
  auto g =
      ImageTokenGenerator(ImageTokenGeneratorOptions(50, 64).dim(32).depth(2).heads(4).max_positions(128).code_grid(4));
  g->eval();
  ASSERT_TRUE(g->row_embed.defined() && g->col_embed.defined());
  EXPECT_EQ(g->row_embed.sizes(), (std::vector<int64_t>{4, 32}));
  EXPECT_FALSE(small_gen()->row_embed.defined());
  // places of codes 0..15: row k / 4, column k % 4
  const auto pl = g->code_places(0, 16);
  for (int64_t k : {0, 5, 11, 15}) {
    EXPECT_TRUE(at::allclose(pl[k], g->row_embed[k / 4] + g->col_embed[k % 4])) << k;
  }
  auto text = at::randint(1, 50, {2, 5}, at::kLong);
  const auto s = SamplingOptions().num_tokens(16).samples_per_prompt(2).temperature(0.8).seed(9).cfg(true).cfg_scale(2);
  const auto cached = g->generate(text, SamplingOptions(s).use_cache(true));
  EXPECT_TRUE(at::equal(cached, g->generate(text, SamplingOptions(s).use_cache(false))));
  const auto greedy = g->generate(text, SamplingOptions().num_tokens(16).temperature(0.0));
  const auto logits = g->forward(text, greedy);
  EXPECT_TRUE(at::equal(logits.argmax(-1), greedy));
  {
    torch::NoGradGuard ng;
    auto saved = g->col_embed.clone();
    g->col_embed.add_(1.0);
    EXPECT_FALSE(at::allclose(g->forward(text, greedy), logits));
    g->col_embed.copy_(saved);
  }
  g->train();
  g->zero_grad();
  g->loss(text, greedy).backward();
  EXPECT_GT(g->row_embed.grad().abs().sum().item<double>(), 0.0);
  EXPECT_GT(g->col_embed.grad().abs().sum().item<double>(), 0.0);
  g->eval();
  EXPECT_THROW(g->forward(text, at::zeros({2, 17}, at::kLong)), c10::Error);  // 17 codes on a 4x4 grid
  const auto path = test::temp_dir("gen_grid") + "/g.safetensors";
  save_module(*g, path);
  auto h =
      ImageTokenGenerator(ImageTokenGeneratorOptions(50, 64).dim(32).depth(2).heads(4).max_positions(128).code_grid(4));
  load_module(*h, path);
  h->eval();
  EXPECT_TRUE(at::allclose(h->forward(text, greedy), logits));
}

TEST(ImageTokenGenerator, VideoPredictionFromPreviousFrame) {
  auto g = small_gen(5);
  auto frame = at::randint(0, 64, {2, 9}, at::kLong);
  auto text = at::randint(1, 50, {2, 3}, at::kLong);
  auto s = SamplingOptions().samples_per_prompt(2).seed(1).temperature(0.0);
  auto next = g->predict_next_frame(frame, text, s);
  ASSERT_EQ(next.sizes(), (std::vector<int64_t>{4, 9}));
  EXPECT_TRUE(at::equal(next, g->predict_next_frame(frame, text, SamplingOptions(s).use_cache(false))));
  EXPECT_TRUE(at::equal(g->forward(text.repeat_interleave(2, 0), next, frame.repeat_interleave(2, 0)).argmax(-1), next));
  // text is optional; the previous frame alone conditions
  EXPECT_EQ(g->predict_next_frame(frame, {}, SamplingOptions(s).samples_per_prompt(1)).sizes(),
            (std::vector<int64_t>{2, 9}));
  // the frame matters
  auto other = g->predict_next_frame((frame + 1) % 64, text, s);
  EXPECT_FALSE(at::equal(next, other));
}

TEST(ImageTokenGenerator, BadInputsAreRejected) {
  auto g = small_gen(6);
  EXPECT_THROW(g->generate(at::full({1, 3}, 50, at::kLong), SamplingOptions().num_tokens(2)), c10::Error);
  EXPECT_THROW(g->generate(at::ones({1, 3}, at::kLong), SamplingOptions().num_tokens(200)), c10::Error);
  EXPECT_THROW(g->generate(at::ones({1, 3}, at::kLong), SamplingOptions().num_tokens(2).top_p(0.0)), c10::Error);
  EXPECT_THROW(g->forward(at::ones({1, 3}, at::kLong), at::full({1, 2}, 64, at::kLong)), c10::Error);
}

TEST(ImageTokenGenerator, SaveLoadRoundTrip) {
  auto a = small_gen(7), b = small_gen(8);
  auto path = test::temp_dir("gen") + "/g.safetensors";
  save_module(*a, path);
  load_module(*b, path);
  auto text = at::randint(1, 50, {2, 4}, at::kLong);
  auto s = SamplingOptions().num_tokens(8).seed(2);
  EXPECT_TRUE(at::equal(a->generate(text, s), b->generate(text, s)));
  auto keys = a->named_parameters().keys();
  EXPECT_NE(std::find(keys.begin(), keys.end(), "backbone.blocks.0.attn.qkv.weight"), keys.end());
  EXPECT_NE(std::find(keys.begin(), keys.end(), "adapter.tasks.video_prediction.up.weight"), keys.end());
}

TEST(ConditionalAdapter, OnlyTheSelectedTaskReceivesGradients) {
  torch::manual_seed(9);
  ConditionalAdapter ad(ConditionalAdapterOptions(16, 4));
  {
    torch::NoGradGuard g;  // non-zero up so every parameter of the selected task gets a gradient
    for (auto& p : ad->parameters()) p.normal_(0.0, 0.1);
  }
  auto x = at::randn({3, 5, 16});
  ad->forward(x, "video_prediction").pow(2).sum().backward();
  for (const auto& kv : ad->named_parameters()) {
    const bool selected = kv.key().rfind("tasks.video_prediction.", 0) == 0;
    if (selected) {
      ASSERT_TRUE(kv.value().grad().defined()) << kv.key();
      EXPECT_GT(kv.value().grad().abs().sum().item<double>(), 0.0) << kv.key();
    } else {
      EXPECT_FALSE(kv.value().grad().defined()) << kv.key();
    }
  }
  EXPECT_EQ(ad->task_parameters("text_to_image").size(), 5u);
  EXPECT_THROW(ad->forward(x, "text2image"), InputError);
  // identity at init (zero up-projection) apart from the task embedding
  ConditionalAdapter fresh(ConditionalAdapterOptions(16, 4));
  auto y = fresh->forward(x, "text_to_image");
  auto emb = fresh->named_parameters()["tasks.text_to_image.task_embed"];
  EXPECT_TRUE(test::all_close(y, x + emb, 1e-6));
  // save / load
  auto path = test::temp_dir("adapter") + "/a.safetensors";
  save_module(*ad, path);
  load_module(*fresh, path);
  EXPECT_TRUE(test::all_close(fresh->forward(x, "video_prediction"), ad->forward(x, "video_prediction"), 0.0));
}

TEST(ImageOutput, PngRoundTripAndGrid) {
  auto dir = test::temp_dir("png");
  auto img = (at::randint(0, 256, {3, 7, 9}).to(at::kFloat) / 127.5) - 1.0;
  write_png(dir + "/a.png", img);
  EXPECT_TRUE(test::all_close(read_png(dir + "/a.png"), img, 1e-6));
  auto u8 = to_uint8_image(at::tensor({-1.0f, 0.0f, 1.0f, 2.0f}).reshape({1, 1, 2, 2}));
  EXPECT_EQ(u8.sizes(), (std::vector<int64_t>{1, 2, 2, 1}));
  EXPECT_EQ(u8.flatten()[0].item<int>(), 0);
  EXPECT_EQ(u8.flatten()[2].item<int>(), 255);
  EXPECT_EQ(u8.flatten()[3].item<int>(), 255);
  auto imgs = at::rand({5, 3, 8, 8}) * 2 - 1;
  auto grid = write_image_grid(dir + "/grid.png", imgs, 3, 2);
  EXPECT_EQ(grid.sizes(), (std::vector<int64_t>{3, 2 * 10 + 2, 3 * 10 + 2}));
  auto back = read_png(dir + "/grid.png");
  EXPECT_EQ(back.sizes(), grid.sizes());
  // image 4 sits at row 1, column 1
  EXPECT_TRUE(test::all_close(back.slice(1, 12, 20).slice(2, 12, 20), imgs[4], 1.0 / 127.5 + 1e-6));
  auto gray = write_image_grid(dir + "/g.png", at::zeros({2, 1, 4, 4}), 8, 0);
  EXPECT_EQ(gray.sizes(), (std::vector<int64_t>{1, 4, 8}));
  EXPECT_THROW(write_png(dir + "/nodir/x.png", img), Error);
  EXPECT_THROW(read_png(dir + "/missing.png"), InputError);
}

}  // namespace
}  // namespace janus
