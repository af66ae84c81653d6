import Foundation

/// A forest plot rendered to a standalone SVG document: one row per item, top to bottom, its
/// label on the left, a marker at its estimate with a horizontal bar for its interval, and its
/// numbers written on the right; dashed vertical lines mark the values the items are judged
/// against (0 for a difference). Every item gets its own row, so items with the same estimate
/// never hide each other, however many there are.
///
/// An interval reaching past an explicit `xRange` ends in an arrowhead at the edge, and an
/// estimate outside it is drawn as an arrow at the edge: a far-off item keeps its row and its
/// numbers without squeezing the others into a few pixels. Like `LineChart`, rendering never
/// fails and the same chart always gives the same bytes.
public struct IntervalChart: Sendable {
  /// One row of the plot.
  public struct Item: Sendable {
    public var label: String
    /// The marker's position; a non-finite estimate draws nothing but the label and note.
    public var estimate: Double
    /// The bar; nil (or a non-finite end): none.
    public var interval: ErrorBar?
    /// A wider interval drawn as a thin, faint line behind the bar (say, one that adds the
    /// spread between training runs to the test set's sampling); nil: none.
    public var outerInterval: ErrorBar?
    /// Text at the right end of the row, e.g. "−4.4 [−5.4, −3.5]".
    public var note: String
    public var color: String
    public var marker: MarkerShape

    public init(
      label: String, estimate: Double, interval: ErrorBar?, outerInterval: ErrorBar? = nil,
      note: String = "", color: String = Palette.colors[0], marker: MarkerShape = .circle
    ) {
      self.label = label
      self.estimate = estimate
      self.interval = interval
      self.outerInterval = outerInterval
      self.note = note
      self.color = color
      self.marker = marker
    }
  }

  public var title: String
  public var xLabel: String
  public var items: [Item]
  /// Dashed vertical lines with their labels above the plot; automatic ranges include them.
  public var references: [(value: Double, label: String)]
  /// `nil` fits every estimate, interval and reference line, padded by 5% each side.
  public var xRange: ClosedRange<Double>?
  /// Width in pixels (at least 360, and wider, up to `maximumWidth`, when the labels and notes
  /// need it); the height follows from the item count.
  public var width: Int

  public init(
    title: String, xLabel: String, items: [Item],
    references: [(value: Double, label: String)] = [], xRange: ClosedRange<Double>? = nil,
    width: Int = 760
  ) {
    self.title = title
    self.xLabel = xLabel
    self.items = items
    self.references = references
    self.xRange = xRange
    self.width = width
  }

  // Geometry in pixels.
  /// The widest a chart grows to fit its notes.
  public static let maximumWidth = 1200
  static let rowHeight = 22.0
  static let top = 56.0
  static let bottom = 52.0
  static let labelSize = 11.5
  static let noteSize = 11.0
  static let markerRadius = 4.5
  static let cap = 4.0

  /// The pixel height for `items.count` rows (one row's height when there are none).
  public var height: Int {
    Int((Self.top + Double(max(items.count, 1)) * Self.rowHeight + Self.bottom).rounded(.up))
  }

  /// The value axis: the explicit range, else everything drawn padded by 5% (±1 around a single
  /// value).
  var domain: ClosedRange<Double> {
    if let xRange, xRange.lowerBound.isFinite, xRange.upperBound.isFinite,
      xRange.upperBound > xRange.lowerBound
    {
      return xRange
    }
    var values = references.map(\.value)
    for item in items where item.estimate.isFinite {
      values.append(item.estimate)
      for bar in [item.interval, item.outerInterval].compactMap({ $0 })
      where bar.low.isFinite && bar.high.isFinite {
        values += [bar.low, bar.high]
      }
    }
    values = values.filter(\.isFinite)
    guard let low = values.min(), let high = values.max() else { return -1...1 }
    guard high > low else { return (low - 1)...(high + 1) }
    let pad = 0.05 * (high - low)
    return (low - pad)...(high + pad)
  }

