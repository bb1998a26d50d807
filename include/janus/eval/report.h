#pragma once
// Run reports: loss curves from metrics.jsonl drawn as PNG (OpenCV, no plotting library needed), and a Markdown
// report builder used by `janus_report` (tools/quickstart.sh writes runs/quickstart/report.md with it).
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace janus::eval {

// One curve: (step, value) points in step order.
struct Series {
  std::string label;
  std::vector<std::pair<double, double>> points;
};

// Every numeric key of a trainer's metrics.jsonl as a series (null / non-finite values skipped). Records repeated
// after a resume (same or lower step than an earlier record) replace the earlier ones. InputError for an unreadable
// file or a line that is not a JSON object with a numeric "step".
std::map<std::string, Series> read_metrics_jsonl(const std::string& path);

struct PlotOptions {
  std::string title;
  std::string x_label = "step";
  std::string y_label = "loss";
  bool log_y = false;  // log10 axis (non-positive values are dropped)
  int width = 900;
  int height = 500;
};

// Draws the series (one colour each, legend, axes with tick labels) and writes a PNG. InputError when there is
// nothing to plot; Error when the file cannot be written.
void plot_series_png(const std::vector<Series>& series, const std::string& path, const PlotOptions& options = {});

// A Markdown table row helper: formats a metric value (NaN / missing -> "n/a").
std::string format_metric(double value, int precision = 3);

// A target line of a report: metric `value` against `target` (value >= target passes unless lower_is_better).
struct Target {
  std::string name;
  double value = 0;
  double target = 0;
  bool lower_is_better = false;
  bool met() const;
};
// Markdown table "| metric | value | target | met |" for the targets.
std::string targets_table(const std::vector<Target>& targets);

// The value at a dotted path ("retrieval.i2t_r1") in a JSON object; nullptr when a step is absent or not an object.
const nlohmann::json* json_find(const nlohmann::json& j, const std::string& dotted_path);

// Looks up a dotted path ("retrieval.i2t_r1") in a JSON object; NaN when absent or not a number.
double json_number(const nlohmann::json& j, const std::string& dotted_path);

}  // namespace janus::eval
