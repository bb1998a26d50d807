// libFuzzer target: the COCO captions and Karpathy-split JSON readers on arbitrary bytes. Strict mode (no report)
// must return records or throw janus::InputError; lenient mode (EntryReport) must agree with strict mode when the
// file is clean, only skip (never throw) for entry-level problems, and keep skipped <= entries.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "fuzz_util.h"
#include "janus/core/error.h"
#include "janus/data/formats.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = janus::fuzz::write_scratch("captions.json", reinterpret_cast<const char*>(data), size);
  bool strict_ok = false;
  size_t strict_n = 0;
  try {
    strict_n = janus::load_coco_captions(path).size();
    strict_ok = true;
  } catch (const janus::InputError&) {
  }
  try {
    janus::EntryReport rep;
    const auto recs = janus::load_coco_captions(path, &rep);
    if (rep.skipped > rep.entries || rep.skipped < 0) std::abort();
    if (strict_ok && (rep.skipped != 0 || recs.size() != strict_n)) std::abort();
    if (!strict_ok && rep.skipped == 0) std::abort();  // strict failed, so lenient must have skipped something
    for (const auto& r : recs) {
      if (r.file.empty() && r.caption.empty() && r.image_id == -1) continue;
    }
  } catch (const janus::InputError&) {
    if (strict_ok) std::abort();  // lenient may only fail where strict fails too
  }
  try {
    (void)janus::load_karpathy(path, "");
    (void)janus::load_karpathy(path, "train");
  } catch (const janus::InputError&) {
  }
  return 0;
}
