// The three stage tasks end to end through the Trainer on a small generated Shapes set (tiny flavour, 32 px):
// every loss part present and finite, validation records and sample sheets, init_from chaining, exact resume of a
// multi-stream stage-3 run, load_run on the results, and clear errors for bad data configs.
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "janus/core/error.h"
#include "janus/core/fs.h"
#include "janus/data/shapes.h"
#include "janus/eval/model_eval.h"
#include "janus/io/safetensors.h"
#include "janus/model/run.h"
#include "janus/train/stage_task.h"
#include "janus/train/trainer.h"
#include "test_util.h"

namespace fs = std::filesystem;
namespace jt = janus::train;
using ::testing::HasSubstr;

namespace {

std::string g_shapes;

std::string shapes_dir() {
  if (g_shapes.empty()) {
    g_shapes = janus::test::make_shapes_dir(janus::test::temp_dir("stage_shapes") + "/shapes", 48, 12);
    jt::build_shapes_tokenizer(g_shapes, 128, 0);
  }
  return g_shapes;
}

janus::Config stage_config(int stage, const std::string& run_dir, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> sets = {"model.flavour=tiny",
                                   "model.image_size=16",
                                   "model.max_text_len=24",
                                   "data.format=shapes",
                                   "data.train=" + shapes_dir(),
                                   "data.batch_size=4",
                                   "data.num_workers=1",
                                   "train.stage=" + std::to_string(stage),
                                   "train.steps=1",
                                   "train.threads=1",
                                   "train.device=cpu",
                                   "train.run_dir=" + run_dir,
                                   "train.disc_start=0",
                                   "train.disc_layers=2",
                                   "train.disc_ndf=8",
                                   "optim.lr=1e-3",
                                   "schedule.warmup_steps=0",
                                   "checkpoint.every_steps=0",
                                   "log.every_steps=1",
                                   "log.tensorboard=false",
                                   "eval.every_steps=1",
                                   "eval.limit=4",
                                   "eval.batch_size=4",
                                   "eval.samples=4"};
  sets.insert(sets.end(), extra.begin(), extra.end());
  return janus::Config::from_yaml("", sets, "<test>");
}

std::vector<nlohmann::json> read_metrics(const std::string& run_dir) {
  std::ifstream f(run_dir + "/metrics.jsonl");
  std::vector<nlohmann::json> out;
  std::string line;
  while (std::getline(f, line)) {
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  }
  return out;
}

// Every key is present in some training record with a finite value.
void expect_parts(const std::vector<nlohmann::json>& recs, const std::vector<std::string>& keys) {
  for (const auto& k : keys) {
    bool found = false;
    for (const auto& r : recs) {
      if (r.contains(k) && !r.contains("kind")) {
        found = true;
        ASSERT_TRUE(r[k].is_number()) << k << " is not finite in " << r.dump();
      }
    }
    EXPECT_TRUE(found) << "loss part '" << k << "' never logged";
  }
}

bool has_val_record(const std::vector<nlohmann::json>& recs, const std::string& key) {
  for (const auto& r : recs) {
    if (r.value("kind", "") == "val" && r.contains(key) && r[key].is_number()) return true;
  }
  return false;
}

// Every validation record's value of `key` (empty when never logged).
std::vector<double> val_values(const std::vector<nlohmann::json>& recs, const std::string& key) {
  std::vector<double> out;
  for (const auto& r : recs) {
    if (r.value("kind", "") == "val" && r.contains(key) && r[key].is_number()) out.push_back(r[key].get<double>());
  }
  return out;
}

jt::TrainResult train(const janus::Config& cfg, const std::string& resume = "") {
  jt::StageTask task(cfg);
  jt::Trainer trainer(cfg, task);
  return trainer.run(resume);
}

void expect_same_weights(const std::string& a, const std::string& b, const std::string& prefix_filter = "") {
  const auto ta = janus::load_safetensors(a), tb = janus::load_safetensors(b);
  if (prefix_filter.empty()) {
    ASSERT_EQ(ta.size(), tb.size());
  }
  int64_t compared = 0;
  for (const auto& [k, v] : ta) {
    if (!prefix_filter.empty() && k.rfind(prefix_filter, 0) != 0) continue;
    ASSERT_TRUE(tb.count(k)) << k;
    EXPECT_TRUE(at::equal(v, tb.at(k))) << k << " differs";
    ++compared;
  }
  EXPECT_GT(compared, 0);
}

// One chain stage1 -> stage2 -> stage3 shared by the tests below (each stage a few steps).
struct Chain {
  std::string root, s1, s2, s3;
};
const Chain& chain() {
  static Chain c = [] {
    Chain x;
    x.root = janus::test::temp_dir("stage_chain");
    x.s1 = x.root + "/s1";
    x.s2 = x.root + "/s2";
    x.s3 = x.root + "/s3";
    train(stage_config(1, x.s1));
    // eval.tasks: validation also runs janus::eval::evaluate (retrieval for stage 2, VQA + captioning for stage 3).
    train(stage_config(
        2, x.s2,
        {"train.init_from=" + x.s1, "train.tasks=[contrastive, itm, caption, nlvr2]", "eval.tasks=[retrieval]"}));
    train(stage_config(3, x.s3, {"train.init_from=" + x.s2, "train.freeze=[vq.*]", "eval.tasks=[vqa, caption]"}));
    return x;
  }();
  return c;
}

}  // namespace

