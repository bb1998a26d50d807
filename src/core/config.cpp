#include "janus/core/config.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <set>
#include <sstream>
#include <stdexcept>

#include <yaml-cpp/yaml.h>

#include "janus/core/error.h"
#include "janus/core/fs.h"
#include "janus/core/hash.h"
#include "janus/core/text.h"

namespace janus {
namespace {

std::string join_path(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : prefix + "." + key;
}

std::string leaf_of(const std::string& path) {
  const auto dot = path.rfind('.');
  return dot == std::string::npos ? path : path.substr(dot + 1);
}

// ---- type names and parsing --------------------------------------------------------------------------------
template <class T>
struct TypeName;
template <>
struct TypeName<bool> {
  static constexpr const char* value = "bool";
};
template <>
struct TypeName<int64_t> {
  static constexpr const char* value = "int";
};
template <>
struct TypeName<double> {
  static constexpr const char* value = "float";
};
template <>
struct TypeName<std::string> {
  static constexpr const char* value = "string";
};
template <>
struct TypeName<std::vector<int64_t>> {
  static constexpr const char* value = "list[int]";
};
template <>
struct TypeName<std::vector<double>> {
  static constexpr const char* value = "list[float]";
};
template <>
struct TypeName<std::vector<std::string>> {
  static constexpr const char* value = "list[string]";
};

const char* node_kind(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
      return "nothing (null)";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    default:
      return "a scalar";
  }
}

// Where a value came from, for error messages: "file.yaml:12" or "--set a.b=c".
struct Origin {
  std::string source;
  bool is_file = true;
  std::string at(const YAML::Node& n) const {
    if (!is_file) return source;
    const auto m = n.Mark();
    if (m.line < 0) return source;
    return fmt::format("{}:{}", source, m.line + 1);
  }
};

std::string failure(const Origin& o, const YAML::Node& n, const std::string& path, const std::string& what) {
  return fmt::format("config {}: {}: {}", o.at(n), path, what);
}
[[noreturn]] void fail(const Origin& o, const YAML::Node& n, const std::string& path, const std::string& what) {
  throw ConfigError(failure(o, n, path, what));
}

template <class T>
T parse_scalar(const YAML::Node& n, const std::string& path, const Origin& o);

template <>
bool parse_scalar<bool>(const YAML::Node& n, const std::string& path, const Origin& o) {
  if (!n.IsScalar()) fail(o, n, path, fmt::format("expected a bool (true/false), got {}", node_kind(n)));
  std::string s = n.Scalar();
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  if (s == "true" || s == "yes" || s == "on") return true;
  if (s == "false" || s == "no" || s == "off") return false;
  fail(o, n, path, fmt::format("expected a bool (true/false), got '{}'", n.Scalar()));
}

template <>
double parse_scalar<double>(const YAML::Node& n, const std::string& path, const Origin& o) {
  if (!n.IsScalar()) fail(o, n, path, fmt::format("expected a number, got {}", node_kind(n)));
  const std::string& s = n.Scalar();
  std::string lower = s;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const char* special : {".nan", ".inf", "-.inf", "+.inf", "nan", "inf", "-inf", "+inf", "infinity"}) {
    if (lower == special) fail(o, n, path, fmt::format("value '{}' is not a finite number", s));
  }
  const char* b = s.c_str();
  char* e = nullptr;
  errno = 0;
  const double v = std::strtod(b, &e);
  if (s.empty() || e != b + s.size()) fail(o, n, path, fmt::format("expected a number, got '{}'", s));
  if (errno == ERANGE || !std::isfinite(v)) {
    fail(o, n, path, fmt::format("value '{}' is not a finite number in double range", s));
  }
  return v;
}

