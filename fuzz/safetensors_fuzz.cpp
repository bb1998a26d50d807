// libFuzzer target: the safetensors parser on arbitrary bytes. Any input must either parse (and then every tensor
// must be readable) or throw janus::InputError; crashes, leaks and UB are findings.
#include <cstddef>
#include <cstdint>
#include <string>

#include "janus/core/error.h"
#include "janus/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto f = janus::SafeTensorsFile::from_bytes(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
    for (const auto& name : f.names()) {
      const auto t = f.tensor(name);
      if (t.numel() > 0 && t.numel() < (1 << 16)) (void)t.sum();
    }
  } catch (const janus::InputError&) {
  }
  return 0;
}
