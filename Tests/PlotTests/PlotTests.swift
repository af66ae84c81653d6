import Foundation
import Plots
import XCTest

#if canImport(FoundationXML)
  import FoundationXML
#endif

/// Rendered charts, read back with an XML parser: structure, text, legend placement, robustness
/// against bad data, bands and reference lines, figures, determinism.
final class PlotTests: XCTestCase {
  private func chart(_ series: [Series], title: String = "loss") -> LineChart {
    LineChart(title: title, xLabel: "step", yLabel: "value", series: series)
  }

  private func frame(_ svg: ParsedSVG) throws -> (
    minX: Double, minY: Double, maxX: Double, maxY: Double
  ) {
    let rect = try XCTUnwrap(svg.elements(withClass: "frame").first)
    let x = try XCTUnwrap(rect.number("x"))
    let y = try XCTUnwrap(rect.number("y"))
    return (
      x, y, x + (try XCTUnwrap(rect.number("width"))), y + (try XCTUnwrap(rect.number("height")))
    )
  }

  func testDocumentIsWellFormedSVGWithViewBox() throws {
    var loss = chart([Series(name: "train", points: points(50) { 1 / ($0 + 1) })])
    loss.width = 640
    loss.height = 360
    let text = loss.svg()
    XCTAssertTrue(text.hasPrefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg "))
    let svg = try ParsedSVG(text)
    XCTAssertEqual(svg.root.localName, "svg")
    XCTAssertEqual(svg.root.uri, "http://www.w3.org/2000/svg")
    XCTAssertEqual(svg.root.string("viewBox"), "0 0 640 360")
    XCTAssertEqual(svg.root.string("width"), "640")
    XCTAssertEqual(svg.root.string("height"), "360")
    XCTAssertEqual(svg.root.string("font-family"), "sans-serif")
    XCTAssertEqual(svg.elements(withClass: "series").count, 1)
    // One path per series, not one element per point.
    XCTAssertEqual(svg.elements(withClass: "series").first?.children?.count, 1)
  }

  func testTextIsPresentAndEscaped() throws {
    let title = "Loss <train> & \"val\" — 'σ'"
    let xLabel = "step (d·W + N)"
    let yLabel = "σ < 1 & > 0"
    let names = ["r=8 <fast>", "r=4 & \"slow\""]
    let loss = LineChart(
      title: title, xLabel: xLabel, yLabel: yLabel,
      series: names.map { Series(name: $0, points: points(10) { $0 }) })
    let text = loss.svg()
    XCTAssertTrue(text.contains("Loss &lt;train&gt; &amp; &quot;val&quot; — &apos;σ&apos;"))
    XCTAssertFalse(text.contains("<train>"))
    let svg = try ParsedSVG(text)
    XCTAssertEqual(svg.texts(inClass: "title"), [title])
    XCTAssertEqual(svg.texts(inClass: "x-label"), [xLabel])
    XCTAssertEqual(svg.texts(inClass: "y-label"), [yLabel])
    XCTAssertEqual(svg.texts(inClass: "legend"), names)
    XCTAssertEqual(svg.elements(named: "title").first?.stringValue, title)
  }

  func testControlCharactersAndEmptyStringsStayWellFormed() throws {
    let odd = LineChart(
      title: "", xLabel: "tab\there\u{01}", yLabel: "",
      series: [Series(name: "a\u{0B}b", points: points(3) { $0 }, color: "\"><script>")])
    let svg = try ParsedSVG(odd.svg())
    XCTAssertTrue(svg.texts(inClass: "title").isEmpty)
    XCTAssertEqual(svg.texts(inClass: "x-label"), ["tab here\u{FFFD}"])
  }

  func testLegendOnlyForSeveralOrNamedSeries() throws {
    let unnamed = try ParsedSVG(chart([Series(name: "", points: points(5) { $0 })]).svg())
    XCTAssertTrue(unnamed.elements(withClass: "legend").isEmpty)
    let named = try ParsedSVG(chart([Series(name: "train", points: points(5) { $0 })]).svg())
    XCTAssertEqual(named.texts(inClass: "legend"), ["train"])
    let two = try ParsedSVG(
      chart([
        Series(name: "", points: points(5) { $0 }), Series(name: "b", points: points(5) { -$0 }),
      ])
      .svg())
    XCTAssertEqual(two.texts(inClass: "legend"), ["", "b"])
  }

  /// Short names go to the right of the plot, long or many names below it; never inside.
  func testLegendIsOutsideThePlotArea() throws {
    let short = chart([
      Series(name: "train", points: points(20) { $0 }),
      Series(name: "validation", points: points(20) { $0 * 2 }),
    ])
    let right = try ParsedSVG(short.svg())
    let rightFrame = try frame(right)
    let rightTexts = try XCTUnwrap(right.elements(withClass: "legend").first?.children)
      .compactMap { $0 as? XMLElement }.filter { $0.localName == "text" }
    XCTAssertEqual(rightTexts.count, 2)
    for text in rightTexts {
      XCTAssertGreaterThan(try XCTUnwrap(text.number("x")), rightFrame.maxX)
    }

    let long = chart(
      (0..<9).map {
        Series(name: "encoder.layer.\($0).attention.self.query", points: points(20) { $0 })
      })
    let below = try ParsedSVG(long.svg())
    let belowFrame = try frame(below)
    let legend = try XCTUnwrap(below.elements(withClass: "legend").first)
    let belowTexts = (legend.children ?? []).compactMap { $0 as? XMLElement }
      .filter { $0.localName == "text" }
    XCTAssertEqual(belowTexts.count, 9)
    let xLabelY = try XCTUnwrap(below.elements(withClass: "x-label").first?.number("y"))
    for text in belowTexts {
      let y = try XCTUnwrap(text.number("y"))
      XCTAssertGreaterThan(y, xLabelY, "legend below the x label")
      XCTAssertLessThanOrEqual(y, 420)
      XCTAssertGreaterThanOrEqual(try XCTUnwrap(text.number("x")), 0)
    }
    XCTAssertLessThan(belowFrame.maxY, xLabelY)
  }

  func testAutomaticRangeIsPaddedAndTicksAreNice() throws {
    let accuracy = chart([Series(name: "", points: points(11) { $0 / 10 })])
    let svg = try ParsedSVG(accuracy.svg())
    XCTAssertEqual(svg.texts(inClass: "y-ticks"), ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"])
    XCTAssertEqual(svg.texts(inClass: "x-ticks"), ["0", "2", "4", "6", "8", "10"])
    // 5% padding: the extreme ticks sit inside the frame, not on it.
    let box = try frame(svg)
    let yTicks = try XCTUnwrap(svg.elements(withClass: "y-ticks").first?.children)
      .compactMap { ($0 as? XMLElement)?.number("y") }
    XCTAssertGreaterThan(try XCTUnwrap(yTicks.min()), box.minY + 5)
    XCTAssertLessThan(try XCTUnwrap(yTicks.max()), box.maxY - 5 + 11 * 0.35)
  }

  func testSingleValuedSeriesGetsARangeAroundIt() throws {
    let flat = chart([Series(name: "", points: points(5) { _ in 0.7 })])
    let svg = try ParsedSVG(flat.svg())
    let labels = svg.texts(inClass: "y-ticks")
    XCTAssertTrue(labels.contains("0.70"), "\(labels)")
    XCTAssertGreaterThanOrEqual(labels.count, 2)
    let single = try ParsedSVG(chart([Series(name: "", points: [(x: 3, y: 0)])]).svg())
    XCTAssertEqual(single.texts(inClass: "x-ticks"), ["2", "3", "4"])
    XCTAssertTrue(single.texts(inClass: "y-ticks").contains("0.0"))
  }

  func testExplicitRangesAreUsed() throws {
    var accuracy = chart([Series(name: "", points: points(10) { $0 / 20 })])
    accuracy.yRange = 0...1
    accuracy.xRange = 0...100
    let svg = try ParsedSVG(accuracy.svg())
    XCTAssertEqual(svg.texts(inClass: "y-ticks").first, "0.0")
    XCTAssertEqual(svg.texts(inClass: "y-ticks").last, "1.0")
    XCTAssertEqual(svg.texts(inClass: "x-ticks").last, "100")
  }

  func testNonFinitePointsAreSkippedAndBreakTheLine() throws {
    let broken = chart([
      Series(
        name: "loss",
        points: [
          (0, 1), (1, 0.8), (2, .nan), (3, 0.5), (.infinity, 0.4), (5, -.infinity), (6, 0.3),
          (7, 0.25),
        ])
    ])
    let text = broken.svg()
    XCTAssertFalse(text.lowercased().contains("nan"))
    XCTAssertFalse(text.lowercased().contains("inf"))
    let svg = try ParsedSVG(text)
    let paths = try XCTUnwrap(svg.elements(withClass: "series").first?.children)
      .compactMap { $0 as? XMLElement }
    // Two runs of two points as one line path; the isolated (3, 0.5) as a marker.
    XCTAssertEqual(paths.count, 2)
    let line = try XCTUnwrap(paths.first?.string("d"))
    XCTAssertEqual(line.filter { $0 == "M" }.count, 2, line)
    XCTAssertEqual(try XCTUnwrap(paths.last?.string("d")).filter { $0 == "M" }.count, 1)
    XCTAssertFalse(svg.allTexts.contains("no data"))
  }

  func testEmptyChartSaysNoData() throws {
    for series in [
      [], [Series(name: "train", points: [])],
      [Series(name: "train", points: [(.nan, 1), (1, .nan), (.infinity, -.infinity)])],
    ] {
      let svg = try ParsedSVG(chart(series).svg())
      XCTAssertEqual(svg.texts(inClass: "no-data"), ["no data"])
      XCTAssertTrue(svg.texts(inClass: "x-ticks").isEmpty)
      XCTAssertEqual(svg.texts(inClass: "title"), ["loss"])
    }
    let empty = try ParsedSVG(Figure(charts: []).svg())
    XCTAssertEqual(empty.texts(inClass: "no-data"), ["no data"])
  }

  func testLogAxisSkipsNonPositiveValues() throws {
    var loss = chart([
      Series(name: "train", points: [(0, 2.3), (1, 0), (2, -1), (3, 0.1), (4, 0.01), (5, 0.001)])
    ])
    loss.logY = true
    let text = loss.svg()
    let svg = try ParsedSVG(text)
    XCTAssertEqual(svg.texts(inClass: "y-ticks"), ["0.001", "0.01", "0.1", "1"])
    XCTAssertFalse(svg.elements(withClass: "minor-ticks").isEmpty)
    // Decades are evenly spaced on a log axis.
    let ys = try XCTUnwrap(svg.elements(withClass: "y-ticks").first?.children)
      .compactMap { ($0 as? XMLElement)?.number("y") }
    let gaps = zip(ys, ys.dropFirst()).map { $0 - $1 }
    for gap in gaps { XCTAssertEqual(gap, gaps[0], accuracy: 0.15) }

    var nothing = chart([Series(name: "train", points: [(0, 0), (1, -2)])])
    nothing.logY = true
    XCTAssertEqual(try ParsedSVG(nothing.svg()).texts(inClass: "no-data"), ["no data"])
  }

  func testBandsAndReferenceLines() throws {
    var accuracy = chart([Series(name: "", points: points(100) { 0.6 + $0 / 400 })])
    accuracy.bands = [
      Band(from: 0, to: 10, label: "warm-up", color: "#D6E9F5"),
      Band(from: 80, to: 200, label: "cool-down & <rest>"),
      Band(from: 500, to: 600, label: "off the chart"),
    ]
    accuracy.references = [ReferenceLine(y: 0.5, label: "chance 0.5")]
    let svg = try ParsedSVG(accuracy.svg())
    let bandRects = try XCTUnwrap(svg.elements(withClass: "bands").first?.children)
      .compactMap { $0 as? XMLElement }
    // With xRange nil the axis covers the bands as well as the data.
    XCTAssertEqual(bandRects.count, 3)
    XCTAssertEqual(bandRects.first?.string("fill"), "#D6E9F5")
    XCTAssertEqual(
      svg.texts(inClass: "band-labels"), ["warm-up", "cool-down & <rest>", "off the chart"])
    XCTAssertEqual(svg.texts(inClass: "reference-labels"), ["chance 0.5"])
    let references = try XCTUnwrap(svg.elements(withClass: "references").first)
    XCTAssertEqual(references.string("stroke-dasharray"), "6 4")
    // The automatic range reaches down to the reference line.
    XCTAssertEqual(svg.texts(inClass: "y-ticks").first, "0.5")
    // Band labels sit above the plot, clear of the data.
    let box = try frame(svg)
    let labels = try XCTUnwrap(svg.elements(withClass: "band-labels").first?.children)
      .compactMap { ($0 as? XMLElement)?.number("y") }
    for y in labels { XCTAssertLessThan(y, box.minY) }

    accuracy.xRange = 0...99
    accuracy.bands.append(Band(from: 95, to: .infinity, label: "to the end"))
    accuracy.bands.append(Band(from: .nan, to: 5, label: "broken"))
    let clamped = try ParsedSVG(accuracy.svg())
    XCTAssertEqual(
      clamped.texts(inClass: "band-labels"), ["warm-up", "cool-down & <rest>", "to the end"])
    let lastBand = try XCTUnwrap(
      clamped.elements(withClass: "bands").first?.children?.last as? XMLElement)
    let clampedFrame = try frame(clamped)
    XCTAssertEqual(
      try XCTUnwrap(lastBand.number("x")) + (try XCTUnwrap(lastBand.number("width"))),
      clampedFrame.maxX, accuracy: 0.11)
    accuracy.yRange = 0.55...1
    let noReference = try ParsedSVG(accuracy.svg())
    XCTAssertTrue(
      noReference.elements(withClass: "references").isEmpty, "outside an explicit range")
  }

  /// A reference label goes where it hides least: here the curve zigzags across the line's right
  /// half, so the label moves to the left end.
  func testReferenceLabelAvoidsTheData() throws {
    let zigzag = chart([
      Series(
        name: "",
        points: points(50) {
          $0 < 25 ? 0 : ($0.truncatingRemainder(dividingBy: 2) == 0 ? 0.4 : 0.6)
        })
    ])
    var withReference = zigzag
    withReference.references = [ReferenceLine(y: 0.5, label: "half")]
    let svg = try ParsedSVG(withReference.svg())
    let label = try XCTUnwrap(
      svg.elements(withClass: "reference-labels").first?.children?.first as? XMLElement)
    let box = try frame(svg)
    XCTAssertLessThan(try XCTUnwrap(label.number("x")), (box.minX + box.maxX) / 2)
  }

  func testFigureGrid() throws {
    let loss = chart([Series(name: "train", points: points(10) { $0 })])
    var small = loss
    small.width = 400
    small.height = 300
    let figure = Figure(charts: [loss, loss, small], columns: 2)
    XCTAssertEqual(figure.grid.rows, 2)
    XCTAssertEqual(figure.grid.columns, 2)
    let svg = try ParsedSVG(figure.svg())
    XCTAssertEqual(svg.root.string("viewBox"), "0 0 1440 720")
    let cells = svg.elements(withClass: "cell")
    XCTAssertEqual(
      cells.map { $0.string("transform") },
      ["translate(0,0)", "translate(720,0)", "translate(160,420)"])
    // Clip-path ids stay unique in one document.
    let ids = svg.elements(named: "clipPath").compactMap { $0.string("id") }
    XCTAssertEqual(ids.count, 3)
    XCTAssertEqual(Set(ids).count, 3)

    XCTAssertEqual(Figure(charts: [loss, loss, loss], columns: 0).grid.columns, 1)
    XCTAssertEqual(Figure(charts: [loss, loss], columns: 5).grid.columns, 2)
    let column = try ParsedSVG(Figure(charts: [loss, small], columns: 1).svg())
    XCTAssertEqual(column.root.string("viewBox"), "0 0 720 720")
  }

  func testOutputIsDeterministic() {
    var loss = chart(
      [
        Series(name: "train", points: points(500) { exp(-$0 / 100) + 0.01 * sin($0) }),
        Series(name: "val", points: points(500) { exp(-$0 / 120) }, style: .dashed),
      ], title: "déterministe")
    loss.logY = true
    loss.bands = [Band(from: 0, to: 50, label: "warm-up")]
    loss.references = [ReferenceLine(y: 0.1, label: "target")]
    let first = loss.svg()
    XCTAssertEqual(first, loss.svg())
    XCTAssertEqual(Figure(charts: [loss, loss]).svg(), Figure(charts: [loss, loss]).svg())
    XCTAssertFalse(first.contains("e-0"), "coordinates in fixed notation")
  }

  func testStylesAndPalette() throws {
    let styles: [LineStyle] = [.solid, .dashed, .dotted, .markers, .stepped]
    let series =
      styles.enumerated().map {
        Series(name: "s\($0.offset)", points: points(10) { $0 }, style: $0.element)
      } + [Series(name: "custom", points: points(10) { -$0 }, color: "rebeccapurple")]
    let svg = try ParsedSVG(chart(series).svg())
    let paths = try XCTUnwrap(svg.elements(withClass: "series").first?.children)
      .compactMap { $0 as? XMLElement }
    XCTAssertEqual(paths.count, 6)
    XCTAssertEqual(paths[0].string("stroke"), Palette.colors[0])
    XCTAssertEqual(paths[1].string("stroke"), Palette.colors[1])
    XCTAssertEqual(paths[1].string("stroke-dasharray"), "7 4")
    XCTAssertNotNil(paths[2].string("stroke-dasharray"))
    XCTAssertEqual(paths[3].string("fill"), Palette.colors[3])
    XCTAssertEqual(paths[3].string("stroke"), "none")
    XCTAssertTrue(try XCTUnwrap(paths[4].string("d")).contains("H"))
    XCTAssertEqual(paths[5].string("stroke"), "rebeccapurple")
    XCTAssertEqual(Set(Palette.colors).count, Palette.colors.count)
  }

  func testMarkerShapesAndErrorBars() throws {
    // One point per shape at the same place, each with a bar from 0 to 10 around y = 5.
    let series = MarkerShape.allCases.enumerated().map { index, shape in
      Series(
        name: shape.rawValue, points: [(1, 5)], style: .markers,
        color: Palette.distinct[index], marker: shape,
        errorBars: [ErrorBar(low: 0, high: 10)])
    }
    let text = chart(series).svg()
    let svg = try ParsedSVG(text)
    let markers = svg.elements(withClass: "markers")
    XCTAssertEqual(markers.count, MarkerShape.allCases.count)
    // Every shape has its own outline, and every marker an outline in white over the others.
    XCTAssertEqual(Set(markers.compactMap { $0.string("d") }).count, MarkerShape.allCases.count)
    XCTAssertTrue(markers.allSatisfy { $0.string("stroke") == "#FFFFFF" })
    XCTAssertEqual(
      markers.compactMap { $0.string("fill") }, Array(Palette.distinct.prefix(markers.count)))
    let bars = svg.elements(withClass: "error-bars")
    XCTAssertEqual(bars.count, MarkerShape.allCases.count)
    // Bars come before the markers, so no bar covers a point.
    let classes = svg.elements.compactMap { $0.string("class") }
    XCTAssertLessThan(
      try XCTUnwrap(classes.lastIndex(of: "error-bars")),
      try XCTUnwrap(classes.firstIndex(of: "markers")))
    // The automatic y range covers the bars, not just the points.
    let ticks = svg.texts(inClass: "y-ticks").compactMap(Double.init)
    XCTAssertLessThanOrEqual(try XCTUnwrap(ticks.min()), 0)
    XCTAssertGreaterThanOrEqual(try XCTUnwrap(ticks.max()), 10)
    // The legend shows each shape.
    let legend = try XCTUnwrap(svg.elements(withClass: "legend").first)
    let swatches = (legend.children ?? []).compactMap { $0 as? XMLElement }
      .filter { $0.localName == "path" }
    XCTAssertEqual(swatches.count, MarkerShape.allCases.count)
    XCTAssertEqual(Set(Palette.distinct).count, Palette.distinct.count)
    // A bar with a non-finite end is left out; the point stays.
    let partial = try ParsedSVG(
      chart([
        Series(
          name: "a", points: [(0, 1), (1, 2)], marker: .square,
          errorBars: [ErrorBar(low: .nan, high: 2), ErrorBar(low: 1.5, high: 2.5)])
      ]).svg())
    let d = try XCTUnwrap(partial.elements(withClass: "error-bars").first?.string("d"))
    XCTAssertEqual(d.components(separatedBy: "V").count - 1, 1, d)
  }

  /// 100k steps become at most a few points per pixel column.  /// 100k steps become at most a few points per pixel column.
  func testLongSeriesStaysSmall() {
    let long = chart([Series(name: "", points: points(100_000) { 1 + sin($0 / 1000) })])
    let size = long.svg().utf8.count
    XCTAssertLessThan(size, 40_000)
  }

  /// Values at the ends of Double's range neither crash nor break the document.
  func testExtremeValuesStayWellFormed() throws {
    let extremes: [(x: Double, y: Double)] = [
      (0, -Double.greatestFiniteMagnitude), (1, Double.greatestFiniteMagnitude),
      (2, Double.leastNonzeroMagnitude), (1e300, 1),
    ]
    for logY in [false, true] {
      var wild = chart([Series(name: "", points: extremes)])
      wild.logY = logY
      wild.references = [ReferenceLine(y: 1e-300, label: "tiny")]
      wild.bands = [Band(from: -Double.infinity, to: 3, label: "unbounded")]
      let text = wild.svg()
      XCTAssertFalse(text.lowercased().contains("nan"))
      _ = try ParsedSVG(text)
    }
  }

  func testTinySizesAreClamped() throws {
    var tiny = chart([Series(name: "a name that is rather long", points: points(3) { $0 })])
    tiny.width = -5
    tiny.height = 0
    let svg = try ParsedSVG(tiny.svg())
    XCTAssertEqual(svg.root.string("viewBox"), "0 0 240 160")
  }
}
