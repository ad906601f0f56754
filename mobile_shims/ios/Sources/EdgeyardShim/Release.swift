// The release manifest and its checks, as edgeyard/signing.py and edgeyard/_hashing.py do them.
// The signature is detached (release.json.sig over release.json's exact bytes), so checking it
// needs no JSON at all; the canonical writer below serves only the old embedded format
// (deprecated, read for one more version).
// NOT COMPILED in edgeyard's CI (no Swift toolchain there): a port of the Android wrapper's
// Json / Manifest / Signatures / Sha256 (mobile_shims/android), which is compiled and tested.

#if canImport(CryptoKit)
import CryptoKit
#else
import Crypto  // swift-crypto: CryptoKit's API off Apple platforms
#endif
import Foundation

/// A JSON value whose numbers keep their source text, so that the canonical bytes Python signed
/// (`json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)`) can be rebuilt.
/// JSONSerialization turns numbers into NSNumber and loses that text.
public indirect enum JSON: Equatable {
    case null, bool(Bool), number(String), string(String), array([JSON]), object([(String, JSON)])

    public static func == (a: JSON, b: JSON) -> Bool { a.canonical() == b.canonical() }

    public subscript(key: String) -> JSON? {
        if case .object(let items) = self { return items.first(where: { $0.0 == key })?.1 }
        return nil
    }

    public var string: String? { if case .string(let s) = self { return s }; return nil }
    public var double: Double? { if case .number(let t) = self { return Double(t) }; return nil }
    public var array: [JSON] { if case .array(let a) = self { return a }; return [] }

    /// Python's canonical form: keys sorted by code point, only '"', '\\' and control characters
    /// escaped (lowercase \u00xx), non-ASCII written as UTF-8.
    public func canonical() -> Data { Data(write().utf8) }

    private func write() -> String {
        switch self {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .number(let t): return t
        case .string(let s): return JSON.quote(s)
        case .array(let a): return "[" + a.map { $0.write() }.joined(separator: ",") + "]"
        case .object(let items):
            let sorted = items.sorted { $0.0.unicodeScalars.lexicographicallyPrecedes($1.0.unicodeScalars) }
            return "{" + sorted.map { JSON.quote($0.0) + ":" + $0.1.write() }.joined(separator: ",") + "}"
        }
    }

    private static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
            }
        }
        return out + "\""
    }

    public static func parse(_ data: Data) throws -> JSON {
        var p = Parser(Array(data))
        let v = try p.value()
        p.ws()
        guard p.i == p.b.count else { throw ShimError.manifest("invalid JSON: trailing data at \(p.i)") }
        return v
    }

    private struct Parser {
        let b: [UInt8]
        var i = 0
        init(_ b: [UInt8]) { self.b = b }

        mutating func ws() { while i < b.count, [0x20, 0x0A, 0x0D, 0x09].contains(b[i]) { i += 1 } }

        func fail(_ what: String) -> ShimError { .manifest("invalid JSON at byte \(i): \(what)") }

        mutating func value() throws -> JSON {
            ws()
            guard i < b.count else { throw fail("unexpected end") }
            switch b[i] {
            case UInt8(ascii: "{"):
                i += 1; var items: [(String, JSON)] = []; ws()
                if i < b.count, b[i] == UInt8(ascii: "}") { i += 1; return .object(items) }
                while true {
                    ws(); guard case .string(let k) = try value() else { throw fail("expected a key") }
                    ws(); guard i < b.count, b[i] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                    i += 1; items.append((k, try value())); ws()
                    guard i < b.count else { throw fail("unterminated object") }
                    if b[i] == UInt8(ascii: ",") { i += 1; continue }
                    guard b[i] == UInt8(ascii: "}") else { throw fail("expected '}'") }
                    i += 1; return .object(items)
                }
            case UInt8(ascii: "["):
                i += 1; var items: [JSON] = []; ws()
                if i < b.count, b[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
                while true {
                    items.append(try value()); ws()
                    guard i < b.count else { throw fail("unterminated array") }
                    if b[i] == UInt8(ascii: ",") { i += 1; continue }
                    guard b[i] == UInt8(ascii: "]") else { throw fail("expected ']'") }
                    i += 1; return .array(items)
                }
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): return try literal("true", .bool(true))
            case UInt8(ascii: "f"): return try literal("false", .bool(false))
            case UInt8(ascii: "n"): return try literal("null", .null)
            default:
                let start = i
                while i < b.count, "+-0123456789.eE".utf8.contains(b[i]) { i += 1 }
                guard i > start, Double(String(decoding: b[start..<i], as: UTF8.self)) != nil else {
                    throw fail("unexpected character")
                }
                return .number(String(decoding: b[start..<i], as: UTF8.self))
            }
        }

        mutating func literal(_ word: String, _ v: JSON) throws -> JSON {
            let w = Array(word.utf8)
            guard i + w.count <= b.count, Array(b[i..<i + w.count]) == w else { throw fail("expected \(word)") }
            i += w.count
            return v
        }

        mutating func string() throws -> String {
            i += 1
            var units: [UInt16] = []
            var raw: [UInt8] = []
            func flush() { units.append(contentsOf: String(decoding: raw, as: UTF8.self).utf16); raw = [] }
            while true {
                guard i < b.count else { throw fail("unterminated string") }
                let c = b[i]; i += 1
                if c == UInt8(ascii: "\"") { flush(); return String(decoding: units, as: UTF16.self) }
                if c != UInt8(ascii: "\\") { raw.append(c); continue }
                flush()
                guard i < b.count else { throw fail("unterminated escape") }
                let e = b[i]; i += 1
                switch e {
                case UInt8(ascii: "u"):
                    guard i + 4 <= b.count, let u = UInt16(String(decoding: b[i..<i + 4], as: UTF8.self), radix: 16)
                    else { throw fail("bad \\u escape") }
                    units.append(u); i += 4  // surrogate pairs join in UTF-16
                case UInt8(ascii: "n"): units.append(0x0A)
                case UInt8(ascii: "t"): units.append(0x09)
                case UInt8(ascii: "r"): units.append(0x0D)
                case UInt8(ascii: "b"): units.append(0x08)
                case UInt8(ascii: "f"): units.append(0x0C)
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): units.append(UInt16(e))
                default: throw fail("bad escape")
                }
            }
        }
    }
}

