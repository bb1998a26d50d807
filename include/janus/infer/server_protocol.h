#pragma once
// The KServe v2 / Triton inference protocol's request and response bodies, independent of any HTTP library and of
// the model behind them (so the parser can be unit-tested and fuzzed on its own).
//
// A request body is a JSON object {"id"?, "parameters"?, "inputs": [...], "outputs"?: [...]}. Each input is
// {"name", "datatype", "shape", "data"} (JSON form: "data" is a flat or nested array, strings for BYTES) or, with
// the binary tensor extension, {"name", "datatype", "shape", "parameters": {"binary_data_size": N}}: the JSON is
// then the first H bytes of the body (header Inference-Header-Content-Length: H) and the tensors' raw bytes follow
// in input order. Binary BYTES tensors are element-wise [uint32 little-endian length][bytes]; numeric tensors are
// packed little-endian. This is what tritonclient.http sends (binary_data=True is its default).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "janus/core/error.h"

namespace janus::serve {

// A request the protocol rejects (HTTP 400). The message is the reason sent back as {"error": reason}.
class ProtocolError : public InputError {
 public:
  using InputError::InputError;
};

enum class DataType { kBool, kUInt8, kInt8, kInt16, kInt32, kInt64, kFP32, kFP64, kBytes };

const char* datatype_name(DataType t);
// "FP32" -> kFP32 ...; std::nullopt for names this server does not handle (FP16, BF16, UINT16..64).
std::optional<DataType> parse_datatype(std::string_view name);
// Bytes per element (0 for BYTES).
int64_t datatype_size(DataType t);

struct Tensor {
  std::string name;
  DataType datatype = DataType::kBytes;
  std::vector<int64_t> shape;
  std::string data;                   // numeric tensors: packed little-endian elements
  std::vector<std::string> elements;  // BYTES tensors: one string per element, row-major
  bool binary = false;                // arrived through the binary tensor extension (not JSON "data")

  int64_t numel() const;
  // Element values converted to T (numeric tensors only; ProtocolError for BYTES).
  std::vector<double> as_doubles() const;

  static Tensor bytes(std::string name, std::vector<int64_t> shape, std::vector<std::string> elements);
  static Tensor fp32(std::string name, std::vector<int64_t> shape, const float* values);
  static Tensor uint8(std::string name, std::vector<int64_t> shape, const uint8_t* values);
};

struct RequestedOutput {
  std::string name;
  std::optional<bool> binary;  // parameters.binary_data of the output entry
};

struct InferRequest {
  std::string id;
  nlohmann::json parameters = nlohmann::json::object();
  std::vector<Tensor> inputs;
  std::vector<RequestedOutput> outputs;  // empty: every output
  bool binary_output = false;            // parameters.binary_data_output

  const Tensor* input(std::string_view name) const;  // nullptr when absent
};

struct ProtocolLimits {
  int64_t max_inputs = 64;
  int64_t max_elements = 1 << 20;  // per tensor
  int64_t max_rank = 8;
  int64_t max_json_depth = 32;
};

// Parses an infer request body. `header_length` is the Inference-Header-Content-Length header's value (nullopt
// when absent: the whole body is JSON). Throws ProtocolError naming what is wrong.
InferRequest parse_infer_request(std::string_view body, std::optional<std::string_view> header_length,
                                 const ProtocolLimits& limits = {});

struct EncodedResponse {
  std::string body;
  std::optional<int64_t> header_length;  // set when binary tensors follow the JSON
  std::string content_type;              // application/json or application/octet-stream
};

// Encodes an infer response {"model_name", "model_version", "id", "outputs"}. Outputs follow the request's
// choice: only the requested ones (in request order) when it names any, each in binary when its binary_data
// parameter (or else the request's binary_data_output) says so. ProtocolError when a requested output does not
// exist.
EncodedResponse encode_infer_response(const std::string& model, const InferRequest& request,
                                      const std::vector<Tensor>& outputs);

// {"error": reason}
std::string error_body(std::string_view reason);

// Standard base64 (RFC 4648, padding optional, surrounding whitespace ignored). ProtocolError on bad input.
std::string base64_decode(std::string_view text);
std::string base64_encode(std::string_view bytes);

}  // namespace janus::serve
