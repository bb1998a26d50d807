// Process-group creation and collective helpers on PyTorch's c10d.
//
// The torch wheel ships c10d's headers but not Gloo's; ProcessGroupGloo.hpp is compiled against Debian's
// libgloo-dev headers for declarations only. That is sound because this file only touches Gloo through
// std::shared_ptr<gloo::transport::Device> (created and destroyed inside libtorch_cpu) and ProcessGroupGloo's
// layout holds Gloo types only behind pointers; every Gloo call runs in the Gloo compiled into libtorch_cpu.
// The tests in tests/distributed prove it end to end.
#include "janus/train/distributed.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <sstream>

#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "janus/core/error.h"
#include "janus/core/logging.h"

namespace janus::dist {

int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw Error(fmt::format("free_loopback_port: socket() failed: {}", std::strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    throw Error(fmt::format("free_loopback_port: cannot bind a loopback port: {}", why));
  }
  const int port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}
namespace {

const char* env_or_null(const char* name) {
  const char* v = std::getenv(name);
  return (v != nullptr && *v != '\0') ? v : nullptr;
}

int env_int(const char* name, int fallback) {
  const char* v = env_or_null(name);
  if (v == nullptr) return fallback;
  char* end = nullptr;
  errno = 0;
  const long x = std::strtol(v, &end, 10);
  if (errno != 0 || end == v || *end != '\0' || x < 0 || x > 1000000) {
    throw InputError(std::string("distributed: environment variable ") + name + "='" + v +
                     "' is not a non-negative integer");
  }
  return static_cast<int>(x);
}

int env_required_int(const char* name) {
  if (env_or_null(name) == nullptr) {
    throw InputError(std::string("distributed: environment variable ") + name +
                     " is not set (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)");
  }
  return env_int(name, 0);
}

std::string heartbeat_key(int rank) { return "janus/hb/" + std::to_string(rank); }

}  // namespace

std::string first_slurm_host(const std::string& nodelist) {
  // Grammar: host[,host...] where host = prefix[ranges]suffix and ranges = a-b or n separated by commas.
  std::string first;
  int depth = 0;
  for (char c : nodelist) {
    if (c == '[') ++depth;
    if (c == ']') --depth;
    if (c == ',' && depth == 0) break;
    first.push_back(c);
  }
  if (first.empty()) throw InputError("distributed: SLURM_NODELIST '" + nodelist + "' names no host");
  const auto open = first.find('[');
  if (open == std::string::npos) return first;
  const auto close = first.find(']', open);
  if (close == std::string::npos)
    throw InputError("distributed: SLURM_NODELIST '" + nodelist + "' has an unclosed '['");
  std::string range = first.substr(open + 1, close - open - 1);
  range = range.substr(0, range.find(','));
  range = range.substr(0, range.find('-'));
  if (range.empty()) throw InputError("distributed: SLURM_NODELIST '" + nodelist + "' has an empty range");
  return first.substr(0, open) + range + first.substr(close + 1);
}

LaunchEnv LaunchEnv::from_env() {
  LaunchEnv e;
  if (env_or_null("RANK") != nullptr || env_or_null("WORLD_SIZE") != nullptr) {
    e.source = "torchrun";
    e.rank = env_required_int("RANK");
    e.world_size = env_required_int("WORLD_SIZE");
    e.local_rank = env_int("LOCAL_RANK", e.rank);
    e.local_world_size = env_int("LOCAL_WORLD_SIZE", e.world_size);
    if (e.world_size > 1) {
      if (env_or_null("MASTER_ADDR") == nullptr) throw InputError("distributed: MASTER_ADDR is not set");
      e.master_addr = env_or_null("MASTER_ADDR");
      e.master_port = env_required_int("MASTER_PORT");
    }
    const char* agent = env_or_null("TORCHELASTIC_USE_AGENT_STORE");
    e.agent_store =
        agent != nullptr && (std::string(agent) == "True" || std::string(agent) == "true" || std::string(agent) == "1");
  } else if (env_or_null("SLURM_PROCID") != nullptr && env_or_null("SLURM_NTASKS") != nullptr) {
    e.source = "slurm";
    e.rank = env_required_int("SLURM_PROCID");
    e.world_size = env_required_int("SLURM_NTASKS");
    e.local_rank = env_int("SLURM_LOCALID", 0);
    e.local_world_size = env_int("SLURM_NTASKS_PER_NODE", 0);
    if (e.local_world_size == 0) e.local_world_size = env_int("SLURM_GPUS_ON_NODE", 1);
    if (const char* addr = env_or_null("MASTER_ADDR")) {
      e.master_addr = addr;
    } else {
      const char* nodes = env_or_null("SLURM_STEP_NODELIST");
      if (nodes == nullptr) nodes = env_or_null("SLURM_NODELIST");
      if (nodes == nullptr) nodes = env_or_null("SLURM_JOB_NODELIST");
      if (nodes == nullptr) throw InputError("distributed: Slurm job without SLURM_NODELIST or MASTER_ADDR");
      e.master_addr = first_slurm_host(nodes);
    }
    e.master_port = env_int("MASTER_PORT", 29500);
  }
  if (e.world_size < 1) throw InputError("distributed: WORLD_SIZE must be >= 1");
  if (e.rank >= e.world_size) {
    throw InputError("distributed: rank " + std::to_string(e.rank) + " is outside world size " +
                     std::to_string(e.world_size));
  }
  if (e.master_port < 1 || e.master_port > 65535) {
    throw InputError("distributed: MASTER_PORT " + std::to_string(e.master_port) + " is not a valid port");
  }
  return e;
}

std::shared_ptr<ProcessGroup> ProcessGroup::from_env(const ParallelConfig& cfg, c10::Device device) {
  return create(cfg, LaunchEnv::from_env(), device);
}

std::shared_ptr<ProcessGroup> ProcessGroup::create(const ParallelConfig& cfg, const LaunchEnv& env,
                                                   c10::Device device) {
  std::shared_ptr<ProcessGroup> pg(new ProcessGroup());
  pg->env_ = env;
  pg->device_ = device;
  pg->timeout_ = std::chrono::milliseconds(static_cast<int64_t>(cfg.timeout_s * 1000.0));
  std::string backend = cfg.backend;
  if (backend == "auto") backend = device.is_cuda() ? "nccl" : "gloo";
  if (backend == "nccl" && !device.is_cuda()) {
    throw InputError("distributed: parallel.backend=nccl needs a CUDA device, got " + device.str());
  }
  if (backend == "gloo" && !device.is_cpu()) {
    throw InputError("distributed: parallel.backend=gloo is used on CPU here; got device " + device.str());
  }
  pg->backend_name_ = backend;
  // Prefix every log line with this rank (the logger for a rank is created once per process).
  if (auto existing = spdlog::get("janus_r" + std::to_string(env.rank))) {
    spdlog::set_default_logger(existing);
  } else {
    const auto level = spdlog::level::to_string_view(spdlog::get_level());
    init_logging(std::string(level.data(), level.size()), env.rank);
  }

  // Rendezvous. torchrun's agent may host the store (we connect as clients); otherwise rank 0 serves it.
  try {
    if (env.world_size == 1) {
      pg->store_ = c10::make_intrusive<c10d::HashStore>();
    } else {
      c10d::TCPStoreOptions o;
      o.port = static_cast<std::uint16_t>(env.master_port);
      o.isServer = env.rank == 0 && !env.agent_store;
      o.numWorkers = static_cast<size_t>(env.world_size);
      o.waitWorkers = !env.agent_store;
      o.timeout = pg->timeout_;
      pg->store_ = c10::make_intrusive<c10d::TCPStore>(env.master_addr, o);
      c10d::TCPStoreOptions hb = o;
      hb.isServer = false;
      hb.numWorkers = std::nullopt;
      hb.waitWorkers = false;
      hb.timeout = std::chrono::milliseconds(10000);
      pg->heartbeat_store_ = c10::make_intrusive<c10d::TCPStore>(env.master_addr, hb);
    }
  } catch (const std::exception& e) {
    throw Error("distributed: rank " + std::to_string(env.rank) + " could not rendezvous through the TCPStore at " +
                env.master_addr + ":" + std::to_string(env.master_port) + ": " + e.what());
  }
  std::string attempt = "0";
  if (const char* r = env_or_null("TORCHELASTIC_RESTART_COUNT")) attempt = r;
  auto pg_store = c10::make_intrusive<c10d::PrefixStore>("janus/pg/" + attempt, pg->store_);
  if (pg->heartbeat_store_) {
    pg->heartbeat_store_ = c10::make_intrusive<c10d::PrefixStore>("janus/attempt/" + attempt, pg->heartbeat_store_);
  }

  try {
    if (backend == "gloo") {
      auto opts = c10d::ProcessGroupGloo::Options::create(pg->timeout_);
      if (const char* ifname = env_or_null("GLOO_SOCKET_IFNAME")) {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      } else if (env.local_world_size == env.world_size) {
        // Single node: loopback avoids surprises from how the host name resolves.
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      } else {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      pg->backend_ = c10::make_intrusive<c10d::ProcessGroupGloo>(pg_store, env.rank, env.world_size, opts);
    } else {
#ifdef USE_C10D_NCCL
      c10::cuda::set_device(static_cast<c10::DeviceIndex>(device.has_index() ? device.index() : env.local_rank));
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = pg->timeout_;
      pg->backend_ = c10::make_intrusive<c10d::ProcessGroupNCCL>(pg_store, env.rank, env.world_size, opts);
#else
      throw InputError("distributed: this build of libjanus has no NCCL support (USE_C10D_NCCL unset)");
#endif
    }
  } catch (const InputError&) {
    throw;
  } catch (const std::exception& e) {
    throw Error("distributed: rank " + std::to_string(env.rank) + " could not create the " + backend +
                " process group (world size " + std::to_string(env.world_size) + "): " + e.what());
  }
  pg->start_heartbeat();
  const char* store_kind = env.world_size == 1 ? "in-memory" : (env.agent_store ? "torchrun agent's" : "rank 0's");
  spdlog::info(
      "distributed: {} process group ready: rank {}/{} (local {}/{}), from {}, {} TCPStore at {}:{}, "
      "timeout {} s",
      backend, env.rank, env.world_size, env.local_rank, env.local_world_size, env.source, store_kind, env.master_addr,
      env.master_port, cfg.timeout_s);
  return pg;
}

ProcessGroup::~ProcessGroup() {
  {
    std::lock_guard<std::mutex> lock(stop_mutex_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (heartbeat_.joinable()) heartbeat_.join();
  if (heartbeat_store_) {
    try {
      heartbeat_store_->set(heartbeat_key(env_.rank), std::string("done"));
    } catch (const std::exception&) {
      // The store host may already be gone at shutdown; nothing to report.
    }
  }
}

void ProcessGroup::start_heartbeat() {
  if (!heartbeat_store_) return;
  heartbeat_store_->set(heartbeat_key(env_.rank), std::string("0"));
  heartbeat_ = std::thread([this] {
    int64_t beat = 0;
    std::unique_lock<std::mutex> lock(stop_mutex_);
    while (!stop_) {
      if (stop_cv_.wait_for(lock, std::chrono::milliseconds(500), [this] { return stop_.load(); })) break;
      try {
        heartbeat_store_->set(heartbeat_key(env_.rank), std::to_string(++beat));
      } catch (const std::exception&) {
        return;  // store host gone: collectives will report it
      }
    }
  });
}

std::string ProcessGroup::diagnose_lost_ranks() {
  if (!heartbeat_store_) return "";
  // Stop beating and say we noticed the failure, so ranks diagnosing later do not count us as lost.
  {
    std::lock_guard<std::mutex> lock(stop_mutex_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (heartbeat_.joinable() && heartbeat_.get_id() != std::this_thread::get_id()) heartbeat_.join();
  const std::string store_host = env_.agent_store ? "the torchrun agent" : "rank 0";
  try {
    heartbeat_store_->set(heartbeat_key(env_.rank), std::string("failed"));
    auto snapshot = [&] {
      std::map<int, std::string> s;
      for (int r = 0; r < env_.world_size; ++r) {
        if (r == env_.rank) continue;
        const std::string key = heartbeat_key(r);
        if (heartbeat_store_->check({key})) {
          auto v = heartbeat_store_->get(key);
          s[r] = std::string(v.begin(), v.end());
        }
      }
      return s;
    };
    const auto before = snapshot();
    std::this_thread::sleep_for(std::chrono::milliseconds(3000));
    const auto after = snapshot();
    std::vector<int> lost;
    for (int r = 0; r < env_.world_size; ++r) {
      if (r == env_.rank) continue;
      auto b = before.find(r), a = after.find(r);
      if (a == after.end()) {
        lost.push_back(r);
        continue;
      }
      if (a->second == "failed" || a->second == "diagnosed" || a->second == "done") continue;
      if (b != before.end() && b->second == a->second) lost.push_back(r);
    }
    // Say we are done diagnosing. Rank 0 hosts the TCPStore when no torchrun agent does: it keeps the store up
    // (capped) until every rank it did not find lost has finished its own diagnosis, so a slower rank does not
    // find the store gone and blame rank 0 instead of the rank that really stopped.
    heartbeat_store_->set(heartbeat_key(env_.rank), std::string("diagnosed"));
    if (env_.rank == 0 && !env_.agent_store) {
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(4000);
      for (int r = 1; r < env_.world_size; ++r) {
        if (std::find(lost.begin(), lost.end(), r) != lost.end()) continue;
        while (std::chrono::steady_clock::now() < deadline) {
          auto v = heartbeat_store_->get(heartbeat_key(r));
          const std::string s(v.begin(), v.end());
          if (s == "diagnosed" || s == "done") break;
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
      }
    }
    if (lost.empty()) return "no rank stopped its heartbeat (a timeout or a mismatched collective?)";
    std::ostringstream os;
    os << "lost rank" << (lost.size() > 1 ? "s " : " ");
    for (size_t i = 0; i < lost.size(); ++i) os << (i ? ", " : "") << lost[i];
    os << " (no heartbeat for 3 s)";
    return os.str();
  } catch (const std::exception&) {
    return "lost rank 0: the TCPStore hosted by " + store_host + " at " + env_.master_addr + ":" +
           std::to_string(env_.master_port) + " is unreachable";
  }
}

void ProcessGroup::fail(const char* what, const std::string& cause) {
  std::string first_line = cause.substr(0, cause.find('\n'));
  const std::string lost = diagnose_lost_ranks();
  throw Error("distributed: rank " + std::to_string(env_.rank) + ": " + what +
              " failed: " + (lost.empty() ? "" : lost + "; ") + first_line);
}

c10::intrusive_ptr<c10d::Work> ProcessGroup::allreduce_async(at::Tensor& t, c10d::ReduceOp op) {
  std::vector<at::Tensor> ts{t};
  c10d::AllreduceOptions o;
  o.reduceOp = op;
  o.timeout = timeout_;
  try {
    return backend_->allreduce(ts, o);
  } catch (const std::exception& e) {
    fail("all_reduce", e.what());
  }
}

c10::intrusive_ptr<c10d::Work> ProcessGroup::broadcast_async(at::Tensor& t, int root) {
  std::vector<at::Tensor> ts{t};
  c10d::BroadcastOptions o;
  o.rootRank = root;
  o.timeout = timeout_;
  try {
    return backend_->broadcast(ts, o);
  } catch (const std::exception& e) {
    fail("broadcast", e.what());
  }
}

void ProcessGroup::wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what) {
  try {
    work->wait(timeout_);
  } catch (const std::exception& e) {
    fail(what, e.what());
  }
}

void ProcessGroup::allreduce(at::Tensor& t, c10d::ReduceOp op) { wait(allreduce_async(t, op), "all_reduce"); }

void ProcessGroup::broadcast(at::Tensor& t, int root) { wait(broadcast_async(t, root), "broadcast"); }

at::Tensor ProcessGroup::all_gather(const at::Tensor& t) {
  TORCH_CHECK(t.dim() >= 1, "all_gather: needs a tensor with a leading dimension, got a scalar");
  auto in = t.contiguous();
  std::vector<at::Tensor> outs;
  for (int r = 0; r < size(); ++r) outs.push_back(at::empty_like(in));
  std::vector<std::vector<at::Tensor>> out_lists{outs};
  std::vector<at::Tensor> ins{in};
  c10d::AllgatherOptions o;
  o.timeout = timeout_;
  c10::intrusive_ptr<c10d::Work> work;
  try {
    work = backend_->allgather(out_lists, ins, o);
  } catch (const std::exception& e) {
    fail("all_gather", e.what());
  }
  wait(work, "all_gather");
  return at::cat(out_lists[0], 0);
}

void ProcessGroup::barrier() {
  if (device_.is_cuda()) {
    // NCCL's barrier is an all-reduce on the current device; an explicit one keeps both backends alike.
    auto t = at::zeros({1}, at::TensorOptions().device(device_));
    allreduce(t);
    return;
  }
  c10d::BarrierOptions o;
  o.timeout = timeout_;
  c10::intrusive_ptr<c10d::Work> work;
  try {
    work = backend_->barrier(o);
  } catch (const std::exception& e) {
    fail("barrier", e.what());
  }
  wait(work, "barrier");
}

double ProcessGroup::average(double value) {
  auto t = at::full({1}, value, at::TensorOptions().dtype(at::kDouble).device(device_));
  return average(t).item<double>();
}

at::Tensor ProcessGroup::average(const at::Tensor& t) {
  auto x = t.detach().to(device_).contiguous().clone();
  allreduce(x);
  return x.div_(size());
}

bool ProcessGroup::any_found_inf(bool local_found_inf) {
  auto t = at::full({1}, local_found_inf ? 1.0f : 0.0f, at::TensorOptions().dtype(at::kFloat).device(device_));
  allreduce(t, c10d::ReduceOp::MAX);
  return t.item<float>() > 0.0f;
}

}  // namespace janus::dist
