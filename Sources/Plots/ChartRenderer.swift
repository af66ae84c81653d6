import Foundation

/// Lays out and draws one chart as SVG elements (no document frame), so a `Figure` can place
/// several in one file. `idPrefix` keeps clip-path ids unique within that file.
struct ChartRenderer {
  typealias Point = (x: Double, y: Double)

  let chart: LineChart
  let idPrefix: String

  var width: Int { max(chart.width, 240) }
  var height: Int { max(chart.height, 160) }

  // Type sizes in pixels.
  private static let titleSize = 15.0
  private static let labelSize = 12.0
  private static let tickSize = 11.0
  private static let legendSize = 11.0
  private static let annotationSize = 10.0
  // Legend geometry: a line sample, a gap, the name; entries this far apart.
  private static let swatchWidth = 24.0
  private static let swatchGap = 6.0
  private static let legendRowHeight = 18.0
  private static let legendEntrySpacing = 18.0
  private static let bandRowHeight = 14.0
  private static let markerRadius = 2.5

  // MARK: - Data

  /// A series ready to draw: its colour resolved and its points split into runs at skipped points.
  struct Prepared {
    var series: Series
    var color: String
    var runs: [[Point]]
  }

  private func prepare() -> [Prepared] {
    var paletteIndex = 0
    return chart.series.map { series in
      let color: String
      if let chosen = series.color, !chosen.isEmpty {
        color = chosen
      } else {
        color = Palette.colors[paletteIndex % Palette.colors.count]
        paletteIndex += 1
      }
      var runs: [[Point]] = []
      var current: [Point] = []
      for point in series.points {
        if point.x.isFinite && point.y.isFinite && (!chart.logY || point.y > 0) {
          current.append(point)
        } else if !current.isEmpty {
          runs.append(current)
          current = []
        }
      }
      if !current.isEmpty { runs.append(current) }
      return Prepared(series: series, color: color, runs: runs)
    }
  }

  /// A non-empty interval around a single value: counting axes get a step either side.
  private static func widened(_ value: Double, integral: Bool) -> (Double, Double) {
    if integral { return (value - 1, value + 1) }
    if value == 0 { return (-1, 1) }
    let delta = value.magnitude * 0.1
    return (value - delta, value + delta)
  }

  private func xDomain(_ prepared: [Prepared]) -> (lower: Double, upper: Double, integral: Bool) {
    let xs = prepared.flatMap { $0.runs.flatMap { $0.map(\.x) } }
    let integral = !xs.isEmpty && xs.allSatisfy { $0 == $0.rounded() && $0.magnitude < 1.0e15 }
    var lower: Double
    var upper: Double
    if let range = chart.xRange, range.lowerBound.isFinite, range.upperBound.isFinite {
      (lower, upper) = (range.lowerBound, range.upperBound)
    } else {
      let bandEdges = chart.bands.flatMap { [$0.from, $0.to] }.filter(\.isFinite)
      let all = xs + bandEdges
      guard let minimum = all.min(), let maximum = all.max() else { return (0, 1, false) }
      (lower, upper) = (minimum, maximum)
    }
    if lower == upper { (lower, upper) = Self.widened(lower, integral: integral) }
    return (lower, upper, integral)
  }

  /// The y interval in data units (positive on a log axis).
  private func yDomain(_ prepared: [Prepared]) -> (lower: Double, upper: Double) {
    let ys = prepared.flatMap { $0.runs.flatMap { $0.map(\.y) } }
    let referenceYs = chart.references.map(\.y).filter { $0.isFinite && (!chart.logY || $0 > 0) }
    if let range = chart.yRange, range.lowerBound.isFinite, range.upperBound.isFinite {
      if !chart.logY {
        if range.lowerBound == range.upperBound {
          return Self.widened(range.lowerBound, integral: false)
        }
        return (range.lowerBound, range.upperBound)
      }
      if range.upperBound > 0 {
        var lower = range.lowerBound
        if lower <= 0 {
          // No zero on a log axis: start at the smallest value that can be drawn.
          let smallest = (ys + referenceYs).filter { $0 < range.upperBound }.min()
          lower = smallest ?? range.upperBound / 10
        }
        return lower == range.upperBound ? (lower / 2, lower * 2) : (lower, range.upperBound)
      }
    }
    let all = ys + referenceYs
    guard let minimum = all.min(), let maximum = all.max() else {
      return chart.logY ? (1, 10) : (0, 1)
    }
    if chart.logY {
      var low = log10(minimum)
      var high = log10(maximum)
      if low == high { (low, high) = (low - 0.15, high + 0.15) }
      let pad = (high - low) * 0.05
      return (pow(10, low - pad), pow(10, high + pad))
    }
    if minimum == maximum { return Self.widened(minimum, integral: false) }
    let pad = (maximum - minimum) * 0.05
    return (minimum - pad, maximum + pad)
  }

