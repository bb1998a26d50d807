// janus_bench_serve: janus_serve throughput and latency with and without dynamic batching, and (--stress) the
// reliability run of issue 13: 10,000 requests from 32 clients with 10% malformed or oversized bodies.
//
//   janus_bench_serve [--model caption] [--seconds 8] [--clients 1,32] [--image-size 32] [--flavour tiny]
//   janus_bench_serve --stress [--requests 10000] [--clients 32] [--bad-fraction 0.1]
//
// The server runs as a subprocess (build/bin/janus_serve beside this binary) on a random-weight tiny run created in
// a temp dir; clients are threads with keep-alive connections (janus::serve::Client).
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "janus/core/fs.h"
#include "janus/data/image.h"
#include "janus/data/tokenizer.h"
#include "janus/infer/server.h"
#include "janus/io/module_io.h"
#include "janus/model/flavours.h"
#include "janus/model/janus_model.h"
#include "janus/model/run.h"
#include "janus/train/distributed.h"

extern char** environ;

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace sv = janus::serve;

struct Args {
  std::string model = "caption";
  double seconds = 8;
  std::vector<int> clients{1, 32};
  int64_t image_size = 32;
  std::string flavour = "tiny";
  bool stress = false;
  int64_t requests = 10000;
  double bad_fraction = 0.1;
  std::string server;
  std::string work;
};

std::string make_run(const std::string& dir, const Args& a) {
  std::string text;
  const char* colours[] = {"red", "green", "blue", "cyan", "yellow", "magenta"};
  const char* shapes[] = {"circle", "square", "triangle", "star"};
  for (int i = 0; i < 400; ++i) {
    text += fmt::format("a {} {} to the left of a {} {}\n", colours[i % 6], shapes[i % 4], colours[(i / 6) % 6],
                        shapes[(i / 4) % 4]);
    text += fmt::format("what colour is the {}? how many {}s are there?\n", shapes[i % 4], shapes[(i / 4) % 4]);
  }
  janus::write_file_atomic(dir + "/corpus.txt", text);
  const auto tok = janus::Tokenizer::train(dir + "/corpus.txt", dir + "/tok", {80});
  auto o = janus::model_flavour(a.flavour, janus::Tokenizer::load(tok).vocab_size(), a.image_size);
  o.num_answers = 3;
  torch::manual_seed(0);
  janus::JanusModel model(o);
  const std::string run = dir + "/run";
  janus::write_run_artifacts(run, o, tok, {"yes", "no", "2"});
  std::filesystem::create_directories(run + "/final");
  janus::save_module(*model, run + "/final/model.safetensors");
  return run;
}

std::string png_bytes(const std::string& dir, int seed, int64_t size) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(seed));
  const auto img = at::randint(0, 256, {size, size, 3}, gen, at::kLong).to(at::kByte);
  const auto path = fmt::format("{}/img{}.png", dir, seed);
  janus::write_image_file(path, img);
  return janus::read_file(path);
}

struct Proc {
  pid_t pid = -1;
  int port = 0;
};