template <>
int64_t parse_scalar<int64_t>(const YAML::Node& n, const std::string& path, const Origin& o) {
  if (!n.IsScalar()) fail(o, n, path, fmt::format("expected an integer, got {}", node_kind(n)));
  const std::string& s = n.Scalar();
  int64_t v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec == std::errc() && r.ptr == s.data() + s.size()) return v;
  if (r.ec == std::errc::result_out_of_range) {
    fail(o, n, path, fmt::format("value '{}' is out of range for a 64-bit integer", s));
  }
  // Accept integral floats such as 1e5 (common for step counts), within the exact range of a double.
  char* e = nullptr;
  const double d = std::strtod(s.c_str(), &e);
  if (!s.empty() && e == s.c_str() + s.size() && std::isfinite(d) && std::floor(d) == d &&
      std::fabs(d) <= 9007199254740992.0) {
    return static_cast<int64_t>(d);
  }
  fail(o, n, path, fmt::format("expected an integer, got '{}'", s));
}

template <>
std::string parse_scalar<std::string>(const YAML::Node& n, const std::string& path, const Origin& o) {
  if (n.IsNull()) return std::string();
  if (!n.IsScalar()) fail(o, n, path, fmt::format("expected a string, got {}", node_kind(n)));
  return n.Scalar();
}

template <class T>
T parse_value(const YAML::Node& n, const std::string& path, const Origin& o) {
  return parse_scalar<T>(n, path, o);
}

template <class T>
std::vector<T> parse_list(const YAML::Node& n, const std::string& path, const Origin& o) {
  std::vector<T> out;
  if (n.IsNull()) return out;
  if (!n.IsSequence()) {
    fail(o, n, path, fmt::format("expected a list of {}, got {}", TypeName<T>::value, node_kind(n)));
  }
  for (std::size_t i = 0; i < n.size(); ++i) out.push_back(parse_scalar<T>(n[i], fmt::format("{}[{}]", path, i), o));
  return out;
}
template <>
[[maybe_unused]] std::vector<int64_t> parse_value(const YAML::Node& n, const std::string& p, const Origin& o) {
  return parse_list<int64_t>(n, p, o);
}
template <>
std::vector<double> parse_value(const YAML::Node& n, const std::string& p, const Origin& o) {
  return parse_list<double>(n, p, o);
}
template <>
std::vector<std::string> parse_value(const YAML::Node& n, const std::string& p, const Origin& o) {
  return parse_list<std::string>(n, p, o);
}

// ---- validation ---------------------------------------------------------------------------------------------
void check_number(double v, const Check& c, const Origin& o, const YAML::Node& n, const std::string& path) {
  const bool low = c.min && (c.min_exclusive ? !(v > *c.min) : v < *c.min);
  const bool high = c.max && v > *c.max;
  if (low || high) fail(o, n, path, fmt::format("value {} is out of range: expected {}", v, c.describe()));
}
thread_local bool t_skip_path_checks = false;  // Config::load_resolved
// A missing path in the YAML is only an error if no --set override replaces it (Config::from_yaml): configs name
// default locations (runs/quickstart/shapes) that a run points elsewhere.
struct DeferredPathChecks {
  bool deferring = false;
  std::vector<std::pair<std::string, std::string>> failures;  // in file order: key path, the error it raises
  void overridden(const std::string& path) {
    failures.erase(std::remove_if(failures.begin(), failures.end(),
                                  [&](const auto& f) { return f.first == path || f.first.rfind(path + "[", 0) == 0; }),
                   failures.end());
  }
};
thread_local DeferredPathChecks* t_deferred_paths = nullptr;

