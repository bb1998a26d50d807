// The Shapes benchmark: determinism, the GenEval-style checker, and that every file it writes loads through the
// real-format readers.
#include <algorithm>
#include <filesystem>
#include <map>
#include <random>
#include <set>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "janus/core/config.h"
#include "janus/core/fs.h"
#include "janus/data/factory.h"
#include "janus/data/formats.h"
#include "janus/data/loader.h"
#include "janus/data/shapes.h"
#include "test_util.h"

namespace fs = std::filesystem;

TEST(DataShapes, ScenesAreDeterministicAndVaried) {
  const auto a = janus::make_shapes_scene(5, "train", 17, 64);
  const auto b = janus::make_shapes_scene(5, "train", 17, 64);
  EXPECT_TRUE(janus::render_shapes_scene(a).equal(janus::render_shapes_scene(b)));
  EXPECT_FALSE(
      janus::render_shapes_scene(a).equal(janus::render_shapes_scene(janus::make_shapes_scene(6, "train", 17, 64))));
  std::set<int> colours, kinds, sizes, counts;
  for (int64_t i = 0; i < 200; ++i) {
    const auto s = janus::make_shapes_scene(1, "train", i, 64);
    counts.insert(static_cast<int>(s.objects.size()));
    for (const auto& o : s.objects) {
      colours.insert(o.colour);
      kinds.insert(o.kind);
      sizes.insert(o.size);
    }
    EXPECT_GE(janus::shapes_captions(s, 1).size(), 3u);
  }
  EXPECT_EQ(colours.size(), 6u);
  EXPECT_EQ(kinds.size(), 4u);
  EXPECT_EQ(sizes.size(), 2u);
  EXPECT_EQ(counts, (std::set<int>{1, 2, 3}));
}

TEST(DataShapes, GenevalCheckerScoresOwnImagesHighAndMismatchesLow) {
  for (int64_t size : {64, 128}) {
    double own = 0, own_correct = 0, other = 0, other_correct = 0;
    const int n = 300;
    for (int64_t i = 0; i < n; ++i) {
      const auto s = janus::make_shapes_scene(9, "val", i, size);
      const auto spec = janus::shapes_prompt_spec(s);
      const auto img = janus::render_shapes_scene(s);
      const auto g = janus::shapes_geneval_check(img, spec);
      own += g.overall;
      own_correct += g.correct;
      const auto o = janus::shapes_geneval_check(
          janus::render_shapes_scene(janus::make_shapes_scene(9, "val", i + 1000, size)), spec);
      other += o.overall;
      other_correct += o.correct;
    }
    EXPECT_GE(own_correct / n, 0.98) << "size " << size;
    EXPECT_GE(own / n, 0.99) << "size " << size;
    EXPECT_LT(other_correct / n, 0.1) << "size " << size;
    EXPECT_LT(other / n, 0.7) << "size " << size;
  }
  // Component scores: right shape, wrong colour.
  janus::ShapesScene sc;
  sc.image_size = 64;
  sc.objects.push_back({0, 0, 1, 20, 32, 11, 0});  // large red circle on the left
  sc.objects.push_back({4, 1, 1, 46, 32, 11, 0});  // large blue square on the right
  const auto img = janus::render_shapes_scene(sc);
  const auto spec = janus::PromptSpec::from_json(nlohmann::json::parse(
      R"({"objects":[{"colour":"green","shape":"circle"},{"colour":"blue","shape":"square"}],"relation":"left_of"})"));
  auto g = janus::shapes_geneval_check(img, spec);
  EXPECT_DOUBLE_EQ(g.shape, 1.0);
  EXPECT_DOUBLE_EQ(g.colour, 0.5);
  EXPECT_DOUBLE_EQ(g.count, 0.5);
  EXPECT_DOUBLE_EQ(g.position, 0.0);  // no green circle found
  EXPECT_FALSE(g.correct);
  auto good = spec;
  good.objects[0].colour = "red";
  EXPECT_TRUE(janus::shapes_geneval_check(img, good).correct);
  good.relation = "right_of";
  EXPECT_DOUBLE_EQ(janus::shapes_geneval_check(img, good).position, 0.0);
  EXPECT_EQ(good.prompt(), "a photo of a red circle to the right of a blue square");
  // Every object of the spec is in the prompt, also beyond the two the relation is about.
  good.objects.push_back({"green", "star", 2});
  EXPECT_EQ(good.prompt(), "a photo of a red circle to the right of a blue square and two green stars");
  EXPECT_THROW(
      janus::PromptSpec::from_json(nlohmann::json::parse(R"({"objects":[{"colour":"pink","shape":"circle"}]})")),
      janus::InputError);
}

