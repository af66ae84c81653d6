import Foundation
import XCTest

#if canImport(FoundationXML)
  import FoundationXML
#endif

/// A parsed SVG, with the lookups the tests need. Parsing with a real XML parser is the test that
/// the output is well-formed.
struct ParsedSVG {
  let document: XMLDocument
  var root: XMLElement

  init(_ svg: String, file: StaticString = #filePath, line: UInt = #line) throws {
    do {
      document = try XMLDocument(xmlString: svg, options: [])
    } catch {
      XCTFail("not well-formed XML: \(error)\n\(svg.prefix(2000))", file: file, line: line)
      throw error
    }
    guard let root = document.rootElement() else {
      XCTFail("no root element", file: file, line: line)
      throw CocoaError(.fileReadCorruptFile)
    }
    self.root = root
  }

  /// Every element, depth first in document order.
  var elements: [XMLElement] {
    var result: [XMLElement] = []
    func visit(_ element: XMLElement) {
      result.append(element)
      for case let child as XMLElement in element.children ?? [] { visit(child) }
    }
    visit(root)
    return result
  }

  func elements(named name: String) -> [XMLElement] {
    elements.filter { $0.localName == name || $0.name == name }
  }

  func elements(withClass name: String) -> [XMLElement] {
    elements.filter { $0.string("class") == name }
  }

  /// The texts of the `<text>` elements inside (or being) the elements of class `name`.
  func texts(inClass name: String) -> [String] {
    elements(withClass: name).flatMap { element -> [String] in
      if element.localName == "text" { return [element.stringValue ?? ""] }
      return (element.children ?? []).compactMap { node in
        guard let child = node as? XMLElement, child.localName == "text" else { return nil }
        return child.stringValue ?? ""
      }
    }
  }

  /// All text content of `<text>` elements.
  var allTexts: [String] { elements(named: "text").map { $0.stringValue ?? "" } }
}

extension XMLElement {
  func number(_ attribute: String) -> Double? {
    string(attribute).flatMap(Double.init)
  }

  /// An attribute's value. Looked up by hand: swift-corelibs-foundation's
  /// `attribute(forName:)` finds nothing on elements in a default namespace (as all SVG is).
  func string(_ attribute: String) -> String? {
    attributes?.first { $0.name == attribute }?.stringValue
  }
}

/// Points of y = f(x) for x = 0, 1, …, count - 1.
func points(_ count: Int, _ f: (Double) -> Double) -> [(x: Double, y: Double)] {
  (0..<count).map { (x: Double($0), y: f(Double($0))) }
}
