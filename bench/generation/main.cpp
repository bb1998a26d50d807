// Generation-path benchmarks.
//   janus_bench_generation sampling [--prompts 8] [--samples 4] [--tokens 256] [--dim 128] [--depth 2] [--cfg 0|1]
//       image-token sampling with and without the KV cache; prints tokens/s and the speed-up.
//   janus_bench_generation vqvae [--steps 400] [--batch 64] [--ch_mult 1,2,2] [--lr 0.002] [--out DIR]
//       trains a small VQ-VAE on Debian's dataset-fashion-mnist (IDX files) on CPU and reports held-out PSNR.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <torch/optim/adam.h>

#include "janus/decoder/image_output.h"
#include "janus/decoder/image_token_generator.h"
#include "janus/decoder/vqvae.h"

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::map<std::string, std::string> parse(int argc, char** argv, int first) {
  std::map<std::string, std::string> a;
  for (int i = first; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k.rfind("--", 0) != 0) throw std::invalid_argument("expected --flag value, got " + k);
    a[k.substr(2)] = argv[i + 1];
  }
  return a;
}
std::string get(const std::map<std::string, std::string>& a, const std::string& k, const std::string& d) {
  auto it = a.find(k);
  return it == a.end() ? d : it->second;
}

int bench_sampling(const std::map<std::string, std::string>& a) {
  const int64_t P = std::stoll(get(a, "prompts", "8")), S = std::stoll(get(a, "samples", "4")),
                N = std::stoll(get(a, "tokens", "256")), D = std::stoll(get(a, "dim", "128")),
                depth = std::stoll(get(a, "depth", "2")), Lt = std::stoll(get(a, "text_len", "16"));
  const bool cfg = get(a, "cfg", "0") == "1";
  torch::manual_seed(0);
  janus::ImageTokenGenerator g(janus::ImageTokenGeneratorOptions(1000, 1024).dim(D).depth(depth).heads(4).max_positions(
      Lt + N + 8));
  g->eval();
  auto text = at::randint(1, 1000, {P, Lt}, at::kLong);
  auto s = janus::SamplingOptions().num_tokens(N).samples_per_prompt(S).top_k(100).top_p(0.95).cfg(cfg).cfg_scale(4.0).seed(1);
  std::printf("sampling: %lld prompts x %lld samples x %lld tokens, text %lld, dim %lld, depth %lld, cfg %d, threads %d\n",
              (long long)P, (long long)S, (long long)N, (long long)Lt, (long long)D, (long long)depth, cfg ? 1 : 0,
              at::get_num_threads());
  auto t0 = Clock::now();
  auto cached = g->generate(text, janus::SamplingOptions(s).use_cache(true));
  const double tc = seconds_since(t0);
  t0 = Clock::now();
  auto uncached = g->generate(text, janus::SamplingOptions(s).use_cache(false));
  const double tu = seconds_since(t0);
  const double tokens = static_cast<double>(P * S * N);
  std::printf("| mode | seconds | tokens/s |\n|---|---|---|\n");
  std::printf("| no cache (baseline) | %.2f | %.0f |\n", tu, tokens / tu);
  std::printf("| KV cache | %.2f | %.0f |\n", tc, tokens / tc);
  std::printf("speed-up from the KV cache: %.1fx; identical tokens: %s\n", tu / tc, at::equal(cached, uncached) ? "yes" : "NO");
  return at::equal(cached, uncached) ? 0 : 1;
}

// Private IDX reader (gzip through `gzip -dc`): magic 0x0000080N, big-endian dims, uint8 data.
at::Tensor read_idx_gz(const std::string& path) {
  std::string cmd = "gzip -dc '" + path + "'";
  FILE* f = popen(cmd.c_str(), "r");
  if (!f) throw std::runtime_error("cannot run " + cmd);
  std::vector<uint8_t> buf;
  uint8_t chunk[1 << 16];
  size_t n;
  while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) buf.insert(buf.end(), chunk, chunk + n);
  if (pclose(f) != 0 || buf.size() < 8) throw std::runtime_error("cannot read IDX file " + path);
  if (buf[0] != 0 || buf[1] != 0 || buf[2] != 0x08) throw std::runtime_error(path + ": not an uint8 IDX file");
  const int nd = buf[3];
  std::vector<int64_t> dims;
  size_t off = 4;
  int64_t total = 1;
  for (int i = 0; i < nd; ++i, off += 4) {
    dims.push_back((int64_t(buf[off]) << 24) | (int64_t(buf[off + 1]) << 16) | (int64_t(buf[off + 2]) << 8) | buf[off + 3]);
    total *= dims.back();
  }
  if (buf.size() != off + static_cast<size_t>(total)) throw std::runtime_error(path + ": size does not match its header");
  return at::from_blob(buf.data() + off, dims, at::kByte).clone();
}

double psnr_of(const at::Tensor& x, const at::Tensor& y) {  // images in [-1, 1] -> PSNR on [0, 1], mean over images
  auto mse = ((x - y) / 2.0).pow(2).flatten(1).mean(1).clamp_min(1e-10);
  return (10.0 * at::log10(1.0 / mse)).mean().item<double>();
}

