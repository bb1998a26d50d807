// libFuzzer target: the VQA v2 questions + annotations readers. The input is split at its first NUL byte into the
// questions JSON and the annotations JSON. Same contract as coco_captions_fuzz (strict: records or InputError;
// lenient: skips entry-level problems, agrees with strict on clean files), plus: every kept record of an annotated
// load has exactly 10 answers, and the answer vocabulary builds.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "fuzz_util.h"
#include "janus/core/error.h"
#include "janus/data/formats.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto [q, a] = janus::fuzz::split_at_nul(data, size);
  const std::string qpath = janus::fuzz::write_scratch("questions.json", q.data(), q.size());
  const std::string apath = janus::fuzz::write_scratch("annotations.json", a.data(), a.size());
  bool strict_ok = false;
  size_t strict_n = 0;
  try {
    const auto recs = janus::load_vqa(qpath, apath, "{subtype}/{id12}.png");
    strict_ok = true;
    strict_n = recs.size();
    for (const auto& r : recs) {
      if (r.answers.size() != 10) std::abort();
    }
    (void)janus::build_answer_vocab(recs, 10, 1, true);
  } catch (const janus::InputError&) {
  }
  try {
    janus::EntryReport rep;
    const auto recs = janus::load_vqa(qpath, apath, "COCO_{subtype}_{id12}.jpg", &rep);
    if (rep.skipped < 0 || (strict_ok && (rep.skipped != 0 || recs.size() != strict_n))) std::abort();
    if (!strict_ok && rep.skipped == 0) std::abort();
    for (const auto& r : recs) {
      if (r.answers.size() != 10) std::abort();
    }
    (void)janus::build_answer_vocab(recs, 0);
  } catch (const janus::InputError&) {
    if (strict_ok) std::abort();
  }
  try {
    (void)janus::load_vqa(qpath, "", "{id}");  // questions only
  } catch (const janus::InputError&) {
  }
  return 0;
}
