import Foundation
import Plots
import XCTest

#if canImport(FoundationXML)
  import FoundationXML
#endif

/// Forest plots, read back with an XML parser: one row per item in order, markers and bars at
/// their values on the axis, far-off items as arrows at the edge, robustness, determinism.
final class IntervalChartTests: XCTestCase {
  private func item(
    _ label: String, _ estimate: Double, _ low: Double, _ high: Double, note: String = ""
  ) -> IntervalChart.Item {
    IntervalChart.Item(
      label: label, estimate: estimate, interval: ErrorBar(low: low, high: high), note: note,
      color: Palette.distinct[label.count % Palette.distinct.count], marker: .square)
  }

  /// The numbers in a path's data ("M12.5,40H80…"), in order.
  private func numbers(_ d: String) -> [Double] {
    d.split(whereSeparator: { "MLHVZhvaZ, ".contains($0) }).compactMap { Double($0) }
  }

  /// A marker's centre: the mean of its square's four corners.
  private func center(_ d: String) -> (x: Double, y: Double) {
    let values = numbers(d)
    let xs = stride(from: 0, to: values.count, by: 2).map { values[$0] }
    let ys = stride(from: 1, to: values.count, by: 2).map { values[$0] }
    return (xs.reduce(0, +) / Double(xs.count), ys.reduce(0, +) / Double(ys.count))
  }

  func testEveryItemHasItsRowLabelNoteMarkerAndBarAtItsValues() throws {
    let chart = IntervalChart(
      title: "Δ <vs> reference", xLabel: "points",
      items: [
        item("a", -2, -3, -1, note: "-2.0 [-3.0, -1.0]"), item("bb", 0, -1, 1),
        item("ccc", 2, 1, 3, note: "+2.0"),
      ],
      references: [(0, "reference")], xRange: -4...4)
    let svg = try ParsedSVG(chart.svg())
    XCTAssertEqual(svg.texts(inClass: "title"), ["Δ <vs> reference"])
    XCTAssertEqual(svg.texts(inClass: "row-labels"), ["a", "bb", "ccc"])
    XCTAssertEqual(svg.texts(inClass: "row-notes"), ["-2.0 [-3.0, -1.0]", "+2.0"])
    XCTAssertEqual(svg.texts(inClass: "reference-labels"), ["reference"])
    XCTAssertEqual(svg.texts(inClass: "x-ticks").first, "-4")
    XCTAssertEqual(svg.texts(inClass: "x-ticks").last, "4")

    let markers = svg.elements(withClass: "markers").compactMap { $0.string("d") }.map(center)
    XCTAssertEqual(markers.count, 3)
    // Rows go down the chart in order, one row height apart.
    XCTAssertLessThan(markers[0].y, markers[1].y)
    XCTAssertEqual(markers[1].y - markers[0].y, markers[2].y - markers[1].y, accuracy: 0.15)
    // The axis is linear: the middle item (0) is halfway between −2 and 2, under the reference
    // line.
    XCTAssertEqual(markers[1].x, (markers[0].x + markers[2].x) / 2, accuracy: 0.15)
    let line = numbers(try XCTUnwrap(svg.elements(withClass: "references").first?.string("d")))
    XCTAssertEqual(line[0], markers[1].x, accuracy: 0.15)
    // Each bar spans its interval: ±1 around the estimate is a quarter of the 4-point gap
    // between the outer markers, each side.
    let pixelsPerPoint = (markers[2].x - markers[0].x) / 4
    for (bar, marker) in zip(svg.elements(withClass: "intervals"), markers) {
      let values = numbers(try XCTUnwrap(bar.string("d")))  // M left,y H right, then caps
      XCTAssertEqual(values[0], marker.x - pixelsPerPoint, accuracy: 0.15)
      XCTAssertEqual(values[2], marker.x + pixelsPerPoint, accuracy: 0.15)
      XCTAssertEqual(values[1], marker.y, accuracy: 0.15)
    }
    // Bars are drawn before markers, so no bar covers a point.
    let classes = svg.elements.compactMap { $0.string("class") }
    XCTAssertLessThan(
      try XCTUnwrap(classes.lastIndex(of: "intervals")),
      try XCTUnwrap(classes.firstIndex(of: "markers")))
  }

  /// A note too long for the notes' column widens the chart instead of losing its end (the
  /// numbers are the point of it), up to `maximumWidth`, past which it is cut with an ellipsis.
  func testTheChartWidensToFitItsNotes() throws {
    let long =
      "-0.9 [-1.1, -0.6] vs full-900 · 5 seeds; with the seed spread [-1.2, -0.5]"
    let short = try ParsedSVG(
      IntervalChart(title: "t", xLabel: "x", items: [item("a", 0, -1, 1, note: "+0.0")]).svg())
    XCTAssertEqual(short.root.string("width"), "760")
    let chart = IntervalChart(
      title: "t", xLabel: "x",
      items: [item("white-budget-kd-900-eighth-deep", -0.9, -1.1, -0.6, note: long)])
    let svg = try ParsedSVG(chart.svg())
    XCTAssertEqual(svg.texts(inClass: "row-notes"), [long])
    let width = try XCTUnwrap(Int(try XCTUnwrap(svg.root.string("width"))))
    XCTAssertGreaterThan(width, 760)
    XCTAssertLessThanOrEqual(width, IntervalChart.maximumWidth)

    let endless = String(repeating: "a very long note ", count: 40)
    let capped = try ParsedSVG(
      IntervalChart(title: "t", xLabel: "x", items: [item("a", 0, -1, 1, note: endless)]).svg())
    XCTAssertEqual(capped.root.string("width"), String(IntervalChart.maximumWidth))
    let cut = try XCTUnwrap(capped.texts(inClass: "row-notes").first)
    XCTAssertTrue(cut.hasSuffix("…"), cut)
  }

