// The built-in Shapes benchmark: scene sampling, rendering, captions, VQA/NLVR2/GenEval/video/point-cloud
// writers and the analytic GenEval-style checker.
#include "janus/data/shapes.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <numeric>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <utility>

#include <spdlog/spdlog.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "janus/core/error.h"
#include "janus/core/fs.h"
#include "janus/data/formats.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace janus {

const std::vector<std::string>& shapes_colours() {
  static const std::vector<std::string> v{"red", "yellow", "green", "cyan", "blue", "magenta"};
  return v;
}
const std::vector<std::string>& shapes_kinds() {
  static const std::vector<std::string> v{"circle", "square", "triangle", "star"};
  return v;
}
const std::vector<std::string>& shapes_sizes() {
  static const std::vector<std::string> v{"small", "large"};
  return v;
}
const std::vector<std::string>& shapes_solids() {
  static const std::vector<std::string> v{"sphere", "cube", "cone", "cylinder", "torus"};
  return v;
}

namespace {

constexpr double kPi = 3.14159265358979323846;
// OpenCV hue (0..180) of each colour: 60 degrees apart on the colour wheel.
const int kHue[] = {0, 30, 60, 90, 120, 150};
const cv::Scalar kBackground(235, 235, 235);
constexpr double kStarInner = 0.45;

cv::Scalar colour_bgr(int c) {
  cv::Mat hsv(1, 1, CV_8UC3, cv::Scalar(kHue[c], 255, 230)), bgr;
  cv::cvtColor(hsv, bgr, cv::COLOR_HSV2BGR);
  const auto p = bgr.at<cv::Vec3b>(0, 0);
  return cv::Scalar(p[0], p[1], p[2]);
}

double size_radius(int size, int64_t image_size) { return (size == 0 ? 0.11 : 0.17) * static_cast<double>(image_size); }

uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}
uint64_t split_key(const std::string& split) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : split) h = (h ^ c) * 1099511628211ULL;
  return h;
}
std::mt19937_64 rng_for(uint64_t seed, const std::string& split, int64_t index, uint64_t stream) {
  return std::mt19937_64(mix(mix(mix(seed) ^ split_key(split)) ^ static_cast<uint64_t>(index)) ^ mix(stream));
}

int uniform_int(std::mt19937_64& r, int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(r); }
double uniform(std::mt19937_64& r, double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(r); }
template <class T>
const T& pick(std::mt19937_64& r, const std::vector<T>& v) {
  return v[static_cast<size_t>(uniform_int(r, 0, static_cast<int>(v.size()) - 1))];
}

std::vector<cv::Point> shape_polygon(const ShapeObject& o) {
  std::vector<cv::Point> pts;
  auto add = [&](double rad, double a) {
    pts.emplace_back(static_cast<int>(std::lround(o.cx + rad * std::cos(a))),
                     static_cast<int>(std::lround(o.cy + rad * std::sin(a))));
  };
  if (o.kind == 1) {  // square, axis aligned, circumradius r
    const double h = o.radius / std::sqrt(2.0);
    pts = {{static_cast<int>(std::lround(o.cx - h)), static_cast<int>(std::lround(o.cy - h))},
           {static_cast<int>(std::lround(o.cx + h)), static_cast<int>(std::lround(o.cy - h))},
           {static_cast<int>(std::lround(o.cx + h)), static_cast<int>(std::lround(o.cy + h))},
           {static_cast<int>(std::lround(o.cx - h)), static_cast<int>(std::lround(o.cy + h))}};
  } else if (o.kind == 2) {
    for (int k = 0; k < 3; ++k) add(o.radius, o.angle + k * 2 * kPi / 3);
  } else if (o.kind == 3) {
    for (int k = 0; k < 10; ++k) add(k % 2 == 0 ? o.radius : o.radius * kStarInner, o.angle + k * kPi / 5);
  }
  return pts;
}

void draw_object(cv::Mat& img, const ShapeObject& o) {
  const cv::Scalar col = colour_bgr(o.colour);
  if (o.kind == 0) {
    cv::circle(img, cv::Point(static_cast<int>(std::lround(o.cx)), static_cast<int>(std::lround(o.cy))),
               static_cast<int>(std::lround(o.radius)), col, cv::FILLED, cv::LINE_8);
  } else {
    const auto pts = shape_polygon(o);
    cv::fillPoly(img, std::vector<std::vector<cv::Point>>{pts}, col, cv::LINE_8);
  }
}

// Relation of a relative to b by the dominant axis: left_of, right_of, above, below.
std::string relation(double ax, double ay, double bx, double by) {
  const double dx = ax - bx, dy = ay - by;
  if (std::abs(dx) >= std::abs(dy)) return dx < 0 ? "left_of" : "right_of";
  return dy < 0 ? "above" : "below";
}
std::string relation_phrase(const std::string& r) {
  if (r == "left_of") return "to the left of";
  if (r == "right_of") return "to the right of";
  return r;  // above, below
}
std::string inverse_relation(const std::string& r) {
  if (r == "left_of") return "right_of";
  if (r == "right_of") return "left_of";
  if (r == "above") return "below";
  return "above";
}
const std::vector<std::string> kNumberWords{"zero", "one", "two", "three", "four", "five", "six"};

std::string describe(const ShapeObject& o, bool with_size) {
  std::string s = with_size ? shapes_sizes()[static_cast<size_t>(o.size)] + " " : "";
  return s + shapes_colours()[static_cast<size_t>(o.colour)] + " " + shapes_kinds()[static_cast<size_t>(o.kind)];
}
std::string article(const std::string& w) {
  return w.empty() ? "a" : (std::string("aeiou").find(w[0]) != std::string::npos ? "an" : "a");
}
std::string a(const std::string& w) { return article(w) + " " + w; }

// Space-separated words (the parser-only build links src/data without src/eval's text helpers).
std::vector<std::string> words_of(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> w;
  for (std::string x; in >> x;) w.push_back(x);
  return w;
}

