#include "janus/train/metrics.h"

#include <unistd.h>

#include <array>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <sstream>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "janus/core/error.h"
#include "janus/core/fs.h"

namespace janus::train {
namespace fs = std::filesystem;

namespace {

const std::array<uint32_t, 256>& crc_table() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0x82F63B78u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  return table;
}

// Protobuf wire encoding of the few field kinds an Event needs.
void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void put_tag(std::string& out, int field, int wire) { put_varint(out, (static_cast<uint64_t>(field) << 3) | wire); }
void put_bytes(std::string& out, int field, const std::string& bytes) {
  put_tag(out, field, 2);
  put_varint(out, bytes.size());
  out += bytes;
}
void put_double(std::string& out, int field, double v) {
  put_tag(out, field, 1);
  char b[8];
  std::memcpy(b, &v, 8);  // little-endian hosts only (x86-64, aarch64)
  out.append(b, 8);
}
void put_float(std::string& out, int field, float v) {
  put_tag(out, field, 5);
  char b[4];
  std::memcpy(b, &v, 4);
  out.append(b, 4);
}

std::string event_header(double wall_time, int64_t step) {
  std::string e;
  put_double(e, 1, wall_time);
  if (step != 0) {
    put_tag(e, 2, 0);
    put_varint(e, static_cast<uint64_t>(step));
  }
  return e;
}

double now_s() { return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count(); }

}  // namespace

