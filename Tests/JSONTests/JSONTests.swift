import XCTest
import JSON

final class JSONTests: XCTestCase {
    private func parse(_ text: String) throws -> JSONValue { try JSONValue.parse(Array(text.utf8)) }

    func testIntegersStayApartFromOtherNumbers() throws {
        XCTAssertEqual(try parse("[4, 4.0, -0, 1e2, 9223372036854775808, 18446744073709551615, 18446744073709551616]"),
                       .array([.integer(4), .number(4), .integer(0), .number(100), .unsignedInteger(9_223_372_036_854_775_808),
                               .unsignedInteger(.max), .number(18446744073709551616)]))
        // A seed of UInt64.max is written as itself and reads back the same.
        XCTAssertEqual(JSONValue.unsignedInteger(.max).jsonText, "18446744073709551615")
        XCTAssertEqual(try parse(JSONValue.unsignedInteger(.max).jsonText), .unsignedInteger(.max))
    }

    func testStringsAndEscapes() throws {
        XCTAssertEqual(try parse(#" "a\"\\\/\n\u00e9\ud83d\ude00" "#), .string("a\"\\/\né😀"))
        for bad in [#""\ud83d""#, #""\ude00x""#, "\"\u{01}\"", #""\x""#, "\"abc"] {
            XCTAssertThrowsError(try parse(bad), bad)
        }
        XCTAssertThrowsError(try JSONValue.parse([0x22, 0xC3, 0x28, 0x22]))   // invalid UTF-8 sequence
    }

    func testRefusesWhatStrictJSONRefuses() {
        for bad in ["", "{", "[1,]", "{\"a\":1,}", "NaN", "Infinity", "01", "1.", ".5", "-", "1e", "tru", "{} {}",
                    "{\"a\" 1}", "{1:2}", "[1 2]", "1e999"] {
            XCTAssertThrowsError(try parse(bad), bad)
        }
    }

    func testRefusesADuplicateNameAndDeepNesting() {
        XCTAssertThrowsError(try parse(#"{"a":1,"b":{"c":1,"c":2}}"#)) { error in
            XCTAssertTrue("\(error)".contains("duplicate name 'c'"), "\(error)")
        }
        XCTAssertThrowsError(try parse(String(repeating: "[", count: 200) + String(repeating: "]", count: 200)))
        XCTAssertNoThrow(try parse(String(repeating: "[", count: 100) + String(repeating: "]", count: 100)))
    }

    func testWrittenTextParsesBackToTheSameValue() throws {
        let text = #"{"format":"x","n":[1,-2,0.5,1e-05,3.0,1e+300],"s":"q\"\\\n\u0001é","t":true,"f":false,"z":null,"o":{}}"#
        let value = try parse(text)
        XCTAssertEqual(try parse(value.jsonText), value)
        XCTAssertEqual(value.objectValue?.keys, ["format", "n", "s", "t", "f", "z", "o"])
    }

    /// JSON has no NaN or infinity: the writer never emits invalid text for them.
    func testNonFiniteNumbersAreWrittenAsNull() throws {
        let value = JSONValue.array([.number(.nan), .number(.infinity), .number(-.infinity), .number(1.5)])
        XCTAssertEqual(value.jsonText, "[null,null,null,1.5]")
        XCTAssertEqual(try parse(value.jsonText), .array([.null, .null, .null, .number(1.5)]))
    }
}
