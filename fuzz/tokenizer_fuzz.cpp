// libFuzzer target: tokenizer input. A tiny SentencePiece model (vocab 64, unigram) is trained at start-up from a
// generated corpus (nothing binary is committed); every input (arbitrary bytes, invalid UTF-8 included) is encoded
// with and without bos/eos and with truncation, decoded, and batch-encoded. Ids must lie in [0, vocab) and
// truncation must hold; the only exception allowed is janus::InputError (a clear one-line error).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>

#include "fuzz_util.h"
#include "janus/core/error.h"
#include "janus/data/tokenizer.h"

namespace {
std::unique_ptr<janus::Tokenizer> g_tok;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const std::string dir = janus::fuzz::scratch_dir();
  const std::string corpus = dir + "/corpus.txt";
  {
    std::ofstream f(corpus);
    const char* colours[] = {"red", "yellow", "green", "cyan", "blue", "magenta"};
    const char* shapes[] = {"circle", "square", "triangle", "star"};
    for (int i = 0; i < 400; ++i) {
      f << "a " << colours[i % 6] << " " << shapes[(i / 6) % 4] << " to the left of a " << colours[(i / 3) % 6] << " "
        << shapes[i % 4] << " <image_start> " << i << " <image_end>\n";
    }
  }
  janus::TokenizerTrainOptions o;
  o.vocab_size = 64;
  g_tok = std::make_unique<janus::Tokenizer>(janus::Tokenizer::load(janus::Tokenizer::train(corpus, dir + "/tok", o)));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) try {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const int64_t v = g_tok->vocab_size();
  auto check = [&](const std::vector<int64_t>& ids) {
    for (auto id : ids) {
      if (id < 0 || id >= v) std::abort();
    }
  };
  const auto ids = g_tok->encode(text);
  check(ids);
  if (ids.size() < 2 || ids.front() != janus::SpecialTokens::bos || ids.back() != janus::SpecialTokens::eos) std::abort();
  const auto raw = g_tok->encode(text, false, false);
  check(raw);
  const int64_t max_len = 1 + static_cast<int64_t>(size % 7);
  const auto cut = g_tok->encode(text, true, true, max_len);
  check(cut);
  if (static_cast<int64_t>(cut.size()) > max_len) std::abort();
  (void)g_tok->decode(ids);
  (void)g_tok->decode(raw);
  for (auto id : raw) (void)g_tok->id_to_piece(id);
  const auto b = g_tok->encode_batch({text, "a red circle", ""}, 8, true);
  if (b.ids.size(0) != 3 || b.ids.size(1) != 8) std::abort();
  return 0;
} catch (const janus::InputError&) {
  return 0;
}
