#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/nn.h>

#include "janus/core/error.h"
#include "janus/core/fs.h"
#include "janus/io/module_io.h"
#include "janus/model/janus_model.h"
#include "janus/model/model_io.h"
#include "test_util.h"

namespace {

janus::JanusModelOptions tiny_options() {
  auto o = janus::model_flavour("tiny", /*vocab=*/50, /*image_size=*/32);
  o.num_answers = 7;
  o.num_classes = 5;
  return o;
}

struct Batch {
  at::Tensor images, images_b;
  janus::TextInput text;
};

Batch make_batch(int64_t B = 2, int64_t L = 6) {
  torch::manual_seed(3);
  Batch b;
  b.images = torch::randn({B, 3, 32, 32});
  b.images_b = torch::randn({B, 3, 32, 32});
  b.text.ids = torch::randint(5, 50, {B, L});
  b.text.ids.select(1, 0).fill_(1);  // bos
  b.text.mask = torch::ones({B, L}, torch::kBool);
  b.text.mask[1].slice(0, L - 2).fill_(false);  // padding on the second row
  return b;
}

void expect_trainable(const at::Tensor& loss, janus::JanusModelImpl& m, const std::string& what) {
  ASSERT_TRUE(loss.defined()) << what;
  ASSERT_EQ(loss.dim(), 0) << what;
  ASSERT_TRUE(std::isfinite(loss.item<double>())) << what;
  m.zero_grad();
  loss.backward();
  int64_t with_grad = 0;
  for (const auto& p : m.parameters()) {
    if (p.grad().defined()) {
      EXPECT_FALSE(p.grad().isnan().any().item<bool>()) << what;
      ++with_grad;
    }
  }
  EXPECT_GT(with_grad, 0) << what;
}

// Greedy decoding picks the teacher-forced arg-max on its own output, at every step up to and including its eos
// (what follows eos is filler, not a choice). "Arg-max" within 1e-4 of the largest logit: the model is random, so
// near-ties may be ordered differently by the cached and the full computation.
void expect_greedy_is_teacher_forced_argmax(janus::JanusModelImpl& m, const at::Tensor& images, const at::Tensor& ids,
                                            int64_t eos) {
  torch::NoGradGuard ng;
  const auto logits = m.caption(images, {ids, torch::ones_like(ids, torch::kBool)}).logits;  // [B, L-1, V]
  for (int64_t r = 0; r < ids.size(0); ++r) {
    for (int64_t p = 0; p + 1 < ids.size(1); ++p) {  // position p predicts ids[:, p + 1]
      const int64_t chosen = ids[r][p + 1].item<int64_t>();
      const float best = logits[r][p].max().item<float>(), got = logits[r][p][chosen].item<float>();
      EXPECT_GE(got, best - 1e-4f) << "row " << r << " step " << p << " chose " << chosen << " but arg-max is "
                                   << logits[r][p].argmax().item<int64_t>();
      if (chosen == eos) break;
    }
  }
}

bool any_grad(torch::nn::Module& m) {
  for (const auto& p : m.parameters()) {
    if (p.grad().defined() && p.grad().abs().sum().item<double>() > 0) return true;
  }
  return false;
}

}  // namespace

TEST(JanusModel, EveryTaskEntryPointTrains) {
  janus::JanusModel m(tiny_options());
  auto b = make_batch();
  at::Generator gen = at::detail::createCPUGenerator(11);
  auto c = m->contrastive(b.images, b.text);
  EXPECT_EQ(c.image_embeds.sizes(), (std::vector<int64_t>{2, 128}));
  EXPECT_NEAR(c.image_embeds.norm(2, {-1}).mean().item<double>(), 1.0, 1e-5);
  expect_trainable(c.loss, *m, "contrastive");
  auto itm = m->itm(b.images, b.text, torch::tensor({1, 0}));
  EXPECT_EQ(itm.logits.sizes(), (std::vector<int64_t>{2, 2}));
  expect_trainable(itm.loss, *m, "itm");
  auto cap = m->caption(b.images, b.text);
  EXPECT_EQ(cap.logits.sizes(), (std::vector<int64_t>{2, 5, 50}));
  expect_trainable(cap.loss, *m, "caption");
  auto vqa = m->vqa(b.images, b.text, torch::rand({2, 7}));
  EXPECT_EQ(vqa.logits.sizes(), (std::vector<int64_t>{2, 7}));
  expect_trainable(vqa.loss, *m, "vqa");
  janus::TextInput answer{torch::randint(5, 50, {2, 3}), torch::ones({2, 3}, torch::kBool)};
  expect_trainable(m->vqa_generate(b.images, b.text, answer).loss, *m, "vqa_generate");
  auto nl = m->nlvr2(b.images, b.images_b, b.text, torch::tensor({0, 1}));
  EXPECT_EQ(nl.logits.sizes(), (std::vector<int64_t>{2, 2}));
  expect_trainable(nl.loss, *m, "nlvr2");
  expect_trainable(m->classify(b.images, torch::tensor({0, 4})).loss, *m, "classify");
  const int64_t N = m->options.code_tokens();
  auto codes = torch::randint(0, 512, {2, N});
  auto ic = m->image_code_logits(b.text.ids, codes);
  EXPECT_EQ(ic.logits.sizes(), (std::vector<int64_t>{2, N, 512}));
  expect_trainable(ic.loss, *m, "image_code_logits");
  expect_trainable(m->video_next_codes(b.text.ids, codes, torch::randint(0, 512, {2, N})).loss, *m, "video");
  auto sm = m->simmim(b.images, gen);
  EXPECT_EQ(sm.extras.at("reconstruction").sizes(), b.images.sizes());
  const double frac = sm.extras.at("mask").mean().item<double>();
  EXPECT_GE(frac, 0.6 - 1e-6);
  expect_trainable(sm.loss, *m, "simmim");
  auto ml = m->mlm(b.text, /*mask_id=*/3, /*num_special=*/5, gen);
  EXPECT_EQ(ml.logits.sizes(), (std::vector<int64_t>{2, 6, 50}));
  expect_trainable(ml.loss, *m, "mlm");
  auto vq = m->tokenizer(b.images);
  expect_trainable(vq.rec_loss + vq.quant_loss, *m, "tokenizer");
}

