#pragma once
// Parity cases written by a tests/python script, generated once and cached under the build tree keyed by the
// script's sha256 (ctest runs every test in its own process; importing timm/transformers each time is slow).
#include <cstdio>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "janus/core/hash.h"
#include "test_util.h"

namespace janus::test {

inline std::string cached_python_case(const std::string& script) {
  namespace fs = std::filesystem;
  const auto hash = sha256_file(source_dir() + "/tests/python/" + script).substr(0, 16);
  const fs::path dir = fs::path(binary_dir()) / "test_cache" / (script + "-" + hash);
  if (fs::exists(dir / "DONE")) return dir.string();
  const auto tmp = temp_dir("case");
  const auto r = run_python(script, {tmp});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  if (r.exit_code != 0) return tmp;
  std::FILE* f = std::fopen((fs::path(tmp) / "DONE").c_str(), "w");
  if (f) std::fclose(f);
  fs::create_directories(dir.parent_path());
  std::error_code ec;
  fs::rename(tmp, dir, ec);  // another process may have won the race: then use ours from tmp
  return ec ? tmp : dir.string();
}

}  // namespace janus::test
