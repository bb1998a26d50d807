#include <cstring>
#include <fstream>

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "janus/core/error.h"
#include "janus/core/fs.h"
#include "janus/io/safetensors.h"
#include "test_util.h"

using janus::InputError;
using janus::SafeTensorsFile;
using janus::TensorMap;
using ::testing::HasSubstr;

namespace {

TensorMap reference() {
  const auto base = at::arange(24, at::kDouble).reshape({2, 3, 4}) / 7.0 - 1.5;
  return {{"f64", base.clone()},
          {"f32", base.to(at::kFloat)},
          {"f16", base.to(at::kHalf)},
          {"bf16", base.to(at::kBFloat16)},
          {"i64", (base * 1000).to(at::kLong)},
          {"i32", (base * 1000).to(at::kInt)},
          {"i16", (base * 100).to(at::kShort)},
          {"i8", (base * 10).to(at::kChar)},
          {"u8", (base * 10 + 20).to(at::kByte)},
          {"bool", base > 0},
          {"scalar", at::scalar_tensor(3.25, at::kFloat)},
          {"empty", at::zeros({0, 5})}};
}

void expect_same(const TensorMap& a, const TensorMap& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [k, v] : b) {
    ASSERT_TRUE(a.count(k)) << k;
    EXPECT_EQ(a.at(k).scalar_type(), v.scalar_type()) << k;
    EXPECT_EQ(a.at(k).sizes(), v.sizes()) << k;
    EXPECT_TRUE(at::equal(a.at(k), v)) << k;
  }
}

// Builds a file from a raw header and a data buffer, for malformed-input tests.
std::string raw_file(const std::string& header, const std::string& data, std::uint64_t declared = UINT64_MAX) {
  const std::uint64_t n = declared == UINT64_MAX ? header.size() : declared;
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return out + header + data;
}

std::string error_of(const std::string& bytes) {
  try {
    SafeTensorsFile::from_bytes(bytes, "bad.safetensors");
  } catch (const InputError& e) {
    return e.what();
  }
  return "<no error>";
}

}  // namespace

TEST(Safetensors, RoundTripEveryDtypeWithMetadata) {
  const auto dir = janus::test::temp_dir();
  const auto ref = reference();
  janus::save_safetensors(dir + "/a.safetensors", ref, {{"k", "v"}});
  janus::Metadata meta;
  const auto back = janus::load_safetensors(dir + "/a.safetensors", &meta);
  expect_same(back, ref);
  EXPECT_EQ(meta.at("k"), "v");
}

TEST(Safetensors, MappedTensorsAliasTheFileAndAreCopyOnWrite) {
  const auto dir = janus::test::temp_dir();
  janus::save_safetensors(dir + "/a.safetensors", {{"x", at::ones({64})}});
  const auto before = janus::read_file(dir + "/a.safetensors");
  {
    auto f = SafeTensorsFile::open(dir + "/a.safetensors");
    auto x = f.tensor("x");
    auto y = f.tensor("x");
    EXPECT_EQ(x.data_ptr(), y.data_ptr());  // zero-copy: both alias the mapping
    x.mul_(3);                              // private mapping: the file is untouched
    EXPECT_EQ(y[0].item<float>(), 3.0f);
  }
  EXPECT_EQ(janus::read_file(dir + "/a.safetensors"), before);
}

TEST(Safetensors, MappingOutlivesTheFileObject) {
  const auto dir = janus::test::temp_dir();
  janus::save_safetensors(dir + "/a.safetensors", {{"x", at::arange(10, at::kFloat)}});
  at::Tensor x;
  { x = SafeTensorsFile::open(dir + "/a.safetensors").tensor("x"); }
  EXPECT_EQ(x.sum().item<float>(), 45.0f);
}

