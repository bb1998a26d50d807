// In-process trainer tests with the toy task: losses fall, precision modes, non-finite handling, extra optimiser.
#include <cmath>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "janus/core/error.h"
#include "janus/core/fs.h"
#include "janus/io/module_io.h"
#include "janus/io/safetensors.h"
#include "janus/train/toy_task.h"
#include "janus/train/trainer.h"
#include "test_util.h"

using namespace janus;
using namespace janus::train;
namespace fs = std::filesystem;

namespace {

Config make_config(const std::string& run_dir, std::vector<std::string> sets) {
  std::vector<std::string> base{"train.run_dir=" + run_dir,
                                "train.device=cpu",
                                "train.steps=60",
                                "optim.lr=1e-2",
                                "schedule.warmup_steps=5",
                                "log.every_steps=10",
                                "checkpoint.every_steps=20",
                                "data.batch_size=16",
                                "log.level=warn"};
  base.insert(base.end(), sets.begin(), sets.end());
  return Config::from_yaml("", base);
}

std::vector<double> losses(const std::string& run_dir, const std::string& key = "loss") {
  std::vector<double> out;
  std::istringstream in(read_file(run_dir + "/metrics.jsonl"));
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains(key) && !j[key].is_null()) out.push_back(j[key].get<double>());
  }
  return out;
}

ToyTaskOptions toy(bool disc = false) {
  ToyTaskOptions o;
  o.batch_size = 16;
  o.net.discriminator(disc);
  return o;
}

}  // namespace

class TrainerPrecision : public ::testing::TestWithParam<std::string> {};

TEST_P(TrainerPrecision, LossFalls) {
  const auto dir = janus::test::temp_dir("prec_" + GetParam());
  at::manual_seed(0);
  ToyTask task(toy());
  Trainer trainer(make_config(dir, {"train.precision=" + GetParam()}), task);
  const auto r = trainer.run();
  EXPECT_EQ(r.step, 60);
  EXPECT_FALSE(r.stopped);
  const auto l = losses(dir);
  ASSERT_EQ(l.size(), 6u);
  EXPECT_LT(l.back(), 0.6 * l.front()) << "first " << l.front() << " last " << l.back();
  EXPECT_TRUE(fs::exists(dir + "/final/model.safetensors"));
  EXPECT_TRUE(fs::exists(dir + "/config.yaml"));
  EXPECT_EQ(task.steps_seen(), 60 - r.nonfinite_steps);
  if (GetParam() == "fp16") {
    EXPECT_TRUE(trainer.scaler().enabled());
    EXPECT_GT(trainer.scaler().scale_value(), 0.0);
  }
}

INSTANTIATE_TEST_SUITE_P(Precisions, TrainerPrecision, ::testing::Values("fp32", "bf16", "fp16"));

TEST(Trainer, Bf16AutocastActuallyLowersPrecision) {
  // compute_loss runs under autocast: a matmul inside it comes out in bf16.
  struct Probe : ToyTask {
    using ToyTask::ToyTask;
    at::ScalarType seen = at::kFloat;
    StepOutput compute_loss(const Batch& b, const StepContext& c) override {
      seen = at::matmul(b.at("x"), b.at("x").t()).scalar_type();
      return ToyTask::compute_loss(b, c);
    }
  };
  const auto dir = janus::test::temp_dir("bf16probe");
  Probe task(toy());
  Trainer(make_config(dir, {"train.precision=bf16", "train.steps=2"}), task).run();
  EXPECT_EQ(task.seen, at::kBFloat16);
}

TEST(Trainer, NonFiniteStepsAreSkippedAndCounted) {
  const auto dir = janus::test::temp_dir("nan_skip");
  at::manual_seed(0);
  ToyTask task(toy());
  Trainer trainer(make_config(dir, {"train.debug_nonfinite_steps=[3, 4, 10]", "train.steps=12", "log.every_steps=1",
                                    "train.max_nonfinite_steps=3"}),
                  task);
  const auto r = trainer.run();
  EXPECT_EQ(r.step, 12);
  EXPECT_EQ(r.nonfinite_steps, 3);
  EXPECT_EQ(task.steps_seen(), 9);  // after_step only runs for applied steps
  const auto counts = losses(dir, "nonfinite_steps");
  ASSERT_EQ(counts.size(), 12u);
  EXPECT_EQ(counts[2], 0);
  EXPECT_EQ(counts[3], 1);
  EXPECT_EQ(counts[4], 2);
  EXPECT_EQ(counts[11], 3);
}

