// janus_serve: a KServe v2 / Triton REST inference server over a run directory (docs/serving.md).
//   janus_serve --run DIR [--host 127.0.0.1] [--port 8000] [--max-batch 32] [--max-delay-ms 5] [--queue 256]
//               [--max-body-mb 16] [--models caption,vqa,embed_text,embed_image,generate]
// SIGTERM / SIGINT: stop accepting, answer every request already received, exit 0.
#include <pthread.h>
#include <csignal>

#include <atomic>
#include <chrono>
#include <thread>

#include "cli.h"
#include "janus/infer/pipeline.h"
#include "janus/infer/server.h"
#include "janus/infer/server_models.h"

namespace {

std::vector<std::string> split_csv(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t end = s.find(',', start);
    const std::string item = s.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!item.empty()) out.push_back(item);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

bool is_loopback(const std::string& host) {
  return host == "127.0.0.1" || host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"janus_serve: KServe v2 / Triton inference server (caption, vqa, embed_text, embed_image, generate)"};
  janus::cli::Common common;
  janus::cli::add_common(app, common);
  std::string run_dir, models_csv, device = "cpu", dtype = "fp32", weights = "auto";
  janus::serve::ServerOptions opts;
  double max_delay_ms = 5.0, max_body_mb = 16.0;
  int threads = 0;
  app.add_option("--run", run_dir, "run directory (include/janus/model/run.h)")->required();
  app.add_option("--host", opts.host, "address to bind; anything but loopback exposes the server")
      ->capture_default_str();
  app.add_option("--port", opts.port, "port (0: any free port, printed at start)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  app.add_option("--max-batch", opts.batching.max_batch, "items per batch (1 disables batching)")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  app.add_option("--max-delay-ms", max_delay_ms, "longest a queued request waits for a batch to fill")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 10000.0));
  app.add_option("--queue", opts.batching.max_queue, "queued requests per model before 503")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  app.add_option("--max-body-mb", max_body_mb, "request body limit (413 beyond)")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 4096.0));
  app.add_option("--http-threads", opts.http_threads, "connections served at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  app.add_option("--models", models_csv, "comma-separated models to serve (default: all the run supports)");
  app.add_option("--device", device, "cpu, cuda, cuda:N or auto")->capture_default_str();
  app.add_option("--dtype", dtype, "fp32 or bf16")->capture_default_str();
  app.add_option("--weights", weights, "auto, final, ema, latest or a path")->capture_default_str();
  app.add_option("--threads", threads, "intra-op CPU threads (0: library default)")->capture_default_str();

  return janus::cli::run(app, argc, argv, common, [&] {
    opts.batching.max_delay = std::chrono::microseconds(static_cast<int64_t>(max_delay_ms * 1000.0));
    opts.max_body_bytes = static_cast<int64_t>(max_body_mb * 1024.0 * 1024.0);
    if (!is_loopback(opts.host)) {
      spdlog::warn("binding {}: the server has no authentication or TLS; anyone who can reach this address can use it",
                   opts.host);
    }
    // Signals go to one waiting thread (blocked here, before any thread exists, so every thread inherits the mask).
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    std::signal(SIGPIPE, SIG_IGN);

    janus::PipelineOptions popts;
    popts.device = device;
    popts.dtype = dtype;
    popts.weights = weights;
    popts.threads = threads;
    auto pipeline = std::make_shared<janus::Pipeline>(janus::Pipeline::load(run_dir, popts));

    std::vector<std::string> names = split_csv(models_csv);
    const bool explicit_models = !names.empty();
    if (!explicit_models) names = janus::serve::pipeline_model_names();
    janus::serve::Server server(opts);
    for (const auto& n : names) {
      try {
        server.add_model(janus::serve::make_pipeline_handler(n, pipeline));
      } catch (const janus::InputError& e) {
        if (explicit_models) throw;
        spdlog::info("not serving {}: {}", n, e.what());
      }
    }
    if (server.model_names().empty()) throw janus::InputError("janus_serve: no model to serve");
    const int port = server.bind();
    spdlog::info(
        "janus_serve listening on {}:{} (models: {}; max batch {}, max delay {} us, queue {}, body limit {} B)",
        opts.host, port, fmt::join(server.model_names(), ","), opts.batching.max_batch, opts.batching.max_delay.count(),
        opts.batching.max_queue, opts.max_body_bytes);

    std::atomic<bool> done{false};
    std::thread waiter([&] {
      int sig = 0;
      sigwait(&set, &sig);
      if (done) return;
      spdlog::info("signal {}: no new connections; draining requests in flight", sig);
      // stop() may race with listen() starting; repeat until serve() has returned.
      while (!done) {
        server.stop();
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    });
    server.serve();
    done = true;
    pthread_kill(waiter.native_handle(), SIGTERM);  // wakes the waiter when serve() ended without a signal
    waiter.join();
    for (const auto& n : server.model_names()) {
      const auto s = server.stats(n);
      spdlog::info("{}: {} requests ok, {} failed ({} rejected as queue full), {} batches, {} items", n, s.requests,
                   s.failures, s.rejected, s.batches, s.items);
    }
    spdlog::info("janus_serve stopped");
    return 0;
  });
}
