// Model-driven evaluation (include/janus/eval/model_eval.h, `janus_eval --task ...`) on a tiny random-weight model
// written as a run directory and a small generated Shapes set: every task runs and returns well-formed results in
// valid ranges; hand-checkable retrieval cases; beam 1 == greedy; --limit; determinism; exit codes for bad input.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <random>

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/nn.h>
#include <nlohmann/json.hpp>

#include "janus/core/error.h"
#include "janus/core/fs.h"
#include "janus/data/formats.h"
#include "janus/data/image.h"
#include "janus/data/shapes.h"
#include "janus/eval/model_eval.h"
#include "janus/eval/score.h"
#include "janus/fusion/attention.h"
#include "janus/io/module_io.h"
#include "janus/model/run.h"
#include "test_util.h"

using janus::test::quote;
using nlohmann::json;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

namespace {

const std::vector<std::string> kAnswers{"yes", "no", "0", "1", "2", "3", "red", "blue", "circle", "square"};

// One shared fixture: Shapes data (32 val images, size 32), a tokenizer trained on its text, a random-weight tiny
// model with VQA and classification heads written as a run directory, and a 4-class image folder.
struct World {
  std::string root, shapes, run, folder;
};

const World& world() {
  static const World w = [] {
    World w;
    w.root = janus::test::temp_dir("model_eval");
    w.shapes = w.root + "/shapes";
    janus::test::make_shapes_dir(w.shapes, 16, 32, 32, 3);
    // Tokenizer corpus: the captions, questions and prompts of the train split.
    std::string corpus;
    for (const auto& r : janus::load_coco_captions(w.shapes + "/captions_train.json")) corpus += r.caption + "\n";
    for (const auto& r : janus::load_vqa(w.shapes + "/vqa/questions_train.json",
                                         w.shapes + "/vqa/annotations_train.json", "{subtype}/{id12}.png")) {
      corpus += r.question + "\n" + r.multiple_choice_answer + "\n";
    }
    for (const auto& p : json::parse(janus::read_file(w.shapes + "/geneval/prompts_train.json"))) {
      corpus += p["prompt"].get<std::string>() + "\n";
    }
    corpus += "a photo of a circle\na photo of a square\na photo of a triangle\na photo of a star\n";
    janus::write_file_atomic(w.root + "/corpus.txt", corpus);
    const auto tok_path = janus::Tokenizer::train(w.root + "/corpus.txt", w.root + "/tok", {80});
    const auto tok = janus::Tokenizer::load(tok_path);
    auto o = janus::model_flavour("tiny", tok.vocab_size(), 32);
    o.num_answers = static_cast<int64_t>(kAnswers.size());
    o.num_classes = 4;
    torch::manual_seed(0);
    janus::JanusModel model(o);
    w.run = w.root + "/run";
    janus::write_run_artifacts(w.run, o, tok_path, kAnswers);
    fs::create_directories(w.run + "/final");
    janus::save_module(*model, w.run + "/final/model.safetensors");
    // Image folder: one shape per image, class = shape kind (3 images each).
    w.folder = w.root + "/folder";
    for (int kind = 0; kind < 4; ++kind) {
      const auto dir = w.folder + "/" + janus::shapes_kinds()[static_cast<size_t>(kind)];
      fs::create_directories(dir);
      for (int k = 0; k < 3; ++k) {
        janus::ShapesScene sc;
        sc.image_size = 32;
        sc.objects.push_back({k % 6, kind, 1, 16.0, 16.0, 8.0, 0.3 * k});
        janus::write_image_file(dir + "/" + std::to_string(k) + ".png", janus::render_shapes_scene(sc));
      }
    }
    return w;
  }();
  return w;
}

janus::RunArtifacts& loaded() {
  static janus::RunArtifacts r = janus::load_run(world().run);
  return r;
}

janus::eval::EvalOptions small_opts(int64_t limit = 8) {
  janus::eval::EvalOptions o;
  o.limit = limit;
  o.batch_size = 4;
  o.max_caption_len = 10;
  o.max_text_len = 20;
  o.progress = [](const janus::eval::EvalProgress& p) {
    EXPECT_LE(p.done, p.total);
    EXPECT_GE(p.per_second, 0.0);
  };
  return o;
}

void expect_in(const json& v, double lo, double hi, const std::string& what) {
  ASSERT_TRUE(v.is_number()) << what << ": " << v.dump();
  EXPECT_GE(v.get<double>(), lo) << what;
  EXPECT_LE(v.get<double>(), hi) << what;
}

void expect_common(const json& r, const std::string& task, int64_t samples) {
  EXPECT_EQ(r["task"], task);
  EXPECT_EQ(r["counts"]["samples"], samples) << r["counts"].dump();
  EXPECT_EQ(r["model"]["weights"], world().run + "/final/model.safetensors");
  EXPECT_EQ(r["model"]["config_hash"].get<std::string>().size(), 64u);
  EXPECT_TRUE(r.contains("inputs"));
  EXPECT_GT(r["seconds"].get<double>(), 0.0);
}

void expect_recall(const json& m) {
  for (const auto* side : {"txt", "img"}) {
    const std::string s = side;
    expect_in(m[s + "_r1"], 0, 100, s + "_r1");
    expect_in(m[s + "_r10"], 0, 100, s + "_r10");
    EXPECT_LE(m[s + "_r1"].get<double>(), m[s + "_r5"].get<double>());
    EXPECT_LE(m[s + "_r5"].get<double>(), m[s + "_r10"].get<double>());
  }
}

janus::test::CommandResult eval_tool(const std::string& args) {
  return janus::test::run(quote(janus::test::tool("janus_eval")) + " " + args);
}

}  // namespace

// ---- library-level hand checks ----

