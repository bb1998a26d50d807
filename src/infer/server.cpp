// KServe v2 server: routing, dynamic batching, limits and counters (see include/janus/infer/server.h).
#include "janus/infer/server.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <regex>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <httplib.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

namespace janus::serve {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr std::array<double, 13> kLatencyBucketsUs{1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 5e6, 1e7};

// A request the server answers with a status other than 400/500 (404, 503).
struct StatusError : std::runtime_error {
  int status;
  StatusError(int s, const std::string& what) : std::runtime_error(what), status(s) {}
};

json spec_json(const TensorSpec& s) {
  json j{{"name", s.name}, {"datatype", datatype_name(s.datatype)}, {"shape", s.shape}};
  if (s.optional) j["optional"] = true;
  return j;
}

HttpReply json_reply(int status, const json& j) {
  HttpReply r;
  r.status = status;
  r.body = j.dump(-1, ' ', false, json::error_handler_t::replace);
  return r;
}

HttpReply error_reply(int status, const std::string& reason) {
  HttpReply r;
  r.status = status;
  r.body = error_body(reason);
  return r;
}

// Dynamic batcher of one model: a bounded queue and one thread running batches.
class Batcher {
 public:
  struct Pending {
    std::unique_ptr<PreparedRequest> work;
    std::promise<std::vector<Tensor>> result;
    Clock::time_point arrived;
  };

  Batcher(std::shared_ptr<ModelHandler> handler, BatchingOptions opts, std::mutex& stats_mu, ModelStats& stats)
      : handler_(std::move(handler)), opts_(opts), stats_mu_(stats_mu), stats_(stats) {
    thread_ = std::thread([this] { loop(); });
  }
  ~Batcher() { shutdown(); }

  // Queues one request; StatusError 503 when the queue is full or the batcher stopped.
  std::future<std::vector<Tensor>> submit(std::unique_ptr<PreparedRequest> work) {
    auto p = std::make_shared<Pending>();
    p->work = std::move(work);
    p->arrived = Clock::now();
    auto fut = p->result.get_future();
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (stopping_) throw StatusError(503, "server is shutting down");
      if (static_cast<int64_t>(queue_.size()) >= opts_.max_queue) {
        throw StatusError(
            503, fmt::format("model '{}' queue is full ({} requests)", handler_->metadata().name, opts_.max_queue));
      }
      queue_.push_back(std::move(p));
    }
    cv_.notify_one();
    return fut;
  }

