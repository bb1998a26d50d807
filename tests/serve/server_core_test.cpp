// The server core through Server::handle (routing, metadata, errors, dynamic batching, bounded queue) with toy
// handlers: no HTTP and no model, so every behaviour is deterministic.
#include <atomic>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "janus/infer/server.h"

namespace janus::serve {
namespace {

using nlohmann::json;

// "upper": text BYTES [n] -> upper BYTES [n], length INT64 [n]. Records batch sizes; can be held closed.
class UpperHandler : public ModelHandler {
 public:
  struct Work : PreparedRequest {
    std::vector<std::string> texts;
  };
  UpperHandler() {
    md_.name = "upper";
    md_.inputs = {{"text", DataType::kBytes, {-1}}};
    md_.outputs = {{"upper", DataType::kBytes, {-1}}, {"length", DataType::kInt64, {-1}}};
  }
  const ModelMetadata& metadata() const override { return md_; }
  std::unique_ptr<PreparedRequest> prepare(const InferRequest& r) const override {
    auto w = std::make_unique<Work>();
    w->texts = r.input("text")->elements;
    for (const auto& t : w->texts) {
      if (t == "bad") throw InputError("text 'bad' is not allowed");
    }
    return w;
  }
  std::vector<std::vector<Tensor>> run(const std::vector<PreparedRequest*>& batch) override {
    {
      std::unique_lock<std::mutex> lk(mu);
      cv.wait(lk, [&] { return open; });
      int64_t n = 0;
      for (auto* p : batch) n += p->items;
      sizes.push_back(n);
    }
    std::vector<std::vector<Tensor>> out;
    for (auto* p : batch) {
      auto* w = static_cast<Work*>(p);
      if (!w->texts.empty() && w->texts[0] == "boom") throw Error("boom");
      std::vector<std::string> up;
      std::string lens;
      for (auto s : w->texts) {
        for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        const int64_t l = static_cast<int64_t>(s.size());
        lens.append(reinterpret_cast<const char*>(&l), 8);
        up.push_back(s);
      }
      const int64_t n = static_cast<int64_t>(up.size());
      Tensor len;
      len.name = "length";
      len.datatype = DataType::kInt64;
      len.shape = {n};
      len.data = lens;
      out.push_back({Tensor::bytes("upper", {n}, up), len});
    }
    return out;
  }
  void set_open(bool o) {
    {
      std::lock_guard<std::mutex> lk(mu);
      open = o;
    }
    cv.notify_all();
  }
  std::mutex mu;
  std::condition_variable cv;
  bool open = true;
  std::vector<int64_t> sizes;