TEST(ModelEvalRetrieval, IdenticalEmbeddingsGivePerfectRecallAndShiftedOnesZero) {
  torch::manual_seed(1);
  const int64_t N = 12;
  auto img = at::randn({N, 16});
  img = img / img.norm(2, {1}, true);
  // Two captions per image, each with exactly its image's embedding.
  std::vector<int64_t> txt2img;
  std::vector<at::Tensor> rows;
  for (int64_t i = 0; i < N; ++i) {
    for (int k = 0; k < 2; ++k) {
      txt2img.push_back(i);
      rows.push_back(img[i]);
    }
  }
  const auto txt = at::stack(rows);
  const auto r = janus::eval::retrieval_from_embeddings(img, txt, txt2img);
  for (const auto* k : {"txt_r1", "txt_r5", "txt_r10", "img_r1", "img_r5", "img_r10", "r_mean"}) {
    EXPECT_DOUBLE_EQ(r["metrics"][k].get<double>(), 100.0) << k;
  }
  EXPECT_EQ(r["counts"]["images"], N);
  EXPECT_EQ(r["counts"]["texts"], 2 * N);
  // Captions carrying the *next* image's embedding: R@1 is 0 both ways (the true partner is never the best).
  std::vector<int64_t> wrong;
  for (int64_t t = 0; t < 2 * N; ++t) wrong.push_back((txt2img[static_cast<size_t>(t)] + 1) % N);
  const auto z = janus::eval::retrieval_from_embeddings(img, txt, wrong);
  EXPECT_DOUBLE_EQ(z["metrics"]["txt_r1"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(z["metrics"]["img_r1"].get<double>(), 0.0);
}

TEST(ModelEvalRetrieval, RelevantSetsCountIdenticalTexts) {
  // 2 images, 3 texts; text 2 has the same words as one of image 0's captions but is scored highest for image 1.
  const auto sim = at::tensor({0.9, 0.1, 0.5, 0.2, 0.3, 0.8}, at::kDouble).view({2, 3});
  // Standard: image 0 -> {0}, image 1 -> {1, 2}.
  auto std_r = janus::eval::retrieval_recall_sets(sim, {{0}, {1, 2}}, {{0}, {1}, {1}});
  EXPECT_DOUBLE_EQ(std_r["txt_r1"].get<double>(), 100.0);  // image 0 -> text 0 (0.9); image 1 -> text 2 (0.8)
  // t2i: text 0 -> image 0 (0.9 > 0.2) hit; text 1 -> image 1 (0.3 > 0.1) hit; text 2 -> image 1 (0.8 > 0.5) hit.
  EXPECT_DOUBLE_EQ(std_r["img_r1"].get<double>(), 100.0);
  // Make text 2 belong to image 0 only: image 1's best (text 2) is then a miss; t2i text 2 misses too.
  auto r = janus::eval::retrieval_recall_sets(sim, {{0, 2}, {1}}, {{0}, {1}, {0}});
  EXPECT_DOUBLE_EQ(r["txt_r1"].get<double>(), 50.0);
  EXPECT_NEAR(r["img_r1"].get<double>(), 200.0 / 3.0, 1e-9);
  EXPECT_DOUBLE_EQ(r["img_r5"].get<double>(), 100.0);
  // ...unless text 2 is identical to a caption of image 1 as well: relevant to both.
  auto both = janus::eval::retrieval_recall_sets(sim, {{0, 2}, {1, 2}}, {{0}, {1}, {0, 1}});
  EXPECT_DOUBLE_EQ(both["txt_r1"].get<double>(), 100.0);
  EXPECT_DOUBLE_EQ(both["img_r1"].get<double>(), 100.0);
}

TEST(ModelEvalRetrieval, EmbedFunctionsMatchContrastive) {
  auto& run = loaded();
  torch::NoGradGuard ng;
  torch::manual_seed(2);
  const auto images = at::randn({3, 3, 32, 32});
  const auto b = run.tokenizer->encode_batch({"a red circle", "two shapes", "a blue star on the left"}, 16);
  const janus::TextInput t{b.ids, b.attention_mask.to(at::kBool)};
  const auto c = run.model->contrastive(images, t);
  EXPECT_TRUE(janus::test::all_close(run.model->embed_images(images), c.image_embeds, 1e-6));
  EXPECT_TRUE(janus::test::all_close(run.model->embed_texts(t), c.text_embeds, 1e-6));
  EXPECT_TRUE(janus::test::all_close(run.model->embed_images(images).norm(2, {1}), at::ones({3}), 1e-5));
}

// ---- decoding ----

TEST(ModelEvalDecoding, BeamOneEqualsGreedy) {
  auto& run = loaded();
  torch::manual_seed(3);
  const auto images = at::randn({5, 3, 32, 32});
  for (int64_t max_len : {2, 7, 20}) {
    const auto greedy = run.model->generate_caption(images, 2, 3, max_len);
    const auto beam1 = run.model->beam_search_caption(images, 2, 3, max_len, 1);
    // Greedy pads finished rows with eos; compare row by row up to the first eos.
    ASSERT_EQ(greedy.size(0), beam1.size(0));
    for (int64_t r = 0; r < greedy.size(0); ++r) {
      std::vector<int64_t> a, b;
      for (int64_t i = 0; i < greedy.size(1); ++i) {
        a.push_back(greedy[r][i].item<int64_t>());
        if (a.back() == 3) break;
      }
      for (int64_t i = 0; i < beam1.size(1); ++i) {
        b.push_back(beam1[r][i].item<int64_t>());
        if (b.back() == 3) break;
      }
      EXPECT_EQ(a, b) << "row " << r << " max_len " << max_len;
    }
  }
}

TEST(ModelEvalDecoding, BeamSearchIsValidDeterministicAndNoWorseThanGreedyOnOneStep) {
  auto& run = loaded();
  torch::manual_seed(4);
  const auto images = at::randn({3, 3, 32, 32});
  const auto a = run.model->beam_search_caption(images, 2, 3, 9, 4);
  const auto b = run.model->beam_search_caption(images, 2, 3, 9, 4);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_EQ(a.size(0), 3);
  EXPECT_LE(a.size(1), 9);
  for (int64_t r = 0; r < 3; ++r) EXPECT_EQ(a[r][0].item<int64_t>(), 2);
  EXPECT_TRUE((a >= 0).all().item<bool>() && (a < run.tokenizer->vocab_size()).all().item<bool>());
  // One new token, no length normalisation: every beam size picks the arg-max token, like greedy.
  const auto prompt = at::full({3, 1}, 2, at::kLong);
  const auto g1 = run.model->beam_generate(images, prompt, 3, 1, 1, 0.0);
  const auto g4 = run.model->beam_generate(images, prompt, 3, 1, 4, 0.0);
  EXPECT_TRUE(torch::equal(g1, g4)) << g1 << g4;
  EXPECT_THROW(run.model->beam_generate(images, prompt, 3, 5, 0), c10::Error);
}

// ---- every task through evaluate() ----

TEST(ModelEvalTasks, RetrievalWithAndWithoutRerank) {
  const auto m = janus::eval::eval_model(loaded());
  const auto r = janus::eval::evaluate(m, "retrieval", world().shapes, small_opts(6));
  expect_common(r, "retrieval", 6);
  EXPECT_EQ(r["counts"]["images"], 6);
  EXPECT_GE(r["counts"]["texts"].get<int64_t>(), 18);  // >= 3 captions per image
  expect_recall(r["metrics"]);
  expect_recall(r["metrics"]["identical_text_counts"]);
  // Shapes data: the best R@1 any model can expect (the hidden caption choices make some texts ambiguous).
  const auto& ceil = r["metrics"]["identical_text_counts"]["ceiling"];
  for (const auto* k : {"txt_r1", "img_r1"}) expect_in(ceil[k], 50, 100, k);
  // Counting identical texts can only add hits.
  EXPECT_GE(r["metrics"]["identical_text_counts"]["txt_r1"].get<double>(), r["metrics"]["txt_r1"].get<double>());
  EXPECT_GE(r["metrics"]["identical_text_counts"]["img_r1"].get<double>(), r["metrics"]["img_r1"].get<double>());
  // The listed misses are the queries that R@1 (identical-text counting) does not count, up to 8 per direction.
  const auto& ident = r["metrics"]["identical_text_counts"];
  const auto n_texts = r["counts"]["texts"].get<int64_t>();
  const auto misses = [](double r1, int64_t n) {
    return std::min<size_t>(8, static_cast<size_t>(std::llround(static_cast<double>(n) * (1.0 - r1 / 100.0))));
  };
  EXPECT_EQ(r["misses"]["image_to_text"].size(), misses(ident["txt_r1"].get<double>(), 6));
  EXPECT_EQ(r["misses"]["text_to_image"].size(), misses(ident["img_r1"].get<double>(), n_texts));
  for (const auto& m1 : r["misses"]["image_to_text"]) {
    const auto refs = m1.at("references").get<std::vector<std::string>>();
    EXPECT_EQ(std::count(refs.begin(), refs.end(), m1.at("retrieved").get<std::string>()), 0) << m1.dump();
  }
  for (const auto& m1 : r["misses"]["text_to_image"]) EXPECT_NE(m1.at("image_id"), m1.at("retrieved_image_id"));
  auto o = small_opts(6);
  o.rerank = 2;
  const auto rr = janus::eval::evaluate(m, "retrieval", world().shapes, o);
  expect_recall(rr["metrics"]);
  EXPECT_EQ(rr["options"]["rerank"], 2);
  EXPECT_EQ(rr["options"]["rerank_by"], "itm");
  json plain = r["metrics"];  // the ceiling does not depend on the model: the main metrics carry it once
  plain["identical_text_counts"].erase("ceiling");
  EXPECT_EQ(rr["metrics_contrastive"], plain);
  // Re-ranking only reorders each query's top 2: R@5 and R@10 of the contrastive ranking are kept.
  EXPECT_DOUBLE_EQ(rr["metrics"]["txt_r10"].get<double>(), r["metrics"]["txt_r10"].get<double>());
  EXPECT_DOUBLE_EQ(rr["metrics"]["img_r5"].get<double>(), r["metrics"]["img_r5"].get<double>());
  // The same with the caption decoder's log-likelihood as the score.
  o.rerank_by = "caption";
  const auto rc = janus::eval::evaluate(m, "retrieval", world().shapes, o);
  expect_recall(rc["metrics"]);
  EXPECT_EQ(rc["options"]["rerank_by"], "caption");
  EXPECT_EQ(rc["metrics_contrastive"], plain);
  EXPECT_EQ(rc["metrics"]["identical_text_counts"]["ceiling"], ceil);
  EXPECT_DOUBLE_EQ(rc["metrics"]["txt_r10"].get<double>(), r["metrics"]["txt_r10"].get<double>());
  EXPECT_DOUBLE_EQ(rc["metrics"]["img_r5"].get<double>(), r["metrics"]["img_r5"].get<double>());
  // With a huge weight on the cosine similarity the re-rank keeps the contrastive order.
  o.rerank_contrastive_weight = 1e9;
  const auto rw = janus::eval::evaluate(m, "retrieval", world().shapes, o);
  for (const auto* k : {"txt_r1", "img_r1", "txt_r5", "img_r5"}) {
    EXPECT_DOUBLE_EQ(rw["metrics"][k].get<double>(), r["metrics"][k].get<double>()) << k;
  }
  EXPECT_EQ(rw["options"]["rerank_contrastive_weight"], 1e9);
  o.rerank_contrastive_weight = 0;
  o.rerank_by = "clip";
  try {
    janus::eval::evaluate(m, "retrieval", world().shapes, o);
    FAIL() << "expected an InputError";
  } catch (const janus::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("rerank_by 'clip'"), std::string::npos) << e.what();
  }
}

// The re-ranking score log p(text | image) is the captioning loss undone: the teacher-forced loss is the mean
// cross-entropy over every real token after bos, so -sum(log-likelihoods) / #tokens equals it.
TEST(ModelEvalTasks, CaptionLogLikelihoodMatchesTheCaptionLoss) {
  auto& model = *loaded().model;
  const bool was_training = model.is_training();
  model.eval();
  torch::NoGradGuard ng;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  const int64_t S = model.options.image_size();
  const auto images = at::randn({3, 3, S, S}, gen);
  auto ids = at::randint(7, 40, {3, 6}, gen, at::kLong);
  ids.select(1, 0).fill_(janus::SpecialTokens::bos);
  auto mask = at::ones({3, 6}, at::kBool);
  mask[1].slice(0, 4).fill_(false);  // a shorter row: padding must not count
  ids[1].slice(0, 4).fill_(janus::SpecialTokens::pad);
  const janus::TextInput text{ids, mask};
  const auto ll = janus::eval::caption_log_likelihood(model, images, text);
  ASSERT_EQ(ll.sizes(), (std::vector<int64_t>{3}));
  EXPECT_TRUE((ll < 0).all().item<bool>());
  const double tokens = 5 + 3 + 5;
  EXPECT_NEAR(-ll.sum().item<double>() / tokens, model.caption(images, text).loss.item<double>(), 1e-5);
  // Row-wise: each row alone gives its own value.
  for (int64_t b = 0; b < 3; ++b) {
    const auto one =
        janus::eval::caption_log_likelihood(model, images.narrow(0, b, 1), {ids.narrow(0, b, 1), mask.narrow(0, b, 1)});
    EXPECT_NEAR(one.item<double>(), ll[b].item<double>(), 1e-4);
  }
  model.train(was_training);
}

// The best-of-N / re-ranking score: each kind is the model's own quantity, the cosine term adds on, rows are
// independent, and an unknown kind or a batch mismatch is an error.
TEST(ModelEvalTasks, ImageTextScoresAreTheModelsOwnQuantities) {
  auto& model = *loaded().model;
  const bool was_training = model.is_training();
  model.eval();
  torch::NoGradGuard ng;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  const int64_t S = model.options.image_size();
  const auto images = at::randn({3, 3, S, S}, gen);
  auto ids = at::randint(7, 40, {3, 6}, gen, at::kLong);
  ids.select(1, 0).fill_(janus::SpecialTokens::bos);
  const janus::TextInput text{ids, at::ones({3, 6}, at::kBool)};
  const auto cosine = (model.embed_images(images) * model.embed_texts(text)).sum(1);
  const auto c = janus::eval::image_text_scores(model, images, text, "contrastive");
  ASSERT_EQ(c.sizes(), (std::vector<int64_t>{3}));
  EXPECT_TRUE(at::allclose(c, cosine, 1e-5, 1e-6));
  EXPECT_TRUE((c.abs() <= 1 + 1e-5).all().item<bool>());
  const auto ll = janus::eval::caption_log_likelihood(model, images, text);
  EXPECT_TRUE(at::allclose(janus::eval::image_text_scores(model, images, text, "caption"), ll, 1e-5, 1e-5));
  EXPECT_TRUE(
      at::allclose(janus::eval::image_text_scores(model, images, text, "caption", 3.0), ll + 3.0 * cosine, 1e-5, 1e-5));
  // The fusion's LSH attention draws its bucket rotations per call: the same draws for both sides.
  const auto reseed = [&]() {
    for (const auto& mod : model.modules()) {
      if (auto* l = dynamic_cast<janus::LSHAttentionImpl*>(mod.get())) l->reset();
    }
  };
  reseed();
  const auto itm = janus::eval::image_text_scores(model, images, text, "itm");
  reseed();
  EXPECT_TRUE(at::allclose(itm, at::softmax(model.itm(images, text).logits, -1).select(1, 1), 1e-5, 1e-6));
  EXPECT_TRUE(((itm >= 0) & (itm <= 1)).all().item<bool>());
  const auto one = janus::eval::image_text_scores(model, images.narrow(0, 1, 1),
                                                  {ids.narrow(0, 1, 1), text.mask.narrow(0, 1, 1)}, "caption", 3.0);
  EXPECT_NEAR(one.item<double>(), (ll + 3.0 * cosine)[1].item<double>(), 1e-4);
  try {
    janus::eval::image_text_scores(model, images, text, "clip");
    FAIL() << "expected an InputError";
  } catch (const janus::InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("'clip' is not contrastive, caption or itm"));
  }
  EXPECT_THROW(janus::eval::image_text_scores(model, images.narrow(0, 0, 2), text, "caption"), c10::Error);
  model.train(was_training);
}