  // Runs what is queued, then stops the thread.
  void shutdown() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (stopping_ && !thread_.joinable()) return;
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lk(mu_);
    while (true) {
      cv_.wait(lk, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      // Wait for company until the batch is full or the oldest request's delay is up.
      const auto deadline = queue_.front()->arrived + opts_.max_delay;
      while (!stopping_ && queued_items() < opts_.max_batch && Clock::now() < deadline) {
        cv_.wait_until(lk, deadline);
      }
      std::vector<std::shared_ptr<Pending>> batch;
      int64_t items = 0;
      while (!queue_.empty() && (batch.empty() || items + queue_.front()->work->items <= opts_.max_batch)) {
        items += queue_.front()->work->items;
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      lk.unlock();
      run(batch, items);
      lk.lock();
    }
  }

  int64_t queued_items() const {
    int64_t n = 0;
    for (const auto& p : queue_) n += p->work->items;
    return n;
  }

  void run(std::vector<std::shared_ptr<Pending>>& batch, int64_t items) {
    std::vector<PreparedRequest*> work;
    for (auto& p : batch) work.push_back(p->work.get());
    {
      std::lock_guard<std::mutex> lk(stats_mu_);
      stats_.batches += 1;
      stats_.items += items;
      stats_.batch_sizes[items] += 1;
    }
    try {
      auto outs = handler_->run(work);
      if (outs.size() != batch.size()) {
        throw Error(fmt::format("model '{}' returned {} results for a batch of {} requests", handler_->metadata().name,
                                outs.size(), batch.size()));
      }
      for (size_t i = 0; i < batch.size(); ++i) batch[i]->result.set_value(std::move(outs[i]));
    } catch (...) {
      const auto e = std::current_exception();
      for (auto& p : batch) p->result.set_exception(e);
    }
  }

  std::shared_ptr<ModelHandler> handler_;
  BatchingOptions opts_;
  std::mutex& stats_mu_;
  ModelStats& stats_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Pending>> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

struct Model {
  std::shared_ptr<ModelHandler> handler;
  ModelStats stats;
  std::unique_ptr<Batcher> batcher;
};

}  // namespace

int64_t check_inputs(const InferRequest& request, const ModelMetadata& metadata) {
  int64_t batch = -1;
  for (const auto& t : request.inputs) {
    const auto it = std::find_if(metadata.inputs.begin(), metadata.inputs.end(),
                                 [&](const TensorSpec& s) { return s.name == t.name; });
    if (it == metadata.inputs.end()) {
      std::string names;
      for (const auto& s : metadata.inputs) names += (names.empty() ? "" : ", ") + s.name;
      throw ProtocolError(fmt::format("model '{}' has no input '{}' (inputs: {})", metadata.name, t.name, names));
    }
  }
  for (const auto& s : metadata.inputs) {
    const Tensor* t = request.input(s.name);
    if (!t) {
      if (s.optional) continue;
      throw ProtocolError(fmt::format("model '{}' needs input '{}'", metadata.name, s.name));
    }
    if (t->datatype != s.datatype) {
      throw ProtocolError(
          fmt::format("input '{}' must be {}, got {}", s.name, datatype_name(s.datatype), datatype_name(t->datatype)));
    }
    if (t->shape.size() != s.shape.size()) {
      throw ProtocolError(fmt::format("input '{}' must have rank {} (shape {}), got shape [{}]", s.name, s.shape.size(),
                                      json(s.shape).dump(), fmt::join(t->shape, ", ")));
    }
    for (size_t d = 1; d < s.shape.size(); ++d) {
      if (s.shape[d] >= 0 && t->shape[d] != s.shape[d]) {
        throw ProtocolError(
            fmt::format("input '{}' dimension {} must be {}, got {}", s.name, d, s.shape[d], t->shape[d]));
      }
    }
    if (s.shape.empty()) continue;
    if (batch < 0) {
      batch = t->shape[0];
    } else if (t->shape[0] != batch) {
      throw ProtocolError(
          fmt::format("input '{}' has batch size {} but another input has {}", s.name, t->shape[0], batch));
    }
  }
  if (batch == 0) throw ProtocolError("request has an empty batch (first dimension 0)");
  return std::max<int64_t>(batch, 1);
}

struct Server::Impl {
  ServerOptions opts;
  std::map<std::string, Model> models;
  mutable std::mutex stats_mu;
  httplib::Server http;
  std::atomic<bool> bound{false};
  std::atomic<bool> stopping{false};
  std::atomic<int64_t> http_errors{0};

  Model* find(const std::string& name, const std::string& version) {
    auto it = models.find(name);
    if (it == models.end()) throw StatusError(404, fmt::format("unknown model '{}'", name));
    if (!version.empty() && version != "1") {
      throw StatusError(404, fmt::format("model '{}' has no version '{}' (only 1)", name, version));
    }
    return &it->second;
  }

  HttpReply metadata(Model& m) {
    const auto& md = m.handler->metadata();
    json j{{"name", md.name}, {"versions", {"1"}}, {"platform", md.platform}};
    j["inputs"] = json::array();
    j["outputs"] = json::array();
    for (const auto& s : md.inputs) j["inputs"].push_back(spec_json(s));
    for (const auto& s : md.outputs) j["outputs"].push_back(spec_json(s));
    if (!md.parameters.empty()) j["parameters"] = md.parameters;
    return json_reply(200, j);
  }

  HttpReply config(Model& m) {
    const auto& md = m.handler->metadata();
    json j{{"name", md.name},
           {"platform", md.platform},
           {"max_batch_size", opts.batching.max_batch},
           {"dynamic_batching",
            {{"max_queue_delay_microseconds", opts.batching.max_delay.count()},
             {"default_queue_policy", {{"max_queue_size", opts.batching.max_queue}}}}}};
    j["input"] = json::array();
    j["output"] = json::array();
    for (const auto& s : md.inputs) j["input"].push_back(spec_json(s));
    for (const auto& s : md.outputs) j["output"].push_back(spec_json(s));
    return json_reply(200, j);
  }