  // MARK: - Geometry

  /// Data units to pixels along one axis (log10 first on a log axis).
  struct Scale {
    var lower: Double
    var upper: Double
    var isLog: Bool
    var start: Double
    var end: Double

    init(lower: Double, upper: Double, isLog: Bool, start: Double, end: Double) {
      self.lower = isLog ? log10(lower) : lower
      self.upper = isLog ? log10(upper) : upper
      self.isLog = isLog
      self.start = start
      self.end = end
    }

    func pixel(_ value: Double) -> Double {
      let t = isLog ? log10(value) : value
      return start + (t - lower) / (upper - lower) * (end - start)
    }
  }

  struct Rect {
    var minX: Double
    var minY: Double
    var maxX: Double
    var maxY: Double

    func intersects(_ other: Rect) -> Bool {
      minX < other.maxX && other.minX < maxX && minY < other.maxY && other.minY < maxY
    }

    func contains(_ x: Double, _ y: Double) -> Bool {
      x >= minX && x <= maxX && y >= minY && y <= maxY
    }

    /// Whether the segment from `a` to `b` passes through the rectangle (Liang–Barsky).
    func intersects(segmentFrom a: Point, to b: Point) -> Bool {
      var t0 = 0.0
      var t1 = 1.0
      let dx = b.x - a.x
      let dy = b.y - a.y
      for (p, q) in [(-dx, a.x - minX), (dx, maxX - a.x), (-dy, a.y - minY), (dy, maxY - a.y)] {
        if p == 0 {
          if q < 0 { return false }
        } else {
          let r = q / p
          if p < 0 { t0 = max(t0, r) } else { t1 = min(t1, r) }
          if t0 > t1 { return false }
        }
      }
      return true
    }
  }

  struct LegendItem {
    var text: String
    var fontSize: Double
    var color: String
    var style: LineStyle
    /// Left end of the swatch and the entry's vertical centre.
    var x: Double
    var y: Double
  }

  struct BandLabel {
    var text: String
    var centerX: Double
    var row: Int
  }

  // MARK: - Layout

  private func legendEntries(_ prepared: [Prepared]) -> [Prepared] {
    guard prepared.count > 1 || (prepared.count == 1 && !prepared[0].series.name.isEmpty) else {
      return []
    }
    return prepared
  }

  private static func fits(_ ticks: [Tick], scale: Scale, fontSize: Double) -> Bool {
    for (left, right) in zip(ticks, ticks.dropFirst()) {
      let needed =
        (TextMetrics.width(left.label, fontSize: fontSize)
          + TextMetrics.width(right.label, fontSize: fontSize)) / 2 + 10
      if (scale.pixel(right.value) - scale.pixel(left.value)).magnitude < needed { return false }
    }
    return true
  }

  // MARK: - Drawing

