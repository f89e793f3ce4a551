import Foundation
import Testing

@testable import Agent

/// Real vim, top and less output (Fixtures/terminal, recorded by Oracle/record.py) against pyte, an emulator
/// independent of libvterm: the repaint after any prefix of a recording must show what the prefix showed, scrollback
/// included.
@Suite struct TerminalScreenOracleTests {
    struct Fixture: CustomTestStringConvertible, Sendable {
        let name: String
        let rows: Int
        let columns: Int
        var testDescription: String { name }

        func recording() throws -> [UInt8] {
            let url = try #require(Bundle.module.url(forResource: name, withExtension: "raw", subdirectory: "Fixtures/terminal"))
            return [UInt8](try Data(contentsOf: url))
        }
    }

    static let vim = Fixture(name: "vim-80x24", rows: 24, columns: 80)
    static let top = Fixture(name: "top-80x24", rows: 24, columns: 80)
    static let less = Fixture(name: "less-100x30", rows: 30, columns: 100)
    static let oracle = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Oracle/pyte_screen.py")

    /// The screen after `output`, written in uneven pieces (1 byte to 64 KiB) so sequences straddle writes.
    static func screen(after output: ArraySlice<UInt8>, _ fixture: Fixture) -> TerminalScreen {
        let screen = TerminalScreen(rows: fixture.rows, columns: fixture.columns)
        let sizes = [4096, 1, 7, 65536, 13, 512]
        var start = output.startIndex
        var piece = 0
        while start < output.endIndex {
            let end = min(start + sizes[piece % sizes.count], output.endIndex)
            screen.write(Array(output[start..<end]))
            (start, piece) = (end, piece + 1)
        }
        return screen
    }

    /// Runs the oracle on a recording's prefix and a repaint: nil when pyte shows the same, else its report.
    static func difference(_ fixture: Fixture, recording: ArraySlice<UInt8>, repaint: [UInt8]) throws -> String? {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("terminal-oracle-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let recordingFile = directory.appendingPathComponent("recording")
        let repaintFile = directory.appendingPathComponent("repaint")
        try Data(recording).write(to: recordingFile)
        try Data(repaint).write(to: repaintFile)

        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = [oracle.path, "\(fixture.rows)", "\(fixture.columns)", recordingFile.path, repaintFile.path]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let report = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return process.terminationStatus == 0 ? nil : "oracle exit \(process.terminationStatus): \(report)"
    }

    /// Four cuts through the recording (each moved on to the next ESC, so no sequence is cut) and its end.
    static func cuts(_ recording: [UInt8]) -> [Int] {
        [0.2, 0.4, 0.6, 0.8].map { fraction in
            let offset = Int(Double(recording.count) * fraction)
            return recording[offset...].firstIndex(of: 0x1B) ?? recording.count
        } + [recording.count]
    }

    /// A cut halfway through the program's time on the alternate screen.
    static func alternateScreenCut(_ recording: [UInt8]) throws -> Int {
        let enter = try #require(range(of: "\u{1B}[?1049h", in: recording, from: 0))
        let leave = try #require(range(of: "\u{1B}[?1049l", in: recording, from: enter.upperBound))
        let middle = (enter.upperBound + leave.lowerBound) / 2
        return recording[middle...].firstIndex(of: 0x1B) ?? leave.lowerBound
    }

    static func range(of needle: String, in haystack: [UInt8], from start: Int) -> Range<Int>? {
        let needle = Array(needle.utf8)
        guard haystack.count >= needle.count else { return nil }
        for index in start...(haystack.count - needle.count) where haystack[index..<index + needle.count].elementsEqual(needle) {
            return index..<index + needle.count
        }
        return nil
    }

    @Test(arguments: [vim, top, less])
    func repaintShowsWhatTheRecordingShowed(_ fixture: Fixture) throws {
        let recording = try fixture.recording()
        for cut in Self.cuts(recording) {
            let repaint = Self.screen(after: recording[..<cut], fixture).repaint()
            if let difference = try Self.difference(fixture, recording: recording[..<cut], repaint: repaint) {
                Issue.record("\(fixture.name), cut at byte \(cut) of \(recording.count):\n\(difference)")
            }
        }
    }

    /// vim and less use the alternate screen: cut while they are on it.
    @Test(arguments: [vim, less])
    func repaintWhileOnTheAlternateScreen(_ fixture: Fixture) throws {
        let recording = try fixture.recording()
        let cut = try Self.alternateScreenCut(recording)
        let repaint = Self.screen(after: recording[..<cut], fixture).repaint()
        #expect(Self.range(of: "\u{1B}[?1049h", in: repaint, from: 0) != nil)
        let difference = try Self.difference(fixture, recording: recording[..<cut], repaint: repaint)
        #expect(difference == nil, "\(fixture.name), cut at byte \(cut):\n\(difference ?? "")")
    }

    /// The oracle can fail: a repaint without its SGR sequences (no colours, no bold) is reported.
    @Test func oracleCatchesARepaintWithoutAttributes() throws {
        let recording = try Self.vim.recording()
        let cut = try Self.alternateScreenCut(recording)
        let repaint = Self.screen(after: recording[..<cut], Self.vim).repaint()
        let broken = Self.withoutSGR(repaint)
        #expect(broken.count < repaint.count)
        let difference = try Self.difference(Self.vim, recording: recording[..<cut], repaint: broken)
        #expect(difference?.contains("differs") == true, "\(difference ?? "no difference reported")")
    }

    /// The oracle can fail: a repaint that leaves the cursor at home is reported.
    @Test func oracleCatchesAMisplacedCursor() throws {
        let recording = try Self.top.recording()
        let repaint = Self.screen(after: recording[...], Self.top).repaint()
        let difference = try Self.difference(Self.top, recording: recording[...], repaint: repaint + Array("\u{1B}[H".utf8))
        #expect(difference?.contains("cursor") == true, "\(difference ?? "no difference reported")")
    }

    /// The oracle compares scrollback too: a screen that kept none is reported.
    @Test func oracleCatchesMissingScrollback() throws {
        let recording = try Self.vim.recording()
        let screen = TerminalScreen(rows: Self.vim.rows, columns: Self.vim.columns, scrollbackLines: 0)
        screen.write(recording)
        let difference = try Self.difference(Self.vim, recording: recording[...], repaint: screen.repaint())
        #expect(difference?.contains("scrollback differs") == true, "\(difference ?? "no difference reported")")
    }

    /// `repaint` with every `ESC [ … m` left out.
    static func withoutSGR(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var index = 0
        while index < bytes.count {
            if bytes[index] == 0x1B, index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "[") {
                var end = index + 2
                while end < bytes.count, !(0x40...0x7E).contains(bytes[end]) { end += 1 }
                if end < bytes.count, bytes[end] == UInt8(ascii: "m") {
                    index = end + 1
                    continue
                }
            }
            out.append(bytes[index])
            index += 1
        }
        return out
    }

    /// Repainting a repaint changes nothing, at every cut of every recording.
    @Test(arguments: [vim, top, less])
    func repaintIsAFixedPoint(_ fixture: Fixture) throws {
        let recording = try fixture.recording()
        for cut in Self.cuts(recording) {
            let repaint = Self.screen(after: recording[..<cut], fixture).repaint()
            let again = TerminalScreen(rows: fixture.rows, columns: fixture.columns)
            again.write(repaint)
            #expect(again.repaint() == repaint, "\(fixture.name), cut at byte \(cut)")
        }
    }
}