TEST(ModelEvalTasks, CaptionGreedyAndBeamAreInRangeAndDeterministic) {
  const auto m = janus::eval::eval_model(loaded());
  auto o = small_opts(6);
  o.out_dir = world().root + "/cap_out";
  const auto r = janus::eval::evaluate(m, "caption", world().shapes, o);
  expect_common(r, "caption", 6);
  for (const auto* k : {"Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L"}) expect_in(r["metrics"][k], 0, 1, k);
  expect_in(r["metrics"]["CIDEr"], 0, 10, "CIDEr");
  expect_in(r["metrics"]["exact_match"], 0, 100, "exact_match");
  EXPECT_EQ(r["examples"].size(), 6u);
  // Shapes data: where the captions put things, by kind (a random model rarely writes either kind).
  const auto& pos = r["metrics"]["position"];
  for (const auto* kind : {"region", "relation"}) {
    ASSERT_TRUE(pos.contains(kind)) << pos.dump();
    const auto n = pos[kind]["captions"].get<int64_t>();
    EXPECT_TRUE(n >= 0 && n <= 6) << pos.dump();
    if (n > 0) {
      expect_in(pos[kind]["correct"], 0, 100, kind);
    } else {
      EXPECT_TRUE(pos[kind]["correct"].is_null()) << pos.dump();
    }
  }
  // The results file is in COCO results format and scores to the same numbers through `janus_eval score`.
  const auto res = json::parse(janus::read_file(r["outputs"]["results"].get<std::string>()));
  EXPECT_EQ(res.size(), 6u);
  const auto again = janus::eval::evaluate(m, "caption", world().shapes, o);
  EXPECT_EQ(again["metrics"], r["metrics"]);
  EXPECT_EQ(again["examples"], r["examples"]);
  o.beam = 3;
  const auto b = janus::eval::evaluate(m, "caption", world().shapes, o);
  EXPECT_EQ(b["options"]["beam"], 3);
  for (const auto* k : {"Bleu_1", "Bleu_4", "ROUGE_L"}) expect_in(b["metrics"][k], 0, 1, k);
}

