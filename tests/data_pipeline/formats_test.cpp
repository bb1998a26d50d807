// Readers for the real formats, on tiny files written at run time.
#include <filesystem>
#include <fstream>
#include <random>

#include <gtest/gtest.h>

#include "janus/core/fs.h"
#include "janus/data/formats.h"
#include "janus/data/image.h"
#include "test_util.h"

namespace fs = std::filesystem;
using janus::test::temp_dir;

namespace {

void write(const std::string& path, const std::string& text) { janus::write_file_atomic(path, text); }

at::Tensor solid_image(int h, int w, uint8_t r, uint8_t g, uint8_t b) {
  auto t = at::empty({h, w, 3}, at::kByte);
  t.select(2, 0).fill_(r);
  t.select(2, 1).fill_(g);
  t.select(2, 2).fill_(b);
  return t;
}

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(DataFormats, CocoCaptions) {
  const auto d = temp_dir("coco");
  write(d + "/c.json", R"({"images":[{"id":7,"file_name":"a.png"},{"id":9,"file_name":"b.png"}],
    "annotations":[{"id":1,"image_id":7,"caption":"a red circle"},{"id":2,"image_id":9,"caption":"x"},
                   {"id":3,"image_id":7,"caption":"a circle"}]})");
  const auto r = janus::load_coco_captions(d + "/c.json");
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].file, "a.png");
  EXPECT_EQ(r[1].file, "b.png");
  EXPECT_EQ(r[2].caption, "a circle");
  EXPECT_EQ(r[2].image_id, 7);

  write(d + "/bad.json", R"({"images":[{"id":7,"file_name":"a.png"}],
    "annotations":[{"id":1,"image_id":7,"caption":"ok"},{"id":2,"image_id":7,"caption":5}]})");
  const auto e = error_of([&] { janus::load_coco_captions(d + "/bad.json"); });
  EXPECT_NE(e.find("bad.json"), std::string::npos) << e;
  EXPECT_NE(e.find("$.annotations[1].caption"), std::string::npos) << e;
  EXPECT_NE(e.find("expected a string"), std::string::npos) << e;

  write(d + "/bad2.json", R"({"images":[{"id":7,"file_name":"a.png"}],"annotations":[{"image_id":8,"caption":"x"}]})");
  EXPECT_NE(error_of([&] { janus::load_coco_captions(d + "/bad2.json"); }).find("$.annotations[0].image_id"),
            std::string::npos);
  write(d + "/bad3.json", R"({"images": 3})");
  EXPECT_NE(error_of([&] { janus::load_coco_captions(d + "/bad3.json"); }).find("$.images: expected an array"),
            std::string::npos);
  write(d + "/bad4.json", "{not json");
  EXPECT_THROW(janus::load_coco_captions(d + "/bad4.json"), janus::InputError);
}

TEST(DataFormats, KarpathySplit) {
  const auto d = temp_dir("karpathy");
  write(d + "/k.json", R"({"images":[
    {"filepath":"val2014","filename":"x.jpg","split":"test","cocoid":5,"sentences":[{"raw":"one"},{"raw":"two"}]},
    {"filepath":"train2014","filename":"y.jpg","split":"train","cocoid":6,"sentences":[{"raw":"three"}]}]})");
  const auto test = janus::load_karpathy(d + "/k.json", "test");
  ASSERT_EQ(test.size(), 2u);
  EXPECT_EQ(test[0].file, "val2014/x.jpg");
  EXPECT_EQ(test[1].caption, "two");
  EXPECT_EQ(janus::load_karpathy(d + "/k.json", "").size(), 3u);
  write(d + "/b.json", R"({"images":[{"filename":"x.jpg","split":"test","sentences":[]}]})");
  EXPECT_NE(error_of([&] { janus::load_karpathy(d + "/b.json", ""); }).find("$.images[0]"), std::string::npos);
}