void check_string(const std::string& v, const Check& c, const Origin& o, const YAML::Node& n, const std::string& path) {
  if (!c.choices.empty() && std::find(c.choices.begin(), c.choices.end(), v) == c.choices.end()) {
    const std::string best = closest_match(v, c.choices);
    const std::string hint = best.empty() ? "" : fmt::format(" (did you mean '{}'?)", best);
    fail(o, n, path, fmt::format("value '{}' is not allowed: expected {}{}", v, c.describe(), hint));
  }
  if (!c.existing_path || t_skip_path_checks) return;
  auto* deferred = t_deferred_paths;
  if (deferred && !deferred->deferring) deferred->overridden(path);
  if (v.empty() || std::filesystem::exists(v)) return;
  auto msg = failure(o, n, path, fmt::format("path '{}' does not exist", v));
  if (!deferred || !deferred->deferring) throw ConfigError(msg);
  deferred->failures.emplace_back(path, std::move(msg));
}
void validate(bool, const Check&, const Origin&, const YAML::Node&, const std::string&) {}
void validate(int64_t v, const Check& c, const Origin& o, const YAML::Node& n, const std::string& p) {
  check_number(static_cast<double>(v), c, o, n, p);
}
void validate(double v, const Check& c, const Origin& o, const YAML::Node& n, const std::string& p) {
  check_number(v, c, o, n, p);
}
void validate(const std::string& v, const Check& c, const Origin& o, const YAML::Node& n, const std::string& p) {
  check_string(v, c, o, n, p);
}
template <class T>
void validate(const std::vector<T>& v, const Check& c, const Origin& o, const YAML::Node& n, const std::string& p) {
  for (std::size_t i = 0; i < v.size(); ++i) validate(v[i], c, o, n, fmt::format("{}[{}]", p, i));
}

// ---- visitors -----------------------------------------------------------------------------------------------
struct KeyCollector {
  std::string prefix;
  std::vector<std::string>* out;
  template <class T>
  void operator()(const char* key, T&, const char*, const Check& = {}) {
    out->push_back(join_path(prefix, key));
  }
  template <class S>
  void section(const char* key, S& s, const char*) {
    KeyCollector sub{join_path(prefix, key), out};
    s.visit(sub);
  }
};

const std::vector<std::string>& all_keys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> k;
    Config c;
    KeyCollector kc{"", &k};
    c.visit(kc);
    return k;
  }();
  return keys;
}

class Reader {
 public:
  Reader(YAML::Node node, std::string prefix, const Origin& origin)
      : node_(std::move(node)), prefix_(std::move(prefix)), origin_(origin) {}

  template <class T>
  void operator()(const char* key, T& value, const char*, const Check& check = {}) {
    seen_.emplace_back(key);
    const YAML::Node& cnode = node_;
    const YAML::Node child = cnode[key];
    if (!child.IsDefined()) return;
    const std::string path = join_path(prefix_, key);
    T parsed = parse_value<T>(child, path, origin_);
    validate(parsed, check, origin_, child, path);
    value = std::move(parsed);
  }

  template <class S>
  void section(const char* key, S& s, const char*) {
    seen_.emplace_back(key);
    const YAML::Node& cnode = node_;
    const YAML::Node child = cnode[key];
    const std::string path = join_path(prefix_, key);
    if (!child.IsDefined() || child.IsNull()) return;
    if (!child.IsMap())
      fail(origin_, child, path, fmt::format("expected a section (mapping), got {}", node_kind(child)));
    Reader sub(child, path, origin_);
    s.visit(sub);
    sub.reject_unknown();
  }

  void reject_unknown() const {
    for (auto it = node_.begin(); it != node_.end(); ++it) {
      if (!it->first.IsScalar()) {
        fail(origin_, it->first, prefix_.empty() ? "<root>" : prefix_, "keys must be plain names, got a complex key");
      }
      const std::string key = it->first.Scalar();
      if (std::find(seen_.begin(), seen_.end(), key) != seen_.end()) continue;
      const std::string path = join_path(prefix_, key);
      fail(origin_, it->first, path, fmt::format("unknown key{}", suggestion(key)));
    }
  }

