// read_json_file / parse_json_text (include/janus/core/json_file.h): every failure is one InputError line that
// names the file.
#include <filesystem>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "janus/core/error.h"
#include "janus/core/fs.h"
#include "janus/core/json_file.h"
#include "test_util.h"

using ::testing::HasSubstr;
using ::testing::Not;

namespace {
// The InputError message of read_json_file(path, what, max), or "<no error>".
std::string error_of(const std::string& path, const std::string& what = "results file",
                     std::size_t max_bytes = janus::kMaxJsonFileBytes) {
  try {
    janus::read_json_file(path, what, max_bytes);
  } catch (const janus::InputError& e) {
    return e.what();
  }
  return "<no error>";
}
}  // namespace

TEST(JsonFile, ReadsAValidFile) {
  const auto d = janus::test::temp_dir("json_file");
  janus::write_file_atomic(d + "/ok.json", R"({"a": [1, 2.5, "x"], "b": {"c": null}})");
  const auto j = janus::read_json_file(d + "/ok.json", "test file");
  EXPECT_EQ(j["a"][1].get<double>(), 2.5);
  EXPECT_TRUE(j["b"]["c"].is_null());
}

TEST(JsonFile, MissingFileAndDirectoryAreInputErrorsNamingThePath) {
  const auto d = janus::test::temp_dir("json_file");
  const auto msg = error_of(d + "/nope.json", "caption results");
  EXPECT_THAT(msg, HasSubstr(d + "/nope.json"));
  EXPECT_THAT(msg, HasSubstr("caption results not found"));
  EXPECT_THAT(error_of(d), HasSubstr("not a regular file"));
}

TEST(JsonFile, InvalidJsonIsAnInputErrorNamingThePathAndWhat) {
  const auto d = janus::test::temp_dir("json_file");
  janus::write_file_atomic(d + "/bad.json", "{\"a\": [1, 2");
  const auto msg = error_of(d + "/bad.json", "prompts list");
  EXPECT_THAT(msg, HasSubstr(d + "/bad.json"));
  EXPECT_THAT(msg, HasSubstr("prompts list: not valid JSON"));
  EXPECT_THAT(msg, Not(HasSubstr("\n")));
  janus::write_file_atomic(d + "/empty.json", "");
  EXPECT_THAT(error_of(d + "/empty.json"), HasSubstr("not valid JSON"));
}

// nlohmann::json throws out_of_range (not parse_error) for a number too large for a double: it must still be an
// InputError, or the tools exit 1 (runtime failure) instead of 2 (bad input).
TEST(JsonFile, NumberOverflowIsAnInputErrorNotOutOfRange) {
  const auto d = janus::test::temp_dir("json_file");
  for (const std::string text : {"[{\"image_id\": 1, \"caption\": \"a\", \"score\": 1e99999}]", "-1e400", "8e555"}) {
    janus::write_file_atomic(d + "/overflow.json", text);
    const auto msg = error_of(d + "/overflow.json");
    EXPECT_THAT(msg, HasSubstr(d + "/overflow.json")) << text;
    EXPECT_THAT(msg, HasSubstr("not valid JSON")) << text;
  }
  EXPECT_THROW(janus::parse_json_text("1e99999", "request"), janus::InputError);
  try {
    janus::parse_json_text("{\"x\": 1e99999}", "file.jsonl:3", "record");
    FAIL() << "no error";
  } catch (const janus::InputError& e) {
    EXPECT_THAT(std::string(e.what()), HasSubstr("file.jsonl:3: record: not valid JSON"));
  }
}

TEST(JsonFile, SizeCapIsEnforcedBeforeParsing) {
  const auto d = janus::test::temp_dir("json_file");
  janus::write_file_atomic(d + "/big.json", std::string("[") + std::string(100, '1') + "]");
  EXPECT_THAT(error_of(d + "/big.json", "eval results", 64), HasSubstr("102 bytes, over the limit of 64"));
  EXPECT_EQ(error_of(d + "/big.json", "eval results", 102), "<no error>");  // the cap is inclusive
}