TEST(DataFormats, VqaV2AndAnswerVocab) {
  const auto d = temp_dir("vqa");
  write(d + "/q.json", R"({"data_subtype":"val2014","questions":[
    {"image_id":42,"question":"what color?","question_id":420},
    {"image_id":42,"question":"how many?","question_id":421},
    {"image_id":43,"question":"is it?","question_id":430}]})");
  auto ans = [](const std::vector<std::string>& a) {
    std::string s = "[";
    for (size_t i = 0; i < a.size(); ++i) s += (i ? "," : "") + std::string(R"({"answer":")") + a[i] + "\"}";
    return s + "]";
  };
  const std::vector<std::string> red(10, "red"), two{"2", "2", "2", "2", "2", "2", "2", "3", "3", "two"},
      yes(10, "yes");
  write(d + "/a.json",
        std::string(R"({"annotations":[)") +
            R"({"question_id":420,"image_id":42,"answer_type":"other","multiple_choice_answer":"red","answers":)" +
            ans(red) + "}," +
            R"({"question_id":421,"image_id":42,"answer_type":"number","multiple_choice_answer":"2","answers":)" +
            ans(two) + "}," +
            R"({"question_id":430,"image_id":43,"answer_type":"yes/no","multiple_choice_answer":"Yes","answers":)" +
            ans(yes) + "}]}");
  const auto r = janus::load_vqa(d + "/q.json", d + "/a.json");
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].file, "COCO_val2014_000000000042.jpg");
  EXPECT_EQ(r[1].answers.size(), 10u);
  EXPECT_EQ(r[1].answers[9], "two");
  EXPECT_EQ(r[2].answer_type, "yes/no");
  // Frequency over all 10 answers: yes 10, red 10, 2 x7, 3 x2, two x1 -> ties broken alphabetically.
  const auto v = janus::build_answer_vocab(r, 3, 1, true);
  ASSERT_EQ(v.answers.size(), 3u);
  EXPECT_EQ(v.answers[0], "red");
  EXPECT_EQ(v.answers[1], "yes");
  EXPECT_EQ(v.answers[2], "2");
  EXPECT_EQ(v.counts[2], 7);
  EXPECT_EQ(v.id("3"), -1);
  const auto mc = janus::build_answer_vocab(r, 0, 1, false);
  EXPECT_EQ(mc.answers.size(), 3u);
  EXPECT_GE(mc.id("yes"), 0);  // normalised from "Yes"

  write(
      d + "/a9.json",
      std::string(
          R"({"annotations":[{"question_id":420,"image_id":42,"answer_type":"other","multiple_choice_answer":"red","answers":)") +
          ans(std::vector<std::string>(9, "red")) + "}]}");
  const auto e = error_of([&] { janus::load_vqa(d + "/q.json", d + "/a9.json"); });
  EXPECT_NE(e.find("a9.json"), std::string::npos) << e;
  EXPECT_NE(e.find("$.annotations[0].answers: expected 10 answers, got 9"), std::string::npos) << e;
}

TEST(DataFormats, Nlvr2Jsonl) {
  const auto d = temp_dir("nlvr2");
  write(d + "/n.jsonl", R"({"identifier":"dev-850-0-1","sentence":"two dogs","label":"True"}
{"identifier":"x","sentence":"s","label":false,"left_image":"l.png","right_image":"r.png"}
)");
  const auto r = janus::load_nlvr2(d + "/n.jsonl");
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].left, "dev-850-0-img0.png");
  EXPECT_EQ(r[0].right, "dev-850-0-img1.png");
  EXPECT_EQ(r[0].label, 1);
  EXPECT_EQ(r[1].label, 0);
  EXPECT_EQ(r[1].right, "r.png");
  write(d + "/b.jsonl",
        "{\"identifier\":\"a-1-2-3\",\"sentence\":\"s\",\"label\":\"True\"}\n{\"identifier\":\"a-1-2-3\",\"sentence\":"
        "\"s\",\"label\":\"maybe\"}\n");
  const auto e = error_of([&] { janus::load_nlvr2(d + "/b.jsonl"); });
  EXPECT_NE(e.find("b.jsonl:2: $.label"), std::string::npos) << e;
}

TEST(DataFormats, TextCorpus) {
  const auto d = temp_dir("text");
  write(d + "/c.txt", "one line\r\n\n  \nsecond line\n");
  const auto l = janus::load_text_corpus(d + "/c.txt");
  ASSERT_EQ(l.size(), 2u);
  EXPECT_EQ(l[0], "one line");
  EXPECT_EQ(l[1], "second line");
}