TEST(JanusModel, GenerationAndUnderstandingAreDecoupled) {
  janus::JanusModel m(tiny_options());
  auto b = make_batch();
  const int64_t N = m->options.code_tokens();
  m->zero_grad();
  m->image_code_logits(b.text.ids, torch::randint(0, 512, {2, N})).loss.backward();
  EXPECT_FALSE(any_grad(*m->vision)) << "generation loss reached the understanding ViT";
  EXPECT_TRUE(any_grad(*m->image_gen));
  m->zero_grad();
  m->contrastive(b.images, b.text).loss.backward();
  EXPECT_TRUE(any_grad(*m->vision));
  EXPECT_FALSE(any_grad(*m->vq)) << "understanding loss reached the VQ tokenizer";
  EXPECT_FALSE(any_grad(*m->image_gen)) << "understanding loss reached the image generator";
  m->zero_grad();
  m->tokenizer(b.images).rec_loss.backward();
  EXPECT_FALSE(any_grad(*m->vision)) << "tokenizer loss reached the understanding ViT";
}

TEST(JanusModel, SaveLoadRoundTripAndDeterministicInit) {
  const auto dir = janus::test::temp_dir();
  torch::manual_seed(5);
  janus::JanusModel a(tiny_options());
  torch::manual_seed(5);
  janus::JanusModel same(tiny_options());
  for (const auto& [k, v] : janus::module_state(*a))
    EXPECT_TRUE(torch::equal(v, janus::module_state(*same).at(k))) << k;
  janus::save_model(*a, dir);
  auto b = janus::load_model(dir);
  a->eval();
  b->eval();
  auto batch = make_batch();
  torch::NoGradGuard ng;
  EXPECT_TRUE(torch::equal(a->itm(batch.images, batch.text).logits, b->itm(batch.images, batch.text).logits));
}

// The pair NLVR2 head (the default) fuses each image with the statement on its own and reads the two CLS outputs
// side by side: swapping the images equals swapping the halves of the head's first Linear; a pair's logits do not
// depend on the rest of the batch; it round-trips through model.json. The joint head (and a model.json written before
// the key existed) is one fusion over both images with a Linear on its CLS.
TEST(JanusModel, Nlvr2PairAndJointHeads) {
  auto b = make_batch(3);
  torch::manual_seed(4);
  auto o = tiny_options();
  o.fusion_dense = true;  // exact attention: the dual-stream fusion's LSH draws new rotations on every call
  janus::JanusModel m(o);
  ASSERT_EQ(m->options.nlvr2_head, "pair");
  ASSERT_TRUE(m->nlvr2_pair_head && !m->nlvr2_head);
  const auto keys = janus::module_state(*m);
  EXPECT_TRUE(keys.count("nlvr2_pair_head.0.weight") && keys.count("nlvr2_pair_head.3.weight"));
  EXPECT_EQ(keys.at("nlvr2_pair_head.0.weight").sizes(), (std::vector<int64_t>{256, 256}));
  EXPECT_FALSE(keys.count("nlvr2_head.weight"));
  m->eval();
  torch::NoGradGuard ng;
  const auto ab = m->nlvr2(b.images, b.images_b, b.text).logits;
  ASSERT_EQ(ab.sizes(), (std::vector<int64_t>{3, 2}));
  // Each row alone gives the same logits (no mixing across the batch, padding respected).
  for (int64_t i = 0; i < 3; ++i) {
    janus::TextInput t{b.text.ids.slice(0, i, i + 1), b.text.mask.slice(0, i, i + 1)};
    const auto one = m->nlvr2(b.images.slice(0, i, i + 1), b.images_b.slice(0, i, i + 1), t).logits;
    EXPECT_TRUE(torch::allclose(one, ab.slice(0, i, i + 1), 1e-5, 1e-6)) << i;
  }
  // Swapped images + swapped weight halves = the same function.
  const auto ba = m->nlvr2(b.images_b, b.images, b.text).logits;
  EXPECT_FALSE(torch::allclose(ab, ba, 1e-4, 1e-5));  // the head tells left from right
  auto first = m->nlvr2_pair_head[0]->as<torch::nn::Linear>();
  const auto w = first->weight.clone();
  first->weight.copy_(at::cat({w.slice(1, 128), w.slice(1, 0, 128)}, 1));
  EXPECT_TRUE(torch::allclose(m->nlvr2(b.images_b, b.images, b.text).logits, ab, 1e-5, 1e-6));
  first->weight.copy_(w);
  // model.json round trip.
  const auto dir = janus::test::temp_dir();
  janus::save_model(*m, dir);
  auto back = janus::load_model(dir);
  back->eval();
  EXPECT_EQ(back->options.nlvr2_head, "pair");
  EXPECT_TRUE(torch::equal(back->nlvr2(b.images, b.images_b, b.text).logits, ab));
  // The joint head; a spec without the key means it.
  auto spec = janus::model_spec(tiny_options());
  EXPECT_EQ(spec["nlvr2_head"], "pair");
  spec.erase("nlvr2_head");
  const auto old = janus::model_options_from_spec(spec);
  EXPECT_EQ(old.nlvr2_head, "joint");
  janus::JanusModel j(old);
  EXPECT_TRUE(j->nlvr2_head && !j->nlvr2_pair_head);
  j->eval();
  EXPECT_EQ(j->nlvr2(b.images, b.images_b, b.text).logits.sizes(), (std::vector<int64_t>{3, 2}));
  spec["nlvr2_head"] = "both";
  EXPECT_THAT([&] { janus::model_options_from_spec(spec); },
              testing::ThrowsMessage<janus::InputError>(testing::HasSubstr("nlvr2_head")));
  auto bad = tiny_options();
  bad.nlvr2_head = "late";
  EXPECT_THROW(janus::JanusModel{bad}, janus::InputError);
  // Mismatched batch sizes are refused with the three sizes.
  EXPECT_THROW(m->nlvr2(b.images, b.images_b.slice(0, 0, 2), b.text), c10::Error);
}