TEST(ModelEvalTasks, VqaHeadAndGenerative) {
  const auto m = janus::eval::eval_model(loaded());
  auto o = small_opts(6);
  o.out_dir = world().root + "/vqa_out";
  const auto r = janus::eval::evaluate(m, "vqa", world().shapes, o);
  expect_common(r, "vqa", 6);
  // The results file is in the VQA results layout: one {question_id, answer} per scored question.
  const auto res = json::parse(janus::read_file(r["outputs"]["results"].get<std::string>()));
  ASSERT_EQ(res.size(), 6u);
  for (const auto& row : res) {
    EXPECT_TRUE(row["question_id"].is_number_integer()) << row.dump();
    EXPECT_NE(std::find(kAnswers.begin(), kAnswers.end(), row["answer"].get<std::string>()), kAnswers.end());
  }
  EXPECT_EQ(r["options"]["mode"], "head");
  expect_in(r["metrics"]["overall"], 0, 100, "overall");
  int64_t n = 0;
  for (const auto& [k, v] : r["counts"]["perAnswerType"].items()) n += v.get<int64_t>();
  EXPECT_EQ(n, 6);
  for (const auto& [k, v] : r["metrics"]["perAnswerType"].items()) expect_in(v, 0, 100, k);
  // Per question type as the VQA evaluation API reports it, from the annotations' question_type (Shapes writes one).
  ASSERT_TRUE(r["metrics"]["perQuestionType"].is_object() && !r["metrics"]["perQuestionType"].empty()) << r.dump();
  for (const auto& [k, v] : r["metrics"]["perQuestionType"].items()) {
    EXPECT_THAT(k, testing::AnyOf("how many", "what shape is the", "what color is the", "is there a", "is the"));
    expect_in(v, 0, 100, k);
  }
  for (const auto& e : r["examples"]) {
    EXPECT_NE(std::find(kAnswers.begin(), kAnswers.end(), e["prediction"].get<std::string>()), kAnswers.end());
  }
  o.vqa_mode = "generate";
  const auto g = janus::eval::evaluate(m, "vqa", world().shapes, o);
  EXPECT_EQ(g["options"]["mode"], "generate");
  expect_in(g["metrics"]["overall"], 0, 100, "overall (generate)");
}