Proc start_server(const Args& a, const std::string& run, const std::vector<std::string>& extra,
                  const std::string& log) {
  Proc p;
  p.port = janus::dist::free_loopback_port();
  std::vector<std::string> argv{a.server, "--run", run, "--port", std::to_string(p.port), "--log-level", "warn"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  std::vector<char*> cargv;
  for (auto& s : argv) cargv.push_back(s.data());
  cargv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  if (posix_spawn(&p.pid, a.server.c_str(), &fa, nullptr, cargv.data(), environ) != 0) {
    throw std::runtime_error("cannot start " + a.server);
  }
  posix_spawn_file_actions_destroy(&fa);
  sv::Client c("127.0.0.1", p.port, 1);
  for (int i = 0; i < 600; ++i) {
    if (c.get("/v2/health/ready").status == 200) return p;
    int st = 0;
    if (waitpid(p.pid, &st, WNOHANG) == p.pid) throw std::runtime_error("janus_serve exited; see " + log);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  kill(p.pid, SIGKILL);
  throw std::runtime_error("janus_serve not ready; see " + log);
}

int stop_server(const Proc& p) {
  kill(p.pid, SIGTERM);
  int st = 0;
  waitpid(p.pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int64_t rss_kb(pid_t pid) {
  std::ifstream f(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

std::string le32(uint32_t v) {
  std::string s(4, '\0');
  std::memcpy(s.data(), &v, 4);
  return s;
}

// A binary-tensor request with one BYTES input (what tritonclient sends by default).
std::pair<std::string, int64_t> binary_request(const std::string& input, const std::vector<std::string>& elems) {
  std::string raw;
  for (const auto& e : elems) raw += le32(static_cast<uint32_t>(e.size())) + e;
  const json h = {{"inputs",
                   {{{"name", input},
                     {"datatype", "BYTES"},
                     {"shape", {elems.size()}},
                     {"parameters", {{"binary_data_size", raw.size()}}}}}},
                  {"parameters", {{"binary_data_output", false}}}};
  const std::string hs = h.dump();
  return {hs + raw, static_cast<int64_t>(hs.size())};
}

std::string json_request(const std::string& input, const std::vector<std::string>& elems) {
  return json{{"inputs", {{{"name", input}, {"datatype", "BYTES"}, {"shape", {elems.size()}}, {"data", elems}}}}}
      .dump();
}

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

struct LoadResult {
  double qps = 0, p50_ms = 0, p99_ms = 0;
  int64_t ok = 0, failed = 0;
};

LoadResult load(int port, int clients, double seconds, const std::string& path, const std::string& body,
                std::optional<int64_t> hl) {
  std::vector<std::vector<double>> lat(clients);
  std::atomic<int64_t> failed{0};
  const auto t0 = Clock::now();
  const auto end = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  std::vector<std::thread> ts;
  for (int k = 0; k < clients; ++k) {
    ts.emplace_back([&, k] {
      sv::Client c("127.0.0.1", port);
      while (Clock::now() < end) {
        const auto s = Clock::now();
        const auto r = c.post(path, body, "application/octet-stream", hl);
        if (r.status != 200) {
          if (failed.fetch_add(1) == 0)
            fmt::print(stderr, "[bench_serve] first failure: {} {}\n", r.status, r.body.substr(0, 200));
          continue;
        }
        lat[k].push_back(std::chrono::duration<double, std::milli>(Clock::now() - s).count());
      }
    });
  }
  for (auto& t : ts) t.join();
  const double el = std::chrono::duration<double>(Clock::now() - t0).count();
  std::vector<double> all;
  for (auto& l : lat) all.insert(all.end(), l.begin(), l.end());
  LoadResult r;
  r.ok = static_cast<int64_t>(all.size());
  r.failed = failed;
  r.qps = static_cast<double>(all.size()) / el;
  r.p50_ms = pct(all, 0.5);
  r.p99_ms = pct(all, 0.99);
  return r;
}

int bench(const Args& a, const std::string& run, const std::string& dir) {
  const bool image_model = a.model == "caption" || a.model == "embed_image";
  const std::string input = image_model ? "image" : a.model == "generate" ? "prompt" : "text";
  const std::string elem = image_model ? png_bytes(dir, 1, a.image_size) : "a red circle to the left of a blue star";
  const auto [body, hl] = binary_request(input, {elem});
  const std::string path = "/v2/models/" + a.model + "/infer";
  struct Row {
    std::string mode;
    int clients;
    LoadResult r;
  };
  std::vector<Row> rows;
  for (const bool batching : {true, false}) {
    std::vector<std::string> extra{"--models", a.model, "--max-batch", batching ? "32" : "1", "--max-delay-ms", "5"};
    const auto p = start_server(a, run, extra, dir + "/serve.log");
    load(p.port, 4, 1.0, path, body, hl);  // warm-up
    for (const int c : a.clients) {
      rows.push_back({batching ? "batching (max 32, 5 ms)" : "no batching (max 1)", c,
                      load(p.port, c, a.seconds, path, body, hl)});
      const auto& r = rows.back().r;
      fmt::print(stderr, "[bench_serve] {} clients={} qps={:.1f} p50={:.1f} ms p99={:.1f} ms failed={}\n",
                 rows.back().mode, c, r.qps, r.p50_ms, r.p99_ms, r.failed);
    }
    stop_server(p);
  }
  fmt::print("model {} ({} flavour, {}x{} images), {:.0f} s per point, {} hardware threads\n\n", a.model, a.flavour,
             a.image_size, a.image_size, a.seconds, std::thread::hardware_concurrency());
  fmt::print("| mode | clients | QPS | p50 ms | p99 ms | errors |\n|---|---:|---:|---:|---:|---:|\n");
  for (const auto& r : rows) {
    fmt::print("| {} | {} | {:.1f} | {:.1f} | {:.1f} | {} |\n", r.mode, r.clients, r.r.qps, r.r.p50_ms, r.r.p99_ms,
               r.r.failed);
  }
  const size_t n = a.clients.size();
  for (size_t i = 0; i < n; ++i) {
    fmt::print("\nQPS ratio batching/no batching at {} clients: {:.2f}x", a.clients[i],
               rows[i].r.qps / rows[n + i].r.qps);
  }
  fmt::print("\n");
  return 0;
}

// ---------------------------------------------------------------- stress
int stress(const Args& a, const std::string& run, const std::string& dir) {
  std::vector<std::string> imgs;
  for (int i = 0; i < 4; ++i) imgs.push_back(png_bytes(dir, i + 1, a.image_size));
  const std::vector<std::string> texts{"a red circle", "a blue star", "what colour is the square?", "a green triangle"};
  const auto p = start_server(a, run, {"--models", "caption,embed_text", "--max-batch", "32", "--max-body-mb", "1"},
                              dir + "/stress.log");
  sv::Client ref("127.0.0.1", p.port);
  // Reference answers, one request at a time.
  std::vector<std::string> ref_caption, ref_embed;
  for (int i = 0; i < 4; ++i) {
    auto [b, h] = binary_request("image", {imgs[i]});
    auto r = ref.post("/v2/models/caption/infer", b, "application/octet-stream", h);
    if (r.status != 200) throw std::runtime_error("reference caption failed: " + r.body);
    ref_caption.push_back(json::parse(r.body)["outputs"][0]["data"][0].get<std::string>());
    r = ref.post("/v2/models/embed_text/infer", json_request("text", {texts[i]}));
    ref_embed.push_back(r.body);
  }
  auto embedding = [](const std::string& body) {
    return json::parse(body)["outputs"][0]["data"].get<std::vector<float>>();
  };
  const int64_t rss0 = rss_kb(p.pid);

  // Malformed / oversized kinds, each must be answered 4xx.
  const std::vector<std::function<std::pair<std::string, std::optional<int64_t>>(std::mt19937_64&)>> bad{
      [](std::mt19937_64&) {
        return std::pair<std::string, std::optional<int64_t>>{"{\"inputs\": [", std::nullopt};
      },
      [](std::mt19937_64&) {
        return std::pair<std::string, std::optional<int64_t>>{json_request("txt", {"a"}), std::nullopt};
      },
      [&](std::mt19937_64&) {
        return std::pair<std::string, std::optional<int64_t>>{json_request("image", {"%%%notbase64"}), std::nullopt};
      },
      [&](std::mt19937_64&) {
        auto [b, h] = binary_request("image", {"not an image at all"});
        return std::pair<std::string, std::optional<int64_t>>{b, h};
      },
      [&](std::mt19937_64& g) {
        auto [b, h] = binary_request("image", {imgs[0]});
        b.resize(b.size() - 1 - g() % 100);
        return std::pair<std::string, std::optional<int64_t>>{b, h};
      },
      [](std::mt19937_64&) {
        return std::pair<std::string, std::optional<int64_t>>{std::string(1100 * 1024, 'x'), std::nullopt};
      },
      [&](std::mt19937_64& g) {
        auto [b, h] = binary_request("image", {imgs[0]});
        b[static_cast<size_t>(h) + 1 + g() % 3] ^= 0x7f;
        return std::pair<std::string, std::optional<int64_t>>{b, h};
      },
      [](std::mt19937_64& g) {
        std::string s(64 + g() % 512, '\0');
        for (auto& c : s) c = static_cast<char>(g());
        return std::pair<std::string, std::optional<int64_t>>{s, std::nullopt};
      },
  };
  std::atomic<int64_t> rss_mid{-1};
  std::atomic<int64_t> next{0}, ok{0}, wrong{0}, bad_4xx{0}, bad_other{0}, valid_fail{0}, sent_bad{0};
  std::mutex mu;
  std::vector<std::string> examples;
  const auto t0 = Clock::now();
  std::vector<std::thread> ts;
  const int clients = a.clients.empty() ? 32 : a.clients.back();
  for (int k = 0; k < clients; ++k) {
    ts.emplace_back([&, k] {
      std::mt19937_64 g(1000 + k);
      std::uniform_real_distribution<double> u(0, 1);
      sv::Client c("127.0.0.1", p.port);
      int64_t idx = 0;
      while ((idx = next.fetch_add(1)) < a.requests) {
        if (idx == a.requests / 2) rss_mid = rss_kb(p.pid);
        if (u(g) < a.bad_fraction) {
          sent_bad += 1;
          const size_t kind = g() % bad.size();
          const auto [b, h] = bad[kind](g);
          const std::string model = kind == 1 ? "embed_text" : "caption";
          const auto r = c.post("/v2/models/" + model + "/infer", b, "application/octet-stream", h);
          if (r.status >= 400 && r.status < 500) {
            bad_4xx += 1;
          } else {
            bad_other += 1;
            std::lock_guard<std::mutex> lk(mu);
            examples.push_back(fmt::format("bad kind {} -> {} {}", kind, r.status, r.body.substr(0, 200)));
          }
          continue;
        }
        const int i = static_cast<int>(g() % 4);
        if (g() % 2) {
          auto [b, h] = binary_request("image", {imgs[i]});
          const auto r = c.post("/v2/models/caption/infer", b, "application/octet-stream", h);
          if (r.status != 200) {
            valid_fail += 1;
            std::lock_guard<std::mutex> lk(mu);
            examples.push_back(r.body.substr(0, 200));
            continue;
          }
          const auto cap = json::parse(r.body)["outputs"][0]["data"][0].get<std::string>();
          (cap == ref_caption[i] ? ok : wrong) += 1;
        } else {
          const auto r = c.post("/v2/models/embed_text/infer", json_request("text", {texts[i]}));
          if (r.status != 200) {
            valid_fail += 1;
            std::lock_guard<std::mutex> lk(mu);
            examples.push_back(r.body.substr(0, 200));
            continue;
          }
          const auto e = embedding(r.body), want = embedding(ref_embed[i]);
          float diff = e.size() == want.size() ? 0.f : 1e9f;
          for (size_t j = 0; j < e.size() && j < want.size(); ++j) diff = std::max(diff, std::abs(e[j] - want[j]));
          (diff <= 1e-4f ? ok : wrong) += 1;
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  const double el = std::chrono::duration<double>(Clock::now() - t0).count();
  const int64_t rss1 = rss_kb(p.pid);
  const bool alive = kill(p.pid, 0) == 0;

  // Drain: 32 clients in flight, SIGTERM, every request already sent must be answered 200.
  std::atomic<int64_t> drain_ok{0}, drain_bad{0};
  std::atomic<int> connected{0}, posted{0};
  std::vector<std::thread> ds;
  for (int k = 0; k < clients; ++k) {
    ds.emplace_back([&, k] {
      sv::Client c("127.0.0.1", p.port);
      c.get("/v2/health/live");  // open the keep-alive connection first
      connected += 1;
      while (connected < clients) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      auto [b, h] = binary_request("image", {imgs[k % 4]});
      posted += 1;
      const auto r = c.post("/v2/models/caption/infer", b, "application/octet-stream", h);
      (r.status == 200 ? drain_ok : drain_bad) += 1;
    });
  }
  while (posted < clients) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const int64_t answered_before_signal = drain_ok + drain_bad;
  const int rc = stop_server(p);
  for (auto& t : ds) t.join();

  const int64_t valid = ok + wrong + valid_fail;
  fmt::print("stress: {} requests from {} clients in {:.1f} s ({:.0f} req/s); server alive at the end: {}\n",
             a.requests, clients, el, static_cast<double>(a.requests) / el, alive ? "yes" : "NO");
  fmt::print("  valid {}: {} answers unchanged, {} changed, {} failed\n", valid, ok.load(), wrong.load(),
             valid_fail.load());
  fmt::print("  malformed/oversized {}: {} answered 4xx, {} otherwise\n", sent_bad.load(), bad_4xx.load(),
             bad_other.load());
  fmt::print(
      "  RSS start {:.1f} MiB, after {} requests {:.1f} MiB, end {:.1f} MiB ({:+.1f} MiB over the second half)\n",
      rss0 / 1024.0, a.requests / 2, rss_mid / 1024.0, rss1 / 1024.0, (rss1 - rss_mid) / 1024.0);
  fmt::print(
      "  SIGTERM with {} requests sent ({} already answered at the signal): {} answered 200, {} not; exit code {}\n",
      clients, answered_before_signal, drain_ok.load(), drain_bad.load(), rc);
  for (size_t i = 0; i < std::min<size_t>(examples.size(), 5); ++i) fmt::print("  example: {}\n", examples[i]);
  const bool pass = alive && wrong == 0 && valid_fail == 0 && bad_other == 0 && rc == 0 && drain_bad == 0;
  fmt::print(
      "RESULT serve trials={} passed={} figure={} req, {}% bad -> 4xx, answers unchanged, RSS {:.0f}/{:.0f}/{:.0f} MiB "
      "(start/mid/end), "
      "SIGTERM drained {}/{}\n",
      1, pass ? 1 : 0, a.requests, static_cast<int>(a.bad_fraction * 100), rss0 / 1024.0, rss_mid / 1024.0,
      rss1 / 1024.0, drain_ok.load(), clients);
  return pass ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  a.server = (std::filesystem::canonical("/proc/self/exe").parent_path() / "janus_serve").string();
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) {
        fmt::print(stderr, "{} needs a value\n", s);
        std::exit(2);
      }
      return argv[++i];
    };
    if (s == "--model")
      a.model = val();
    else if (s == "--seconds")
      a.seconds = std::stod(val());
    else if (s == "--clients") {
      a.clients.clear();
      std::stringstream ss(val());
      std::string x;
      while (std::getline(ss, x, ',')) a.clients.push_back(std::stoi(x));
    } else if (s == "--image-size")
      a.image_size = std::stoll(val());
    else if (s == "--flavour")
      a.flavour = val();
    else if (s == "--stress")
      a.stress = true;
    else if (s == "--requests")
      a.requests = std::stoll(val());
    else if (s == "--bad-fraction")
      a.bad_fraction = std::stod(val());
    else if (s == "--server")
      a.server = val();
    else if (s == "--work")
      a.work = val();
    else {
      fmt::print(stderr, "unknown flag {}\n", s);
      return 2;
    }
  }
  if (a.stress && a.clients == std::vector<int>{1, 32}) a.clients = {32};
  std::string dir = a.work;
  if (dir.empty()) {
    char tmpl[] = "/tmp/janus-bench-serve.XXXXXX";
    dir = mkdtemp(tmpl);
  }
  std::filesystem::create_directories(dir);
  at::set_num_threads(1);
  const auto run = make_run(dir, a);
  const int rc = a.stress ? stress(a, run, dir) : bench(a, run, dir);
  if (a.work.empty()) janus::remove_tree(dir);
  return rc;
}
