// Data faults (issue 13): a Shapes dataset with corrupt images and malformed annotation entries mixed in. Up to
// data.max_bad_fraction the loader skips and counts them and a full pass completes with every good sample
// delivered; above it, loading stops with an InputError naming the count. Exercised through the config path the
// trainer uses (open_dataset(cfg) + loader_options(cfg) + DataLoader).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "janus/core/config.h"
#include "janus/core/error.h"
#include "janus/data/factory.h"
#include "janus/data/formats.h"
#include "janus/data/loader.h"
#include "janus/data/shapes.h"
#include "test_util.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}
void put(const std::string& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << bytes;
}

// A fresh Shapes set (train split only) of `n` images at 32 px.
std::string make_shapes(int64_t n, const std::string& tag) {
  return janus::test::make_shapes_dir(janus::test::temp_dir(tag), n, 0, 32, 5);
}

// Damages the image files of images `ids` (1-based image ids) in six ways, cycling: truncated PNG, random bytes,
// empty file, deleted, text, a symlink leaving the dataset root. Returns the damaged relative file names.
std::set<std::string> corrupt_images(const std::string& dir, const std::vector<int64_t>& ids) {
  std::set<std::string> bad;
  std::mt19937 rng(11);
  for (size_t k = 0; k < ids.size(); ++k) {
    const std::string rel = fmt::format("train/{:012d}.png", ids[k]);
    const std::string path = dir + "/" + rel;
    const std::string bytes = slurp(path);
    switch (k % 6) {
      case 0:
        put(path, bytes.substr(0, bytes.size() * 2 / 5));
        break;
      case 1: {
        std::string junk(bytes.size(), '\0');
        for (auto& c : junk) c = static_cast<char>(rng());
        put(path, junk);
        break;
      }
      case 2:
        put(path, "");
        break;
      case 3:
        fs::remove(path);
        break;
      case 4:
        put(path, "this is not an image\n");
        break;
      case 5: {
        const std::string outside = janus::test::temp_dir("outside") + "/x.png";
        put(outside, bytes);  // a valid image, but outside the root: must not be read
        fs::remove(path);
        fs::create_symlink(outside, path);
        break;
      }
    }
    bad.insert(rel);
  }
  return bad;
}

// Replaces annotations `idx` of captions_train.json with malformed entries (five kinds, cycling). Returns the
// image file of each annotation that survives, in order (what a lenient load must keep).
std::vector<std::string> malform_captions(const std::string& dir, const std::set<size_t>& idx) {
  const std::string path = dir + "/captions_train.json";
  json doc = json::parse(slurp(path));
  std::map<int64_t, std::string> files;
  for (const auto& im : doc["images"]) files[im["id"].get<int64_t>()] = im["file_name"].get<std::string>();
  std::vector<std::string> kept;
  size_t k = 0;
  for (size_t i = 0; i < doc["annotations"].size(); ++i) {
    json& a = doc["annotations"][i];
    if (!idx.count(i)) {
      kept.push_back(files.at(a["image_id"].get<int64_t>()));
      continue;
    }
    switch (k++ % 5) {
      case 0:
        a["caption"] = 7;
        break;
      case 1:
        a["image_id"] = 987654321;  // matches no image
        break;
      case 2:
        a.erase("caption");
        break;
      case 3:
        a["image_id"] = "one";
        break;
      case 4:
        a = nullptr;
        break;
    }
  }
  put(path, doc.dump());
  return kept;
}

janus::Config shapes_config(const std::string& dir, double max_bad_fraction) {
  janus::Config c;
  c.data.format = "shapes";
  c.data.train = dir;
  c.data.batch_size = 16;
  c.data.num_workers = 2;
  c.data.max_bad_fraction = max_bad_fraction;
  c.model.image_size = 32;
  c.train.seed = 3;
  return c;
}

struct Pass {
  int64_t delivered = 0;
  int64_t skipped = 0;
  std::set<std::string> files;  // image files delivered
};

// One epoch (the loader's epoch 0) through the loader; checks every batch's tensors.
Pass one_epoch(janus::DataLoader& loader, const std::string& root) {
  Pass p;
  for (int64_t b = 0; b < loader.batches_per_epoch(); ++b) {
    const auto batch = loader.next();
    EXPECT_EQ(batch.epoch, 0);
    p.delivered += batch.size();
    p.skipped += batch.skipped;
    if (batch.size() > 0) {
      EXPECT_EQ(batch.images.sizes(), (std::vector<int64_t>{batch.size(), 3, 32, 32}));
      EXPECT_TRUE(batch.images.isfinite().all().item<bool>());
    }
    for (const auto& s : batch.samples) p.files.insert(fs::path(s.image_paths.at(0)).lexically_relative(root).string());
  }
  return p;
}

}  // namespace