TEST(Trainer, SkippedStepLeavesWeightsUnchanged) {
  const auto dir = janus::test::temp_dir("nan_weights");
  at::manual_seed(0);
  ToyTask task(toy());
  Trainer t1(make_config(dir, {"train.steps=2"}), task);
  t1.run();
  const auto before = task.net()->fc1->weight.clone();
  // Resume the same weights for one more step that is poisoned.
  Trainer t2(make_config(dir, {"train.steps=3", "train.debug_nonfinite_steps=[2]"}), task);
  const auto r = t2.run("auto");
  EXPECT_EQ(r.nonfinite_steps, 1);
  EXPECT_TRUE(at::equal(before, task.net()->fc1->weight));
}

TEST(Trainer, GradClipByModuleLogsAndClipsEachModule) {
  // Per-module norms are recorded and make up the global norm; module clipping changes the run (lr 1e-2 with a
  // clip of 0.05 binds), the global clip with logging on trains exactly like the global clip without it.
  auto run = [](const std::string& name, std::vector<std::string> sets) {
    const auto dir = janus::test::temp_dir(name);
    at::manual_seed(0);
    ToyTask task(toy());
    sets.insert(sets.end(), {"train.steps=6", "log.every_steps=1", "optim.grad_clip=0.05"});
    Trainer(make_config(dir, sets), task).run();
    return std::make_pair(dir, task.net()->fc1->weight.clone());
  };
  const auto [global_dir, global_w] = run("clip_global", {});
  const auto [logged_dir, logged_w] = run("clip_global_logged", {"log.grad_norm_by_module=true"});
  const auto [module_dir, module_w] = run("clip_module", {"optim.grad_clip_by=module"});
  EXPECT_TRUE(at::equal(global_w, logged_w));
  EXPECT_FALSE(at::allclose(global_w, module_w));
  EXPECT_TRUE(losses(global_dir, "grad_norm/fc1").empty());
  for (const auto& dir : {logged_dir, module_dir}) {
    const auto total = losses(dir, "grad_norm");
    ASSERT_EQ(total.size(), 6u);
    std::vector<double> sq(6, 0.0);
    for (const char* m : {"embed", "fc1", "norm", "fc2"}) {
      const auto n = losses(dir, std::string("grad_norm/") + m);
      ASSERT_EQ(n.size(), 6u) << m;
      for (size_t i = 0; i < 6; ++i) sq[i] += n[i] * n[i];
    }
    for (size_t i = 0; i < 6; ++i) EXPECT_NEAR(std::sqrt(sq[i]), total[i], 1e-4 * total[i]) << dir << " step " << i;
  }
  EXPECT_THROW(make_config(janus::test::temp_dir("clip_bad"), {"optim.grad_clip_by=layer"}), InputError);
}

TEST(Trainer, ConsecutiveNonFiniteStepsStopNamingTheModule) {
  const auto dir = janus::test::temp_dir("nan_stop");
  at::manual_seed(0);
  ToyTask task(toy());
  Trainer trainer(make_config(dir, {"train.debug_nonfinite_steps=[6, 7, 8]", "train.max_nonfinite_steps=3",
                                    "checkpoint.every_steps=5", "train.steps=20"}),
                  task);
  try {
    trainer.run();
    FAIL() << "expected the run to stop";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("non-finite for 3 consecutive steps"), std::string::npos) << msg;
    // A NaN loss poisons every gradient: the first parameter in model order is named, with the count.
    EXPECT_NE(msg.find("module 'embed' (parameter 'embed.weight', first of 7 non-finite"), std::string::npos) << msg;
    EXPECT_NE(msg.find("step_000000005"), std::string::npos) << msg;
  }
  CheckpointStore store(dir + "/checkpoints", 3);
  ASSERT_EQ(store.list().size(), 1u);
  EXPECT_EQ(CheckpointStore::validate(store.list()[0]), "");
  EXPECT_EQ(CheckpointStore::step_of(store.list()[0]), 5);
}

