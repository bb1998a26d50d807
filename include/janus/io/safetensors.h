#pragma once
// safetensors (https://github.com/huggingface/safetensors) read/write.
// Layout: u64 little-endian header size N, N bytes of JSON header, then the byte buffer.
// Files are untrusted input: the header is bounded, the JSON validated, every tensor's offsets must lie inside
// the buffer, tensors may not overlap, and each tensor's byte size must equal dtype size x shape product.
// Every violation throws janus::InputError naming the file and the tensor.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/Tensor.h>

namespace janus {

using TensorMap = std::map<std::string, at::Tensor>;
using Metadata = std::map<std::string, std::string>;

// Largest header accepted (the reference implementation's limit).
constexpr std::uint64_t kSafetensorsMaxHeader = 100u * 1024u * 1024u;

struct TensorInfo {
  at::ScalarType dtype;
  std::vector<int64_t> shape;
  std::uint64_t begin = 0;  // byte offsets into the data buffer
  std::uint64_t end = 0;
};

// An opened safetensors file. The file is memory-mapped (private, copy-on-write) and tensors returned by
// tensor() alias the mapping (zero-copy) when suitably aligned; the mapping lives as long as any such tensor.
class SafeTensorsFile {
 public:
  static SafeTensorsFile open(const std::string& path);
  // Parses an in-memory buffer (copied).
  static SafeTensorsFile from_bytes(const std::string& bytes, const std::string& name = "<memory>");

  const std::string& path() const { return path_; }
  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const { return infos_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;
  const Metadata& metadata() const { return metadata_; }
  at::Tensor tensor(const std::string& name) const;  // CPU tensor
  TensorMap tensors() const;

 private:
  struct Mapping;
  std::shared_ptr<Mapping> map_;
  std::string path_;
  std::map<std::string, TensorInfo> infos_;
  Metadata metadata_;
  std::uint64_t data_offset_ = 0;
};

// Serialises tensors (moved to CPU, made contiguous) into safetensors bytes / writes them atomically.
std::string safetensors_bytes(const TensorMap& tensors, const Metadata& metadata = {});
void save_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata = {});
// Convenience: open + copy every tensor out.
TensorMap load_safetensors(const std::string& path, Metadata* metadata = nullptr);

// "F32", "BF16", ... <-> ScalarType. InputError for names torch has no type for.
std::string safetensors_dtype_name(at::ScalarType t);
at::ScalarType safetensors_dtype(const std::string& name);

}  // namespace janus
