// libFuzzer target: YAML config loading on arbitrary text. Any input must load or throw janus::ConfigError.
#include <cstddef>
#include <cstdint>
#include <string>

#include "janus/core/config.h"
#include "janus/core/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const auto c = janus::Config::from_yaml(text, {}, "fuzz.yaml");
    (void)janus::Config::from_yaml(c.to_yaml());  // the resolved config always reloads
  } catch (const janus::ConfigError&) {
  }
  return 0;
}