TEST(DataFormats, PathsStayUnderRoot) {
  const auto d = temp_dir("paths");
  fs::create_directories(d + "/root/sub");
  write(d + "/outside.png", "x");
  EXPECT_NO_THROW(janus::resolve_under(d + "/root", "sub/../a.png"));
  EXPECT_THROW(janus::resolve_under(d + "/root", "../outside.png"), janus::InputError);
  EXPECT_THROW(janus::resolve_under(d + "/root", "/etc/passwd"), janus::InputError);
  fs::create_directory_symlink(d, d + "/root/link");
  EXPECT_THROW(janus::resolve_under(d + "/root", "link/outside.png"), janus::InputError);
  janus::PathPolicy allow;
  allow.allow_escape = true;
  EXPECT_NO_THROW(janus::resolve_under(d + "/root", "link/outside.png", allow));
}

TEST(DataFormats, ImagePipeline) {
  const auto d = temp_dir("img");
  // 40 x 20 (H x W), left half white, right half black.
  auto img = solid_image(40, 20, 0, 0, 0);
  img.narrow(1, 0, 10).fill_(255);
  janus::write_image_file(d + "/a.png", img);
  const auto dec = janus::decode_image_file(d + "/a.png");
  ASSERT_TRUE(dec.equal(img));
  std::mt19937_64 rng(0);
  janus::ImageTransform t;
  t.resize_short = 10;
  t.crop = 8;
  auto x = janus::transform_image(dec, t, rng);
  ASSERT_EQ(x.sizes(), (std::vector<int64_t>{3, 8, 8}));
  EXPECT_NEAR(x[0][4][0].item<float>(), 1.0, 1e-5);   // white -> (1 - 0.5) / 0.5
  EXPECT_NEAR(x[1][4][7].item<float>(), -1.0, 1e-5);  // black
  t.resize_short = 0;
  t.crop = 0;
  t.random_flip = true;
  int flipped = 0;
  for (uint64_t s = 0; s < 40; ++s) {
    std::mt19937_64 r(s);
    flipped += janus::transform_image(dec, t, r)[0][0][0].item<float>() < 0;
  }
  EXPECT_GT(flipped, 5);
  EXPECT_LT(flipped, 35);
  write(d + "/bad.png", "not a png");
  EXPECT_THROW(janus::decode_image_file(d + "/bad.png"), janus::BadSampleError);
  EXPECT_THROW(janus::decode_image_file(d + "/missing.png"), janus::BadSampleError);
}

TEST(DataFormats, ImageFolderDataset) {
  const auto d = temp_dir("folder");
  janus::write_image_file(d + "/cat/1.png", solid_image(12, 16, 255, 0, 0));
  janus::write_image_file(d + "/cat/2.png", solid_image(12, 16, 255, 0, 0));
  janus::write_image_file(d + "/dog/1.jpg", solid_image(12, 16, 0, 0, 255));
  write(d + "/dog/readme.txt", "ignored");
  janus::DatasetOptions o;
  o.transform.crop = 8;
  const auto ds = janus::make_image_folder_dataset(d, o);
  ASSERT_EQ(ds->size(), 3);
  const auto s = ds->get(2, 0);
  EXPECT_EQ(s.label, 1);
  EXPECT_EQ(s.text, "dog");
  ASSERT_EQ(s.images.size(), 1u);
  EXPECT_EQ(s.images[0].sizes(), (std::vector<int64_t>{3, 8, 8}));
  EXPECT_GT(s.images[0][2].mean().item<float>(), 0.9);  // blue channel
}