  /// The chart as a complete SVG document (XML declaration, `viewBox`, white background).
  public func svg() -> String {
    let height = self.height
    func c(_ value: Double) -> String { Format.coordinate(value) }
    // Columns: labels, plot, notes. Labels may take up to 40% of the width and notes what is
    // left once the plot has 30%. The chart grows (up to `maximumWidth`) rather than cut a
    // note, whose numbers are the point of it; longer texts are cut with an ellipsis.
    let labelNeeded = items.map { TextMetrics.width($0.label, fontSize: Self.labelSize) }.max() ?? 0
    let noteNeeded = items.map { TextMetrics.width($0.note, fontSize: Self.noteSize) }.max() ?? 0
    let fitting = Int(((labelNeeded + noteNeeded + 54) / 0.7).rounded(.up))
    let width = max(self.width, 360, min(fitting, Self.maximumWidth))
    let labelWidth = min(labelNeeded, 0.4 * Double(width))
    let noteWidth = min(noteNeeded, max(0, 0.7 * Double(width) - labelWidth - 54))
    let minX = 12 + labelWidth + 10
    let maxX = Double(width) - 12 - noteWidth - (noteWidth > 0 ? 10 : 0)
    let minY = Self.top
    let maxY = minY + Double(max(items.count, 1)) * Self.rowHeight
    let domain = self.domain
    func pixel(_ value: Double) -> Double {
      minX + (value - domain.lowerBound) / (domain.upperBound - domain.lowerBound) * (maxX - minX)
    }
    func rowCenter(_ index: Int) -> Double { minY + (Double(index) + 0.5) * Self.rowHeight }

    var body = ""
    if !title.isEmpty {
      let fitted = TextMetrics.fitted(
        title, fontSize: 15, minimumFontSize: 10, maxWidth: Double(width) - 16, bold: true)
      body += "<text class=\"title\" x=\"\(c(Double(width) / 2))\" y=\"22\""
      body += " font-size=\"\(c(fitted.fontSize))\" font-weight=\"bold\" fill=\"#222222\""
      body += " text-anchor=\"middle\">\(XML.escaped(fitted.text))</text>\n"
    }
    guard !items.isEmpty else {
      body += "<text class=\"no-data\" x=\"\(c(Double(width) / 2))\" y=\"\(c(rowCenter(0) + 5))\""
      body += " font-size=\"14\" fill=\"#888888\" text-anchor=\"middle\">no data</text>\n"
      return SVGDocument.wrap(width: width, height: height, title: title, body: body)
    }

    // Every other row shaded, so a label, its bar and its note read as one line.
    var stripes = ""
    for index in items.indices where index % 2 == 1 {
      stripes += "M\(c(minX)),\(c(minY + Double(index) * Self.rowHeight))"
      stripes += "H\(c(maxX))v\(c(Self.rowHeight))H\(c(minX))Z"
    }
    if !stripes.isEmpty {
      body += "<path class=\"stripes\" d=\"\(stripes)\" fill=\"#F4F4F4\"/>\n"
    }
    let ticks = Ticks.linear(
      lower: domain.lowerBound, upper: domain.upperBound,
      maxIntervals: max(2, Int((maxX - minX) / 70)))
    var grid = ""
    for tick in ticks { grid += "M\(c(pixel(tick.value))),\(c(minY))V\(c(maxY))" }
    if !grid.isEmpty {
      body += "<path class=\"grid\" d=\"\(grid)\" fill=\"none\" stroke=\"#E0E0E0\"/>\n"
    }
    let references = self.references.filter { domain.contains($0.value) }
    if !references.isEmpty {
      let d = references.map { "M\(c(pixel($0.value))),\(c(minY))V\(c(maxY))" }.joined()
      body += "<path class=\"references\" d=\"\(d)\" fill=\"none\" stroke=\"#555555\""
      body += " stroke-dasharray=\"6 4\"/>\n"
      body += "<g class=\"reference-labels\" font-size=\"10\" fill=\"#333333\""
      body += " text-anchor=\"middle\">\n"
      for reference in references {
        let fitted = TextMetrics.fitted(
          reference.label, fontSize: 10, minimumFontSize: 8, maxWidth: maxX - minX)
        let half = TextMetrics.width(fitted.text, fontSize: fitted.fontSize) / 2
        let x = min(max(pixel(reference.value), minX + half), maxX - half)
        body += "<text x=\"\(c(x))\" y=\"\(c(minY - 6))\">\(XML.escaped(fitted.text))</text>\n"
      }
      body += "</g>\n"
    }

    // A bar's path: a cap where the interval ends, an arrowhead where the axis cuts it; nil
    // when it lies wholly off the axis (the marker's edge arrow stands for it).
    func barPath(_ bar: ErrorBar, y: Double) -> String? {
      guard bar.low.isFinite, bar.high.isFinite else { return nil }
      let low = min(bar.low, bar.high)
      let high = max(bar.low, bar.high)
      guard high >= domain.lowerBound, low <= domain.upperBound else { return nil }
      let left = pixel(max(low, domain.lowerBound))
      let right = pixel(min(high, domain.upperBound))
      var d = "M\(c(left)),\(c(y))H\(c(right))"
      d +=
        low < domain.lowerBound
        ? "M\(c(left + 6)),\(c(y - 4))L\(c(left)),\(c(y))L\(c(left + 6)),\(c(y + 4))"
        : "M\(c(left)),\(c(y - Self.cap))v\(c(2 * Self.cap))"
      d +=
        high > domain.upperBound
        ? "M\(c(right - 6)),\(c(y - 4))L\(c(right)),\(c(y))L\(c(right - 6)),\(c(y + 4))"
        : "M\(c(right)),\(c(y - Self.cap))v\(c(2 * Self.cap))"
      return d
    }
    // Outer intervals first, thin and faint, then the bars, then the markers; each item's in
    // its own colour.
    for (index, item) in items.enumerated() where item.estimate.isFinite {
      guard let bar = item.outerInterval, let d = barPath(bar, y: rowCenter(index)) else {
        continue
      }
      body += "<path class=\"outer-intervals\" d=\"\(d)\" fill=\"none\""
      body += " stroke=\"\(XML.escaped(item.color))\" stroke-width=\"0.8\" stroke-opacity=\"0.5\">"
      body += "<title>\(XML.escaped(item.label))</title></path>\n"
    }
    for (index, item) in items.enumerated() where item.estimate.isFinite {
      guard let bar = item.interval, let d = barPath(bar, y: rowCenter(index)) else { continue }
      body += "<path class=\"intervals\" d=\"\(d)\" fill=\"none\""
      body += " stroke=\"\(XML.escaped(item.color))\" stroke-width=\"1.5\">"
      body += "<title>\(XML.escaped(item.label))</title></path>\n"
    }
    for (index, item) in items.enumerated() where item.estimate.isFinite {
      let y = rowCenter(index)
      let shape: MarkerShape
      let x: Double
      let className: String
      if item.estimate < domain.lowerBound {
        (shape, x, className) = (.triangleLeft, minX + Self.markerRadius + 1, "off-scale")
      } else if item.estimate > domain.upperBound {
        (shape, x, className) = (.triangleRight, maxX - Self.markerRadius - 1, "off-scale")
      } else {
        (shape, x, className) = (item.marker, pixel(item.estimate), "markers")
      }
      var marks = [(className, shape, x)]
      if className == "off-scale" {
        // The item's own marker beside the edge arrow, so an off-scale row keeps its shape.
        let step = 2 * Self.markerRadius + 2
        marks.append(
          (
            "off-scale-markers", item.marker,
            item.estimate < domain.lowerBound ? x + step : x - step
          ))
      }
      for (className, shape, x) in marks {
        body += "<path class=\"\(className)\" d=\""
        body += ChartRenderer.markerData(shape, at: (x, y), radius: Self.markerRadius) + "\""
        body += " fill=\"\(XML.escaped(item.color))\" stroke=\"#FFFFFF\" stroke-width=\"0.8\">"
        body += "<title>\(XML.escaped(item.label))</title></path>\n"
      }
    }
    body += "<rect class=\"frame\" x=\"\(c(minX))\" y=\"\(c(minY))\" width=\"\(c(maxX - minX))\""
    body += " height=\"\(c(maxY - minY))\" fill=\"none\" stroke=\"#888888\"/>\n"

    // A column of row texts (labels or notes), each fitted to the column's width.
    func column(
      _ className: String, rows: [(index: Int, text: String)], fontSize: Double,
      width: Double, x: Double, color: String, anchorEnd: Bool
    ) -> String {
      var group = "<g class=\"\(className)\" font-size=\"\(c(fontSize))\" fill=\"\(color)\""
      group += anchorEnd ? " text-anchor=\"end\">\n" : ">\n"
      for (index, text) in rows {
        let fitted = TextMetrics.fitted(
          text, fontSize: fontSize, minimumFontSize: fontSize, maxWidth: width)
        group += "<text x=\"\(c(x))\" y=\"\(c(rowCenter(index) + 4))\">"
        group += XML.escaped(fitted.text) + "</text>\n"
      }
      return group + "</g>\n"
    }
    body += column(
      "row-labels", rows: items.enumerated().map { ($0.offset, $0.element.label) },
      fontSize: Self.labelSize, width: labelWidth,
      x: minX - 8, color: "#222222", anchorEnd: true)
    if noteWidth > 0 {
      body += column(
        "row-notes",
        rows: items.enumerated().filter { !$0.element.note.isEmpty }.map {
          ($0.offset, $0.element.note)
        }, fontSize: Self.noteSize, width: noteWidth,
        x: maxX + 10, color: "#333333", anchorEnd: false)
    }

    var marks = ""
    for tick in ticks { marks += "M\(c(pixel(tick.value))),\(c(maxY))v4" }
    if !marks.isEmpty { body += "<path class=\"tick-marks\" d=\"\(marks)\" stroke=\"#666666\"/>\n" }
    body += "<g class=\"x-ticks\" font-size=\"11\" fill=\"#444444\" text-anchor=\"middle\">\n"
    for tick in ticks {
      body += "<text x=\"\(c(pixel(tick.value)))\" y=\"\(c(maxY + 17))\">"
      body += XML.escaped(tick.label) + "</text>\n"
    }
    body += "</g>\n"
    if !xLabel.isEmpty {
      let fitted = TextMetrics.fitted(
        xLabel, fontSize: 12, minimumFontSize: 9, maxWidth: Double(width) - 16)
      body += "<text class=\"x-label\" x=\"\(c((minX + maxX) / 2))\" y=\"\(c(maxY + 38))\""
      body += " font-size=\"\(c(fitted.fontSize))\" fill=\"#333333\" text-anchor=\"middle\">"
      body += XML.escaped(fitted.text) + "</text>\n"
    }
    return SVGDocument.wrap(width: width, height: height, title: title, body: body)
  }
}