// The object's vertical and horizontal thirds: {top|middle|bottom, left|centre|right}.
std::pair<std::string, std::string> region_thirds(const ShapeObject& o, int64_t size) {
  const double t = size / 3.0;
  return {o.cy < t ? "top" : (o.cy > 2 * t ? "bottom" : "middle"),
          o.cx < t ? "left" : (o.cx > 2 * t ? "right" : "centre")};
}
std::string region(const ShapeObject& o, int64_t size) {
  const auto [v, h] = region_thirds(o, size);
  if (v == "middle" && h == "centre") return "centre";
  if (v == "middle") return h;
  return v + " " + h;
}

}  // namespace

ShapesScene make_shapes_scene(uint64_t seed, const std::string& split, int64_t index, int64_t image_size) {
  if (image_size < 32 || image_size > 4096)
    throw InputError(fmt::format("shapes: size {} not in [32, 4096]", image_size));
  auto r = rng_for(seed, split, index, 1);
  ShapesScene sc;
  sc.id = index + 1;
  sc.image_size = image_size;
  const int n = uniform_int(r, 1, 3);
  const double S = static_cast<double>(image_size);
  for (int attempt = 0; attempt < 200 && static_cast<int>(sc.objects.size()) < n; ++attempt) {
    ShapeObject o;
    o.colour = uniform_int(r, 0, 5);
    o.kind = uniform_int(r, 0, 3);
    o.size = uniform_int(r, 0, 1);
    o.radius = size_radius(o.size, image_size);
    const double m = o.radius + 0.04 * S;
    o.cx = uniform(r, m, S - m);
    o.cy = uniform(r, m, S - m);
    o.angle = o.kind == 2 ? -kPi / 2 + uniform(r, -0.3, 0.3) : (o.kind == 3 ? -kPi / 2 + uniform(r, -0.3, 0.3) : 0);
    bool ok = true;
    for (const auto& p : sc.objects) {
      const double d = std::hypot(p.cx - o.cx, p.cy - o.cy);
      if (d < p.radius + o.radius + 0.06 * S) ok = false;
      // Keep relations unambiguous: the dominant axis must win clearly.
      const double dx = std::abs(p.cx - o.cx), dy = std::abs(p.cy - o.cy);
      if (std::abs(dx - dy) < 0.12 * S) ok = false;
    }
    if (ok) sc.objects.push_back(o);
  }
  return sc;
}

at::Tensor render_shapes_scene(const ShapesScene& scene) {
  const int S = static_cast<int>(scene.image_size);
  cv::Mat img(S, S, CV_8UC3, kBackground);
  for (const auto& o : scene.objects) draw_object(img, o);
  cv::Mat rgb;
  cv::cvtColor(img, rgb, cv::COLOR_BGR2RGB);
  auto t = at::empty({S, S, 3}, at::kByte);
  std::memcpy(t.data_ptr<uint8_t>(), rgb.data, static_cast<size_t>(S) * S * 3);
  return t;
}

namespace {

// The captions of `o` (the scene's objects in list order); `bit()` is each "mention the size?" choice.
std::vector<std::string> captions_of(const std::vector<ShapeObject>& o, int64_t image_size,
                                     const std::function<bool()>& bit) {
  std::vector<std::string> caps;
  if (o.empty()) return {"an empty grey image", "a plain grey background", "nothing but a grey background"};
  if (o.size() == 1) {
    caps.push_back(a(describe(o[0], true)));
    caps.push_back(a(describe(o[0], false)) + " on a plain grey background");
    caps.push_back("there is one " + describe(o[0], bit()) + " in the image");
    caps.push_back(a(describe(o[0], false)) + " in the " + region(o[0], image_size) + " of the picture");
  } else {
    const std::string rel = relation(o[0].cx, o[0].cy, o[1].cx, o[1].cy);
    const std::string n = kNumberWords[o.size()];
    caps.push_back(a(describe(o[0], true)) + " " + relation_phrase(rel) + " " + a(describe(o[1], false)));
    caps.push_back(a(describe(o[1], bit())) + " " + relation_phrase(inverse_relation(rel)) + " " +
                   a(describe(o[0], false)));
    std::string list;
    for (size_t i = 0; i < o.size(); ++i) {
      list += (i == 0 ? "" : (i + 1 == o.size() ? " and " : ", ")) + a(describe(o[i], bit()));
    }
    caps.push_back(n + " shapes: " + list);
    caps.push_back("an image with " + list);
  }
  return caps;
}

}  // namespace

std::vector<std::string> shapes_captions(const ShapesScene& sc, uint64_t seed) {
  auto r = rng_for(seed, "captions", sc.id, 2);
  return captions_of(sc.objects, sc.image_size, [&] { return uniform_int(r, 0, 1) == 1; });
}

std::map<std::string, double> shapes_caption_probabilities(const ShapesScene& sc) {
  std::vector<ShapeObject> objs = sc.objects;
  // Every order of the objects (their list order is not visible in the image) ...
  std::vector<size_t> order(objs.size());
  std::iota(order.begin(), order.end(), 0);
  std::map<std::string, double> count;
  int64_t outcomes = 0;
  do {
    std::vector<ShapeObject> o;
    for (size_t i : order) o.push_back(objs[i]);
    // ... times every value of the size-mention bits (how many there are: one run that counts them).
    int bits = 0;
    captions_of(o, sc.image_size, [&] {
      ++bits;
      return false;
    });
    for (uint32_t v = 0; v < (1u << bits); ++v) {
      int k = 0;
      const auto caps = captions_of(o, sc.image_size, [&] { return ((v >> k++) & 1u) != 0; });
      for (const auto& c : std::set<std::string>(caps.begin(), caps.end())) count[c] += 1;
      ++outcomes;
    }
  } while (std::next_permutation(order.begin(), order.end()));
  for (auto& [t, c] : count) c /= static_cast<double>(outcomes);
  return count;
}