  HttpReply infer(Model& m, const std::string& body, const std::optional<std::string>& header_length) {
    const auto t0 = Clock::now();
    const auto& md = m.handler->metadata();
    HttpReply reply;
    try {
      std::optional<std::string_view> hl;
      if (header_length) hl = *header_length;
      const InferRequest req = parse_infer_request(body, hl, opts.limits);
      const int64_t n = check_inputs(req, md);
      if (n > opts.batching.max_batch) {
        throw ProtocolError(fmt::format("request batch of {} exceeds max_batch_size {}", n, opts.batching.max_batch));
      }
      auto work = m.handler->prepare(req);
      work->items = n;
      auto fut = m.batcher->submit(std::move(work));
      const auto outputs = fut.get();
      const auto enc = encode_infer_response(md.name, req, outputs);
      reply.body = enc.body;
      reply.content_type = enc.content_type;
      reply.header_length = enc.header_length;
    } catch (const StatusError& e) {
      reply = error_reply(e.status, e.what());
    } catch (const InputError& e) {
      reply = error_reply(400, e.what());
    } catch (const std::exception& e) {
      spdlog::error("model '{}': {}", md.name, e.what());
      reply = error_reply(500, fmt::format("model '{}' failed: {}", md.name, e.what()));
    }
    const double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
    std::lock_guard<std::mutex> lk(stats_mu);
    if (reply.status == 200) {
      m.stats.requests += 1;
      m.stats.latency_us_sum += us;
      size_t b = 0;
      while (b < kLatencyBucketsUs.size() && us > kLatencyBucketsUs[b]) ++b;
      m.stats.latency_buckets[b] += 1;
    } else {
      m.stats.failures += 1;
      if (reply.status == 503) m.stats.rejected += 1;
    }
    return reply;
  }
};

Server::Server(ServerOptions options) : impl_(std::make_unique<Impl>()) {
  if (options.batching.max_batch < 1) throw InputError("server: max batch must be >= 1");
  if (options.batching.max_queue < 1) throw InputError("server: queue size must be >= 1");
  if (options.batching.max_delay.count() < 0) throw InputError("server: max delay must be >= 0");
  if (options.max_body_bytes < 1024) throw InputError("server: body limit must be >= 1 KiB");
  if (options.http_threads < 1) throw InputError("server: http threads must be >= 1");
  impl_->opts = std::move(options);
}

Server::~Server() {
  stop();
  for (auto& [name, m] : impl_->models) {
    if (m.batcher) m.batcher->shutdown();
  }
}

void Server::add_model(std::shared_ptr<ModelHandler> handler) {
  const std::string name = handler->metadata().name;
  if (impl_->bound) throw Error("server: add_model after bind");
  if (impl_->models.count(name)) throw InputError(fmt::format("server: model '{}' added twice", name));
  auto& m = impl_->models[name];
  m.handler = std::move(handler);
  m.stats.latency_buckets.assign(kLatencyBucketsUs.size() + 1, 0);
  m.batcher = std::make_unique<Batcher>(m.handler, impl_->opts.batching, impl_->stats_mu, m.stats);
}

HttpReply Server::handle(const std::string& method, const std::string& path, const std::string& body,
                         const std::optional<std::string>& inference_header_length) {
  static const std::regex model_re(R"(^/v2/models/([^/]+)(?:/versions/([^/]+))?(/ready|/config|/infer)?$)");
  auto& I = *impl_;
  try {
    if (method == "GET" && path == "/v2/health/live") return HttpReply{200, "", "text/plain", {}};
    if (method == "GET" && path == "/v2/health/ready") {
      if (I.stopping) return error_reply(503, "server is shutting down");
      return HttpReply{200, "", "text/plain", {}};
    }
    if (method == "GET" && path == "/v2") {
      return json_reply(
          200, {{"name", "janus"}, {"version", "0.1.0"}, {"extensions", {"binary_tensor_data", "model_repository"}}});
    }
    if (method == "GET" && path == "/metrics") return HttpReply{200, metrics_text(), "text/plain; version=0.0.4", {}};
    if (method == "POST" && path == "/v2/repository/index") {
      json j = json::array();
      for (const auto& [name, m] : I.models) j.push_back({{"name", name}, {"version", "1"}, {"state", "READY"}});
      return json_reply(200, j);
    }
    std::smatch mt;
    if (std::regex_match(path, mt, model_re)) {
      Model* m = I.find(mt[1].str(), mt[2].str());
      const std::string what = mt[3].str();
      if (what.empty() && method == "GET") return I.metadata(*m);
      if (what == "/ready" && method == "GET") {
        if (I.stopping) return error_reply(503, "server is shutting down");
        return HttpReply{200, "", "text/plain", {}};
      }
      if (what == "/config" && method == "GET") return I.config(*m);
      // No shutdown check here: a request the HTTP layer already received is answered (drain).
      if (what == "/infer" && method == "POST") return I.infer(*m, body, inference_header_length);
      return error_reply(405, fmt::format("{} is not allowed on {}", method, path));
    }
    return error_reply(404, fmt::format("no route {} {}", method, path));
  } catch (const StatusError& e) {
    return error_reply(e.status, e.what());
  }
}

int Server::bind() {
  auto& I = *impl_;
  auto& http = I.http;
  const int threads = I.opts.http_threads;
  http.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  http.set_payload_max_length(static_cast<size_t>(I.opts.max_body_bytes));
  http.set_keep_alive_max_count(100000);
  http.set_keep_alive_timeout(I.opts.keep_alive_timeout_s);
  http.set_read_timeout(30, 0);
  http.set_write_timeout(30, 0);
  // Before the body is read: refuse compressed bodies (their decoded size is not bounded by the body limit).
  http.set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
    const auto enc = req.get_header_value("Content-Encoding");
    if (!enc.empty() && enc != "identity") {
      res.status = 415;
      res.set_content(
          error_body(fmt::format("Content-Encoding '{}' is not supported; send the body uncompressed", enc)),
          "application/json");
      res.set_header("Connection", "close");
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  auto route = [this](const httplib::Request& req, httplib::Response& res) {
    std::optional<std::string> hl;
    if (req.has_header("Inference-Header-Content-Length")) hl = req.get_header_value("Inference-Header-Content-Length");
    HttpReply r = handle(req.method, req.path, req.body, hl);
    res.status = r.status;
    if (r.header_length) res.set_header("Inference-Header-Content-Length", std::to_string(*r.header_length));
    res.set_content(std::move(r.body), r.content_type);
  };
  const std::string any = R"(/.*)";
  http.Get(any, route);
  http.Post(any, route);
  http.Put(any, route);
  http.Delete(any, route);
  http.Patch(any, route);
  // Errors httplib answers itself (413 body too large, 400 bad HTTP): a JSON reason like ours.
  http.set_error_handler(httplib::Server::HandlerWithResponse([&I](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    I.http_errors += 1;
    std::string reason = fmt::format("HTTP {}", res.status);
    if (res.status == 413) reason = fmt::format("request body exceeds the limit of {} bytes", I.opts.max_body_bytes);
    if (res.status == 404) reason = "no such route";
    res.set_content(error_body(reason), "application/json");
    return httplib::Server::HandlerResponse::Handled;
  }));
  int port = I.opts.port;
  if (port == 0) {
    port = http.bind_to_any_port(I.opts.host);
    if (port < 0) throw Error(fmt::format("server: cannot bind {}:any", I.opts.host));
  } else if (!http.bind_to_port(I.opts.host, port)) {
    throw Error(fmt::format("server: cannot bind {}:{} (in use, or not a local address?)", I.opts.host, port));
  }
  I.bound = true;
  return port;
}

void Server::serve() {
  auto& I = *impl_;
  if (!I.bound) throw Error("server: serve() before bind()");
  if (!I.stopping) I.http.listen_after_bind();
  // listen_after_bind returns once the listening socket is closed and the HTTP worker pool has finished the
  // requests it had: every received request is answered. Then the batchers run whatever is left and stop.
  for (auto& [name, m] : I.models) m.batcher->shutdown();
}

void Server::stop() {
  impl_->stopping = true;
  if (impl_->bound) impl_->http.stop();
}

std::vector<std::string> Server::model_names() const {
  std::vector<std::string> out;
  for (const auto& [name, m] : impl_->models) out.push_back(name);
  return out;
}

ModelStats Server::stats(const std::string& model) const {
  auto it = impl_->models.find(model);
  if (it == impl_->models.end()) throw InputError(fmt::format("server: unknown model '{}'", model));
  std::lock_guard<std::mutex> lk(impl_->stats_mu);
  return it->second.stats;
}

const ServerOptions& Server::options() const { return impl_->opts; }

std::string Server::metrics_text() const {
  std::string out;
  std::lock_guard<std::mutex> lk(impl_->stats_mu);
  auto family = [&](const char* name, const char* type, const char* help) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  };
  family("janus_infer_requests_total", "counter", "Inference requests answered 200");
  for (const auto& [n, m] : impl_->models)
    out += fmt::format("janus_infer_requests_total{{model=\"{}\"}} {}\n", n, m.stats.requests);
  family("janus_infer_failures_total", "counter", "Inference requests answered 4xx/5xx");
  for (const auto& [n, m] : impl_->models)
    out += fmt::format("janus_infer_failures_total{{model=\"{}\"}} {}\n", n, m.stats.failures);
  family("janus_infer_rejected_total", "counter", "Inference requests refused with 503 (queue full)");
  for (const auto& [n, m] : impl_->models)
    out += fmt::format("janus_infer_rejected_total{{model=\"{}\"}} {}\n", n, m.stats.rejected);
  family("janus_infer_batches_total", "counter", "Batches run");
  for (const auto& [n, m] : impl_->models)
    out += fmt::format("janus_infer_batches_total{{model=\"{}\"}} {}\n", n, m.stats.batches);
  family("janus_infer_batch_items_total", "counter", "Items in all batches");
  for (const auto& [n, m] : impl_->models)
    out += fmt::format("janus_infer_batch_items_total{{model=\"{}\"}} {}\n", n, m.stats.items);
  family("janus_infer_batch_size", "counter", "Batches by their number of items");
  for (const auto& [n, m] : impl_->models) {
    for (const auto& [size, count] : m.stats.batch_sizes) {
      out += fmt::format("janus_infer_batch_size{{model=\"{}\",size=\"{}\"}} {}\n", n, size, count);
    }
  }
  family("janus_infer_latency_us", "histogram", "Latency of successful requests, arrival to response (microseconds)");
  for (const auto& [n, m] : impl_->models) {
    int64_t cum = 0;
    for (size_t b = 0; b < m.stats.latency_buckets.size(); ++b) {
      cum += m.stats.latency_buckets[b];
      const std::string le = b < kLatencyBucketsUs.size() ? fmt::format("{}", kLatencyBucketsUs[b]) : "+Inf";
      out += fmt::format("janus_infer_latency_us_bucket{{model=\"{}\",le=\"{}\"}} {}\n", n, le, cum);
    }
    out += fmt::format("janus_infer_latency_us_sum{{model=\"{}\"}} {:.0f}\n", n, m.stats.latency_us_sum);
    out += fmt::format("janus_infer_latency_us_count{{model=\"{}\"}} {}\n", n, m.stats.requests);
  }
  family("janus_http_errors_total", "counter", "Requests httplib refused before routing (413, bad HTTP)");
  out += fmt::format("janus_http_errors_total {}\n", impl_->http_errors.load());
  return out;
}

struct Client::Impl {
  httplib::Client http;
  Impl(const std::string& host, int port) : http(host, port) {}
};

namespace {
HttpReply to_reply(const httplib::Result& res) {
  HttpReply r;
  if (!res) {
    r.status = -1;
    r.body = httplib::to_string(res.error());
    return r;
  }
  r.status = res->status;
  r.body = res->body;
  r.content_type = res->get_header_value("Content-Type");
  if (res->has_header("Inference-Header-Content-Length")) {
    r.header_length = std::stoll(res->get_header_value("Inference-Header-Content-Length"));
  }
  return r;
}
}  // namespace

Client::Client(const std::string& host, int port, double timeout_s) : impl_(std::make_unique<Impl>(host, port)) {
  const auto sec = static_cast<time_t>(timeout_s);
  const auto usec = static_cast<time_t>((timeout_s - static_cast<double>(sec)) * 1e6);
  impl_->http.set_keep_alive(true);
  impl_->http.set_connection_timeout(sec, usec);
  impl_->http.set_read_timeout(sec, usec);
  impl_->http.set_write_timeout(sec, usec);
}

Client::~Client() = default;

HttpReply Client::get(const std::string& path) { return to_reply(impl_->http.Get(path.c_str())); }

HttpReply Client::post(const std::string& path, const std::string& body, const std::string& content_type,
                       const std::optional<int64_t>& inference_header_length) {
  httplib::Headers h;
  if (inference_header_length) h.emplace("Inference-Header-Content-Length", std::to_string(*inference_header_length));
  return to_reply(impl_->http.Post(path.c_str(), h, body, content_type.c_str()));
}

}  // namespace janus::serve