TEST(JanusModel, CaptionAndImageGenerationShapes) {
  janus::JanusModel m(tiny_options());
  m->eval();
  auto b = make_batch();
  auto ids = m->generate_caption(b.images, /*bos=*/1, /*eos=*/2, /*max_len=*/8);
  EXPECT_EQ(ids.size(0), 2);
  EXPECT_LE(ids.size(1), 8);
  EXPECT_TRUE((ids.select(1, 0) == 1).all().item<bool>());
  if (ids.size(1) >= 2) expect_greedy_is_teacher_forced_argmax(*m, b.images, ids, /*eos=*/2);
  janus::SamplingOptions s;
  s.samples_per_prompt(2).temperature(1.0).top_k(10).seed(3);
  auto imgs = m->generate_images(b.text.ids, s);
  EXPECT_EQ(imgs.sizes(), (std::vector<int64_t>{4, 3, 32, 32}));
}

// caption_decoder "own": captioning runs on a causal stack of its own (caption_lm), so the captioning and
// text->image losses reach disjoint weights, the caption logits do not depend on image_gen, greedy and beam-1
// decoding agree with the teacher-forced logits, and the option round-trips through model.json.
TEST(JanusModel, OwnCaptionDecoderSharesNoWeightsWithTheGenerator) {
  auto o = tiny_options();
  o.caption_decoder = "own";
  torch::manual_seed(4);
  janus::JanusModel m(o);
  janus::JanusModel shared(tiny_options());
  ASSERT_TRUE(m->caption_lm);
  EXPECT_FALSE(shared->caption_lm);
  auto count = [](torch::nn::Module& mod) {
    int64_t n = 0;
    for (const auto& p : mod.parameters()) n += p.numel();
    return n;
  };
  EXPECT_EQ(count(*m), count(*shared) + count(*m->caption_lm));
  auto b = make_batch();
  const int64_t N = m->options.code_tokens();
  m->zero_grad();
  m->caption(b.images, b.text).loss.backward();
  EXPECT_TRUE(any_grad(*m->caption_lm));
  EXPECT_TRUE(any_grad(*m->vision)) << "captioning must still train the understanding encoder";
  EXPECT_FALSE(any_grad(*m->image_gen)) << "captioning reached the text->image generator";
  m->zero_grad();
  m->image_code_logits(b.text.ids, torch::randint(0, 512, {2, N})).loss.backward();
  EXPECT_TRUE(any_grad(*m->image_gen));
  EXPECT_FALSE(any_grad(*m->caption_lm)) << "text->image reached the caption decoder";
  m->eval();
  {
    torch::NoGradGuard ng;
    const auto before = m->caption(b.images, b.text).logits;
    const auto shared_before = shared->caption(b.images, b.text).logits;
    m->image_gen->text_embed->weight.add_(1.0);
    shared->image_gen->text_embed->weight.add_(1.0);
    EXPECT_TRUE(torch::equal(m->caption(b.images, b.text).logits, before));
    EXPECT_FALSE(torch::allclose(shared->caption(b.images, b.text).logits, shared_before))
        << "the shared decoder should run on image_gen's word embedding";
  }
  // Greedy decoding on the own stack picks the teacher-forced arg-max, and beam 1 is greedy.
  const auto ids = m->generate_caption(b.images, /*bos=*/1, /*eos=*/2, /*max_len=*/8);
  ASSERT_GE(ids.size(1), 2);
  expect_greedy_is_teacher_forced_argmax(*m, b.images, ids, /*eos=*/2);
  const auto beam1 = m->beam_generate(b.images, ids.slice(1, 0, 1), /*eos=*/2, ids.size(1) - 1, /*beam=*/1);
  EXPECT_TRUE(torch::equal(beam1, ids.slice(1, 1))) << beam1 << ids;
  // model.json carries the option; the weights load back and give the same captions.
  const auto dir = janus::test::temp_dir();
  janus::save_model(*m, dir);
  auto back = janus::load_model(dir);
  EXPECT_EQ(back->options.caption_decoder, "own");
  back->eval();
  torch::NoGradGuard ng;
  EXPECT_TRUE(torch::equal(back->caption(b.images, b.text).logits, m->caption(b.images, b.text).logits));
  o.caption_decoder = "separate";
  EXPECT_THAT([&] { o.validate(); },
              testing::ThrowsMessage<janus::InputError>(testing::HasSubstr("caption_decoder 'separate'")));
}

