// The fallback runtime with its circuit breaker: edgeyard/runtime/runtime.py and breaker.py.
// NOT COMPILED in edgeyard's CI (no Swift toolchain there). Smaller than the Android wrapper: no
// golden-data self-test, no latency-budget fixed-batch splitting (see README.md).

import Foundation

/// One loaded artifact. Tensors are float32, flattened row-major, batch first, in the manifest's
/// model.inputs / model.outputs order. Not called concurrently (the runtime locks per engine).
public protocol Engine: AnyObject {
    func predict(_ inputs: [[Float]]) throws -> [[Float]]
}

/// Loads artifacts of one manifest format ("coreml", ...).
public protocol EngineFactory {
    var format: String { get }
    func load(_ artifact: URL, inputs: [String], outputs: [String]) throws -> Engine
}

/// Sees every call (RuntimeObserver in Python); cheap, on the caller's thread.
public protocol Collector: AnyObject {
    func onCall(inputs: [[Float]], outputs: [[Float]]?, engine: String?, latency: Double,
                fallbacks: [(engine: String, kind: String, reason: String)])
}

public struct BreakerPolicy {
    public var failures = 3, latencyWindow = 50, latencyMinCalls = 20
    public var cooloff: Double = 30, cooloffMax: Double = 600
    public init() {}
}

/// Same semantics as the Python Breaker (and the tested Android one).
final class Breaker {
    enum State: String { case healthy, demoted, failed }
    let policy: BreakerPolicy, budget: Double?, clock: () -> Double
    var state = State.healthy, reason: String?, until = 0.0
    var consecutive = 0, demotionsInARow = 0, streak = 0
    var recentOver: [Bool] = [], latencies: [Double] = []

    init(_ policy: BreakerPolicy, _ budget: Double?, _ clock: @escaping () -> Double) {
        self.policy = policy; self.budget = budget; self.clock = clock
    }

    var available: Bool { state == .healthy || (state == .demoted && clock() >= until) }

    func failPermanently(_ why: String) { state = .failed; reason = why }

    private func demote(_ why: String) {
        demotionsInARow += 1
        let rest = min(policy.cooloff * pow(2, Double(demotionsInARow - 1)), policy.cooloffMax)
        state = .demoted; reason = why; until = clock() + rest; recentOver = []
    }

    func success(_ latency: Double) {
        consecutive = 0
        latencies.append(latency); if latencies.count > 1000 { latencies.removeFirst() }
        if state == .demoted { state = .healthy; reason = nil; streak = 0 }
        streak += 1
        if streak >= policy.latencyWindow { demotionsInARow = 0 }
        guard let budget = budget else { return }
        recentOver.append(latency > budget)
        if recentOver.count > policy.latencyWindow { recentOver.removeFirst() }
        let n = recentOver.count, over = recentOver.filter { $0 }.count
        if n >= policy.latencyMinCalls && over * 10 > n {
            let recent = latencies.suffix(n).sorted()
            let pos = 0.9 * Double(n - 1), lo = Int(pos), hi = min(lo + 1, n - 1)
            let p90 = recent[lo] + (recent[hi] - recent[lo]) * (pos - Double(lo))
            demote(String(format: "recent p90 latency %.3f ms > budget %g ms", 1e3 * p90, 1e3 * budget))
        }
    }

    func failure(_ why: String) {
        consecutive += 1
        if state == .demoted || consecutive >= policy.failures {
            demote("\(consecutive) consecutive failure(s), last: \(why)")
        }
    }
}

public final class EdgeRuntime {
    final class Slot {
        let target: String, breaker: Breaker, lock = NSLock()
        var engine: Engine?
        init(_ target: String, _ breaker: Breaker) { self.target = target; self.breaker = breaker }
    }

    private let slots: [Slot]
    private let collectors: [Collector]
    private let clock: () -> Double
    private let lock = NSLock()