TEST(Trainer, ExtraOptimizerTrainsDiscriminatorAndCheckpointsItsState) {
  const auto dir = janus::test::temp_dir("disc");
  at::manual_seed(0);
  ToyTask task(toy(/*disc=*/true));
  const auto d0 = task.net()->disc->weight.clone();
  Trainer trainer(make_config(dir, {"train.steps=10", "log.every_steps=5"}), task);
  EXPECT_EQ(trainer.optimizer("disc").params().size(), 2u);
  EXPECT_EQ(trainer.optimizer("main").params().size(), 7u);  // disc params left the main optimizer
  trainer.run();
  EXPECT_FALSE(at::equal(d0, task.net()->disc->weight));
  const auto d = losses(dir, "disc/hinge");
  EXPECT_EQ(d.size(), 2u);
  CheckpointStore store(dir + "/checkpoints", 3);
  const auto st = load_safetensors(store.list()[0] + "/state.safetensors");
  EXPECT_EQ(st.at("optim.disc.disc.weight.step").item<int64_t>(), 10);
  EXPECT_EQ(st.at("optim.main.fc1.weight.step").item<int64_t>(), 10);
  EXPECT_TRUE(st.count("rng.cpu"));
  EXPECT_TRUE(st.count("scaler.main.scale"));
}

TEST(Trainer, FreezeRulesKeepWeightsFixed) {
  const auto dir = janus::test::temp_dir("freeze");
  at::manual_seed(0);
  ToyTask task(toy());
  const auto w0 = task.net()->fc1->weight.clone();
  const auto e0 = task.net()->fc2->weight.clone();
  Trainer trainer(make_config(dir, {"train.steps=5", "train.freeze=[fc1.*]", "train.ema_decay=0.9"}), task);
  trainer.run();
  EXPECT_TRUE(at::equal(w0, task.net()->fc1->weight));
  EXPECT_FALSE(at::equal(e0, task.net()->fc2->weight));
  // final/ema.safetensors is a whole weight file: the shadow for trained tensors, the model's for frozen ones
  // (it used to hold the shadow only, so loading it strictly failed on every frozen parameter and buffer).
  const auto ema = load_safetensors(dir + "/final/ema.safetensors");
  const auto full = janus::module_state(*task.net());
  ASSERT_EQ(ema.size(), full.size());
  EXPECT_TRUE(at::equal(ema.at("fc1.weight"), w0));
  EXPECT_TRUE(at::equal(ema.at("fc2.weight"), trainer.ema()->shadow().at("fc2.weight")));
  EXPECT_FALSE(at::equal(ema.at("fc2.weight"), task.net()->fc2->weight));
  EXPECT_NO_THROW(janus::load_module_state(*task.net(), ema));
}

TEST(Trainer, GradAccumulationMatchesOneBigBatchWithoutDropout) {
  // Two micro-batches of 8 = the mean of their losses; compare with a manual reference computed the same way.
  auto run = [](int64_t accum) {
    const auto dir = janus::test::temp_dir("accum");
    at::manual_seed(0);
    ToyTaskOptions o = toy();
    o.net.dropout(0.0);
    o.batch_size = 8;
    ToyTask task(o);
    Trainer(make_config(dir, {"train.steps=1", "optim.grad_clip=0", "train.grad_accum=" + std::to_string(accum),
                              "data.batch_size=8"}),
            task)
        .run();
    return task.net()->fc1->weight.clone();
  };
  // Reference: same init, one AdamW step on the mean of the two batches' losses.
  at::manual_seed(0);
  ToyTaskOptions o = toy();
  o.net.dropout(0.0);
  o.batch_size = 8;
  ToyTask ref(o);
  auto b0 = ref.data().next(), b1 = ref.data().next();
  StepContext ctx;
  const auto l = 0.5 * (ref.compute_loss(b0, ctx).total + ref.compute_loss(b1, ctx).total);
  l.backward();
  torch::optim::AdamW opt(ref.net()->parameters(), torch::optim::AdamWOptions(1e-2 * 1.0 / 5).weight_decay(0));
  // warmup 5 -> factor 1/5 at step 0; weight decay only on fc1.weight in the trainer: apply it by hand.
  const auto w = ref.net()->fc1->weight.detach().clone();
  opt.step();
  const auto expected = ref.net()->fc1->weight.detach() - (1e-2 / 5) * 0.05 * w;
  EXPECT_TRUE(janus::test::all_close(run(2), expected, 1e-6));
}

TEST(Trainer, ResumeRejectsCorruptExplicitCheckpoint) {
  const auto dir = janus::test::temp_dir("badresume");
  at::manual_seed(0);
  ToyTask task(toy());
  Trainer(make_config(dir, {"train.steps=4", "checkpoint.every_steps=2"}), task).run();
  CheckpointStore store(dir + "/checkpoints", 3);
  const auto newest = store.list()[0];
  fs::resize_file(newest + "/state.json", 3);
  ToyTask task2(toy());
  Trainer t2(make_config(dir, {"train.steps=6"}), task2);
  EXPECT_THROW(t2.run(newest), InputError);
  EXPECT_THROW(t2.run(dir + "/nope"), InputError);
  EXPECT_THROW(t2.run(""), InputError);  // a fresh start into a run_dir that already has checkpoints
}

