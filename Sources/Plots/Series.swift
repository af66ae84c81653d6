/// How a series is stroked. Styles besides colour let curves stay distinguishable when printed in
/// grey or seen by readers who confuse two palette colours.
public enum LineStyle: Sendable, Equatable {
  case solid
  case dashed
  case dotted
  /// Points only, no connecting line: for sparse evaluations (one accuracy per epoch).
  case markers
  /// Holds each value until the next x: for piecewise-constant quantities (learning rate, rank).
  case stepped
}

/// The shape of a series' point markers. Shapes besides colour tell methods apart in grey print
/// and for readers who confuse two colours, and keep points at the same place distinguishable.
public enum MarkerShape: String, Sendable, CaseIterable {
  case circle, square, diamond, triangleUp, triangleDown, triangleLeft, triangleRight, plus
  case cross, star
}

/// A vertical interval drawn around a point (e.g. a 95% confidence interval), in data units.
public struct ErrorBar: Sendable, Equatable {
  public var low: Double
  public var high: Double

  public init(low: Double, high: Double) {
    self.low = low
    self.high = high
  }
}

/// One named curve. Points are drawn in the order given, as a training log records them; a
/// non-finite point (or a non-positive one on a log axis) is skipped and leaves a gap in the line,
/// so a diverged step is visible instead of being bridged.
public struct Series: Sendable {
  public var name: String
  public var points: [(x: Double, y: Double)]
  public var style: LineStyle = .solid
  /// A CSS colour; `nil` takes the next colour of `Palette.colors` (they repeat after eight, so
  /// give more series than that distinct styles too).
  public var color: String? = nil
  /// Draws every point with this marker (outlined in white so overlapping markers stay
  /// visible); nil: only `.markers` series and isolated points get plain dots.
  public var marker: MarkerShape? = nil
  /// One bar per point, in the order of `points` (or none); a bar with a non-finite end is
  /// skipped. Automatic y ranges include the bars.
  public var errorBars: [ErrorBar] = []

  public init(
    name: String, points: [(x: Double, y: Double)], style: LineStyle = .solid,
    color: String? = nil, marker: MarkerShape? = nil, errorBars: [ErrorBar] = []
  ) {
    self.name = name
    self.points = points
    self.style = style
    self.color = color
    self.marker = marker
    self.errorBars = errorBars
  }

  /// Pairs `x[i]` with `y[i]`, for logs kept as parallel columns; the longer array's extra
  /// elements are ignored.
  public init(
    name: String, x: [Double], y: [Double], style: LineStyle = .solid, color: String? = nil
  ) {
    self.init(
      name: name, points: zip(x, y).map { (x: $0, y: $1) }, style: style, color: color)
  }
}

/// A shaded x-range (a schedule phase such as "warm-up" or "noise on") with its label above the
/// plot, where it cannot hide data. An infinite edge (`to: .infinity`) runs to the end of the axis,
/// for a phase that lasts until the run ends.
public struct Band: Sendable {
  public var from: Double
  public var to: Double
  public var label: String
  /// A light CSS fill; `Palette.bandFills` has tints that sit well behind the palette colours.
  public var color: String

  public init(from: Double, to: Double, label: String, color: String = Palette.bandFills[0]) {
    self.from = from
    self.to = to
    self.label = label
    self.color = color
  }
}

/// A horizontal dashed line with a label, for a level the data is judged against ("chance 0.55",
/// "original std"). Automatic y ranges always include it.
public struct ReferenceLine: Sendable {
  public var y: Double
  public var label: String

  public init(y: Double, label: String) {
    self.y = y
    self.label = label
  }
}

/// Colours chosen to stay apart for colour-blind readers (Okabe & Ito, 2008).
public enum Palette {
  /// Series colours in the order they are handed out. Yellow comes last: it is faint on white.
  public static let colors: [String] = [
    "#0072B2",  // blue
    "#D55E00",  // vermillion
    "#009E73",  // bluish green
    "#CC79A7",  // reddish purple
    "#E69F00",  // orange
    "#56B4E9",  // sky blue
    "#000000",  // black
    "#F0E442",  // yellow
  ]

  /// Fifteen colours for charts that need one per item (a method per colour): the palette
  /// without its faint yellow, then Paul Tol's muted scheme, then the yellow.
  public static let distinct: [String] =
    colors.dropLast() + [
      "#882255",  // wine
      "#44AA99",  // teal
      "#999933",  // olive
      "#332288",  // indigo
      "#AA4499",  // purple
      "#117733",  // green
      "#DDCC77",  // sand
      "#F0E442",  // yellow
    ]

  /// Light tints of the palette for bands, so adjacent phases differ without competing with lines.
  public static let bandFills: [String] = [
    "#E8E8E8",  // grey
    "#D6E9F5",  // blue tint
    "#F9E0CC",  // vermillion tint
    "#CCEDE3",  // green tint
    "#F5E4EE",  // purple tint
    "#FAECCC",  // orange tint
  ]
}
