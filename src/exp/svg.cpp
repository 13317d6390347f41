#include "exp/svg.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace rvec::experiment {

std::string xml_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    switch (ch) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        // Control characters are not allowed in XML 1.0 (except tab, LF, CR).
        if (static_cast<unsigned char>(ch) < 0x20 && ch != '\t' && ch != '\n' && ch != '\r')
          out += ' ';
        else
          out += ch;
    }
  }
  return out;
}

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!(hi > lo)) {
    double c = std::isfinite(lo) ? lo : 0;
    lo = c - 1, hi = c + 1;
  }
  double raw = (hi - lo) / std::max(1, target - 1);
  double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  std::vector<double> t;
  double start = std::ceil(lo / step - 1e-9) * step;
  for (double v = start; v <= hi + step * 1e-9; v += step) t.push_back(std::fabs(v) < step * 1e-9 ? 0.0 : v);
  return t;
}

namespace {

const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e",
                         "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"};

std::string fmt_num(double v) {
  // Short tick labels: up to 3 significant decimals, no trailing zeros.
  std::string s = fmt::format("{:.3f}", v);
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  if (s == "-0") s = "0";
  return s;
}

}  // namespace

std::string render_line_chart_svg(const PlotSpec& spec) {
  const double W = spec.width, H = spec.height;
  const double ml = 70, mr = 230, mt = 50, mb = 60;  // margins; legend on the right
  const double pw = W - ml - mr, ph = H - mt - mb;

  double xmin = std::numeric_limits<double>::infinity(), xmax = -xmin;
  double ymin = xmin, ymax = -xmin;
  for (const auto& s : spec.series)
    for (const auto& p : s.points) {
      xmin = std::min(xmin, p.x), xmax = std::max(xmax, p.x);
      ymin = std::min(ymin, p.y - p.err), ymax = std::max(ymax, p.y + p.err);
    }
  for (double t : spec.x_ticks) xmin = std::min(xmin, t), xmax = std::max(xmax, t);
  if (!std::isfinite(xmin)) xmin = 0, xmax = 1;
  if (!std::isfinite(ymin)) ymin = 0, ymax = 1;
  if (spec.y_max > spec.y_min) ymin = spec.y_min, ymax = spec.y_max;
  if (xmax <= xmin) xmin -= 1, xmax += 1;
  if (ymax <= ymin) ymin -= 1, ymax += 1;
  std::vector<double> yt = nice_ticks(ymin, ymax, 6);
  if (spec.y_max <= spec.y_min && !yt.empty()) {
    // Extend the automatic range to whole ticks.
    double step = yt.size() > 1 ? yt[1] - yt[0] : 1;
    if (yt.front() > ymin + 1e-12) yt.insert(yt.begin(), yt.front() - step);
    if (yt.back() < ymax - 1e-12) yt.push_back(yt.back() + step);
    ymin = yt.front(), ymax = yt.back();
  }
  std::vector<double> xt = spec.x_ticks.empty() ? nice_ticks(xmin, xmax, 8) : spec.x_ticks;
  double xpad = (xmax - xmin) * 0.04;
  double x0 = xmin - xpad, x1 = xmax + xpad;
  auto X = [&](double x) { return ml + (x - x0) / (x1 - x0) * pw; };
  auto Y = [&](double y) { return mt + ph - (y - ymin) / (ymax - ymin) * ph; };

  std::string o;
  o += fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"Helvetica, Arial, sans-serif\" font-size=\"12\">\n",
      W, H);
  o += fmt::format("<title>{}</title>\n", xml_escape(spec.title));
  o += fmt::format("<rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"white\"/>\n", W, H);
  o += fmt::format("<text x=\"{:.1f}\" y=\"28\" text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\">{}</text>\n",
                   ml + pw / 2, xml_escape(spec.title));
  // Grid and ticks.
  o += "<g class=\"grid\" stroke=\"#e0e0e0\" stroke-width=\"1\">\n";
  for (double t : yt) o += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\"/>\n", ml, Y(t), ml + pw, Y(t));
  for (double t : xt)
    if (t >= x0 && t <= x1)
      o += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\"/>\n", X(t), mt, X(t), mt + ph);
  o += "</g>\n";
  o += "<g class=\"axes\" stroke=\"black\" stroke-width=\"1\">\n";
  o += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\"/>\n", ml, mt + ph, ml + pw, mt + ph);
  o += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\"/>\n", ml, mt, ml, mt + ph);
  for (double t : yt) o += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\"/>\n", ml - 5, Y(t), ml, Y(t));
  for (double t : xt)
    if (t >= x0 && t <= x1)
      o += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\"/>\n", X(t), mt + ph, X(t), mt + ph + 5);
  o += "</g>\n<g class=\"tick-labels\" fill=\"black\">\n";
  for (double t : yt)
    o += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", ml - 8, Y(t) + 4, fmt_num(t));
  for (double t : xt)
    if (t >= x0 && t <= x1)
      o += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n", X(t), mt + ph + 20, fmt_num(t));
  o += "</g>\n";
  o += fmt::format("<text class=\"x-label\" x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" font-size=\"13\">{}</text>\n",
                   ml + pw / 2, H - 15, xml_escape(spec.x_label));
  o += fmt::format(
      "<text class=\"y-label\" x=\"{0:.1f}\" y=\"{1:.1f}\" text-anchor=\"middle\" font-size=\"13\" "
      "transform=\"rotate(-90 {0:.1f} {1:.1f})\">{2}</text>\n",
      20.0, mt + ph / 2, xml_escape(spec.y_label));

  // Series. Controls share the colour of the task series of the same index when the
  // caller orders them that way; otherwise they cycle through the palette.
  size_t line_i = 0, ctrl_i = 0;
  std::vector<std::string> colors;
  for (const auto& s : spec.series) colors.push_back(kColors[(s.control ? ctrl_i++ : line_i++) % 10]);
  for (size_t si = 0; si < spec.series.size(); ++si) {
    const auto& s = spec.series[si];
    const std::string& c = colors[si];
    std::vector<PlotPoint> pts = s.points;
    std::sort(pts.begin(), pts.end(), [](auto& a, auto& b) { return a.x < b.x; });
    o += fmt::format("<g class=\"series{}\" data-name=\"{}\">\n", s.control ? " control" : "", xml_escape(s.name));
    for (const auto& p : pts)
      if (p.err > 0)
        o += fmt::format("<line class=\"errbar\" x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\" stroke=\"{3}\" stroke-width=\"1\" opacity=\"0.6\"/>\n",
                         X(p.x), Y(p.y - p.err), Y(p.y + p.err), c);
    if (!s.control && pts.size() > 1) {
      std::string d;
      for (const auto& p : pts) d += fmt::format("{}{:.1f},{:.1f}", d.empty() ? "" : " ", X(p.x), Y(p.y));
      o += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/>\n", d, c);
    }
    for (const auto& p : pts) {
      std::string tip = xml_escape(fmt::format("{}: alpha={} value={}", s.name, fmt_num(p.x), fmt_num(p.y)));
      if (s.control)
        o += fmt::format("<path d=\"M{0:.1f},{1:.1f} l6,6 l-6,6 l-6,-6 z\" transform=\"translate(0,-6)\" fill=\"white\" stroke=\"{2}\" stroke-width=\"2\"><title>{3}</title></path>\n",
                         X(p.x), Y(p.y), c, tip);
      else
        o += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3.5\" fill=\"{}\"><title>{}</title></circle>\n", X(p.x), Y(p.y), c, tip);
    }
    o += "</g>\n";
  }
  // Legend.
  o += "<g class=\"legend\">\n";
  double lx = ml + pw + 20, ly = mt + 10;
  for (size_t si = 0; si < spec.series.size(); ++si) {
    const auto& s = spec.series[si];
    double y = ly + double(si) * 20;
    if (s.control)
      o += fmt::format("<path d=\"M{:.1f},{:.1f} l6,6 l-6,6 l-6,-6 z\" fill=\"white\" stroke=\"{}\" stroke-width=\"2\"/>\n", lx + 12, y - 6, colors[si]);
    else
      o += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" stroke-width=\"2\"/>"
                       "<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3.5\" fill=\"{}\"/>\n",
                       lx, y, lx + 24, y, colors[si], lx + 12, y, colors[si]);
    o += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\">{}</text>\n", lx + 32, y + 4, xml_escape(s.name));
  }
  o += "</g>\n</svg>\n";
  return o;
}

}  // namespace rvec::experiment