public enum ShimError: Error, CustomStringConvertible {
    case manifest(String), key(String), allEnginesFailed([(String, String)])

    public var description: String {
        switch self {
        case .manifest(let m), .key(let m): return m
        case .allEnginesFailed(let r):
            return "every engine failed for this call:" + r.map { "\n  \($0.0): \($0.1)" }.joined()
        }
    }
}

/// sha256 of a file, or of a bundle directory (.mlpackage): each file's relative path, a NUL and
/// its bytes, in Python's Path order (component by component).
public func sha256Hex(_ url: URL) throws -> String {
    var h = SHA256()
    var isDir: ObjCBool = false
    FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir)
    if isDir.boolValue {
        let base = url.standardizedFileURL.pathComponents
        var files: [[String]] = []
        let it = FileManager.default.enumerator(at: url, includingPropertiesForKeys: [.isRegularFileKey])
        while let f = it?.nextObject() as? URL {
            if (try? f.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true {
                files.append(Array(f.standardizedFileURL.pathComponents.dropFirst(base.count)))
            }
        }
        files.sort { a, b in
            a.lexicographicallyPrecedes(b, by: { x, y in x.unicodeScalars.lexicographicallyPrecedes(y.unicodeScalars) })
        }
        for parts in files {
            h.update(data: Data(parts.joined(separator: "/").utf8) + Data([0]))
            h.update(data: try Data(contentsOf: url.appendingPathComponent(parts.joined(separator: "/")),
                                    options: .alwaysMapped))
        }
    } else {
        h.update(data: try Data(contentsOf: url, options: .alwaysMapped))
    }
    return h.finalize().map { String(format: "%02x", $0) }.joined()
}

/// The Ed25519 checks of edgeyard/signing.py with CryptoKit.
public enum Signatures {
    public static let signatureFile = "release.json.sig"

