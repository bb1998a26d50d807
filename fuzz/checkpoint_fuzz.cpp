// libFuzzer target: the trainer's checkpoint reader on arbitrary bytes. The input is split at the first NUL into
// manifest.json and model.safetensors of a checkpoint directory; the rest after a second NUL becomes state.json.
// CheckpointStore::validate must return "" or a reason and never throw; step_of may only throw InputError; a
// checkpoint that validates is then read like Trainer::load_checkpoint does (safetensors parse + state.json parse).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "janus/core/error.h"
#include "janus/io/safetensors.h"
#include "janus/train/checkpoint.h"

namespace {

const std::string& work_dir() {
  static const std::string dir = [] {
    char tmpl[] = "/tmp/janus-ckpt-fuzz.XXXXXX";
    const char* d = ::mkdtemp(tmpl);
    if (d == nullptr) std::abort();
    return std::string(d);
  }();
  return dir;
}

void put(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string in(reinterpret_cast<const char*>(data), size);
  const auto cut1 = in.find('\0');
  const std::string manifest = in.substr(0, cut1);
  std::string model, state;
  if (cut1 != std::string::npos) {
    const auto cut2 = in.find('\0', cut1 + 1);
    model = in.substr(cut1 + 1, cut2 == std::string::npos ? std::string::npos : cut2 - cut1 - 1);
    if (cut2 != std::string::npos) state = in.substr(cut2 + 1);
  }
  const std::string& dir = work_dir();
  put(dir + "/manifest.json", manifest);
  put(dir + "/model.safetensors", model);
  put(dir + "/state.json", state);
  const std::string why = janus::train::CheckpointStore::validate(dir, {"model.safetensors"});
  try {
    (void)janus::train::CheckpointStore::step_of(dir);
  } catch (const janus::InputError&) {
  }
  if (why.empty()) {
    try {
      const auto f = janus::SafeTensorsFile::open(dir + "/model.safetensors");
      for (const auto& name : f.names()) (void)f.tensor(name);
    } catch (const janus::InputError&) {
    }
    (void)nlohmann::json::parse(state, nullptr, false);  // no-throw parse, as the trainer would see it
  }
  return 0;
}