// PromptSpec::from_prompt reads back what prompt() writes, names the word it cannot read, and
// shapes_prompt_questions lists what a prompt implies.
TEST(DataShapes, PromptTextParsesBackToItsSpecAndImpliesQuestions) {
  const auto& C = janus::shapes_colours();
  const auto& K = janus::shapes_kinds();
  const std::vector<std::string> rels{"", "left_of", "right_of", "above", "below"};
  for (int n = 0; n < 120; ++n) {
    janus::PromptSpec s;
    const int objects = 1 + n % 4;
    for (int i = 0; i < objects; ++i) {
      s.objects.push_back({C[static_cast<size_t>((n + 2 * i) % 6)], K[static_cast<size_t>((n / 6 + i) % 4)],
                           (n / 24 + i) % 3 == 0 ? 2 + (n + i) % 5 : 1});
    }
    if (objects >= 2 && n % 3 != 0) {
      s.relation = rels[static_cast<size_t>(1 + n % 4)];
      s.objects[0].count = s.objects[1].count = 1;
    }
    EXPECT_EQ(janus::PromptSpec::from_prompt(s.prompt()).to_json(), s.to_json()) << s.prompt();
  }
  const auto spec = janus::PromptSpec::from_prompt("a photo of a red circle, two blue squares and a green circle");
  ASSERT_EQ(spec.objects.size(), 3u);
  EXPECT_EQ(spec.objects[1].count, 2);
  std::vector<std::pair<std::string, std::string>> qa;
  for (const auto& q : janus::shapes_prompt_questions(spec)) qa.emplace_back(q.question, q.answer);
  const std::vector<std::pair<std::string, std::string>> want{{"is there a red circle?", "yes"},
                                                              {"is there a blue square?", "yes"},
                                                              {"is there a green circle?", "yes"},
                                                              {"how many shapes are there?", "4"},
                                                              {"how many blue shapes are there?", "2"},
                                                              {"how many green shapes are there?", "1"},
                                                              {"how many red shapes are there?", "1"},
                                                              {"what shape is the red object?", "circle"},
                                                              {"what shape is the green object?", "circle"}};
  EXPECT_EQ(qa, want);
  const auto rel =
      janus::shapes_prompt_questions(janus::PromptSpec::from_prompt("a photo of a red circle above a blue star"));
  ASSERT_EQ(rel.size(), 2u + 1u + 2u + 4u + 4u);
  EXPECT_EQ(rel[9].question, "is the red circle to the left of the blue star?");
  EXPECT_EQ(rel[9].answer, "no");
  EXPECT_EQ(rel[11].question, "is the red circle above the blue star?");
  EXPECT_EQ(rel[11].answer, "yes");
  for (const auto& bad : std::vector<std::pair<std::string, std::string>>{
           {"a photo of a pink circle", "expected a colour at word 5 ('pink')"},
           {"a picture of a red circle", "expected 'photo'"},
           {"a photo of two red circle", "expected a plural shape"},
           {"a photo of a red circle to the left", "expected 'of'"},
           {"a photo of a red circle and", "expected an object"},
           {"a photo of a red circle above a blue star the end", "expected the end of the prompt"},
           {"", "expected 'a'"}}) {
    const std::string text = bad.first;
    EXPECT_THAT([&] { janus::PromptSpec::from_prompt(text); },
                testing::ThrowsMessage<janus::InputError>(testing::HasSubstr(bad.second)))
        << text;
  }
}