// gen_prompt_len: text->image prompts are right-padded to a fixed length in training and sampling alike, so a short
// prompt puts its codes at the positions training used; model.json carries it, and an older spec means "as given".
TEST(JanusModel, TextToImagePromptsArePaddedToGenPromptLen) {
  auto o = tiny_options();
  o.gen_prompt_len = 10;
  torch::manual_seed(0);
  janus::JanusModel m(o);
  m->eval();
  torch::NoGradGuard ng;
  const auto ids = torch::randint(7, 50, {2, 6});
  const auto padded = torch::cat({ids, torch::zeros({2, 4}, torch::kLong)}, 1);
  const auto codes = torch::randint(0, 512, {2, o.code_tokens()});
  EXPECT_TRUE(torch::equal(m->gen_prompt(ids), padded));
  EXPECT_TRUE(torch::allclose(m->image_code_logits(ids, codes).logits, m->image_code_logits(padded, codes).logits));
  janus::SamplingOptions s;
  s.temperature(1.0).seed(5);
  EXPECT_TRUE(torch::equal(m->generate_images(ids, s), m->generate_images(padded, s)));
  EXPECT_THROW(m->image_code_logits(torch::randint(7, 50, {2, 11}), codes), c10::Error);
  // Without padding the short prompt is a different input (the codes move), which is what the option prevents.
  auto plain = o;
  plain.gen_prompt_len = 0;
  janus::JanusModel u(plain);
  u->eval();
  EXPECT_EQ(u->gen_prompt(ids).size(1), 6);
  EXPECT_EQ(janus::model_options_from_spec(janus::model_spec(o)).gen_prompt_len, 10);
  auto old_spec = janus::model_spec(o);
  old_spec.erase("gen_prompt_len");
  EXPECT_EQ(janus::model_options_from_spec(old_spec).gen_prompt_len, 0);
  o.gen_prompt_len = o.text.max_positions() + 1;
  EXPECT_THROW(o.validate(), janus::InputError);
  janus::ModelConfig mc;
  mc.flavour = "tiny";
  mc.image_size = 32;
  mc.max_text_len = 24;
  EXPECT_EQ(janus::model_options(mc, 50).gen_prompt_len, 24);
  // The prompt-length cap eval and the pipeline encode with.
  EXPECT_EQ(m->gen_prompt_limit(32), 10);
  EXPECT_EQ(m->gen_prompt_limit(8), 8);
  EXPECT_EQ(u->gen_prompt_limit(32), 32);
}

// gen_text "encoder": the generator reads the understanding path's text tokens. Pads (and the unconditional
// all-pad prompt) read as zeros, the text->image loss trains the text encoder and the projection instead of
// image_gen's word embedding, guided sampling runs and is seeded, and model.json + weights round-trip it.
TEST(JanusModel, TextToImageFromTheTextEncoder) {
  auto o = tiny_options();
  o.gen_prompt_len = 10;
  o.gen_text = "encoder";
  torch::manual_seed(8);
  janus::JanusModel m(o);
  ASSERT_TRUE(m->gen_text_proj && m->gen_text_norm);
  const auto ids = torch::randint(7, 50, {3, 6});
  ids.select(1, 0).fill_(1);
  ids[1].slice(0, 4).fill_(0);  // a shorter prompt
  ids[2].fill_(0);              // the unconditional prompt
  const auto padded = m->gen_prompt(ids);
  const auto in = m->gen_text_input(padded);
  ASSERT_EQ(in.sizes(), (std::vector<int64_t>{3, 10, o.dim}));
  EXPECT_TRUE(torch::equal(in.slice(1, 6), torch::zeros({3, 4, o.dim})));
  EXPECT_TRUE(torch::equal(in[1].slice(0, 4), torch::zeros({6, o.dim})));
  EXPECT_TRUE(torch::equal(in[2], torch::zeros({10, o.dim})));
  EXPECT_GT(in[0].slice(0, 0, 6).abs().sum(1).min().item<float>(), 0.0f);  // every real token reads as something
  EXPECT_FALSE(torch::isnan(in).any().item<bool>());
  const auto codes = torch::randint(0, 512, {3, o.code_tokens()});
  m->zero_grad();
  m->image_code_logits(ids, codes).loss.backward();
  EXPECT_TRUE(any_grad(*m->text)) << "text->image must train the text encoder it reads";
  EXPECT_TRUE(any_grad(*m->gen_text_proj));
  EXPECT_TRUE(any_grad(*m->image_gen->backbone));
  EXPECT_FALSE(any_grad(*m->image_gen->text_embed)) << "the generator's own word embedding is not read";
  EXPECT_FALSE(any_grad(*m->vision)) << "generation reached the understanding ViT";
  m->eval();
  torch::NoGradGuard ng;
  const auto logits = m->image_code_logits(ids, codes).logits;
  auto other = ids.clone();
  other[0][3] = other[0][3].item<int64_t>() == 7 ? 8 : 7;
  const auto changed = m->image_code_logits(other, codes).logits;
  EXPECT_FALSE(torch::allclose(changed[0], logits[0])) << "one prompt word must change the prediction";
  EXPECT_TRUE(torch::allclose(changed.slice(0, 1), logits.slice(0, 1), 1e-5, 1e-6));
  janus::SamplingOptions s;
  s.temperature(0.8).seed(3).cfg(true).cfg_scale(2).samples_per_prompt(2);
  const auto images = m->generate_images(ids.slice(0, 0, 2), s);
  EXPECT_EQ(images.sizes(), (std::vector<int64_t>{4, 3, 32, 32}));
  EXPECT_TRUE(torch::equal(m->generate_images(ids.slice(0, 0, 2), s), images));
  const auto dir = janus::test::temp_dir("gen_text_encoder");
  janus::save_model(*m, dir);
  auto back = janus::load_model(dir);
  EXPECT_EQ(back->options.gen_text, "encoder");
  back->eval();
  EXPECT_TRUE(torch::equal(back->image_code_logits(ids, codes).logits, logits));
  EXPECT_TRUE(torch::equal(back->generate_images(ids.slice(0, 0, 2), s), images));
  auto bad = o;
  bad.gen_text = "bert";
  EXPECT_THAT([&] { bad.validate(); },
              testing::ThrowsMessage<janus::InputError>(testing::HasSubstr("gen_text 'bert'")));
}

