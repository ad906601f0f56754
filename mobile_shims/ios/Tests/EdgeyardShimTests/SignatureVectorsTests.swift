// The shared signature vectors (mobile_shims/testdata/signatures, written by
// testdata/signatures.py) checked by the Swift wrapper, as Python
// (tests/runtime/test_signature_vectors.py) and Java (SignatureVectorsTest.java) check them.
// NOT COMPILED in edgeyard's CI (no Swift toolchain there): `swift test` in mobile_shims/.

import EdgeyardC
@testable import EdgeyardShim
import Foundation
import XCTest

final class SignatureVectorsTests: XCTestCase {
    /// mobile_shims/testdata/signatures, found from this file's path (no bundle resources).
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("testdata/signatures")

    func testEveryCaseHasItsExpectedVerdict() throws {
        let root = Self.root
        let pem = try String(contentsOf: root.appendingPathComponent("public_key.pem"), encoding: .ascii)
        let key = try Signatures.publicKey(pem: pem)
        let cases = try String(contentsOf: root.appendingPathComponent("cases.txt"), encoding: .utf8)
        var n = 0
        for line in cases.split(separator: "\n") where !line.hasPrefix("#") && !line.isEmpty {
            let f = line.split(separator: " ").map(String.init)
            let dir = root.appendingPathComponent(f[0])
            let bytes = try Data(contentsOf: dir.appendingPathComponent("release.json"))
            let sig = try? Data(contentsOf: dir.appendingPathComponent(Signatures.signatureFile))
            let v = Signatures.verify(bytes: bytes, sig: sig, key)
            switch f[1] {
            case "valid", "legacy":
                XCTAssertTrue(v.ok, "\(f[0]): \(v.reason ?? "")")
            case "tampered", "reordered", "unsigned":
                XCTAssertFalse(v.ok, f[0])
            case "wrong-key":
                XCTAssertFalse(v.ok, f[0])
                XCTAssertTrue(v.reason?.contains("wrong key") ?? false, f[0])
            default:
                XCTFail("unknown expected verdict \(f[1]) in cases.txt")
            }
            n += 1
        }
        XCTAssertEqual(n, 6)
    }

    /// The C target links and answers: one sketch, updated and read back.
    func testTheCCoreIsLinked() {
        var h = ey_hist()
        XCTAssertEqual(ey_hist_init(&h, 160, 20), 0)
        var values: [Double] = [1.0, 2.0, 4.0]
        ey_hist_update(&h, &values, values.count)
        XCTAssertEqual(h.count, 3)
        XCTAssertEqual(h.sum, 7.0)
    }
}