TEST(StageTask, Stage1SimmimMlmVqWithDiscriminator) {
  const auto& c = chain();
  const auto recs = read_metrics(c.s1);
  expect_parts(recs, {"loss", "simmim", "mlm", "rec", "vq", "g_adv", "d_weight", "disc/d_loss", "disc/logits_real"});
  EXPECT_TRUE(has_val_record(recs, "val/psnr"));
  EXPECT_TRUE(has_val_record(recs, "val/simmim"));
  EXPECT_TRUE(fs::exists(c.s1 + "/samples/step_000000001.png"));
  // Run contract: load_run reads the stage-1 run (the training-only discriminator keys are dropped).
  const auto run = janus::load_run(c.s1);
  EXPECT_EQ(run.model->options.num_answers, 0);
  EXPECT_TRUE(run.answers.empty());
  const auto weights = janus::load_safetensors(c.s1 + "/final/model.safetensors");
  bool has_disc = false;
  for (const auto& [k, v] : weights) has_disc = has_disc || k.rfind("vq_disc.", 0) == 0;
  EXPECT_TRUE(has_disc) << "the discriminator is part of the checkpointed model";
}

// train.vq_rec_loss picks the tokenizer's reconstruction loss. Same seed and batch, so the first step's L1 and L2 are
// the same numbers in all three runs: l1's `rec` is l2's `rec_l1`, and l1+l2's `rec` is their sum.
TEST(StageTask, Stage1ReconstructionLossFollowsVqRecLoss) {
  const auto root = janus::test::temp_dir("stage_rec_loss");
  auto first = [&](const std::string& kind) {
    const auto dir = root + "/" + kind;
    train(stage_config(1, dir, {"train.tasks=[vq]", "train.disc_start=-1", "eval.every_steps=0",
                                "train.vq_rec_loss=" + kind}));
    for (const auto& r : read_metrics(dir)) {
      if (!r.contains("kind") && r.contains("rec")) return r;
    }
    ADD_FAILURE() << kind << ": no training record with `rec`";
    return nlohmann::json::object();
  };
  const auto l1 = first("l1"), l2 = first("l2"), both = first("l1+l2");
  ASSERT_TRUE(l2.contains("rec_l1") && both.contains("rec_l1"));
  EXPECT_FALSE(l1.contains("rec_l1"));
  const double a = l1["rec"].get<double>(), b = l2["rec"].get<double>();
  EXPECT_NEAR(l2["rec_l1"].get<double>(), a, 1e-6);
  EXPECT_NEAR(both["rec"].get<double>(), a + b, 1e-5);
  EXPECT_GT(std::abs(a - b), 1e-4) << "L1 and L2 of an untrained tokenizer should differ";
  EXPECT_THROW(stage_config(1, root + "/bad", {"train.vq_rec_loss=l3"}), janus::InputError);
}

