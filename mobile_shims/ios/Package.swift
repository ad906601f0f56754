// swift-tools-version:5.7
// Not built in edgeyard's CI (no Swift toolchain on Linux there); see README.md.
import PackageDescription

let package = Package(
    name: "EdgeyardShim",
    platforms: [.iOS(.v15), .macOS(.v12)],
    products: [.library(name: "EdgeyardShim", targets: ["EdgeyardShim"])],
    targets: [.target(name: "EdgeyardShim")]
)
