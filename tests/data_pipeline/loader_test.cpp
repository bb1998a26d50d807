// Loader: DistributedSampler semantics (checked against PyTorch), resumable cursor with workers, bad data.
#include <filesystem>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "janus/core/fs.h"
#include "janus/core/threads.h"
#include "janus/data/formats.h"
#include "janus/data/idx.h"
#include "janus/data/loader.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

// index -> label = index, text = "s<index>", and a value drawn from the seed (checks augmentation determinism).
class CountingDataset : public janus::Dataset {
 public:
  CountingDataset(int64_t n, std::set<int64_t> bad = {}) : n_(n), bad_(std::move(bad)) {}
  int64_t size() const override { return n_; }
  std::string name() const override { return "counting"; }
  janus::Sample get(int64_t index, uint64_t seed) const override {
    if (bad_.count(index)) throw janus::BadSampleError("file_" + std::to_string(index) + ".png: corrupt");
    janus::Sample s;
    s.index = index;
    s.label = index;
    s.id = std::to_string(index);
    std::mt19937_64 r(seed);
    s.points = at::full({2, 3}, static_cast<double>(r() % 100000));
    return s;
  }

 private:
  int64_t n_;
  std::set<int64_t> bad_;
};

struct Seen {
  int64_t epoch;
  int64_t index;
  float aug;
  bool operator==(const Seen& o) const { return epoch == o.epoch && index == o.index && aug == o.aug; }
};

std::vector<Seen> take(janus::DataLoader& l, int64_t batches) {
  std::vector<Seen> out;
  for (int64_t b = 0; b < batches; ++b) {
    const auto batch = l.next();
    for (int64_t i = 0; i < batch.size(); ++i) {
      out.push_back({batch.epoch, batch.labels[i].item<int64_t>(), batch.points[i][0][0].item<float>()});
    }
  }
  return out;
}

}  // namespace

TEST(DataLoader, SamplerMatchesPyTorchDistributedSampler) {
  struct Case {
    int64_t n, world, seed, epoch;
    bool shuffle, drop_last;
  };
  const std::vector<Case> cases{{10, 3, 0, 0, true, false}, {10, 3, 7, 2, true, true},    {11, 4, 1, 1, false, false},
                                {2, 5, 3, 0, true, false},  {100, 8, 42, 5, true, false}, {7, 2, 0, 3, false, true}};
  std::vector<std::string> args;
  for (const auto& c : cases) {
    for (int64_t v :
         {c.n, c.world, c.seed, c.epoch, static_cast<int64_t>(c.shuffle), static_cast<int64_t>(c.drop_last)}) {
      args.push_back(std::to_string(v));
    }
  }
  const auto r = janus::test::run_python("data_sampler_ref.py", args);  // one python start for all cases
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto ref = nlohmann::json::parse(r.output.substr(r.output.find('[')));
  ASSERT_EQ(ref.size(), cases.size());
  for (size_t k = 0; k < cases.size(); ++k) {
    const auto& c = cases[k];
    for (int64_t rank = 0; rank < c.world; ++rank) {
      const auto got = janus::distributed_indices(c.n, rank, c.world, c.shuffle, static_cast<uint64_t>(c.seed), c.epoch,
                                                  c.drop_last);
      EXPECT_EQ(got, ref[k][static_cast<size_t>(rank)].get<std::vector<int64_t>>())
          << "n=" << c.n << " world=" << c.world << " rank=" << rank;
    }
  }
}

TEST(DataLoader, RanksPartitionTheEpoch) {
  std::multiset<int64_t> all;
  for (int64_t r = 0; r < 3; ++r) {
    const auto v = janus::distributed_indices(10, r, 3, true, 5, 0, false);
    EXPECT_EQ(v.size(), 4u);
    all.insert(v.begin(), v.end());
  }
  EXPECT_EQ(all.size(), 12u);  // padded by wrapping: 2 indices twice
  for (int64_t i = 0; i < 10; ++i) EXPECT_GE(all.count(i), 1u);
  EXPECT_NE(janus::distributed_indices(10, 0, 1, true, 5, 0, false),
            janus::distributed_indices(10, 0, 1, true, 5, 1, false));
}