TEST(DataShapes, GeneratedFilesLoadThroughRealFormatReaders) {
  const auto d = janus::test::temp_dir("shapes");
  const auto r = janus::test::run(janus::test::tool("janus_data") + " shapes --out " + d +
                                  "/a --train 24 --val 8 --size 64 --seed 3 --videos 4 --clouds 4 --cloud-points 256");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string a = d + "/a";
  // COCO captions
  const auto caps = janus::load_coco_captions(a + "/captions_train.json");
  EXPECT_GE(caps.size(), 24u * 3);
  janus::DatasetOptions o;
  o.image_root = a;
  auto cds = janus::make_caption_dataset(caps, o, "shapes");
  EXPECT_EQ(cds->get(0, 0).images[0].sizes(), (std::vector<int64_t>{3, 64, 64}));
  // VQA
  const auto vqa =
      janus::load_vqa(a + "/vqa/questions_train.json", a + "/vqa/annotations_train.json", "{subtype}/{id12}.png");
  ASSERT_GE(vqa.size(), 24u * 3);
  std::set<std::string> types;
  for (const auto& q : vqa) {
    EXPECT_EQ(q.answers.size(), 10u);
    types.insert(q.answer_type);
  }
  EXPECT_EQ(types, (std::set<std::string>{"number", "other", "yes/no"}));
  const auto vocab = janus::build_answer_vocab(vqa, 0);
  auto vds = janus::make_vqa_dataset(vqa, vocab, o);
  janus::LoaderOptions lo;
  lo.batch_size = 16;
  lo.num_workers = 2;
  janus::DataLoader vl(vds, lo);
  const auto vb = vl.next();
  EXPECT_EQ(vb.images.size(0), 16);
  EXPECT_GE(vb.answer_ids.min().item<int64_t>(), 0);
  // VQA answers agree with the checker's view of the image ("how many shapes").
  for (const auto& q : vqa) {
    if (q.question != "how many shapes are there?") continue;
    const auto det = janus::shapes_detect(janus::decode_image_file(a + "/" + q.file));
    EXPECT_EQ(std::to_string(det.size()), q.multiple_choice_answer) << q.file;
  }
  // NLVR2
  const auto nl = janus::load_nlvr2(a + "/nlvr2/train.jsonl");
  ASSERT_EQ(nl.size(), 24u);
  // Every statement is one of the five templates janus_eval breaks the accuracy down by.
  std::set<std::string> kinds;
  for (const auto& r : nl) {
    kinds.insert(janus::shapes_nlvr2_statement_kind(r.sentence));
    EXPECT_NE(janus::shapes_nlvr2_statement_kind(r.sentence), "") << r.sentence;
  }
  EXPECT_GE(kinds.size(), 3u);
  EXPECT_EQ(janus::shapes_nlvr2_statement_kind("there are three shapes in total"), "total_count");
  EXPECT_EQ(janus::shapes_nlvr2_statement_kind("the left image contains more shapes than the right image"),
            "left_more");
  EXPECT_EQ(janus::shapes_nlvr2_statement_kind("the right image has a red star"), "right_has");
  EXPECT_EQ(janus::shapes_nlvr2_statement_kind("there are three dogs"), "");
  EXPECT_EQ(janus::shapes_nlvr2_statement_kind("two cats and a dog"), "");
  auto nds = janus::make_nlvr2_dataset(nl, o);
  const auto ns = nds->get(3, 0);
  EXPECT_EQ(ns.images.size(), 2u);
  // GenEval prompts score 1 on their reference images
  const auto prompts = nlohmann::json::parse(janus::read_file(a + "/geneval/prompts_val.json"));
  ASSERT_EQ(prompts.size(), 8u);
  for (const auto& p : prompts) {
    const auto g = janus::shapes_geneval_check(janus::decode_image_file(a + "/" + p["reference"].get<std::string>()),
                                               janus::PromptSpec::from_json(p["spec"]));
    EXPECT_TRUE(g.correct) << p.dump();
    // ... and name every object the check counts (a prompt that leaves one out cannot be generated correctly).
    const auto spec = janus::PromptSpec::from_json(p["spec"]);
    EXPECT_EQ(p["prompt"].get<std::string>(), spec.prompt());
    for (const auto& o : spec.objects) {
      EXPECT_NE(p["prompt"].get<std::string>().find(o.colour + " " + o.shape), std::string::npos) << p.dump();
    }
    EXPECT_EQ(janus::PromptSpec::from_prompt(p["prompt"]).to_json(), spec.to_json()) << p.dump();
  }
  // The questions a prompt implies use the VQA generator's templates: wherever the generator asked the same
  // question about the same image, the prompt implies the generator's answer.
  {
    std::map<int64_t, std::map<std::string, std::string>> implied;
    for (const auto& p : prompts) {
      for (const auto& q : janus::shapes_prompt_questions(janus::PromptSpec::from_json(p["spec"]))) {
        implied[p["id"].get<int64_t>()][q.question] = q.answer;
      }
    }
    int64_t shared = 0;
    for (const auto& q :
         janus::load_vqa(a + "/vqa/questions_val.json", a + "/vqa/annotations_val.json", "{subtype}/{id12}.png")) {
      const auto& im = implied[q.image_id];
      const auto it = im.find(q.question);
      if (it == im.end()) continue;
      ++shared;
      EXPECT_EQ(it->second, q.multiple_choice_answer) << q.question << " (image " << q.image_id << ")";
    }
    EXPECT_GE(shared, 8) << "the implied questions should share templates with the VQA generator's";
  }
  // Videos and point clouds
  const auto vids = nlohmann::json::parse(janus::read_file(a + "/videos/captions_train.json"))["videos"];
  ASSERT_EQ(vids.size(), 4u);
  EXPECT_EQ(janus::read_video_frames(a + "/" + vids[0]["path"].get<std::string>(), 0).size(0), 8);
  const auto clouds = nlohmann::json::parse(janus::read_file(a + "/points/captions_train.json"))["clouds"];
  ASSERT_EQ(clouds.size(), 4u);
  EXPECT_EQ(janus::read_point_cloud(a + "/" + clouds[0]["file"].get<std::string>()).size(0), 256);
  // Determinism: same seed, same bytes.
  ASSERT_EQ(
      janus::test::run(janus::test::tool("janus_data") + " shapes --out " + d +
                       "/b --train 24 --val 8 --size 64 --seed 3 --videos 4 --clouds 4 --cloud-points 256 --threads 2")
          .exit_code,
      0);
  for (const std::string f : {"captions_train.json", "vqa/annotations_val.json", "nlvr2/train.jsonl",
                              "train/000000000007.png", "points/train/000002.ply", "geneval/prompts_val.json"}) {
    EXPECT_EQ(janus::read_file(a + "/" + f), janus::read_file(d + "/b/" + f)) << f;
  }
}