TEST(ModelEvalTasks, Nlvr2AccuracyAndNoConsistencyOnShapes) {
  const auto m = janus::eval::eval_model(loaded());
  auto o = small_opts(9);
  o.out_dir = world().root + "/nlvr2_out";
  const auto r = janus::eval::evaluate(m, "nlvr2", world().shapes, o);
  expect_common(r, "nlvr2", 9);
  expect_in(r["metrics"]["accuracy"], 0, 100, "accuracy");
  EXPECT_FALSE(r["metrics"].contains("consistency"));
  ASSERT_TRUE(r.contains("notes"));
  EXPECT_THAT(r["notes"][0].get<std::string>(), HasSubstr("consistency"));
  // The breakdowns partition the scored statements, and their weighted accuracies give the overall one.
  const auto data = janus::load_nlvr2(world().shapes + "/nlvr2/val.jsonl");
  ASSERT_GE(data.size(), 9u);
  for (const auto* part : {"by_label", "by_statement"}) {
    ASSERT_TRUE(r["metrics"].contains(part)) << r.dump();
    std::map<std::string, int64_t> expected;
    for (size_t i = 0; i < 9; ++i) {
      const auto& d = data[i];
      expected[std::string(part) == "by_label" ? (d.label == 1 ? "true" : "false")
                                               : janus::shapes_nlvr2_statement_kind(d.sentence)] += 1;
    }
    double weighted = 0;
    int64_t n = 0;
    for (const auto& [k, v] : r["counts"][part].items()) {
      EXPECT_EQ(v.get<int64_t>(), expected[k]) << part << " " << k;
      n += v.get<int64_t>();
      weighted += r["metrics"][part][k].get<double>() * v.get<double>();
    }
    EXPECT_EQ(n, 9) << part;
    EXPECT_NEAR(weighted / 9, r["metrics"]["accuracy"].get<double>(), 1e-9) << part;
  }
  for (const auto& [k, v] : r["metrics"]["by_statement"].items()) {
    int64_t t = 0, n = 0;
    for (size_t i = 0; i < 9; ++i) {
      if (janus::shapes_nlvr2_statement_kind(data[i].sentence) != k) continue;
      ++n;
      t += data[i].label == 1 ? 1 : 0;
    }
    EXPECT_NEAR(r["metrics"]["by_statement_majority"][k].get<double>(), 100.0 * std::max(t, n - t) / n, 1e-9) << k;
  }
  // The results file is in the layout janus_eval score reads back, and scores the same accuracy.
  const auto res = json::parse(janus::read_file(r["outputs"]["results"].get<std::string>()));
  ASSERT_EQ(res.size(), 9u);
  std::vector<json> rows;
  for (size_t i = 0; i < 9; ++i) {
    rows.push_back({{"identifier", data[i].identifier}, {"label", data[i].label == 1 ? "True" : "False"}});
  }
  const auto scored = janus::eval::score_nlvr2(rows, res, {});
  EXPECT_NEAR(scored["metrics"]["accuracy"].get<double>(), r["metrics"]["accuracy"].get<double>(), 1e-9);
}

