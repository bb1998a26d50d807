// janus_infer CLI: every subcommand on a random-weight run dir, JSON output agreeing with the library, exit 2 on
// bad input.
#include <filesystem>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "infer_fixture.h"
#include "janus/infer/pipeline.h"

namespace {

struct Env {
  std::string dir, run, gallery;
  std::vector<std::string> images;
};

const Env& env() {
  static const Env e = [] {
    Env e;
    e.dir = janus::test::temp_dir("janus_infer");
    e.run = janus::test::make_run(e.dir);
    e.gallery = e.dir + "/gallery";
    std::filesystem::create_directories(e.gallery);
    for (int i = 0; i < 4; ++i) {
      e.images.push_back(janus::test::make_image(e.gallery, fmt::format("g{}.png", i), 36, 44, 10 + i));
    }
    return e;
  }();
  return e;
}

std::string cli(const std::string& args) {
  return janus::test::tool("janus_infer") + " --log-level warn --run " + janus::test::quote(env().run) + " " + args;
}

nlohmann::json json_of(const std::string& args) {
  const auto r = janus::test::run(cli("--json " + args) + " 2>/dev/null");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return nlohmann::json::parse(r.output);
}

}  // namespace

TEST(JanusInfer, CaptionJsonMatchesThePipeline) {
  const auto& e = env();
  const auto j = json_of("caption " + janus::test::quote(e.images[0]) + " " + janus::test::quote(e.images[1]));
  ASSERT_EQ(j.size(), 2u);
  janus::PipelineOptions po;
  auto p = janus::Pipeline::load(e.run, po);
  EXPECT_EQ(j[0]["image"], e.images[0]);
  EXPECT_EQ(j[0]["caption"].get<std::string>(), p.caption(janus::ImageInput::file(e.images[0])));
  EXPECT_EQ(j[1]["caption"].get<std::string>(), p.caption(janus::ImageInput::file(e.images[1])));
  // plain text output
  const auto r = janus::test::run(cli("caption " + janus::test::quote(e.images[0])) + " 2>/dev/null");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, e.images[0] + "\t" + j[0]["caption"].get<std::string>() + "\n");
}

TEST(JanusInfer, VqaRetrieveClassifyGenerate) {
  const auto& e = env();
  auto p = janus::Pipeline::load(e.run);
  const auto v = json_of("vqa " + janus::test::quote(e.images[2]) + " 'is it red?'");
  const auto a = p.answer(janus::ImageInput::file(e.images[2]), "is it red?");
  EXPECT_EQ(v["answer"].get<std::string>(), a.answer);
  EXPECT_NEAR(v["score"].get<double>(), a.score, 1e-5);
  EXPECT_EQ(v["top"].size(), 3u);

  const auto r = json_of("retrieve --query 'a blue star' --gallery " + janus::test::quote(e.gallery) + " --k 2");
  ASSERT_EQ(r["results"].size(), 2u);
  std::vector<janus::ImageInput> gal;
  for (const auto& f : e.images) gal.push_back(janus::ImageInput::file(f));
  const auto hits = p.retrieve("a blue star", gal, 2);
  EXPECT_EQ(r["results"][0]["image"].get<std::string>(), e.images[hits[0].index]);
  EXPECT_NEAR(r["results"][0]["score"].get<double>(), hits[0].score, 1e-5);

  const auto c = json_of("classify " + janus::test::quote(e.images[3]));
  EXPECT_EQ(c[0]["label"].get<int64_t>(), p.classify(janus::ImageInput::file(e.images[3])).label);

  const auto out = e.dir + "/gen";
  const auto g = json_of("generate 'a red circle' --n 2 --seed 3 --top-k 10 --cfg 2 --out " + janus::test::quote(out));
  ASSERT_EQ(g["images"].size(), 2u);
  janus::GenerateOptions go;
  go.n = 2;
  go.seed = 3;
  go.top_k = 10;
  go.cfg_scale = 2;
  const auto imgs = p.generate("a red circle", go);
  for (int i = 0; i < 2; ++i) {
    const auto back = janus::decode_image_file(g["images"][i].get<std::string>());
    EXPECT_TRUE(at::equal(back, imgs[i])) << i;  // PNG is lossless
  }
  // best of 3 per image, by the caption score: the tool passes the options through
  const auto b = json_of(
      "generate 'a red circle' --n 2 --seed 3 --cfg 2 --candidates 3 --rerank-by caption "
      "--rerank-contrastive-weight 4 --out " +
      janus::test::quote(out + "_best"));
  ASSERT_EQ(b["images"].size(), 2u);
  go.top_k = 0;
  go.candidates = 3;
  go.rerank_by = "caption";
  go.rerank_contrastive_weight = 4;
  const auto best = p.generate("a red circle", go);
  for (int i = 0; i < 2; ++i) {
    EXPECT_TRUE(at::equal(janus::decode_image_file(b["images"][i].get<std::string>()), best[i])) << i;
  }
}

TEST(JanusInfer, BadInputExitsWith2) {
  const auto& e = env();
  const auto junk = e.dir + "/junk.png";
  janus::write_file_atomic(junk, "this is not a png");
  auto r = janus::test::run(cli("caption " + janus::test::quote(junk)));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("junk.png"), std::string::npos) << r.output;
  r = janus::test::run(cli("caption " + janus::test::quote(e.dir + "/missing.png")));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = janus::test::run(cli("vqa " + janus::test::quote(e.images[0]) + " ''"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = janus::test::run(cli("retrieve --query x --gallery " + janus::test::quote(e.dir + "/nope")));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = janus::test::run(cli("generate x --n 0 --out " + janus::test::quote(e.dir + "/g0")));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = janus::test::run(cli("generate x --candidates 0 --out " + janus::test::quote(e.dir + "/g0")));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("candidates must be in [1, 64]"), std::string::npos) << r.output;
  r = janus::test::run(cli("generate x --candidates 2 --rerank-by clip --out " + janus::test::quote(e.dir + "/g0")));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = janus::test::run(janus::test::tool("janus_infer") + " --run " + janus::test::quote(e.dir + "/norun") +
                       " caption " + janus::test::quote(e.images[0]));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = janus::test::run(cli("frobnicate"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
}
