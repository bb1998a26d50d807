// Loss-curve plotting and report helpers (include/janus/eval/report.h).
#include <cmath>

#include <gtest/gtest.h>

#include "janus/core/error.h"
#include "janus/core/fs.h"
#include "janus/decoder/image_output.h"
#include "janus/eval/report.h"
#include "test_util.h"

TEST(Report, ReadsMetricsJsonlAndResumedRecordsReplaceOldOnes) {
  const auto d = janus::test::temp_dir("report");
  janus::write_file_atomic(d + "/metrics.jsonl",
                           "{\"step\":10,\"loss\":2.0,\"mlm\":1.5,\"lr\":0.001}\n"
                           "{\"step\":20,\"loss\":1.0,\"mlm\":null,\"lr\":0.002}\n"
                           "{\"step\":30,\"loss\":0.9,\"lr\":0.002}\n"
                           "{\"step\":20,\"loss\":1.1,\"lr\":0.002}\n"  // resumed from step 10: 20 and 30 replaced
                           "\n");
  const auto m = janus::eval::read_metrics_jsonl(d + "/metrics.jsonl");
  ASSERT_TRUE(m.count("loss"));
  const auto& loss = m.at("loss").points;
  ASSERT_EQ(loss.size(), 2u);
  EXPECT_EQ(loss[0], (std::pair<double, double>{10, 2.0}));
  EXPECT_EQ(loss[1], (std::pair<double, double>{20, 1.1}));
  EXPECT_EQ(m.at("mlm").points.size(), 1u);  // null skipped
  EXPECT_FALSE(m.count("step"));

  janus::write_file_atomic(d + "/bad.jsonl", "{\"step\":1}\n[1,2]\n");
  EXPECT_THROW(janus::eval::read_metrics_jsonl(d + "/bad.jsonl"), janus::InputError);
  EXPECT_THROW(janus::eval::read_metrics_jsonl(d + "/missing.jsonl"), janus::InputError);
}

TEST(Report, PlotDrawsEachSeriesInItsColour) {
  const auto d = janus::test::temp_dir("plot");
  janus::eval::Series a{"falling", {}}, b{"flat", {}};
  for (int i = 0; i <= 100; ++i) {
    a.points.emplace_back(i, std::exp(-i / 20.0));
    b.points.emplace_back(i, 0.5);
  }
  janus::eval::PlotOptions o;
  o.title = "test";
  janus::eval::plot_series_png({a, b}, d + "/p.png", o);
  const auto img = janus::to_uint8_image(janus::read_png(d + "/p.png")).to(at::kInt);  // [H, W, 3] RGB
  ASSERT_EQ(img.size(0), o.height);
  ASSERT_EQ(img.size(1), o.width);
  // Pixels of the first two palette colours are present: both curves were drawn.
  const auto count = [&](int r, int g, int b) {
    const auto c = at::tensor({r, g, b}, at::kInt);
    return (img == c).all(-1).sum().item<int64_t>();
  };
  EXPECT_GT(count(31, 119, 180), 100);
  EXPECT_GT(count(255, 127, 14), 100);
  EXPECT_THROW(janus::eval::plot_series_png({janus::eval::Series{"empty", {}}}, d + "/e.png"), janus::InputError);
  janus::eval::PlotOptions lo;
  lo.log_y = true;
  EXPECT_NO_THROW(janus::eval::plot_series_png({a}, d + "/log.png", lo));
}

TEST(Report, TargetsAndJsonLookup) {
  const auto j = nlohmann::json::parse(R"({"retrieval": {"i2t_r1": 0.97, "name": "x"}, "vqa": {"overall": 80}})");
  EXPECT_DOUBLE_EQ(janus::eval::json_number(j, "retrieval.i2t_r1"), 0.97);
  EXPECT_TRUE(std::isnan(janus::eval::json_number(j, "retrieval.name")));
  EXPECT_TRUE(std::isnan(janus::eval::json_number(j, "retrieval.t2i_r1")));
  EXPECT_TRUE(std::isnan(janus::eval::json_number(j, "nope.x")));
  ASSERT_NE(janus::eval::json_find(j, "retrieval"), nullptr);
  EXPECT_EQ(*janus::eval::json_find(j, "retrieval.name"), "x");
  EXPECT_EQ(janus::eval::json_find(j, "retrieval.name.deeper"), nullptr);  // a string has no keys
  EXPECT_EQ(janus::eval::json_find(j, "vqa.perQuestionType"), nullptr);
  const std::vector<janus::eval::Target> t = {{"R@1", 0.97, 0.95}, {"VQA", 80, 85}, {"missing", NAN, 1}};
  EXPECT_TRUE(t[0].met());
  EXPECT_FALSE(t[1].met());
  EXPECT_FALSE(t[2].met());
  const auto table = janus::eval::targets_table(t);
  EXPECT_NE(table.find("| R@1 | 0.970 | >= 0.950 | yes |"), std::string::npos) << table;
  EXPECT_NE(table.find("| VQA | 80.000 | >= 85.000 | **no** |"), std::string::npos) << table;
  EXPECT_NE(table.find("n/a"), std::string::npos);
}
