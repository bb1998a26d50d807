#pragma once
// An inference server speaking the KServe v2 / Triton REST protocol (cpp-httplib underneath, not exposed here).
//
//   GET  /v2/health/live, /v2/health/ready        200 / 503 (ready: models loaded and not shutting down)
//   GET  /v2                                      server metadata
//   GET  /v2/models/{m}[/versions/1]              model metadata (inputs, outputs, datatypes, shapes)
//   GET  /v2/models/{m}[/versions/1]/ready        200 / 404
//   GET  /v2/models/{m}[/versions/1]/config       max_batch_size, dynamic batching settings
//   POST /v2/models/{m}[/versions/1]/infer        inference (JSON tensors or the binary tensor extension)
//   POST /v2/repository/index                     the models and their state
//   GET  /metrics                                 Prometheus text: requests, failures, batches, batch sizes, latency
//
// Errors are {"error": reason}: 400 malformed request, 404 unknown model or route, 413 body over the limit,
// 503 queue full or shutting down, 500 model failure.
//
// The server knows models only through ModelHandler (name, metadata, prepare one request, run a batch), so the
// protocol and batching core is tested with toy handlers and the Pipeline adapters (server_models.h) stay thin.
// Each model has its own dynamic batcher: one thread that takes queued requests until `max_batch` items are
// gathered or the oldest has waited `max_delay`, then runs them as one batch.
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "janus/infer/server_protocol.h"

namespace janus::serve {

struct TensorSpec {
  std::string name;
  DataType datatype = DataType::kBytes;
  std::vector<int64_t> shape;  // -1 = variable; the first dimension is the batch dimension
  bool optional = false;
};

struct ModelMetadata {
  std::string name;
  std::string platform = "libjanus";
  std::vector<TensorSpec> inputs;
  std::vector<TensorSpec> outputs;
  std::vector<std::string> parameters;  // request "parameters" the model reads (documentation only)
};

// One request's work, prepared on the HTTP thread and run later as part of a batch. Handlers derive from it.
struct PreparedRequest {
  virtual ~PreparedRequest() = default;
  int64_t items = 1;  // batch items this request contributes (its first dimension)
};

class ModelHandler {
 public:
  virtual ~ModelHandler() = default;
  virtual const ModelMetadata& metadata() const = 0;
  // Runs on the HTTP thread: validates and decodes one request (images, text). Throws InputError -> 400.
  // Must be thread-safe.
  virtual std::unique_ptr<PreparedRequest> prepare(const InferRequest& request) const = 0;
  // Runs on the model's batch thread: one output list per request, in order. An exception fails every request
  // of the batch (InputError -> 400, anything else -> 500).
  virtual std::vector<std::vector<Tensor>> run(const std::vector<PreparedRequest*>& batch) = 0;
};

// Checks a request's inputs against the metadata: every required input present, no unknown input, datatypes
// equal, ranks equal, fixed dimensions equal, and one batch size (first dimension) shared by every batched input.
// Returns that batch size. Throws ProtocolError.
int64_t check_inputs(const InferRequest& request, const ModelMetadata& metadata);

struct BatchingOptions {
  int64_t max_batch = 32;                     // items per batch (1 = no batching)
  std::chrono::microseconds max_delay{5000};  // how long the oldest queued request may wait for company
  int64_t max_queue = 256;                    // queued (not yet running) requests per model; beyond: 503
};

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;  // 0: any free port (see Server::bind)
  int64_t max_body_bytes = 16LL << 20;
  int http_threads = 64;  // connections served at once (each keep-alive connection holds one)
  int keep_alive_timeout_s = 2;
  BatchingOptions batching;
  ProtocolLimits limits;
};

struct ModelStats {
  int64_t requests = 0;  // infer requests answered 200
  int64_t failures = 0;  // infer requests answered 4xx/5xx after routing to this model
  int64_t rejected = 0;  // 503 because the queue was full
  int64_t batches = 0;
  int64_t items = 0;
  std::map<int64_t, int64_t> batch_sizes;  // items per batch -> count
  double latency_us_sum = 0;               // of successful requests, arrival to response
  std::vector<int64_t> latency_buckets;    // counts per bucket of kLatencyBucketsUs (+inf last)
};

struct HttpReply {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::optional<int64_t> header_length;  // Inference-Header-Content-Length
};

class Server {
 public:
  explicit Server(ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Before bind(). InputError on a duplicate name.
  void add_model(std::shared_ptr<ModelHandler> handler);
  // Binds host:port (port 0: a free port) and starts the batchers. Returns the port. Error when it cannot bind.
  int bind();
  // Serves until stop(); then drains: requests already received are answered before it returns.
  void serve();
  // Thread-safe; not async-signal-safe (call it from a signal-waiting thread).
  void stop();

  // The routing and protocol logic without HTTP (what the HTTP layer calls; used by tests and the fuzzer).
  HttpReply handle(const std::string& method, const std::string& path, const std::string& body,
                   const std::optional<std::string>& inference_header_length);

  std::vector<std::string> model_names() const;
  ModelStats stats(const std::string& model) const;
  std::string metrics_text() const;
  const ServerOptions& options() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A minimal blocking HTTP/1.1 client (keep-alive) for benchmarks, stress runs and tests. One per thread.
class Client {
 public:
  Client(const std::string& host, int port, double timeout_s = 60);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  // status -1 with the error in body when the connection fails.
  HttpReply get(const std::string& path);
  HttpReply post(const std::string& path, const std::string& body, const std::string& content_type = "application/json",
                 const std::optional<int64_t>& inference_header_length = std::nullopt);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace janus::serve
