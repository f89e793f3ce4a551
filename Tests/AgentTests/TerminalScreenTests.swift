import Foundation
import Testing

@testable import Agent

/// What the repaint holds, checked as text; the pyte oracle (TerminalScreenOracleTests) checks what it shows.
@Suite struct TerminalScreenTests {
    static func screen(_ output: String, rows: Int = 5, columns: Int = 20, scrollbackLines: Int = 1000) -> TerminalScreen {
        let screen = TerminalScreen(rows: rows, columns: columns, scrollbackLines: scrollbackLines)
        screen.write(Array(output.utf8))
        return screen
    }

    static func repaint(_ output: String, rows: Int = 5, columns: Int = 20) -> String {
        String(decoding: screen(output, rows: rows, columns: columns).repaint(), as: UTF8.self)
    }

    /// `needles` occur in `text` in this order.
    static func inOrder(_ text: String, _ needles: [String]) -> Bool {
        var rest = text[...]
        for needle in needles {
            guard let range = rest.range(of: needle) else { return false }
            rest = rest[range.upperBound...]
        }
        return true
    }

    /// Each attribute libvterm keeps comes back in one SGR, always from a reset.
    @Test func attributes() {
        let text = Self.repaint("\u{1B}[1;3;4;5;7;9mX\u{1B}[0;21mD\u{1B}[0mplain")
        #expect(text.contains("\u{1B}[1;1H\u{1B}[0;1;3;4;5;7;9mX\u{1B}[0;21mD\u{1B}[0mplain"))
    }

