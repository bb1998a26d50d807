#include "janus/data/formats.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <unordered_map>

#include "janus/core/error.h"
#include "janus/core/json_file.h"
#include "janus/core/logging.h"
#include "json_util.h"

namespace fs = std::filesystem;

namespace janus {
using detail::JRef;

std::string resolve_under(const std::string& root, const std::string& rel, const PathPolicy& policy) {
  fs::path r(rel);
  if (r.is_absolute()) {
    if (!policy.allow_escape) throw InputError(fmt::format("{}: absolute data path not allowed (root {})", rel, root));
    return r.lexically_normal().string();
  }
  const fs::path base = root.empty() ? fs::path(".") : fs::path(root);
  const fs::path joined = (base / r).lexically_normal();
  if (policy.allow_escape) return joined.string();
  std::error_code ec;
  const fs::path canon_root = fs::weakly_canonical(base, ec);
  const fs::path canon = fs::weakly_canonical(joined, ec);
  if (ec) throw InputError(fmt::format("{}: cannot resolve path: {}", joined.string(), ec.message()));
  auto rit = canon_root.begin();
  auto pit = canon.begin();
  for (; rit != canon_root.end(); ++rit, ++pit) {
    if (rit->empty()) continue;  // trailing separator
    if (pit == canon.end() || *pit != *rit) {
      throw InputError(fmt::format("{}: path escapes the dataset root {} (via .. or a symlink)", rel, root));
    }
  }
  return joined.string();
}

// ---------------- malformed entries ----------------

void EntryReport::skip(const std::string& why) {
  ++skipped;
  if (examples.size() < 5) examples.push_back(why);
}

void EntryReport::merge(const EntryReport& other) {
  entries += other.entries;
  skipped += other.skipped;
  for (const auto& e : other.examples) {
    if (examples.size() < 5) examples.push_back(e);
  }
}

void EntryReport::check(double max_bad_fraction, const std::string& what) const {
  if (skipped == 0) return;
  const std::string first = examples.empty() ? "" : examples.front();
  if (static_cast<double>(skipped) > max_bad_fraction * static_cast<double>(entries)) {
    throw InputError(fmt::format(
        "{}: {} of {} annotation entries were malformed, more than data.max_bad_fraction {} (first: {})", what,
        skipped, entries, max_bad_fraction, first));
  }
  spdlog::warn("{}: skipped {} of {} malformed annotation entries (first: {})", what, skipped, entries, first);
}

namespace {

// Parses one entry. Without a report an InputError propagates; with one it skips the entry (returns false).
template <class F>
bool parse_entry(EntryReport* report, F&& f) {
  if (!report) {
    f();
    return true;
  }
  ++report->entries;
  try {
    f();
    return true;
  } catch (const InputError& e) {
    report->skip(e.what());
    return false;
  }
}

}  // namespace

// ---------------- COCO / Karpathy ----------------

std::vector<CaptionRecord> load_coco_captions(const std::string& json_path, EntryReport* report) {
  const auto doc =
      read_json_file(json_path, "COCO captions file", static_cast<std::size_t>(DataLimits::max_json_bytes));
  JRef root{doc, json_path, "$"};
  std::unordered_map<int64_t, std::string> files;
  const JRef images = root.at("images");
  const size_t ni = images.array_size(DataLimits::max_records);
  for (size_t i = 0; i < ni; ++i) {
    parse_entry(report, [&] {
      const JRef im = images.at(i);
      const int64_t id = im.at("id").integer();
      std::string file = im.at("file_name").str();
      if (!files.emplace(id, std::move(file)).second) {
        throw InputError(fmt::format("{}: {}.id: duplicate image id {}", json_path, im.path, id));
      }
    });
  }
  const JRef anns = root.at("annotations");
  const size_t na = anns.array_size(DataLimits::max_records);
  std::vector<CaptionRecord> out;
  out.reserve(na);
  for (size_t i = 0; i < na; ++i) {
    parse_entry(report, [&] {
      const JRef a = anns.at(i);
      CaptionRecord r;
      r.image_id = a.at("image_id").integer();
      r.caption = a.at("caption").str();
      if (a.has("id")) r.caption_id = a.at("id").integer();
      auto it = files.find(r.image_id);
      if (it == files.end()) {
        throw InputError(fmt::format("{}: {}.image_id: expected the id of an entry in $.images, got {}", json_path,
                                     a.path, r.image_id));
      }
      r.file = it->second;
      out.push_back(std::move(r));
    });
  }
  return out;
}

std::vector<CaptionRecord> load_karpathy(const std::string& json_path, const std::string& split) {
  const auto doc =
      read_json_file(json_path, "Karpathy split file", static_cast<std::size_t>(DataLimits::max_json_bytes));
  JRef root{doc, json_path, "$"};
  const JRef images = root.at("images");
  const size_t ni = images.array_size(DataLimits::max_records);
  std::vector<CaptionRecord> out;
  for (size_t i = 0; i < ni; ++i) {
    const JRef im = images.at(i);
    const std::string s = im.at("split").str();
    if (!split.empty() && s != split) continue;
    std::string file = im.at("filename").str();
    if (im.has("filepath")) file = (fs::path(im.at("filepath").str()) / file).string();
    int64_t id = -1;
    if (im.has("cocoid")) {
      id = im.at("cocoid").integer();
    } else if (im.has("imgid")) {
      id = im.at("imgid").integer();
    } else {
      throw InputError(fmt::format("{}: {}: missing key \"cocoid\" or \"imgid\"", json_path, im.path));
    }
    const JRef sents = im.at("sentences");
    const size_t ns = sents.array_size(DataLimits::max_records);
    for (size_t k = 0; k < ns; ++k) {
      const JRef st = sents.at(k);
      CaptionRecord r;
      r.image_id = id;
      r.file = file;
      r.caption = st.at("raw").str();
      if (st.has("sentid")) r.caption_id = st.at("sentid").integer();
      out.push_back(std::move(r));
    }
  }
  return out;
}

// ---------------- VQA v2 ----------------

namespace {

std::string fill_pattern(const std::string& pattern, const std::string& subtype, int64_t id) {
  std::string out = pattern;
  auto replace = [&](const std::string& key, const std::string& value) {
    for (size_t p = out.find(key); p != std::string::npos; p = out.find(key, p + value.size())) {
      out.replace(p, key.size(), value);
    }
  };
  replace("{subtype}", subtype);
  replace("{id12}", fmt::format("{:012d}", id));
  replace("{id}", std::to_string(id));
  return out;
}

}  // namespace

std::string normalize_answer(const std::string& answer) {
  std::string s = answer;
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::vector<VqaRecord> load_vqa(const std::string& questions_json, const std::string& annotations_json,
                                const std::string& image_pattern, EntryReport* report) {
  const auto qdoc =
      read_json_file(questions_json, "VQA questions file", static_cast<std::size_t>(DataLimits::max_json_bytes));
  JRef qroot{qdoc, questions_json, "$"};
  const std::string subtype = qroot.has("data_subtype") ? qroot.at("data_subtype").str() : "";
  const JRef qs = qroot.at("questions");
  const size_t nq = qs.array_size(DataLimits::max_records);
  std::vector<VqaRecord> out;
  out.reserve(nq);
  std::unordered_map<int64_t, size_t> by_qid;
  for (size_t i = 0; i < nq; ++i) {
    parse_entry(report, [&] {
      const JRef q = qs.at(i);
      VqaRecord r;
      r.question_id = q.at("question_id").integer();
      r.image_id = q.at("image_id").integer();
      r.question = q.at("question").str();
      r.file = fill_pattern(image_pattern, subtype, r.image_id);
      if (!by_qid.emplace(r.question_id, out.size()).second) {
        throw InputError(
            fmt::format("{}: {}.question_id: duplicate question id {}", questions_json, q.path, r.question_id));
      }
      out.push_back(std::move(r));
    });
  }
  if (annotations_json.empty()) return out;
  const auto adoc =
      read_json_file(annotations_json, "VQA annotations file", static_cast<std::size_t>(DataLimits::max_json_bytes));
  JRef aroot{adoc, annotations_json, "$"};
  const JRef anns = aroot.at("annotations");
  const size_t na = anns.array_size(DataLimits::max_records);
  std::vector<bool> seen(out.size(), false);
  for (size_t i = 0; i < na; ++i) {
    parse_entry(report, [&] {
      const JRef a = anns.at(i);
      const int64_t qid = a.at("question_id").integer();
      auto it = by_qid.find(qid);
      if (it == by_qid.end()) {
        throw InputError(fmt::format("{}: {}.question_id: expected a question id from {}, got {}", annotations_json,
                                     a.path, questions_json, qid));
      }
      if (seen[it->second]) {
        throw InputError(
            fmt::format("{}: {}.question_id: duplicate annotation for question id {}", annotations_json, a.path, qid));
      }
      const VqaRecord& q = out[it->second];
      const int64_t img = a.at("image_id").integer();
      if (img != q.image_id) {
        throw InputError(fmt::format("{}: {}.image_id: expected {} (the question's image), got {}", annotations_json,
                                     a.path, q.image_id, img));
      }
      // Parsed into temporaries first, so a malformed entry leaves the question untouched.
      std::string mc = a.at("multiple_choice_answer").str();
      std::string type = a.at("answer_type").str();
      std::string qtype = a.has("question_type") ? a.at("question_type").str() : "";
      const JRef ans = a.at("answers");
      const size_t n = ans.array_size(100);
      if (n != 10) {
        throw InputError(fmt::format("{}: {}: expected 10 answers, got {}", annotations_json, ans.path, n));
      }
      std::vector<std::string> answers;
      for (size_t k = 0; k < n; ++k) answers.push_back(ans.at(k).at("answer").str());
      VqaRecord& r = out[it->second];
      r.multiple_choice_answer = std::move(mc);
      r.answer_type = std::move(type);
      r.question_type = std::move(qtype);
      r.answers = std::move(answers);
      seen[it->second] = true;
    });
  }
  std::vector<VqaRecord> kept;
  kept.reserve(out.size());
  for (size_t i = 0; i < out.size(); ++i) {
    if (seen[i]) {
      kept.push_back(std::move(out[i]));
      continue;
    }
    const std::string why = fmt::format("{}: $.annotations: expected an annotation for question_id {} of {}",
                                        annotations_json, out[i].question_id, questions_json);
    if (!report) throw InputError(why);
    report->skip(why);  // the question itself was counted as an entry when it was read
  }
  return kept;
}

int64_t AnswerVocab::id(const std::string& answer) const {
  auto it = index.find(answer);
  return it == index.end() ? -1 : it->second;
}

AnswerVocab build_answer_vocab(const std::vector<VqaRecord>& records, int64_t top_k, int64_t min_count,
                               bool all_answers) {
  std::map<std::string, int64_t> counts;
  for (const auto& r : records) {
    if (all_answers) {
      for (const auto& a : r.answers) ++counts[normalize_answer(a)];
    } else if (!r.multiple_choice_answer.empty()) {
      ++counts[normalize_answer(r.multiple_choice_answer)];
    }
  }
  std::vector<std::pair<std::string, int64_t>> items(counts.begin(), counts.end());
  std::stable_sort(items.begin(), items.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  AnswerVocab v;
  for (const auto& [a, c] : items) {
    if (c < min_count) break;
    if (top_k > 0 && static_cast<int64_t>(v.answers.size()) >= top_k) break;
    v.index[a] = static_cast<int64_t>(v.answers.size());
    v.answers.push_back(a);
    v.counts.push_back(c);
  }
  return v;
}

// ---------------- NLVR2 ----------------

std::vector<Nlvr2Record> load_nlvr2(const std::string& jsonl_path, EntryReport* report) {
  std::error_code ec;
  if (!fs::is_regular_file(jsonl_path, ec)) throw InputError(fmt::format("{}: file not found", jsonl_path));
  const auto size = fs::file_size(jsonl_path, ec);
  if (ec || static_cast<int64_t>(size) > DataLimits::max_json_bytes) {
    throw InputError(
        fmt::format("{}: cannot read or larger than {} bytes", jsonl_path, DataLimits::max_json_bytes));
  }
  std::ifstream in(jsonl_path);
  std::string line;
  std::vector<Nlvr2Record> out;
  int64_t lineno = 0;
  int64_t records = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    if (++records > DataLimits::max_records) {
      throw InputError(fmt::format("{}: more than {} records", jsonl_path, DataLimits::max_records));
    }
    const std::string where = fmt::format("{}:{}", jsonl_path, lineno);
    parse_entry(report, [&] {
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception& e) {  // parse_error, out_of_range (number overflow)
        throw InputError(fmt::format("{}: $: expected a JSON object: {}", where, e.what()));
      }
      JRef r{j, where, "$"};
      Nlvr2Record rec;
      rec.identifier = r.at("identifier").str();
      rec.sentence = r.at("sentence").str();
      const JRef lab = r.at("label");
      if (lab.j.is_boolean()) {
        rec.label = lab.j.get<bool>() ? 1 : 0;
      } else if (lab.j.is_string()) {
        std::string s = normalize_answer(lab.j.get<std::string>());
        if (s == "true") {
          rec.label = 1;
        } else if (s == "false") {
          rec.label = 0;
        } else {
          throw InputError(fmt::format("{}: $.label: expected \"True\" or \"False\", got \"{}\"", where, s));
        }
      } else {
        lab.fail("\"True\"/\"False\" or a boolean");
      }
      if (r.has("left_image") || r.has("right_image")) {
        rec.left = r.at("left_image").str();
        rec.right = r.at("right_image").str();
      } else {
        const auto dash = rec.identifier.rfind('-');
        if (dash == std::string::npos || dash == 0) {
          throw InputError(fmt::format("{}: $.identifier: expected \"split-set-pair-sentence\", got \"{}\"", where,
                                       rec.identifier));
        }
        const std::string stem = rec.identifier.substr(0, dash);
        rec.left = stem + "-img0.png";
        rec.right = stem + "-img1.png";
      }
      out.push_back(std::move(rec));
    });
  }
  return out;
}

// ---------------- text / image folders / point clouds ----------------

std::vector<std::string> load_text_corpus(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw InputError(fmt::format("{}: file not found", path));
  std::ifstream in(path);
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    if (static_cast<int64_t>(out.size()) >= DataLimits::max_records) {
      throw InputError(fmt::format("{}: more than {} lines", path, DataLimits::max_records));
    }
    out.push_back(line);
  }
  return out;
}