TEST(JanusModel, BadOptionsAndSpecsAreInputErrors) {
  EXPECT_THROW(janus::model_flavour("tinyy", 50), janus::InputError);
  EXPECT_THROW(janus::model_flavour("tiny", 50, 36), janus::InputError);  // not a multiple of patch/VQ factor
  EXPECT_THROW(janus::model_options_from_spec(nlohmann::json{{"format", "x"}}), janus::InputError);
  const auto dir = janus::test::temp_dir();
  janus::write_file_atomic(dir + "/model.json", std::string("{not json"));
  EXPECT_THROW(janus::load_model(dir), janus::InputError);
}

// The ablation switches and architecture overrides: every task still trains, the variant's parameter set is what
// it claims (no gate / no LSH stream), model.json round-trips them, and a cached greedy caption of the dense
// variant equals its teacher-forced argmax (the dense KV-cache path matches the uncached forward).
TEST(JanusModel, AblationVariantsTrainAndRoundTrip) {
  auto o = tiny_options();
  o.router_shared = true;
  o.fusion_dense = true;
  o.embed_pool = "mean";
  janus::ModelConfig mc;
  mc.flavour = "tiny";
  mc.image_size = 32;
  mc.router = "shared";
  mc.fusion = "dense";
  mc.embed_pool = "mean";
  mc.vision_stem = "conv";
  mc.vq_downsample = 4;
  mc.vq_ch = 16;
  mc.vq_codebook = "ema";
  mc.vq_dead_code_threshold = 0.5;
  mc.vq_encoder = "cell";
  mc.vq_codebook_size = 96;
  mc.gen_depth = 3;
  mc.caption_decoder = "own";
  mc.gen_code_pos = "2d";
  mc.gen_text = "encoder";
  mc.text_word_init_std = 1.0;
  mc.num_answers = 7;
  mc.num_classes = 5;
  auto from_cfg = janus::model_options(mc, 50);
  EXPECT_EQ(from_cfg.code_tokens(), 64);  // 32 px / 4
  EXPECT_TRUE(from_cfg.vq.ema());
  EXPECT_DOUBLE_EQ(from_cfg.vq.dead_code_threshold(), 0.5);
  EXPECT_TRUE(from_cfg.router_shared && from_cfg.fusion_dense);
  EXPECT_DOUBLE_EQ(from_cfg.text.word_init_std(), 1.0);  // init only: model.json does not carry it
  // model.json keeps every override.
  const auto back = janus::model_options_from_spec(janus::model_spec(from_cfg));
  EXPECT_EQ(back.vq.ch_mult(), from_cfg.vq.ch_mult());
  EXPECT_EQ(from_cfg.vq.ch(), 16);
  EXPECT_EQ(back.vq.ch(), 16);
  EXPECT_EQ(back.router_shared, true);
  EXPECT_EQ(back.fusion_dense, true);
  EXPECT_EQ(back.embed_pool, "mean");
  EXPECT_EQ(from_cfg.vision.stem(), "conv");
  EXPECT_EQ(back.vision.stem(), "conv");
  EXPECT_TRUE(back.vq.ema());
  EXPECT_DOUBLE_EQ(back.vq.dead_code_threshold(), 0.5);
  EXPECT_EQ(from_cfg.vq.encoder(), "cell");
  EXPECT_EQ(back.vq.encoder(), "cell");
  EXPECT_EQ(from_cfg.vq.codebook_size(), 96);
  EXPECT_EQ(back.vq.codebook_size(), 96);
  EXPECT_EQ(from_cfg.causal_depth, 3);
  EXPECT_EQ(back.causal_depth, 3);
  EXPECT_EQ(from_cfg.caption_decoder, "own");
  EXPECT_EQ(back.caption_decoder, "own");
  EXPECT_EQ(back.gen_code_pos, "2d");
  EXPECT_EQ(back.gen_text, "encoder");
  {
    janus::JanusModel m(back);  // the generator gets the 8 x 8 code grid's row and column embeddings
    EXPECT_EQ(m->image_gen->options.code_grid(), 8);
    EXPECT_EQ(m->image_gen->row_embed.sizes(), (std::vector<int64_t>{8, back.dim}));
    EXPECT_TRUE(m->gen_text_proj && m->gen_text_norm);
  }
  // A spec without the keys (written before they existed) gives the flavour's defaults.
  auto old_spec = janus::model_spec(tiny_options());
  for (const char* k : {"router", "fusion", "embed_pool", "vision_stem", "vq_downsample", "vq_ch", "vq_codebook",
                        "vq_dead_code_threshold", "vq_encoder", "vq_codebook_size", "gen_depth", "caption_decoder",
                        "gen_code_pos", "gen_text"})
    old_spec.erase(k);
  const auto old = janus::model_options_from_spec(old_spec);
  EXPECT_EQ(old.vq.encoder(), "conv");
  EXPECT_EQ(old.vq.codebook_size(), tiny_options().vq.codebook_size());
  EXPECT_EQ(old.causal_depth, tiny_options().causal_depth);
  EXPECT_EQ(old.caption_decoder, "shared");
  EXPECT_EQ(old.gen_code_pos, "1d");
  EXPECT_EQ(old.gen_text, "embed");
  EXPECT_FALSE(janus::JanusModel(old)->gen_text_proj);
  EXPECT_FALSE(janus::JanusModel(old)->image_gen->row_embed.defined());
  EXPECT_FALSE(old.router_shared || old.fusion_dense || old.vq.ema());
  EXPECT_EQ(old.vq.ch_mult(), tiny_options().vq.ch_mult());
  EXPECT_EQ(old.vq.ch(), tiny_options().vq.ch());
  EXPECT_EQ(old.vision.stem(), "patch");
  // Bad overrides name the key.
  mc.vq_codebook = "gradient";
  try {
    janus::model_options(mc, 50);
    ADD_FAILURE() << "dead-code threshold without EMA accepted";
  } catch (const janus::InputError& e) {
    EXPECT_THAT(e.what(), testing::HasSubstr("vq_dead_code_threshold"));
  }
  mc.vq_dead_code_threshold = 0;
  mc.vq_ch = 20;  // not a multiple of the tiny VQ-VAE's 8 GroupNorm groups
  EXPECT_THAT([&] { janus::model_options(mc, 50); },
              testing::ThrowsMessage<janus::InputError>(testing::HasSubstr("vq_ch 20")));
  mc.vq_ch = 0;
  mc.vq_downsample = 6;
  EXPECT_THROW(janus::model_options(mc, 50), janus::InputError);
  auto bad_spec = janus::model_spec(from_cfg);
  bad_spec["vq_ch"] = 0;
  EXPECT_THROW(janus::model_options_from_spec(bad_spec), janus::InputError);
  bad_spec = janus::model_spec(from_cfg);
  bad_spec["fusion"] = "sparse";
  EXPECT_THROW(janus::model_options_from_spec(bad_spec), janus::InputError);
  bad_spec = janus::model_spec(from_cfg);
  bad_spec["vq_encoder"] = "vit";
  EXPECT_THAT([&] { janus::model_options_from_spec(bad_spec); },
              testing::ThrowsMessage<janus::InputError>(testing::HasSubstr("'vq_encoder' is \"vit\"")));
  bad_spec = janus::model_spec(from_cfg);
  bad_spec["vq_codebook_size"] = 0;
  EXPECT_THAT([&] { janus::model_options_from_spec(bad_spec); },
              testing::ThrowsMessage<janus::InputError>(testing::HasSubstr("vq_codebook_size")));
  bad_spec = janus::model_spec(from_cfg);
  bad_spec["gen_depth"] = 0;
  EXPECT_THAT([&] { janus::model_options_from_spec(bad_spec); },
              testing::ThrowsMessage<janus::InputError>(testing::HasSubstr("'gen_depth' must be an integer >= 1")));
  bad_spec = janus::model_spec(from_cfg);
  bad_spec["caption_decoder"] = "own_stack";
  EXPECT_THAT([&] { janus::model_options_from_spec(bad_spec); },
              testing::ThrowsMessage<janus::InputError>(testing::HasSubstr("'caption_decoder' is \"own_stack\"")));
  bad_spec = janus::model_spec(from_cfg);
  bad_spec["gen_code_pos"] = "3d";
  EXPECT_THAT([&] { janus::model_options_from_spec(bad_spec); },
              testing::ThrowsMessage<janus::InputError>(testing::HasSubstr("'gen_code_pos' is \"3d\"")));
  bad_spec = janus::model_spec(from_cfg);
  bad_spec["gen_text"] = "bert";
  EXPECT_THAT([&] { janus::model_options_from_spec(bad_spec); },
              testing::ThrowsMessage<janus::InputError>(testing::HasSubstr("'gen_text' is \"bert\"")));
  bad_spec = janus::model_spec(from_cfg);
  bad_spec["vision_stem"] = "resnet";
  EXPECT_THAT([&] { janus::model_options_from_spec(bad_spec); },
              testing::ThrowsMessage<janus::InputError>(testing::HasSubstr("'vision_stem' is \"resnet\"")));

  torch::manual_seed(0);
  janus::JanusModel m(o);
  int64_t gates = 0, lsh = 0;
  for (const auto& p : m->named_parameters()) {
    if (p.key().find("router.gate") != std::string::npos) ++gates;
    if (p.key().find("lsh_") != std::string::npos || p.key().find(".gate.") != std::string::npos) ++lsh;
  }
  EXPECT_EQ(gates, 0);
  EXPECT_EQ(lsh, 0);
  auto b = make_batch();
  expect_trainable(m->contrastive(b.images, b.text).loss, *m, "contrastive (mean pool)");
  expect_trainable(m->itm(b.images, b.text, torch::tensor({1, 0})).loss, *m, "itm (dense, shared router)");
  expect_trainable(m->caption(b.images, b.text).loss, *m, "caption (dense causal)");
  m->eval();
  auto ids = m->generate_caption(b.images, /*bos=*/1, /*eos=*/2, /*max_len=*/8);
  janus::TextInput t{ids, torch::ones_like(ids, torch::kBool)};
  if (ids.size(1) >= 2) {
    torch::NoGradGuard ng;
    auto logits = m->caption(b.images, t).logits.argmax(-1);
    EXPECT_TRUE(torch::equal(logits.slice(1, 0, ids.size(1) - 1), ids.slice(1, 1))) << logits << ids;
  }
}