ShapesPositionCheck shapes_caption_position(const ShapesScene& scene, const std::string& caption) {
  using Kind = ShapesPositionCheck::Kind;
  ShapesPositionCheck out;
  // Region: "... in the [top|bottom] [left|right] of the picture" (or "... in the centre of the picture").
  const auto in = caption.find(" in the "), of = caption.rfind(" of the picture");
  if (in != std::string::npos && of != std::string::npos && of > in && scene.objects.size() == 1) {
    std::string v = "middle", h = "centre";
    for (const auto& w : words_of(caption.substr(in + 8, of - in - 8))) {
      if (w == "top" || w == "bottom")
        v = w;
      else if (w == "left" || w == "right")
        h = w;
      else if (w != "centre")
        return out;
    }
    const auto [tv, th] = region_thirds(scene.objects[0], scene.image_size);
    out.kind = Kind::kRegion;
    out.horizontal = h == th;
    out.vertical = v == tv;
    out.correct = out.horizontal && out.vertical;
    return out;
  }
  // Relation: "<a> to the left of|to the right of|above|below <b>", each side ending in "<colour> <shape>".
  for (const std::string rel : {"left_of", "right_of", "above", "below"}) {
    const auto phrase = " " + relation_phrase(rel) + " ";
    const auto at = caption.find(phrase);
    if (at == std::string::npos) continue;
    const auto find_object = [&](const std::string& side) -> const ShapeObject* {
      const auto w = words_of(side);
      if (w.size() < 2) return nullptr;
      const ShapeObject* hit = nullptr;
      for (const auto& o : scene.objects) {
        if (shapes_colours()[static_cast<size_t>(o.colour)] != w[w.size() - 2] ||
            shapes_kinds()[static_cast<size_t>(o.kind)] != w.back())
          continue;
        if (hit) return nullptr;  // two of them: the caption does not say which
        hit = &o;
      }
      return hit;
    };
    const auto* a_obj = find_object(caption.substr(0, at));
    const auto* b_obj = find_object(caption.substr(at + phrase.size()));
    if (!a_obj || !b_obj || a_obj == b_obj) return out;
    const auto truth = relation(a_obj->cx, a_obj->cy, b_obj->cx, b_obj->cy);
    const auto horizontal = [](const std::string& r) { return r == "left_of" || r == "right_of"; };
    out.kind = Kind::kRelation;
    out.axis = horizontal(truth) == horizontal(rel);
    out.correct = truth == rel;
    return out;
  }
  return out;
}

ShapesScene shapes_scene_from_json(const json& image) {
  const auto id = image.value("id", int64_t{0});
  if (!image.contains("objects") || !image.at("objects").is_array()) {
    throw_input_error("shapes: image {} has no scene objects (not written by janus_data shapes?)", id);
  }
  const auto index_of = [&](const std::vector<std::string>& names, const json& v, const char* what) {
    const auto it = v.is_string() ? std::find(names.begin(), names.end(), v.get<std::string>()) : names.end();
    if (it == names.end()) throw_input_error("shapes: image {}: unknown {} {} in a scene object", id, what, v.dump());
    return static_cast<int>(it - names.begin());
  };
  ShapesScene sc;
  sc.id = id;
  sc.image_size = image.value("width", int64_t{32});
  for (const auto& o : image.at("objects")) {
    ShapeObject x;
    x.colour = index_of(shapes_colours(), o.at("colour"), "colour");
    x.kind = index_of(shapes_kinds(), o.at("shape"), "shape");
    x.size = index_of(shapes_sizes(), o.at("size"), "size");
    x.cx = o.at("cx").get<double>();
    x.cy = o.at("cy").get<double>();
    x.radius = o.value("radius", 0.0);
    sc.objects.push_back(x);
  }
  return sc;
}

// ---------------- GenEval prompt specs and checker ----------------

json PromptSpec::to_json() const {
  json objs = json::array();
  for (const auto& ob : objects) objs.push_back({{"colour", ob.colour}, {"shape", ob.shape}, {"count", ob.count}});
  json j{{"objects", objs}};
  if (!relation.empty()) j["relation"] = relation;
  return j;
}

PromptSpec PromptSpec::from_json(const json& j) {
  PromptSpec s;
  auto bad = [](const std::string& what) { throw InputError("geneval prompt spec: " + what); };
  if (!j.is_object() || !j.contains("objects") || !j["objects"].is_array()) bad("$.objects: expected an array");
  for (size_t i = 0; i < j["objects"].size(); ++i) {
    const auto& o = j["objects"][i];
    PromptObject p;
    if (!o.is_object() || !o.contains("colour") || !o["colour"].is_string())
      bad(fmt::format("$.objects[{}].colour: expected a string", i));
    if (!o.contains("shape") || !o["shape"].is_string()) bad(fmt::format("$.objects[{}].shape: expected a string", i));
    p.colour = o["colour"].get<std::string>();
    p.shape = o["shape"].get<std::string>();
    if (std::find(shapes_colours().begin(), shapes_colours().end(), p.colour) == shapes_colours().end()) {
      bad(fmt::format("$.objects[{}].colour: unknown colour \"{}\"", i, p.colour));
    }
    if (std::find(shapes_kinds().begin(), shapes_kinds().end(), p.shape) == shapes_kinds().end()) {
      bad(fmt::format("$.objects[{}].shape: unknown shape \"{}\"", i, p.shape));
    }
    if (o.contains("count")) {
      if (!o["count"].is_number_integer() || o["count"].get<int64_t>() < 1)
        bad(fmt::format("$.objects[{}].count: expected an integer >= 1", i));
      p.count = o["count"].get<int64_t>();
    }
    s.objects.push_back(p);
  }
  if (j.contains("relation")) {
    if (!j["relation"].is_string()) bad("$.relation: expected a string");
    s.relation = j["relation"].get<std::string>();
    static const std::vector<std::string> rels{"", "left_of", "right_of", "above", "below"};
    if (std::find(rels.begin(), rels.end(), s.relation) == rels.end())
      bad("$.relation: expected left_of, right_of, above or below");
    if (!s.relation.empty() && s.objects.size() < 2) bad("$.relation: needs two objects");
  }
  return s;
}

