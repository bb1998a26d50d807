#include "janus/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "janus/core/error.h"
#include "janus/core/fs.h"

namespace janus {

struct SafeTensorsFile::Mapping {
  void* addr = nullptr;
  std::size_t size = 0;
  std::string owned;  // for from_bytes
  const char* data() const { return addr ? static_cast<const char*>(addr) : owned.data(); }
  ~Mapping() {
    if (addr) ::munmap(addr, size);
  }
};

namespace {
struct DtypeName {
  const char* name;
  at::ScalarType type;
};
const DtypeName kDtypes[] = {
    {"F64", at::kDouble},
    {"F32", at::kFloat},
    {"F16", at::kHalf},
    {"BF16", at::kBFloat16},
    {"I64", at::kLong},
    {"I32", at::kInt},
    {"I16", at::kShort},
    {"I8", at::kChar},
    {"U8", at::kByte},
    {"BOOL", at::kBool},
    {"U16", at::kUInt16},
    {"U32", at::kUInt32},
    {"U64", at::kUInt64},
    {"F8_E4M3", at::kFloat8_e4m3fn},
    {"F8_E5M2", at::kFloat8_e5m2},
    {"C64", at::kComplexFloat},
};

[[noreturn]] void bad(const std::string& file, const std::string& what) {
  throw InputError(fmt::format("safetensors '{}': {}", file, what));
}

std::uint64_t read_u64_le(const char* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}
}  // namespace

std::string safetensors_dtype_name(at::ScalarType t) {
  for (const auto& d : kDtypes) {
    if (d.type == t) return d.name;
  }
  throw InputError(fmt::format("safetensors: dtype {} cannot be stored", c10::toString(t)));
}

at::ScalarType safetensors_dtype(const std::string& name) {
  for (const auto& d : kDtypes) {
    if (name == d.name) return d.type;
  }
  throw InputError(fmt::format("safetensors: unknown dtype '{}'", name));
}

namespace {
// Validates the header and fills infos/metadata. `file_size` bounds everything.
void parse_header(const char* base, std::uint64_t file_size, const std::string& file,
                  std::map<std::string, TensorInfo>& infos, Metadata& metadata, std::uint64_t& data_offset) {
  if (file_size < 8) bad(file, fmt::format("file is {} bytes, too short for the 8-byte header length", file_size));
  const std::uint64_t n = read_u64_le(base);
  if (n > kSafetensorsMaxHeader)
    bad(file, fmt::format("header length {} exceeds the {} byte limit", n, kSafetensorsMaxHeader));
  if (n > file_size - 8)
    bad(file, fmt::format("header length {} runs past the end of the {}-byte file (truncated?)", n, file_size));
  if (n < 2 || base[8] != '{') bad(file, "header is not a JSON object");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(base + 8, base + 8 + n);
  } catch (const nlohmann::json::exception& e) {
    bad(file, fmt::format("header is not valid JSON: {}", e.what()));
  }
  if (!header.is_object()) bad(file, "header is not a JSON object");
  data_offset = 8 + n;
  const std::uint64_t buffer = file_size - data_offset;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
  std::vector<std::string> range_names;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") {
      if (!it->is_object()) bad(file, "__metadata__ is not an object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) bad(file, fmt::format("__metadata__ value '{}' is not a string", m.key()));
        metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    const auto& t = *it;
    if (!t.is_object() || !t.contains("dtype") || !t.contains("shape") || !t.contains("data_offsets")) {
      bad(file, fmt::format("tensor '{}' needs dtype, shape and data_offsets", name));
    }
    if (!t["dtype"].is_string()) bad(file, fmt::format("tensor '{}': dtype is not a string", name));
    TensorInfo info;
    try {
      info.dtype = safetensors_dtype(t["dtype"].get<std::string>());
    } catch (const InputError&) {
      bad(file, fmt::format("tensor '{}': unknown dtype '{}'", name, t["dtype"].get<std::string>()));
    }
    if (!t["shape"].is_array()) bad(file, fmt::format("tensor '{}': shape is not a list", name));
    if (t["shape"].size() > 64)
      bad(file, fmt::format("tensor '{}': {} dimensions is too many", name, t["shape"].size()));
    // numel and byte size with overflow checks
    unsigned __int128 numel = 1;
    for (const auto& d : t["shape"]) {
      if (!d.is_number_unsigned())
        bad(file, fmt::format("tensor '{}': shape entries must be non-negative integers", name));
      const auto v = d.get<std::uint64_t>();
      if (v > static_cast<std::uint64_t>(std::numeric_limits<int64_t>::max()))
        bad(file, fmt::format("tensor '{}': dimension {} too large", name, v));
      info.shape.push_back(static_cast<int64_t>(v));
      numel *= v;
      if (numel > (static_cast<unsigned __int128>(1) << 62))
        bad(file, fmt::format("tensor '{}': shape too large", name));
    }
    const auto& off = t["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned()) {
      bad(file, fmt::format("tensor '{}': data_offsets must be two non-negative integers", name));
    }
    info.begin = off[0].get<std::uint64_t>();
    info.end = off[1].get<std::uint64_t>();
    if (info.begin > info.end)
      bad(file, fmt::format("tensor '{}': data_offsets [{}, {}] are reversed", name, info.begin, info.end));
    if (info.end > buffer) {
      bad(file, fmt::format("tensor '{}': data_offsets [{}, {}] lie outside the {}-byte data buffer (truncated?)", name,
                            info.begin, info.end, buffer));
    }
    const unsigned __int128 want = numel * c10::elementSize(info.dtype);
    if (want != info.end - info.begin) {
      bad(file,
          fmt::format("tensor '{}': {} bytes stored but dtype {} x shape [{}] needs {}", name, info.end - info.begin,
                      t["dtype"].get<std::string>(), fmt::join(info.shape, ", "), static_cast<std::uint64_t>(want)));
    }
    ranges.emplace_back(info.begin, info.end);
    range_names.push_back(name);
    infos.emplace(name, std::move(info));
  }
  std::vector<std::size_t> order(ranges.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return ranges[a] < ranges[b]; });
  for (std::size_t k = 1; k < order.size(); ++k) {
    const auto& prev = ranges[order[k - 1]];
    const auto& cur = ranges[order[k]];
    if (cur.first < prev.second && cur.second > cur.first) {
      bad(file, fmt::format("tensors '{}' and '{}' overlap in the data buffer", range_names[order[k - 1]],
                            range_names[order[k]]));
    }
  }
}
}  // namespace