TEST(Safetensors, PythonReadsWhatWeWrite) {
  const auto dir = janus::test::temp_dir();
  janus::save_safetensors(dir + "/cpp.safetensors", reference(), {{"source", "janus"}, {"note", "ünïcode ok"}});
  const auto r = janus::test::run_python("safetensors_parity.py", {"check", dir + "/cpp.safetensors"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(Safetensors, WeReadWhatPythonWrites) {
  const auto dir = janus::test::temp_dir();
  const auto r = janus::test::run_python("safetensors_parity.py", {"write", dir + "/py.safetensors"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto f = SafeTensorsFile::open(dir + "/py.safetensors");
  expect_same(f.tensors(), reference());
  EXPECT_EQ(f.metadata().at("source"), "python");
}

TEST(Safetensors, RejectsTruncatedFile) {
  const auto good = janus::safetensors_bytes({{"x", at::ones({4, 4})}});
  EXPECT_THAT(error_of(good.substr(0, good.size() - 3)), HasSubstr("outside the"));
  EXPECT_THAT(error_of(good.substr(0, 5)), HasSubstr("too short"));
  EXPECT_THAT(error_of(good.substr(0, 20)), HasSubstr("runs past the end"));
}

TEST(Safetensors, RejectsOversizedHeader) {
  EXPECT_THAT(error_of(raw_file("{}", "", 200ull * 1024 * 1024)), HasSubstr("exceeds"));
  EXPECT_THAT(error_of(raw_file("{}", "", UINT64_MAX - 1)), HasSubstr("exceeds"));
}

TEST(Safetensors, RejectsBadJson) {
  EXPECT_THAT(error_of(raw_file("{\"x\": [", "")), HasSubstr("not valid JSON"));
  EXPECT_THAT(error_of(raw_file("[1, 2]  ", "")), HasSubstr("not a JSON object"));
  EXPECT_THAT(error_of(raw_file(R"({"x": {"dtype": "F32"}})", "")), HasSubstr("needs dtype, shape and data_offsets"));
  EXPECT_THAT(error_of(raw_file(R"({"x": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 4]}})", "abcd")),
              HasSubstr("unknown dtype 'Q7'"));
  EXPECT_THAT(error_of(raw_file(R"({"x": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", "abcd")),
              HasSubstr("non-negative"));
  EXPECT_THAT(error_of(raw_file(R"({"__metadata__": {"a": 1}})", "")), HasSubstr("not a string"));
}

TEST(Safetensors, RejectsOffsetsOutsideTheBuffer) {
  EXPECT_THAT(error_of(raw_file(R"({"x": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})", "12345678")),
              HasSubstr("outside the 8-byte data buffer"));
  EXPECT_THAT(error_of(raw_file(R"({"x": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}})", "12345678")),
              HasSubstr("reversed"));
}

TEST(Safetensors, RejectsOverlappingTensors) {
  const std::string h =
      R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})";
  EXPECT_THAT(error_of(raw_file(h, std::string(12, '\0'))), HasSubstr("overlap"));
}

TEST(Safetensors, RejectsWrongByteCount) {
  EXPECT_THAT(error_of(raw_file(R"({"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", "12345678")),
              HasSubstr("needs 12"));
  EXPECT_THAT(error_of(raw_file(R"({"x": {"dtype": "F32", "shape": [4611686018427387904, 8], "data_offsets": [0, 8]}})",
                                "12345678")),
              HasSubstr("too large"));
}

TEST(Safetensors, MissingFileAndMissingTensor) {
  EXPECT_THROW(SafeTensorsFile::open("/nonexistent/x.safetensors"), InputError);
  const auto f = SafeTensorsFile::from_bytes(janus::safetensors_bytes({{"x", at::ones({1})}}));
  try {
    f.tensor("y");
    FAIL() << "no throw";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("no tensor named 'y'"));
  }
}

TEST(Safetensors, HeaderIsAlignedAndTensorsSortedByName) {
  const auto bytes = janus::safetensors_bytes({{"b", at::ones({3})}, {"a", at::zeros({1}, at::kDouble)}});
  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  const auto f = SafeTensorsFile::from_bytes(bytes);
  EXPECT_EQ(f.info("a").begin, 0u);
  EXPECT_EQ(f.info("b").begin, 8u);
}
