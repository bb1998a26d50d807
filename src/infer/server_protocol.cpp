// KServe v2 / Triton request parsing and response encoding (see include/janus/infer/server_protocol.h).
#include "janus/infer/server_protocol.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstring>
#include <limits>

#include <fmt/format.h>

namespace janus::serve {
namespace {

using nlohmann::json;

[[noreturn]] void fail(const std::string& reason) { throw ProtocolError(reason); }

struct TypeInfo {
  DataType type;
  const char* name;
  int64_t size;
};
constexpr std::array<TypeInfo, 9> kTypes{{{DataType::kBool, "BOOL", 1},
                                          {DataType::kUInt8, "UINT8", 1},
                                          {DataType::kInt8, "INT8", 1},
                                          {DataType::kInt16, "INT16", 2},
                                          {DataType::kInt32, "INT32", 4},
                                          {DataType::kInt64, "INT64", 8},
                                          {DataType::kFP32, "FP32", 4},
                                          {DataType::kFP64, "FP64", 8},
                                          {DataType::kBytes, "BYTES", 0}}};

// Nesting depth of a JSON text (brackets outside strings), so a hostile body cannot drive a deep recursion.
int64_t json_depth(std::string_view s) {
  int64_t depth = 0, worst = 0;
  bool in_string = false, escape = false;
  for (const char c : s) {
    if (in_string) {
      if (escape) {
        escape = false;
      } else if (c == '\\') {
        escape = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      worst = std::max(worst, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return worst;
}

int64_t shape_numel(const std::vector<int64_t>& shape, const std::string& what, const ProtocolLimits& limits) {
  int64_t n = 1;
  for (const int64_t d : shape) {
    if (d < 0) fail(fmt::format("{}: negative dimension {} in shape", what, d));
    if (d != 0 && n > limits.max_elements / d) {
      fail(fmt::format("{}: shape has more than {} elements", what, limits.max_elements));
    }
    n *= d;
  }
  if (n > limits.max_elements) fail(fmt::format("{}: shape has more than {} elements", what, limits.max_elements));
  return n;
}

template <class T>
void put(std::string& out, T v) {
  char buf[sizeof(T)];
  std::memcpy(buf, &v, sizeof(T));  // little-endian host (x86-64, aarch64)
  out.append(buf, sizeof(T));
}

// Appends one JSON number to `out` as the tensor's element type, checking range.
void put_json_number(std::string& out, const json& v, DataType t, const std::string& what) {
  if (t == DataType::kBool) {
    if (!v.is_boolean()) fail(fmt::format("{}: BOOL data must be true/false", what));
    out.push_back(v.get<bool>() ? 1 : 0);
    return;
  }
  if (!v.is_number()) fail(fmt::format("{}: {} data must be numbers, got {}", what, datatype_name(t), v.type_name()));
  if (t == DataType::kFP32 || t == DataType::kFP64) {
    const double d = v.get<double>();
    if (t == DataType::kFP32) {
      put<float>(out, static_cast<float>(d));
    } else {
      put<double>(out, d);
    }
    return;
  }
  if (v.is_number_float()) fail(fmt::format("{}: {} data must be integers", what, datatype_name(t)));
  int64_t x = 0;
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail(fmt::format("{}: value out of range", what));
    x = static_cast<int64_t>(u);
  } else {
    x = v.get<int64_t>();
  }
  auto check = [&](int64_t lo, int64_t hi) {
    if (x < lo || x > hi) fail(fmt::format("{}: value {} out of range for {}", what, x, datatype_name(t)));
  };
  switch (t) {
    case DataType::kUInt8:
      check(0, 255);
      put<uint8_t>(out, static_cast<uint8_t>(x));
      break;
    case DataType::kInt8:
      check(-128, 127);
      put<int8_t>(out, static_cast<int8_t>(x));
      break;
    case DataType::kInt16:
      check(-32768, 32767);
      put<int16_t>(out, static_cast<int16_t>(x));
      break;
    case DataType::kInt32:
      check(std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max());
      put<int32_t>(out, static_cast<int32_t>(x));
      break;
    default:
      put<int64_t>(out, x);
      break;
  }
}

// Flattens "data" (flat or nested arrays) row-major into the tensor.
void flatten_data(const json& d, Tensor& t, const std::string& what, int64_t limit) {
  if (d.is_array()) {
    for (const auto& e : d) flatten_data(e, t, what, limit);
    return;
  }
  const int64_t have = t.datatype == DataType::kBytes ? static_cast<int64_t>(t.elements.size())
                                                      : static_cast<int64_t>(t.data.size()) / datatype_size(t.datatype);
  if (have >= limit) fail(fmt::format("{}: data has more elements than the shape's {}", what, limit));
  if (t.datatype == DataType::kBytes) {
    if (!d.is_string()) fail(fmt::format("{}: BYTES data must be strings, got {}", what, d.type_name()));
    t.elements.push_back(d.get<std::string>());
  } else {
    put_json_number(t.data, d, t.datatype, what);
  }
}

// Splits a binary BYTES tensor [u32 len][bytes]... into `n` elements.
void split_bytes(std::string_view raw, int64_t n, Tensor& t, const std::string& what) {
  size_t pos = 0;
  t.elements.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    if (raw.size() - pos < 4) fail(fmt::format("{}: binary BYTES data ends inside element {}'s length", what, i));
    uint32_t len = 0;
    std::memcpy(&len, raw.data() + pos, 4);
    pos += 4;
    if (raw.size() - pos < len) {
      fail(fmt::format("{}: binary BYTES element {} of {} bytes overruns the data", what, i, len));
    }
    t.elements.emplace_back(raw.substr(pos, len));
    pos += len;
  }
  if (pos != raw.size()) {
    fail(fmt::format("{}: binary BYTES data has {} bytes after the shape's {} elements", what, raw.size() - pos, n));
  }
}

std::optional<bool> bool_param(const json& params, const char* key, const std::string& what) {
  if (!params.is_object() || !params.contains(key)) return std::nullopt;
  const auto& v = params.at(key);
  if (!v.is_boolean()) fail(fmt::format("{}: parameter '{}' must be a boolean", what, key));
  return v.get<bool>();
}

}  // namespace

const char* datatype_name(DataType t) {
  for (const auto& i : kTypes) {
    if (i.type == t) return i.name;
  }
  return "?";
}

std::optional<DataType> parse_datatype(std::string_view name) {
  for (const auto& i : kTypes) {
    if (name == i.name) return i.type;
  }
  return std::nullopt;
}

int64_t datatype_size(DataType t) {
  for (const auto& i : kTypes) {
    if (i.type == t) return i.size;
  }
  return 0;
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (const int64_t d : shape) n *= d;
  return n;
}

std::vector<double> Tensor::as_doubles() const {
  if (datatype == DataType::kBytes) fail(fmt::format("input '{}': expected a numeric tensor, got BYTES", name));
  const int64_t sz = datatype_size(datatype);
  const int64_t n = static_cast<int64_t>(data.size()) / sz;
  std::vector<double> out(static_cast<size_t>(n));
  const char* p = data.data();
  for (int64_t i = 0; i < n; ++i, p += sz) {
    switch (datatype) {
      case DataType::kBool:
      case DataType::kUInt8:
        out[i] = static_cast<uint8_t>(*p);
        break;
      case DataType::kInt8:
        out[i] = static_cast<int8_t>(*p);
        break;
      case DataType::kInt16: {
        int16_t v;
        std::memcpy(&v, p, 2);
        out[i] = v;
        break;
      }
      case DataType::kInt32: {
        int32_t v;
        std::memcpy(&v, p, 4);
        out[i] = v;
        break;
      }
      case DataType::kInt64: {
        int64_t v;
        std::memcpy(&v, p, 8);
        out[i] = static_cast<double>(v);
        break;
      }
      case DataType::kFP32: {
        float v;
        std::memcpy(&v, p, 4);
        out[i] = v;
        break;
      }
      case DataType::kFP64: {
        double v;
        std::memcpy(&v, p, 8);
        out[i] = v;
        break;
      }
      case DataType::kBytes:
        break;
    }
  }
  return out;
}

Tensor Tensor::bytes(std::string name, std::vector<int64_t> shape, std::vector<std::string> elements) {
  Tensor t;
  t.name = std::move(name);
  t.datatype = DataType::kBytes;
  t.shape = std::move(shape);
  t.elements = std::move(elements);
  return t;
}

Tensor Tensor::fp32(std::string name, std::vector<int64_t> shape, const float* values) {
  Tensor t;
  t.name = std::move(name);
  t.datatype = DataType::kFP32;
  t.shape = std::move(shape);
  t.data.assign(reinterpret_cast<const char*>(values), static_cast<size_t>(t.numel()) * sizeof(float));
  return t;
}

Tensor Tensor::uint8(std::string name, std::vector<int64_t> shape, const uint8_t* values) {
  Tensor t;
  t.name = std::move(name);
  t.datatype = DataType::kUInt8;
  t.shape = std::move(shape);
  t.data.assign(reinterpret_cast<const char*>(values), static_cast<size_t>(t.numel()));
  return t;
}

const Tensor* InferRequest::input(std::string_view name) const {
  for (const auto& t : inputs) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

InferRequest parse_infer_request(std::string_view body, std::optional<std::string_view> header_length,
                                 const ProtocolLimits& limits) {
  size_t json_len = body.size();
  if (header_length) {
    const auto h = *header_length;
    if (h.empty() || h.size() > 18 || h.find_first_not_of("0123456789") != std::string_view::npos) {
      fail("Inference-Header-Content-Length must be a decimal byte count");
    }
    const auto n = static_cast<size_t>(std::stoll(std::string(h)));
    if (n > body.size()) {
      fail(fmt::format("Inference-Header-Content-Length {} exceeds the body's {} bytes", n, body.size()));
    }
    json_len = n;
  }
  const std::string_view text = body.substr(0, json_len);
  if (json_depth(text) > limits.max_json_depth) {
    fail(fmt::format("request JSON nests deeper than {} levels", limits.max_json_depth));
  }
  json j;
  try {
    j = json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {  // parse_error, and out_of_range for numbers like 8e555
    fail(fmt::format("request is not valid JSON: {}", e.what()));
  }
  if (!j.is_object()) fail("request body must be a JSON object");

  InferRequest req;
  if (j.contains("id")) {
    if (!j["id"].is_string()) fail("'id' must be a string");
    req.id = j["id"].get<std::string>();
  }
  if (j.contains("parameters")) {
    if (!j["parameters"].is_object()) fail("'parameters' must be an object");
    req.parameters = j["parameters"];
    req.binary_output = bool_param(req.parameters, "binary_data_output", "request").value_or(false);
  }
  if (!j.contains("inputs") || !j["inputs"].is_array()) fail("request needs an 'inputs' array");
  const auto& inputs = j["inputs"];
  if (static_cast<int64_t>(inputs.size()) > limits.max_inputs) {
    fail(fmt::format("request has {} inputs, more than {}", inputs.size(), limits.max_inputs));
  }
  size_t binary_pos = json_len;
  for (size_t k = 0; k < inputs.size(); ++k) {
    const auto& in = inputs[k];
    if (!in.is_object()) fail(fmt::format("inputs[{}] must be an object", k));
    if (!in.contains("name") || !in["name"].is_string()) fail(fmt::format("inputs[{}] needs a string 'name'", k));
    Tensor t;
    t.name = in["name"].get<std::string>();
    const std::string what = fmt::format("input '{}'", t.name);
    for (const auto& other : req.inputs) {
      if (other.name == t.name) fail(fmt::format("{} appears twice", what));
    }
    if (!in.contains("datatype") || !in["datatype"].is_string())
      fail(fmt::format("{} needs a string 'datatype'", what));
    const auto dt = parse_datatype(in["datatype"].get<std::string>());
    if (!dt) fail(fmt::format("{}: unsupported datatype '{}'", what, in["datatype"].get<std::string>()));
    t.datatype = *dt;
    if (!in.contains("shape") || !in["shape"].is_array()) fail(fmt::format("{} needs a 'shape' array", what));
    if (static_cast<int64_t>(in["shape"].size()) > limits.max_rank) {
      fail(fmt::format("{}: rank {} exceeds {}", what, in["shape"].size(), limits.max_rank));
    }
    for (const auto& d : in["shape"]) {
      if (!d.is_number_integer()) fail(fmt::format("{}: shape entries must be integers", what));
      if (d.is_number_unsigned() && d.get<uint64_t>() > static_cast<uint64_t>(limits.max_elements)) {
        fail(fmt::format("{}: shape has more than {} elements", what, limits.max_elements));
      }
      t.shape.push_back(d.get<int64_t>());
    }
    const int64_t n = shape_numel(t.shape, what, limits);
    std::optional<int64_t> binary_size;
    if (in.contains("parameters")) {
      const auto& p = in["parameters"];
      if (!p.is_object()) fail(fmt::format("{}: 'parameters' must be an object", what));
      if (p.contains("shared_memory_region")) fail(fmt::format("{}: shared memory is not supported", what));
      if (p.contains("binary_data_size")) {
        if (!p["binary_data_size"].is_number_integer() || p["binary_data_size"].get<int64_t>() < 0) {
          fail(fmt::format("{}: binary_data_size must be a non-negative integer", what));
        }
        binary_size = p["binary_data_size"].get<int64_t>();
      }
    }
    if (binary_size) {
      if (!header_length)
        fail(fmt::format("{} has binary_data_size but the request has no Inference-Header-Content-Length", what));
      if (in.contains("data")) fail(fmt::format("{} has both 'data' and binary_data_size", what));
      if (static_cast<uint64_t>(*binary_size) > body.size() - binary_pos) {
        fail(fmt::format("{}: binary_data_size {} overruns the body ({} bytes left)", what, *binary_size,
                         body.size() - binary_pos));
      }
      const std::string_view raw = body.substr(binary_pos, static_cast<size_t>(*binary_size));
      binary_pos += static_cast<size_t>(*binary_size);
      t.binary = true;
      if (t.datatype == DataType::kBytes) {
        split_bytes(raw, n, t, what);
      } else {
        if (static_cast<int64_t>(raw.size()) != n * datatype_size(t.datatype)) {
          fail(fmt::format("{}: binary_data_size {} != {} elements x {} bytes", what, raw.size(), n,
                           datatype_size(t.datatype)));
        }
        t.data.assign(raw);
        if (t.datatype == DataType::kBool) {
          for (const char c : t.data) {
            if (c != 0 && c != 1) fail(fmt::format("{}: BOOL bytes must be 0 or 1", what));
          }
        }
      }
    } else {
      if (!in.contains("data")) fail(fmt::format("{} has neither 'data' nor binary_data_size", what));
      if (t.datatype != DataType::kBytes) t.data.reserve(static_cast<size_t>(n * datatype_size(t.datatype)));
      flatten_data(in["data"], t, what, n);
      const int64_t have = t.datatype == DataType::kBytes
                               ? static_cast<int64_t>(t.elements.size())
                               : static_cast<int64_t>(t.data.size()) / datatype_size(t.datatype);
      if (have != n) fail(fmt::format("{}: data has {} elements, shape needs {}", what, have, n));
    }
    req.inputs.push_back(std::move(t));
  }
  if (binary_pos != body.size()) {
    fail(fmt::format("{} bytes of binary data after the JSON are not claimed by any input's binary_data_size",
                     body.size() - binary_pos));
  }
  if (j.contains("outputs")) {
    if (!j["outputs"].is_array()) fail("'outputs' must be an array");
    for (size_t k = 0; k < j["outputs"].size(); ++k) {
      const auto& o = j["outputs"][k];
      if (!o.is_object() || !o.contains("name") || !o["name"].is_string()) {
        fail(fmt::format("outputs[{}] needs a string 'name'", k));
      }
      RequestedOutput r;
      r.name = o["name"].get<std::string>();
      if (o.contains("parameters")) {
        if (!o["parameters"].is_object()) fail(fmt::format("output '{}': 'parameters' must be an object", r.name));
        if (o["parameters"].contains("shared_memory_region")) {
          fail(fmt::format("output '{}': shared memory is not supported", r.name));
        }
        if (o["parameters"].contains("classification")) {
          fail(fmt::format("output '{}': the classification extension is not supported", r.name));
        }
        r.binary = bool_param(o["parameters"], "binary_data", "output '" + r.name + "'");
      }
      req.outputs.push_back(std::move(r));
    }
  }
  return req;
}

EncodedResponse encode_infer_response(const std::string& model, const InferRequest& request,
                                      const std::vector<Tensor>& outputs) {
  std::vector<std::pair<const Tensor*, bool>> chosen;
  if (request.outputs.empty()) {
    for (const auto& t : outputs) chosen.emplace_back(&t, request.binary_output);
  } else {
    for (const auto& r : request.outputs) {
      const Tensor* found = nullptr;
      for (const auto& t : outputs) {
        if (t.name == r.name) found = &t;
      }
      if (!found) fail(fmt::format("unknown output '{}' requested", r.name));
      chosen.emplace_back(found, r.binary.value_or(request.binary_output));
    }
  }
  json j;
  j["model_name"] = model;
  j["model_version"] = "1";
  if (!request.id.empty()) j["id"] = request.id;
  j["outputs"] = json::array();
  std::string binary;
  for (const auto& [t, bin] : chosen) {
    json o;
    o["name"] = t->name;
    o["datatype"] = datatype_name(t->datatype);
    o["shape"] = t->shape;
    if (bin) {
      const size_t before = binary.size();
      if (t->datatype == DataType::kBytes) {
        for (const auto& e : t->elements) {
          put<uint32_t>(binary, static_cast<uint32_t>(e.size()));
          binary += e;
        }
      } else {
        binary += t->data;
      }
      o["parameters"] = {{"binary_data_size", binary.size() - before}};
    } else if (t->datatype == DataType::kBytes) {
      // JSON strings must be UTF-8; nlohmann replaces invalid sequences instead of throwing.
      o["data"] = t->elements;
    } else if (t->datatype == DataType::kBool) {
      std::vector<bool> v;
      for (const char c : t->data) v.push_back(c != 0);
      o["data"] = v;
    } else if (t->datatype == DataType::kFP32 || t->datatype == DataType::kFP64) {
      o["data"] = t->as_doubles();
    } else {
      std::vector<int64_t> v;
      for (const double d : t->as_doubles()) v.push_back(static_cast<int64_t>(d));
      o["data"] = v;
    }
    j["outputs"].push_back(std::move(o));
  }
  EncodedResponse r;
  r.body = j.dump(-1, ' ', false, json::error_handler_t::replace);
  if (!binary.empty() || std::any_of(chosen.begin(), chosen.end(), [](const auto& c) { return c.second; })) {
    r.header_length = static_cast<int64_t>(r.body.size());
    r.body += binary;
    r.content_type = "application/octet-stream";
  } else {
    r.content_type = "application/json";
  }
  return r;
}

std::string error_body(std::string_view reason) {
  return json{{"error", std::string(reason)}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string base64_decode(std::string_view text) {
  static const auto table = [] {
    std::array<int8_t, 256> t{};
    t.fill(-1);
    const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; i < 64; ++i) t[static_cast<uint8_t>(a[i])] = static_cast<int8_t>(i);
    return t;
  }();
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  if (text.size() % 4 == 1) fail("invalid base64: bad length");
  std::string out;
  out.reserve(text.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (const char c : text) {
    const int8_t v = table[static_cast<uint8_t>(c)];
    if (v < 0) fail(fmt::format("invalid base64 character 0x{:02x}", static_cast<uint8_t>(c)));
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

std::string base64_encode(std::string_view bytes) {
  const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = (static_cast<uint8_t>(bytes[i]) << 16) | (static_cast<uint8_t>(bytes[i + 1]) << 8) |
                       static_cast<uint8_t>(bytes[i + 2]);
    out += a[v >> 18];
    out += a[(v >> 12) & 63];
    out += a[(v >> 6) & 63];
    out += a[v & 63];
  }
  if (i < bytes.size()) {
    uint32_t v = static_cast<uint8_t>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    out += a[v >> 18];
    out += a[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? a[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

}  // namespace janus::serve
