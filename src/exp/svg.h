// A small self-contained SVG line-chart writer (no plotting dependency): accuracy vs
// alpha, one line per task, the random-vector control as separate marker-only series,
// axes with ticks, grid, legend and optional +/- stderr error bars. Output is valid XML
// (all text escaped) and renders in any browser.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace rvec::experiment {

struct PlotPoint {
  double x = 0, y = 0;
  double err = 0;  // half-height of the error bar (0: none)
};

struct PlotSeries {
  std::string name;
  std::vector<PlotPoint> points;  // drawn in x order
  bool control = false;           // markers only (no line), hollow diamonds
};

struct PlotSpec {
  std::string title, x_label, y_label;
  std::vector<PlotSeries> series;
  std::vector<double> x_ticks;  // empty: "nice" ticks from the data range
  double y_min = 0, y_max = 0;  // y_min == y_max: automatic range from the data
  int width = 760, height = 460;
};

std::string render_line_chart_svg(const PlotSpec& spec);

std::string xml_escape(std::string_view s);
// Ticks at multiples of a 1/2/5 x 10^k step covering [lo, hi] with about `target` ticks.
std::vector<double> nice_ticks(double lo, double hi, int target = 6);

}  // namespace rvec::experiment