TEST(ModelEvalTasks, ClassifyHeadAndZeroShot) {
  const auto m = janus::eval::eval_model(loaded());
  const auto r = janus::eval::evaluate(m, "classify", world().folder, small_opts(0));
  expect_common(r, "classify", 12);
  EXPECT_EQ(r["counts"]["classes"], 4);
  expect_in(r["metrics"]["top1"], 0, 100, "top1");
  EXPECT_DOUBLE_EQ(r["metrics"]["top5"].get<double>(), 100.0);  // 4 classes: top-4 always hits
  expect_in(r["metrics"]["zero_shot"]["top1"], 0, 100, "zero-shot top1");
  // A Shapes directory has no classification layout: one-line InputError.
  EXPECT_THROW(janus::eval::evaluate(m, "classify", world().shapes, small_opts()), janus::InputError);
}

TEST(ModelEvalTasks, GenerateScoresGenevalAndWritesSheet) {
  const auto m = janus::eval::eval_model(loaded());
  auto o = small_opts(3);
  o.out_dir = world().root + "/gen_out";
  o.seed = 7;
  const auto r = janus::eval::evaluate(m, "generate", world().shapes, o);
  expect_common(r, "generate", 3);
  EXPECT_EQ(r["counts"]["geneval_scored"], 3);
  for (const auto* k : {"overall", "correct", "colour", "shape", "count", "position"}) {
    expect_in(r["metrics"]["geneval"][k], 0, 1, k);
  }
  // The tokenizer's ceiling: the check on reconstructions of the references, whatever the generator does.
  for (const auto* k : {"overall", "correct"}) expect_in(r["metrics"]["geneval_tokenizer_ceiling"][k], 0, 1, k);
  auto other = o;
  other.temperature = 0.0;
  const auto greedy = janus::eval::evaluate(m, "generate", world().shapes, other);
  EXPECT_EQ(greedy["metrics"]["geneval_tokenizer_ceiling"], r["metrics"]["geneval_tokenizer_ceiling"]);
  // The checker's own ceiling: the check on the ground-truth references, which it should accept (all but the odd
  // misread small shape), whatever the model.
  for (const auto* k : {"overall", "correct"}) expect_in(r["metrics"]["geneval_reference"][k], 0, 1, k);
  EXPECT_GE(r["metrics"]["geneval_reference"]["correct"].get<double>(), 2.0 / 3.0);
  EXPECT_EQ(greedy["metrics"]["geneval_reference"], r["metrics"]["geneval_reference"]);
  EXPECT_TRUE(fs::exists(r["outputs"]["sheet"].get<std::string>()));
  EXPECT_EQ(std::distance(fs::directory_iterator(r["outputs"]["images"].get<std::string>()), fs::directory_iterator{}),
            3);
  const auto again = janus::eval::evaluate(m, "generate", world().shapes, o);
  EXPECT_EQ(again["metrics"], r["metrics"]);
}

namespace {
// Best of 3 samples for each of 3 prompts, every candidate written under world().root + "/" + out, and the
// evaluation transform run_generate reads the candidates back through.
janus::eval::EvalOptions best_of_opts(const std::string& out, uint64_t seed, const std::string& by) {
  auto o = small_opts(3);
  o.out_dir = world().root + "/" + out;
  o.seed = seed;
  o.gen_candidates = 3;
  o.gen_rerank_by = by;
  return o;
}
janus::ImageTransform eval_transform(const janus::eval::EvalOptions& o) {
  janus::ImageTransform tf;
  tf.resize_short = loaded().model->options.image_size();
  tf.crop = loaded().model->options.image_size();
  tf.mean = o.mean;
  tf.std = o.std;
  return tf;
}
}  // namespace

// Best of N: the kept image is each prompt's highest-scoring candidate, the scores are those of the written
// candidates against their prompts, and a perfect scorer's result bounds both the kept and the first samples.
TEST(ModelEvalTasks, GenerateBestOfNKeepsTheHighestScoringCandidate) {
  const auto m = janus::eval::eval_model(loaded());
  auto o = best_of_opts("gen_best_out", 7, "caption");
  o.gen_rerank_contrastive_weight = 2.0;
  const auto r = janus::eval::evaluate(m, "generate", world().shapes, o);
  expect_common(r, "generate", 3);
  EXPECT_EQ(r["options"]["gen_candidates"], 3);
  EXPECT_EQ(r["options"]["gen_rerank_by"], "caption");
  const auto& met = r["metrics"];
  for (const auto* k : {"overall", "correct", "colour", "shape", "count", "position"}) {
    expect_in(met["geneval"][k], 0, 1, k);
    expect_in(met["geneval_first_sample"][k], 0, 1, k);
  }
  const double any = met["geneval_any_candidate"]["correct"].get<double>();
  EXPECT_GE(any, met["geneval"]["correct"].get<double>());
  EXPECT_GE(any, met["geneval_first_sample"]["correct"].get<double>());
  const auto prompts = json::parse(janus::read_file(world().shapes + "/geneval/prompts_val.json"));
  auto& model = *loaded().model;
  model.eval();
  ASSERT_EQ(r["best_of"].size(), 3u);
  const auto dir = r["outputs"]["images"].get<std::string>();
  const auto tf = eval_transform(o);
  for (size_t i = 0; i < 3; ++i) {
    const auto& b = r["best_of"][i];
    const auto scores = b["scores"].get<std::vector<double>>();
    ASSERT_EQ(scores.size(), 3u);
    const auto best = std::max_element(scores.begin(), scores.end()) - scores.begin();
    EXPECT_EQ(b["chosen"].get<int64_t>(), best);
    const auto id = prompts[i].contains("id") ? prompts[i]["id"].dump() : std::to_string(i);
    const auto kept = janus::decode_image_file(dir + "/" + id + ".png");
    std::vector<at::Tensor> xs;
    for (int64_t j = 0; j < 3; ++j) {
      const auto u8 = janus::decode_image_file(fmt::format("{}/{}_candidate{}.png", dir, id, j));
      if (j == best) {
        EXPECT_TRUE(at::equal(u8, kept)) << "prompt " << i;
      }
      std::mt19937_64 rng(0);
      xs.push_back(janus::transform_image(u8, tf, rng));
    }
    const auto b3 = loaded().tokenizer->encode_batch(
        std::vector<std::string>(3, prompts[i]["prompt"].get<std::string>()), o.max_text_len, true);
    torch::NoGradGuard ng;
    const auto again =
        janus::eval::image_text_scores(model, at::stack(xs), {b3.ids, b3.attention_mask.to(at::kBool)}, "caption", 2.0);
    for (int64_t j = 0; j < 3; ++j) EXPECT_NEAR(again[j].item<double>(), scores[static_cast<size_t>(j)], 1e-3);
  }
  EXPECT_EQ(janus::eval::evaluate(m, "generate", world().shapes, o)["metrics"], met);  // deterministic
  o.gen_candidates = 0;
  EXPECT_THROW(janus::eval::evaluate(m, "generate", world().shapes, o), janus::InputError);
}

