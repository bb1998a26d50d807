// janus::Pipeline on random-weight tiny run directories: every entry point, batched == single, errors, threads.
#include "janus/infer/pipeline.h"

#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "infer_fixture.h"
#include "janus/core/error.h"
#include "janus/data/shapes.h"
#include "janus/data/tokenizer.h"
#include "janus/eval/model_eval.h"
#include "janus/fusion/attention.h"

namespace {

using janus::ImageInput;

struct Shared {
  std::string dir, run;
  std::vector<std::string> images;
};

const Shared& shared() {
  static const Shared s = [] {
    Shared s;
    s.dir = janus::test::temp_dir("pipeline");
    s.run = janus::test::make_run(s.dir);
    for (int i = 0; i < 6; ++i) {
      s.images.push_back(janus::test::make_image(s.dir, fmt::format("img{}.png", i), 40 + 7 * i, 50 - 3 * i, i));
    }
    return s;
  }();
  return s;
}

std::vector<ImageInput> inputs(const std::vector<std::string>& paths) {
  std::vector<ImageInput> v;
  for (const auto& p : paths) v.push_back(ImageInput::file(p));
  return v;
}

}  // namespace

TEST(Pipeline, CaptionBatchedEqualsSingleAndInputKindsAgree) {
  auto p = janus::Pipeline::load(shared().run);
  EXPECT_EQ(p.image_size(), 32);
  EXPECT_EQ(p.quantization(), "none");
  const auto& imgs = shared().images;
  const auto batch = p.caption(inputs(imgs));
  ASSERT_EQ(batch.size(), imgs.size());
  for (std::size_t i = 0; i < imgs.size(); ++i) EXPECT_EQ(batch[i], p.caption(ImageInput::file(imgs[i]))) << i;
  // bytes and decoded RGB give the same caption as the file
  const auto bytes = janus::read_file(imgs[0]);
  EXPECT_EQ(p.caption(ImageInput::bytes(bytes)), batch[0]);
  EXPECT_EQ(p.caption(ImageInput::rgb(janus::decode_image_file(imgs[0]))), batch[0]);
  // the caption is the decoded greedy ids: re-encoding is non-empty text for a random model most of the time;
  // at least the call is deterministic
  EXPECT_EQ(p.caption(inputs(imgs)), batch);
}

TEST(Pipeline, EmbeddingsAreNormalisedAndBatchInvariant) {
  auto p = janus::Pipeline::load(shared().run);
  const auto& imgs = shared().images;
  const auto e = p.embed_images(inputs(imgs));
  ASSERT_EQ(e.sizes(), (std::vector<int64_t>{6, p.embed_dim()}));
  EXPECT_TRUE(at::allclose(e.norm(2, {1}), at::ones({6}), 1e-4, 1e-4));
  for (int i = 0; i < 6; ++i) EXPECT_TRUE(at::allclose(e[i], p.embed_image(ImageInput::file(imgs[i])), 1e-4, 1e-5));
  const std::vector<std::string> texts{"a red circle", "a blue square to the left of a green star", "star"};
  const auto t = p.embed_texts(texts);
  ASSERT_EQ(t.size(0), 3);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(at::allclose(t[i], p.embed_text(texts[i]), 1e-4, 1e-5)) << i;
  EXPECT_FALSE(at::allclose(t[0], t[1], 1e-3, 1e-3));

  // retrieval = ranking by cosine, against embeddings or images
  const auto hits = p.retrieve("a red circle", e, 3);
  ASSERT_EQ(hits.size(), 3u);
  const auto scores = at::matmul(e, p.embed_text("a red circle"));
  EXPECT_EQ(hits[0].index, scores.argmax().item<int64_t>());
  EXPECT_NEAR(hits[0].score, scores.max().item<double>(), 1e-5);
  EXPECT_GE(hits[0].score, hits[1].score);
  EXPECT_GE(hits[1].score, hits[2].score);
  const auto hits2 = p.retrieve("a red circle", inputs(imgs), 10);
  ASSERT_EQ(hits2.size(), 6u);  // k clipped to the gallery
  EXPECT_EQ(hits2[0].index, hits[0].index);
}