 private:
  std::string suggestion(const std::string& key) const {
    // Candidates: siblings in this section, and any key elsewhere with a close leaf name.
    std::string best;
    std::size_t best_d = std::string::npos;
    for (const auto& s : seen_) {
      const auto d = edit_distance(key, s);
      if (d < best_d) best_d = d, best = join_path(prefix_, s);
    }
    for (const auto& full : all_keys()) {
      const auto d = edit_distance(key, leaf_of(full)) + (full.rfind(prefix_, 0) == 0 ? 0 : 1);
      if (d < best_d) best_d = d, best = full;
    }
    const std::size_t limit = std::max<std::size_t>(2, key.size() / 3);
    if (best_d <= limit) return fmt::format(" (did you mean {}?)", best);
    std::vector<std::string> valid;
    for (const auto& s : seen_) valid.push_back(s);
    return fmt::format(" (valid keys here: {})", fmt::join(valid, ", "));
  }

  YAML::Node node_;
  std::string prefix_;
  const Origin& origin_;
  std::vector<std::string> seen_;
};

std::string number_text(double v) { return fmt::format("{}", v); }

class Writer {
 public:
  explicit Writer(YAML::Emitter& out) : out_(out) {}
  void operator()(const char* key, bool& v, const char*, const Check& = {}) {
    out_ << YAML::Key << key << YAML::Value << (v ? "true" : "false");
  }
  void operator()(const char* key, int64_t& v, const char*, const Check& = {}) {
    out_ << YAML::Key << key << YAML::Value << std::to_string(v);
  }
  void operator()(const char* key, double& v, const char*, const Check& = {}) {
    out_ << YAML::Key << key << YAML::Value << number_text(v);
  }
  void operator()(const char* key, std::string& v, const char*, const Check& = {}) {
    out_ << YAML::Key << key << YAML::Value << YAML::DoubleQuoted << v;
  }
  template <class T>
  void operator()(const char* key, std::vector<T>& v, const char*, const Check& = {}) {
    out_ << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (auto& x : v) {
      if constexpr (std::is_same_v<T, std::string>)
        out_ << YAML::DoubleQuoted << x;
      else if constexpr (std::is_same_v<T, double>)
        out_ << number_text(x);
      else
        out_ << std::to_string(x);
    }
    out_ << YAML::EndSeq;
  }
  template <class S>
  void section(const char* key, S& s, const char*) {
    out_ << YAML::Key << key << YAML::Value << YAML::BeginMap;
    s.visit(*this);
    out_ << YAML::EndMap;
  }

 private:
  YAML::Emitter& out_;
};

std::string default_text(bool v) { return v ? "true" : "false"; }
std::string default_text(int64_t v) { return std::to_string(v); }
std::string default_text(double v) { return number_text(v); }
std::string default_text(const std::string& v) { return v.empty() ? "\"\"" : v; }
template <class T>
std::string default_text(const std::vector<T>& v) {
  std::vector<std::string> items;
  for (const auto& x : v) items.push_back(default_text(x));
  return fmt::format("[{}]", fmt::join(items, ", "));
}

class DocWriter {
 public:
  template <class T>
  void operator()(const char* key, T& v, const char* help, const Check& check = {}) {
    const std::string allowed = check.describe();
    rows_ += fmt::format("| `{}` | {} | `{}` | {} | {} |\n", join_path(prefix_, key), TypeName<T>::value,
                         default_text(v), allowed.empty() ? "" : allowed, help);
  }
  template <class S>
  void section(const char* key, S& s, const char* help) {
    DocWriter sub;
    sub.prefix_ = join_path(prefix_, key);
    s.visit(sub);
    text_ += fmt::format("\n## `{}`\n\n{}\n\n| key | type | default | allowed | meaning |\n|---|---|---|---|---|\n{}",
                         sub.prefix_, help, sub.rows_);
    text_ += sub.text_;
  }
  std::string text_;

 private:
  std::string prefix_;
  std::string rows_;
};

YAML::Node load_yaml(const std::string& text, const std::string& source) {
  try {
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(fmt::format("config {}:{}: YAML syntax error: {}", source, e.mark.line + 1, e.msg));
  }
}

