import Imaging
import XCTest

final class DICOMUIDTests: XCTestCase {
    /// UIDs under 2.25 (PS3.5 §B.2): the decimal of a 128-bit UUID, at most 64 characters, no leading zero.
    func testUIDsAreUUIDDerivedAndDistinct() {
        let uids = (0..<1000).map { _ in DICOMUID.make() }
        XCTAssertEqual(Set(uids).count, uids.count)
        for uid in uids {
            XCTAssertTrue(uid.hasPrefix("2.25."), uid)
            let number = uid.dropFirst(5)
            XCTAssertTrue(uid.count <= 64 && number.allSatisfy(\.isNumber) && !number.hasPrefix("0"), uid)
        }
        // 128 random bits need 39 digits unless the top ones happen to be zero.
        XCTAssertGreaterThan(uids.map { $0.count - 5 }.max()!, 36)
    }
}