std::string PromptSpec::prompt() const {
  auto obj = [](const PromptObject& o) {
    const std::string w = o.colour + " " + o.shape;
    return o.count == 1 ? a(w) : kNumberWords[std::min<size_t>(o.count, 6)] + " " + w + "s";
  };
  std::string p = "a photo of ";
  if (!relation.empty()) {
    // The relation is between the first two objects; the rest are named after it, so the prompt names every object
    // the check expects (a scene's third shape used to be left out of the prompt but counted by the check).
    p += obj(objects[0]) + " " + relation_phrase(relation) + " " + obj(objects[1]);
    for (size_t i = 2; i < objects.size(); ++i) p += " and " + obj(objects[i]);
    return p;
  }
  for (size_t i = 0; i < objects.size(); ++i) {
    p += (i == 0 ? "" : (i + 1 == objects.size() ? " and " : ", ")) + obj(objects[i]);
  }
  return p;
}

PromptSpec PromptSpec::from_prompt(const std::string& text) {
  std::vector<std::string> w;
  for (auto word : words_of(text)) {  // "circle," -> "circle" ","
    const bool comma = !word.empty() && word.back() == ',';
    if (comma) word.pop_back();
    if (!word.empty()) w.push_back(word);
    if (comma) w.emplace_back(",");
  }
  size_t i = 0;
  auto bad = [&](const std::string& what) -> void {
    throw InputError(fmt::format("shapes prompt \"{}\": {} at word {} ('{}')", text, what, i + 1,
                                 i < w.size() ? w[i] : std::string("<end>")));
  };
  auto take = [&](const std::string& word) {
    if (i < w.size() && w[i] == word) {
      ++i;
      return true;
    }
    return false;
  };
  const auto& C = shapes_colours();
  const auto& K = shapes_kinds();
  auto object = [&]() {
    PromptObject o;
    if (i >= w.size()) bad("expected an object");
    if (w[i] == "a" || w[i] == "an") {
      o.count = 1;
    } else {
      const auto n = std::find(kNumberWords.begin() + 2, kNumberWords.end(), w[i]);
      if (n == kNumberWords.end()) bad("expected a, an or a number word (two .. six)");
      o.count = n - kNumberWords.begin();
    }
    ++i;
    if (i >= w.size() || std::find(C.begin(), C.end(), w[i]) == C.end()) bad("expected a colour");
    o.colour = w[i++];
    std::string k = i < w.size() ? w[i] : std::string();
    if (o.count > 1) {
      if (k.size() < 2 || k.back() != 's') bad("expected a plural shape");
      k.pop_back();
    }
    if (std::find(K.begin(), K.end(), k) == K.end()) bad("expected a shape");
    o.shape = k;
    ++i;
    return o;
  };
  PromptSpec s;
  for (const char* word : {"a", "photo", "of"}) {
    if (!take(word)) bad(fmt::format("expected '{}' (prompts start 'a photo of')", word));
  }
  s.objects.push_back(object());
  if (take("to")) {
    if (!take("the")) bad("expected 'the'");
    if (take("left")) {
      s.relation = "left_of";
    } else if (take("right")) {
      s.relation = "right_of";
    } else {
      bad("expected left or right");
    }
    if (!take("of")) bad("expected 'of'");
  } else if (take("above")) {
    s.relation = "above";
  } else if (take("below")) {
    s.relation = "below";
  }
  if (!s.relation.empty()) {
    s.objects.push_back(object());
    while (take("and")) s.objects.push_back(object());
  } else {
    while (i < w.size()) {
      if (take(",")) {
        s.objects.push_back(object());
        continue;
      }
      if (!take("and")) bad("expected ',' or 'and'");
      s.objects.push_back(object());
      break;
    }
  }
  if (i != w.size()) bad("expected the end of the prompt");
  return s;
}

std::vector<ImpliedQuestion> shapes_prompt_questions(const PromptSpec& spec) {
  std::vector<ImpliedQuestion> q;
  int64_t total = 0;
  std::map<std::string, int64_t> by_colour, by_kind;
  for (const auto& o : spec.objects) {
    total += o.count;
    by_colour[o.colour] += o.count;
    by_kind[o.shape] += o.count;
  }
  for (const auto& o : spec.objects) q.push_back({"is there " + a(o.colour + " " + o.shape) + "?", "yes"});
  q.push_back({"how many shapes are there?", std::to_string(total)});
  for (const auto& [c, n] : by_colour) q.push_back({"how many " + c + " shapes are there?", std::to_string(n)});
  for (const auto& o : spec.objects) {
    if (by_colour.at(o.colour) == 1) q.push_back({"what shape is the " + o.colour + " object?", o.shape});
    if (by_kind.at(o.shape) == 1) q.push_back({"what color is the " + o.shape + "?", o.colour});
  }
  if (!spec.relation.empty() && spec.objects.size() >= 2) {
    const auto& x = spec.objects[0];
    const auto& y = spec.objects[1];
    for (const std::string r : {"left_of", "right_of", "above", "below"}) {
      q.push_back(
          {"is the " + x.colour + " " + x.shape + " " + relation_phrase(r) + " the " + y.colour + " " + y.shape + "?",
           r == spec.relation ? "yes" : "no"});
    }
  }
  return q;
}

PromptSpec shapes_prompt_spec(const ShapesScene& sc) {
  PromptSpec s;
  for (const auto& o : sc.objects) {
    const std::string c = shapes_colours()[static_cast<size_t>(o.colour)],
                      k = shapes_kinds()[static_cast<size_t>(o.kind)];
    auto it = std::find_if(s.objects.begin(), s.objects.end(),
                           [&](const PromptObject& p) { return p.colour == c && p.shape == k; });
    if (it == s.objects.end()) {
      s.objects.push_back({c, k, 1});
    } else {
      ++it->count;
    }
  }
  if (s.objects.size() >= 2 && s.objects[0].count == 1 && s.objects[1].count == 1) {
    const auto& o = sc.objects;  // the first two groups are objects 0 and 1 when both counts are 1
    s.relation = relation(o[0].cx, o[0].cy, o[1].cx, o[1].cy);
  }
  return s;
}

