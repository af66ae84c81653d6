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
  static let titleSize = 15.0
  static let labelSize = 12.0
  static let tickSize = 11.0
  static let legendSize = 11.0
  static let annotationSize = 10.0
  // Legend geometry: a line sample, a gap, the name; entries this far apart.
  static let swatchWidth = 24.0
  static let swatchGap = 6.0
  static let legendRowHeight = 18.0
  static let legendEntrySpacing = 18.0
  static let bandRowHeight = 14.0
  static let markerRadius = 2.5
  /// Shaped markers (`Series.marker`) are larger: a shape must be recognisable.
  static let shapeRadius = 4.5
  static let errorBarCap = 3.5

  // MARK: - Drawing

  /// The chart's elements in drawing order: bands, grid, reference lines, series, frame, then
  /// text on top.
  func body() -> String {
    let prepared = prepare()
    let hasData = prepared.contains { !$0.runs.isEmpty }
    let layout = layout(prepared, hasData: hasData)
    let plot = layout.plot
    let clipID = idPrefix + "plot"
    // The clip leaves room for markers and line caps on the edges; the frame covers the seam.
    var svg = "<defs><clipPath id=\"\(clipID)\">"
    svg += rect(
      Rect(minX: plot.minX - 4, minY: plot.minY - 3, maxX: plot.maxX + 4, maxY: plot.maxY + 3))
    svg += "</clipPath></defs>\n"

    if hasData {
      svg += drawBands(layout.bands, plot: plot, xScale: layout.xScale)
      svg += drawGrid(layout)
      let references = chart.references.filter {
        guard $0.y.isFinite && (!chart.logY || $0.y > 0) else { return false }
        let y = layout.yScale.pixel($0.y)
        return y >= plot.minY - 0.5 && y <= plot.maxY + 0.5
      }
      svg += drawReferenceLines(references, plot: plot, yScale: layout.yScale)
      let paths = prepared.map {
        pixelRuns(
          $0, xScale: layout.xScale, yScale: layout.yScale, plotWidth: plot.maxX - plot.minX)
      }
      svg += drawSeries(prepared, paths: paths, clipID: clipID, layout: layout)
      svg +=
        "<rect class=\"frame\"" + rectAttributes(plot) + " fill=\"none\" stroke=\"#888888\"/>\n"
      svg += drawTicks(layout)
      svg += drawBandLabels(layout)
      svg += drawReferenceLabels(
        references, plot: plot, yScale: layout.yScale,
        avoiding: zip(prepared, paths).map { ($0.series.style, $1) })
    } else {
      svg +=
        "<rect class=\"frame\"" + rectAttributes(plot) + " fill=\"none\" stroke=\"#BBBBBB\"/>\n"
      svg += "<text class=\"no-data\" x=\"\(c((plot.minX + plot.maxX) / 2))\""
      svg += " y=\"\(c((plot.minY + plot.maxY) / 2 + 5))\" font-size=\"14\" fill=\"#888888\""
      svg += " text-anchor=\"middle\">no data</text>\n"
    }
    svg += drawLabels(layout)
    svg += drawLegend(layout.legend)
    return svg
  }

  /// Axis labels, each fitted to its side of the plot, and the title over the whole chart.
  private func drawLabels(_ layout: Layout) -> String {
    let plot = layout.plot
    var svg = ""
    if !chart.xLabel.isEmpty {
      let label = TextMetrics.fitted(
        chart.xLabel, fontSize: Self.labelSize, minimumFontSize: 9, maxWidth: plot.maxX - plot.minX)
      svg += "<text class=\"x-label\" x=\"\(c((plot.minX + plot.maxX) / 2))\""
      svg += " y=\"\(c(plot.maxY + 38))\" font-size=\"\(c(label.fontSize))\" fill=\"#333333\""
      svg += " text-anchor=\"middle\">\(XML.escaped(label.text))</text>\n"
    }
    if !chart.yLabel.isEmpty {
      let label = TextMetrics.fitted(
        chart.yLabel, fontSize: Self.labelSize, minimumFontSize: 9, maxWidth: plot.maxY - plot.minY)
      let centerY = (plot.minY + plot.maxY) / 2
      svg += "<text class=\"y-label\" transform=\"translate(16,\(c(centerY))) rotate(-90)\""
      svg += " font-size=\"\(c(label.fontSize))\" fill=\"#333333\""
      svg += " text-anchor=\"middle\">\(XML.escaped(label.text))</text>\n"
    }
    if !chart.title.isEmpty {
      svg += "<text class=\"title\" x=\"\(c(Double(width) / 2))\" y=\"22\""
      svg += " font-size=\"\(c(layout.title.fontSize))\" font-weight=\"bold\" fill=\"#222222\""
      svg += " text-anchor=\"middle\">\(XML.escaped(layout.title.text))</text>\n"
    }
    return svg
  }

  /// A coordinate as written in the file.
  private func c(_ value: Double) -> String { Format.coordinate(value) }

  private func rectAttributes(_ r: Rect) -> String {
    " x=\"\(c(r.minX))\" y=\"\(c(r.minY))\" width=\"\(c(r.maxX - r.minX))\""
      + " height=\"\(c(r.maxY - r.minY))\""
  }

  private func rect(_ r: Rect) -> String { "<rect" + rectAttributes(r) + "/>" }

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

  /// All grid lines as one light path.
  private func drawGrid(_ layout: Layout) -> String {
    let plot = layout.plot
    var d = ""
    for tick in layout.xTicks {
      d += "M\(c(layout.xScale.pixel(tick.value))),\(c(plot.minY))V\(c(plot.maxY))"
    }
    for tick in layout.yTicks {
      d += "M\(c(plot.minX)),\(c(layout.yScale.pixel(tick.value)))H\(c(plot.maxX))"
    }
    guard !d.isEmpty else { return "" }
    return "<path class=\"grid\" d=\"\(d)\" fill=\"none\" stroke=\"#E6E6E6\" stroke-width=\"1\"/>\n"
  }

  /// Tick marks outside the frame and their labels. An x label that would run off the chart's
  /// edge is nudged in.
  private func drawTicks(_ layout: Layout) -> String {
    let plot = layout.plot
    var d = ""
    for tick in layout.xTicks { d += "M\(c(layout.xScale.pixel(tick.value))),\(c(plot.maxY))v4" }
    for tick in layout.yTicks { d += "M\(c(plot.minX)),\(c(layout.yScale.pixel(tick.value)))h-4" }
    var minor = ""
    for value in layout.yMinor { minor += "M\(c(plot.minX)),\(c(layout.yScale.pixel(value)))h-2" }
    var svg = ""
    if !d.isEmpty { svg += "<path class=\"tick-marks\" d=\"\(d)\" stroke=\"#666666\"/>\n" }
    if !minor.isEmpty {
      svg += "<path class=\"minor-ticks\" d=\"\(minor)\" stroke=\"#999999\"/>\n"
    }
    svg += "<g class=\"x-ticks\" font-size=\"\(c(Self.tickSize))\" fill=\"#444444\""
    svg += " text-anchor=\"middle\">\n"
    let xBaseline = plot.maxY + 8 + Self.tickSize * 0.8
    for tick in layout.xTicks {
      let halfWidth = TextMetrics.width(tick.label, fontSize: Self.tickSize) / 2
      let x = min(layout.xScale.pixel(tick.value), Double(width) - 2 - halfWidth)
      svg += "<text x=\"\(c(x))\" y=\"\(c(xBaseline))\">" + XML.escaped(tick.label) + "</text>\n"
    }
    svg += "</g>\n<g class=\"y-ticks\" font-size=\"\(c(Self.tickSize))\" fill=\"#444444\""
    svg += " text-anchor=\"end\">\n"
    for tick in layout.yTicks {
      let y = layout.yScale.pixel(tick.value) + Self.tickSize * 0.35
      svg +=
        "<text x=\"\(c(plot.minX - 7))\" y=\"\(c(y))\">" + XML.escaped(tick.label) + "</text>\n"
    }
    return svg + "</g>\n"
  }

  private func drawBandLabels(_ layout: Layout) -> String {
    guard !layout.bandLabels.isEmpty else { return "" }
    var svg = "<g class=\"band-labels\" font-size=\"\(c(Self.annotationSize))\" fill=\"#555555\""
    svg += " text-anchor=\"middle\">\n"
    for label in layout.bandLabels {
      let baseline =
        layout.bandLabelTop + Double(label.row) * Self.bandRowHeight + Self.annotationSize
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

  private func drawSeries(
    _ prepared: [Prepared], paths: [[[Point]]], clipID: String, layout: Layout
  ) -> String {
    var svg = "<g class=\"series\" clip-path=\"url(#\(clipID))\" fill=\"none\""
    svg += " stroke-width=\"1.75\" stroke-linejoin=\"round\" stroke-linecap=\"round\">\n"
    // Error bars under every series' lines and markers, so no bar hides a point.
    for series in prepared where !series.bars.isEmpty {
      svg += "<path class=\"error-bars\" d=\"\(errorBarData(series.bars, layout: layout))\""
      svg += " stroke=\"\(XML.escaped(series.color))\" stroke-width=\"1.25\">"
      svg += "<title>\(XML.escaped(series.series.name))</title></path>\n"
    }
    for (series, runs) in zip(prepared, paths) where !runs.isEmpty {
      let color = XML.escaped(series.color)
      let name = XML.escaped(series.series.name)
      let style = series.series.style
      // A point isolated by gaps has no segment to stroke, so it is drawn as a marker.
      let lines = style == .markers ? [] : runs.filter { $0.count > 1 }
      if let shape = series.series.marker {
        if !lines.isEmpty {
          svg += "<path d=\"\(pathData(lines, style: style))\" stroke=\"\(color)\""
          svg += Self.dashArray(style) + "><title>\(name)</title></path>\n"
        }
        let d = runs.joined().map { Self.markerData(shape, at: $0, radius: Self.shapeRadius) }
          .joined()
        svg += "<path class=\"markers\" d=\"\(d)\" fill=\"\(color)\" stroke=\"#FFFFFF\""
        svg += " stroke-width=\"0.8\"><title>\(name)</title></path>\n"
        continue
      }
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

  private static func dashArray(_ style: LineStyle) -> String {
    switch style {
    case .dashed: return " stroke-dasharray=\"7 4\""
    case .dotted: return " stroke-dasharray=\"0.5 4\""
    case .solid, .stepped, .markers: return ""
    }
  }

  /// Vertical bars with short caps at both ends.
  private func errorBarData(_ bars: [(x: Double, low: Double, high: Double)], layout: Layout)
    -> String
  {
    var d = ""
    for bar in bars {
      let x = layout.xScale.pixel(bar.x)
      let low = layout.yScale.pixel(bar.low)
      let high = layout.yScale.pixel(bar.high)
      let cap = Self.errorBarCap
      d += "M\(c(x)),\(c(low))V\(c(high))"
      d += "M\(c(x - cap)),\(c(low))h\(c(2 * cap))M\(c(x - cap)),\(c(high))h\(c(2 * cap))"
    }
    return d
  }

  /// One marker's outline centred on `point` (pixels): a circle, or a closed polygon. Shared
  /// with `IntervalChart`, so both draw the same shapes.
  static func markerData(_ shape: MarkerShape, at point: Point, radius r: Double) -> String {
    func c(_ value: Double) -> String { Format.coordinate(value) }
    if shape == .circle {
      return "M\(c(point.x - r)),\(c(point.y))a\(c(r)),\(c(r)) 0 1,0 \(c(2 * r)),0"
        + "a\(c(r)),\(c(r)) 0 1,0 \(c(-2 * r)),0Z"
    }
    return vertices(shape).enumerated().map { index, vertex in
      (index == 0 ? "M" : "L") + c(point.x + r * vertex.x) + "," + c(point.y + r * vertex.y)
    }.joined() + "Z"
  }

  /// A shape's corners for radius 1 (y down), sized so the shapes look about equally heavy.
  static func vertices(_ shape: MarkerShape) -> [Point] {
    func rotated(_ points: [Point], by angle: Double) -> [Point] {
      points.map {
        (x: $0.x * cos(angle) - $0.y * sin(angle), y: $0.x * sin(angle) + $0.y * cos(angle))
      }
    }
    let triangle: [Point] = [(0, -1.25), (1.1, 0.7), (-1.1, 0.7)]
    let arm = 0.38
    let plus: [Point] = [
      (-arm, -1.15), (arm, -1.15), (arm, -arm), (1.15, -arm), (1.15, arm), (arm, arm),
      (arm, 1.15), (-arm, 1.15), (-arm, arm), (-1.15, arm), (-1.15, -arm), (-arm, -arm),
    ]
    switch shape {
    case .circle: return []  // drawn with arcs by markerData
    case .square: return [(-0.9, -0.9), (0.9, -0.9), (0.9, 0.9), (-0.9, 0.9)]
    case .diamond: return [(0, -1.25), (1.25, 0), (0, 1.25), (-1.25, 0)]
    case .triangleUp: return triangle
    case .triangleDown: return rotated(triangle, by: .pi)
    case .triangleLeft: return rotated(triangle, by: -.pi / 2)
    case .triangleRight: return rotated(triangle, by: .pi / 2)
    case .plus: return plus
    case .cross: return rotated(plus, by: .pi / 4)
    case .star:
      return (0..<10).map {
        let radius = $0 % 2 == 0 ? 1.35 : 0.55
        let angle = -Double.pi / 2 + Double($0) * .pi / 5
        return (x: radius * cos(angle), y: radius * sin(angle))
      }
    }
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
      if let shape = item.marker {
        if item.style != .markers {
          svg += "<path d=\"M\(c(item.x)),\(c(item.y))h\(c(Self.swatchWidth))\" stroke=\"\(color)\""
          svg += " stroke-width=\"2\" fill=\"none\"" + Self.dashArray(item.style) + "/>\n"
        }
        svg += "<path d=\"\(Self.markerData(shape, at: (midX, item.y), radius: Self.shapeRadius))\""
        svg += " fill=\"\(color)\" stroke=\"#FFFFFF\" stroke-width=\"0.8\"/>\n"
      } else {
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