void apply(Config& cfg, const YAML::Node& root, const Origin& origin) {
  if (!root.IsDefined() || root.IsNull()) return;
  if (!root.IsMap())
    fail(origin, root, "<root>", fmt::format("expected a mapping of sections, got {}", node_kind(root)));
  try {
    Reader r(root, "", origin);
    cfg.visit(r);
    r.reject_unknown();
  } catch (const YAML::Exception& e) {  // anything yaml-cpp itself rejects is still the config's fault
    throw ConfigError(fmt::format("config {}:{}: {}", origin.source, e.mark.line + 1, e.msg));
  }
}

void validate_relations(const Config& c) {
  parse_optim_overrides(c.optim.overrides);
  if (c.data.mean.size() != 3 || c.data.std.size() != 3) {
    throw ConfigError(fmt::format("config: data.mean and data.std need 3 values (RGB), got {} and {}",
                                  c.data.mean.size(), c.data.std.size()));
  }
}

}  // namespace

OptimOverride parse_optim_override(const std::string& spec, const std::string& where) {
  auto trim = [](std::string t) {
    const auto b = t.find_first_not_of(" \t");
    if (b == std::string::npos) return std::string();
    return t.substr(b, t.find_last_not_of(" \t") - b + 1);
  };
  const auto colon = spec.find(':');
  if (colon == std::string::npos)
    throw ConfigError(fmt::format("config: {}: '{}' needs the form \"PREFIX: key=value, ...\"", where, spec));
  OptimOverride o;
  o.prefix = trim(spec.substr(0, colon));
  if (o.prefix.empty() || o.prefix.find_first_of(" \t*") != std::string::npos || o.prefix.front() == '.' ||
      o.prefix.back() == '.')
    throw ConfigError(
        fmt::format("config: {}: '{}' is not a parameter-name prefix (like vq or text.embed)", where, o.prefix));
  std::string rest = spec.substr(colon + 1);
  bool any = false;
  std::size_t pos = 0;
  while (pos <= rest.size()) {
    const auto comma = std::min(rest.find(',', pos), rest.size());
    const auto item = trim(rest.substr(pos, comma - pos));
    pos = comma + 1;
    if (item.empty()) continue;
    const auto eq = item.find('=');
    const auto key = trim(item.substr(0, std::min(eq, item.size())));
    if (eq == std::string::npos) throw ConfigError(fmt::format("config: {}: '{}' needs key=value", where, item));
    const auto text = trim(item.substr(eq + 1));
    double value = 0;
    try {
      std::size_t used = 0;
      value = std::stod(text, &used);
      if (used != text.size()) throw std::invalid_argument(text);
    } catch (const std::exception&) {
      throw ConfigError(fmt::format("config: {}: {}='{}' is not a number", where, key, text));
    }
    auto need = [&](bool ok, const char* range) {
      if (!ok || !std::isfinite(value))
        throw ConfigError(fmt::format("config: {}: {}={} must be {}", where, key, text, range));
    };
    if (key == "lr_scale") {
      need(value >= 0 && value <= 1000, "in [0, 1000]");
      o.lr_scale = value;
    } else if (key == "beta1" || key == "beta2") {
      need(value >= 0 && value < 1, "in [0, 1)");
      (key == "beta1" ? o.beta1 : o.beta2) = value;
    } else if (key == "weight_decay") {
      need(value >= 0 && value <= 10, "in [0, 10]");
      o.weight_decay = value;
    } else {
      throw ConfigError(fmt::format("config: {}: unknown key '{}' (lr_scale, beta1, beta2, weight_decay)", where, key));
    }
    any = true;
  }
  if (!any) throw ConfigError(fmt::format("config: {}: '{}' sets nothing after the ':'", where, spec));
  return o;
}

std::vector<OptimOverride> parse_optim_overrides(const std::vector<std::string>& specs) {
  std::vector<OptimOverride> out;
  for (std::size_t i = 0; i < specs.size(); ++i)
    out.push_back(parse_optim_override(specs[i], fmt::format("optim.overrides[{}]", i)));
  return out;
}

