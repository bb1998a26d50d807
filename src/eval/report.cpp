#include "janus/eval/report.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>

#include <fmt/format.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "janus/core/error.h"

namespace janus::eval {

std::map<std::string, Series> read_metrics_jsonl(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw_input_error("cannot read metrics file '{}'", path);
  // key -> step -> value; a resumed run re-logs steps, the later record wins.
  std::map<std::string, std::map<double, double>> values;
  std::string line;
  int64_t line_no = 0;
  double last_step = -std::numeric_limits<double>::infinity();
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw_input_error("{}:{}: not JSON: {}", path, line_no, e.what());
    }
    if (!j.is_object() || !j.contains("step") || !j["step"].is_number()) {
      throw_input_error("{}:{}: expected a JSON object with a numeric \"step\"", path, line_no);
    }
    const double step = j["step"].get<double>();
    if (step <= last_step) {
      // Resume: drop everything logged at or after this step before re-adding.
      for (auto& [k, m] : values) m.erase(m.lower_bound(step), m.end());
    }
    last_step = step;
    for (const auto& [k, v] : j.items()) {
      if (k == "step" || !v.is_number()) continue;
      const double x = v.get<double>();
      if (std::isfinite(x)) values[k][step] = x;
    }
  }
  std::map<std::string, Series> out;
  for (const auto& [k, m] : values) {
    Series s;
    s.label = k;
    s.points.assign(m.begin(), m.end());
    out.emplace(k, std::move(s));
  }
  return out;
}

namespace {

// Tab10-like palette (BGR).
const cv::Scalar kColours[] = {{180, 119, 31}, {14, 127, 255}, {44, 160, 44},  {40, 39, 214},   {189, 103, 148},
                               {75, 86, 140},  {194, 119, 227}, {127, 127, 127}, {34, 189, 188}, {207, 190, 23}};

std::string tick_label(double v) {
  if (v == 0) return "0";
  const double a = std::fabs(v);
  if (a >= 1e4 || a < 1e-3) return fmt::format("{:.1e}", v);
  return fmt::format("{:.4g}", v);
}

// "Nice" tick step for a range (1, 2, 5 x 10^k) giving about n ticks.
double nice_step(double range, int n) {
  if (!(range > 0)) return 1;
  const double raw = range / n;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
}

}  // namespace