  /// The chart's elements in drawing order: bands, grid, reference lines, series, frame, text.
  func body() -> String {
    let width = Double(self.width)
    let height = Double(self.height)
    let prepared = prepare()
    let hasData = prepared.contains { !$0.runs.isEmpty }
    let entries = legendEntries(prepared)
    let x = xDomain(prepared)
    let y = yDomain(prepared)

    // Y ticks first: their label widths set the left margin.
    let yIntervals = min(max(Int((height - 110) / 45), 2), 10)
    var yTicks: [Tick] = []
    var yMinor: [Double] = []
    if hasData {
      if chart.logY {
        (yTicks, yMinor) = Ticks.logarithmic(
          lower: y.lower, upper: y.upper, maxIntervals: yIntervals)
      } else {
        yTicks = Ticks.linear(lower: y.lower, upper: y.upper, maxIntervals: yIntervals)
      }
    }
    let yTickWidth = yTicks.map { TextMetrics.width($0.label, fontSize: Self.tickSize) }.max() ?? 0

    let title = TextMetrics.fitted(
      chart.title, fontSize: Self.titleSize, minimumFontSize: 11, maxWidth: width - 16, bold: true)
    let left = max(40, (chart.yLabel.isEmpty ? 8 : 28) + yTickWidth + 10)

    // Legend on the right when it is narrow and short enough, else in rows below the x label.
    let legendTextWidths = entries.map {
      TextMetrics.width($0.series.name, fontSize: Self.legendSize)
    }
    let legendWidth = Self.swatchWidth + Self.swatchGap + (legendTextWidths.max() ?? 0) + 4
    let legendOnRight =
      !entries.isEmpty && legendWidth <= width * 0.3
      && Double(entries.count) * Self.legendRowHeight <= height - 110
    let right = legendOnRight ? legendWidth + 28 : 20
    let plotLeft = left
    let plotRight = width - right

    var legendRows: [[(entry: Int, text: String, size: Double, width: Double)]] = []
    if !entries.isEmpty && !legendOnRight {
      let available = width - 24
      var row: [(entry: Int, text: String, size: Double, width: Double)] = []
      var rowWidth = 0.0
      for (index, entry) in entries.enumerated() {
        let fitted = TextMetrics.fitted(
          entry.series.name, fontSize: Self.legendSize, minimumFontSize: 9,
          maxWidth: available - Self.swatchWidth - Self.swatchGap)
        let itemWidth =
          Self.swatchWidth + Self.swatchGap
          + TextMetrics.width(fitted.text, fontSize: fitted.fontSize)
        let spacing = row.isEmpty ? 0 : Self.legendEntrySpacing
        if !row.isEmpty && rowWidth + spacing + itemWidth > available {
          legendRows.append(row)
          row = []
          rowWidth = 0
        }
        rowWidth += (row.isEmpty ? 0 : Self.legendEntrySpacing) + itemWidth
        row.append((index, fitted.text, fitted.fontSize, itemWidth))
      }
      if !row.isEmpty { legendRows.append(row) }
    }

    // Band labels go in rows above the plot; a label that would touch the previous one in its
    // row moves down a row (three at most, then they share the last).
    var xScale = Scale(
      lower: x.lower, upper: x.upper, isLog: false, start: plotLeft, end: plotRight)
    var bandLabels: [BandLabel] = []
    var rowEnds: [Double] = []
    let visibleBands = hasData ? visible(chart.bands, x: x) : []
    for band in visibleBands where !band.label.isEmpty {
      let fitted = TextMetrics.fitted(
        band.label, fontSize: Self.annotationSize, minimumFontSize: Self.annotationSize,
        maxWidth: plotRight - plotLeft)
      let labelWidth = TextMetrics.width(fitted.text, fontSize: Self.annotationSize)
      let center = (xScale.pixel(band.from) + xScale.pixel(band.to)) / 2
      let start = min(max(center - labelWidth / 2, plotLeft), plotRight - labelWidth)
      var row = rowEnds.firstIndex { start >= $0 + 6 } ?? rowEnds.count
      if row >= 3 { row = 2 }
      if row == rowEnds.count { rowEnds.append(0) }
      rowEnds[row] = start + labelWidth
      bandLabels.append(BandLabel(text: fitted.text, centerX: start + labelWidth / 2, row: row))
    }

    let titleBottom = chart.title.isEmpty ? 14.0 : 34.0
    let plotTop =
      titleBottom + Double(rowEnds.count) * Self.bandRowHeight + (rowEnds.isEmpty ? 0 : 4)
    var bottom = chart.xLabel.isEmpty ? 28.0 : 46.0
    if !legendRows.isEmpty { bottom += Double(legendRows.count) * Self.legendRowHeight + 4 }
    let plotBottom = max(height - bottom, plotTop + 20)
    let plot = Rect(minX: plotLeft, minY: plotTop, maxX: plotRight, maxY: plotBottom)
    let yScale = Scale(
      lower: y.lower, upper: y.upper, isLog: chart.logY, start: plotBottom, end: plotTop)
    xScale = Scale(lower: x.lower, upper: x.upper, isLog: false, start: plotLeft, end: plotRight)

    // X ticks: as many as fit without their labels touching.
    var xTicks: [Tick] = []
    if hasData {
      var intervals = min(max(Int((plotRight - plotLeft) / 80), 2), 10)
      while true {
        xTicks = Ticks.linear(
          lower: x.lower, upper: x.upper, maxIntervals: intervals, integral: x.integral)
        if intervals <= 1 || Self.fits(xTicks, scale: xScale, fontSize: Self.tickSize) { break }
        intervals -= 1
      }
      // A short plot (legend rows below) gets fewer y ticks, at least 22 px apart.
      var intervals2 = yIntervals
      while !chart.logY && intervals2 > 1 && yTicks.count > 1
        && (yScale.pixel(yTicks[0].value) - yScale.pixel(yTicks[1].value)).magnitude < 22
      {
        intervals2 -= 1
        yTicks = Ticks.linear(lower: y.lower, upper: y.upper, maxIntervals: intervals2)
      }
    }

    var svg = ""
    let clipID = idPrefix + "plot"
    svg += "<defs><clipPath id=\"\(clipID)\">"
    svg += rect(
      Rect(minX: plotLeft - 4, minY: plotTop - 3, maxX: plotRight + 4, maxY: plotBottom + 3))
    svg += "</clipPath></defs>\n"

    if hasData {
      svg += drawBands(visibleBands, plot: plot, xScale: xScale)
      svg += drawGrid(xTicks: xTicks, yTicks: yTicks, plot: plot, xScale: xScale, yScale: yScale)
      let references = chart.references.filter {
        $0.y.isFinite && (!chart.logY || $0.y > 0)
          && (yScale.pixel($0.y) >= plotTop - 0.5 && yScale.pixel($0.y) <= plotBottom + 0.5)
      }
      svg += drawReferenceLines(references, plot: plot, yScale: yScale)
      let paths = prepared.map {
        pixelRuns($0, xScale: xScale, yScale: yScale, plotWidth: plotRight - plotLeft)
      }
      svg += drawSeries(prepared, paths: paths, clipID: clipID)
      svg += "<rect class=\"frame\" x=\"\(c(plotLeft))\" y=\"\(c(plotTop))\""
      svg += " width=\"\(c(plotRight - plotLeft))\" height=\"\(c(plotBottom - plotTop))\""
      svg += " fill=\"none\" stroke=\"#888888\"/>\n"
      svg += drawTicks(
        xTicks: xTicks, yTicks: yTicks, yMinor: yMinor, plot: plot, xScale: xScale, yScale: yScale)
      svg += drawBandLabels(bandLabels, titleBottom: titleBottom)
      svg += drawReferenceLabels(
        references, plot: plot, yScale: yScale,
        avoiding: zip(prepared, paths).map { ($0.series.style, $1) })
    } else {
      svg += "<rect class=\"frame\" x=\"\(c(plotLeft))\" y=\"\(c(plotTop))\""
      svg += " width=\"\(c(plotRight - plotLeft))\" height=\"\(c(plotBottom - plotTop))\""
      svg += " fill=\"none\" stroke=\"#BBBBBB\"/>\n"
      svg += "<text class=\"no-data\" x=\"\(c((plotLeft + plotRight) / 2))\""
      svg += " y=\"\(c((plotTop + plotBottom) / 2 + 5))\" font-size=\"14\" fill=\"#888888\""
      svg += " text-anchor=\"middle\">no data</text>\n"
    }

    // Axis labels and title.
    if !chart.xLabel.isEmpty {
      let label = TextMetrics.fitted(
        chart.xLabel, fontSize: Self.labelSize, minimumFontSize: 9, maxWidth: plotRight - plotLeft)
      svg += "<text class=\"x-label\" x=\"\(c((plotLeft + plotRight) / 2))\""
      svg += " y=\"\(c(plotBottom + 38))\" font-size=\"\(c(label.fontSize))\" fill=\"#333333\""
      svg += " text-anchor=\"middle\">\(XML.escaped(label.text))</text>\n"
    }
    if !chart.yLabel.isEmpty {
      let label = TextMetrics.fitted(
        chart.yLabel, fontSize: Self.labelSize, minimumFontSize: 9, maxWidth: plotBottom - plotTop)
      let centerY = (plotTop + plotBottom) / 2
      svg += "<text class=\"y-label\" transform=\"translate(16,\(c(centerY))) rotate(-90)\""
      svg += " font-size=\"\(c(label.fontSize))\" fill=\"#333333\""
      svg += " text-anchor=\"middle\">\(XML.escaped(label.text))</text>\n"
    }
    if !chart.title.isEmpty {
      svg +=
        "<text class=\"title\" x=\"\(c(width / 2))\" y=\"22\" font-size=\"\(c(title.fontSize))\""
      svg += " font-weight=\"bold\" fill=\"#222222\" text-anchor=\"middle\">"
      svg += XML.escaped(title.text) + "</text>\n"
    }

    // Legend items, outside the plot area.
    var items: [LegendItem] = []
    if legendOnRight {
      let x0 = plotRight + 16
      for (index, entry) in entries.enumerated() {
        items.append(
          LegendItem(
            text: entry.series.name, fontSize: Self.legendSize, color: entry.color,
            style: entry.series.style, x: x0,
            y: plotTop + 8 + Double(index) * Self.legendRowHeight))
      }
    } else {
      var rowY = plotBottom + (chart.xLabel.isEmpty ? 28 : 46) + Self.legendRowHeight / 2
      for row in legendRows {
        let rowWidth =
          row.map(\.width).reduce(0, +) + Double(row.count - 1) * Self.legendEntrySpacing
        var itemX = (width - rowWidth) / 2
        for item in row {
          let entry = entries[item.entry]
          items.append(
            LegendItem(
              text: item.text, fontSize: item.size, color: entry.color, style: entry.series.style,
              x: itemX, y: rowY))
          itemX += item.width + Self.legendEntrySpacing
        }
        rowY += Self.legendRowHeight
      }
    }
    svg += drawLegend(items)
    return svg
  }