TEST(DataFaults, FivePercentCorruptImagesAndMalformedAnnotationsAreSkippedAndCounted) {
  const auto dir = make_shapes(100, "faults5");  // 100 images x 4 captions = 400 samples
  const auto bad_files = corrupt_images(dir, {3, 17, 42, 66, 90});  // 5 % of the images
  std::set<size_t> bad_ann;
  for (size_t i = 7; i < 400; i += 40) bad_ann.insert(i);  // 10 of 400 annotations
  const auto kept = malform_captions(dir, bad_ann);
  ASSERT_EQ(kept.size(), 390u);
  int64_t expect_bad = 0;
  for (const auto& f : kept) expect_bad += bad_files.count(f);
  ASSERT_GT(expect_bad, 10);

  // Strict readers still refuse the file (naming the first bad entry); the config path skips and counts.
  EXPECT_THROW(janus::load_coco_captions(dir + "/captions_train.json"), janus::InputError);
  const auto cfg = shapes_config(dir, 0.15);
  janus::EntryReport report;
  const auto ds = janus::open_dataset(cfg, true, &report);
  EXPECT_EQ(report.entries, 100 + 400);
  EXPECT_EQ(report.skipped, 10);
  ASSERT_EQ(report.examples.size(), 5u);
  EXPECT_NE(report.examples[0].find("$.annotations[7].caption: expected a string"), std::string::npos)
      << report.examples[0];
  ASSERT_EQ(ds->size(), 390);

  janus::DataLoader loader(ds, janus::loader_options(cfg));
  const Pass p = one_epoch(loader, dir);
  EXPECT_EQ(p.skipped, expect_bad);
  EXPECT_EQ(p.delivered, 390 - expect_bad);
  EXPECT_EQ(loader.bad_samples(), expect_bad);
  EXPECT_EQ(loader.seen_samples(), 390);
  for (const auto& f : bad_files) EXPECT_EQ(p.files.count(f), 0u) << f;
  std::set<std::string> good(kept.begin(), kept.end());
  for (const auto& f : bad_files) good.erase(f);
  EXPECT_EQ(p.files, good);  // every readable image was delivered
  // The next epoch goes on and counts again.
  const auto b = loader.next();
  EXPECT_EQ(b.epoch, 1);
}

TEST(DataFaults, CorruptImagesAboveMaxBadFractionStopTheLoader) {
  const auto dir = make_shapes(60, "faults30");
  std::vector<int64_t> ids;
  for (int64_t i = 1; i <= 60; i += 3) ids.push_back(i);  // 20 of 60 images = 33 %
  corrupt_images(dir, ids);
  const auto cfg = shapes_config(dir, 0.15);
  const auto ds = janus::open_dataset(cfg, true);
  janus::DataLoader loader(ds, janus::loader_options(cfg));
  std::string error;
  int64_t batches = 0;
  try {
    for (; batches < 2 * loader.batches_per_epoch(); ++batches) loader.next();
  } catch (const janus::InputError& e) {
    error = e.what();
  }
  ASSERT_FALSE(error.empty()) << "no error after " << batches << " batches";
  EXPECT_LT(batches, loader.batches_per_epoch());  // stopped within the first epoch
  EXPECT_NE(error.find("samples of shapes-train were unreadable, more than data.max_bad_fraction = 0.15"),
            std::string::npos)
      << error;
  EXPECT_GT(loader.bad_samples(), 0.15 * loader.seen_samples());
}

TEST(DataFaults, MalformedAnnotationsAboveMaxBadFractionStopWithTheCount) {
  const auto dir = make_shapes(25, "faultsann");  // 25 images, 100 annotations
  std::set<size_t> bad_ann;
  for (size_t i = 0; i < 100; i += 5) bad_ann.insert(i);  // 20 of 125 entries = 16 %
  malform_captions(dir, bad_ann);
  try {
    janus::open_dataset(shapes_config(dir, 0.15), true);
    FAIL() << "no error";
  } catch (const janus::InputError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("20 of 125 annotation entries were malformed, more than data.max_bad_fraction 0.15"),
              std::string::npos)
        << m;
    EXPECT_NE(m.find("$.annotations[0].caption"), std::string::npos) << m;
  }
  janus::EntryReport r;
  EXPECT_EQ(janus::open_dataset(shapes_config(dir, 0.2), true, &r)->size(), 80);
  EXPECT_EQ(r.skipped, 20);
}