TEST(StageTask, Stage2ContrastiveItmCaptionNlvr2FromStage1) {
  const auto& c = chain();
  const auto recs = read_metrics(c.s2);
  expect_parts(recs, {"loss", "contrastive", "itm", "itm_acc", "caption", "nlvr2", "logit_scale"});
  EXPECT_TRUE(has_val_record(recs, "val/i2t_r1_in_batch"));
  // eval.tasks=[retrieval]: R@K from janus::eval::evaluate on the val split, percentages, at every validation.
  for (const auto* key : {"val/retrieval/txt_r1", "val/retrieval/img_r1", "val/retrieval/r_mean"}) {
    const auto v = val_values(recs, key);
    ASSERT_FALSE(v.empty()) << key << " never logged";
    for (const double x : v) {
      EXPECT_GE(x, 0.0) << key;
      EXPECT_LE(x, 100.0) << key;
    }
  }
  EXPECT_LE(val_values(recs, "val/retrieval/txt_r1")[0], val_values(recs, "val/retrieval/txt_r5")[0]);
  // The same numbers as janus_eval's path (load_run + evaluate) on the final weights: the last validation ran on them.
  const auto run = janus::load_run(c.s2);
  janus::eval::EvalOptions eo;
  eo.limit = 4;
  eo.batch_size = 4;
  eo.max_text_len = 24;
  eo.progress = [](const janus::eval::EvalProgress&) {};
  const auto r = janus::eval::evaluate(janus::eval::eval_model(run), "retrieval", shapes_dir(), eo);
  for (const auto* key : {"txt_r1", "txt_r5", "img_r1", "r_mean"}) {
    EXPECT_DOUBLE_EQ(val_values(recs, std::string("val/retrieval/") + key).back(), r["metrics"][key].get<double>())
        << key;
  }
  // init_from: stage 2 gives the VQ tokenizer no gradient, so it must still hold stage 1's trained weights.
  expect_same_weights(c.s1 + "/final/model.safetensors", c.s2 + "/final/model.safetensors", "vq.");
  EXPECT_FALSE(janus::load_safetensors(c.s2 + "/final/model.safetensors").count("vq_disc.main.0.weight"));
}

TEST(StageTask, Stage3GenerationVqaNlvr2WithGradNormFromStage2) {
  const auto& c = chain();
  const auto recs = read_metrics(c.s3);
  expect_parts(recs, {"loss", "t2i", "caption", "vqa", "nlvr2", "vqa_acc", "nlvr2_acc", "w_t2i", "w_caption", "w_vqa",
                      "w_nlvr2"});
  EXPECT_TRUE(has_val_record(recs, "val/vqa_acc"));
  EXPECT_TRUE(has_val_record(recs, "val/nlvr2_acc"));
  // eval.tasks=[vqa, caption]: VQA accuracy (head) and CIDEr-D of generated captions.
  for (const auto& [key, hi] : std::vector<std::pair<std::string, double>>{
           {"val/vqa/overall", 100.0}, {"val/caption/CIDEr", 10.0}, {"val/caption/Bleu_4", 1.0}}) {
    const auto v = val_values(recs, key);
    ASSERT_FALSE(v.empty()) << key << " never logged";
    for (const double x : v) {
      EXPECT_GE(x, 0.0) << key;
      EXPECT_LE(x, hi) << key;
    }
  }
  EXPECT_TRUE(fs::exists(c.s3 + "/samples/step_000000001.png"));
  // GradNorm keeps the weights summing to the number of tasks.
  for (const auto& r : recs) {
    if (!r.contains("w_t2i")) continue;
    const double s = r["w_t2i"].get<double>() + r["w_caption"].get<double>() + r["w_vqa"].get<double>() +
                     r["w_nlvr2"].get<double>();
    EXPECT_NEAR(s, 4.0, 1e-3);
  }
  const auto run = janus::load_run(c.s3);
  EXPECT_GT(run.model->options.num_answers, 1);
  EXPECT_EQ(static_cast<int64_t>(run.answers.size()), run.model->options.num_answers);
  // Frozen VQ: identical to stage 2's (and so to stage 1's).
  expect_same_weights(c.s2 + "/final/model.safetensors", c.s3 + "/final/model.safetensors", "vq.");
}

