#include "janus/eval/metrics.h"

#include <cmath>

#include "janus/core/error.h"

namespace janus::eval {

RetrievalResult retrieval_recall(const at::Tensor& sim_in, const std::vector<int64_t>& txt2img) {
  if (sim_in.dim() != 2) throw_input_error("retrieval: similarity must be [N_img, N_txt], got {} dims", sim_in.dim());
  const at::Tensor sim = sim_in.to(at::kDouble).contiguous();
  const int64_t n_img = sim.size(0), n_txt = sim.size(1);
  if (static_cast<int64_t>(txt2img.size()) != n_txt) {
    throw_input_error("retrieval: similarity has {} texts but the ground truth has {}", n_txt, txt2img.size());
  }
  if (n_img == 0 || n_txt == 0) throw_input_error("retrieval: empty similarity matrix");
  std::vector<std::vector<int64_t>> img2txt(n_img);
  for (int64_t t = 0; t < n_txt; ++t) {
    if (txt2img[t] < 0 || txt2img[t] >= n_img) {
      throw_input_error("retrieval: text {} maps to image {} outside [0, {})", t, txt2img[t], n_img);
    }
    img2txt[txt2img[t]].push_back(t);
  }
  const double* s = sim.data_ptr<double>();
  // Rank of column j in row of length n with values v(k): strictly greater, or equal with a lower index.
  const auto rank_of = [](int64_t n, int64_t j, auto v) {
    const double x = v(j);
    int64_t r = 0;
    for (int64_t k = 0; k < n; ++k) r += (v(k) > x) || (v(k) == x && k < j);
    return r;
  };
  RetrievalResult out;
  out.images = n_img;
  out.texts = n_txt;
  std::array<int64_t, 3> i2t{}, t2i{};
  const int64_t ks[3] = {1, 5, 10};
  int64_t images_with_text = 0;
  for (int64_t i = 0; i < n_img; ++i) {
    if (img2txt[i].empty()) continue;
    ++images_with_text;
    int64_t best = n_txt;
    for (int64_t t : img2txt[i]) best = std::min(best, rank_of(n_txt, t, [&](int64_t k) { return s[i * n_txt + k]; }));
    for (int q = 0; q < 3; ++q) i2t[q] += best < ks[q];
  }
  for (int64_t t = 0; t < n_txt; ++t) {
    const int64_t r = rank_of(n_img, txt2img[t], [&](int64_t k) { return s[k * n_txt + t]; });
    for (int q = 0; q < 3; ++q) t2i[q] += r < ks[q];
  }
  const auto pct = [](int64_t a, int64_t b) { return 100.0 * static_cast<double>(a) / static_cast<double>(b); };
  out.i2t_r1 = pct(i2t[0], images_with_text);
  out.i2t_r5 = pct(i2t[1], images_with_text);
  out.i2t_r10 = pct(i2t[2], images_with_text);
  out.t2i_r1 = pct(t2i[0], n_txt);
  out.t2i_r5 = pct(t2i[1], n_txt);
  out.t2i_r10 = pct(t2i[2], n_txt);
  out.i2t_mean = (out.i2t_r1 + out.i2t_r5 + out.i2t_r10) / 3;
  out.t2i_mean = (out.t2i_r1 + out.t2i_r5 + out.t2i_r10) / 3;
  out.r_mean = (out.i2t_mean + out.t2i_mean) / 2;
  return out;
}

double accuracy(const std::vector<bool>& correct) {
  if (correct.empty()) throw_input_error("accuracy: nothing to score (0 items)");
  int64_t n = 0;
  for (bool c : correct) n += c;
  return 100.0 * static_cast<double>(n) / static_cast<double>(correct.size());
}

double topk_accuracy(const at::Tensor& logits, const at::Tensor& labels, int64_t k) {
  TORCH_CHECK(logits.dim() == 2, "topk_accuracy: logits must be [N, C], got ", logits.sizes());
  TORCH_CHECK(labels.dim() == 1 && labels.size(0) == logits.size(0),
              "topk_accuracy: labels must be [N=", logits.size(0), "], got ", labels.sizes());
  TORCH_CHECK(k >= 1 && k <= logits.size(1), "topk_accuracy: k=", k, " outside [1, ", logits.size(1), "]");
  TORCH_CHECK(logits.size(0) > 0, "topk_accuracy: empty batch");
  const at::Tensor lg = logits.to(at::kDouble);
  const at::Tensor target = lg.gather(1, labels.to(at::kLong).unsqueeze(1));
  // Rank = number of classes scoring strictly higher, ties to the lower index (as a stable sort would).
  const at::Tensor idx = at::arange(lg.size(1), lg.options().dtype(at::kLong)).unsqueeze(0);
  const at::Tensor before = (lg > target) | ((lg == target) & (idx < labels.to(at::kLong).unsqueeze(1)));
  const at::Tensor rank = before.sum(1);
  return 100.0 * (rank < k).to(at::kDouble).mean().item<double>();
}

double psnr(const at::Tensor& images, const at::Tensor& references, double data_range) {
  TORCH_CHECK(images.sizes() == references.sizes(), "psnr: shapes differ: ", images.sizes(), " vs ",
              references.sizes());
  at::Tensor a = images.to(at::kDouble), b = references.to(at::kDouble);
  if (a.dim() == 3) a = a.unsqueeze(0), b = b.unsqueeze(0);
  TORCH_CHECK(a.dim() == 4, "psnr: expected [B, C, H, W] or [C, H, W], got ", images.sizes());
  const at::Tensor mse = (a - b).pow(2).flatten(1).mean(1);
  return (10.0 * at::log10(data_range * data_range / mse)).mean().item<double>();
}

namespace {
at::Tensor gaussian_window(int64_t size, double sigma) {
  at::Tensor x = at::arange(size, at::kDouble) - static_cast<double>(size / 2);
  at::Tensor g = at::exp(-(x * x) / (2 * sigma * sigma));
  return g / g.sum();
}
}  // namespace

double ssim(const at::Tensor& images, const at::Tensor& references, double data_range) {
  TORCH_CHECK(images.sizes() == references.sizes(), "ssim: shapes differ: ", images.sizes(), " vs ",
              references.sizes());
  TORCH_CHECK(images.dim() == 4, "ssim: expected [B, C, H, W], got ", images.sizes());
  constexpr int64_t kWin = 11;
  TORCH_CHECK(images.size(2) >= kWin && images.size(3) >= kWin, "ssim: H and W must be >= 11, got ", images.sizes());
  const at::Tensor x = images.to(at::kDouble), y = references.to(at::kDouble);
  const int64_t c = x.size(1);
  const at::Tensor g = gaussian_window(kWin, 1.5);
  const at::Tensor wh = g.view({1, 1, 1, kWin}).repeat({c, 1, 1, 1});
  const at::Tensor wv = g.view({1, 1, kWin, 1}).repeat({c, 1, 1, 1});
  const auto filt = [&](const at::Tensor& t) {
    const std::vector<int64_t> one{1, 1}, zero{0, 0};
    const at::IntArrayRef st(one), pad(zero);
    return at::conv2d(at::conv2d(t, wv, at::Tensor(), st, pad, st, c), wh, at::Tensor(), st, pad, st, c);
  };
  const double c1 = std::pow(0.01 * data_range, 2), c2 = std::pow(0.03 * data_range, 2);
  const at::Tensor mu1 = filt(x), mu2 = filt(y);
  const at::Tensor s11 = filt(x * x) - mu1 * mu1, s22 = filt(y * y) - mu2 * mu2, s12 = filt(x * y) - mu1 * mu2;
  const at::Tensor cs = (2 * s12 + c2) / (s11 + s22 + c2);
  const at::Tensor map = ((2 * mu1 * mu2 + c1) / (mu1 * mu1 + mu2 * mu2 + c1)) * cs;
  return map.mean().item<double>();
}

std::pair<at::Tensor, at::Tensor> feature_statistics(const at::Tensor& features) {
  TORCH_CHECK(features.dim() == 2 && features.size(0) >= 2, "feature_statistics: need [N >= 2, D], got ",
              features.sizes());
  const at::Tensor f = features.to(at::kDouble);
  const at::Tensor mu = f.mean(0);
  const at::Tensor d = f - mu;
  return {mu, d.t().matmul(d) / static_cast<double>(f.size(0) - 1)};
}

double frechet_distance(const at::Tensor& mu1, const at::Tensor& sigma1, const at::Tensor& mu2,
                        const at::Tensor& sigma2) {
  TORCH_CHECK(mu1.dim() == 1 && mu1.sizes() == mu2.sizes(), "frechet_distance: means must be [D] and equal, got ",
              mu1.sizes(), " and ", mu2.sizes());
  const int64_t d = mu1.size(0);
  TORCH_CHECK(sigma1.sizes() == at::IntArrayRef({d, d}) && sigma2.sizes() == sigma1.sizes(),
              "frechet_distance: covariances must be [", d, ", ", d, "], got ", sigma1.sizes(), " and ",
              sigma2.sizes());
  const at::Tensor m1 = mu1.to(at::kDouble), m2 = mu2.to(at::kDouble);
  const at::Tensor s1 = sigma1.to(at::kDouble), s2 = sigma2.to(at::kDouble);
  const at::Tensor sym1 = (s1 + s1.t()) / 2;
  auto [w1, v1] = at::linalg_eigh(sym1);
  const at::Tensor root1 = v1.matmul(at::diag(w1.clamp_min(0).sqrt())).matmul(v1.t());
  at::Tensor m = root1.matmul(s2).matmul(root1);
  m = (m + m.t()) / 2;
  const at::Tensor ev = at::linalg_eigvalsh(m).clamp_min(0);
  const double tr_covmean = ev.sqrt().sum().item<double>();
  const double diff = (m1 - m2).pow(2).sum().item<double>();
  const double fd = diff + s1.trace().item<double>() + s2.trace().item<double>() - 2 * tr_covmean;
  if (!std::isfinite(fd)) throw_error("frechet_distance: result is not finite ({})", fd);
  return fd;
}

InceptionScore inception_score(const at::Tensor& probs, int64_t splits) {
  TORCH_CHECK(probs.dim() == 2, "inception_score: probs must be [N, C], got ", probs.sizes());
  TORCH_CHECK(splits >= 1 && probs.size(0) >= splits, "inception_score: need at least ", splits, " rows, got ",
              probs.size(0));
  const at::Tensor p = probs.to(at::kDouble);
  const int64_t part = p.size(0) / splits;
  std::vector<double> scores;
  for (int64_t k = 0; k < splits; ++k) {
    const at::Tensor q = p.slice(0, k * part, (k + 1) * part);
    const at::Tensor py = q.mean(0, true);
    const at::Tensor kl = (q * (at::log(q) - at::log(py))).nan_to_num(0.0).sum(1).mean();
    scores.push_back(std::exp(kl.item<double>()));
  }
  double mean = 0;
  for (double s : scores) mean += s;
  mean /= static_cast<double>(scores.size());
  double var = 0;
  for (double s : scores) var += (s - mean) * (s - mean);
  return {mean, std::sqrt(var / static_cast<double>(scores.size()))};
}

}  // namespace janus::eval
