import Foundation

/// Data preparation and layout: what to draw and where, before any SVG is written.
extension ChartRenderer {
  // MARK: - Data

  /// A series ready to draw: its colour resolved and its points split into runs at skipped points.
  struct Prepared {
    var series: Series
    var color: String
    var runs: [[Point]]
    /// Error bars whose point and ends can be drawn: (x, low, high) in data units.
    var bars: [(x: Double, low: Double, high: Double)] = []
  }

  func prepare() -> [Prepared] {
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
      let bars = zip(series.points, series.errorBars).compactMap {
        point, bar -> (x: Double, low: Double, high: Double)? in
        let values = [point.x, bar.low, bar.high]
        guard values.allSatisfy(\.isFinite), !chart.logY || min(bar.low, bar.high) > 0 else {
          return nil
        }
        return (point.x, min(bar.low, bar.high), max(bar.low, bar.high))
      }
      return Prepared(series: series, color: color, runs: runs, bars: bars)
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
    let ys =
      prepared.flatMap { $0.runs.flatMap { $0.map(\.y) } }
      + prepared.flatMap { $0.bars.flatMap { [$0.low, $0.high] } }
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
      // Padding must not push values near Double's limits to zero or infinity.
      return (
        max(pow(10, low - pad), .leastNormalMagnitude),
        min(pow(10, high + pad), .greatestFiniteMagnitude)
      )
    }
    if minimum == maximum { return Self.widened(minimum, integral: false) }
    let pad = (maximum / 2 - minimum / 2) * 0.1
    return (
      max(minimum - pad, -.greatestFiniteMagnitude), min(maximum + pad, .greatestFiniteMagnitude)
    )
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
    var marker: MarkerShape?
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

  /// Where everything goes. Computed in dependency order: y tick labels set the left margin, the
  /// legend the right or bottom margin, band labels (which need the x scale) the top margin, and
  /// the final plot size how many ticks fit.
  struct Layout {
    var plot: Rect
    var xScale: Scale
    var yScale: Scale
    var xTicks: [Tick] = []
    var yTicks: [Tick] = []
    var yMinor: [Double] = []
    var title: (text: String, fontSize: Double)
    var bands: [Band] = []
    var bandLabels: [BandLabel] = []
    /// The top of the first row of band labels.
    var bandLabelTop: Double
    var legend: [LegendItem] = []
  }

  /// An entry of a legend laid out in rows below the plot.
  private struct LegendCell {
    var entry: Int
    var text: String
    var fontSize: Double
    var width: Double
  }

  func layout(_ prepared: [Prepared], hasData: Bool) -> Layout {
    let width = Double(self.width)
    let height = Double(self.height)
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
    let plotLeft = max(40, (chart.yLabel.isEmpty ? 8 : 28) + yTickWidth + 10)

    // The legend goes on the right when it is narrow and short enough, else in rows below.
    let entries = legendEntries(prepared)
    let nameWidth =
      entries.map { TextMetrics.width($0.series.name, fontSize: Self.legendSize) }.max() ?? 0
    let legendWidth = Self.swatchWidth + Self.swatchGap + nameWidth + 4
    let legendOnRight =
      !entries.isEmpty && legendWidth <= width * 0.3
      && Double(entries.count) * Self.legendRowHeight <= height - 110
    let plotRight = width - (legendOnRight ? legendWidth + 28 : 20)
    let legendRows = legendOnRight ? [] : self.legendRows(entries, available: width - 24)

    let xScale = Scale(
      lower: x.lower, upper: x.upper, isLog: false, start: plotLeft, end: plotRight)
    let bands = hasData ? visible(chart.bands, x: x) : []
    let (bandLabels, bandRows) = self.bandLabels(bands, xScale: xScale)

    let bandLabelTop = chart.title.isEmpty ? 14.0 : 34.0
    let plotTop = bandLabelTop + Double(bandRows) * Self.bandRowHeight + (bandRows == 0 ? 0 : 4)
    var bottom = chart.xLabel.isEmpty ? 28.0 : 46.0
    if !legendRows.isEmpty { bottom += Double(legendRows.count) * Self.legendRowHeight + 4 }
    let plotBottom = max(height - bottom, plotTop + 20)
    let yScale = Scale(
      lower: y.lower, upper: y.upper, isLog: chart.logY, start: plotBottom, end: plotTop)

    var result = Layout(
      plot: Rect(minX: plotLeft, minY: plotTop, maxX: plotRight, maxY: plotBottom),
      xScale: xScale, yScale: yScale, yTicks: yTicks, yMinor: yMinor,
      title: TextMetrics.fitted(
        chart.title, fontSize: Self.titleSize, minimumFontSize: 11, maxWidth: width - 16,
        bold: true),
      bands: bands, bandLabels: bandLabels, bandLabelTop: bandLabelTop)

    if hasData {
      // As many x ticks as fit without their labels touching.
      var intervals = min(max(Int((plotRight - plotLeft) / 80), 2), 10)
      while true {
        result.xTicks = Ticks.linear(
          lower: x.lower, upper: x.upper, maxIntervals: intervals, integral: x.integral)
        if intervals <= 1 || Self.fits(result.xTicks, scale: xScale, fontSize: Self.tickSize) {
          break
        }
        intervals -= 1
      }
      // A short plot (legend rows below) gets fewer y ticks, at least 20 px apart.
      intervals = yIntervals
      while intervals > 1 && Self.smallestGap(result.yTicks, scale: yScale) < 20 {
        intervals -= 1
        if chart.logY {
          (result.yTicks, result.yMinor) = Ticks.logarithmic(
            lower: y.lower, upper: y.upper, maxIntervals: intervals)
        } else {
          result.yTicks = Ticks.linear(lower: y.lower, upper: y.upper, maxIntervals: intervals)
        }
      }
    }

    if legendOnRight {
      result.legend = entries.enumerated().map { index, entry in
        LegendItem(
          text: entry.series.name, fontSize: Self.legendSize, color: entry.color,
          style: entry.series.style, marker: entry.series.marker, x: plotRight + 16,
          y: plotTop + 8 + Double(index) * Self.legendRowHeight)
      }
    } else {
      var rowY = plotBottom + (chart.xLabel.isEmpty ? 28 : 46) + Self.legendRowHeight / 2
      for row in legendRows {
        let rowWidth =
          row.map(\.width).reduce(0, +) + Double(row.count - 1) * Self.legendEntrySpacing
        var cellX = (width - rowWidth) / 2
        for cell in row {
          let entry = entries[cell.entry]
          result.legend.append(
            LegendItem(
              text: cell.text, fontSize: cell.fontSize, color: entry.color,
              style: entry.series.style, marker: entry.series.marker, x: cellX, y: rowY))
          cellX += cell.width + Self.legendEntrySpacing
        }
        rowY += Self.legendRowHeight
      }
    }
    return result
  }