TEST(Pipeline, AnswerAndClassify) {
  auto p = janus::Pipeline::load(shared().run);
  ASSERT_TRUE(p.has_vqa_head());
  const auto& imgs = shared().images;
  // Batched == single holds when the padded fusion length is the same (LSH attention hashes with rotations drawn
  // for the padded length), so these questions have similar lengths.
  const std::vector<std::string> qs{"is it red?", "is it blue?", "is it cyan?"};
  const auto a = p.answer(inputs({imgs[0], imgs[1], imgs[2]}), qs, 2);
  ASSERT_EQ(a.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    ASSERT_EQ(a[i].top.size(), 2u);
    EXPECT_EQ(a[i].answer, a[i].top[0].first);
    EXPECT_GE(a[i].top[0].second, a[i].top[1].second);
    EXPECT_GT(a[i].score, 0.0);
    EXPECT_LT(a[i].score, 1.0);
    const auto single = p.answer(ImageInput::file(imgs[i]), qs[i], 2);
    EXPECT_EQ(single.answer, a[i].answer);
    EXPECT_NEAR(single.score, a[i].score, 2e-3);  // batch-size dependent float rounding
  }
  // repeated calls give identical answers (the LSH generators are re-seeded per forward)
  const auto again = p.answer(inputs({imgs[0], imgs[1], imgs[2]}), qs, 2);
  for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ(again[i].score, a[i].score);
  const auto c = p.classify(inputs(imgs));
  ASSERT_EQ(c.size(), imgs.size());
  for (const auto& x : c) {
    ASSERT_EQ(x.probs.size(), 4u);
    double sum = 0;
    for (double v : x.probs) sum += v;
    EXPECT_NEAR(sum, 1.0, 1e-5);
    EXPECT_EQ(x.score, x.probs[x.label]);
  }
}

TEST(Pipeline, GenerateIsSeededPerPrompt) {
  auto p = janus::Pipeline::load(shared().run);
  janus::GenerateOptions g;
  g.n = 2;
  g.seed = 7;
  g.cfg_scale = 3.0;
  g.top_k = 20;
  const auto a = p.generate(std::vector<std::string>{"a red circle", "a blue star"}, g);
  ASSERT_EQ(a.size(), 2u);
  ASSERT_EQ(a[0].size(), 2u);
  const auto& im = a[0][0];
  EXPECT_EQ(im.scalar_type(), at::kByte);
  ASSERT_EQ(im.dim(), 3);
  EXPECT_EQ(im.size(2), 3);
  EXPECT_EQ(im.size(0), p.image_size());
  // a prompt's images do not depend on the other prompts of the call
  const auto b = p.generate("a blue star", g);
  EXPECT_TRUE(at::equal(b[0], a[1][0]));
  EXPECT_TRUE(at::equal(b[1], a[1][1]));
  g.seed = 8;
  const auto c = p.generate("a blue star", g);
  EXPECT_FALSE(at::equal(c[0], b[0]) && at::equal(c[1], b[1]));
}

