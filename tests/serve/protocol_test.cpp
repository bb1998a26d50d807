// KServe v2 request parsing / response encoding: JSON and binary tensor forms, and malformed bodies rejected with
// a reason that names the problem.
#include <cstring>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "janus/infer/server_protocol.h"

namespace janus::serve {
namespace {

using nlohmann::json;

std::string le32(uint32_t v) {
  std::string s(4, '\0');
  std::memcpy(s.data(), &v, 4);
  return s;
}

// The body tritonclient.http builds for binary inputs: JSON header, then each input's bytes in order.
std::pair<std::string, std::string> binary_body(const json& header, const std::string& raw) {
  const std::string h = header.dump();
  return {h + raw, std::to_string(h.size())};
}

std::string reason(const std::string& body, std::optional<std::string> hl = std::nullopt) {
  try {
    std::optional<std::string_view> v;
    if (hl) v = *hl;
    (void)parse_infer_request(body, v);
  } catch (const ProtocolError& e) {
    return e.what();
  }
  return "";
}

TEST(ServeProtocol, JsonTensorsFlatAndNested) {
  const json j = {{"id", "r1"},
                  {"parameters", {{"seed", 7}}},
                  {"inputs",
                   {{{"name", "text"}, {"datatype", "BYTES"}, {"shape", {2}}, {"data", {"a red circle", "b"}}},
                    {{"name", "x"}, {"datatype", "FP32"}, {"shape", {2, 2}}, {"data", {{1.5, 2}, {3, -4}}}},
                    {{"name", "k"}, {"datatype", "INT64"}, {"shape", {3}}, {"data", {1, -2, 3}}},
                    {{"name", "b"}, {"datatype", "BOOL"}, {"shape", {2}}, {"data", {true, false}}}}}};
  const auto r = parse_infer_request(j.dump(), std::nullopt);
  EXPECT_EQ(r.id, "r1");
  EXPECT_EQ(r.parameters["seed"], 7);
  ASSERT_EQ(r.inputs.size(), 4u);
  EXPECT_EQ(r.input("text")->elements, (std::vector<std::string>{"a red circle", "b"}));
  EXPECT_FALSE(r.input("text")->binary);
  EXPECT_EQ(r.input("x")->as_doubles(), (std::vector<double>{1.5, 2, 3, -4}));
  EXPECT_EQ(r.input("x")->shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(r.input("k")->as_doubles(), (std::vector<double>{1, -2, 3}));
  EXPECT_EQ(r.input("b")->as_doubles(), (std::vector<double>{1, 0}));
  EXPECT_EQ(r.input("missing"), nullptr);
}

TEST(ServeProtocol, BinaryTensorExtension) {
  const std::string img = std::string("\x89PNG\0\x01\x02", 7);
  const std::string bytes_raw = le32(7) + img + le32(0);
  float f[3] = {0.25f, -1.0f, 8.0f};
  const std::string fp_raw(reinterpret_cast<const char*>(f), sizeof(f));
  const json h = {
      {"inputs",
       {{{"name", "image"},
         {"datatype", "BYTES"},
         {"shape", {2}},
         {"parameters", {{"binary_data_size", bytes_raw.size()}}}},
        {{"name", "v"}, {"datatype", "FP32"}, {"shape", {1, 3}}, {"parameters", {{"binary_data_size", 12}}}}}},
      {"parameters", {{"binary_data_output", true}}}};
  const auto [body, hl] = binary_body(h, bytes_raw + fp_raw);
  const auto r = parse_infer_request(body, std::string_view(hl));
  EXPECT_TRUE(r.binary_output);
  ASSERT_EQ(r.input("image")->elements.size(), 2u);
  EXPECT_EQ(r.input("image")->elements[0], img);  // embedded NUL bytes survive
  EXPECT_EQ(r.input("image")->elements[1], "");
  EXPECT_TRUE(r.input("image")->binary);
  EXPECT_EQ(r.input("v")->as_doubles(), (std::vector<double>{0.25, -1.0, 8.0}));
}

TEST(ServeProtocol, MalformedRequestsHaveReasons) {
  EXPECT_NE(reason("{not json").find("not valid JSON"), std::string::npos);
  EXPECT_NE(reason("[1,2]").find("JSON object"), std::string::npos);
  EXPECT_NE(reason("8e555").find("not valid JSON"), std::string::npos);  // fuzz finding: number overflow
  EXPECT_NE(reason(R"({"inputs":[{"name":"t","datatype":"FP32","shape":[1],"data":[1e999]}]})").find("not valid JSON"),
            std::string::npos);
  EXPECT_NE(reason("{}").find("'inputs' array"), std::string::npos);
  EXPECT_NE(reason(R"({"inputs":[{"datatype":"BYTES","shape":[1],"data":["a"]}]})").find("string 'name'"),
            std::string::npos);
  EXPECT_NE(reason(R"({"inputs":[{"name":"t","datatype":"FP16","shape":[1],"data":[1]}]})")
                .find("unsupported datatype 'FP16'"),
            std::string::npos);
  EXPECT_NE(reason(R"({"inputs":[{"name":"t","datatype":"BYTES","shape":[2],"data":["a"]}]})")
                .find("data has 1 elements, shape needs 2"),
            std::string::npos);
  EXPECT_NE(reason(R"({"inputs":[{"name":"t","datatype":"BYTES","shape":[1],"data":["a","b"]}]})")
                .find("more elements than the shape"),
            std::string::npos);
  EXPECT_NE(
      reason(R"({"inputs":[{"name":"t","datatype":"BYTES","shape":[-1],"data":["a"]}]})").find("negative dimension"),
      std::string::npos);
  EXPECT_NE(reason(R"({"inputs":[{"name":"t","datatype":"BYTES","shape":[1],"data":[5]}]})")
                .find("BYTES data must be strings"),
            std::string::npos);
  EXPECT_NE(
      reason(R"({"inputs":[{"name":"t","datatype":"UINT8","shape":[1],"data":[300]}]})").find("out of range for UINT8"),
      std::string::npos);
  EXPECT_NE(reason(R"({"inputs":[{"name":"t","datatype":"INT32","shape":[1],"data":[1.5]}]})").find("must be integers"),
            std::string::npos);
  EXPECT_NE(reason(R"({"inputs":[{"name":"t","datatype":"BYTES","shape":[1000000000,1000000000],"data":[]}]})")
                .find("more than"),
            std::string::npos);
  EXPECT_NE(
      reason(
          R"({"inputs":[{"name":"t","datatype":"BYTES","shape":[1],"data":["a"]},{"name":"t","datatype":"BYTES","shape":[1],"data":["a"]}]})")
          .find("appears twice"),
      std::string::npos);
  EXPECT_NE(reason(std::string(100, '[') + std::string(100, ']')).find("nests deeper"), std::string::npos);
  EXPECT_NE(reason(R"({"inputs":[{"name":"t","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":4}}]})")
                .find("no Inference-Header-Content-Length"),
            std::string::npos);
  EXPECT_NE(
      reason(R"({"inputs":[{"name":"t","datatype":"BYTES","shape":[1],"parameters":{"shared_memory_region":"x"}}]})")
          .find("shared memory"),
      std::string::npos);
  EXPECT_NE(
      reason(R"({"inputs":[],"outputs":[{"name":"o","parameters":{"classification":3}}]})").find("classification"),
      std::string::npos);
}

TEST(ServeProtocol, MalformedBinaryBodiesHaveReasons) {
  auto bin = [](const std::string& dtype, int64_t n, int64_t size, const std::string& raw, std::string hl = "") {
    const json h = {
        {"inputs",
         {{{"name", "t"}, {"datatype", dtype}, {"shape", {n}}, {"parameters", {{"binary_data_size", size}}}}}}};
    auto [body, len] = binary_body(h, raw);
    return reason(body, hl.empty() ? len : hl);
  };
  EXPECT_NE(bin("BYTES", 1, 8, le32(4) + "ab").find("overruns the body"), std::string::npos);
  EXPECT_NE(bin("BYTES", 1, 6, le32(4) + "ab").find("overruns the data"), std::string::npos);
  EXPECT_NE(bin("BYTES", 2, 6, le32(2) + "ab").find("ends inside element 1"), std::string::npos);
  EXPECT_NE(bin("BYTES", 1, 7, le32(2) + "abc").find("after the shape's 1 elements"), std::string::npos);
  EXPECT_NE(bin("FP32", 2, 4, "abcd").find("binary_data_size 4 != 2 elements x 4 bytes"), std::string::npos);
  EXPECT_NE(bin("FP32", 1, 4, "abcdEXTRA").find("not claimed"), std::string::npos);
  EXPECT_NE(bin("BYTES", 1, 6, le32(2) + "ab", "99999999").find("exceeds the body"), std::string::npos);
  EXPECT_NE(bin("BYTES", 1, 6, le32(2) + "ab", "-1").find("decimal byte count"), std::string::npos);
  EXPECT_NE(bin("BYTES", 1, -3, "").find("non-negative"), std::string::npos);
}

TEST(ServeProtocol, ResponseJsonAndBinary) {
  InferRequest req;
  req.id = "abc";
  const float v[4] = {1, 2, 3, 4};
  std::vector<Tensor> outs{Tensor::bytes("caption", {2}, {"a red circle", "x"}), Tensor::fp32("embedding", {2, 2}, v)};
  auto r = encode_infer_response("m", req, outs);
  EXPECT_FALSE(r.header_length);
  auto j = json::parse(r.body);
  EXPECT_EQ(j["model_name"], "m");
  EXPECT_EQ(j["id"], "abc");
  EXPECT_EQ(j["outputs"][0]["data"][0], "a red circle");
  EXPECT_EQ(j["outputs"][1]["shape"], json({2, 2}));
  EXPECT_EQ(j["outputs"][1]["data"][3], 4.0);

  // binary_data_output for all, then one output asked for in JSON.
  req.binary_output = true;
  req.outputs = {{"embedding", std::nullopt}, {"caption", false}};
  r = encode_infer_response("m", req, outs);
  ASSERT_TRUE(r.header_length);
  j = json::parse(r.body.substr(0, static_cast<size_t>(*r.header_length)));
  EXPECT_EQ(j["outputs"][0]["name"], "embedding");
  EXPECT_EQ(j["outputs"][0]["parameters"]["binary_data_size"], 16);
  EXPECT_EQ(j["outputs"][1]["data"][1], "x");
  EXPECT_EQ(r.body.size() - static_cast<size_t>(*r.header_length), 16u);
  float back[4];
  std::memcpy(back, r.body.data() + *r.header_length, 16);
  EXPECT_EQ(back[2], 3.0f);

  req.outputs = {{"nope", std::nullopt}};
  EXPECT_THROW(encode_infer_response("m", req, outs), ProtocolError);
}

TEST(ServeProtocol, Base64RoundTripAndErrors) {
  for (const std::string& s : std::vector<std::string>{"", "a", "ab", "abc", "abcd", std::string("\0\xff\x10", 3)}) {
    EXPECT_EQ(base64_decode(base64_encode(s)), s);
  }
  EXPECT_EQ(base64_encode("Man"), "TWFu");
  EXPECT_EQ(base64_decode("TWE="), "Ma");
  EXPECT_EQ(base64_decode(" TWE \n"), "Ma");
  EXPECT_THROW(base64_decode("TW!u"), ProtocolError);
  EXPECT_THROW(base64_decode("TWFuT"), ProtocolError);
}

}  // namespace
}  // namespace janus::serve