TEST(Trainer, BadConfigIsRejected) {
  const auto dir = janus::test::temp_dir("badcfg");
  ToyTask task(toy());
  EXPECT_THROW(Trainer(make_config(dir, {"train.freeze=[nothing.*]"}), task), InputError);
  EXPECT_THROW(Trainer(make_config(dir, {"train.device=tpu"}), task), InputError);
  EXPECT_THROW(Trainer(make_config(dir, {"optim.name=sgd"}), task), InputError);
}

TEST(Trainer, InitFromLoadsPreviousStageWeights) {
  const auto prev = janus::test::temp_dir("stage_prev");
  at::manual_seed(0);
  ToyTask t1(toy());
  Trainer(make_config(prev, {"train.steps=3"}), t1).run();
  const auto trained = t1.net()->fc1->weight.clone();
  // A "next stage" with a different init (seed 1) and an extra module (disc) picks the weights up; lr 0 keeps them.
  const auto next = janus::test::temp_dir("stage_next");
  at::manual_seed(1);
  ToyTask t2(toy(/*disc=*/true));
  ASSERT_FALSE(at::equal(trained, t2.net()->fc1->weight));
  Trainer(make_config(next, {"train.steps=1", "optim.lr=0", "train.init_from=" + prev}), t2).run();
  EXPECT_TRUE(at::equal(trained, t2.net()->fc1->weight));
  ToyTask t3(toy());
  EXPECT_THROW(
      Trainer(make_config(janus::test::temp_dir("stage_bad"), {"train.init_from=" + next + "/nope"}), t3).run(),
      InputError);
}