int bench_vqvae(const std::map<std::string, std::string>& a) {
  const std::string dir = get(a, "data", "/usr/share/datasets/fashion-mnist");
  const int64_t steps = std::stoll(get(a, "steps", "400")), batch = std::stoll(get(a, "batch", "64"));
  const int64_t n_test = std::stoll(get(a, "test", "1000"));
  const double lr = std::stod(get(a, "lr", "0.002"));
  std::vector<int64_t> mult;
  {
    std::stringstream ss(get(a, "ch_mult", "1,2,2"));
    std::string t;
    while (std::getline(ss, t, ',')) mult.push_back(std::stoll(t));
  }
  auto to_img = [](const at::Tensor& u8) {  // [N, 28, 28] uint8 -> [N, 1, 32, 32] in [-1, 1], zero padded
    auto x = u8.to(at::kFloat).div(127.5).sub(1.0).unsqueeze(1);
    return at::constant_pad_nd(x, {2, 2, 2, 2}, -1.0);
  };
  auto train = to_img(read_idx_gz(dir + "/train-images-idx3-ubyte.gz"));
  auto test = to_img(read_idx_gz(dir + "/t10k-images-idx3-ubyte.gz").slice(0, 0, n_test));
  torch::manual_seed(0);
  auto opts = janus::VQVAEOptions()
                  .in_channels(1)
                  .ch(std::stoll(get(a, "ch", "32")))
                  .ch_mult(mult)
                  .num_res_blocks(1)
                  .num_groups(8)
                  .mid_attention(false)
                  .z_channels(32)
                  .codebook_size(std::stoll(get(a, "codes", "512")))
                  .codebook_dim(std::stoll(get(a, "code_dim", "16")))
                  .cosine(get(a, "cosine", "0") == "1")
                  .ema(get(a, "ema", "1") == "1")
                  .decay(0.95)
                  .dead_code_threshold(std::stod(get(a, "dead", "0.05")));
  janus::VQVAE m(opts);
  torch::optim::Adam opt(m->parameters(), torch::optim::AdamOptions(lr));
  std::printf("vqvae: train %lld, held-out %lld (t10k), 32x32 padded, downsample %lld, codes %lld x %lld, steps %lld, batch %lld, threads %d\n",
              (long long)train.size(0), (long long)test.size(0), (long long)m->downsample(), (long long)opts.codebook_size(),
              (long long)opts.codebook_dim(), (long long)steps, (long long)batch, at::get_num_threads());
  auto gen = at::make_generator<at::CPUGeneratorImpl>(0);
  auto t0 = Clock::now();
  for (int64_t step = 1; step <= steps; ++step) {
    auto idx = at::randint(train.size(0), {batch}, gen, at::kLong);
    auto x = train.index_select(0, idx);
    m->train();
    auto out = m->forward(x);
    auto loss = out.mse_loss + out.rec_loss + out.quant_loss;
    opt.zero_grad();
    loss.backward();
    opt.step();
    if (step % 100 == 0 || step == 1) {
      std::printf("step %4lld  mse %.5f  quant %.5f  perplexity %.1f  train-psnr %.2f dB  (%.1f s)\n", (long long)step,
                  out.mse_loss.item<double>(), out.quant_loss.item<double>(), out.perplexity.item<double>(),
                  psnr_of(out.reconstruction.detach().clamp(-1, 1), x), seconds_since(t0));
    }
  }
  m->eval();
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> recs;
  for (int64_t i = 0; i < test.size(0); i += 250) recs.push_back(m->decode(m->encode(test.slice(0, i, i + 250))));
  auto rec = at::cat(recs, 0).clamp(-1.0, 1.0);
  auto crop = [](const at::Tensor& t) { return t.slice(2, 2, 30).slice(3, 2, 30); };
  const double psnr = psnr_of(crop(rec), crop(test));
  auto mse = ((crop(rec) - crop(test)) / 2.0).pow(2).mean().item<double>();
  std::printf("held-out PSNR (28x28, mean over %lld images): %.2f dB; PSNR of mean MSE: %.2f dB; codebook usage %.2f; train time %.1f s\n",
              (long long)test.size(0), psnr, 10.0 * std::log10(1.0 / mse), m->quantize->codebook_usage(), seconds_since(t0));
  const std::string out = get(a, "out", "");
  if (!out.empty()) {
    auto sheet = at::cat({test.slice(0, 0, 16), rec.slice(0, 0, 16)}, 0);
    janus::write_image_grid(out + "/vqvae_fashion_mnist.png", sheet, 16, 2);
    std::printf("wrote %s/vqvae_fashion_mnist.png (top: held-out inputs, bottom: reconstructions)\n", out.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string mode = argc > 1 ? argv[1] : "sampling";
    auto args = parse(argc, argv, 2);
    if (mode == "sampling") return bench_sampling(args);
    if (mode == "vqvae") return bench_vqvae(args);
    std::fprintf(stderr, "usage: janus_bench_generation sampling|vqvae [--flag value ...]\n");
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "janus_bench_generation: %s\n", e.what());
    return 1;
  }
}