// gen_rerank_by vqa: each candidate's score is the sum, over the questions its prompt implies, of log sigmoid(the VQA
// head's logit for the implied answer), questions whose answer the head lacks left out; the kept image is the best.
TEST(ModelEvalTasks, GenerateBestOfNByTheAnswersThePromptImplies) {
  const auto m = janus::eval::eval_model(loaded());
  auto o = best_of_opts("gen_vqa_out", 5, "vqa");
  const auto r = janus::eval::evaluate(m, "generate", world().shapes, o);
  expect_common(r, "generate", 3);
  EXPECT_EQ(r["options"]["gen_rerank_by"], "vqa");
  const auto prompts = json::parse(janus::read_file(world().shapes + "/geneval/prompts_val.json"));
  auto& model = *loaded().model;
  model.eval();
  const auto dir = r["outputs"]["images"].get<std::string>();
  const auto tf = eval_transform(o);
  ASSERT_EQ(r["best_of"].size(), 3u);
  int64_t asked = 0;
  for (size_t i = 0; i < 3; ++i) {
    const auto scores = r["best_of"][i]["scores"].get<std::vector<double>>();
    ASSERT_EQ(scores.size(), 3u);
    EXPECT_EQ(r["best_of"][i]["chosen"].get<int64_t>(),
              std::max_element(scores.begin(), scores.end()) - scores.begin());
    const auto id = prompts[i].contains("id") ? prompts[i]["id"].dump() : std::to_string(i);
    const auto questions =
        janus::shapes_prompt_questions(janus::PromptSpec::from_prompt(prompts[i]["prompt"].get<std::string>()));
    for (int64_t j = 0; j < 3; ++j) {
      std::mt19937_64 rng(0);
      const auto x =
          janus::transform_image(janus::decode_image_file(fmt::format("{}/{}_candidate{}.png", dir, id, j)), tf, rng);
      double want = 0;
      for (const auto& q : questions) {
        const auto a = std::find(kAnswers.begin(), kAnswers.end(), q.answer);
        if (a == kAnswers.end()) continue;
        ++asked;
        const auto b = loaded().tokenizer->encode_batch({q.question}, o.max_text_len, true);
        torch::NoGradGuard ng;
        for (const auto& mod : model.modules()) {  // the LSH rotations evaluation draws for every batch
          if (auto* l = dynamic_cast<janus::LSHAttentionImpl*>(mod.get())) l->reset();
        }
        const auto logit =
            model.vqa(x.unsqueeze(0), {b.ids, b.attention_mask.to(at::kBool)}).logits[0][a - kAnswers.begin()];
        want += at::log_sigmoid(logit).item<double>();
      }
      EXPECT_NEAR(scores[static_cast<size_t>(j)], want, 1e-3) << "prompt " << i << " candidate " << j;
    }
  }
  EXPECT_GT(asked, 0);
  // A prompt outside the Shapes grammar is named before any sampling.
  const auto bad = world().root + "/free_prompts.json";
  janus::write_file_atomic(bad, R"([{"prompt": "a photo of a red circle"}, {"prompt": "a dog on a sofa"}])");
  EXPECT_THAT([&] { janus::eval::evaluate(m, "generate", bad, o); },
              testing::ThrowsMessage<janus::InputError>(testing::HasSubstr("shapes prompt \"a dog on a sofa\"")));
  o.gen_rerank_by = "vqa_head";
  EXPECT_THAT([&] { janus::eval::evaluate(m, "generate", world().shapes, o); },
              testing::ThrowsMessage<janus::InputError>(testing::HasSubstr("gen_rerank_by 'vqa_head'")));
}

TEST(ModelEvalTasks, ReconPsnrSsimAndSheet) {
  const auto m = janus::eval::eval_model(loaded());
  auto o = small_opts(6);
  o.out_dir = world().root + "/recon_out";
  const auto r = janus::eval::evaluate(m, "recon", world().shapes, o);
  expect_common(r, "recon", 6);
  expect_in(r["metrics"]["psnr"], 0, 100, "psnr");
  expect_in(r["metrics"]["ssim"], -1, 1, "ssim");
  EXPECT_TRUE(fs::exists(r["outputs"]["sheet"].get<std::string>()));
  // Batching does not change the numbers.
  o.batch_size = 5;
  const auto b = janus::eval::evaluate(m, "recon", world().shapes, o);
  EXPECT_NEAR(b["metrics"]["psnr"].get<double>(), r["metrics"]["psnr"].get<double>(), 1e-4);
}

TEST(ModelEvalTasks, TrainerEntryRestoresTrainingModeAndMatchesRunEntry) {
  auto& run = loaded();
  run.model->train();
  const auto r = janus::eval::evaluate(*run.model, *run.tokenizer, run.answers, "nlvr2", world().shapes, small_opts(4));
  EXPECT_TRUE(run.model->is_training());
  run.model->eval();
  const auto s = janus::eval::evaluate(janus::eval::eval_model(run), "nlvr2", world().shapes, small_opts(4));
  EXPECT_EQ(r["metrics"], s["metrics"]);
  EXPECT_FALSE(run.model->is_training());
}

