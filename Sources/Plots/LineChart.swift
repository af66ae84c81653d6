/// A line chart rendered to a standalone SVG document: title, axes with 1-2-5 ticks, light grid,
/// shaded bands, dashed reference lines and a legend outside the plot area.
///
/// Rendering never fails: non-finite points are skipped, an empty chart says "no data", and the
/// same chart always gives the same bytes, so reports can be diffed and tested.
public struct LineChart: Sendable {
  public var title: String
  public var xLabel: String
  public var yLabel: String
  public var series: [Series]
  public var bands: [Band] = []
  public var references: [ReferenceLine] = []
  /// `nil` fits the data, padded by 5% each side, and always includes the reference lines.
  public var yRange: ClosedRange<Double>? = nil
  /// `nil` fits the data and the bands exactly (a step axis starts where training starts).
  public var xRange: ClosedRange<Double>? = nil
  /// A logarithmic y axis, for loss curves; non-positive values are skipped like NaN.
  public var logY: Bool = false
  /// Size in pixels (the SVG's user units); at least 240 × 160 is used.
  public var width: Int = 720
  public var height: Int = 420

  public init(
    title: String, xLabel: String, yLabel: String, series: [Series], bands: [Band] = [],
    references: [ReferenceLine] = [], yRange: ClosedRange<Double>? = nil,
    xRange: ClosedRange<Double>? = nil, logY: Bool = false, width: Int = 720, height: Int = 420
  ) {
    self.title = title
    self.xLabel = xLabel
    self.yLabel = yLabel
    self.series = series
    self.bands = bands
    self.references = references
    self.yRange = yRange
    self.xRange = xRange
    self.logY = logY
    self.width = width
    self.height = height
  }

  /// The chart as a complete SVG document (XML declaration, `viewBox`, white background).
  public func svg() -> String {
    let renderer = ChartRenderer(chart: self, idPrefix: "chart-")
    return SVGDocument.wrap(
      width: renderer.width, height: renderer.height, title: title, body: renderer.body())
  }
}

/// Several charts in a grid in one SVG (e.g. loss and accuracy side by side), filled row by row.
public struct Figure: Sendable {
  public var charts: [LineChart]
  /// Charts per row; values below 1 count as 1, and a row is never wider than the chart count.
  public var columns: Int

  public init(charts: [LineChart], columns: Int = 2) {
    self.charts = charts
    self.columns = columns
  }

  /// The grid actually used: `columns` clamped to 1…`charts.count`, and as many rows as needed.
  public var grid: (rows: Int, columns: Int) {
    guard !charts.isEmpty else { return (0, 0) }
    let columns = min(max(columns, 1), charts.count)
    return ((charts.count + columns - 1) / columns, columns)
  }

  /// The figure as one SVG document. Each column is as wide as its widest chart and each row as
  /// tall as its tallest, so charts of different sizes still line up.
  public func svg() -> String {
    let (rows, columns) = grid
    guard rows > 0 else {
      let empty = ChartRenderer.noDataDocumentBody(width: 720, height: 120)
      return SVGDocument.wrap(width: 720, height: 120, title: "", body: empty)
    }
    let renderers = charts.enumerated().map {
      ChartRenderer(chart: $0.element, idPrefix: "chart\($0.offset)-")
    }
    var columnWidths = [Int](repeating: 0, count: columns)
    var rowHeights = [Int](repeating: 0, count: rows)
    for (index, renderer) in renderers.enumerated() {
      columnWidths[index % columns] = max(columnWidths[index % columns], renderer.width)
      rowHeights[index / columns] = max(rowHeights[index / columns], renderer.height)
    }
    var body = ""
    for (index, renderer) in renderers.enumerated() {
      // A chart narrower or shorter than its cell sits in the cell's centre.
      let column = index % columns
      let row = index / columns
      let x = columnWidths[..<column].reduce(0, +) + (columnWidths[column] - renderer.width) / 2
      let y = rowHeights[..<row].reduce(0, +) + (rowHeights[row] - renderer.height) / 2
      body += "<g class=\"cell\" transform=\"translate(\(x),\(y))\">\n"
      body += renderer.body()
      body += "</g>\n"
    }
    return SVGDocument.wrap(
      width: columnWidths.reduce(0, +), height: rowHeights.reduce(0, +), title: "", body: body)
  }
}

/// The document frame shared by charts and figures.
enum SVGDocument {
  static func wrap(width: Int, height: Int, title: String, body: String) -> String {
    var document = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    document += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\""
    document += " viewBox=\"0 0 \(width) \(height)\" font-family=\"sans-serif\">\n"
    if !title.isEmpty { document += "<title>\(XML.escaped(title))</title>\n" }
    document += "<rect width=\"\(width)\" height=\"\(height)\" fill=\"#FFFFFF\"/>\n"
    document += body
    document += "</svg>\n"
    return document
  }
}