std::vector<DetectedShape> shapes_detect(const at::Tensor& rgb_u8) {
  TORCH_CHECK(rgb_u8.dim() == 3 && rgb_u8.size(2) == 3 && rgb_u8.scalar_type() == at::kByte,
              "shapes_detect: expected uint8 [H, W, 3], got ", rgb_u8.sizes());
  auto c = rgb_u8.contiguous();
  const int H = static_cast<int>(c.size(0)), W = static_cast<int>(c.size(1));
  cv::Mat rgb(H, W, CV_8UC3, c.data_ptr<uint8_t>()), hsv;
  cv::cvtColor(rgb, hsv, cv::COLOR_RGB2HSV);
  std::vector<cv::Mat> ch;
  cv::split(hsv, ch);
  cv::Mat vivid = (ch[1] >= 90) & (ch[2] >= 70);
  const double min_area = std::max(6.0, 0.002 * H * W);
  std::vector<DetectedShape> out;
  for (size_t ci = 0; ci < shapes_colours().size(); ++ci) {
    cv::Mat mask;
    // Circular hue distance <= 14 (of 180).
    cv::Mat d;
    cv::absdiff(ch[0], cv::Scalar(kHue[ci]), d);
    cv::Mat d2 = 180 - d;
    cv::Mat dist = cv::min(d, d2);
    mask = (dist <= 14) & vivid;
    std::vector<std::vector<cv::Point>> contours;
    cv::findContours(mask, contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_NONE);
    for (const auto& ct : contours) {
      const double area_px = static_cast<double>(cv::countNonZero(mask(cv::boundingRect(ct))));
      const double A = cv::contourArea(ct);
      if (area_px < min_area || A <= 0) continue;
      std::vector<cv::Point> hull;
      cv::convexHull(ct, hull);
      const double solidity = A / std::max(1e-9, cv::contourArea(hull));
      cv::Point2f centre;
      float rad = 0;
      cv::minEnclosingCircle(ct, centre, rad);
      const double circ = A / (kPi * rad * rad);
      const cv::RotatedRect rr = cv::minAreaRect(ct);
      const double rect = A / std::max(1e-9, static_cast<double>(rr.size.width) * rr.size.height);
      std::string kind;
      if (solidity < 0.8) {
        kind = "star";
      } else if (circ > 0.75) {
        kind = "circle";
      } else if (rect > 0.75) {
        kind = "square";
      } else {
        kind = "triangle";
      }
      const cv::Moments m = cv::moments(ct);
      DetectedShape s;
      s.colour = shapes_colours()[ci];
      s.shape = kind;
      s.area = area_px;
      s.cx = m.m00 > 0 ? m.m10 / m.m00 : centre.x;
      s.cy = m.m00 > 0 ? m.m01 / m.m00 : centre.y;
      out.push_back(s);
    }
  }
  return out;
}

GenevalScore shapes_geneval_check(const at::Tensor& rgb_u8, const PromptSpec& spec) {
  GenevalScore g;
  g.detected = shapes_detect(rgb_u8);
  const auto& det = g.detected;
  if (spec.objects.empty()) throw InputError("shapes_geneval_check: prompt spec has no objects");
  double col = 0, shp = 0, cnt = 0;
  int64_t expected_total = 0;
  for (const auto& o : spec.objects) {
    expected_total += o.count;
    int64_t n = 0;
    bool has_c = false, has_s = false;
    for (const auto& d : det) {
      has_c |= d.colour == o.colour;
      has_s |= d.shape == o.shape;
      n += d.colour == o.colour && d.shape == o.shape;
    }
    col += has_c;
    shp += has_s;
    cnt += n == o.count;
  }
  const double k = static_cast<double>(spec.objects.size());
  g.colour = col / k;
  g.shape = shp / k;
  g.count = cnt / k;
  g.position = 1;
  if (!spec.relation.empty()) {
    auto find = [&](const PromptObject& o) -> const DetectedShape* {
      for (const auto& d : det) {
        if (d.colour == o.colour && d.shape == o.shape) return &d;
      }
      return nullptr;
    };
    const auto* p = find(spec.objects[0]);
    const auto* q = find(spec.objects[1]);
    g.position = p && q && relation(p->cx, p->cy, q->cx, q->cy) == spec.relation ? 1.0 : 0.0;
  }
  g.overall = (g.colour + g.shape + g.count + g.position) / 4;
  g.correct = g.overall == 1.0 && static_cast<int64_t>(det.size()) == expected_total;
  return g;
}

// ---------------- point clouds of solids ----------------