TEST(DataLoader, ResumeFromSavedCursorMatchesUninterruptedRun) {
  auto ds = std::make_shared<CountingDataset>(23);
  janus::LoaderOptions o;
  o.batch_size = 4;
  o.num_workers = 3;
  o.prefetch = 2;
  o.seed = 11;
  o.world_size = 2;
  o.rank = 1;
  // 23 samples, 2 ranks -> 12 per rank -> 3 batches per epoch; run 8 batches (2.67 epochs).
  std::vector<Seen> full;
  {
    janus::DataLoader l(ds, o);
    EXPECT_EQ(l.batches_per_epoch(), 3);
    full = take(l, 8);
  }
  ASSERT_EQ(full.size(), 32u);
  for (int64_t stop : {1, 3, 5}) {
    std::string saved;
    std::vector<Seen> part;
    {
      janus::DataLoader l(ds, o);
      part = take(l, stop);
      saved = l.cursor().to_json();
    }  // the loader (and its prefetched batches) is gone
    auto o2 = o;
    o2.num_workers = stop == 3 ? 0 : 2;  // worker count must not matter
    janus::DataLoader resumed(ds, o2, janus::LoaderCursor::from_json(saved));
    const auto rest = take(resumed, 8 - stop);
    part.insert(part.end(), rest.begin(), rest.end());
    ASSERT_EQ(part.size(), full.size());
    for (size_t i = 0; i < full.size(); ++i) {
      EXPECT_TRUE(part[i] == full[i]) << "stop " << stop << " sample " << i << ": " << part[i].index << " vs "
                                      << full[i].index;
    }
  }
  // Tensor form of the cursor round-trips too.
  const janus::LoaderCursor c{2, 8};
  EXPECT_TRUE(janus::LoaderCursor::from_tensors(c.to_tensors()) == c);
  EXPECT_THROW(janus::LoaderCursor::from_json("{\"epoch\": -1}"), janus::InputError);
  // Epochs differ in order, same seed gives the same order.
  std::vector<int64_t> e0, e1;
  for (const auto& s : full) (s.epoch == 0 ? e0 : s.epoch == 1 ? e1 : e0).push_back(s.index);
  EXPECT_NE(std::vector<int64_t>(e0.begin(), e0.begin() + 12), e1);
}

TEST(DataLoader, DropLastBatchAndPartialBatches) {
  auto ds = std::make_shared<CountingDataset>(10);
  janus::LoaderOptions o;
  o.batch_size = 4;
  o.num_workers = 1;
  o.shuffle = false;
  janus::DataLoader l(ds, o);
  EXPECT_EQ(l.next().size(), 4);
  EXPECT_EQ(l.next().size(), 4);
  auto b = l.next();
  EXPECT_EQ(b.size(), 2);
  EXPECT_EQ(b.labels[1].item<int64_t>(), 9);
  b = l.next();
  EXPECT_EQ(b.epoch, 1);
  EXPECT_EQ(b.labels[0].item<int64_t>(), 0);
  o.drop_last_batch = true;
  janus::DataLoader l2(ds, o);
  l2.next();
  l2.next();
  EXPECT_EQ(l2.next().epoch, 1);
}

// The workers' ATen ops run on the worker alone. An epoch shuffle above ATen's grain size (at::randperm over 40000
// samples) used to start a second OpenMP team from each worker; with more OpenMP threads than cores, libgomp then
// slept and woke the training loop's threads at every parallel region (include/janus/core/threads.h).
TEST(DataLoader, WorkersStartNoIntraOpThreadTeams) {
  const int saved = at::get_num_threads();
  at::set_num_threads(2);
  auto threads = [] {
    int64_t n = 0;
    for (const auto& e : fs::directory_iterator("/proc/self/task")) n += e.is_directory();
    return n;
  };
  (at::ones({1 << 20}) + 1).sum();  // the calling thread's own team exists before counting
  const int64_t before = threads();
  {
    janus::LoaderOptions o;
    o.batch_size = 8;
    o.num_workers = 2;
    o.prefetch = 2;
    janus::DataLoader l(std::make_shared<CountingDataset>(40000), o);
    for (int i = 0; i < 6; ++i) l.next();
    EXPECT_EQ(threads(), before + 2) << "the 2 workers started threads of their own";
  }
  std::thread probe([&] {
    EXPECT_TRUE(janus::serial_intra_op_in_this_thread());
    EXPECT_EQ(at::get_num_threads(), 1);
    EXPECT_EQ(at::randperm(100000).sum().item<int64_t>(), int64_t{99999} * 100000 / 2);
  });
  probe.join();
  EXPECT_EQ(at::get_num_threads(), 2) << "the calling thread keeps its intra-op threads";
  at::set_num_threads(saved);
}