TEST(DataShapes, SolidPointClouds) {
  const auto s = janus::shapes_solid_points(0, 500, 1);
  EXPECT_NEAR(s.norm(2, 1).min().item<float>(), 0.5f, 1e-4);
  EXPECT_NEAR(s.norm(2, 1).max().item<float>(), 0.5f, 1e-4);
  const auto c = janus::shapes_solid_points(1, 500, 1);
  EXPECT_NEAR(c.abs().amax(1).min().item<float>(), 0.5f, 1e-5);  // every point on a face
  const auto t = janus::shapes_solid_points(4, 500, 1);
  const auto rxy = (t.select(1, 0).pow(2) + t.select(1, 1).pow(2)).sqrt();
  const auto tube = ((rxy - 0.35).pow(2) + t.select(1, 2).pow(2)).sqrt();
  EXPECT_NEAR(tube.max().item<float>(), 0.15f, 1e-4);
  EXPECT_FALSE(janus::shapes_solid_points(2, 10, 1).equal(janus::shapes_solid_points(2, 10, 2)));
  EXPECT_THROW(janus::shapes_solid_points(7, 10, 1), janus::InputError);
}

TEST(DataShapes, ConfigDrivenDatasets) {
  const auto d = janus::test::make_shapes_dir(janus::test::temp_dir("shapes_cfg"), 12, 4, 64);
  auto cfg = janus::Config::from_yaml("data:\n  format: shapes\n  train: " + d + "\n  val: " + d +
                                      "\nmodel:\n  image_size: 48\n");
  const auto train = janus::open_dataset(cfg, true);
  EXPECT_EQ(train->size(), 12 * 4);
  EXPECT_EQ(train->get(0, 1).images[0].sizes(), (std::vector<int64_t>{3, 48, 48}));
  EXPECT_EQ(janus::open_dataset(cfg, false)->size(), 4 * 4);
  janus::DataLoader l(train, janus::loader_options(cfg));
  EXPECT_EQ(l.next().images.size(0), std::min<int64_t>(32, 48));
  janus::DatasetOptions o;
  const auto vqa = janus::open_dataset("vqa", d + "/vqa/questions_val.json", "val", o);
  EXPECT_GT(vqa->size(), 0);
  EXPECT_EQ(vqa->get(0, 0).answers.size(), 10u);
  EXPECT_EQ(janus::open_dataset("nlvr2", d + "/nlvr2/train.jsonl", "train", o)->get(0, 0).images.size(), 2u);
  EXPECT_THROW(janus::open_dataset("nope", d, "train", o), janus::InputError);
}

