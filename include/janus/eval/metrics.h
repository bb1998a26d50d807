#pragma once
// Retrieval recall, NLVR2 / classification accuracy, PSNR / SSIM, Frechet distance and Inception Score.
#include <string>
#include <vector>

#include <ATen/ATen.h>

namespace janus::eval {

struct RetrievalResult {
  double i2t_r1 = 0, i2t_r5 = 0, i2t_r10 = 0;  // image -> text, x100
  double t2i_r1 = 0, t2i_r5 = 0, t2i_r10 = 0;  // text -> image, x100
  double i2t_mean = 0, t2i_mean = 0, r_mean = 0;
  int64_t images = 0, texts = 0;
};
// COCO-style recall@K from a similarity matrix sim [N_img, N_txt] (higher = more similar) and the image of
// every caption, txt2img [N_txt]. i2t: an image is a hit at K if any of its captions ranks within the top K;
// t2i: a caption is a hit if its image ranks within the top K. Ties rank the lower index first.
RetrievalResult retrieval_recall(const at::Tensor& sim, const std::vector<int64_t>& txt2img);

// Percentage of predictions equal to the labels.
double accuracy(const std::vector<bool>& correct);

// Top-k accuracy x100 of logits [N, C] against labels [N] (int64).
double topk_accuracy(const at::Tensor& logits, const at::Tensor& labels, int64_t k);

// PSNR in dB of images [B, C, H, W] (or [C, H, W]) against references, mean over the batch of per-image PSNR.
double psnr(const at::Tensor& images, const at::Tensor& references, double data_range = 1.0);
// SSIM as pytorch-msssim's ssim(..., size_average=True): Gaussian window 11, sigma 1.5, valid filtering,
// K1 = 0.01, K2 = 0.03, mean over pixels, channels and batch. Inputs [B, C, H, W], H and W >= 11.
double ssim(const at::Tensor& images, const at::Tensor& references, double data_range = 1.0);

// ||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr(sqrtm(S1 S2)), in double. Tr(sqrtm(S1 S2)) is computed as
// sum(sqrt(eig(sqrt(S1) S2 sqrt(S1)))) (a symmetric PSD matrix with the same eigenvalues), which stays
// finite for near-singular covariances.
double frechet_distance(const at::Tensor& mu1, const at::Tensor& sigma1, const at::Tensor& mu2,
                        const at::Tensor& sigma2);
// Mean and covariance (N - 1) of features [N, D], in double.
std::pair<at::Tensor, at::Tensor> feature_statistics(const at::Tensor& features);

struct InceptionScore {
  double mean = 0, std = 0;
};
// exp(E_x KL(p(y|x) || p(y))) over `splits` equal consecutive splits of probs [N, C] (N // splits rows each).
InceptionScore inception_score(const at::Tensor& probs, int64_t splits = 10);

}  // namespace janus::eval