  /// Bands clamped to the x domain; those outside it, or without finite edges, are dropped.
  private func visible(_ bands: [Band], x: (lower: Double, upper: Double, integral: Bool)) -> [Band]
  {
    bands.compactMap { band in
      guard band.from.isFinite, band.to.isFinite else { return nil }
      var clamped = band
      clamped.from = max(min(band.from, band.to), x.lower)
      clamped.to = min(max(band.from, band.to), x.upper)
      return clamped.from < clamped.to ? clamped : nil
    }
  }

  /// A coordinate as written in the file.
  private func c(_ value: Double) -> String { Format.coordinate(value) }

  private func rect(_ r: Rect) -> String {
    "<rect x=\"\(c(r.minX))\" y=\"\(c(r.minY))\" width=\"\(c(r.maxX - r.minX))\""
      + " height=\"\(c(r.maxY - r.minY))\"/>"
  }

  private func drawBands(_ bands: [Band], plot: Rect, xScale: Scale) -> String {
    guard !bands.isEmpty else { return "" }
    var svg = "<g class=\"bands\" fill-opacity=\"0.8\">\n"
    for band in bands {
      let left = xScale.pixel(band.from)
      let right = xScale.pixel(band.to)
      svg += "<rect x=\"\(c(left))\" y=\"\(c(plot.minY))\" width=\"\(c(right - left))\""
      svg += " height=\"\(c(plot.maxY - plot.minY))\" fill=\"\(XML.escaped(band.color))\"/>\n"
    }
    return svg + "</g>\n"
  }