// shapes_caption_probabilities enumerates the generator's hidden choices (object order, size-mention bits); the
// frequencies of shapes_captions over random object orders and seeds must match it.
TEST(Shapes, CaptionProbabilitiesMatchTheGeneratorsFrequencies) {
  std::mt19937_64 rng(7);
  for (int64_t index : {0, 1, 2, 3, 5, 8}) {
    auto scene = janus::make_shapes_scene(0, "val", index, 32);
    const auto p = janus::shapes_caption_probabilities(scene);
    std::map<std::string, double> freq;
    const int n = 6000;
    for (int k = 0; k < n; ++k) {
      auto s = scene;
      std::shuffle(s.objects.begin(), s.objects.end(), rng);
      const auto caps = janus::shapes_captions(s, static_cast<uint64_t>(k) + 1000);
      for (const auto& c : std::set<std::string>(caps.begin(), caps.end())) freq[c] += 1.0 / n;
    }
    for (const auto& [t, f] : freq) {
      ASSERT_TRUE(p.count(t)) << "scene " << index << ": '" << t << "' has no probability";
      EXPECT_NEAR(p.at(t), f, 0.03) << "scene " << index << ": " << t;
    }
    for (const auto& [t, q] : p) {
      EXPECT_GT(q, 0.0);
      EXPECT_LE(q, 1.0);
      if (q > 0.05) {
        EXPECT_TRUE(freq.count(t)) << "'" << t << "' never sampled";
      }
    }
    // The scene's own captions are possible.
    for (const auto& c : janus::shapes_captions(scene, 0)) EXPECT_TRUE(p.count(c)) << c;
  }
  // One object: its sized caption is certain, "there is one ..." mentions the size half of the time.
  janus::ShapesScene one;
  one.image_size = 32;
  janus::ShapeObject o;
  o.colour = 0;  // red
  o.kind = 0;    // circle
  o.size = 1;    // large
  o.cx = 16;
  o.cy = 16;
  one.objects = {o};
  const auto p = janus::shapes_caption_probabilities(one);
  EXPECT_DOUBLE_EQ(p.at("a large red circle"), 1.0);
  EXPECT_DOUBLE_EQ(p.at("there is one large red circle in the image"), 0.5);
  EXPECT_DOUBLE_EQ(p.at("there is one red circle in the image"), 0.5);
  EXPECT_DOUBLE_EQ(p.at("a red circle in the centre of the picture"), 1.0);
  EXPECT_EQ(p.size(), 5u);
}