  /// A legend shows when there is something to tell apart, or a name to tell.
  private func legendEntries(_ prepared: [Prepared]) -> [Prepared] {
    guard prepared.count > 1 || (prepared.count == 1 && !prepared[0].series.name.isEmpty) else {
      return []
    }
    return prepared
  }

  /// Legend entries wrapped into centred rows of at most `available` pixels; a name too long for
  /// a row of its own is shrunk or cut.
  private func legendRows(_ entries: [Prepared], available: Double) -> [[LegendCell]] {
    var rows: [[LegendCell]] = []
    var row: [LegendCell] = []
    var rowWidth = 0.0
    for (index, entry) in entries.enumerated() {
      let fitted = TextMetrics.fitted(
        entry.series.name, fontSize: Self.legendSize, minimumFontSize: 9,
        maxWidth: available - Self.swatchWidth - Self.swatchGap)
      let cellWidth =
        Self.swatchWidth + Self.swatchGap
        + TextMetrics.width(fitted.text, fontSize: fitted.fontSize)
      if !row.isEmpty && rowWidth + Self.legendEntrySpacing + cellWidth > available {
        rows.append(row)
        row = []
        rowWidth = 0
      }
      rowWidth += (row.isEmpty ? 0 : Self.legendEntrySpacing) + cellWidth
      row.append(
        LegendCell(entry: index, text: fitted.text, fontSize: fitted.fontSize, width: cellWidth))
    }
    if !row.isEmpty { rows.append(row) }
    return rows
  }

  /// Band labels centred over their bands, in rows above the plot: a label that would touch the
  /// previous one in its row moves down a row (three rows at most, then they share the last).
  private func bandLabels(_ bands: [Band], xScale: Scale) -> (labels: [BandLabel], rows: Int) {
    var labels: [BandLabel] = []
    var rowEnds: [Double] = []
    let plotWidth = xScale.end - xScale.start
    for band in bands where !band.label.isEmpty {
      let fitted = TextMetrics.fitted(
        band.label, fontSize: Self.annotationSize, minimumFontSize: Self.annotationSize,
        maxWidth: plotWidth)
      let labelWidth = TextMetrics.width(fitted.text, fontSize: Self.annotationSize)
      let center = (xScale.pixel(band.from) + xScale.pixel(band.to)) / 2
      let start = min(max(center - labelWidth / 2, xScale.start), xScale.end - labelWidth)
      var row = rowEnds.firstIndex { start >= $0 + 6 } ?? rowEnds.count
      if row >= 3 { row = 2 }
      if row == rowEnds.count { rowEnds.append(0) }
      rowEnds[row] = start + labelWidth
      labels.append(BandLabel(text: fitted.text, centerX: start + labelWidth / 2, row: row))
    }
    return (labels, rowEnds.count)
  }

  /// The smallest distance in pixels between neighbouring ticks (uneven on a log axis).
  private static func smallestGap(_ ticks: [Tick], scale: Scale) -> Double {
    zip(ticks, ticks.dropFirst()).map { (scale.pixel($1.value) - scale.pixel($0.value)).magnitude }
      .min() ?? .infinity
  }

  /// Whether neighbouring tick labels keep at least 10 px apart.
  private static func fits(_ ticks: [Tick], scale: Scale, fontSize: Double) -> Bool {
    for (left, right) in zip(ticks, ticks.dropFirst()) {
      let needed =
        (TextMetrics.width(left.label, fontSize: fontSize)
          + TextMetrics.width(right.label, fontSize: fontSize)) / 2 + 10
      if (scale.pixel(right.value) - scale.pixel(left.value)).magnitude < needed { return false }
    }
    return true
  }

  /// Bands clamped to the x domain (so an infinite edge runs to the end of the axis); bands
  /// outside it, or with a NaN edge, are dropped.
  private func visible(_ bands: [Band], x: (lower: Double, upper: Double, integral: Bool)) -> [Band]
  {
    bands.compactMap { band in
      guard !band.from.isNaN, !band.to.isNaN else { return nil }
      var clamped = band
      clamped.from = max(min(band.from, band.to), x.lower)
      clamped.to = min(max(band.from, band.to), x.upper)
      return clamped.from < clamped.to ? clamped : nil
    }
  }
}