at::Tensor shapes_solid_points(int kind, int64_t n, uint64_t seed) {
  if (kind < 0 || kind > 4) throw InputError(fmt::format("shapes: solid kind {} not in [0, 4]", kind));
  std::mt19937_64 r(mix(seed ^ 0x5011d));
  std::normal_distribution<double> g(0, 1);
  std::vector<float> v;
  v.reserve(static_cast<size_t>(n) * 3);
  auto push = [&](double x, double y, double z) {
    v.insert(v.end(), {static_cast<float>(x), static_cast<float>(y), static_cast<float>(z)});
  };
  for (int64_t i = 0; i < n; ++i) {
    if (kind == 0) {  // sphere, radius 0.5
      double x = g(r), y = g(r), z = g(r), l = std::sqrt(x * x + y * y + z * z) + 1e-12;
      push(0.5 * x / l, 0.5 * y / l, 0.5 * z / l);
    } else if (kind == 1) {  // cube, side 1
      const int f = uniform_int(r, 0, 5);
      const double u = uniform(r, -0.5, 0.5), w = uniform(r, -0.5, 0.5), s = f % 2 ? 0.5 : -0.5;
      if (f / 2 == 0)
        push(s, u, w);
      else if (f / 2 == 1)
        push(u, s, w);
      else
        push(u, w, s);
    } else if (kind == 2) {  // cone: base radius 0.5 at z = -0.5, apex at z = 0.5
      const double R = 0.5, h = 1.0, slant = std::sqrt(R * R + h * h);
      const double lateral = kPi * R * slant, base = kPi * R * R;
      const double t = uniform(r, 0, 2 * kPi);
      if (uniform(r, 0, lateral + base) < lateral) {
        const double s = std::sqrt(uniform(r, 0, 1));  // distance from the apex, area-uniform
        push(R * s * std::cos(t), R * s * std::sin(t), 0.5 - h * s);
      } else {
        const double q = R * std::sqrt(uniform(r, 0, 1));
        push(q * std::cos(t), q * std::sin(t), -0.5);
      }
    } else if (kind == 3) {  // cylinder: radius 0.4, height 1
      const double R = 0.4, lateral = 2 * kPi * R, caps = 2 * kPi * R * R;
      const double t = uniform(r, 0, 2 * kPi);
      if (uniform(r, 0, lateral + caps) < lateral) {
        push(R * std::cos(t), R * std::sin(t), uniform(r, -0.5, 0.5));
      } else {
        const double q = R * std::sqrt(uniform(r, 0, 1));
        push(q * std::cos(t), q * std::sin(t), uniform_int(r, 0, 1) ? 0.5 : -0.5);
      }
    } else {  // torus R = 0.35, r = 0.15 (rejection sampling for an area-uniform surface)
      const double R = 0.35, rr = 0.15;
      double t, p;
      do {
        t = uniform(r, 0, 2 * kPi);
        p = uniform(r, 0, 2 * kPi);
      } while (uniform(r, 0, R + rr) > R + rr * std::cos(p));
      push((R + rr * std::cos(p)) * std::cos(t), (R + rr * std::cos(p)) * std::sin(t), rr * std::sin(p));
    }
  }
  return at::tensor(v).view({n, 3});
}

// ---------------- writer ----------------

namespace {

void write_json(const fs::path& p, const json& j) { write_file_atomic(p.string(), j.dump()); }

std::string img_name(int64_t id) { return fmt::format("{:012d}.png", id); }

void write_png(const std::string& path, const at::Tensor& rgb) {
  cv::Mat m(static_cast<int>(rgb.size(0)), static_cast<int>(rgb.size(1)), CV_8UC3, rgb.data_ptr<uint8_t>()), bgr;
  cv::cvtColor(m, bgr, cv::COLOR_RGB2BGR);
  if (!cv::imwrite(path, bgr, {cv::IMWRITE_PNG_COMPRESSION, 1})) throw Error(fmt::format("{}: cannot write", path));
}

struct VqaQ {
  std::string q, ans, type, qtype;
};

std::vector<VqaQ> vqa_questions(const ShapesScene& sc, uint64_t seed) {
  auto r = rng_for(seed, "vqa", sc.id, 3);
  const auto& o = sc.objects;
  const auto& C = shapes_colours();
  const auto& K = shapes_kinds();
  std::vector<VqaQ> qs;
  qs.push_back({"how many shapes are there?", std::to_string(o.size()), "number", "how many"});
  const int qc = uniform_int(r, 0, 5);
  int64_t nc = 0;
  for (const auto& x : o) nc += x.colour == qc;
  qs.push_back({"how many " + C[qc] + " shapes are there?", std::to_string(nc), "number", "how many"});
  for (const auto& x : o) {
    int same_kind = 0, same_colour = 0;
    for (const auto& y : o) {
      same_kind += y.kind == x.kind;
      same_colour += y.colour == x.colour;
    }
    if (same_kind == 1)
      qs.push_back({"what color is the " + K[x.kind] + "?", C[x.colour], "other", "what color is the"});
    if (same_colour == 1)
      qs.push_back({"what shape is the " + C[x.colour] + " object?", K[x.kind], "other", "what shape is the"});
  }
  // Existence, half the time about a present object.
  ShapeObject probe;
  if (uniform_int(r, 0, 1) == 1 && !o.empty()) {
    probe = pick(r, o);
  } else {
    probe.colour = uniform_int(r, 0, 5);
    probe.kind = uniform_int(r, 0, 3);
  }
  bool present = false;
  for (const auto& x : o) present |= x.colour == probe.colour && x.kind == probe.kind;
  qs.push_back(
      {"is there " + a(C[probe.colour] + " " + K[probe.kind]) + "?", present ? "yes" : "no", "yes/no", "is there a"});
  if (o.size() >= 2) {
    const std::string rel = relation(o[0].cx, o[0].cy, o[1].cx, o[1].cy);
    const std::string asked = pick(r, std::vector<std::string>{"left_of", "right_of", "above", "below"});
    qs.push_back(
        {"is the " + describe(o[0], false) + " " + relation_phrase(asked) + " the " + describe(o[1], false) + "?",
         asked == rel ? "yes" : "no", "yes/no", "is the"});
  }
  return qs;
}

std::vector<int> scene_colours(const ShapesScene& s) {
  std::vector<int> v;
  for (const auto& o : s.objects) v.push_back(o.colour);
  return v;
}

// The NLVR2 statement templates: what nlvr2_statement writes and shapes_nlvr2_statement_kind reads back.
constexpr const char* kNlvr2TotalPrefix = "there are ";
constexpr const char* kNlvr2TotalSuffix = " shapes in total";
constexpr const char* kNlvr2BothPrefix = "both images contain a ";
constexpr const char* kNlvr2LeftMore = "the left image contains more shapes than the right image";
constexpr const char* kNlvr2ExactlyOnePrefix = "exactly one image contains ";
constexpr const char* kNlvr2RightHasPrefix = "the right image has ";

// One NLVR2 statement about the pair (left, right) with its truth.
std::pair<std::string, bool> nlvr2_statement(const ShapesScene& L, const ShapesScene& R, std::mt19937_64& r) {
  const auto& C = shapes_colours();
  const auto& K = shapes_kinds();
  auto has_colour = [](const ShapesScene& s, int c) {
    return std::any_of(s.objects.begin(), s.objects.end(), [&](const ShapeObject& o) { return o.colour == c; });
  };
  auto has_kind = [](const ShapesScene& s, int k) {
    return std::any_of(s.objects.begin(), s.objects.end(), [&](const ShapeObject& o) { return o.kind == k; });
  };
  const int type = uniform_int(r, 0, 4);
  if (type == 0) {
    const int64_t total = static_cast<int64_t>(L.objects.size() + R.objects.size());
    const int64_t claim = std::max<int64_t>(2, total + uniform_int(r, -1, 1));
    return {kNlvr2TotalPrefix + kNumberWords[static_cast<size_t>(std::min<int64_t>(claim, 6))] + kNlvr2TotalSuffix,
            claim == total};
  }
  if (type == 1) {
    const int c = uniform_int(r, 0, 1) ? pick(r, scene_colours(L)) : uniform_int(r, 0, 5);
    return {kNlvr2BothPrefix + C[c] + " shape", has_colour(L, c) && has_colour(R, c)};
  }
  if (type == 2) {
    return {kNlvr2LeftMore, L.objects.size() > R.objects.size()};
  }
  if (type == 3) {
    const int k = uniform_int(r, 0, 3);
    return {kNlvr2ExactlyOnePrefix + a(K[k]), has_kind(L, k) != has_kind(R, k)};
  }
  const int c = uniform_int(r, 0, 5), k = uniform_int(r, 0, 3);
  bool t = false;
  for (const auto& o : R.objects) t |= o.colour == c && o.kind == k;
  return {kNlvr2RightHasPrefix + a(C[c] + " " + K[k]), t};
}

}  // namespace