SafeTensorsFile SafeTensorsFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw InputError(fmt::format("safetensors '{}': cannot open: {}", path, std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw InputError(fmt::format("safetensors '{}': not a regular file", path));
  }
  auto m = std::make_shared<Mapping>();
  m->size = static_cast<std::size_t>(st.st_size);
  if (m->size > 0) {
    void* addr = ::mmap(nullptr, m->size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (addr == MAP_FAILED) {
      ::close(fd);
      throw Error(fmt::format("safetensors '{}': mmap failed: {}", path, std::strerror(errno)));
    }
    m->addr = addr;
  }
  ::close(fd);
  SafeTensorsFile f;
  f.map_ = std::move(m);
  f.path_ = path;
  parse_header(f.map_->data(), f.map_->size, path, f.infos_, f.metadata_, f.data_offset_);
  return f;
}

SafeTensorsFile SafeTensorsFile::from_bytes(const std::string& bytes, const std::string& name) {
  auto m = std::make_shared<Mapping>();
  m->owned = bytes;
  m->size = bytes.size();
  SafeTensorsFile f;
  f.map_ = std::move(m);
  f.path_ = name;
  parse_header(f.map_->data(), f.map_->size, name, f.infos_, f.metadata_, f.data_offset_);
  return f;
}

std::vector<std::string> SafeTensorsFile::names() const {
  std::vector<std::string> out;
  for (const auto& kv : infos_) out.push_back(kv.first);
  return out;
}

const TensorInfo& SafeTensorsFile::info(const std::string& name) const {
  const auto it = infos_.find(name);
  if (it == infos_.end()) throw InputError(fmt::format("safetensors '{}': no tensor named '{}'", path_, name));
  return it->second;
}

at::Tensor SafeTensorsFile::tensor(const std::string& name) const {
  const TensorInfo& ti = info(name);
  const auto opts = at::TensorOptions().dtype(ti.dtype).device(at::kCPU);
  const char* ptr = map_->data() + data_offset_ + ti.begin;
  const std::size_t align = c10::elementSize(ti.dtype);
  const std::size_t nbytes = ti.end - ti.begin;
  if (nbytes == 0) return at::empty(ti.shape, opts);
  if (reinterpret_cast<std::uintptr_t>(ptr) % align == 0) {
    auto keep = map_;
    return at::from_blob(
        const_cast<char*>(ptr), ti.shape, [keep](void*) {}, opts);
  }
  at::Tensor out = at::empty(ti.shape, opts);
  std::memcpy(out.data_ptr(), ptr, nbytes);
  return out;
}

TensorMap SafeTensorsFile::tensors() const {
  TensorMap out;
  for (const auto& kv : infos_) out.emplace(kv.first, tensor(kv.first));
  return out;
}

std::string safetensors_bytes(const TensorMap& tensors, const Metadata& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<at::Tensor> blobs;
  std::uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (!t.defined()) throw InputError(fmt::format("safetensors: tensor '{}' is undefined", name));
    if (name == "__metadata__") throw InputError("safetensors: '__metadata__' is reserved");
    at::Tensor c = t.detach().to(at::kCPU).contiguous();
    const std::uint64_t nbytes = c.numel() * c.element_size();
    header[name] = {{"dtype", safetensors_dtype_name(c.scalar_type())},
                    {"shape", c.sizes().vec()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    blobs.push_back(std::move(c));
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');  // align the buffer to 8 bytes, as the reference writer does
  std::string out;
  out.reserve(8 + h.size() + offset);
  const std::uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out += h;
  for (const auto& b : blobs) out.append(static_cast<const char*>(b.data_ptr()), b.numel() * b.element_size());
  return out;
}

void save_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata) {
  const std::string bytes = safetensors_bytes(tensors, metadata);
  write_file_atomic(path, bytes);
}

TensorMap load_safetensors(const std::string& path, Metadata* metadata) {
  const auto f = SafeTensorsFile::open(path);
  if (metadata) *metadata = f.metadata();
  TensorMap out;
  for (const auto& name : f.names()) out.emplace(name, f.tensor(name).clone());
  return out;
}

}  // namespace janus