ImageFolderIndex index_image_folder(const std::string& root, const PathPolicy& policy) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) throw InputError(fmt::format("{}: image folder not found", root));
  ImageFolderIndex idx;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    if (e.is_directory()) idx.classes.push_back(e.path().filename().string());
  }
  std::sort(idx.classes.begin(), idx.classes.end());
  if (idx.classes.empty()) throw InputError(fmt::format("{}: expected one sub-folder per class, found none", root));
  static const std::vector<std::string> exts{".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".webp", ".tif", ".tiff"};
  for (size_t c = 0; c < idx.classes.size(); ++c) {
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(fs::path(root) / idx.classes[c], ec)) {
      std::string ext = e.path().extension().string();
      std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
      if (std::find(exts.begin(), exts.end(), ext) == exts.end()) continue;
      const std::string rel = (fs::path(idx.classes[c]) / e.path().filename()).string();
      files.push_back(resolve_under(root, rel, policy));
    }
    std::sort(files.begin(), files.end());
    for (auto& f : files) {
      idx.files.push_back(std::move(f));
      idx.labels.push_back(static_cast<int64_t>(c));
    }
    if (static_cast<int64_t>(idx.files.size()) > DataLimits::max_records) {
      throw InputError(fmt::format("{}: more than {} images", root, DataLimits::max_records));
    }
  }
  return idx;
}