std::string shapes_nlvr2_statement_kind(const std::string& sentence) {
  const auto starts = [&](const std::string& p) { return sentence.rfind(p, 0) == 0; };
  const auto ends = [&](const std::string& p) {
    return sentence.size() >= p.size() && sentence.compare(sentence.size() - p.size(), p.size(), p) == 0;
  };
  if (sentence == kNlvr2LeftMore) return "left_more";
  if (starts(kNlvr2TotalPrefix) && ends(kNlvr2TotalSuffix)) return "total_count";
  if (starts(kNlvr2BothPrefix)) return "both_colour";
  if (starts(kNlvr2ExactlyOnePrefix)) return "exactly_one_kind";
  if (starts(kNlvr2RightHasPrefix)) return "right_has";
  return "";
}

ShapesStats generate_shapes(const ShapesOptions& opt) {
  if (opt.out.empty()) throw InputError("shapes: --out is required");
  if (opt.train < 0 || opt.val < 0 || opt.train + opt.val == 0) throw InputError("shapes: need train + val > 0 images");
  if (opt.train + opt.val > 10000000) throw InputError("shapes: at most 10M images");
  if (opt.threads < 1) throw InputError("shapes: threads >= 1");
  ShapesStats st;
  const auto t0 = std::chrono::steady_clock::now();
  const fs::path out(opt.out);
  fs::create_directories(out);
  json info{{"format", "janus-shapes"},
            {"version", 1},
            {"seed", opt.seed},
            {"size", opt.size},
            {"colours", shapes_colours()},
            {"shapes", shapes_kinds()},
            {"sizes", shapes_sizes()},
            {"solids", shapes_solids()},
            {"splits", json::object()}};
  for (const std::string split : {"train", "val"}) {
    const int64_t n = split == "train" ? opt.train : opt.val;
    info["splits"][split] = n;
    if (n == 0) continue;
    fs::create_directories(out / split);
    std::vector<ShapesScene> scenes(static_cast<size_t>(n));
    // Images: rendered and written in parallel (each scene depends only on its index).
    const auto ti = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    std::exception_ptr err;
    std::mutex err_mu;
    for (int64_t w = 0; w < opt.threads; ++w) {
      pool.emplace_back([&, w] {
        try {
          for (int64_t i = w; i < n; i += opt.threads) {
            scenes[static_cast<size_t>(i)] = make_shapes_scene(opt.seed, split, i, opt.size);
            write_png((out / split / img_name(i + 1)).string(), render_shapes_scene(scenes[static_cast<size_t>(i)]));
          }
        } catch (...) {
          std::lock_guard<std::mutex> l(err_mu);
          err = std::current_exception();
        }
      });
    }
    for (auto& t : pool) t.join();
    if (err) std::rethrow_exception(err);
    st.image_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - ti).count();
    st.images += n;

    // COCO captions (+ the scene objects, ignored by COCO readers, for exact ground truth).
    json images = json::array(), anns = json::array(), qs = json::array(), vanns = json::array(),
         prompts = json::array();
    int64_t cap_id = 1;
    for (const auto& sc : scenes) {
      json objs = json::array();
      for (const auto& o : sc.objects) {
        objs.push_back({{"colour", shapes_colours()[o.colour]},
                        {"shape", shapes_kinds()[o.kind]},
                        {"size", shapes_sizes()[o.size]},
                        {"cx", o.cx},
                        {"cy", o.cy},
                        {"radius", o.radius}});
      }
      images.push_back({{"id", sc.id},
                        {"file_name", split + "/" + img_name(sc.id)},
                        {"width", opt.size},
                        {"height", opt.size},
                        {"objects", objs}});
      for (const auto& c : shapes_captions(sc, opt.seed))
        anns.push_back({{"id", cap_id++}, {"image_id", sc.id}, {"caption", c}});
      int64_t k = 0;
      for (const auto& q : vqa_questions(sc, opt.seed)) {
        const int64_t qid = sc.id * 100 + k++;
        qs.push_back({{"image_id", sc.id}, {"question", q.q}, {"question_id", qid}});
        json answers = json::array();
        for (int a10 = 1; a10 <= 10; ++a10)
          answers.push_back({{"answer", q.ans}, {"answer_confidence", "yes"}, {"answer_id", a10}});
        vanns.push_back({{"question_id", qid},
                         {"image_id", sc.id},
                         {"question_type", q.qtype},
                         {"answer_type", q.type},
                         {"multiple_choice_answer", q.ans},
                         {"answers", answers}});
      }
      const PromptSpec ps = shapes_prompt_spec(sc);
      if (!ps.objects.empty()) {
        prompts.push_back({{"id", sc.id},
                           {"prompt", ps.prompt()},
                           {"spec", ps.to_json()},
                           {"reference", split + "/" + img_name(sc.id)}});
      }
    }
    write_json(out / ("captions_" + split + ".json"),
               {{"info", {{"description", "janus Shapes benchmark"}, {"split", split}}},
                {"images", images},
                {"annotations", anns},
                {"licenses", json::array()}});
    fs::create_directories(out / "vqa");
    write_json(out / "vqa" / ("questions_" + split + ".json"),
               {{"task_type", "Open-Ended"}, {"data_type", "shapes"}, {"data_subtype", split}, {"questions", qs}});
    write_json(out / "vqa" / ("annotations_" + split + ".json"),
               {{"data_type", "shapes"}, {"data_subtype", split}, {"annotations", vanns}});
    fs::create_directories(out / "geneval");
    write_json(out / "geneval" / ("prompts_" + split + ".json"), prompts);

    // NLVR2: one statement per image, paired with another image of the split.
    std::string jsonl;
    for (int64_t i = 0; i < n; ++i) {
      auto r = rng_for(opt.seed, split + "-nlvr2", i, 4);
      const int64_t j =
          n > 1 ? (i + 1 + uniform_int(r, 0, static_cast<int>(std::min<int64_t>(n - 2, 1 << 30)))) % n : i;
      const auto [sent, truth] = nlvr2_statement(scenes[static_cast<size_t>(i)], scenes[static_cast<size_t>(j)], r);
      jsonl += json{{"identifier", fmt::format("{}-{}-0-0", split, i)},
                    {"sentence", sent},
                    {"label", truth ? "True" : "False"},
                    {"left_image", split + "/" + img_name(i + 1)},
                    {"right_image", split + "/" + img_name(j + 1)}}
                   .dump() +
               "\n";
    }
    fs::create_directories(out / "nlvr2");
    write_file_atomic((out / "nlvr2" / (split + ".jsonl")).string(), jsonl);

    // Videos: frame folders of 1-2 shapes moving in straight lines (bouncing off the borders).
    const int64_t nv = split == "train" ? opt.videos : std::max<int64_t>(0, opt.videos / 4);
    json vids = json::array();
    for (int64_t v = 0; v < nv; ++v) {
      auto r = rng_for(opt.seed, split + "-video", v, 5);
      ShapesScene sc = make_shapes_scene(opt.seed, split + "-video", v, opt.size);
      if (sc.objects.size() > 2) sc.objects.resize(2);
      std::vector<std::pair<double, double>> vel;
      std::string caption;
      for (size_t k = 0; k < sc.objects.size(); ++k) {
        const int dir = uniform_int(r, 0, 3);
        const double speed = uniform(r, 0.02, 0.05) * opt.size;
        vel.emplace_back(dir == 0 ? -speed : dir == 1 ? speed : 0, dir == 2 ? -speed : dir == 3 ? speed : 0);
        caption += (k ? " and " : "") + a(describe(sc.objects[k], false)) + " moving " +
                   std::vector<std::string>{"left", "right", "up", "down"}[static_cast<size_t>(dir)];
      }
      const std::string dir = fmt::format("videos/{}/{:06d}", split, v + 1);
      fs::create_directories(out / dir);
      for (int64_t f = 0; f < opt.video_frames; ++f) {
        write_png((out / dir / fmt::format("frame_{:04d}.png", f)).string(), render_shapes_scene(sc));
        for (size_t k = 0; k < sc.objects.size(); ++k) {
          auto& o = sc.objects[k];
          o.cx += vel[k].first;
          o.cy += vel[k].second;
          if (o.cx < o.radius || o.cx > opt.size - o.radius) {
            vel[k].first = -vel[k].first;
            o.cx += 2 * vel[k].first;
          }
          if (o.cy < o.radius || o.cy > opt.size - o.radius) {
            vel[k].second = -vel[k].second;
            o.cy += 2 * vel[k].second;
          }
        }
      }
      vids.push_back({{"id", v + 1}, {"path", dir}, {"frames", opt.video_frames}, {"caption", caption}});
    }
    if (nv > 0) write_json(out / "videos" / ("captions_" + split + ".json"), {{"videos", vids}});

    // Point clouds of primitive solids.
    const int64_t nc = split == "train" ? opt.clouds : std::max<int64_t>(0, opt.clouds / 4);
    json clouds = json::array();
    for (int64_t c = 0; c < nc; ++c) {
      auto r = rng_for(opt.seed, split + "-points", c, 6);
      const int kind = uniform_int(r, 0, 4);
      const std::string solid = shapes_solids()[static_cast<size_t>(kind)];
      const std::string file = fmt::format("points/{}/{:06d}.ply", split, c + 1);
      write_ply_binary((out / file).string(), shapes_solid_points(kind, opt.cloud_points, mix(r())));
      clouds.push_back(
          {{"id", c + 1},
           {"file", file},
           {"label", kind},
           {"shape", solid},
           {"captions",
            {"a point cloud of " + a(solid), "a 3d " + solid, "the surface of " + a(solid) + " sampled as points"}}});
    }
    if (nc > 0) write_json(out / "points" / ("captions_" + split + ".json"), {{"clouds", clouds}});
  }
  write_json(out / "shapes_info.json", info);
  st.total_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return st;
}

}  // namespace janus