// Best of N: each returned image is, of the N samples drawn for it (the same draws as asking for n x N images), the
// one the model's own image-text score ranks first.
TEST(Pipeline, GenerateBestOfKeepsTheHighestScoringSample) {
  auto p = janus::Pipeline::load(shared().run);
  janus::GenerateOptions g;
  g.n = 2;
  g.seed = 5;
  g.cfg_scale = 2.0;
  auto all = g;
  all.n = 2 * 3;
  const auto pool = p.generate("a red circle", all);
  g.candidates = 3;
  g.rerank_by = "caption";
  g.rerank_contrastive_weight = 5.0;
  const auto best = p.generate("a red circle", g);
  ASSERT_EQ(best.size(), 2u);
  std::vector<ImageInput> ins;
  for (const auto& im : pool) ins.push_back(ImageInput::rgb(im));
  const auto b =
      p.tokenizer().encode_batch(std::vector<std::string>(6, "a red circle"), janus::PipelineOptions{}.max_text_len);
  auto& m = p.model();
  for (const auto& mod : m.modules()) {
    if (auto* l = dynamic_cast<janus::LSHAttentionImpl*>(mod.get())) l->reset();
  }
  torch::NoGradGuard ng;
  const auto scores =
      janus::eval::image_text_scores(m, p.preprocess(ins), {b.ids, b.attention_mask.to(at::kBool)}, "caption", 5.0);
  for (int64_t j = 0; j < 2; ++j) {
    const auto pick = scores.slice(0, j * 3, j * 3 + 3).argmax().item<int64_t>();
    EXPECT_TRUE(at::equal(best[static_cast<size_t>(j)], pool[static_cast<size_t>(j * 3 + pick)])) << "image " << j;
  }
  g.candidates = 0;
  EXPECT_THROW(p.generate("a red circle", g), janus::InputError);
  g.candidates = 2;
  g.rerank_by = "clip";
  EXPECT_THROW(p.generate("a red circle", g), janus::InputError);
  // vqa: the VQA head's log p of the answers a Shapes prompt implies, the same scores janus_eval ranks by
  const std::string prompt = "a photo of a red circle above a blue square";
  const auto vpool = p.generate(prompt, all);
  g.candidates = 3;
  g.rerank_by = "vqa";
  g.rerank_contrastive_weight = 0.0;
  const auto vbest = p.generate(prompt, g);
  ASSERT_EQ(vbest.size(), 2u);
  std::vector<ImageInput> vins;
  for (const auto& im : vpool) vins.push_back(ImageInput::rgb(im));
  for (const auto& mod : m.modules()) {
    if (auto* l = dynamic_cast<janus::LSHAttentionImpl*>(mod.get())) l->reset();
  }
  const auto implied = janus::shapes_prompt_questions(janus::PromptSpec::from_prompt(prompt));
  const auto vscores = janus::eval::vqa_implied_scores(
      m, p.preprocess(vins), std::vector<std::vector<janus::ImpliedQuestion>>(6, implied), p.answers(),
      [&](const std::vector<std::string>& q) {
        const auto e = p.tokenizer().encode_batch(q, janus::PipelineOptions{}.max_text_len);
        return janus::TextInput{e.ids, e.attention_mask.to(at::kBool)};
      },
      64);
  for (int64_t j = 0; j < 2; ++j) {
    const auto pick = vscores.slice(0, j * 3, j * 3 + 3).argmax().item<int64_t>();
    EXPECT_TRUE(at::equal(vbest[static_cast<size_t>(j)], vpool[static_cast<size_t>(j * 3 + pick)])) << "image " << j;
  }
  EXPECT_THAT([&] { p.generate("a dog on a sofa", g); },
              testing::ThrowsMessage<janus::InputError>(testing::HasSubstr("shapes prompt \"a dog on a sofa\"")));
}

TEST(Pipeline, BadInputIsAnInputError) {
  auto p = janus::Pipeline::load(shared().run);
  EXPECT_THROW(p.caption(ImageInput::bytes("not an image")), janus::InputError);
  EXPECT_THROW(p.caption(ImageInput::bytes("")), janus::InputError);
  EXPECT_THROW(p.caption(ImageInput::file(shared().dir + "/missing.png")), janus::InputError);
  EXPECT_THROW(p.caption(ImageInput::rgb(at::zeros({4, 4}))), janus::InputError);
  EXPECT_THROW(p.embed_text(""), janus::InputError);
  EXPECT_THROW(p.embed_text("   "), janus::InputError);
  EXPECT_THROW(p.answer(ImageInput::file(shared().images[0]), ""), janus::InputError);
  EXPECT_THROW(p.answer(inputs(shared().images), {"one question"}), janus::InputError);
  EXPECT_THROW(p.retrieve("a red circle", at::zeros({3, 5}), 2), janus::InputError);
  EXPECT_THROW(p.retrieve("a red circle", at::zeros({3, p.embed_dim()}), 0), janus::InputError);
  janus::GenerateOptions g;
  g.n = 0;
  EXPECT_THROW(p.generate("x", g), janus::InputError);
  g.n = 1;
  g.top_p = 0;
  EXPECT_THROW(p.generate("x", g), janus::InputError);

  janus::PipelineOptions bad;
  bad.dtype = "fp8";
  EXPECT_THROW(janus::Pipeline::load(shared().run, bad), janus::InputError);
  bad = {};
  bad.device = "toaster";
  EXPECT_THROW(janus::Pipeline::load(shared().run, bad), janus::InputError);
  EXPECT_THROW(janus::Pipeline::load(shared().dir + "/nope"), janus::InputError);

  // a run without VQA / classification heads
  const auto d = janus::test::temp_dir("pipeline_nohead");
  janus::test::RunSpec spec;
  spec.num_answers = 0;
  spec.num_classes = 0;
  auto q = janus::Pipeline::load(janus::test::make_run(d, spec));
  EXPECT_FALSE(q.has_vqa_head());
  try {
    q.answer(ImageInput::file(shared().images[0]), "is it red?");
    FAIL() << "expected InputError";
  } catch (const janus::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("no VQA head"), std::string::npos) << e.what();
  }
  EXPECT_THROW(q.classify(ImageInput::file(shared().images[0])), janus::InputError);
}