// model.image_pos: a learned position table on the routed image tokens, started at MAE's 2-D sin-cos table. The
// fusion and the caption decoder see it (the ViT's own positions barely survive its blocks); model.json carries it.
TEST(JanusModel, ImagePositionTableOnRoutedImageTokens) {
  // The table itself: first half of the channels encode the column, second half the row; [sin, cos] each.
  const auto t = janus::sincos_2d_position_table(4, 8);  // q = 2: omega = {1, 1/100}
  ASSERT_EQ(t.sizes(), (std::vector<int64_t>{16, 8}));
  const int64_t k = 2 * 4 + 3;  // row 2, column 3
  EXPECT_NEAR(t[k][0].item<double>(), std::sin(3.0), 1e-6);
  EXPECT_NEAR(t[k][1].item<double>(), std::sin(0.03), 1e-6);
  EXPECT_NEAR(t[k][2].item<double>(), std::cos(3.0), 1e-6);
  EXPECT_NEAR(t[k][4].item<double>(), std::sin(2.0), 1e-6);
  EXPECT_NEAR(t[k][7].item<double>(), std::cos(0.02), 1e-6);
  EXPECT_THROW(janus::sincos_2d_position_table(4, 6), c10::Error);

  auto o = tiny_options();
  o.fusion_dense = true;
  EXPECT_FALSE(janus::JanusModel(o)->image_pos.defined());  // default "none": no parameter, old weights load
  o.image_pos = "sincos";
  torch::manual_seed(0);
  janus::JanusModel m(o);
  ASSERT_TRUE(m->image_pos.defined());
  ASSERT_EQ(m->image_pos.sizes(), (std::vector<int64_t>{o.image_tokens(), o.dim}));
  EXPECT_TRUE(m->named_parameters().contains("image_pos"));
  EXPECT_TRUE(torch::equal(m->image_pos[0], torch::zeros({o.dim})));  // class token row
  EXPECT_TRUE(torch::allclose(m->image_pos.slice(0, 1), janus::sincos_2d_position_table(4, o.dim)));

  // The table is added to the tokens the fusion and the decoder read, and only there.
  auto b = make_batch();
  m->eval();
  torch::NoGradGuard ng;
  const auto with = m->image_tokens(b.images);
  const auto embeds = m->embed_images(b.images);
  const auto kept = m->image_pos.clone();
  m->image_pos.zero_();
  EXPECT_TRUE(torch::allclose(with - m->image_tokens(b.images), kept.unsqueeze(0).expand_as(with), 1e-5, 1e-5));
  EXPECT_TRUE(torch::equal(embeds, m->embed_images(b.images)));  // contrastive embeddings do not use it
  m->image_pos.copy_(kept);

  // A mirrored image's tokens now differ in more than their order: the positions come with them.
  const auto mirrored = m->image_tokens(b.images.flip({3}));
  EXPECT_FALSE(torch::allclose(mirrored.slice(1, 1).mean(1), with.slice(1, 1).mean(1), 1e-3, 1e-3));

  // Round trips through model.json and safetensors; a spec written before the key existed means "none".
  janus::ModelConfig mc;
  mc.image_size = 32;
  mc.image_pos = "sincos";
  EXPECT_EQ(janus::model_options(mc, 50).image_pos, "sincos");
  auto spec = janus::model_spec(o);
  EXPECT_EQ(janus::model_options_from_spec(spec).image_pos, "sincos");
  spec.erase("image_pos");
  EXPECT_EQ(janus::model_options_from_spec(spec).image_pos, "none");
  spec["image_pos"] = "learned";
  EXPECT_THAT([&] { janus::model_options_from_spec(spec); },
              testing::ThrowsMessage<janus::InputError>(testing::HasSubstr("'image_pos' is \"learned\"")));
  o.dim = 130;
  o.fusion_heads = 2;
  o.image_pos = "sincos";
  EXPECT_THAT([&] { o.validate(); }, testing::ThrowsMessage<janus::InputError>(testing::HasSubstr("image_pos")));
  const auto dir = janus::test::temp_dir();
  janus::save_module(*m, dir + "/m.safetensors");
  torch::manual_seed(1);
  janus::JanusModel back(m->options);
  back->image_pos.normal_();
  janus::load_module(*back, dir + "/m.safetensors");
  EXPECT_TRUE(torch::equal(back->image_pos, m->image_pos));
}