namespace {

struct PlyProp {
  std::string name, type;
  bool is_list = false;
};

size_t ply_type_size(const std::string& t) {
  if (t == "char" || t == "uchar" || t == "int8" || t == "uint8") return 1;
  if (t == "short" || t == "ushort" || t == "int16" || t == "uint16") return 2;
  if (t == "int" || t == "uint" || t == "float" || t == "int32" || t == "uint32" || t == "float32") return 4;
  if (t == "double" || t == "float64") return 8;
  return 0;
}

double ply_read_binary(const char* p, const std::string& t) {
  auto rd = [&](auto v) {
    std::memcpy(&v, p, sizeof(v));
    return static_cast<double>(v);
  };
  if (t == "char" || t == "int8") return rd(int8_t{});
  if (t == "uchar" || t == "uint8") return rd(uint8_t{});
  if (t == "short" || t == "int16") return rd(int16_t{});
  if (t == "ushort" || t == "uint16") return rd(uint16_t{});
  if (t == "int" || t == "int32") return rd(int32_t{});
  if (t == "uint" || t == "uint32") return rd(uint32_t{});
  if (t == "float" || t == "float32") return rd(float{});
  return rd(double{});
}

}  // namespace

at::Tensor read_point_cloud(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw BadSampleError(fmt::format("{}: point cloud not found", path));
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
  std::ifstream in(path, std::ios::binary);
  std::vector<float> xyz;
  if (ext == ".xyz" || ext == ".txt") {
    std::string line;
    int64_t lineno = 0;
    while (std::getline(in, line)) {
      ++lineno;
      if (line.empty() || line[0] == '#' || line.find_first_not_of(" \t\r") == std::string::npos) continue;
      std::istringstream ss(line);
      double x, y, z;
      if (!(ss >> x >> y >> z)) throw BadSampleError(fmt::format("{}:{}: expected \"x y z\"", path, lineno));
      xyz.insert(xyz.end(), {static_cast<float>(x), static_cast<float>(y), static_cast<float>(z)});
      if (static_cast<int64_t>(xyz.size() / 3) > DataLimits::max_points) {
        throw BadSampleError(fmt::format("{}: more than {} points", path, DataLimits::max_points));
      }
    }
  } else if (ext == ".ply") {
    std::string line;
    if (!std::getline(in, line) || line.rfind("ply", 0) != 0) {
      throw BadSampleError(fmt::format("{}: expected the PLY magic \"ply\" on line 1", path));
    }
    std::string format;
    int64_t nvert = -1;
    bool in_vertex = false;
    std::vector<PlyProp> props;
    std::vector<std::pair<std::string, int64_t>> elements;
    int lines = 0;
    while (std::getline(in, line)) {
      if (++lines > 10000) throw BadSampleError(fmt::format("{}: PLY header too long", path));
      if (!line.empty() && line.back() == '\r') line.pop_back();
      std::istringstream ss(line);
      std::string kw;
      ss >> kw;
      if (kw == "format") {
        ss >> format;
      } else if (kw == "element") {
        std::string name;
        int64_t n = -1;
        ss >> name >> n;
        if (n < 0) throw BadSampleError(fmt::format("{}: bad PLY element line \"{}\"", path, line));
        elements.emplace_back(name, n);
        in_vertex = name == "vertex";
        if (in_vertex) {
          if (elements.size() != 1) throw BadSampleError(fmt::format("{}: PLY vertex element must come first", path));
          nvert = n;
        }
      } else if (kw == "property" && in_vertex) {
        PlyProp p;
        std::string t;
        ss >> t;
        if (t == "list") throw BadSampleError(fmt::format("{}: list property in PLY vertex element unsupported", path));
        p.type = t;
        ss >> p.name;
        if (ply_type_size(p.type) == 0) {
          throw BadSampleError(fmt::format("{}: unknown PLY property type \"{}\"", path, p.type));
        }
        props.push_back(p);
      } else if (kw == "end_header") {
        break;
      }
    }
    if (nvert < 0) throw BadSampleError(fmt::format("{}: PLY header has no vertex element", path));
    if (nvert > DataLimits::max_points) {
      throw BadSampleError(fmt::format("{}: {} points exceed the limit of {}", path, nvert, DataLimits::max_points));
    }
    int ix = -1, iy = -1, iz = -1;
    for (size_t i = 0; i < props.size(); ++i) {
      if (props[i].name == "x") ix = static_cast<int>(i);
      if (props[i].name == "y") iy = static_cast<int>(i);
      if (props[i].name == "z") iz = static_cast<int>(i);
    }
    if (ix < 0 || iy < 0 || iz < 0) throw BadSampleError(fmt::format("{}: PLY vertex lacks x, y or z", path));
    // Never trust the header's count for allocation: the file must hold the data (binary: checked below before
    // reading; ascii: at least 2 bytes per value), so a 60-byte header cannot make us reserve gigabytes.
    const auto header_end = in.tellg();
    const auto file_size = fs::file_size(path, ec);
    if (ec || header_end < 0) throw BadSampleError(fmt::format("{}: cannot read PLY data", path));
    const uint64_t remaining = file_size - std::min<uint64_t>(file_size, static_cast<uint64_t>(header_end));
    if (format == "ascii") {
      if (static_cast<uint64_t>(nvert) * props.size() > remaining / 2 + 1) {
        throw BadSampleError(fmt::format("{}: PLY data ends before vertex {} of {}", path,
                                         remaining / 2 / std::max<size_t>(props.size(), 1), nvert));
      }
      xyz.reserve(static_cast<size_t>(nvert) * 3);
      for (int64_t v = 0; v < nvert; ++v) {
        std::vector<double> vals(props.size());
        for (auto& x : vals) {
          if (!(in >> x)) throw BadSampleError(fmt::format("{}: PLY data ends at vertex {} of {}", path, v, nvert));
        }
        xyz.insert(xyz.end(),
                   {static_cast<float>(vals[ix]), static_cast<float>(vals[iy]), static_cast<float>(vals[iz])});
      }
    } else if (format == "binary_little_endian") {
      size_t stride = 0;
      std::vector<size_t> offs;
      for (const auto& p : props) {
        offs.push_back(stride);
        stride += ply_type_size(p.type);
      }
      if (static_cast<uint64_t>(nvert) > remaining / stride) {
        throw BadSampleError(fmt::format("{}: PLY binary data shorter than {} vertices x {} bytes ({} bytes left)", path,
                                         nvert, stride, remaining));
      }
      xyz.reserve(static_cast<size_t>(nvert) * 3);
      std::string data(static_cast<size_t>(nvert) * stride, '\0');
      if (!in.read(data.data(), static_cast<std::streamsize>(data.size()))) {
        throw BadSampleError(
            fmt::format("{}: PLY binary data shorter than {} vertices x {} bytes", path, nvert, stride));
      }
      for (int64_t v = 0; v < nvert; ++v) {
        const char* base = data.data() + static_cast<size_t>(v) * stride;
        xyz.push_back(static_cast<float>(ply_read_binary(base + offs[ix], props[ix].type)));
        xyz.push_back(static_cast<float>(ply_read_binary(base + offs[iy], props[iy].type)));
        xyz.push_back(static_cast<float>(ply_read_binary(base + offs[iz], props[iz].type)));
      }
    } else {
      throw BadSampleError(
          fmt::format("{}: PLY format \"{}\" unsupported (ascii, binary_little_endian)", path, format));
    }
  } else {
    throw BadSampleError(fmt::format("{}: unsupported point cloud extension \"{}\" (.ply, .xyz)", path, ext));
  }
  if (xyz.empty()) throw BadSampleError(fmt::format("{}: point cloud has no points", path));
  for (float f : xyz) {
    if (!std::isfinite(f)) throw BadSampleError(fmt::format("{}: point cloud holds a non-finite value", path));
  }
  return at::tensor(xyz).view({-1, 3});
}

void write_ply_binary(const std::string& path, const at::Tensor& points) {
  TORCH_CHECK(points.dim() == 2 && points.size(1) == 3, "write_ply_binary: expected [N, 3]");
  auto p = points.to(at::kFloat).contiguous();
  std::string out = fmt::format(
      "ply\nformat binary_little_endian 1.0\nelement vertex {}\nproperty float x\nproperty float y\n"
      "property float z\nend_header\n",
      p.size(0));
  out.append(reinterpret_cast<const char*>(p.data_ptr<float>()), static_cast<size_t>(p.numel()) * sizeof(float));
  const auto parent = fs::path(path).parent_path();
  if (!parent.empty()) fs::create_directories(parent);
  std::ofstream f(path, std::ios::binary);
  f.write(out.data(), static_cast<std::streamsize>(out.size()));
  if (!f) throw Error(fmt::format("{}: cannot write", path));
}

}  // namespace janus
