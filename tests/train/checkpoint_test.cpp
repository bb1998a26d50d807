#include <filesystem>
#include <fstream>
#include <map>

#include <gtest/gtest.h>

#include "janus/core/error.h"
#include "janus/core/fs.h"
#include "janus/train/checkpoint.h"
#include "janus/train/metrics.h"
#include "test_util.h"

using namespace janus;
using namespace janus::train;
namespace fs = std::filesystem;

namespace {
void flip_byte(const std::string& path, size_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c;
  f.get(c);
  f.seekp(static_cast<std::streamoff>(offset));
  f.put(static_cast<char>(c ^ 0x10));
}
}  // namespace

TEST(Checkpoint, WriteValidateKeepLastAndFallback) {
  const auto root = janus::test::temp_dir("ckpt") + "/checkpoints";
  CheckpointStore store(root, 2);
  for (int64_t s : {5, 10, 15})
    store.write(s, {{"a.bin", std::string(100, static_cast<char>('a' + s))}, {"b.json", "{}"}});
  const auto all = store.list();
  ASSERT_EQ(all.size(), 2u);  // keep_last
  EXPECT_EQ(fs::path(all[0]).filename(), "step_000000015");
  EXPECT_EQ(fs::path(all[1]).filename(), "step_000000010");
  EXPECT_EQ(CheckpointStore::validate(all[0]), "");
  EXPECT_EQ(CheckpointStore::step_of(all[0]), 15);
  EXPECT_EQ(*store.latest_valid(), all[0]);

  flip_byte(all[0] + "/a.bin", 50);  // bit flip: same size, wrong sha256
  EXPECT_NE(CheckpointStore::validate(all[0]).find("sha256"), std::string::npos);
  EXPECT_EQ(*store.latest_valid(), all[1]);

  fs::resize_file(all[1] + "/a.bin", 10);  // truncation
  EXPECT_NE(CheckpointStore::validate(all[1]).find("bytes"), std::string::npos);
  EXPECT_FALSE(store.latest_valid().has_value());

  // A torn write (temp dir without rename) is invisible and cleaned on the next write.
  fs::create_directories(root + "/step_000000020.tmp.999");
  EXPECT_EQ(store.list().size(), 2u);
  store.write(20, {{"a.bin", "x"}});
  EXPECT_FALSE(fs::exists(root + "/step_000000020.tmp.999"));
  EXPECT_EQ(CheckpointStore::validate(root + "/step_000000020"), "");
  // Missing manifest.
  fs::remove(root + "/step_000000020/manifest.json");
  EXPECT_NE(CheckpointStore::validate(root + "/step_000000020").find("manifest"), std::string::npos);
}

TEST(Checkpoint, RewriteSameStepReplaces) {
  const auto root = janus::test::temp_dir("ckpt2");
  CheckpointStore store(root, 3);
  store.write(7, {{"a.bin", "old"}});
  const auto dir = store.write(7, {{"a.bin", "new"}});
  EXPECT_EQ(read_file(dir + "/a.bin"), "new");
  EXPECT_EQ(CheckpointStore::validate(dir), "");
  EXPECT_EQ(store.list().size(), 1u);
}

namespace {
// A checkpoint the way Trainer::save_checkpoint writes one: every trainer file, `tag` inside model.safetensors.
void write_trainer_checkpoint(CheckpointStore& store, int64_t step, const std::string& tag) {
  std::map<std::string, std::string> files;
  for (const auto& f : trainer_checkpoint_files()) files[f] = f + ":" + std::to_string(step);
  files["model.safetensors"] = tag;
  store.write(step, files);
}
}  // namespace

// The one weights rule of load_run("auto") and train.init_from (run_weights_file, docs/training.md).
TEST(RunWeights, FinalThenBareModelThenNewestValidCheckpoint) {
  const auto run = janus::test::temp_dir("run_weights");
  CheckpointStore store(run + "/checkpoints", 5);
  EXPECT_FALSE(run_weights_file(run).has_value());  // nothing yet
  EXPECT_FALSE(newest_valid_checkpoint(run).has_value());

  // Only checkpoints: the newest.
  write_trainer_checkpoint(store, 2, "step2");
  write_trainer_checkpoint(store, 4, "step4");
  ASSERT_TRUE(run_weights_file(run).has_value());
  EXPECT_EQ(*run_weights_file(run), run + "/checkpoints/step_000000004/model.safetensors");
  EXPECT_EQ(*run_weights_file(run, /*prefer_ema=*/true), *run_weights_file(run));

  // Newest checkpoint corrupt: the previous one (the fallback of --resume auto).
  flip_byte(run + "/checkpoints/step_000000004/model.safetensors", 2);
  EXPECT_EQ(*run_weights_file(run), run + "/checkpoints/step_000000002/model.safetensors");
  EXPECT_EQ(*newest_valid_checkpoint(run), run + "/checkpoints/step_000000002");

  // A checkpoint whose weights verify but whose manifest lacks a trainer file is not valid for --resume auto,
  // so not for the weights rule either.
  store.write(6, {{"model.safetensors", "step6"}});
  EXPECT_EQ(CheckpointStore::validate(run + "/checkpoints/step_000000006", {"model.safetensors"}), "");
  EXPECT_EQ(*run_weights_file(run), run + "/checkpoints/step_000000002/model.safetensors");

  // A save_model directory's model.safetensors beats checkpoints.
  write_file_atomic(run + "/model.safetensors", "bare");
  EXPECT_EQ(*run_weights_file(run), run + "/model.safetensors");

  // final/ beats everything, even though newer checkpoints exist; EMA only when asked for.
  write_trainer_checkpoint(store, 8, "step8");
  write_file_atomic(run + "/final/model.safetensors", "final");
  EXPECT_EQ(*run_weights_file(run), run + "/final/model.safetensors");
  EXPECT_EQ(*run_weights_file(run, /*prefer_ema=*/true), run + "/final/model.safetensors");
  write_file_atomic(run + "/final/ema.safetensors", "ema");
  EXPECT_EQ(*run_weights_file(run), run + "/final/model.safetensors");
  EXPECT_EQ(*run_weights_file(run, /*prefer_ema=*/true), run + "/final/ema.safetensors");
  EXPECT_EQ(*newest_valid_checkpoint(run), run + "/checkpoints/step_000000008");
}

TEST(Metrics, Crc32cKnownValues) {
  // RFC 3720 test vector and the classic "123456789" check value of CRC-32C.
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  const std::string zeros(32, '\0');
  EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
}

TEST(Metrics, TensorBoardFileReadsBackWithTensorboard) {
  const auto dir = janus::test::temp_dir("tb");
  {
    TensorBoardWriter w(dir);
    for (int64_t s = 1; s <= 5; ++s) w.scalars(s, {{"loss", 1.0 / s}, {"lr/main", 1e-3 * s}}, 1700000000.0 + s);
  }
  const auto out = dir + "/scalars.json";
  const auto r = janus::test::run_python("read_tb_events.py", {dir, out});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(read_file(out));
  ASSERT_TRUE(j.contains("loss") && j.contains("lr/main")) << j.dump();
  ASSERT_EQ(j["loss"].size(), 5u);
  for (int64_t s = 1; s <= 5; ++s) {
    EXPECT_EQ(j["loss"][s - 1][0].get<int64_t>(), s);
    EXPECT_FLOAT_EQ(j["loss"][s - 1][1].get<float>(), static_cast<float>(1.0 / s));
    EXPECT_FLOAT_EQ(j["lr/main"][s - 1][1].get<float>(), static_cast<float>(1e-3 * s));
  }
}