uint32_t crc32c(const void* data, size_t size) {
  const auto& t = crc_table();
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < size; ++i) c = t[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(const void* data, size_t size) {
  const uint32_t c = crc32c(data, size);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw_error("cannot create TensorBoard directory '{}': {}", dir, ec.message());
  char host[256] = "localhost";
  ::gethostname(host, sizeof(host) - 1);
  path_ = (fs::path(dir) / fmt::format("events.out.tfevents.{}.{}.{}", static_cast<int64_t>(now_s()), host, ::getpid()))
              .string();
  file_ = std::fopen(path_.c_str(), "wb");
  if (!file_) throw_error("cannot write TensorBoard file '{}': {}", path_, std::strerror(errno));
  std::string e = event_header(now_s(), 0);
  put_bytes(e, 3, "brain.Event:2");
  record(e);
  flush();
}

TensorBoardWriter::~TensorBoardWriter() {
  if (file_) std::fclose(file_);
}

void TensorBoardWriter::record(const std::string& payload) {
  const uint64_t len = payload.size();
  char hdr[8];
  std::memcpy(hdr, &len, 8);
  const uint32_t len_crc = masked_crc32c(hdr, 8);
  const uint32_t data_crc = masked_crc32c(payload.data(), payload.size());
  std::fwrite(hdr, 1, 8, file_);
  std::fwrite(&len_crc, 1, 4, file_);
  std::fwrite(payload.data(), 1, payload.size(), file_);
  std::fwrite(&data_crc, 1, 4, file_);
}

void TensorBoardWriter::scalars(int64_t step, const std::map<std::string, double>& values, double wall_time) {
  std::string summary;
  for (const auto& [tag, v] : values) {
    std::string value;
    put_bytes(value, 1, tag);
    put_float(value, 2, static_cast<float>(v));
    put_bytes(summary, 1, value);
  }
  std::string e = event_header(wall_time, step);
  put_bytes(e, 5, summary);
  record(e);
}

void TensorBoardWriter::flush() {
  if (file_) std::fflush(file_);
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const auto t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02d}m{:02d}s", t / 3600, (t / 60) % 60, t % 60);
  if (t >= 60) return fmt::format("{}m{:02d}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

Metrics::Metrics(MetricsOptions options) : opt_(std::move(options)) {
  if (!opt_.enabled) return;
  if (opt_.tensorboard) tb_ = std::make_unique<TensorBoardWriter>((fs::path(opt_.run_dir) / "tb").string());
}

Metrics::~Metrics() {
  if (jsonl_) std::fclose(jsonl_);
}

void Metrics::truncate_after(int64_t step) {
  if (!opt_.enabled || !opt_.jsonl) return;
  const auto path = (fs::path(opt_.run_dir) / "metrics.jsonl").string();
  if (!fs::exists(path)) return;
  std::istringstream in(read_file(path));
  std::string line, kept;
  while (std::getline(in, line)) {
    try {
      if (nlohmann::json::parse(line).at("step").get<int64_t>() <= step) kept += line + "\n";
    } catch (const std::exception&) {
      // A torn last line from a killed run: drop it.
    }
  }
  if (jsonl_) {
    std::fclose(jsonl_);
    jsonl_ = nullptr;
  }
  write_file_atomic(path, kept);
}

void Metrics::log(int64_t step, const std::map<std::string, double>& values, double samples_per_s, double eta_s) {
  if (!opt_.enabled) return;
  std::string parts;
  for (const auto& [k, v] : values) {
    if (k == "lr" || k == "grad_norm" || k == "loss_scale" || k == "nonfinite_steps") continue;
    if (k.find("grad_norm/") != std::string::npos) continue;  // per-module norms: metrics.jsonl and TensorBoard only
    parts += fmt::format(" {} {:.4g}", k, v);
  }
  const auto get = [&](const char* k) {
    auto it = values.find(k);
    return it == values.end() ? NAN : it->second;
  };
  spdlog::info("step {}/{} |{} | lr {:.3g} | gnorm {:.3g} | {:.1f} samples/s | ETA {}", step, opt_.total_steps, parts,
               get("lr"), get("grad_norm"), samples_per_s, format_duration(eta_s));
  const double wall = now_s();
  if (opt_.jsonl) {
    if (!jsonl_) {
      fs::create_directories(opt_.run_dir);
      const auto path = (fs::path(opt_.run_dir) / "metrics.jsonl").string();
      jsonl_ = std::fopen(path.c_str(), "ab");
      if (!jsonl_) throw_error("cannot write '{}': {}", path, std::strerror(errno));
    }
    nlohmann::json j{{"step", step}, {"time", wall}, {"samples_per_s", samples_per_s}};
    for (const auto& [k, v] : values) j[k] = std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
    const auto line = j.dump() + "\n";
    std::fwrite(line.data(), 1, line.size(), jsonl_);
    std::fflush(jsonl_);
  }
  if (tb_) {
    auto tb_values = values;
    tb_values["samples_per_s"] = samples_per_s;
    tb_->scalars(step, tb_values, wall);
    tb_->flush();
  }
}

void Metrics::log_eval(int64_t step, const std::map<std::string, double>& values, const std::string& prefix) {
  if (!opt_.enabled || values.empty()) return;
  std::string parts;
  for (const auto& [k, v] : values) parts += fmt::format(" {} {:.4g}", k, v);
  spdlog::info("validation at step {}:{}", step, parts);
  const double wall = now_s();
  std::map<std::string, double> named;
  for (const auto& [k, v] : values) named[prefix + k] = v;
  if (opt_.jsonl) {
    if (!jsonl_) {
      fs::create_directories(opt_.run_dir);
      const auto path = (fs::path(opt_.run_dir) / "metrics.jsonl").string();
      jsonl_ = std::fopen(path.c_str(), "ab");
      if (!jsonl_) throw_error("cannot write '{}': {}", path, std::strerror(errno));
    }
    nlohmann::json j{{"step", step}, {"time", wall}, {"kind", "val"}};
    for (const auto& [k, v] : named) j[k] = std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
    const auto line = j.dump() + "\n";
    std::fwrite(line.data(), 1, line.size(), jsonl_);
    std::fflush(jsonl_);
  }
  if (tb_) {
    tb_->scalars(step, named, wall);
    tb_->flush();
  }
}

void Metrics::flush() {
  if (jsonl_) std::fflush(jsonl_);
  if (tb_) tb_->flush();
}

}  // namespace janus::train
