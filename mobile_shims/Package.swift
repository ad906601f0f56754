// swift-tools-version:5.7
// The Swift package of edgeyard's device side: the C telemetry core (c/) as the C target
// EdgeyardC and the Swift wrapper (ios/Sources/EdgeyardShim) on top, with its tests over the
// shared vectors in testdata/. It sits here, above both, because SwiftPM takes a target's sources
// only from inside the package. NOT compiled anywhere yet: edgeyard's CI has no Swift toolchain
// (see ios/README.md). CryptoKit on Apple platforms; swift-crypto (the same API) elsewhere.
import PackageDescription

let package = Package(
    name: "Edgeyard",
    platforms: [.iOS(.v15), .macOS(.v12)],
    products: [
        .library(name: "EdgeyardShim", targets: ["EdgeyardShim"]),
        .library(name: "EdgeyardC", targets: ["EdgeyardC"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-crypto.git", "2.0.0"..<"4.0.0"),
    ],
    targets: [
        // the sources carry `#pragma STDC FP_CONTRACT OFF` (clang honours it): no fused
        // multiply-add, so the sketches stay bit-identical to numpy's
        .target(name: "EdgeyardC", path: "c",
                exclude: ["tests", "tools", "Makefile", "CMakeLists.txt", ".gitignore"],
                sources: ["src"], publicHeadersPath: "include",
                linkerSettings: [.linkedLibrary("m", .when(platforms: [.linux]))]),
        .target(name: "EdgeyardShim",
                dependencies: ["EdgeyardC",
                               .product(name: "Crypto", package: "swift-crypto",
                                        condition: .when(platforms: [.linux]))],
                path: "ios/Sources/EdgeyardShim"),
        .testTarget(name: "EdgeyardShimTests", dependencies: ["EdgeyardShim", "EdgeyardC"],
                    path: "ios/Tests/EdgeyardShimTests"),
    ]
)