// model.image_local_tokens: the ViT's patch embeddings (before any block), projected and with the image_pos grid
// rows, follow the routed tokens. Each holds its own patch only (patch stem), where after one ViT block every token
// holds every patch; every reader of image tokens trains with them, and model.json carries the switch.
TEST(JanusModel, LocalImageTokensHoldOnlyTheirOwnPatch) {
  auto o = tiny_options();
  o.fusion_dense = true;
  o.image_local_tokens = true;
  EXPECT_THAT([&] { o.validate(); }, testing::ThrowsMessage<janus::InputError>(testing::HasSubstr("image_pos")));
  o.image_pos = "sincos";
  const int64_t P = 1, G = 16;  // 32 px / 8 px patches, class token
  EXPECT_EQ(o.image_tokens(), P + 2 * G);
  torch::manual_seed(0);
  janus::JanusModel m(o);
  ASSERT_TRUE(m->local_proj);
  auto b = make_batch();
  expect_trainable(m->caption(b.images, b.text).loss, *m, "caption with local tokens");
  EXPECT_TRUE(any_grad(*m->local_proj));
  expect_trainable(m->vqa(b.images, b.text, torch::rand({2, 7})).loss, *m, "vqa with local tokens");
  EXPECT_TRUE(any_grad(*m->local_proj));
  expect_trainable(m->nlvr2(b.images, b.images_b, b.text, torch::tensor({1, 0})).loss, *m, "nlvr2 with local tokens");
  m->eval();
  torch::NoGradGuard ng;
  const auto t = m->image_tokens(b.images);
  ASSERT_EQ(t.sizes(), (std::vector<int64_t>{2, P + 2 * G, o.dim}));
  const auto local = t.slice(1, P + G);
  const auto expected = m->local_proj->forward(m->vision->patchify(b.images)) + m->image_pos.slice(0, P);
  EXPECT_TRUE(torch::allclose(local, expected, 1e-5, 1e-5));
  // Changing the top-left patch changes only its local token, but every ViT token.
  auto changed = b.images.clone();
  changed.slice(2, 0, 8).slice(3, 0, 8).add_(1.0);
  const auto t2 = m->image_tokens(changed);
  const auto moved = (t2 - t).abs().amax({0, 2});  // [N]
  EXPECT_GT(moved[P + G].item<double>(), 1e-3);
  EXPECT_LT(moved.slice(0, P + G + 1).max().item<double>(), 1e-6);
  EXPECT_GT(moved.slice(0, P + 1, P + G).min().item<double>(), 1e-6);
  // Captioning runs with the longer prefix; model.json keeps the switch; a bad value names the key.
  const auto ids = m->generate_caption(b.images, /*bos=*/1, /*eos=*/2, /*max_len=*/6);
  EXPECT_EQ(ids.size(0), 2);
  auto spec = janus::model_spec(o);
  EXPECT_TRUE(janus::model_options_from_spec(spec).image_local_tokens);
  spec.erase("image_local_tokens");
  EXPECT_FALSE(janus::model_options_from_spec(spec).image_local_tokens);
  spec["image_local_tokens"] = "yes";
  EXPECT_THAT([&] { janus::model_options_from_spec(spec); },
              testing::ThrowsMessage<janus::InputError>(testing::HasSubstr("image_local_tokens")));
}