    /// libvterm keeps 31 and 38;5;1 both as index 1: 0-15 go back as 3x/9x (terminfo's setaf), the rest as 38;5;N.
    @Test func colours() {
        let text = Self.repaint(
            "\u{1B}[31ma\u{1B}[38;5;1mb\u{1B}[91mc\u{1B}[38;5;9md\u{1B}[38;5;100me\u{1B}[38;2;1;2;3mf"
                + "\u{1B}[39;41mg\u{1B}[48;5;13mh\u{1B}[48;5;200mi\u{1B}[48;2;250;0;7mj\u{1B}[49mk")
        #expect(text.contains(
            "\u{1B}[0;31mab\u{1B}[0;91mcd\u{1B}[0;38;5;100me\u{1B}[0;38;2;1;2;3mf\u{1B}[0;41mg\u{1B}[0;105mh"
                + "\u{1B}[0;48;5;200mi\u{1B}[0;48;2;250;0;7mj\u{1B}[0mk"))
    }

    /// A wide character is written once (its right half is libvterm's placeholder), combining marks stay with their base.
    @Test func wideAndCombiningCharacters() {
        let text = Self.repaint("中文e\u{301}a\u{308}\u{323}!")
        #expect(text.contains("\u{1B}[1;1H中文e\u{301}a\u{308}\u{323}!"))
    }

    /// A wide character the right edge would cut is not drawn half; the screen wraps it as a terminal does.
    @Test func wideCharacterAtTheRightEdge() {
        let text = Self.repaint("abcd中", rows: 2, columns: 5)
        #expect(text.contains("\u{1B}[1;1Habcd\u{1B}[2;1H中"))
    }

    @Test func cursorPositionAndVisibility() {
        let shown = Self.repaint("hello\u{1B}[4;7H")
        #expect(shown.hasSuffix("\u{1B}[4;7H\u{1B}[?25h"))
        let hidden = Self.repaint("\u{1B}[?25l\u{1B}[2;3H")
        #expect(hidden.hasSuffix("\u{1B}[2;3H\u{1B}[?25l"))
    }

    /// The program's pen outlives the repaint: text it writes next keeps its colour.
    @Test func currentPen() {
        let text = Self.repaint("\u{1B}[1;31mred\u{1B}[0;4;32m")
        #expect(text.hasSuffix("\u{1B}[1;4H\u{1B}[0;4;32m\u{1B}[?25h"))
    }

    @Test func defaultModes() {
        let text = Self.repaint("")
        for mode in ["\u{1B}[?1l", "\u{1B}>", "\u{1B}[?7h", "\u{1B}[4l", "\u{1B}[?2004l", "\u{1B}[?1004l", "\u{1B}[?1000l",
                     "\u{1B}[?1002l", "\u{1B}[?1003l", "\u{1B}[?1006l"] {
            #expect(text.contains(mode), "\(mode.debugDescription)")
        }
        #expect(!text.contains("r\u{1B}"), "no scroll region")
        #expect(!text.contains("\u{1B}[?6h") && !text.contains("\u{1B}[?5h") && !text.contains(" q"))
        #expect(!text.contains("\u{1B}]2;"), "no title")
    }

    @Test func inputModesAProgramSet() {
        let text = Self.repaint(
            "\u{1B}[?1h\u{1B}=\u{1B}[?2004h\u{1B}[?1000;1006h\u{1B}[?1002h\u{1B}[?7l\u{1B}[4h\u{1B}[?1004h\u{1B}[6 q")
        for mode in ["\u{1B}[?1h", "\u{1B}=", "\u{1B}[?7l", "\u{1B}[4h", "\u{1B}[?2004h", "\u{1B}[?1004h", "\u{1B}[?1000l",
                     "\u{1B}[?1003l", "\u{1B}[?1002h", "\u{1B}[?1006h", "\u{1B}[6 q"] {
            #expect(text.contains(mode), "\(mode.debugDescription)")
        }
        // Switching the active tracking mode off leaves none on, as in xterm.
        #expect(Self.repaint("\u{1B}[?1003h\u{1B}[?1003l").contains("\u{1B}[?1003l"))
        #expect(!Self.repaint("\u{1B}[?1003h\u{1B}[?1003l").contains("\u{1B}[?1003h"))
    }

    /// DECSTR and RIS put the modes back; RIS also clears the screen.
    @Test func resets() {
        let soft = Self.repaint("\u{1B}[?1h\u{1B}=\u{1B}[?7l\u{1B}[2;4r\u{1B}[!p")
        #expect(soft.contains("\u{1B}[?1l\u{1B}>") && soft.contains("\u{1B}[?7h") && !soft.contains(";4r"))
        let hard = Self.repaint("gone\u{1B}[?2004h\u{1B}[?1h\u{1B}c")
        #expect(hard.contains("\u{1B}[?2004l") && hard.contains("\u{1B}[?1l") && !hard.contains("gone"))
    }

    /// DECSTBM comes after the grid (it homes the cursor), then the cursor, relative to the region under DECOM.
    @Test func scrollRegionAndOriginMode() {
        let text = Self.repaint("\u{1B}[2;4r\u{1B}[3;5H")
        #expect(Self.inOrder(text, ["\u{1B}[2;4r", "\u{1B}[3;5H", "\u{1B}[?25h"]))
        let origin = Self.repaint("\u{1B}[2;4r\u{1B}[?6h\u{1B}[2;5H")
        #expect(Self.inOrder(origin, ["\u{1B}[2;4r", "\u{1B}[?6h", "\u{1B}[2;5H"]))
        // A region covering the whole screen is no region.
        #expect(!Self.repaint("\u{1B}[1;5r").contains(";5r"))
    }

    @Test func title() {
        #expect(Self.repaint("\u{1B}]2;build logs\u{7}").contains("\u{1B}]2;build logs\u{7}"))
        #expect(Self.repaint("\u{1B}]0;make test\u{1B}\\").contains("\u{1B}]2;make test\u{7}"))
    }

    /// The alternate screen: the primary grid first, the primary cursor saved by 1049, an explicit clear, the alt grid.
    @Test func alternateScreen() {
        let text = Self.repaint("shell$ vim\r\n\u{1B}[?1049h\u{1B}[H\u{1B}[2Jeditor\u{1B}[3;2H")
        #expect(Self.inOrder(text, ["shell$ vim", "\u{1B}[2;1H\u{1B}[?1049h\u{1B}[H\u{1B}[2J", "editor", "\u{1B}[3;2H"]))
        let back = Self.repaint("shell$ vim\r\n\u{1B}[?1049h\u{1B}[H\u{1B}[2Jeditor\u{1B}[?1049l$ ")
        #expect(back.contains("shell$ vim") && !back.contains("editor") && !back.contains("1049"))
        #expect(back.hasSuffix("\u{1B}[2;3H\u{1B}[?25h"))
    }

    /// Any split gives the same screen: escape sequences, OSC strings and UTF-8 characters may straddle writes.
    @Test(arguments: [1, 2, 3, 5, 7])
    func splitWrites(chunk: Int) {
        let output = Array(
            ("\u{1B}]2;title\u{1B}\\\u{1B}[1;38;5;200mbold 中文 e\u{301}\u{1B}[0m\r\n\u{1B}[?1h\u{1B}=\u{1B}[?2004h"
                + "\u{1B}[?1049h\u{1B}[H\u{1B}[2J\u{1B}[48;2;1;2;3malt 字\u{1B}[3;4H\u{1B}[?25l").utf8)
        let whole = TerminalScreen(rows: 5, columns: 20)
        whole.write(output)
        let split = TerminalScreen(rows: 5, columns: 20)
        for start in stride(from: 0, to: output.count, by: chunk) {
            split.write(Array(output[start..<min(start + chunk, output.count)]))
        }
        #expect(split.repaint() == whole.repaint())
        #expect(!String(decoding: split.repaint(), as: UTF8.self).contains("\u{FFFD}"))
    }

    @Test func resize() {
        let screen = Self.screen("0123456789\r\nsecond\u{1B}[2;3H", rows: 3, columns: 10)
        screen.resize(rows: 4, columns: 5)
        #expect(screen.rows == 4 && screen.columns == 5)
        let text = String(decoding: screen.repaint(), as: UTF8.self)
        #expect(text.contains("\u{1B}[1;1H01234\u{1B}[2;1Hsecon"))
        #expect(!text.contains("56789"))
        #expect(text.hasSuffix("\u{1B}[2;3H\u{1B}[?25h"))
    }

    /// A resize while the alternate screen is up trims the kept primary grid the way libvterm trims its own.
    @Test func resizeOnTheAlternateScreen() {
        let screen = Self.screen("primary line\r\nxy\u{1B}[?1049halt", rows: 3, columns: 12)
        screen.resize(rows: 2, columns: 4)
        screen.write(Array("\u{1B}[?1049l".utf8))
        let text = String(decoding: screen.repaint(), as: UTF8.self)
        #expect(text.contains("prim") && !text.contains("primary") && !text.contains("alt"))
    }

    /// Lines scrolled off the top come back first, oldest first, then rows - 1 line feeds push them into the
    /// terminal's own scrollback; only the newest `scrollbackLines` are kept.
    @Test func scrollbackIsCapped() {
        let lines = (1...20).map { "line \($0)" }.joined(separator: "\r\n")
        let text = String(decoding: Self.screen(lines, rows: 3, columns: 10, scrollbackLines: 5).repaint(), as: UTF8.self)
        let kept = (13...17).map { "line \($0)\u{1B}[0m\r\n" }.joined()
        #expect(text.contains("\u{1B}[2J" + kept + "\n\n\u{1B}[1;1Hline 18"))
        #expect(!text.contains("line 12"))
    }

    /// Scrollback lines keep their attributes and are cut to the screen's width.
    @Test func scrollbackAttributesAndWidth() {
        let screen = Self.screen("\u{1B}[1;32mgreen bold line\u{1B}[0m\r\n\r\n\r\n", rows: 3, columns: 20)
        screen.resize(rows: 3, columns: 5)
        let text = String(decoding: screen.repaint(), as: UTF8.self)
        #expect(text.contains("\u{1B}[2J\u{1B}[0;1;32mgreen\u{1B}[0m\r\n\n\n"))
    }

    /// The screen grows taller: libvterm takes the newest scrollback lines back (sb_popline).
    @Test func growingTakesLinesBackFromScrollback() {
        let screen = Self.screen("one\r\ntwo\r\nthree\r\nfour", rows: 2, columns: 10)
        screen.resize(rows: 4, columns: 10)
        let text = String(decoding: screen.repaint(), as: UTF8.self)
        #expect(Self.inOrder(text, ["\u{1B}[1;1Hone", "\u{1B}[2;1Htwo", "\u{1B}[3;1Hthree", "\u{1B}[4;1Hfour"]))
        #expect(!text.contains("\r\n"))
    }

    /// Repainting a repaint changes nothing: the repaint is a complete description of the screen.
    @Test func repaintIsAFixedPoint() {
        let first = Self.screen(
            "a\r\nb\r\nc\r\n\u{1B}[7mreverse\u{1B}[0m 中\u{1B}[?1h\u{1B}[2;3r\u{1B}]2;t\u{7}\u{1B}[?1049h\u{1B}[32mx\u{1B}[?25l",
            rows: 3, columns: 12)
        let again = TerminalScreen(rows: 3, columns: 12)
        again.write(first.repaint())
        #expect(again.repaint() == first.repaint())
    }
}