  private func drawGrid(xTicks: [Tick], yTicks: [Tick], plot: Rect, xScale: Scale, yScale: Scale)
    -> String
  {
    var d = ""
    for tick in xTicks {
      let x = xScale.pixel(tick.value)
      d += "M\(c(x)),\(c(plot.minY))V\(c(plot.maxY))"
    }
    for tick in yTicks {
      let y = yScale.pixel(tick.value)
      d += "M\(c(plot.minX)),\(c(y))H\(c(plot.maxX))"
    }
    guard !d.isEmpty else { return "" }
    return "<path class=\"grid\" d=\"\(d)\" fill=\"none\" stroke=\"#E6E6E6\" stroke-width=\"1\"/>\n"
  }

  private func drawTicks(
    xTicks: [Tick], yTicks: [Tick], yMinor: [Double], plot: Rect, xScale: Scale, yScale: Scale
  ) -> String {
    var d = ""
    for tick in xTicks { d += "M\(c(xScale.pixel(tick.value))),\(c(plot.maxY))v4" }
    for tick in yTicks { d += "M\(c(plot.minX)),\(c(yScale.pixel(tick.value)))h-4" }
    var minor = ""
    for value in yMinor { minor += "M\(c(plot.minX)),\(c(yScale.pixel(value)))h-2" }
    var svg = ""
    if !d.isEmpty { svg += "<path class=\"tick-marks\" d=\"\(d)\" stroke=\"#666666\"/>\n" }
    if !minor.isEmpty { svg += "<path class=\"minor-ticks\" d=\"\(minor)\" stroke=\"#999999\"/>\n" }
    svg += "<g class=\"x-ticks\" font-size=\"\(c(Self.tickSize))\" fill=\"#444444\""
    svg += " text-anchor=\"middle\">\n"
    let xBaseline = plot.maxY + 8 + Self.tickSize * 0.8
    for tick in xTicks {
      svg += "<text x=\"\(c(xScale.pixel(tick.value)))\" y=\"\(c(xBaseline))\">"
      svg += XML.escaped(tick.label) + "</text>\n"
    }
    svg += "</g>\n<g class=\"y-ticks\" font-size=\"\(c(Self.tickSize))\" fill=\"#444444\""
    svg += " text-anchor=\"end\">\n"
    for tick in yTicks {
      let y = yScale.pixel(tick.value) + Self.tickSize * 0.35
      svg +=
        "<text x=\"\(c(plot.minX - 7))\" y=\"\(c(y))\">" + XML.escaped(tick.label) + "</text>\n"
    }
    return svg + "</g>\n"
  }