// Stage 3 can keep stage 2's contrastive loss: it is logged and balanced with the others, and it is what moves the
// projections (text_proj gets no gradient from any other stage-3 loss, so the plain chain leaves it unchanged).
TEST(StageTask, Stage3KeepsTheContrastiveLossWhenListed) {
  const auto& c = chain();
  const auto dir = c.root + "/s3c";
  train(stage_config(3, dir,
                     {"train.init_from=" + c.s2, "train.freeze=[vq.*]", "train.steps=2",
                      "train.tasks=[t2i, caption, vqa, nlvr2, contrastive]"}));
  const auto recs = read_metrics(dir);
  expect_parts(recs, {"contrastive", "logit_scale", "w_contrastive", "t2i", "vqa"});
  EXPECT_TRUE(has_val_record(recs, "val/contrastive"));
  EXPECT_TRUE(has_val_record(recs, "val/i2t_r1_in_batch"));
  for (const auto& r : recs) {
    if (!r.contains("w_contrastive")) continue;
    double s = 0;
    for (const auto* k : {"w_t2i", "w_caption", "w_vqa", "w_nlvr2", "w_contrastive"}) s += r[k].get<double>();
    EXPECT_NEAR(s, 5.0, 1e-3);
  }
  const auto key = "text_proj.weight";
  const auto s2 = janus::load_safetensors(c.s2 + "/final/model.safetensors").at(key);
  EXPECT_TRUE(at::equal(s2, janus::load_safetensors(c.s3 + "/final/model.safetensors").at(key)));
  EXPECT_FALSE(at::equal(s2, janus::load_safetensors(dir + "/final/model.safetensors").at(key)));
}

// train.t2i_uncond_prob: at 1 every text->image prompt is the unconditional prompt that classifier-free guidance
// samples against (all uncond_token), at 0 none is; evaluation never drops prompts.
TEST(StageTask, Stage3TextToImagePromptDropoutForGuidance) {
  const auto root = janus::test::temp_dir("stage_uncond");
  for (const double p : {0.0, 1.0}) {
    const auto cfg =
        stage_config(3, root + "/p" + std::to_string(static_cast<int>(p)),
                     {"train.tasks=[t2i]", "train.loss_balance=fixed", "train.t2i_uncond_prob=" + std::to_string(p)});
    jt::StageTask task(cfg);
    auto model = task.janus_model();
    const auto batch = task.data().next();
    const std::string s = batch.tensors.count("gen.images") ? "gen" : "cap";
    const auto ids = batch.at(s + ".ids");
    at::Tensor codes;
    {
      torch::NoGradGuard ng;
      codes = model->vq->encode(batch.at(s + ".images")).flatten(1);
    }
    const auto uncond = at::full_like(ids, model->image_gen->options.uncond_token());
    ASSERT_FALSE(at::equal(ids, uncond));
    jt::StepContext ctx;
    const auto out = task.compute_loss(batch, ctx);
    const double got = out.parts.at("t2i").item<double>();
    const double cond = model->image_code_logits(ids, codes).loss.item<double>();
    const double unc = model->image_code_logits(uncond, codes).loss.item<double>();
    ASSERT_GT(std::abs(cond - unc), 1e-6) << "the prompt does not change the loss";
    EXPECT_NEAR(got, p == 0.0 ? cond : unc, 1e-6) << "t2i_uncond_prob " << p;
    ctx.training = false;  // validation: always conditional
    EXPECT_NEAR(task.compute_loss(batch, ctx).parts.at("t2i").item<double>(), cond, 1e-6);
  }
}