std::string Check::describe() const {
  std::string s;
  if (min && max) {
    s = fmt::format("in {}{}, {}]", min_exclusive ? "(" : "[", number_text(*min), number_text(*max));
  } else if (min) {
    s = fmt::format("{} {}", min_exclusive ? ">" : ">=", number_text(*min));
  } else if (max) {
    s = fmt::format("<= {}", number_text(*max));
  }
  if (!choices.empty()) s = fmt::format("one of: {}", fmt::join(choices, ", "));
  if (existing_path) s = s.empty() ? "existing path or empty" : s + "; existing path";
  return s;
}

Config Config::from_yaml(const std::string& yaml, const std::vector<std::string>& overrides,
                         const std::string& source) {
  Config cfg;
  const Origin origin{source, true};
  DeferredPathChecks paths;
  struct Scope {
    explicit Scope(DeferredPathChecks* p) { t_deferred_paths = p; }
    ~Scope() { t_deferred_paths = nullptr; }
  } scope(&paths);
  paths.deferring = true;
  apply(cfg, load_yaml(yaml, source), origin);
  paths.deferring = false;
  for (const auto& o : overrides) cfg.set(o);
  if (!paths.failures.empty()) throw ConfigError(paths.failures.front().second);
  validate_relations(cfg);
  return cfg;
}

Config Config::load(const std::string& path, const std::vector<std::string>& overrides) {
  if (!std::filesystem::is_regular_file(path)) {
    throw ConfigError(fmt::format("config file '{}' does not exist or is not a file", path));
  }
  return from_yaml(read_file(path), overrides, path);
}

Config Config::load_resolved(const std::string& path) {
  struct Guard {
    Guard() { t_skip_path_checks = true; }
    ~Guard() { t_skip_path_checks = false; }
  } guard;
  return load(path);
}

void Config::set(const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw ConfigError(fmt::format("--set '{}': expected key.path=value", assignment));
  }
  const std::string path = assignment.substr(0, eq);
  const std::string value = assignment.substr(eq + 1);
  YAML::Node leaf;
  try {
    leaf = YAML::Load(value);
  } catch (const YAML::Exception&) {
    leaf = YAML::Node(value);
  }
  if (!leaf.IsDefined()) leaf = YAML::Node(YAML::NodeType::Null);
  // "a: b" inside a value is text unless written as a flow mapping.
  if (leaf.IsMap() && (value.empty() || value.front() != '{')) leaf = YAML::Node(value);
  std::vector<std::string> parts;
  std::stringstream ss(path);
  for (std::string p; std::getline(ss, p, '.');) {
    if (p.empty()) throw ConfigError(fmt::format("--set '{}': empty component in key path", assignment));
    parts.push_back(p);
  }
  YAML::Node node = leaf;
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    YAML::Node parent(YAML::NodeType::Map);
    parent[*it] = node;
    node = parent;
  }
  apply(*this, node, Origin{"--set " + assignment, false});
  validate_relations(*this);
}

std::string Config::to_yaml() const {
  YAML::Emitter out;
  out << YAML::BeginMap;
  Writer w(out);
  const_cast<Config&>(*this).visit(w);  // visit() is shared with the readers; Writer does not modify
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

std::string Config::hash() const { return sha256_hex(to_yaml()).substr(0, 16); }

void Config::write(const std::string& path) const { write_file_atomic(path, to_yaml()); }

std::string Config::docs_markdown() {
  Config c;
  DocWriter d;
  c.visit(d);
  return "# Configuration reference\n\n"
         "Generated from the schema in include/janus/core/config.h by `janus_config docs`; a test checks that this "
         "file matches it.\n\nA config is YAML with these sections; every key is optional (defaults below). "
         "Unknown keys, wrong types and out-of-range values are errors naming the key. Override any key from the "
         "command line with `--set section.key=value` (repeatable). Relative paths are relative to the working "
         "directory; a path the YAML names must exist unless a `--set` replaces it. The resolved config is written to "
         "`<train.run_dir>/config.yaml`.\n" +
         d.text_;
}

std::vector<std::string> Config::keys() { return all_keys(); }

}  // namespace janus
