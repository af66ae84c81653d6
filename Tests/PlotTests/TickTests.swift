import XCTest

@testable import Plots

/// Tick placement and labels: 1-2-5 steps, integer steps for counting axes, decades on log axes,
/// and the number formatting behind them.
final class TickTests: XCTestCase {
  private func values(_ ticks: [Tick]) -> [Double] { ticks.map(\.value) }
  private func labels(_ ticks: [Tick]) -> [String] { ticks.map(\.label) }

  func testUnitRange() {
    let ticks = Ticks.linear(lower: 0, upper: 1, maxIntervals: 6)
    XCTAssertEqual(values(ticks), [0, 0.2, 0.4, 0.6, 0.8, 1])
    XCTAssertEqual(labels(ticks), ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"])
  }

  func testStepCountRangeHasIntegerLabels() {
    let ticks = Ticks.linear(lower: 0, upper: 237, maxIntervals: 6, integral: true)
    XCTAssertEqual(values(ticks), [0, 50, 100, 150, 200])
    XCTAssertEqual(labels(ticks), ["0", "50", "100", "150", "200"])
    // A counting axis never gets fractional steps, however short.
    let short = Ticks.linear(lower: 0, upper: 3, maxIntervals: 8, integral: true)
    XCTAssertEqual(labels(short), ["0", "1", "2", "3"])
    let unrestricted = Ticks.linear(lower: 0, upper: 3, maxIntervals: 8)
    XCTAssertEqual(labels(unrestricted), ["0.0", "0.5", "1.0", "1.5", "2.0", "2.5", "3.0"])
  }

  func testSmallValuesUseScientificLabels() {
    let ticks = Ticks.linear(lower: 1e-4, upper: 3e-3, maxIntervals: 6)
    XCTAssertEqual(labels(ticks), ["5e-4", "1e-3", "1.5e-3", "2e-3", "2.5e-3", "3e-3"])
    for (tick, expected) in zip(ticks, [5e-4, 1e-3, 1.5e-3, 2e-3, 2.5e-3, 3e-3]) {
      XCTAssertEqual(tick.value, expected, accuracy: 1e-15)
    }
    // At a step of 0.001 fixed notation is still short.
    let millis = Ticks.linear(lower: 0, upper: 0.0031, maxIntervals: 4)
    XCTAssertEqual(labels(millis), ["0.000", "0.001", "0.002", "0.003"])
  }

  func testNegativeRange() {
    let ticks = Ticks.linear(lower: -3.7, upper: -0.2, maxIntervals: 7)
    XCTAssertEqual(values(ticks), [-3.5, -3, -2.5, -2, -1.5, -1, -0.5])
    XCTAssertEqual(labels(ticks).first, "-3.5")
    let straddling = Ticks.linear(lower: -0.11, upper: 0.06, maxIntervals: 6)
    XCTAssertEqual(labels(straddling), ["-0.10", "-0.05", "0.00", "0.05"])
  }

  func testLargeValuesUseScientificLabels() {
    let ticks = Ticks.linear(lower: 0, upper: 5.2e6, maxIntervals: 6)
    XCTAssertEqual(labels(ticks), ["0", "1e6", "2e6", "3e6", "4e6", "5e6"])
  }

  /// Over spans from 1e-7 to 1e7 the step is always 1, 2 or 5 times a power of ten, the ticks lie
  /// in the range, and there are between 2 and maxIntervals + 1 of them.
  func testStepsAreAlwaysOneTwoFive() throws {
    var span = 1.3e-7
    while span < 1e7 {
      for lower in [-span / 3, 0, span * 7.7] {
        let ticks = Ticks.linear(lower: lower, upper: lower + span, maxIntervals: 6)
        XCTAssertGreaterThanOrEqual(ticks.count, 2, "span \(span)")
        XCTAssertLessThanOrEqual(ticks.count, 7, "span \(span)")
        let step = try XCTUnwrap(Ticks.niceStep(span: span, maxIntervals: 6))
        XCTAssertTrue([1, 2, 5].contains(step.multiple), "span \(span): \(step)")
        for (a, b) in zip(ticks, ticks.dropFirst()) {
          XCTAssertEqual(b.value - a.value, step.value, accuracy: step.value * 1e-6)
        }
        for tick in ticks {
          XCTAssertGreaterThanOrEqual(tick.value, lower - span * 1e-9)
          XCTAssertLessThanOrEqual(tick.value, lower + span * (1 + 1e-9))
        }
        XCTAssertEqual(Set(labels(ticks)).count, ticks.count, "labels must differ: \(ticks)")
      }
      span *= 2.9
    }
  }

  func testDegenerateRangesGiveNoTicks() {
    XCTAssertEqual(Ticks.linear(lower: 1, upper: 1, maxIntervals: 5), [])
    XCTAssertEqual(Ticks.linear(lower: 0, upper: .infinity, maxIntervals: 5), [])
    XCTAssertEqual(Ticks.linear(lower: .nan, upper: 1, maxIntervals: 5), [])
    XCTAssertEqual(Ticks.logarithmic(lower: 0, upper: 1, maxIntervals: 5).major, [])
  }

  func testLogDecades() {
    let (major, minor) = Ticks.logarithmic(lower: 1e-4, upper: 3, maxIntervals: 6)
    XCTAssertEqual(labels(major), ["1e-4", "0.001", "0.01", "0.1", "1"])
    XCTAssertTrue(minor.contains { abs($0 - 2e-3) < 1e-12 })
    XCTAssertFalse(minor.contains { abs($0 - 1e-3) < 1e-12 }, "a major tick is not also minor")
    // Many decades: every other one, so labels stay apart.
    let wide = Ticks.logarithmic(lower: 1e-9, upper: 1e3, maxIntervals: 6).major
    XCTAssertEqual(labels(wide), ["1e-8", "1e-6", "1e-4", "0.01", "1", "100"])
  }

  func testLogWithinTwoDecadesUsesOneTwoFive() {
    let major = Ticks.logarithmic(lower: 0.045, upper: 2.6, maxIntervals: 6).major
    XCTAssertEqual(labels(major), ["0.05", "0.1", "0.2", "0.5", "1", "2"])
    // Where 1-2-5 gives too few ticks to read, more multiples join in.
    let loss = Ticks.logarithmic(lower: 0.45, upper: 3.2, maxIntervals: 6).major
    XCTAssertEqual(labels(loss), ["0.5", "1", "2", "3"])
    let withinDecade = Ticks.logarithmic(lower: 0.2004, upper: 1.08, maxIntervals: 6).major
    XCTAssertEqual(labels(withinDecade), ["0.3", "0.4", "0.5", "0.6", "0.8", "1"])
    // Less than half a decade: linear steps.
    let narrow = Ticks.logarithmic(lower: 3.1, upper: 4.4, maxIntervals: 6).major
    XCTAssertEqual(labels(narrow), ["3.5", "4.0"])
  }

  func testFixedFormatting() {
    XCTAssertEqual(Format.fixed(3.14159, decimals: 2), "3.14")
    XCTAssertEqual(Format.fixed(-0.0001, decimals: 2), "0.00", "no negative zero")
    XCTAssertEqual(Format.fixed(-2.5, decimals: 1), "-2.5")
    XCTAssertEqual(Format.fixed(0.05, decimals: 3), "0.050")
    XCTAssertEqual(Format.fixed(12.50, decimals: 2, trimmingZeros: true), "12.5")
    XCTAssertEqual(Format.fixed(.nan, decimals: 2), "0")
    XCTAssertEqual(Format.coordinate(1e300), "100000")
  }

  func testScientificFormatting() {
    XCTAssertEqual(Format.scientific(0.00015, mantissaDecimals: 1), "1.5e-4")
    XCTAssertEqual(Format.scientific(0.0001, mantissaDecimals: 1), "1e-4")
    XCTAssertEqual(Format.scientific(9.996e-5, mantissaDecimals: 2), "1e-4")
    XCTAssertEqual(Format.scientific(-2e6, mantissaDecimals: 0), "-2e6")
  }

  func testEscaping() {
    XCTAssertEqual(XML.escaped("a<b & \"c\" 'd'>"), "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;")
    XCTAssertEqual(XML.escaped("d·W + N, σ"), "d·W + N, σ")
    XCTAssertEqual(XML.escaped("bell\u{07}\nline"), "bell\u{FFFD} line")
  }

  func testTextFitting() {
    let long = String(repeating: "convergence ", count: 20)
    let fitted = TextMetrics.fitted(long, fontSize: 15, minimumFontSize: 11, maxWidth: 300)
    XCTAssertEqual(fitted.fontSize, 11)
    XCTAssertTrue(fitted.text.hasSuffix("…"))
    XCTAssertLessThanOrEqual(TextMetrics.width(fitted.text, fontSize: 11), 300)
    let short = TextMetrics.fitted("loss", fontSize: 15, minimumFontSize: 11, maxWidth: 300)
    XCTAssertEqual(short.text, "loss")
    XCTAssertEqual(short.fontSize, 15)
  }
}