  private func drawBandLabels(_ labels: [BandLabel], titleBottom: Double) -> String {
    guard !labels.isEmpty else { return "" }
    var svg = "<g class=\"band-labels\" font-size=\"\(c(Self.annotationSize))\" fill=\"#555555\""
    svg += " text-anchor=\"middle\">\n"
    for label in labels {
      let baseline = titleBottom + Double(label.row) * Self.bandRowHeight + Self.annotationSize
      svg += "<text x=\"\(c(label.centerX))\" y=\"\(c(baseline))\">"
      svg += XML.escaped(label.text) + "</text>\n"
    }
    return svg + "</g>\n"
  }

  private func drawReferenceLines(_ references: [ReferenceLine], plot: Rect, yScale: Scale)
    -> String
  {
    guard !references.isEmpty else { return "" }
    var d = ""
    for reference in references {
      d += "M\(c(plot.minX)),\(c(yScale.pixel(reference.y)))H\(c(plot.maxX))"
    }
    return "<path class=\"references\" d=\"\(d)\" fill=\"none\" stroke=\"#555555\""
      + " stroke-width=\"1\" stroke-dasharray=\"6 4\"/>\n"
  }

  /// Each label goes at the end of its line (right or left, above or below) where it covers the
  /// fewest data and no other reference line or label, so it neither hides a curve nor leaves the
  /// plot.
  private func drawReferenceLabels(
    _ references: [ReferenceLine], plot: Rect, yScale: Scale,
    avoiding series: [(style: LineStyle, runs: [[Point]])]
  ) -> String {
    guard !references.isEmpty else { return "" }
    var placed: [Rect] = []
    let lineYs = references.map { yScale.pixel($0.y) }
    var svg = "<g class=\"reference-labels\" font-size=\"\(c(Self.annotationSize))\""
    svg += " fill=\"#333333\" stroke=\"#FFFFFF\" stroke-width=\"3\" paint-order=\"stroke\""
    svg += " stroke-linejoin=\"round\">\n"
    for reference in references {
      let fitted = TextMetrics.fitted(
        reference.label, fontSize: Self.annotationSize, minimumFontSize: Self.annotationSize,
        maxWidth: plot.maxX - plot.minX - 8)
      let labelWidth = TextMetrics.width(fitted.text, fontSize: Self.annotationSize)
      let lineY = yScale.pixel(reference.y)
      var best: (score: Int, box: Rect, anchorEnd: Bool)?
      for (atRight, above) in [(true, true), (false, true), (true, false), (false, false)] {
        let minX = atRight ? plot.maxX - 4 - labelWidth : plot.minX + 4
        let minY = above ? lineY - 3 - Self.annotationSize : lineY + 3
        let box = Rect(
          minX: minX, minY: minY, maxX: minX + labelWidth, maxY: minY + Self.annotationSize)
        var score = 0
        if box.minY < plot.minY || box.maxY > plot.maxY { score += 1_000_000 }
        score += placed.filter { $0.intersects(box) }.count * 10_000
        score += lineYs.filter { $0 > box.minY && $0 < box.maxY }.count * 100
        for (style, runs) in series {
          for run in runs {
            if style == .markers || run.count == 1 {
              score += run.filter { box.contains($0.x, $0.y) }.count
            } else {
              for (a, b) in zip(run, run.dropFirst()) where box.intersects(segmentFrom: a, to: b) {
                score += 1
              }
            }
          }
        }
        if let current = best, current.score <= score { continue }
        best = (score, box, atRight)
      }
      guard let chosen = best else { continue }
      placed.append(chosen.box)
      let x = chosen.anchorEnd ? chosen.box.maxX : chosen.box.minX
      svg += "<text x=\"\(c(x))\" y=\"\(c(chosen.box.maxY - 1.5))\""
      svg += chosen.anchorEnd ? " text-anchor=\"end\">" : ">"
      svg += XML.escaped(fitted.text) + "</text>\n"
    }
    return svg + "</g>\n"
  }