    /// Load `profile`'s chain from the release at `dir`: per engine the signature, the sha256
    /// and loading; an engine failing a step is marked failed with its reason (`status()`).
    public init(release dir: URL, profile: String, publicKeyPEM: String?, factories: [EngineFactory],
                collectors: [Collector] = [], policy: BreakerPolicy = BreakerPolicy(),
                clock: @escaping () -> Double = { ProcessInfo.processInfo.systemUptime }) throws {
        // the signature is checked over the bytes read here, before they are parsed
        let bytes = try Data(contentsOf: dir.appendingPathComponent("release.json"))
        var verdict: (ok: Bool, reason: String?, artifacts: [String: Bool])?
        if let pem = publicKeyPEM {
            let sig = try? Data(contentsOf: dir.appendingPathComponent(Signatures.signatureFile))
            verdict = Signatures.verify(bytes: bytes, sig: sig, try Signatures.publicKey(pem: pem))
        }
        let m = try JSON.parse(bytes)
        guard m["schema"]?.string == "edgeyard.release" else { throw ShimError.manifest("not an edgeyard release") }
        guard let p = m["profiles"]?[profile] else { throw ShimError.manifest("release has no profile \(profile)") }
        let budget = p["budgets"]?["max_latency_p90_ms"]?.double.map { $0 / 1e3 }
        let names = { (k: String) in m["model"]?[k]?.array.compactMap { $0["name"]?.string } ?? [] }
        var slots: [Slot] = []
        for link in p["chain"]?.array ?? [] {
            let id = link["target"]?.string ?? "?"
            let slot = Slot(id, Breaker(policy, budget, clock))
            slots.append(slot)
            let a = m["artifacts"]?[id]
            var problem: String?
            if let v = verdict {
                if !(v.ok || v.artifacts[id] == true) { problem = "signature check failed: \(v.reason ?? "")" }
            } else {
                problem = "no public key given: the release cannot be verified"
            }
            if problem == nil {
                let status = a?["status"]?.string ?? "?"
                if let rel = a?["path"]?.string, status == "ok" || status == "unverified" {
                    let url = dir.appendingPathComponent(rel)
                    if !FileManager.default.fileExists(atPath: url.path) {
                        problem = "artifact \(rel) is missing"
                    } else if (try? sha256Hex(url)) != a?["sha256"]?.string {
                        problem = "artifact \(rel) does not match its sha256 (corrupted or replaced)"
                    } else if let f = factories.first(where: { $0.format == a?["format"]?.string }) {
                        do { slot.engine = try f.load(url, inputs: names("inputs"), outputs: names("outputs")) }
                        catch { problem = "cannot load with the \(f.format) runtime: \(error)" }
                    } else {
                        problem = "no EngineFactory registered for format \(a?["format"]?.string ?? "null")"
                    }
                } else {
                    problem = "not built (\(status)): \(a?["reason"]?.string ?? "")"
                }
            }
            if let problem = problem { slot.breaker.failPermanently(problem) }
        }
        self.slots = slots; self.collectors = collectors; self.clock = clock
    }

    /// Outputs from the first engine that answers validly (finite values); throws
    /// ShimError.allEnginesFailed with each engine's reason otherwise.
    public func predict(_ x: [[Float]]) throws -> [[Float]] {
        let start = clock()
        var fallbacks: [(engine: String, kind: String, reason: String)] = []
        for s in slots {
            lock.lock(); let usable = s.breaker.available, why = s.breaker.reason ?? ""; lock.unlock()
            guard usable, let engine = s.engine else {
                fallbacks.append((s.target, "unavailable", why)); continue
            }
            let t0 = clock()
            do {
                s.lock.lock(); defer { s.lock.unlock() }
                let y = try engine.predict(x)
                let took = clock() - t0
                if y.contains(where: { $0.contains { !$0.isFinite } }) {
                    lock.lock(); s.breaker.failure("output contains NaN or Inf"); lock.unlock()
                    fallbacks.append((s.target, "invalid_output", "output contains NaN or Inf")); continue
                }
                lock.lock(); s.breaker.success(took); lock.unlock()
                collectors.forEach { $0.onCall(inputs: x, outputs: y, engine: s.target, latency: clock() - start, fallbacks: fallbacks) }
                return y
            } catch {
                let reason = "\(type(of: error)): \(error)"
                lock.lock(); s.breaker.failure(reason); lock.unlock()
                fallbacks.append((s.target, "error", reason))
            }
        }
        collectors.forEach { $0.onCall(inputs: x, outputs: nil, engine: nil, latency: clock() - start, fallbacks: fallbacks) }
        throw ShimError.allEnginesFailed(fallbacks.map { ($0.engine, $0.reason) })
    }

    /// (target, state, reason) per engine in chain order.
    public func status() -> [(target: String, state: String, reason: String?)] {
        lock.lock(); defer { lock.unlock() }
        return slots.map { ($0.target, $0.breaker.state.rawValue, $0.breaker.reason) }
    }
}
