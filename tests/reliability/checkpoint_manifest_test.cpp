// Damaged checkpoint manifests are reasons, never exceptions or silent loads (regressions found while building the
// checkpoint fuzz target: a non-object manifest entry threw nlohmann::type_error out of validate(), which made
// --resume auto exit 1 instead of falling back; a manifest could name files outside the checkpoint; a manifest
// damaged into listing fewer files let the unlisted ones through unverified).
#include <fstream>

#include <gtest/gtest.h>

#include "janus/core/error.h"
#include "janus/core/fs.h"
#include "janus/train/checkpoint.h"
#include "test_util.h"

using janus::train::CheckpointStore;

namespace {

std::string good_checkpoint() {
  const auto root = janus::test::temp_dir("manifest");
  CheckpointStore store(root, 3);
  return store.write(7, {{"model.safetensors", "weights"}, {"state.json", "{}"}});
}

void put(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::trunc) << text; }

}  // namespace

TEST(CheckpointManifest, GoodCheckpointValidates) {
  const auto dir = good_checkpoint();
  EXPECT_EQ(CheckpointStore::validate(dir), "");
  EXPECT_EQ(CheckpointStore::validate(dir, {"model.safetensors", "state.json"}), "");
  EXPECT_EQ(CheckpointStore::step_of(dir), 7);
}

TEST(CheckpointManifest, MalformedEntriesAreReasonsNotExceptions) {
  const auto dir = good_checkpoint();
  const std::string head = R"({"format":"janus-checkpoint-1","step":7,"files":)";
  for (const std::string files :
       {R"({"model.safetensors":7})", R"({"model.safetensors":[1,2]})",
        R"({"model.safetensors":{"size":"7","sha256":"x"}})", R"({"model.safetensors":{"size":-1,"sha256":"x"}})",
        R"({"model.safetensors":{"size":7,"sha256":5}})", R"({"model.safetensors":null})"}) {
    put(dir + "/manifest.json", head + files + "}");
    std::string why;
    EXPECT_NO_THROW(why = CheckpointStore::validate(dir)) << files;
    EXPECT_NE(why, "") << files;
  }
  for (const std::string m :
       {"[]", "7", R"({"format":1,"files":{}})", R"({"format":"janus-checkpoint-1","files":[]})"}) {
    put(dir + "/manifest.json", m);
    std::string why;
    EXPECT_NO_THROW(why = CheckpointStore::validate(dir)) << m;
    EXPECT_NE(why, "") << m;
  }
}

// Found by the checkpoint fuzz target: a step beyond int64 reached an undefined double -> int64 conversion.
TEST(CheckpointManifest, StepOutOfRangeIsAnInputError) {
  const auto dir = good_checkpoint();
  for (const std::string step : {"6666666666666666666666666666666620", "18446744073709551615", "-3", "1.5", "\"7\""}) {
    put(dir + "/manifest.json", R"({"format":"janus-checkpoint-1","step":)" + step + R"(,"files":{}})");
    EXPECT_THROW(CheckpointStore::step_of(dir), janus::InputError) << step;
  }
  put(dir + "/manifest.json", R"({"format":"janus-checkpoint-1","step":9223372036854775807,"files":{}})");
  EXPECT_EQ(CheckpointStore::step_of(dir), INT64_MAX);
}

TEST(CheckpointManifest, FileNamesCannotLeaveTheCheckpoint) {
  const auto dir = good_checkpoint();
  for (const std::string name : {"../manifest.json", "/etc/passwd", "..", ".", "a/b", "manifest.json"}) {
    put(dir + "/manifest.json",
        R"({"format":"janus-checkpoint-1","step":7,"files":{")" + name + R"(":{"size":0,"sha256":"x"}}})");
    EXPECT_NE(CheckpointStore::validate(dir).find("bad file name"), std::string::npos) << name;
  }
}

TEST(CheckpointManifest, RequiredFilesMustBeListed) {
  const auto dir = good_checkpoint();
  // A manifest damaged into listing nothing would otherwise vouch for every file unchecked.
  put(dir + "/manifest.json", R"({"format":"janus-checkpoint-1","step":7,"files":{}})");
  EXPECT_EQ(CheckpointStore::validate(dir), "");
  EXPECT_NE(CheckpointStore::validate(dir, {"model.safetensors"}).find("does not list 'model.safetensors'"),
            std::string::npos);
}