TEST(DataFaults, VqaAndNlvr2MalformedEntriesAreSkippedAndCounted) {
  const auto dir = make_shapes(20, "faultsvqa");
  // VQA: a question with a string id (its annotation then matches nothing: 2 skipped), an annotation with 9
  // answers (the annotation and its now unannotated question: 2), a duplicate annotation (1).
  const std::string qp = dir + "/vqa/questions_train.json", ap = dir + "/vqa/annotations_train.json";
  json q = json::parse(slurp(qp)), a = json::parse(slurp(ap));
  const size_t nq = q["questions"].size(), na = a["annotations"].size();
  ASSERT_EQ(nq, na);
  ASSERT_GT(nq, 10u);
  q["questions"][2]["question_id"] = "x";
  a["annotations"][5]["answers"].erase(0);
  a["annotations"].push_back(a["annotations"][7]);
  put(qp, q.dump());
  put(ap, a.dump());
  EXPECT_THROW(janus::load_vqa(qp, ap), janus::InputError);
  janus::EntryReport vr;
  const auto recs = janus::load_vqa(qp, ap, "{subtype}/{id12}.png", &vr);
  EXPECT_EQ(vr.entries, static_cast<int64_t>(nq + na + 1));
  EXPECT_EQ(vr.skipped, 5);
  EXPECT_EQ(recs.size(), nq - 2);
  for (const auto& r : recs) EXPECT_EQ(r.answers.size(), 10u);
  auto c = shapes_config(dir, 0.1);
  c.data.format = "vqa";
  c.data.train = qp;
  janus::EntryReport cr;
  const auto ds = janus::open_dataset(c, true, &cr);
  EXPECT_EQ(cr.skipped, 5);
  EXPECT_EQ(ds->size(), static_cast<int64_t>(nq - 2));
  janus::DataLoader vl(ds, janus::loader_options(c));
  int64_t n = 0;
  for (int64_t b = 0; b < vl.batches_per_epoch(); ++b) n += vl.next().size();
  EXPECT_EQ(n, ds->size());

  // NLVR2: an unparsable line, a bad label, a missing sentence; blank lines are not entries.
  const std::string np = dir + "/nlvr2/train.jsonl";
  std::string text = slurp(np);
  if (!text.empty() && text.back() != '\n') text += '\n';
  const int64_t lines = std::count(text.begin(), text.end(), '\n');  // shapes writes no blank lines
  ASSERT_EQ(lines, 20);
  text += "{not json\n\n{\"identifier\": \"a-0-0-0\", \"sentence\": \"s\", \"label\": \"maybe\"}\n"
          "{\"identifier\": \"a-0-0-1\", \"label\": true}\n";
  put(np, text);
  EXPECT_THROW(janus::load_nlvr2(np), janus::InputError);
  janus::EntryReport nr;
  EXPECT_EQ(janus::load_nlvr2(np, &nr).size(), static_cast<size_t>(lines));
  EXPECT_EQ(nr.entries, lines + 3);
  EXPECT_EQ(nr.skipped, 3);
  EXPECT_NE(nr.examples.at(0).find("train.jsonl:" + std::to_string(lines + 1) + ": $: expected a JSON object"),
            std::string::npos)
      << nr.examples.at(0);
}

// Fuzz finding (coco_captions_fuzz, 2026-11-25): a number too large for a double (1e99999) made nlohmann::json throw
// out_of_range, which escaped the readers (only parse_error was caught) and terminated the process.
TEST(DataFaults, NumberOverflowInAnnotationJsonIsAnInputError) {
  const auto dir = janus::test::temp_dir("overflow");
  put(dir + "/c.json", "{\"images\": [3333333.3333333333333366e33333]}");
  try {
    janus::load_coco_captions(dir + "/c.json");
    FAIL() << "no error";
  } catch (const janus::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("not valid JSON"), std::string::npos) << e.what();
  }
  janus::EntryReport r;
  EXPECT_THROW(janus::load_coco_captions(dir + "/c.json", &r), janus::InputError);  // the file as a whole is bad
  put(dir + "/q.json", "{\"questions\": [{\"question_id\": 1e400}]}");
  EXPECT_THROW(janus::load_vqa(dir + "/q.json", ""), janus::InputError);
  put(dir + "/n.jsonl",
      "{\"identifier\": \"a-0-0-0\", \"sentence\": \"s\", \"label\": true}\n{\"identifier\": -1e99999}\n");
  EXPECT_THROW(janus::load_nlvr2(dir + "/n.jsonl"), janus::InputError);
  janus::EntryReport nr;
  EXPECT_EQ(janus::load_nlvr2(dir + "/n.jsonl", &nr).size(), 1u);
  EXPECT_EQ(nr.skipped, 1);
}