// init_from of a run directory follows run_weights_file (the rule load_run's "auto" uses, docs/training.md):
// final/model.safetensors when it exists, else the newest valid checkpoint, falling back past a corrupt one.
TEST(Trainer, InitFromRunDirPrefersFinalThenNewestValidCheckpoint) {
  const auto prev = janus::test::temp_dir("init_order_prev");
  at::manual_seed(0);
  ToyTask t1(toy());
  Trainer(make_config(prev, {"train.steps=4", "checkpoint.every_steps=2"}), t1).run();
  const auto ckpt2 = prev + "/checkpoints/step_000000002", ckpt4 = prev + "/checkpoints/step_000000004";
  ASSERT_TRUE(fs::exists(ckpt2 + "/model.safetensors"));
  ASSERT_TRUE(fs::exists(ckpt4 + "/model.safetensors"));
  const auto w2 = load_safetensors(ckpt2 + "/model.safetensors").at("fc1.weight");
  const auto w4 = load_safetensors(ckpt4 + "/model.safetensors").at("fc1.weight");
  ASSERT_FALSE(at::equal(w2, w4));
  // Make the final weights differ from every checkpoint so the test sees which file was read.
  auto final_state = load_safetensors(prev + "/final/model.safetensors");
  final_state["fc1.weight"] = final_state["fc1.weight"] + 1.0;
  save_safetensors(prev + "/final/model.safetensors", final_state);

  int n = 0;
  const auto init_weight = [&]() {  // fc1.weight of a fresh lr-0 run initialised from `prev`
    at::manual_seed(1);
    ToyTask t(toy());
    Trainer(make_config(janus::test::temp_dir("init_order_next" + std::to_string(n++)),
                        {"train.steps=1", "optim.lr=0", "train.init_from=" + prev}),
            t)
        .run();
    return t.net()->fc1->weight.detach().clone();
  };
  EXPECT_TRUE(at::equal(init_weight(), final_state["fc1.weight"]));  // final/ beats the newer-or-equal checkpoints
  janus::remove_tree(prev + "/final");
  EXPECT_TRUE(at::equal(init_weight(), w4));  // no final/: the newest checkpoint
  {
    std::fstream f(ckpt4 + "/state.json", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(0);
    f.put('#');  // corrupt a file --resume auto requires (same size, wrong sha256)
  }
  EXPECT_TRUE(at::equal(init_weight(), w2));  // newest corrupt: the previous valid one
}

TEST(Profiler, SelfTimeSubtractsNestedCallsPerThread) {
  constexpr uint64_t ms = 1000000;
  // Thread 1: outer [0, 100] holds mid [10, 40] (which holds leaf [20, 30]) and mid [50, 60]; thread 2: outer [0, 10],
  // which overlaps thread 1's calls in time but is not nested in them. Given out of order.
  const std::vector<OpEvent> events{{1, 50 * ms, 60 * ms, "mid"},  {2, 0, 10 * ms, "outer"},
                                    {1, 20 * ms, 30 * ms, "leaf"}, {1, 0, 100 * ms, "outer"},
                                    {1, 10 * ms, 40 * ms, "mid"},  {1, 70 * ms, 60 * ms, "unfinished"}};
  const auto stats = summarize_op_events(events);
  ASSERT_EQ(stats.size(), 3u);  // the call that ends before it starts (still open at the stop) is dropped
  EXPECT_EQ(stats[0].name, "outer");
  EXPECT_EQ(stats[0].calls, 2);
  EXPECT_DOUBLE_EQ(stats[0].total_ms, 110.0);
  EXPECT_DOUBLE_EQ(stats[0].self_ms, 100.0 - 30.0 - 10.0 + 10.0);
  EXPECT_EQ(stats[1].name, "mid");
  EXPECT_EQ(stats[1].calls, 2);
  EXPECT_DOUBLE_EQ(stats[1].total_ms, 40.0);
  EXPECT_DOUBLE_EQ(stats[1].self_ms, 30.0);
  EXPECT_EQ(stats[2].name, "leaf");
  EXPECT_DOUBLE_EQ(stats[2].self_ms, 10.0);
  const auto table = format_op_table(stats, 110.0, 2);
  EXPECT_NE(table.find("outer"), std::string::npos);
  EXPECT_NE(table.find("63.6%"), std::string::npos) << table;  // 70 of 110 ms
  EXPECT_EQ(table.find("leaf"), std::string::npos) << "the limit keeps two rows";
}

TEST(Trainer, ProfileStepsWritesTraceAndOperatorTable) {
  const auto dir = janus::test::temp_dir("profile");
  at::manual_seed(0);
  ToyTask task(toy());
  Trainer trainer(make_config(dir, {"train.steps=8", "train.profile_steps=[2, 3]"}), task);
  trainer.run();
  const auto trace = nlohmann::json::parse(read_file(dir + "/profile/trace.json"));
  ASSERT_TRUE(trace.contains("traceEvents"));
  int64_t steps = 0;
  bool has_mm = false;
  for (const auto& e : trace["traceEvents"]) {
    const auto name = e.value("name", std::string());
    steps += name == "janus::train_step";
    has_mm = has_mm || name == "aten::addmm" || name == "aten::mm" || name == "aten::linear";
  }
  EXPECT_EQ(steps, 3) << "steps 2, 3 and 4 are recorded";
  EXPECT_TRUE(has_mm);
  const auto ops = read_file(dir + "/profile/ops.txt");
  EXPECT_NE(ops.find("janus::train_step"), std::string::npos) << ops;
  EXPECT_NE(ops.find("aten::"), std::string::npos) << ops;

  // A window past the end is cut at the last step; a malformed window is refused before training.
  const auto dir2 = janus::test::temp_dir("profile_end");
  ToyTask task2(toy());
  Trainer(make_config(dir2, {"train.steps=4", "train.profile_steps=[3, 10]"}), task2).run();
  EXPECT_TRUE(fs::exists(dir2 + "/profile/ops.txt"));
  const auto dir4 = janus::test::temp_dir("profile_shapes");  // train.profile_shapes: rows keyed by input shapes
  ToyTask task4(toy());
  Trainer(make_config(dir4, {"train.steps=2", "train.profile_steps=[1, 1]", "train.profile_shapes=true"}), task4).run();
  EXPECT_NE(read_file(dir4 + "/profile/ops.txt").find("aten::addmm[32][16,8][8,32]"), std::string::npos)
      << read_file(dir4 + "/profile/ops.txt");
  ToyTask task3(toy());
  const auto dir3 = janus::test::temp_dir("profile_bad");
  for (const char* bad : {"train.profile_steps=[1]", "train.profile_steps=[1, 0]", "train.profile_steps=[1, 2, 3]"}) {
    EXPECT_THROW(Trainer(make_config(dir3, {bad}), task3), InputError) << bad;
  }
  EXPECT_FALSE(fs::exists(dir3 + "/profile"));
}
