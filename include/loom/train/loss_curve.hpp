#pragma once
// A loss-curve picture drawn directly into an RGB canvas (no plotting library): axes with "nice"
// ticks (1, 2, 5 x 10^k), light grid lines, one polyline per series (NaN values leave gaps), a
// legend and a title.
//
//   std::vector<loom::train::CurveSeries> s = {{"loss", loss, loom::io::colors::kBlack},
//                                              {"s1", loss_s1, loom::io::colors::kSeries[0]}};
//   loom::io::write_png("loss_curve.png", loom::train::draw_loss_curve(steps, s, "MAE PRE-TRAINING"));
//
// The y axis starts at 0 (losses are non-negative), so "fell by half" can be read off the picture.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "loom/core/error.hpp"
#include "loom/io/image.hpp"

namespace loom::train {

struct CurveSeries {
  std::string name;
  std::vector<double> y;  // one value per x (NaN: no point)
  io::Rgb color = io::colors::kBlack;
  bool dashed = false;
  int thickness = 2;
};

namespace detail {

// A round tick spacing giving about `target` intervals over `span`.
inline double nice_step(double span, int target) {
  if (!(span > 0)) return 1.0;
  const double raw = span / target, magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  const double r = raw / magnitude;
  return magnitude * (r < 1.5 ? 1.0 : r < 3.5 ? 2.0 : r < 7.5 ? 5.0 : 10.0);
}

// A tick label without trailing zeros ("0.25", "1000", "1.5E-05").
inline std::string tick_label(double v, double step) {
  if (std::abs(v) < step * 1e-9) v = 0;
  char buf[32];
  if (v != 0 && (std::abs(v) >= 1e6 || std::abs(v) < 1e-3)) {
    std::snprintf(buf, sizeof buf, "%.2G", v);
  } else {
    const int decimals = std::max(0, int(std::ceil(-std::log10(step) - 1e-9)));
    std::snprintf(buf, sizeof buf, "%.*f", std::min(decimals, 6), v);
  }
  return buf;
}

}  // namespace detail

inline io::RgbImage draw_loss_curve(const std::vector<double>& x, const std::vector<CurveSeries>& series,
                                    const std::string& title, int width = 800, int height = 480) {
  for (const auto& s : series)
    LOOM_CHECK(s.y.size() == x.size(), "draw_loss_curve: series '", s.name, "' has ", s.y.size(), " values for ",
               x.size(), " x positions");
  io::RgbImage img(width, height);
  const int left = 70, right = 20, top = 40, bottom = 50;
  const int pw = width - left - right, ph = height - top - bottom;
  LOOM_CHECK(pw > 20 && ph > 20, "draw_loss_curve: ", width, " x ", height, " is too small");

  // Data ranges.
  double x_lo = std::numeric_limits<double>::infinity(), x_hi = -x_lo, y_hi = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    bool any = false;
    for (const auto& s : series)
      if (std::isfinite(s.y[i])) {
        any = true;
        y_hi = std::max(y_hi, s.y[i]);
      }
    if (any && std::isfinite(x[i])) x_lo = std::min(x_lo, x[i]), x_hi = std::max(x_hi, x[i]);
  }
  if (!(x_lo <= x_hi)) x_lo = 0, x_hi = 1;
  if (x_hi == x_lo) x_hi = x_lo + 1;
  if (!(y_hi > 0)) y_hi = 1;
  const double y_step = detail::nice_step(y_hi, 5);
  y_hi = std::ceil(y_hi / y_step - 1e-9) * y_step;
  const double x_step = detail::nice_step(x_hi - x_lo, 6);
  auto px = [&](double v) { return left + (v - x_lo) / (x_hi - x_lo) * pw; };
  auto py = [&](double v) { return top + ph - v / y_hi * ph; };

  // Grid, ticks and labels.
  for (double v = 0; v <= y_hi + y_step * 1e-6; v += y_step) {
    const int yy = int(std::lround(py(v)));
    img.fill_rect(left, yy, pw, 1, io::colors::kLightGrey);
    img.fill_rect(left - 5, yy, 5, 1, io::colors::kBlack);
    const std::string label = detail::tick_label(v, y_step);
    img.text(left - 8 - io::RgbImage::text_width(label), yy - 3, label, io::colors::kBlack);
  }
  for (double v = std::ceil(x_lo / x_step) * x_step; v <= x_hi + x_step * 1e-6; v += x_step) {
    const int xx = int(std::lround(px(v)));
    img.fill_rect(xx, top, 1, ph, io::colors::kLightGrey);
    img.fill_rect(xx, top + ph, 1, 5, io::colors::kBlack);
    const std::string label = detail::tick_label(v, x_step);
    img.text(xx - io::RgbImage::text_width(label) / 2, top + ph + 9, label, io::colors::kBlack);
  }
  img.fill_rect(left, top, 1, ph + 1, io::colors::kBlack);       // y axis
  img.fill_rect(left, top + ph, pw, 1, io::colors::kBlack);      // x axis
  img.text(left + pw / 2 - io::RgbImage::text_width("STEP") / 2, height - 16, "STEP", io::colors::kBlack);
  img.text(left, 12, title, io::colors::kBlack, 2);

  // Curves (drawn last series first, so the first one is on top).
  for (size_t k = series.size(); k-- > 0;) {
    const CurveSeries& s = series[k];
    for (size_t i = 1; i < x.size(); ++i) {
      if (!std::isfinite(s.y[i - 1]) || !std::isfinite(s.y[i])) continue;
      img.line(px(x[i - 1]), py(s.y[i - 1]), px(x[i]), py(s.y[i]), s.color, s.thickness, s.dashed ? 6 : 0);
    }
    if (x.size() == 1 && std::isfinite(s.y[0])) img.fill_rect(int(px(x[0])) - 2, int(py(s.y[0])) - 2, 5, 5, s.color);
  }

  // Legend, top right inside the plot.
  int longest = 0;
  for (const auto& s : series) longest = std::max(longest, io::RgbImage::text_width(s.name));
  const int row = 14, lw = 28 + longest + 12, lh = int(series.size()) * row + 8;
  const int lx = left + pw - lw - 8, ly = top + 8;
  img.fill_rect(lx, ly, lw, lh, io::colors::kWhite);
  img.rect_outline(lx, ly, lw, lh, io::colors::kGrey);
  for (size_t k = 0; k < series.size(); ++k) {
    const int yy = ly + 4 + int(k) * row + 3;
    img.line(lx + 6, yy + 3, lx + 26, yy + 3, series[k].color, series[k].thickness, series[k].dashed ? 4 : 0);
    img.text(lx + 32, yy, series[k].name, io::colors::kBlack);
  }
  return img;
}

}  // namespace loom::train
