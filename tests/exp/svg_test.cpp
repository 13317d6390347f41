#include "exp/svg.h"

#include <gtest/gtest.h>

#include "xml_check.h"

using namespace rvec::experiment;

TEST(XmlCheck, RejectsMalformed) {
  EXPECT_NO_THROW(xmlcheck::parse("<a x=\"1\"><b/>t&amp;</a>"));
  EXPECT_THROW(xmlcheck::parse("<a><b></a>"), std::runtime_error);
  EXPECT_THROW(xmlcheck::parse("<a x=1></a>"), std::runtime_error);
  EXPECT_THROW(xmlcheck::parse("<a>&foo;</a>"), std::runtime_error);
  EXPECT_THROW(xmlcheck::parse("<a>1 < 2</a>"), std::runtime_error);
  EXPECT_THROW(xmlcheck::parse("<a></a><b/>"), std::runtime_error);
}

TEST(Svg, Escape) { EXPECT_EQ(xml_escape("a<b & \"c\"'>"), "a&lt;b &amp; &quot;c&quot;&apos;&gt;"); }

TEST(Svg, NiceTicks) {
  auto t = nice_ticks(0, 100, 6);
  ASSERT_EQ(t.size(), 6u);
  EXPECT_DOUBLE_EQ(t[1], 20);
  auto u = nice_ticks(-1, 1.5, 6);
  EXPECT_DOUBLE_EQ(u.front(), -1);
  EXPECT_DOUBLE_EQ(u.back(), 1.5);
}

TEST(Svg, ValidXmlOneSeriesPerTaskPlusControls) {
  PlotSpec p;
  p.title = "Accuracy vs alpha <instruct + alpha*v> & control";
  p.x_label = "alpha";
  p.y_label = "accuracy (%)";
  std::vector<double> alphas{-1, 0, 0.25, 0.5, 0.75, 1, 1.5};
  p.x_ticks = alphas;
  for (std::string task : {"gsm8k", "sciq", "bbh \"cot\""}) {
    PlotSeries s{task, {}, false};
    for (double a : alphas) s.points.push_back({a, 50 + 10 * a, 1.5});
    p.series.push_back(s);
  }
  p.series.push_back({"random control (gsm8k)", {{1, 49, 1}, {-1, 51, 1}}, true});
  std::string svg = render_line_chart_svg(p);
  std::unique_ptr<xmlcheck::Node> root;
  ASSERT_NO_THROW(root = xmlcheck::parse(svg)) << svg;
  EXPECT_EQ(root->name, "svg");
  EXPECT_EQ(root->attrs["xmlns"], "http://www.w3.org/2000/svg");
  int lines = 0, controls = 0, polylines = 0, markers = 0;
  std::vector<std::string> names;
  xmlcheck::visit(*root, [&](const xmlcheck::Node& n) {
    if (n.name == "g" && n.attrs.count("class")) {
      const std::string& c = n.attrs.at("class");
      if (c == "series") ++lines, names.push_back(n.attrs.at("data-name"));
      if (c == "series control") ++controls;
      if (c == "series" || c == "series control")
        for (auto& ch : n.children) {
          if (ch->name == "polyline") ++polylines;
          if (ch->name == "circle" || ch->name == "path") ++markers;
        }
    }
  });
  EXPECT_EQ(lines, 3);
  EXPECT_EQ(controls, 1);
  EXPECT_EQ(polylines, 3);           // controls are markers only
  EXPECT_EQ(markers, 3 * 7 + 2);     // one marker per point
  EXPECT_EQ(names[2], "bbh \"cot\"");  // escaped and parsed back
  EXPECT_NE(svg.find("<title>Accuracy vs alpha &lt;instruct"), std::string::npos);
}

TEST(Svg, EmptyAndDegenerateInputsStayValid) {
  PlotSpec p;
  p.title = "empty";
  EXPECT_NO_THROW(xmlcheck::parse(render_line_chart_svg(p)));
  p.series.push_back({"one point", {{0, 42, 0}}, false});
  EXPECT_NO_THROW(xmlcheck::parse(render_line_chart_svg(p)));
}