// train.task_every: a loss joins only the steps that are a multiple of its period; validation computes every loss;
// the log averages each loss over the steps it ran on. Bad values are refused when the task is built.
TEST(StageTask, Stage3TaskEverySkipsLossesOnOtherSteps) {
  const auto& c = chain();
  const auto root = janus::test::temp_dir("stage_task_every");
  const std::vector<std::string> base{"train.init_from=" + c.s2, "train.freeze=[vq.*]", "train.loss_balance=fixed",
                                      "train.tasks=[t2i, caption, vqa]"};
  auto with = [&](std::vector<std::string> extra) {
    auto v = base;
    v.insert(v.end(), extra.begin(), extra.end());
    return v;
  };
  {
    jt::StageTask task(stage_config(3, root + "/direct", with({"train.task_every=[1, 2, 3]"})));
    const auto batch = task.data().next();
    jt::StepContext ctx;
    for (const int64_t step : {0, 1, 2, 3, 6}) {
      ctx.step = step;
      const auto out = task.compute_loss(batch, ctx);
      EXPECT_TRUE(out.parts.count("t2i")) << step;
      EXPECT_EQ(out.parts.count("caption") == 1, step % 2 == 0) << step;
      EXPECT_EQ(out.parts.count("vqa") == 1, step % 3 == 0) << step;
      double sum = 0;
      for (const auto* k : {"t2i", "caption", "vqa"}) {
        if (out.parts.count(k)) sum += out.parts.at(k).item<double>();
      }
      EXPECT_NEAR(out.total.item<double>(), sum, 1e-4 * std::max(1.0, sum)) << step;
    }
    ctx.step = 1;
    ctx.training = false;  // validation: every loss
    const auto val = task.compute_loss(batch, ctx);
    EXPECT_TRUE(val.parts.count("caption") && val.parts.count("vqa"));
  }
  // End to end: 4 steps logged every 2 -> caption averaged over its 1 step per interval, not halved.
  const auto dir = root + "/run";
  train(stage_config(3, dir,
                     with({"train.task_every=[1, 2, 4]", "train.steps=4", "log.every_steps=2", "eval.every_steps=0"})));
  int n = 0;
  for (const auto& r : read_metrics(dir)) {
    if (r.contains("kind") || !r.contains("t2i")) continue;
    ++n;
    ASSERT_TRUE(r.contains("caption"));
    EXPECT_GT(r["caption"].get<double>(), 1.0) << "caption averaged over steps it did not run on";
    EXPECT_EQ(r.contains("vqa"), r["step"].get<int64_t>() == 2) << r.dump();
  }
  EXPECT_EQ(n, 2);
  auto error_of = [&](std::vector<std::string> extra, int stage = 3) {
    try {
      jt::StageTask task(stage_config(stage, root + "/bad", stage == 3 ? with(extra) : extra));
    } catch (const janus::InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_THAT(error_of({"train.task_every=[1, 2]"}), HasSubstr("train.task_every has 2 values but the stage trains 3"));
  EXPECT_THAT(error_of({"train.task_every=[1, 1, 1]", "train.loss_balance=gradnorm"}),
              HasSubstr("train.task_every needs train.loss_balance: fixed"));
  EXPECT_THAT(error_of({"train.task_every=[1, 1, 1]"}, 1), HasSubstr("only stage 3 schedules its losses by step"));
  EXPECT_THROW(stage_config(3, root + "/bad", with({"train.task_every=[1, 0, 1]"})), janus::ConfigError);
}

// An eval.tasks entry the validation data cannot serve stops the run when the task is built, not at step N.
TEST(StageTask, EvalTaskWithoutValidationDataIsRejectedAtStart) {
  const auto root = janus::test::temp_dir("stage_evalbad");
  try {
    jt::StageTask task(stage_config(2, root + "/r", {"eval.tasks=[classify]"}));
    FAIL() << "no error";
  } catch (const janus::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("classify"), std::string::npos) << e.what();
  }
}

namespace {
// Stops the run (like SIGTERM) after `stop_after` applied steps.
class StoppingTask : public jt::StageTask {
 public:
  StoppingTask(const janus::Config& cfg, int64_t stop_after) : StageTask(cfg), stop_after_(stop_after) {}
  void after_step(const jt::StepContext& ctx) override {
    StageTask::after_step(ctx);
    if (ctx.step + 1 == stop_after_) jt::request_stop();
  }

 private:
  int64_t stop_after_;
};
}  // namespace

void exact_resume_case(const std::string& tag, const std::vector<std::string>& more) {
  const auto root = janus::test::temp_dir("stage_resume_" + tag);
  const std::vector<std::string> extra = {"train.steps=3", "eval.every_steps=0", "checkpoint.every_steps=0",
                                          "data.num_workers=2", "train.grad_accum=2"};
  std::vector<std::string> all = extra;
  all.insert(all.end(), more.begin(), more.end());
  train(stage_config(3, root + "/full", all));
  {
    const auto cfg = stage_config(3, root + "/split", all);
    StoppingTask task(cfg, 1);
    jt::Trainer trainer(cfg, task);
    const auto r = trainer.run();
    jt::clear_stop_request();
    ASSERT_TRUE(r.stopped);
    ASSERT_EQ(r.step, 1);
  }
  const auto r2 = train(stage_config(3, root + "/split", all), "auto");
  EXPECT_FALSE(r2.stopped);
  EXPECT_EQ(r2.step, 3);
  expect_same_weights(root + "/full/final/model.safetensors", root + "/split/final/model.safetensors");
}

// Resume with GradNorm balancing (its Adam state, L_i(0) and pending gradient are checkpointed).
TEST(StageTask, Stage3ExactResumeAfterStopGradNorm) { exact_resume_case("gn", {}); }
// Resume with fixed weights: data cursors of four streams, RNG, optimiser.
TEST(StageTask, Stage3ExactResumeAfterStopFixedWeights) { exact_resume_case("fixed", {"train.loss_balance=fixed"}); }

TEST(StageTask, ShapesTokenizerIsDeterministicAndCoversTheCorpus) {
  const auto dir = shapes_dir();
  const auto tok = janus::Tokenizer::load(dir + "/tokenizer.model");
  EXPECT_GT(tok.vocab_size(), 20);
  // No unknown pieces on the benchmark's own sentences.
  std::ifstream f(dir + "/corpus.txt");
  std::string line;
  int n = 0;
  while (std::getline(f, line) && n < 200) {
    for (auto id : tok.encode(line, false, false)) ASSERT_NE(id, janus::SpecialTokens::unk) << line;
    ++n;
  }
  const auto other = janus::test::temp_dir("stage_tok2");
  fs::copy(dir, other + "/shapes", fs::copy_options::recursive);
  fs::remove(other + "/shapes/tokenizer.model");
  jt::build_shapes_tokenizer(other + "/shapes", 128, 0);
  // The .model embeds the corpus path, so compare the learned pieces and scores (tokenizer.vocab).
  EXPECT_EQ(janus::test::run("cmp " + janus::test::quote(dir + "/tokenizer.vocab") + " " +
                             janus::test::quote(other + "/shapes/tokenizer.vocab"))
                .exit_code,
            0);
}

// The default Shapes vocabulary (256 pieces, BPE) keeps every word whole, so no sentence comes near the quickstart's
// 24-token limit (the unigram tokenizer it replaced spelled words letter by letter: 21 % of the captions were cut).
TEST(StageTask, ShapesTokenizerKeepsWordsWhole) {
  const auto whole = janus::test::temp_dir("stage_tok_whole");
  fs::copy(shapes_dir(), whole + "/shapes", fs::copy_options::recursive);
  fs::remove(whole + "/shapes/tokenizer.model");
  jt::build_shapes_tokenizer(whole + "/shapes", 256, 0);
  const auto tok = janus::Tokenizer::load(whole + "/shapes/tokenizer.model");
  std::ifstream f(whole + "/shapes/corpus.txt");
  std::string line;
  size_t longest = 0, lines = 0;
  while (std::getline(f, line)) {
    size_t words = 0, punct = 0;
    std::istringstream ws(line);
    for (std::string w; ws >> w;) ++words;
    for (char c : line) punct += (c == ',' || c == ':' || c == '?' || c == '.') ? 1 : 0;
    const auto n = tok.encode(line, false, false).size();
    EXPECT_LE(n, words + punct) << "a word was split: " << line;
    longest = std::max(longest, n + 2);
    ++lines;
  }
  EXPECT_GT(lines, 100u);
  EXPECT_LE(longest, 22u);
}

TEST(StageTask, BadDataConfigsNameTheProblem) {
  const auto root = janus::test::temp_dir("stage_bad");
  // Shapes directory without a tokenizer.
  const auto copy = root + "/shapes";
  fs::copy(shapes_dir(), copy, fs::copy_options::recursive);
  fs::remove(copy + "/tokenizer.model");
  try {
    jt::StageTask t(stage_config(1, root + "/r1", {"data.train=" + copy}));
    FAIL() << "expected an InputError";
  } catch (const janus::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("janus_data shapes"), std::string::npos) << e.what();
  }
  // VQA requested but the Shapes directory has no VQA files.
  fs::copy_file(shapes_dir() + "/tokenizer.model", copy + "/tokenizer.model");
  janus::remove_tree(copy + "/vqa");
  try {
    jt::StageTask t(stage_config(3, root + "/r3", {"data.train=" + copy, "train.tasks=[t2i, vqa]"}));
    FAIL() << "expected an InputError";
  } catch (const janus::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("vqa"), std::string::npos) << e.what();
  }
  // An explicit VQA questions file whose annotations file is missing.
  const auto q = root + "/questions_x.json";
  fs::copy_file(shapes_dir() + "/vqa/questions_train.json", q);
  try {
    jt::StageTask t(stage_config(3, root + "/r4", {"data.vqa_train=" + q}));
    FAIL() << "expected an InputError";
  } catch (const janus::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("annotations_x.json"), std::string::npos) << e.what();
  }
  // A loss that does not belong to the stage.
  EXPECT_THROW(jt::StageTask(stage_config(1, root + "/r5", {"train.tasks=[vqa]"})), janus::InputError);
}

