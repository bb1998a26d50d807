// libFuzzer target: the NLVR2 jsonl reader. Strict: records (label 0/1, both image paths set) or InputError;
// lenient (EntryReport): skips bad lines, agrees with strict on clean files.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "fuzz_util.h"
#include "janus/core/error.h"
#include "janus/data/formats.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = janus::fuzz::write_scratch("nlvr2.jsonl", reinterpret_cast<const char*>(data), size);
  bool strict_ok = false;
  size_t strict_n = 0;
  try {
    const auto recs = janus::load_nlvr2(path);
    strict_ok = true;
    strict_n = recs.size();
    for (const auto& r : recs) {
      if ((r.label != 0 && r.label != 1) || r.left.empty() || r.right.empty()) std::abort();
    }
  } catch (const janus::InputError&) {
  }
  try {
    janus::EntryReport rep;
    const auto recs = janus::load_nlvr2(path, &rep);
    if (rep.skipped < 0 || rep.skipped > rep.entries) std::abort();
    if (strict_ok && (rep.skipped != 0 || recs.size() != strict_n)) std::abort();
    if (!strict_ok && rep.skipped == 0) std::abort();
    if (static_cast<int64_t>(recs.size()) != rep.entries - rep.skipped) std::abort();
  } catch (const janus::InputError&) {
    if (strict_ok) std::abort();
  }
  return 0;
}