// SimMIM with the conv stem: the stem's 3x3 receptive fields overlap neighbouring patches, so the masked pixels are
// blanked before the stem. Changing only masked pixels must not change the reconstruction (it would leak the
// answer otherwise); changing a visible pixel must.
TEST(JanusModel, SimmimWithConvStemDoesNotSeeMaskedPixels) {
  auto o = tiny_options();
  o.vision.stem("conv");
  torch::manual_seed(0);
  janus::JanusModel m(o);
  m->eval();  // BatchNorm running statistics: the forward of one image does not depend on the others
  torch::NoGradGuard ng;
  const auto images = torch::randn({2, 3, 32, 32});
  at::Generator g1 = at::detail::createCPUGenerator(7);
  const auto a = m->simmim(images, g1);
  const auto mask = a.extras.at("mask").expand_as(images);
  ASSERT_GT(mask.sum().item<double>(), 0.0);
  ASSERT_LT(mask.mean().item<double>(), 1.0);
  const auto changed_masked = images + 3.0 * mask * torch::randn_like(images);
  at::Generator g2 = at::detail::createCPUGenerator(7);
  const auto b = m->simmim(changed_masked, g2);
  EXPECT_TRUE(torch::equal(b.extras.at("reconstruction"), a.extras.at("reconstruction")));
  const auto changed_visible = images + 3.0 * (1 - mask) * torch::randn_like(images);
  at::Generator g3 = at::detail::createCPUGenerator(7);
  const auto c = m->simmim(changed_visible, g3);
  EXPECT_FALSE(torch::allclose(c.extras.at("reconstruction"), a.extras.at("reconstruction")));
}