// train.text_negatives: stage 2 and stage 3 train the contrastive loss with one edited caption per row as an extra
// image->text candidate and log how often the true caption wins; a run without the contrastive task, or on data
// without the built-in groups, is refused at start.
TEST(StageTask, TextNegativesInTheContrastiveLoss) {
  const auto& c = chain();
  const auto dir2 = c.root + "/s2neg", dir3 = c.root + "/s3neg";
  train(stage_config(
      2, dir2,
      {"train.init_from=" + c.s1, "train.tasks=[contrastive, caption]", "train.steps=2", "train.text_negatives=true"}));
  auto recs = read_metrics(dir2);
  expect_parts(recs, {"contrastive", "text_neg_acc"});
  train(stage_config(3, dir3,
                     {"train.init_from=" + c.s2, "train.freeze=[vq.*]", "train.tasks=[t2i, contrastive]",
                      "train.loss_balance=fixed", "train.text_negatives=true",
                      "train.text_negative_groups=[\"red yellow green cyan blue magenta\", \"left right\"]"}));
  expect_parts(read_metrics(dir3), {"contrastive", "text_neg_acc"});
  // The same run without negatives has a different contrastive loss at its first step (same weights, same batch).
  const auto dir2b = c.root + "/s2plain";
  train(stage_config(2, dir2b, {"train.init_from=" + c.s1, "train.tasks=[contrastive, caption]", "train.steps=1"}));
  const auto first = [](const std::vector<nlohmann::json>& r) {
    for (const auto& x : r) {
      if (x.contains("contrastive") && !x.contains("kind")) return x["contrastive"].get<double>();
    }
    return -1.0;
  };
  EXPECT_GT(first(recs), first(read_metrics(dir2b)));

  const auto root = janus::test::temp_dir("stage_neg_bad");
  try {
    jt::StageTask t(stage_config(2, root + "/a", {"train.tasks=[caption]", "train.text_negatives=true"}));
    FAIL() << "expected an InputError";
  } catch (const janus::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("needs the contrastive task"), std::string::npos) << e.what();
  }
  try {
    jt::StageTask t(stage_config(2, root + "/b", {"train.text_negatives=true", "train.text_negative_groups=[red]"}));
    FAIL() << "expected an InputError";
  } catch (const janus::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("group 1 needs at least two distinct words"), std::string::npos) << e.what();
  }
}