void plot_series_png(const std::vector<Series>& series_in, const std::string& path, const PlotOptions& o) {
  std::vector<Series> series;
  for (const auto& s : series_in) {
    Series t{s.label, {}};
    for (const auto& [x, y] : s.points) {
      if (!std::isfinite(x) || !std::isfinite(y) || (o.log_y && y <= 0)) continue;
      t.points.emplace_back(x, o.log_y ? std::log10(y) : y);
    }
    if (!t.points.empty()) series.push_back(std::move(t));
  }
  if (series.empty()) throw_input_error("plot '{}': no finite points to draw", path);
  if (o.width < 200 || o.height < 150) throw_input_error("plot '{}': size {}x{} is too small", path, o.width, o.height);
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  for (const auto& s : series) {
    for (const auto& [x, y] : s.points) {
      x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
    }
  }
  if (x1 == x0) x0 -= 1, x1 += 1;
  if (y1 == y0) y0 -= 0.5, y1 += 0.5;
  const double ypad = 0.05 * (y1 - y0);
  y0 -= ypad, y1 += ypad;

  cv::Mat img(o.height, o.width, CV_8UC3, cv::Scalar(255, 255, 255));
  const int left = 80, right = 20, top = o.title.empty() ? 20 : 40, bottom = 50;
  const int pw = o.width - left - right, ph = o.height - top - bottom;
  const auto px = [&](double x) { return left + static_cast<int>(std::lround((x - x0) / (x1 - x0) * pw)); };
  const auto py = [&](double y) { return top + ph - static_cast<int>(std::lround((y - y0) / (y1 - y0) * ph)); };
  const auto font = cv::FONT_HERSHEY_SIMPLEX;
  const cv::Scalar black(0, 0, 0), grid(225, 225, 225);

  // Grid and ticks.
  const double xs = nice_step(x1 - x0, 6), ys = nice_step(y1 - y0, 5);
  for (double x = std::ceil(x0 / xs) * xs; x <= x1 + 1e-9 * xs; x += xs) {
    cv::line(img, {px(x), top}, {px(x), top + ph}, grid, 1);
    const auto label = tick_label(x);
    cv::putText(img, label, {px(x) - 4 * static_cast<int>(label.size()), top + ph + 18}, font, 0.4, black, 1,
                cv::LINE_AA);
  }
  for (double y = std::ceil(y0 / ys) * ys; y <= y1 + 1e-9 * ys; y += ys) {
    cv::line(img, {left, py(y)}, {left + pw, py(y)}, grid, 1);
    const auto label = tick_label(o.log_y ? std::pow(10.0, y) : y);
    cv::putText(img, label, {4, py(y) + 4}, font, 0.4, black, 1, cv::LINE_AA);
  }
  cv::rectangle(img, {left, top}, {left + pw, top + ph}, black, 1);
  if (!o.title.empty()) cv::putText(img, o.title, {left, 26}, font, 0.6, black, 1, cv::LINE_AA);
  cv::putText(img, o.x_label, {left + pw / 2 - 15, o.height - 12}, font, 0.45, black, 1, cv::LINE_AA);
  cv::putText(img, o.log_y ? o.y_label + " (log)" : o.y_label, {4, top - 6 > 10 ? top - 6 : 12}, font, 0.4, black, 1,
              cv::LINE_AA);

  // Curves.
  for (size_t i = 0; i < series.size(); ++i) {
    const auto& colour = kColours[i % (sizeof(kColours) / sizeof(kColours[0]))];
    std::vector<cv::Point> pts;
    for (const auto& [x, y] : series[i].points) pts.emplace_back(px(x), py(y));
    if (pts.size() == 1) {
      cv::circle(img, pts[0], 3, colour, cv::FILLED, cv::LINE_AA);
    } else {
      cv::polylines(img, pts, false, colour, 2, cv::LINE_AA);
    }
    // Legend (top right).
    const int ly = top + 16 + static_cast<int>(i) * 16;
    cv::line(img, {left + pw - 170, ly - 4}, {left + pw - 150, ly - 4}, colour, 2, cv::LINE_AA);
    cv::putText(img, series[i].label.substr(0, 24), {left + pw - 144, ly}, font, 0.4, black, 1, cv::LINE_AA);
  }
  bool ok = false;
  try {
    ok = cv::imwrite(path, img);
  } catch (const cv::Exception& e) {
    throw_error("cannot write plot '{}': {}", path, e.what());
  }
  if (!ok) throw_error("cannot write plot '{}'", path);
}

std::string format_metric(double value, int precision) {
  if (!std::isfinite(value)) return "n/a";
  return fmt::format("{:.{}f}", value, precision);
}

bool Target::met() const {
  if (!std::isfinite(value)) return false;
  return lower_is_better ? value <= target : value >= target;
}

std::string targets_table(const std::vector<Target>& targets) {
  std::string s = "| metric | value | target | met |\n|---|---|---|---|\n";
  for (const auto& t : targets) {
    s += fmt::format("| {} | {} | {} {} | {} |\n", t.name, format_metric(t.value), t.lower_is_better ? "<=" : ">=",
                     format_metric(t.target), t.met() ? "yes" : "**no**");
  }
  return s;
}

const nlohmann::json* json_find(const nlohmann::json& j, const std::string& dotted_path) {
  const nlohmann::json* cur = &j;
  size_t start = 0;
  while (true) {
    const auto dot = dotted_path.find('.', start);
    const auto key = dotted_path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!cur->is_object() || !cur->contains(key)) return nullptr;
    cur = &(*cur)[key];
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

double json_number(const nlohmann::json& j, const std::string& dotted_path) {
  const auto* v = json_find(j, dotted_path);
  return v != nullptr && v->is_number() ? v->get<double>() : std::numeric_limits<double>::quiet_NaN();
}

}  // namespace janus::eval