    /// release.json.sig (`ed25519 <key_id> <base64 signature>\n`) over release.json's exact
    /// `bytes`; check it before parsing them. Bytes that verify trust every artifact (each still
    /// checked against its sha256), others trust none. `sig` nil (no .sig): the old embedded
    /// format, deprecated (re-sign such a release with `edgeyard sign`).
    public static func verify(bytes: Data, sig: Data?, _ key: Curve25519.Signing.PublicKey)
        -> (ok: Bool, reason: String?, artifacts: [String: Bool]) {
        guard let sig = sig else {
            if let m = try? JSON.parse(bytes), case .object(let f)? = m["signature"], !f.isEmpty {
                return verify(m, key)
            }
            return (false, "the release is not signed (no release.json.sig): sign it with `edgeyard sign`", [:])
        }
        var b = [UInt8](sig)
        if b.last == 0x0A { b.removeLast() }
        if b.last == 0x0D { b.removeLast() }
        // bytes, not Characters: Swift reads "\r\n" as one Character
        let fields = b.split(separator: 0x20, omittingEmptySubsequences: false)
            .map { String(decoding: $0, as: UTF8.self) }
        guard b.count <= 1024, b.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }), fields.count == 3,
              !fields[0].isEmpty, !fields[1].isEmpty, let raw = Data(base64Encoded: fields[2]) else {
            return (false, "release.json.sig is not one line 'ed25519 <key_id> <base64>'", [:])
        }
        guard fields[0] == "ed25519" else { return (false, "unsupported signature algorithm '\(fields[0])'", [:]) }
        guard fields[1] == keyId(key) else {
            return (false, "signed with key \(fields[1]), but the key given is \(keyId(key)) (wrong key)", [:])
        }
        guard key.isValidSignature(raw, for: bytes) else {
            return (false, "the signature does not verify over release.json's bytes (release.json edited or replaced after signing)", [:])
        }
        return (true, nil, [:])
    }

    /// A key as `edgeyard keys generate` writes it (PEM SubjectPublicKeyInfo).
    public static func publicKey(pem: String) throws -> Curve25519.Signing.PublicKey {
        let b64 = pem.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
        guard let der = Data(base64Encoded: b64), der.count == 44,
              der.prefix(12) == Data([0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00])
        else { throw ShimError.key("not an Ed25519 PEM public key") }
        return try Curve25519.Signing.PublicKey(rawRepresentation: der.suffix(32))
    }

    public static func keyId(_ key: Curve25519.Signing.PublicKey) -> String {
        String(SHA256.hash(data: key.rawRepresentation).map { String(format: "%02x", $0) }.joined().prefix(16))
    }

    static func without(_ m: JSON, _ key: String) -> JSON {
        guard case .object(let items) = m else { return m }
        return .object(items.filter { $0.0 != key })
    }

    static func statement(_ m: JSON, _ id: String) -> Data {
        let model = m["model"], a = m["artifacts"]?[id]
        let pick = { (o: JSON?, keys: [String]) -> JSON in .object(keys.map { ($0, o?[$0] ?? .null) }) }
        return JSON.object([
            ("release", pick(model, ["name", "version", "source_sha256"])),
            ("artifact_id", .string(id)),
            ("artifact", pick(a, ["path", "sha256", "size_bytes", "format", "backend", "precision",
                                  "selftest", "status"])),
            ("golden", m["golden"] ?? .null),
            ("model_io", pick(model, ["inputs", "outputs"])),
        ]).canonical()
    }

    /// Deprecated (the old embedded format, read for one more version): (manifest signature
    /// holds, why not, per-artifact statement verdicts) of the `signature` field inside `m`.
    public static func verify(_ m: JSON, _ key: Curve25519.Signing.PublicKey)
        -> (ok: Bool, reason: String?, artifacts: [String: Bool]) {
        guard let sig = m["signature"], case .object(let fields) = sig, !fields.isEmpty else {
            return (false, "the release is not signed", [:])
        }
        guard sig["algorithm"]?.string == "ed25519" else { return (false, "unsupported signature algorithm", [:]) }
        guard sig["key_id"]?.string == keyId(key) else {
            return (false, "signed with key \(sig["key_id"]?.string ?? "?"), but the key given is \(keyId(key)) (wrong key)", [:])
        }
        func ok(_ s: JSON?, _ data: Data) -> Bool {
            guard let b64 = s?.string, let raw = Data(base64Encoded: b64) else { return false }
            return key.isValidSignature(raw, for: data)
        }
        let manifestOk = ok(sig["manifest"], without(m, "signature").canonical())
        var arts: [String: Bool] = [:]
        if case .object(let items)? = sig["artifacts"] {
            for (id, s) in items { arts[id] = m["artifacts"]?[id] != nil && ok(s, statement(m, id)) }
        }
        return (manifestOk, manifestOk ? nil : "the manifest signature does not verify (release.json edited)", arts)
    }
}