  /// A series' runs in pixels. Long runs keep, per pixel column, only the first, lowest, highest
  /// and last point: the drawn line is the same and the file stays small for 100k-step logs.
  private func pixelRuns(_ prepared: Prepared, xScale: Scale, yScale: Scale, plotWidth: Double)
    -> [[Point]]
  {
    let decimate = [.solid, .dashed, .dotted].contains(prepared.series.style)
    return prepared.runs.map { run in
      let pixels = run.map { (x: xScale.pixel($0.x), y: yScale.pixel($0.y)) }
      guard decimate, Double(pixels.count) > 2 * max(plotWidth, 1) else { return pixels }
      var kept: [Point] = []
      var start = 0
      while start < pixels.count {
        let column = pixels[start].x.rounded(.down)
        var end = start
        var lowest = start
        var highest = start
        while end + 1 < pixels.count && pixels[end + 1].x.rounded(.down) == column {
          end += 1
          if pixels[end].y < pixels[lowest].y { lowest = end }
          if pixels[end].y > pixels[highest].y { highest = end }
        }
        for index in Set([start, lowest, highest, end]).sorted() { kept.append(pixels[index]) }
        start = end + 1
      }
      return kept
    }
  }

  private func drawSeries(_ prepared: [Prepared], paths: [[[Point]]], clipID: String) -> String {
    var svg = "<g class=\"series\" clip-path=\"url(#\(clipID))\" fill=\"none\""
    svg += " stroke-width=\"1.75\" stroke-linejoin=\"round\" stroke-linecap=\"round\">\n"
    for (series, runs) in zip(prepared, paths) where !runs.isEmpty {
      let color = XML.escaped(series.color)
      let name = XML.escaped(series.series.name)
      let style = series.series.style
      // A point isolated by gaps has no segment to stroke, so it is drawn as a marker.
      let lines = style == .markers ? [] : runs.filter { $0.count > 1 }
      let dots = style == .markers ? runs : runs.filter { $0.count == 1 }
      if !lines.isEmpty {
        svg += "<path d=\"\(pathData(lines, style: style))\" stroke=\"\(color)\""
        switch style {
        case .dashed: svg += " stroke-dasharray=\"7 4\""
        case .dotted: svg += " stroke-dasharray=\"0.5 4\""
        case .solid, .stepped, .markers: break
        }
        svg += "><title>\(name)</title></path>\n"
      }
      if !dots.isEmpty {
        svg += "<path d=\"\(pathData(dots, style: .markers))\" fill=\"\(color)\" stroke=\"none\">"
        svg += "<title>\(name)</title></path>\n"
      }
    }
    return svg + "</g>\n"
  }

