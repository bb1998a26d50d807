// libFuzzer target: janus_serve's request handling on arbitrary bytes. The input is split into a URL path, an
// optional Inference-Header-Content-Length value and the body:
//   <path>\n<header length or empty>\n<body...>
// Every input must give an HTTP status with a JSON {"error"} reason for 4xx, never a crash or a hang; parsed
// requests must re-encode (the response encoder runs on the echoed tensors).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "janus/infer/server.h"

namespace {

using namespace janus::serve;

// "echo": any BYTES "text" [n] and optional FP32 "x" [n, -1] -> the same tensors back.
class Echo : public ModelHandler {
 public:
  struct Work : PreparedRequest {
    std::vector<Tensor> inputs;
  };
  Echo() {
    md_.name = "echo";
    md_.inputs = {{"text", DataType::kBytes, {-1}}, {"x", DataType::kFP32, {-1, -1}, true}};
    md_.outputs = {{"text", DataType::kBytes, {-1}}, {"x", DataType::kFP32, {-1, -1}}};
  }
  const ModelMetadata& metadata() const override { return md_; }
  std::unique_ptr<PreparedRequest> prepare(const InferRequest& r) const override {
    auto w = std::make_unique<Work>();
    w->inputs = r.inputs;
    for (const auto& t : r.inputs) {
      if (t.name == "text" && !t.binary) {
        for (const auto& e : t.elements) {
          if (e.rfind("b64:", 0) == 0) (void)base64_decode(e.substr(4));
        }
      }
    }
    return w;
  }
  std::vector<std::vector<Tensor>> run(const std::vector<PreparedRequest*>& batch) override {
    std::vector<std::vector<Tensor>> out;
    for (auto* p : batch) out.push_back(static_cast<Work*>(p)->inputs);
    return out;
  }

 private:
  ModelMetadata md_;
};

Server& server() {
  static Server* s = [] {
    ServerOptions o;
    o.batching.max_delay = std::chrono::microseconds(0);
    auto* srv = new Server(o);
    srv->add_model(std::make_shared<Echo>());
    return srv;
  }();
  return *s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string in(reinterpret_cast<const char*>(data), size);
  const size_t a = in.find('\n');
  const size_t b = a == std::string::npos ? std::string::npos : in.find('\n', a + 1);
  std::string path = "/v2/models/echo/infer", body = in;
  std::optional<std::string> hl;
  if (b != std::string::npos) {
    path = in.substr(0, a);
    const std::string h = in.substr(a + 1, b - a - 1);
    if (!h.empty()) hl = h;
    body = in.substr(b + 1);
  }
  const auto r = server().handle(path.rfind("GET ", 0) == 0 ? "GET" : "POST",
                                 path.rfind("GET ", 0) == 0 ? path.substr(4) : path, body, hl);
  if (r.status >= 400) {
    const auto j = nlohmann::json::parse(r.body);  // throws (-> crash report) if the error body is not JSON
    if (!j.contains("error")) __builtin_trap();
  }
  if (r.status == 500) __builtin_trap();  // the echo model never fails: a 500 is a server bug
  return 0;
}
