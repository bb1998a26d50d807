// janus_launch --nproc N [--master-port P] -- <cmd ...>: a small torchrun stand-in for one machine. Spawns N
// processes with torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT, GROUP_RANK, ...), forwards SIGINT/SIGTERM/SIGHUP to them, and when one rank fails stops the
// others and exits non-zero naming the rank.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "cli.h"
#include "janus/train/distributed.h"

namespace {

volatile sig_atomic_t g_signal = 0;
void on_signal(int sig) { g_signal = sig; }


std::string describe(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return "was killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  }
  return "stopped with status " + std::to_string(status);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Spawn N local ranks with torchrun-compatible environment variables"};
  janus::cli::Common common;
  janus::cli::add_common(app, common);
  int nproc = 1;
  int port = 0;
  std::string addr = "127.0.0.1";
  double grace_s = 10;
  std::vector<std::string> cmd;
  app.add_option("--nproc", nproc, "number of local ranks")->required()->check(CLI::Range(1, 1024));
  app.add_option("--master-port", port, "rendezvous port (0: pick a free one)")->check(CLI::Range(0, 65535));
  app.add_option("--master-addr", addr, "rendezvous address")->capture_default_str();
  app.add_option("--grace-s", grace_s, "seconds between SIGTERM and SIGKILL when stopping ranks")
      ->capture_default_str();
  app.add_option("cmd", cmd, "command to run (after --)")->required();
  return janus::cli::run(app, argc, argv, common, [&]() -> int {
    if (port == 0) port = janus::dist::free_loopback_port();
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaction(s, &sa, nullptr);

    const pid_t launcher = getpid();
    std::vector<pid_t> pids(static_cast<size_t>(nproc), -1);
    for (int r = 0; r < nproc; ++r) {
      const pid_t pid = fork();
      if (pid < 0) throw janus::Error("janus_launch: fork failed: " + std::string(std::strerror(errno)));
      if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);  // never outlive the launcher
        if (getppid() != launcher) _exit(1);
        const std::string n = std::to_string(nproc), rs = std::to_string(r);
        setenv("RANK", rs.c_str(), 1);
        setenv("LOCAL_RANK", rs.c_str(), 1);
        setenv("GROUP_RANK", "0", 1);
        setenv("ROLE_RANK", rs.c_str(), 1);
        setenv("WORLD_SIZE", n.c_str(), 1);
        setenv("LOCAL_WORLD_SIZE", n.c_str(), 1);
        setenv("ROLE_WORLD_SIZE", n.c_str(), 1);
        setenv("MASTER_ADDR", addr.c_str(), 1);
        setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
        setenv("TORCHELASTIC_RESTART_COUNT", "0", 1);
        unsetenv("TORCHELASTIC_USE_AGENT_STORE");  // rank 0 hosts the store
        std::vector<char*> args;
        for (auto& a : cmd) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        execvp(args[0], args.data());
        std::fprintf(stderr, "janus_launch: cannot execute %s: %s\n", args[0], std::strerror(errno));
        _exit(127);
      }
      pids[static_cast<size_t>(r)] = pid;
    }
    spdlog::info("janus_launch: {} ranks started, master {}:{}", nproc, addr, port);

    auto stop_all = [&](int sig) {
      for (pid_t p : pids) {
        if (p > 0) kill(p, sig);
      }
    };
    int alive = nproc;
    int failed_rank = -1;
    std::string failure;
    bool forwarded = false;
    auto deadline = std::chrono::steady_clock::time_point::max();
    while (alive > 0) {
      if (g_signal != 0 && !forwarded) {
        spdlog::warn("janus_launch: got signal {}, forwarding to the ranks", static_cast<int>(g_signal));
        stop_all(g_signal);
        forwarded = true;
        deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<int64_t>(grace_s * 1000));
      }
      if (std::chrono::steady_clock::now() > deadline) {
        spdlog::warn("janus_launch: ranks still running {} s after SIGTERM; sending SIGKILL", grace_s);
        stop_all(SIGKILL);
        deadline = std::chrono::steady_clock::time_point::max();
      }
      int status = 0;
      const pid_t pid = waitpid(-1, &status, WNOHANG);
      if (pid <= 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        continue;
      }
      int rank = -1;
      for (int r = 0; r < nproc; ++r) {
        if (pids[static_cast<size_t>(r)] == pid) rank = r;
      }
      if (rank < 0) continue;
      pids[static_cast<size_t>(rank)] = -1;
      --alive;
      const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      if (!ok && failed_rank < 0 && !forwarded) {
        failed_rank = rank;
        failure = describe(status);
        spdlog::error("janus_launch: rank {} (pid {}) {}; stopping the other ranks", rank, pid, failure);
        stop_all(SIGTERM);
        deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<int64_t>(grace_s * 1000));
      }
    }
    if (failed_rank >= 0) {
      spdlog::error("janus_launch: failed: rank {} {}", failed_rank, failure);
      return 1;
    }
    if (forwarded) return 128 + static_cast<int>(g_signal);
    return 0;
  });
}