TEST(DataLoader, BadSamplesAreSkippedCountedAndCapped) {
  janus::LoaderOptions o;
  o.batch_size = 5;
  o.num_workers = 2;
  o.shuffle = false;
  o.max_bad_fraction = 0.2;
  o.min_check = 5;
  {
    janus::DataLoader l(std::make_shared<CountingDataset>(20, std::set<int64_t>{3}), o);
    const auto b = l.next();
    EXPECT_EQ(b.size(), 4);
    EXPECT_EQ(b.skipped, 1);
    for (int i = 0; i < 3; ++i) l.next();
    EXPECT_EQ(l.bad_samples(), 1);
    EXPECT_EQ(l.seen_samples(), 20);
  }
  {
    janus::DataLoader l(std::make_shared<CountingDataset>(20, std::set<int64_t>{0, 1, 2}), o);
    try {
      l.next();
      FAIL() << "expected the bad-fraction error";
    } catch (const janus::InputError& e) {
      EXPECT_NE(std::string(e.what()).find("max_bad_fraction"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("3 of 5"), std::string::npos) << e.what();
    }
  }
}

TEST(DataLoader, CaptionsWithImagesAndTokens) {
  const auto d = janus::test::temp_dir("loader_coco");
  for (int i = 0; i < 3; ++i) {
    auto img = at::full({10 + i, 12, 3}, 40 * i, at::kByte);
    janus::write_image_file(d + "/img/" + std::to_string(i) + ".png", img);
  }
  janus::write_file_atomic(d + "/img/2.png", "corrupt");  // one bad file
  janus::write_file_atomic(d + "/c.json", R"({"images":[{"id":0,"file_name":"0.png"},{"id":1,"file_name":"1.png"},
    {"id":2,"file_name":"2.png"},{"id":3,"file_name":"missing.png"}],
    "annotations":[{"image_id":0,"caption":"a b"},{"image_id":1,"caption":"a b c d"},{"image_id":2,"caption":"x"},
                   {"image_id":3,"caption":"y"},{"image_id":0,"caption":"a"}]})");
  janus::DatasetOptions dopt;
  dopt.image_root = d + "/img";
  dopt.transform.crop = 8;
  auto ds = janus::make_caption_dataset(janus::load_coco_captions(d + "/c.json"), dopt, "coco");
  janus::LoaderOptions o;
  o.batch_size = 5;
  o.num_workers = 2;
  o.shuffle = false;
  o.max_bad_fraction = 0.5;
  janus::DataLoader l(ds, o);
  const auto b = l.next();
  ASSERT_EQ(b.size(), 3);
  EXPECT_EQ(b.skipped, 2);
  EXPECT_EQ(b.images.sizes(), (std::vector<int64_t>{3, 3, 8, 8}));
  EXPECT_EQ(b.samples[1].text, "a b c d");
  // Token padding + masks (collate of given ids).
  std::vector<janus::Sample> s(2);
  s[0].token_ids = {2, 9, 3};
  s[1].token_ids = {2, 3};
  const auto c = janus::collate(s);
  EXPECT_TRUE(c.tokens.equal(at::tensor({2, 9, 3, 2, 3, 0}, at::kLong).view({2, 3})));
  EXPECT_TRUE(c.attention_mask.equal(at::tensor({1, 1, 1, 1, 1, 0}, at::kLong).view({2, 3})));
}

TEST(DataLoader, FashionMnistThroughImageFolder) {
  const std::string src = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(src + "/t10k-images-idx3-ubyte.gz")) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  const auto idx = janus::read_idx(src + "/t10k-images-idx3-ubyte.gz", 16);
  EXPECT_EQ(idx.sizes(), (std::vector<int64_t>{16, 28, 28}));
  EXPECT_GT(idx.to(at::kFloat).mean().item<float>(), 10.0f);
  const auto labels = janus::read_idx(src + "/t10k-labels-idx1-ubyte.gz");
  EXPECT_EQ(labels.sizes(), (std::vector<int64_t>{10000}));
  EXPECT_EQ(labels.max().item<uint8_t>(), 9);

  const auto d = janus::test::temp_dir("fmnist");
  const auto r = janus::test::run(janus::test::tool("janus_data") + " fashion-mnist --out " + d + " --limit 40");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  janus::DatasetOptions o;
  auto ds = janus::make_image_folder_dataset(d + "/test", o);
  EXPECT_EQ(ds->size(), 40);
  janus::LoaderOptions lo;
  lo.batch_size = 8;
  lo.num_workers = 2;
  janus::DataLoader l(ds, lo);
  const auto b = l.next();
  EXPECT_EQ(b.images.sizes(), (std::vector<int64_t>{8, 3, 28, 28}));
  EXPECT_GE(b.labels.min().item<int64_t>(), 0);
  EXPECT_LE(b.labels.max().item<int64_t>(), 9);
  // The decoded image equals the IDX pixels (first test image is in class folder of label 0's name).
  const auto first =
      janus::decode_image_file(d + "/test/" + janus::fashion_mnist_classes()[labels[0].item<uint8_t>()] + "/00000.png");
  EXPECT_TRUE(first.select(2, 0).equal(idx[0]));
  janus::write_file_atomic(d + "/bad.idx", std::string("\x00\x00\x0d\x01\x00\x00\x00\x01", 8));
  EXPECT_THROW(janus::read_idx(d + "/bad.idx"), janus::InputError);
}