 private:
  ModelMetadata md_;
};

std::string text_request(const std::vector<std::string>& texts) {
  return json{{"inputs", {{{"name", "text"}, {"datatype", "BYTES"}, {"shape", {texts.size()}}, {"data", texts}}}}}
      .dump();
}

struct Fixture {
  explicit Fixture(BatchingOptions b = {}) {
    ServerOptions o;
    o.batching = b;
    server = std::make_unique<Server>(o);
    handler = std::make_shared<UpperHandler>();
    server->add_model(handler);
  }
  HttpReply infer(const std::string& body) {
    return server->handle("POST", "/v2/models/upper/infer", body, std::nullopt);
  }
  std::unique_ptr<Server> server;
  std::shared_ptr<UpperHandler> handler;
};

std::string error_of(const HttpReply& r) { return json::parse(r.body).value("error", ""); }

TEST(ServeCore, HealthMetadataAndRoutes) {
  Fixture f;
  auto& s = *f.server;
  EXPECT_EQ(s.handle("GET", "/v2/health/live", "", std::nullopt).status, 200);
  EXPECT_EQ(s.handle("GET", "/v2/health/ready", "", std::nullopt).status, 200);
  EXPECT_EQ(json::parse(s.handle("GET", "/v2", "", std::nullopt).body)["name"], "janus");
  const auto md = json::parse(s.handle("GET", "/v2/models/upper", "", std::nullopt).body);
  EXPECT_EQ(md["inputs"][0]["name"], "text");
  EXPECT_EQ(md["inputs"][0]["datatype"], "BYTES");
  EXPECT_EQ(md["inputs"][0]["shape"], json({-1}));
  EXPECT_EQ(md["outputs"][1]["datatype"], "INT64");
  EXPECT_EQ(s.handle("GET", "/v2/models/upper/versions/1", "", std::nullopt).status, 200);
  EXPECT_EQ(s.handle("GET", "/v2/models/upper/ready", "", std::nullopt).status, 200);
  EXPECT_EQ(json::parse(s.handle("GET", "/v2/models/upper/config", "", std::nullopt).body)["max_batch_size"], 32);
  auto r = s.handle("GET", "/v2/models/nope", "", std::nullopt);
  EXPECT_EQ(r.status, 404);
  EXPECT_NE(error_of(r).find("unknown model 'nope'"), std::string::npos);
  EXPECT_EQ(s.handle("POST", "/v2/models/nope/infer", "{}", std::nullopt).status, 404);
  EXPECT_EQ(s.handle("GET", "/v2/models/upper/versions/2", "", std::nullopt).status, 404);
  EXPECT_EQ(s.handle("GET", "/v3/whatever", "", std::nullopt).status, 404);
  EXPECT_EQ(s.handle("GET", "/v2/models/upper/infer", "", std::nullopt).status, 405);
  EXPECT_EQ(json::parse(s.handle("POST", "/v2/repository/index", "", std::nullopt).body)[0]["state"], "READY");
  s.stop();
  EXPECT_EQ(s.handle("GET", "/v2/health/ready", "", std::nullopt).status, 503);
  EXPECT_EQ(s.handle("GET", "/v2/health/live", "", std::nullopt).status, 200);
}

TEST(ServeCore, InferAndErrors) {
  Fixture f;
  auto r = f.infer(text_request({"a red circle", "xy"}));
  ASSERT_EQ(r.status, 200) << r.body;
  const auto j = json::parse(r.body);
  EXPECT_EQ(j["outputs"][0]["data"], json({"A RED CIRCLE", "XY"}));
  EXPECT_EQ(j["outputs"][1]["data"], json({12, 2}));

  auto expect = [&](const std::string& body, int status, const std::string& reason) {
    const auto rr = f.infer(body);
    EXPECT_EQ(rr.status, status) << body << " -> " << rr.body;
    EXPECT_NE(error_of(rr).find(reason), std::string::npos) << rr.body;
  };
  expect("{oops", 400, "not valid JSON");
  expect(json{{"inputs", {{{"name", "txt"}, {"datatype", "BYTES"}, {"shape", {1}}, {"data", {"a"}}}}}}.dump(), 400,
         "has no input 'txt' (inputs: text)");
  expect(json{{"inputs", json::array()}}.dump(), 400, "needs input 'text'");
  expect(json{{"inputs", {{{"name", "text"}, {"datatype", "FP32"}, {"shape", {1}}, {"data", {1.0}}}}}}.dump(), 400,
         "must be BYTES, got FP32");
  expect(json{{"inputs", {{{"name", "text"}, {"datatype", "BYTES"}, {"shape", {1, 1}}, {"data", {"a"}}}}}}.dump(), 400,
         "must have rank 1");
  expect(json{{"inputs", {{{"name", "text"}, {"datatype", "BYTES"}, {"shape", {0}}, {"data", json::array()}}}}}.dump(),
         400, "empty batch");
  expect(text_request(std::vector<std::string>(33, "a")), 400, "exceeds max_batch_size 32");
  expect(text_request({"bad"}), 400, "text 'bad' is not allowed");
  expect(text_request({"boom"}), 500, "boom");
  EXPECT_EQ(f.server->stats("upper").requests, 1);
  EXPECT_EQ(f.server->stats("upper").failures, 9);
}

TEST(ServeCore, DynamicBatchingCombinesConcurrentRequests) {
  Fixture f(BatchingOptions{8, std::chrono::milliseconds(200), 64});
  f.handler->set_open(false);
  // One request occupies the batch thread; 12 more queue up meanwhile and must leave in batches of <= 8 items.
  std::vector<std::future<HttpReply>> futs;
  futs.push_back(std::async(std::launch::async, [&] { return f.infer(text_request({"first"})); }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  for (int i = 0; i < 12; ++i) {
    futs.push_back(std::async(std::launch::async, [&, i] { return f.infer(text_request({"t" + std::to_string(i)})); }));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  f.handler->set_open(true);
  for (size_t i = 0; i < futs.size(); ++i) {
    const auto r = futs[i].get();
    ASSERT_EQ(r.status, 200);
    const std::string want = i == 0 ? "FIRST" : "T" + std::to_string(i - 1);
    EXPECT_EQ(json::parse(r.body)["outputs"][0]["data"][0], want);  // each request gets its own answer
  }
  std::vector<int64_t> sizes = f.handler->sizes;
  ASSERT_GE(sizes.size(), 3u);
  EXPECT_EQ(sizes[0], 1);
  EXPECT_EQ(sizes[1], 8);
  EXPECT_EQ(sizes[2], 4);
  const auto st = f.server->stats("upper");
  EXPECT_EQ(st.batches, 3);
  EXPECT_EQ(st.batch_sizes.at(8), 1);
  EXPECT_NE(f.server->metrics_text().find("janus_infer_batch_size{model=\"upper\",size=\"8\"} 1"), std::string::npos);
}

TEST(ServeCore, MaxBatchOneNeverBatches) {
  Fixture f(BatchingOptions{1, std::chrono::milliseconds(50), 64});
  std::vector<std::future<HttpReply>> futs;
  for (int i = 0; i < 6; ++i)
    futs.push_back(std::async(std::launch::async, [&] { return f.infer(text_request({"a"})); }));
  for (auto& fu : futs) EXPECT_EQ(fu.get().status, 200);
  for (const auto n : f.handler->sizes) EXPECT_EQ(n, 1);
}

TEST(ServeCore, FullQueueAnswers503) {
  Fixture f(BatchingOptions{1, std::chrono::microseconds(0), 2});
  f.handler->set_open(false);
  std::vector<std::future<HttpReply>> futs;
  futs.push_back(std::async(std::launch::async, [&] { return f.infer(text_request({"running"})); }));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // taken by the batch thread, blocked in run()
  for (int i = 0; i < 2; ++i) {
    futs.push_back(std::async(std::launch::async, [&] { return f.infer(text_request({"queued"})); }));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const auto full = f.infer(text_request({"one too many"}));
  EXPECT_EQ(full.status, 503);
  EXPECT_NE(error_of(full).find("queue is full (2 requests)"), std::string::npos);
  f.handler->set_open(true);
  for (auto& fu : futs) EXPECT_EQ(fu.get().status, 200);
  EXPECT_EQ(f.server->stats("upper").rejected, 1);
}

TEST(ServeCore, BadOptionsRejected) {
  ServerOptions o;
  o.batching.max_batch = 0;
  EXPECT_THROW(Server{o}, InputError);
  Server s{ServerOptions{}};
  s.add_model(std::make_shared<UpperHandler>());
  EXPECT_THROW(s.add_model(std::make_shared<UpperHandler>()), InputError);
}

}  // namespace
}  // namespace janus::serve
