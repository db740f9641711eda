#pragma once
// The MAE reconstruction picture: one row per sample, two triplets of tiles
//   S2 true colour (B04, B03, B02):  original | visible input | reconstruction
//   S1 false colour (VV, VH, VV/VH): original | visible input | reconstruction
// "visible input" greys out the patches the encoder did not see (per modality: with group tokens
// the S1 and S2 masks differ, e.g. complementary under disjoint masking); "reconstruction" shows
// the decoder's prediction on hidden patches with the visible patches pasted back (MAE's picture).
// With norm_pix the prediction lives in per-patch normalized units; it is mapped back with the
// true patch's mean and standard deviation, as the MAE reference's visualization does.
//
// Images come in normalized units (the loader's (x - mean) / std per band); `stats` maps them back
// to dB and reflectance for display.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "loom/autograd/grad_mode.hpp"
#include "loom/core/tensor.hpp"
#include "loom/data/sample.hpp"
#include "loom/io/image.hpp"
#include "loom/mask/tokens.hpp"
#include "loom/ops/concat.hpp"

namespace loom::train {

struct ReconInputs {
  Tensor<float> s1;                  // [n, 2, H, W] normalized VV, VH
  Tensor<float> s2;                  // [n, C, H, W] normalized, bands named by s2_bands
  std::vector<std::string> s2_bands = data::s2_band_names();
  std::vector<Tensor<float>> pred;   // per token group: [n, L, p·p·C_g] (joint: one group, S1 then S2 channels)
  Tensor<float> mask;                // [n, G·L] 1 = hidden
  int64_t patch = 8;
  bool joint = false;
  bool norm_pix = true;
  data::BandStatistics stats = data::bigearthnet_statistics();
};

namespace detail {

// Prediction patches [n, L, P] mapped out of per-patch normalization with the target's statistics.
inline Tensor<float> denormalize_patches(const Tensor<float>& pred_in, const Tensor<float>& target_in) {
  const Tensor<float> pred = pred_in.contiguous(), target = target_in.contiguous();
  Tensor<float> out = Tensor<float>::empty(pred.shape());
  const int64_t rows = pred.size(0) * pred.size(1), P = pred.size(2);
  for (int64_t r = 0; r < rows; ++r) {
    const float* t = target.data() + r * P;
    double mean = 0, var = 0;
    for (int64_t i = 0; i < P; ++i) mean += t[i];
    mean /= double(P);
    for (int64_t i = 0; i < P; ++i) var += (t[i] - mean) * (t[i] - mean);
    var = P > 1 ? var / double(P - 1) : 0.0;
    const double sd = std::sqrt(var + 1e-6);
    for (int64_t i = 0; i < P; ++i) out.data()[r * P + i] = float(pred.data()[r * P + i] * sd + mean);
  }
  return out;
}

inline double band_value(const Tensor<float>& img, int64_t b, int64_t c, int64_t y, int64_t x, double mean, double sd) {
  return double(img.at({b, c, y, x})) * sd + mean;
}

}  // namespace detail

inline io::RgbImage draw_reconstruction_grid(const ReconInputs& in) {
  NoGradGuard no_grad;
  LOOM_CHECK(in.s1.dim() == 4 && in.s2.dim() == 4 && in.s1.size(0) == in.s2.size(0) && in.s1.size(2) == in.s2.size(2) &&
                 in.s1.size(3) == in.s2.size(3),
             "draw_reconstruction_grid: S1 ", in.s1.shape(), " and S2 ", in.s2.shape(), " do not match");
  const int64_t n = in.s1.size(0), H = in.s1.size(2), W = in.s1.size(3), p = in.patch;
  const int64_t gh = H / p, gw = W / p, L = gh * gw;
  const size_t G = in.joint ? 1 : 2;
  LOOM_CHECK(in.pred.size() == G, "draw_reconstruction_grid: ", in.pred.size(), " predictions for ", G, " token groups");
  LOOM_CHECK(in.mask.dim() == 2 && in.mask.size(0) == n && in.mask.size(1) == int64_t(G) * L,
             "draw_reconstruction_grid: mask of shape ", in.mask.shape(), ", expected [", n, ", ", int64_t(G) * L, "]");

  // Reconstructions in normalized image units, per modality.
  Tensor<float> rec_s1, rec_s2;
  {
    std::vector<Tensor<float>> targets;
    if (in.joint) targets.push_back(mask::patchify_group(concat<float, CPU>({in.s1, in.s2}, 1), p));
    else targets = {mask::patchify_group(in.s1, p), mask::patchify_group(in.s2, p)};
    std::vector<Tensor<float>> images;
    for (size_t g = 0; g < G; ++g) {
      LOOM_CHECK(in.pred[g].shape() == targets[g].shape(), "draw_reconstruction_grid: prediction ", in.pred[g].shape(),
                 " does not match target patches ", targets[g].shape());
      const Tensor<float> patches = in.norm_pix ? detail::denormalize_patches(in.pred[g], targets[g]) : in.pred[g];
      images.push_back(mask::unpatchify_group(patches, p, gh, gw).contiguous());
    }
    if (in.joint) {
      rec_s1 = images[0].narrow(1, 0, 2).contiguous();
      rec_s2 = images[0].narrow(1, 2, in.s2.size(1)).contiguous();
    } else {
      rec_s1 = images[0], rec_s2 = images[1];
    }
  }
  auto hidden = [&](int64_t b, int modality, int64_t y, int64_t x) {
    const int64_t l = (y / p) * gw + (x / p);
    const int64_t g = in.joint ? 0 : modality;
    return in.mask.at({b, g * L + l}) != 0.0f;
  };

  // Display mappings (the quick-look stretches of synthetic_preview).
  const auto stat = [&](const std::string& band) {
    const auto k = in.stats.find(band);
    LOOM_CHECK(k.has_value(), "draw_reconstruction_grid: no statistics for band ", band);
    return std::pair<double, double>{in.stats.mean[*k], in.stats.stddev[*k]};
  };
  auto band_index = [&](const std::string& band) {
    for (size_t i = 0; i < in.s2_bands.size(); ++i)
      if (in.s2_bands[i] == band) return int64_t(i);
    loom::detail::fail("draw_reconstruction_grid: S2 has no band ", band);
  };
  const int64_t red = band_index("B04"), green = band_index("B03"), blue = band_index("B02");
  const auto [mr, sr] = stat("B04");
  const auto [mg, sg] = stat("B03");
  const auto [mb, sb] = stat("B02");
  const auto [mvv, svv] = stat("VV");
  const auto [mvh, svh] = stat("VH");
  auto tone = [](double reflectance) { return io::unit_to_byte(std::pow(std::clamp(reflectance / 2500.0, 0.0, 1.0), 1 / 1.6)); };
  auto s2_colour = [&](const Tensor<float>& img, int64_t b, int64_t y, int64_t x) {
    return io::Rgb{tone(detail::band_value(img, b, red, y, x, mr, sr)), tone(detail::band_value(img, b, green, y, x, mg, sg)),
                   tone(detail::band_value(img, b, blue, y, x, mb, sb))};
  };
  auto s1_colour = [&](const Tensor<float>& img, int64_t b, int64_t y, int64_t x) {
    const double vv = detail::band_value(img, b, 0, y, x, mvv, svv), vh = detail::band_value(img, b, 1, y, x, mvh, svh);
    return io::Rgb{io::unit_to_byte((vv + 25) / 25), io::unit_to_byte((vh + 32) / 27), io::unit_to_byte((vv - vh) / 15)};
  };

  const int scale = int(std::max<int64_t>(1, (100 + H - 1) / H));
  const int tile = int(H) * scale, tile_w = int(W) * scale, gap = 4, group_gap = 16, header = 16;
  const int width = 6 * tile_w + 4 * gap + group_gap, height = header + int(n) * (tile + gap) - gap;
  io::RgbImage img(width, height);
  const char* titles[6] = {"S2 RGB", "VISIBLE", "RECON", "S1 VV VH", "VISIBLE", "RECON"};
  auto column_x = [&](int c) { return c * (tile_w + gap) + (c >= 3 ? group_gap - gap : 0); };
  for (int c = 0; c < 6; ++c) img.text(column_x(c) + 2, 4, titles[c], io::colors::kBlack);

  const Tensor<float> s1 = in.s1.contiguous(), s2 = in.s2.contiguous();
  for (int64_t b = 0; b < n; ++b) {
    const int y0 = header + int(b) * (tile + gap);
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x) {
        const bool h2 = hidden(b, 1, y, x), h1 = hidden(b, 0, y, x);
        const io::Rgb o2 = s2_colour(s2, b, y, x), o1 = s1_colour(s1, b, y, x);
        const io::Rgb cells[6] = {o2, h2 ? io::colors::kGrey : o2, h2 ? s2_colour(rec_s2, b, y, x) : o2,
                                  o1, h1 ? io::colors::kGrey : o1, h1 ? s1_colour(rec_s1, b, y, x) : o1};
        for (int c = 0; c < 6; ++c)
          img.fill_rect(column_x(c) + int(x) * scale, y0 + int(y) * scale, scale, scale, cells[c]);
      }
  }
  return img;
}

}  // namespace loom::train