  /// Path data with implicit line-tos ("M x,y x,y …") and no repeated coordinates.
  private func pathData(_ runs: [[Point]], style: LineStyle) -> String {
    var d = ""
    for run in runs {
      var previous = ""
      var previousY = ""
      var first = true
      for point in run {
        let x = c(point.x)
        let y = c(point.y)
        let pair = x + "," + y
        switch style {
        case .markers:
          guard pair != previous else { continue }
          let r = Self.markerRadius
          d += "M\(c(point.x - r)),\(y)a\(c(r)),\(c(r)) 0 1,0 \(c(2 * r)),0"
          d += "a\(c(r)),\(c(r)) 0 1,0 \(c(-2 * r)),0"
        case .stepped:
          if first {
            d += "M" + pair
          } else if pair != previous {
            d += "H" + x + (y == previousY ? "" : "V" + y)
          }
        case .solid, .dashed, .dotted:
          if first {
            d += "M" + pair
          } else if pair != previous {
            d += " " + pair
          }
        }
        first = false
        previous = pair
        previousY = y
      }
    }
    return d
  }

  private func drawLegend(_ items: [LegendItem]) -> String {
    guard !items.isEmpty else { return "" }
    var svg = "<g class=\"legend\" font-size=\"\(c(Self.legendSize))\" fill=\"#222222\">\n"
    for item in items {
      let color = XML.escaped(item.color)
      let midX = item.x + Self.swatchWidth / 2
      switch item.style {
      case .markers:
        svg += "<circle cx=\"\(c(midX))\" cy=\"\(c(item.y))\" r=\"3\" fill=\"\(color)\"/>\n"
      default:
        svg += "<path d=\"M\(c(item.x)),\(c(item.y))h\(c(Self.swatchWidth))\" stroke=\"\(color)\""
        svg += " stroke-width=\"2\" stroke-linecap=\"round\" fill=\"none\""
        switch item.style {
        case .dashed: svg += " stroke-dasharray=\"7 4\""
        case .dotted: svg += " stroke-dasharray=\"0.5 4\""
        default: break
        }
        svg += "/>\n"
      }
      let textX = item.x + Self.swatchWidth + Self.swatchGap
      svg += "<text x=\"\(c(textX))\" y=\"\(c(item.y + item.fontSize * 0.35))\""
      svg += item.fontSize == Self.legendSize ? "" : " font-size=\"\(c(item.fontSize))\""
      svg += ">" + XML.escaped(item.text) + "</text>\n"
    }
    return svg + "</g>\n"
  }

  /// The body of an empty figure: no charts at all.
  static func noDataDocumentBody(width: Int, height: Int) -> String {
    "<text class=\"no-data\" x=\"\(width / 2)\" y=\"\(height / 2 + 5)\" font-size=\"14\""
      + " fill=\"#888888\" text-anchor=\"middle\">no data</text>\n"
  }
}
