// `janus_eval score ...` / `janus_eval compare` through the built tool: numbers, JSON, exit codes, messages.
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "janus/core/fs.h"
#include "janus/eval/metrics.h"
#include "janus/io/safetensors.h"
#include "test_util.h"

using janus::test::quote;
using nlohmann::json;
using ::testing::HasSubstr;

namespace {

json read_json(const std::string& path) { return json::parse(janus::read_file(path)); }
void write_json(const std::string& path, const json& j) { janus::write_file_atomic(path, j.dump()); }

janus::test::CommandResult eval_tool(const std::string& args) {
  return janus::test::run(quote(janus::test::tool("janus_eval")) + " " + args);
}

// COCO caption files made by the seeded generator (real punctuation, capitals, numbers, Unicode).
std::string caption_dir() {
  static const std::string dir = [] {
    const std::string d = janus::test::temp_dir("caption_tool");
    const auto r = janus::test::run_python("eval_caption_cases.py", {"gen", d, "77", "1"});
    if (r.exit_code != 0) throw std::runtime_error(r.output);
    return d;
  }();
  return dir;
}

std::string caption_args(const std::string& results) {
  return "score caption --annotations " + quote(caption_dir() + "/annotations.json") + " --results " + quote(results);
}

}  // namespace

TEST(ScoreCaptionTool, AgreesWithPycocoevalcapAndWritesResultsJson) {
  const std::string d = caption_dir();
  const auto r = eval_tool(caption_args(d + "/results.json") + " --per-image --out " + quote(d + "/out.json") +
                           " --dump-tokens " + quote(d + "/tokens.json"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("CIDEr"));
  EXPECT_THAT(r.output, HasSubstr("40 of 40 scored"));
  const auto p =
      janus::test::run_python("eval_caption_cases.py", {"score_tokens", d + "/tokens.json", d + "/ref.json"});
  ASSERT_EQ(p.exit_code, 0) << p.output;
  const json out = read_json(d + "/out.json"), ref = read_json(d + "/ref.json");
  for (const char* k : {"Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "CIDEr", "ROUGE_L"}) {
    EXPECT_NEAR(out["metrics"][k].get<double>(), ref[k].get<double>(), 1e-6) << k;
  }
  EXPECT_GT(out["metrics"]["CIDEr"].get<double>(), 0.1);
  ASSERT_EQ(out["per_image"].size(), 40u);
  for (const auto& pi : out["per_image"]) {
    const json& want = ref["per_image"][pi["image_id"].dump()];
    for (const char* k : {"Bleu_1", "Bleu_4", "CIDEr", "ROUGE_L"}) {
      EXPECT_NEAR(pi[k].get<double>(), want[k].get<double>(), 1e-6) << k << " image " << pi["image_id"];
    }
  }
  EXPECT_EQ(out["counts"]["annotated"], 40);
  EXPECT_EQ(out["counts"]["scored"], 40);
  EXPECT_EQ(out["inputs"]["results"], d + "/results.json");
  EXPECT_TRUE(out["timestamp"].is_string());
  // The tokens actually went through the tokenizer: lower case, no trailing punctuation.
  const json tokens = read_json(d + "/tokens.json");
  for (const auto& [id, c] : tokens["res"].items()) {
    const std::string s = c[0].get<std::string>();
    EXPECT_EQ(s.find_first_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ!?;"), std::string::npos) << s;
  }
}

TEST(ScoreCaptionTool, ReportsBadResultsWithCountsAndExit2) {
  const std::string d = caption_dir();
  json res = read_json(d + "/results.json");
  res.push_back({{"image_id", 1}, {"caption", "unknown id"}});
  res.push_back({{"image_id", 2}, {"caption", "another unknown id"}});
  res.push_back(res[0]);                                        // duplicate
  res[1]["caption"] = "   ";                                    // empty
  res[2]["caption"] = 17;                                       // wrong type
  res.push_back({{"image_id", 3.5}, {"caption", "float id"}});  // wrong id type
  write_json(d + "/bad.json", res);
  const auto r = eval_tool(caption_args(d + "/bad.json"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("caption results: 6 problems"));
  EXPECT_THAT(r.output, HasSubstr("2 x image_id not in the annotations (e.g. 1, 2)"));
  EXPECT_THAT(r.output, HasSubstr("1 x duplicate image_id"));
  EXPECT_THAT(r.output, HasSubstr("1 x empty caption"));
  EXPECT_THAT(r.output, HasSubstr("1 x caption that is not a string"));
  EXPECT_THAT(r.output, HasSubstr("1 x result without an integer/string image_id"));
}

TEST(ScoreCaptionTool, MissingIdsAreAnErrorUnlessAllowPartial) {
  const std::string d = caption_dir();
  json res = read_json(d + "/results.json");
  res.erase(res.begin(), res.begin() + 3);
  write_json(d + "/partial.json", res);
  auto r = eval_tool(caption_args(d + "/partial.json"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("results cover 37 of 40 annotated image_ids: 3 missing"));
  EXPECT_THAT(r.output, HasSubstr("--allow-partial"));
  r = eval_tool(caption_args(d + "/partial.json") + " --allow-partial --out " + quote(d + "/partial_out.json"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json out = read_json(d + "/partial_out.json");
  EXPECT_EQ(out["counts"]["scored"], 37);
  EXPECT_EQ(out["counts"]["missing"], 3);
}

TEST(ScoreCaptionTool, NonUtf8AndMissingFilesExit2) {
  const std::string d = caption_dir();
  {
    std::ofstream f(d + "/latin1.json", std::ios::binary);
    f << "[{\"image_id\": 100000, \"caption\": \"caf\xe9\"}]";
  }
  auto r = eval_tool(caption_args(d + "/latin1.json"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("caption results: not valid JSON"));
  EXPECT_THAT(r.output, HasSubstr("UTF-8"));
  r = eval_tool(caption_args(d + "/does_not_exist.json"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = eval_tool("score caption --results x.json");  // missing required flag
  EXPECT_EQ(r.exit_code, 2) << r.output;
}

namespace {
json vqa_annotation(int qid, const std::string& type, const std::vector<std::string>& answers) {
  json a = {{"question_id", qid}, {"image_id", qid / 10}, {"answer_type", type}, {"question_type", "what is"}};
  json list = json::array();
  for (std::size_t i = 0; i < answers.size(); ++i) {
    list.push_back({{"answer", answers[i]}, {"answer_confidence", "yes"}, {"answer_id", i + 1}});
  }
  a["answers"] = list;
  return a;
}
std::vector<std::string> rep(std::initializer_list<std::pair<const char*, int>> parts) {
  std::vector<std::string> out;
  for (const auto& [s, n] : parts) out.insert(out.end(), n, s);
  return out;
}
}  // namespace

TEST(ScoreVqaTool, OfficialRulesPerAnswerTypeAndErrors) {
  const std::string d = janus::test::temp_dir("vqa_tool");
  json anns = json::array({vqa_annotation(10, "yes/no", rep({{"yes", 10}})),
                           vqa_annotation(11, "number", rep({{"2", 3}, {"3", 7}})),
                           vqa_annotation(12, "other", rep({{"t-shirt", 4}, {"shirt", 6}})),
                           vqa_annotation(13, "other", rep({{"red", 1}, {"blue", 9}}))});
  json qs = json::array();
  for (int q : {10, 11, 12, 13}) qs.push_back({{"question_id", q}, {"image_id", q / 10}, {"question", "?"}});
  write_json(d + "/q.json", {{"questions", qs}});
  write_json(d + "/a.json", {{"annotations", anns}});
  write_json(d + "/r.json", json::array({{{"question_id", 10}, {"answer", "Yes."}},
                                         {{"question_id", 11}, {"answer", "two"}},
                                         {{"question_id", 12}, {"answer", "T-Shirt"}},
                                         {{"question_id", 13}, {"answer", "red"}}}));
  const std::string base = "score vqa --questions " + quote(d + "/q.json") + " --annotations " + quote(d + "/a.json");
  auto r = eval_tool(base + " --results " + quote(d + "/r.json") + " --out " + quote(d + "/out.json"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json out = read_json(d + "/out.json");
  EXPECT_NEAR(out["metrics"]["overall"].get<double>(), 100.0 * (1 + 0.9 + 1 + 0.3) / 4, 1e-9);
  EXPECT_NEAR(out["metrics"]["perAnswerType"]["yes/no"].get<double>(), 100.0, 1e-9);
  EXPECT_NEAR(out["metrics"]["perAnswerType"]["number"].get<double>(), 90.0, 1e-9);
  EXPECT_NEAR(out["metrics"]["perAnswerType"]["other"].get<double>(), 65.0, 1e-9);
  EXPECT_EQ(out["counts"]["scored"], 4);

  write_json(d + "/bad.json", json::array({{{"question_id", 10}, {"answer", "yes"}},
                                           {{"question_id", 10}, {"answer", "no"}},
                                           {{"question_id", 99}, {"answer", "x"}},
                                           {{"question_id", 11}, {"answer", 2}}}));
  r = eval_tool(base + " --results " + quote(d + "/bad.json"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("VQA results: 3 problems"));
  EXPECT_THAT(r.output, HasSubstr("1 x duplicate question_id (e.g. 10)"));
  EXPECT_THAT(r.output, HasSubstr("1 x question_id not in the annotations (e.g. 99)"));
  EXPECT_THAT(r.output, HasSubstr("1 x answer that is not a string"));

  write_json(d + "/partial.json", json::array({{{"question_id", 10}, {"answer", "yes"}}}));
  r = eval_tool(base + " --results " + quote(d + "/partial.json"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("results cover 1 of 4 annotated question_ids: 3 missing"));
}

TEST(ScoreNlvr2Tool, AccuracyAndBadPredictions) {
  const std::string d = janus::test::temp_dir("nlvr2_tool");
  {
    std::ofstream f(d + "/test.jsonl");
    f << R"({"identifier": "test1-0-0-0", "label": "True", "sentence": "a"})"
      << "\n"
      << R"({"identifier": "test1-0-1-0", "label": "False", "sentence": "a"})"
      << "\n"
      << R"({"identifier": "test1-1-0-0", "label": "True", "sentence": "b"})"
      << "\n"
      << R"({"identifier": "test1-1-1-0", "label": "False", "sentence": "b"})"
      << "\n";
  }
  write_json(d + "/r.json", json::array({{{"identifier", "test1-0-0-0"}, {"prediction", "True"}},
                                         {{"identifier", "test1-0-1-0"}, {"prediction", "True"}},
                                         {{"identifier", "test1-1-0-0"}, {"prediction", "true"}},
                                         {{"identifier", "test1-1-1-0"}, {"prediction", false}}}));
  const std::string base = "score nlvr2 --data " + quote(d + "/test.jsonl");
  auto r = eval_tool(base + " --results " + quote(d + "/r.json") + " --out " + quote(d + "/out.json"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_DOUBLE_EQ(read_json(d + "/out.json")["metrics"]["accuracy"].get<double>(), 75.0);
  write_json(d + "/bad.json", json::array({{{"identifier", "test1-0-0-0"}, {"prediction", "maybe"}}}));
  r = eval_tool(base + " --results " + quote(d + "/bad.json"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("1 x prediction that is not \"True\"/\"False\""));
}

TEST(ScoreRetrievalTool, SameNumbersAsTheLibrary) {
  const std::string d = janus::test::temp_dir("retrieval_tool");
  at::manual_seed(3);
  const int64_t n_img = 20, per = 5;
  at::Tensor sim = at::randn({n_img, n_img * per}, at::kFloat);
  std::vector<int64_t> txt2img;
  json img2txt = json::array();
  for (int64_t i = 0; i < n_img; ++i) {
    json row = json::array();
    for (int64_t k = 0; k < per; ++k) {
      txt2img.push_back(i);
      row.push_back(i * per + k);
      sim[i][i * per + k] += 1.5;
    }
    img2txt.push_back(row);
  }
  janus::save_safetensors(d + "/sim.safetensors", {{"similarity", sim}});
  write_json(d + "/gt.json", {{"img2txt", img2txt}});
  const auto r = eval_tool("score retrieval --similarity " + quote(d + "/sim.safetensors") + " --gt " +
                           quote(d + "/gt.json") + " --out " + quote(d + "/out.json"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json m = read_json(d + "/out.json")["metrics"];
  const auto want = janus::eval::retrieval_recall(sim, txt2img);
  EXPECT_DOUBLE_EQ(m["txt_r1"].get<double>(), want.i2t_r1);
  EXPECT_DOUBLE_EQ(m["img_r5"].get<double>(), want.t2i_r5);
  EXPECT_DOUBLE_EQ(m["r_mean"].get<double>(), want.r_mean);
  write_json(d + "/bad_gt.json", {{"img2txt", json::array({json::array({0, 0})})}});
  const auto bad =
      eval_tool("score retrieval --similarity " + quote(d + "/sim.safetensors") + " --gt " + quote(d + "/bad_gt.json"));
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_THAT(bad.output, HasSubstr("text listed under two images"));
}

TEST(CompareTool, PrintsDeltas) {
  const std::string d = janus::test::temp_dir("compare_tool");
  write_json(d + "/a.json", {{"task", "vqa"}, {"metrics", {{"overall", 50.0}, {"perAnswerType", {{"number", 40.0}}}}}});
  write_json(d + "/b.json", {{"task", "vqa"}, {"metrics", {{"overall", 52.5}, {"perAnswerType", {{"other", 1.0}}}}}});
  auto r = eval_tool("compare " + quote(d + "/a.json") + " " + quote(d + "/b.json") + " --out " + quote(d + "/d.json"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("+2.5000"));
  const json dj = read_json(d + "/d.json");
  EXPECT_DOUBLE_EQ(dj["deltas"]["overall"]["delta"].get<double>(), 2.5);
  EXPECT_TRUE(dj["deltas"]["perAnswerType/number"]["b"].is_null());
  write_json(d + "/c.json", json::array());
  r = eval_tool("compare " + quote(d + "/a.json") + " " + quote(d + "/c.json"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
}

// A number too large for a double (1e99999) makes nlohmann::json throw out_of_range, not parse_error. The tools
// read every JSON file through janus::read_json_file, so such a file is bad input: exit 2 naming the file.
TEST(JsonInputs, NumberOverflowInResultsFilesExits2) {
  const std::string d = janus::test::temp_dir("overflow_tool");
  {
    std::ofstream f(d + "/overflow.json");
    f << R"([{"image_id": 100000, "caption": "a red square", "score": 1e99999}])";
  }
  const std::string bad = d + "/overflow.json";
  auto r = eval_tool(caption_args(bad));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr(bad + ": caption results: not valid JSON"));

  write_json(d + "/a.json", {{"task", "vqa"}, {"metrics", {{"overall", 50.0}}}});
  r = eval_tool("compare " + quote(d + "/a.json") + " " + quote(bad));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr(bad));

  {
    std::ofstream f(d + "/overflow.jsonl");
    f << R"({"identifier": "test1-0-0-0", "label": "True", "sentence": "a"})"
      << "\n"
      << R"({"identifier": -1e99999})"
      << "\n";
  }
  r = eval_tool("score nlvr2 --data " + quote(d + "/overflow.jsonl") + " --results " + quote(d + "/a.json"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("1 line(s) are not valid JSON"));

  r = janus::test::run(quote(janus::test::tool("janus_report")) + " --targets none --out " +
                       quote(d + "/report/report.md") + " --eval " + quote(bad));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr(bad + ": eval results: not valid JSON"));
}