// The captions file's scene objects read back into the scenes they were written from; bad entries name the image.
TEST(Shapes, SceneFromCaptionsFileEntry) {
  const auto root = janus::test::make_shapes_dir(janus::test::temp_dir("shapes_scene_json"), 3, 3);
  const auto j = nlohmann::json::parse(janus::read_file(root + "/captions_val.json"));
  for (const auto& im : j.at("images")) {
    const auto got = janus::shapes_scene_from_json(im);
    const auto want = janus::make_shapes_scene(0, "val", im.at("id").get<int64_t>() - 1, 32);
    ASSERT_EQ(got.objects.size(), want.objects.size());
    for (size_t k = 0; k < got.objects.size(); ++k) {
      EXPECT_EQ(got.objects[k].colour, want.objects[k].colour);
      EXPECT_EQ(got.objects[k].kind, want.objects[k].kind);
      EXPECT_EQ(got.objects[k].size, want.objects[k].size);
      EXPECT_DOUBLE_EQ(got.objects[k].cx, want.objects[k].cx);
      EXPECT_DOUBLE_EQ(got.objects[k].cy, want.objects[k].cy);
    }
    EXPECT_EQ(janus::shapes_caption_probabilities(got), janus::shapes_caption_probabilities(want));
  }
  auto bad = j.at("images")[0];
  bad["objects"][0]["colour"] = "purple";
  try {
    janus::shapes_scene_from_json(bad);
    FAIL() << "expected an InputError";
  } catch (const janus::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("unknown colour \"purple\""), std::string::npos) << e.what();
  }
  bad.erase("objects");
  EXPECT_THROW(janus::shapes_scene_from_json(bad), janus::InputError);
}

// shapes_caption_position: the generator's own region and relation captions check out against their scenes; a
// flipped direction, a swapped axis, a wrong third or an object the scene lacks do not (or are not counted).
TEST(Shapes, CaptionPositionCheck) {
  using Kind = janus::ShapesPositionCheck::Kind;
  int regions = 0, relations = 0;
  for (int64_t i = 0; i < 60; ++i) {
    const auto sc = janus::make_shapes_scene(3, "val", i, 32);
    for (const auto& c : janus::shapes_captions(sc, 7)) {
      const auto pc = janus::shapes_caption_position(sc, c);
      if (pc.kind == Kind::kRegion) {
        ++regions;
        EXPECT_TRUE(pc.horizontal && pc.vertical && pc.correct) << c;
      } else if (pc.kind == Kind::kRelation) {
        ++relations;
        EXPECT_TRUE(pc.axis && pc.correct) << c;
      }
    }
  }
  EXPECT_GT(regions, 5);
  EXPECT_GT(relations, 20);
  // Hand-made scene: red circle left of (and level with) a blue square; one green star alone, top right.
  janus::ShapesScene s;
  s.image_size = 32;
  janus::ShapeObject red, blue;
  red.colour = 0, red.kind = 0, red.cx = 6, red.cy = 16;       // red circle
  blue.colour = 4, blue.kind = 1, blue.cx = 26, blue.cy = 15;  // blue square
  s.objects = {red, blue};
  const auto check = [&](const janus::ShapesScene& sc, const std::string& c) {
    return janus::shapes_caption_position(sc, c);
  };
  auto pc = check(s, "a small red circle to the left of a blue square");
  EXPECT_TRUE(pc.kind == Kind::kRelation && pc.axis && pc.correct);
  pc = check(s, "a blue square to the left of a red circle");
  EXPECT_TRUE(pc.kind == Kind::kRelation && pc.axis && !pc.correct);
  pc = check(s, "a red circle above a blue square");
  EXPECT_TRUE(pc.kind == Kind::kRelation && !pc.axis && !pc.correct);
  EXPECT_EQ(check(s, "a red star to the left of a blue square").kind, Kind::kNone);  // no red star
  EXPECT_EQ(check(s, "two shapes: a red circle and a blue square").kind, Kind::kNone);
  EXPECT_EQ(check(s, "a red circle in the left of the picture").kind, Kind::kNone);  // region needs one object
  janus::ShapesScene one;
  one.image_size = 32;
  janus::ShapeObject star;
  star.colour = 2, star.kind = 3, star.cx = 27, star.cy = 4;
  one.objects = {star};
  pc = check(one, "a green star in the top right of the picture");
  EXPECT_TRUE(pc.kind == Kind::kRegion && pc.horizontal && pc.vertical && pc.correct);
  pc = check(one, "a green star in the top left of the picture");
  EXPECT_TRUE(pc.kind == Kind::kRegion && !pc.horizontal && pc.vertical && !pc.correct);
  pc = check(one, "a green star in the centre of the picture");
  EXPECT_TRUE(pc.kind == Kind::kRegion && !pc.horizontal && !pc.vertical);
  EXPECT_EQ(check(one, "a green star in the upper corner of the picture").kind, Kind::kNone);
}
