// The run-directory contract (include/janus/model/run.h): write_run_artifacts + weights -> load_run gives back the
// same model, tokenizer and answers; every missing or inconsistent piece is an InputError naming it.
#include <filesystem>
#include <map>

#include <gtest/gtest.h>
#include <torch/nn.h>

#include "janus/core/error.h"
#include "janus/core/fs.h"
#include "janus/io/module_io.h"
#include "janus/model/model_io.h"
#include "janus/model/run.h"
#include "janus/train/checkpoint.h"
#include "test_util.h"

namespace {

std::string make_tokenizer(const std::string& dir) {
  std::string text;
  const char* colours[] = {"red", "green", "blue", "cyan", "yellow", "magenta"};
  const char* shapes[] = {"circle", "square", "triangle", "star"};
  for (int i = 0; i < 400; ++i) {
    text += fmt::format("a {} {} to the left of a {} {}\n", colours[i % 6], shapes[i % 4], colours[(i / 6) % 6],
                        shapes[(i / 4) % 4]);
  }
  janus::write_file_atomic(dir + "/corpus.txt", text);
  return janus::Tokenizer::train(dir + "/corpus.txt", dir + "/tok", {60});
}

}  // namespace

TEST(RunDir, WriteThenLoadGivesTheSameModel) {
  const auto d = janus::test::temp_dir("run");
  const auto tok_path = make_tokenizer(d);
  const auto tok = janus::Tokenizer::load(tok_path);
  auto o = janus::model_flavour("tiny", tok.vocab_size(), 32);
  o.num_answers = 3;
  torch::manual_seed(0);
  janus::JanusModel model(o);
  const std::string run = d + "/run";
  janus::write_run_artifacts(run, o, tok_path, {"yes", "no", "2"});
  std::filesystem::create_directories(run + "/final");
  janus::save_module(*model, run + "/final/model.safetensors");

  auto loaded = janus::load_run(run);
  EXPECT_EQ(loaded.weights, run + "/final/model.safetensors");
  EXPECT_EQ(loaded.answers, (std::vector<std::string>{"yes", "no", "2"}));
  ASSERT_TRUE(loaded.tokenizer);
  EXPECT_EQ(loaded.tokenizer->encode("a red circle"), tok.encode("a red circle"));
  EXPECT_FALSE(loaded.model->is_training());
  const auto a = model->named_parameters();
  const auto b = loaded.model->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (const auto& p : a) EXPECT_TRUE(torch::equal(p.value(), b[p.key()])) << p.key();

  // A config.yaml whose data paths no longer exist still loads (the run moved to another machine).
  janus::write_file_atomic(run + "/config.yaml", "data:\n  train: /nonexistent/train\n");
  EXPECT_THROW(janus::Config::load(run + "/config.yaml"), janus::InputError);
  EXPECT_EQ(janus::load_run(run).config.data.train, "/nonexistent/train");

  // Stage 1's training-only discriminator ("vq_disc.*") in the weights is ignored; any other extra key is not.
  auto state = janus::module_state(*model);
  state["vq_disc.main.0.weight"] = torch::zeros({2, 2});
  janus::save_safetensors(run + "/final/model.safetensors", state);
  EXPECT_NO_THROW(janus::load_run(run));
  state["extra.weight"] = torch::zeros({2});
  janus::save_safetensors(run + "/final/model.safetensors", state);
  EXPECT_THROW(janus::load_run(run), janus::InputError);
}

TEST(RunDir, MissingOrInconsistentPiecesAreInputErrors) {
  const auto d = janus::test::temp_dir("runbad");
  const auto tok_path = make_tokenizer(d);
  const auto vocab = janus::Tokenizer::load(tok_path).vocab_size();
  auto o = janus::model_flavour("tiny", vocab, 32);
  o.num_answers = 2;
  janus::JanusModel model(o);
  const std::string run = d + "/run";
  EXPECT_THROW(janus::load_run(run), janus::InputError);  // no directory
  janus::write_run_artifacts(run, o, tok_path, {"yes", "no"});
  EXPECT_THROW(janus::load_run(run), janus::InputError);  // no weights
  std::filesystem::create_directories(run + "/final");
  janus::save_module(*model, run + "/final/model.safetensors");
  EXPECT_NO_THROW(janus::load_run(run));
  janus::LoadRunOptions lo;
  lo.weights = "latest";
  EXPECT_THROW(janus::load_run(run, lo), janus::InputError);  // no checkpoints
  janus::write_file_atomic(run + "/answers.json", "[\"yes\"]");
  EXPECT_THROW(janus::load_run(run), janus::InputError);  // head size != answers
  janus::write_file_atomic(run + "/answers.json", "{\"a\": 1}");
  EXPECT_THROW(janus::load_run(run), janus::InputError);
  janus::write_run_artifacts(run, o, tok_path, {"yes", "no"});
  auto wrong = janus::model_flavour("tiny", vocab + 5, 32);
  wrong.num_answers = 2;
  janus::write_file_atomic(run + "/model.json", janus::model_spec(wrong).dump());
  EXPECT_THROW(janus::load_run(run), janus::InputError);  // weights do not fit the spec
}

// load_run's weights "auto" follows train::run_weights_file (the rule train.init_from uses, docs/training.md):
// final/ (EMA first) over checkpoints, else the newest checkpoint valid for --resume auto.
TEST(RunDir, AutoWeightsFollowTheSharedRule) {
  const auto d = janus::test::temp_dir("runauto");
  const auto tok_path = make_tokenizer(d);
  const auto o = janus::model_flavour("tiny", janus::Tokenizer::load(tok_path).vocab_size(), 32);
  torch::manual_seed(0);
  janus::JanusModel model(o);
  const std::string run = d + "/run";
  janus::write_run_artifacts(run, o, tok_path, {});
  janus::save_module(*model, d + "/weights.safetensors");
  const std::string bytes = janus::read_file(d + "/weights.safetensors");
  janus::train::CheckpointStore store(run + "/checkpoints", 5);
  const auto checkpoint = [&](int64_t step) {  // the files Trainer::save_checkpoint writes
    std::map<std::string, std::string> files;
    for (const auto& f : janus::train::trainer_checkpoint_files()) files[f] = "x";
    files["model.safetensors"] = bytes;
    return store.write(step, files);
  };
  const auto c1 = checkpoint(1), c2 = checkpoint(2);
  janus::LoadRunOptions latest;
  latest.weights = "latest";
  EXPECT_EQ(janus::load_run(run).weights, c2 + "/model.safetensors");
  EXPECT_EQ(janus::load_run(run, latest).weights, c2 + "/model.safetensors");
  janus::write_file_atomic(c2 + "/state.json", "y");  // corrupt (same size, wrong sha256): the previous one
  EXPECT_EQ(janus::load_run(run).weights, c1 + "/model.safetensors");
  EXPECT_EQ(janus::load_run(run, latest).weights, c1 + "/model.safetensors");
  janus::write_file_atomic(run + "/final/model.safetensors", bytes);
  checkpoint(3);  // newer than final/: final still wins
  EXPECT_EQ(janus::load_run(run).weights, run + "/final/model.safetensors");
  janus::write_file_atomic(run + "/final/ema.safetensors", bytes);
  EXPECT_EQ(janus::load_run(run).weights, run + "/final/ema.safetensors");
}