TEST(Pipeline, FourThreadsGiveTheSingleThreadResults) {
  janus::PipelineOptions o;
  o.max_caption_len = 8;
  auto p = janus::Pipeline::load(shared().run, o);
  const auto& imgs = shared().images;
  const std::vector<std::string> qs{"is it red?", "how many circles are there?"};
  struct Result {
    std::vector<std::string> captions;
    at::Tensor emb, temb;
    std::vector<std::string> answers;
  };
  auto work = [&](int t) {
    Result r;
    const std::vector<std::string> mine{imgs[t % 6], imgs[(t + 1) % 6]};
    r.captions = p.caption(inputs(mine));
    r.emb = p.embed_images(inputs(mine));
    r.temb = p.embed_texts({qs[t % 2]});
    for (const auto& a : p.answer(inputs(mine), qs)) r.answers.push_back(a.answer);
    return r;
  };
  std::vector<Result> expected;
  for (int t = 0; t < 4; ++t) expected.push_back(work(t));
  std::vector<Result> got(4);
  for (int rep = 0; rep < 2; ++rep) {
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) threads.emplace_back([&, t] { got[t] = work(t); });
    for (auto& th : threads) th.join();
    for (int t = 0; t < 4; ++t) {
      EXPECT_EQ(got[t].captions, expected[t].captions) << t;
      EXPECT_TRUE(at::equal(got[t].emb, expected[t].emb)) << t;
      EXPECT_TRUE(at::equal(got[t].temb, expected[t].temb)) << t;
      EXPECT_EQ(got[t].answers, expected[t].answers) << t;
    }
  }
}

TEST(Pipeline, Bf16IsCloseToFp32) {
  auto p32 = janus::Pipeline::load(shared().run);
  janus::PipelineOptions o;
  o.dtype = "bf16";
  o.max_caption_len = 6;
  auto p16 = janus::Pipeline::load(shared().run, o);
  EXPECT_EQ(p16.dtype(), at::kBFloat16);
  const auto a = p32.embed_images(inputs(shared().images));
  const auto b = p16.embed_images(inputs(shared().images));
  EXPECT_EQ(b.scalar_type(), at::kFloat);
  const auto cos = (a * b).sum(1);
  EXPECT_GT(cos.min().item<double>(), 0.98) << cos;
  EXPECT_EQ(p16.caption(inputs({shared().images[0], shared().images[1]})).size(), 2u);
}

TEST(Pipeline, PreprocessMatchesTheTrainingTransform) {
  auto p = janus::Pipeline::load(shared().run);
  const auto x = p.preprocess(inputs({shared().images[1]}));
  janus::ImageTransform t;
  t.resize_short = 32;
  t.crop = 32;
  std::mt19937_64 rng(1);
  const auto ref = janus::transform_image(janus::decode_image_file(shared().images[1]), t, rng);
  EXPECT_TRUE(at::equal(x[0], ref));
}