  /// An outer interval is a thin, faint line behind the bar, spanning its own values, and the
  /// automatic range includes it (else its left end would be cut at the edge).
  func testAnOuterIntervalIsDrawnBehindTheBarAtItsValues() throws {
    var wide = item("a", 0, -1, 1)
    wide.outerInterval = ErrorBar(low: -3, high: 2)
    let chart = IntervalChart(
      title: "", xLabel: "points", items: [wide, item("b", 1, 0.5, 1.5)],
      references: [(0, "reference")])
    let svg = try ParsedSVG(chart.svg())
    let outer = svg.elements(withClass: "outer-intervals")
    XCTAssertEqual(outer.count, 1, "only the item that has one")
    XCTAssertEqual(outer[0].string("stroke-opacity"), "0.5")
    let bars = svg.elements(withClass: "intervals").compactMap { $0.string("d") }.map(numbers)
    let markers = svg.elements(withClass: "markers").compactMap { $0.string("d") }.map(center)
    let outerLine = numbers(try XCTUnwrap(outer[0].string("d")))
    // The bar spans 2 points (−1…1) and the outer line 5 (−3…2), on the same row.
    let pixelsPerPoint = (bars[0][2] - bars[0][0]) / 2
    XCTAssertEqual(outerLine[0], markers[0].x - 3 * pixelsPerPoint, accuracy: 0.15)
    XCTAssertEqual(outerLine[2], markers[0].x + 2 * pixelsPerPoint, accuracy: 0.15)
    XCTAssertEqual(outerLine[1], markers[0].y, accuracy: 0.15)
    let classes = svg.elements.compactMap { $0.string("class") }
    XCTAssertLessThan(
      try XCTUnwrap(classes.firstIndex(of: "outer-intervals")),
      try XCTUnwrap(classes.firstIndex(of: "intervals")))
  }

  /// Beyond an explicit range an item keeps its row: its estimate becomes an arrow at the edge
  /// and a cut interval ends in an arrowhead; the automatic range includes everything.
  func testFarItemsBecomeArrowsAtTheEdgeAndTheAutomaticRangeFitsAll() throws {
    let items = [
      item("close", -0.5, -0.8, -0.2), item("collapsed", -50, -51, -49, note: "-50.0"),
      item("wide", 0.5, -0.1, 9),
    ]
    let zoomed = try ParsedSVG(
      IntervalChart(title: "", xLabel: "", items: items, xRange: -1...1).svg())
    XCTAssertEqual(zoomed.elements(withClass: "markers").count, 2)
    let arrow = try XCTUnwrap(zoomed.elements(withClass: "off-scale").first?.string("d"))
    let frameX = try XCTUnwrap(zoomed.elements(withClass: "frame").first?.number("x"))
    XCTAssertLessThan(center(arrow).x - frameX, 8, "at the left edge")
    // Beside the arrow, the item's own marker, so its shape still says which method it is.
    let own = try XCTUnwrap(zoomed.elements(withClass: "off-scale-markers").first?.string("d"))
    XCTAssertEqual(zoomed.elements(withClass: "off-scale-markers").count, 1)
    XCTAssertGreaterThan(center(own).x, center(arrow).x)
    XCTAssertEqual(center(own).y, center(arrow).y, accuracy: 1, "on the same row")
    // The collapsed item's interval is wholly off the axis: no bar; the wide one is cut at the
    // right edge with an arrowhead (a path with line-tos) instead of a cap.
    let bars = zoomed.elements(withClass: "intervals").compactMap { $0.string("d") }
    XCTAssertEqual(bars.count, 2)
    XCTAssertFalse(bars[0].contains("L"))
    XCTAssertTrue(bars[1].contains("L"))
    XCTAssertEqual(zoomed.texts(inClass: "row-notes"), ["-50.0"])

    let fitted = try ParsedSVG(IntervalChart(title: "", xLabel: "", items: items).svg())
    XCTAssertEqual(fitted.elements(withClass: "markers").count, 3)
    XCTAssertTrue(fitted.elements(withClass: "off-scale").isEmpty)
    let ticks = fitted.texts(inClass: "x-ticks").compactMap(Double.init)
    XCTAssertLessThanOrEqual(try XCTUnwrap(ticks.min()), -40)
    XCTAssertGreaterThanOrEqual(try XCTUnwrap(ticks.max()), 0)
  }

  func testEmptyAndNonFiniteItemsStayWellFormedAndOutputIsDeterministic() throws {
    let empty = try ParsedSVG(IntervalChart(title: "t", xLabel: "x", items: []).svg())
    XCTAssertEqual(empty.texts(inClass: "no-data"), ["no data"])
    let chart = IntervalChart(
      title: "t", xLabel: "x",
      items: [
        IntervalChart.Item(label: "nan", estimate: .nan, interval: nil, note: "not paired"),
        item("one", 1, .nan, 2), item("two & <three>", 1, 0.5, .infinity),
      ])
    let text = chart.svg()
    let svg = try ParsedSVG(text)
    XCTAssertEqual(svg.texts(inClass: "row-labels"), ["nan", "one", "two & <three>"])
    XCTAssertEqual(svg.elements(withClass: "markers").count, 2)
    XCTAssertTrue(svg.elements(withClass: "intervals").isEmpty, "no bar with a non-finite end")
    XCTAssertEqual(text, chart.svg())
    XCTAssertFalse(text.contains("nan,"), text)
  }
}