TEST(DataFormats, PointClouds) {
  const auto d = temp_dir("points");
  write(d + "/a.ply",
        "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nelement face 0\nproperty list uchar int vertex_indices\nend_header\n"
        "0 0 0 255\n1 2 3 0\n-1 0.5 2 7\n");
  const auto a = janus::read_point_cloud(d + "/a.ply");
  ASSERT_EQ(a.sizes(), (std::vector<int64_t>{3, 3}));
  EXPECT_FLOAT_EQ(a[2][1].item<float>(), 0.5f);
  const auto pts = at::randn({100, 3});
  janus::write_ply_binary(d + "/b.ply", pts);
  EXPECT_TRUE(janus::read_point_cloud(d + "/b.ply").equal(pts));
  // binary with a double property in between
  {
    std::string hdr =
        "ply\nformat binary_little_endian 1.0\nelement vertex 2\nproperty double x\nproperty uchar q\n"
        "property float y\nproperty float z\nend_header\n";
    std::string body;
    auto put = [&](auto v) { body.append(reinterpret_cast<const char*>(&v), sizeof(v)); };
    put(1.5);
    put(uint8_t{9});
    put(2.f);
    put(3.f);
    put(-1.0);
    put(uint8_t{1});
    put(0.f);
    put(4.f);
    write(d + "/c.ply", hdr + body);
    const auto c = janus::read_point_cloud(d + "/c.ply");
    EXPECT_TRUE(c.equal(at::tensor({1.5f, 2.f, 3.f, -1.f, 0.f, 4.f}).view({2, 3})));
    write(d + "/trunc.ply", hdr + body.substr(0, body.size() - 3));
    EXPECT_THROW(janus::read_point_cloud(d + "/trunc.ply"), janus::BadSampleError);
  }
  write(d + "/d.xyz", "# comment\n1 2 3\n4 5 6 0.1 0.2 0.3\n");
  EXPECT_EQ(janus::read_point_cloud(d + "/d.xyz").size(0), 2);
  write(d + "/e.xyz", "1 2\n");
  EXPECT_THROW(janus::read_point_cloud(d + "/e.xyz"), janus::BadSampleError);
  write(d + "/f.ply",
        "ply\nformat binary_big_endian 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float "
        "z\nend_header\n");
  EXPECT_THROW(janus::read_point_cloud(d + "/f.ply"), janus::BadSampleError);
  std::mt19937_64 rng(1);
  const auto s = janus::sample_points(pts, 64, rng);
  ASSERT_EQ(s.sizes(), (std::vector<int64_t>{64, 3}));
  EXPECT_NEAR(s.norm(2, 1).max().item<float>(), 1.0f, 1e-5);
  EXPECT_LT(s.mean(0).abs().max().item<float>(), 1e-5);
  EXPECT_EQ(janus::sample_points(pts.narrow(0, 0, 10), 32, rng).size(0), 32);
}

TEST(DataFormats, VideoFramesAndFiles) {
  const auto d = temp_dir("video");
  std::vector<at::Tensor> frames;
  for (int i = 0; i < 10; ++i) {
    frames.push_back(
        solid_image(16, 16, static_cast<uint8_t>(i * 25), static_cast<uint8_t>(i * 25), static_cast<uint8_t>(i * 25)));
    janus::write_image_file(d + "/clip/" + std::to_string(100 + i) + ".png", frames.back());
  }
  const auto f = janus::read_video_frames(d + "/clip", 4);
  ASSERT_EQ(f.sizes(), (std::vector<int64_t>{4, 16, 16, 3}));
  const auto idx = janus::sample_frame_indices(10, 4);
  ASSERT_EQ(idx, (std::vector<int64_t>{1, 3, 6, 8}));
  for (int k = 0; k < 4; ++k) EXPECT_TRUE(f[k].equal(frames[static_cast<size_t>(idx[static_cast<size_t>(k)])]));
  EXPECT_EQ(janus::sample_frame_indices(2, 4), (std::vector<int64_t>{0, 0, 1, 1}));

  janus::write_video_file(d + "/v.avi", at::stack(frames), 10);
  const auto v = janus::read_video_frames(d + "/v.avi", 5);
  ASSERT_EQ(v.sizes(), (std::vector<int64_t>{5, 16, 16, 3}));
  // MJPG is lossy: the grey level of sampled frame k is about 25 * idx.
  const auto vi = janus::sample_frame_indices(10, 5);
  for (int k = 0; k < 5; ++k) {
    EXPECT_NEAR(v[k].select(2, 0).to(at::kFloat).mean().item<float>(), 25.0 * vi[static_cast<size_t>(k)], 6.0);
  }
  write(d + "/bad.avi", "garbage");
  EXPECT_THROW(janus::read_video_frames(d + "/bad.avi", 4), janus::BadSampleError);

  janus::DatasetOptions o;
  o.image_root = d;
  o.num_frames = 3;
  const auto ds = janus::make_video_dataset({"clip", "v.avi"}, {"red fading in", "same"}, o);
  const auto s = ds->get(0, 0);
  EXPECT_EQ(s.frames.sizes(), (std::vector<int64_t>{3, 3, 16, 16}));
  EXPECT_EQ(s.text, "red fading in");
}
