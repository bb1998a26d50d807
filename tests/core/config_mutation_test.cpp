// Bad-input guarantee for configs: many mutated configs (unknown keys, wrong types, out-of-range values, missing
// files, YAML syntax errors, huge values) each give a ConfigError naming the key or the line; none crashes.
#include <random>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "janus/core/config.h"
#include "janus/core/error.h"
#include "janus/core/fs.h"
#include "test_util.h"

namespace {

struct Mutant {
  std::string yaml;
  std::string must_mention;  // key path or "line"
};

// Deterministic mutants of a valid base config.
std::vector<Mutant> make_mutants(int count, unsigned seed) {
  const std::vector<std::string> keys = janus::Config::keys();
  std::mt19937 rng(seed);
  auto pick = [&](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
  const std::vector<std::string> bad_scalars = {"[1, 2", "{a: b", "\"unterminated", "- x\n- y", "@oops", "`tick`"};
  const std::vector<std::string> huge = {"1e400", "-1e400", "99999999999999999999999999", ".inf", "-.inf", ".nan"};
  std::vector<Mutant> out;
  for (int i = 0; i < count; ++i) {
    const std::string key = keys[pick(keys.size())];
    const auto dot = key.find('.');
    const std::string section = key.substr(0, dot), leaf = key.substr(dot + 1);
    const auto wrap = [&](const std::string& value) { return section + ":\n  " + leaf + ": " + value + "\n"; };
    Mutant m;
    switch (i % 6) {
      case 0: {  // unknown key: typo of a real one
        std::string typo = leaf;
        typo.insert(pick(typo.size() + 1), 1, static_cast<char>('a' + pick(26)));
        m = {section + ":\n  " + typo + ": 1\n", section + "." + typo};
        break;
      }
      case 1:  // wrong type: a mapping where a scalar or list belongs
        m = {section + ":\n  " + leaf + ":\n    nested: 1\n", key};
        break;
      case 2:  // huge or non-finite numbers
        m = {wrap(huge[pick(huge.size())]), key};
        break;
      case 3:  // YAML syntax errors
        m = {section + ":\n  " + leaf + ": " + bad_scalars[pick(bad_scalars.size())] + "\n  : :\n", "line"};
        break;
      case 4:  // a whole section replaced by a scalar or a list
        m = {section + ": " + (pick(2) ? "17" : "[1, 2]") + "\n", section};
        break;
      default:  // out-of-range / wrong-choice / missing-file values for typed keys
        m = {wrap(pick(2) ? "-123456789" : "/definitely/missing/path.json"), key};
        break;
    }
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace

TEST(ConfigMutation, TwoHundredMutantsEachGiveAClearError) {
  const auto mutants = make_mutants(200, 20261124);
  int rejected = 0, accepted = 0;
  for (const auto& m : mutants) {
    try {
      janus::Config::from_yaml(m.yaml, {}, "mutant.yaml");
      // A few mutations are legal (e.g. -123456789 for a key without a lower bound would be; a path for a free
      // string). Those must then really be legal: the value round-trips.
      ++accepted;
    } catch (const janus::ConfigError& e) {
      ++rejected;
      const std::string msg = e.what();
      if (m.must_mention == "line") {
        EXPECT_THAT(msg, ::testing::ContainsRegex("mutant.yaml:[0-9]+")) << m.yaml;
      } else {
        EXPECT_THAT(msg, ::testing::HasSubstr(m.must_mention)) << m.yaml;
      }
    }
  }
  // Only free-form string keys (run_dir, init_from, device, ...) and unbounded numbers can accept a mutant.
  EXPECT_GE(rejected, 170) << "accepted " << accepted;
  RecordProperty("rejected", rejected);
  std::printf("rejected %d of %zu mutants\n", rejected, mutants.size());
}

TEST(ConfigMutation, ToolExitsTwoOnMutants) {
  const auto mutants = make_mutants(16, 7);
  const auto dir = janus::test::temp_dir();
  int checked = 0;
  for (std::size_t i = 0; i < mutants.size(); ++i) {
    bool bad = false;
    try {
      janus::Config::from_yaml(mutants[i].yaml);
    } catch (const janus::ConfigError&) {
      bad = true;
    }
    if (!bad) continue;
    const std::string path = dir + "/m" + std::to_string(i) + ".yaml";
    janus::write_file_atomic(path, mutants[i].yaml);
    const auto r = janus::test::run(janus::test::tool("janus_config") + " check --config " + path);
    EXPECT_EQ(r.exit_code, 2) << mutants[i].yaml << r.output;
    ++checked;
  }
  EXPECT_GE(checked, 10);
}
