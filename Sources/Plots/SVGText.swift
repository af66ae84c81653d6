import Foundation

/// XML escaping for text nodes and attribute values alike, so a title such as `loss <val> & "σ"`
/// cannot break the document.
enum XML {
  static func escaped(_ text: String) -> String {
    var result = ""
    result.reserveCapacity(text.utf8.count)
    for scalar in text.unicodeScalars {
      switch scalar {
      case "&": result += "&amp;"
      case "<": result += "&lt;"
      case ">": result += "&gt;"
      case "\"": result += "&quot;"
      case "'": result += "&apos;"
      // SVG collapses white space anyway; a space keeps attribute values on one line.
      case "\t", "\n", "\r": result += " "
      default:
        // Other C0 controls and U+FFFE/U+FFFF are not allowed anywhere in XML 1.0.
        if scalar.value < 0x20 || scalar.value == 0xFFFE || scalar.value == 0xFFFF {
          result += "\u{FFFD}"
        } else {
          result.unicodeScalars.append(scalar)
        }
      }
    }
    return result
  }
}

/// Number formatting written out by hand rather than through `String(format:)`, so the bytes do
/// not depend on a locale or a platform's printf.
enum Format {
  /// `value` with exactly `decimals` digits after the point (or fewer when trimming zeros).
  static func fixed(_ value: Double, decimals: Int, trimmingZeros: Bool = false) -> String {
    guard value.isFinite else { return "0" }
    let decimals = min(max(decimals, 0), 12)
    var scale: UInt64 = 1
    for _ in 0..<decimals { scale *= 10 }
    let scaled = (value.magnitude * Double(scale)).rounded()
    // Beyond 2^53 the digits are noise anyway; Swift's shortest round-trip form is deterministic.
    guard scaled < 9.0e15 else { return "\(value)" }
    let units = UInt64(scaled)
    var text = String(units / scale)
    if decimals > 0 {
      var fraction = String(units % scale)
      fraction = String(repeating: "0", count: decimals - fraction.count) + fraction
      if trimmingZeros {
        while fraction.last == "0" { fraction.removeLast() }
      }
      if !fraction.isEmpty { text += "." + fraction }
    }
    return value < 0 && units != 0 ? "-" + text : text
  }

  /// A pixel coordinate: a tenth of a pixel is finer than any screen, and keeps files small.
  /// Points far outside the chart (clipped anyway) are pulled in so the numbers stay short.
  static func coordinate(_ value: Double) -> String {
    fixed(min(max(value, -1.0e5), 1.0e5), decimals: 1, trimmingZeros: true)
  }

  /// `mantissa`e`exponent` with the mantissa's trailing zeros trimmed: "1e-4", "2.5e-3".
  static func scientific(_ value: Double, mantissaDecimals: Int) -> String {
    guard value != 0, value.isFinite else { return "0" }
    var exponent = Int(log10(value.magnitude).rounded(.down))
    var mantissa = value / power10(exponent)
    let decimals = min(max(mantissaDecimals, 0), 6)
    var text = fixed(mantissa, decimals: decimals, trimmingZeros: true)
    // Rounding can carry into a new digit (9.99 → 10); move it into the exponent.
    if text == "10" || text == "-10" || mantissa.magnitude >= 10 {
      exponent += 1
      mantissa = value / power10(exponent)
      text = fixed(mantissa, decimals: decimals, trimmingZeros: true)
    }
    return text + "e" + String(exponent)
  }
}

/// 10^exponent, exact for the exponents ticks use (negative powers are formed by division so that
/// 0.1, 0.01, … are the nearest doubles, the same as the literals).
func power10(_ exponent: Int) -> Double {
  var result = 1.0
  for _ in 0..<min(exponent.magnitude, 400) { result *= 10 }
  return exponent < 0 ? 1 / result : result
}

/// Approximate text advance widths for layout (legend size, margins, label collisions). The
/// figures are those of DejaVu Sans, the widest common `sans-serif`, so browsers with Arial or
/// Helvetica only get a little extra room.
enum TextMetrics {
  /// Bold glyphs (the title) are about a tenth wider.
  static func width(_ text: String, fontSize: Double, bold: Bool = false) -> Double {
    var ems = 0.0
    for scalar in text.unicodeScalars { ems += advance(scalar) }
    return ems * fontSize * (bold ? 1.12 : 1)
  }

  private static func advance(_ scalar: Unicode.Scalar) -> Double {
    switch scalar {
    case " ": return 0.32
    case "i", "j", "l", ".", ",", ":", ";", "!", "'", "|", "·": return 0.3
    case "f", "t", "r", "(", ")", "[", "]", "-", "I": return 0.4
    case "m": return 0.98
    case "w": return 0.82
    case "M", "W": return 0.9
    case "0"..."9": return 0.64
    case "a"..."z": return 0.61
    case "A"..."Z": return 0.72
    default:
      // Combining marks take no room; everything else (σ, —, …) is about a lowercase letter.
      if (0x0300...0x036F).contains(scalar.value) { return 0 }
      return 0.66
    }
  }

  /// The text at `fontSize`, or shrunk down to `minimumFontSize`, or cut with an ellipsis, so that
  /// it fits `maxWidth`: a long title must not run off the chart.
  static func fitted(
    _ text: String, fontSize: Double, minimumFontSize: Double, maxWidth: Double,
    bold: Bool = false
  ) -> (text: String, fontSize: Double) {
    let natural = width(text, fontSize: fontSize, bold: bold)
    guard natural > maxWidth, natural > 0 else { return (text, fontSize) }
    let size = max(minimumFontSize, fontSize * maxWidth / natural)
    if width(text, fontSize: size, bold: bold) <= maxWidth { return (text, size) }
    var characters = Array(text)
    while !characters.isEmpty,
      width(String(characters) + "…", fontSize: size, bold: bold) > maxWidth
    {
      characters.removeLast()
    }
    return (String(characters) + "…", size)
  }
}