TEST(ModelEvalTasks, SupportedTasksAndBadLayouts) {
  EXPECT_EQ(janus::eval::supported_tasks(world().shapes, "val"),
            (std::vector<std::string>{"retrieval", "caption", "vqa", "nlvr2", "generate", "recon"}));
  EXPECT_EQ(janus::eval::supported_tasks(world().folder, "val"), (std::vector<std::string>{"classify", "recon"}));
  EXPECT_TRUE(janus::eval::supported_tasks(world().shapes, "nosuchsplit").empty());
  EXPECT_THROW(janus::eval::resolve_task_data("vqa", world().root + "/nope", "val"), janus::InputError);
  EXPECT_THROW(janus::eval::resolve_task_data("segment", world().shapes, "val"), janus::InputError);
  EXPECT_THROW(janus::eval::resolve_task_data("caption", world().folder, "val"), janus::InputError);
}

// ---- the tool ----

TEST(ModelEvalTool, AllTasksOnShapesWithLimitTableAndJson) {
  const auto out = world().root + "/all.json";
  const auto r = eval_tool("--task all --run " + quote(world().run) + " --data " + quote(world().shapes) +
                           " --limit 3 --batch-size 3 --max-len 8 --out " + quote(out) + " --out-dir " +
                           quote(world().root + "/all_out"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("retrieval (3 samples"));
  EXPECT_THAT(r.output, HasSubstr("Bleu_4"));
  const auto j = json::parse(janus::read_file(out));
  EXPECT_EQ(j["task"], "all");
  for (const auto* t : {"retrieval", "caption", "vqa", "nlvr2", "generate", "recon"}) {
    ASSERT_TRUE(j["results"].contains(t)) << t;
    EXPECT_EQ(j["results"][t]["counts"]["samples"], 3) << t;
    EXPECT_EQ(j["counts"][t], 3) << t;
  }
  EXPECT_FALSE(j["results"].contains("classify"));
  EXPECT_TRUE(fs::exists(world().root + "/all_out/generate_sheet.png"));
  EXPECT_TRUE(fs::exists(world().root + "/all_out/recon_sheet.png"));
  // compare works on two such files (same numbers: deterministic, and batch size changes nothing but the
  // generator's sampling streams, which are drawn per generate_images call).
  const auto out2 = world().root + "/all2.json";
  ASSERT_EQ(eval_tool("--task all --run " + quote(world().run) + " --data " + quote(world().shapes) +
                      " --limit 3 --batch-size 2 --max-len 8 --out " + quote(out2))
                .exit_code,
            0);
  const auto cmp = eval_tool("compare " + quote(out) + " " + quote(out2) + " --out " + quote(world().root + "/d.json"));
  ASSERT_EQ(cmp.exit_code, 0) << cmp.output;
  const auto d = json::parse(janus::read_file(world().root + "/d.json"))["deltas"];
  EXPECT_GT(d.size(), 20u);
  for (const auto& [k, row] : d.items()) {
    if (k.rfind("generate/", 0) == 0) continue;
    EXPECT_NEAR(row["delta"].get<double>(), 0.0, 1e-3) << k;
  }
}

TEST(ModelEvalTool, SingleTaskLimitAndConfigWeightsMode) {
  const auto out = world().root + "/nlvr2.json";
  const auto r = eval_tool("--task nlvr2 --run " + quote(world().run) + " --data " +
                           quote(world().shapes + "/nlvr2/val.jsonl") + " --limit 5 --out " + quote(out));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = json::parse(janus::read_file(out));
  EXPECT_EQ(j["task"], "nlvr2");
  EXPECT_EQ(j["counts"]["samples"], 5);
  EXPECT_EQ(j["inputs"]["layout"], "nlvr2");
  // --config + --weights: a config naming the tiny flavour at 32 px with the same heads and tokenizer.
  const auto cfg = world().root + "/eval.yaml";
  janus::write_file_atomic(cfg,
                           "model:\n  flavour: tiny\n  image_size: 32\n  num_answers: 10\n  num_classes: 4\n"
                           "data:\n  tokenizer: " +
                               world().run + "/tokenizer.model\n");
  const auto out2 = world().root + "/nlvr2b.json";
  const auto c = eval_tool("--task nlvr2 --config " + quote(cfg) + " --weights " +
                           quote(world().run + "/final/model.safetensors") + " --data " + quote(world().shapes) +
                           " --limit 5 --out " + quote(out2));
  ASSERT_EQ(c.exit_code, 0) << c.output;
  EXPECT_EQ(json::parse(janus::read_file(out2))["metrics"], j["metrics"]);
}

TEST(ModelEvalTool, BadInputExitsTwoWithOneLine) {
  const auto& w = world();
  const auto empty_run = w.root + "/empty_run";
  fs::create_directories(empty_run);
  struct Case {
    std::string args, message;
  };
  const std::vector<Case> cases{
      {"--task caption --run " + quote(empty_run) + " --data " + quote(w.shapes), "model.json"},
      {"--task caption --run " + quote(w.root + "/missing") + " --data " + quote(w.shapes), "does not exist"},
      {"--task caption --run " + quote(w.run) + " --data " + quote(w.folder), "caption"},
      {"--task vqa --run " + quote(w.run) + " --data " + quote(w.shapes + "/captions_val.json"), "questions"},
      {"--task classify --run " + quote(w.run) + " --data " + quote(w.shapes), "classification"},
      {"--task segment --run " + quote(w.run) + " --data " + quote(w.shapes), "unknown task"},
      {"--task caption --run " + quote(w.run), "--data"},
      {"--task caption --data " + quote(w.shapes), "--run"},
      {"--task all --run " + quote(w.run) + " --data " + quote(w.shapes) + " --split test", "fits no task"},
      {"--task caption --run " + quote(w.run) + " --data " + quote(w.shapes) + " --limit -1", "limit"},
  };
  for (const auto& c : cases) {
    const auto r = eval_tool(c.args);
    EXPECT_EQ(r.exit_code, 2) << c.args << "\n" << r.output;
    EXPECT_THAT(r.output, HasSubstr(c.message)) << c.args;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << c.args << "\n" << r.output;
  }
}
