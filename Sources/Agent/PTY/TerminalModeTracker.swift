/// The input and output modes a program sets that libvterm 0.1.4 keeps but cannot report back (no getter for
/// DECCKM, keypad, bracketed paste, mouse encoding, autowrap, insert mode, origin mode or the scroll region), and
/// the window title (libvterm 0.1.4 loses an OSC split across two writes).
///
/// A small incremental escape-sequence parser over the same PTY output libvterm sees. It keeps its state between
/// `feed` calls, so a sequence split across PTY reads is handled. It only recognises the sequences that change
/// the modes below; everything else (text, other CSI, OSC/DCS strings) is skipped. It also reports where a program
/// switches to the alternate screen, so the primary grid can be read just before libvterm switches buffers.
struct TerminalModeTracker {
    /// Mouse tracking as xterm.js knows it (DECSET 1000 / 1002 / 1003); the last one set wins, as in xterm.
    enum MouseTracking: Int, Equatable { case none = 0, click = 1000, drag = 1002, motion = 1003 }

    var cursorKeysApplication = false  // DECCKM, ?1
    var keypadApplication = false  // ESC = / ESC >
    var bracketedPaste = false  // ?2004
    var mouseTracking = MouseTracking.none
    var mouseSGR = false  // ?1006
    var focusEvents = false  // ?1004
    var autowrap = true  // DECAWM, ?7
    var originMode = false  // DECOM, ?6
    var insertMode = false  // IRM, CSI 4 h
    /// OSC 0 or 2; nil until a program sets one.
    var title: String?
    /// DECSTBM as the program sent it, 1-based and inclusive; nil is the whole screen.
    var scrollRegion: ScrollRegion?

    struct ScrollRegion: Equatable {
        var top: Int
        /// `Int.max` when the program left it out: the last row, whatever the size.
        var bottom: Int
    }

    private enum State { case ground, escape, escapeIntermediate, csi, string, stringEscape }
    private var state = State.ground
    // The CSI being parsed. Parameters past `maxParameters` are dropped: no mode sequence needs that many.
    private static let maxParameters = 16
    private var prefix: UInt8 = 0
    private var intermediate: UInt8 = 0
    private var parameters: [Int] = []
    private var current: Int?
    // The OSC being read, when it is one (not DCS, APC, ...); longer ones are cut, as no title needs more.
    private static let maxOSC = 4096
    private var readingOSC = false
    private var osc: [UInt8] = []

    init() { parameters.reserveCapacity(Self.maxParameters) }

    /// Parses `bytes`; appends to `alternateScreenSwitches` the index of the final byte of each DECSET 1047/1049.
    mutating func feed(_ bytes: UnsafeRawBufferPointer, alternateScreenSwitches: inout [Int]) {
        var index = 0
        let count = bytes.count
        while index < count {
            let byte = bytes[index]
            switch state {
            case .ground:
                // The hot path: text. Only ESC leaves the ground state.
                if byte == 0x1B { state = .escape }
            case .escape:
                escape(byte)
            case .escapeIntermediate:
                // ESC ( 0 and friends (charset designation): one more byte ends it.
                if byte >= 0x30 || byte == 0x1B { state = byte == 0x1B ? .escape : .ground }
            case .csi:
                if csi(byte) { alternateScreenSwitches.append(index) }
            case .string:
                if byte == 0x07 {
                    endString()
                } else if byte == 0x1B {
                    state = .stringEscape
                } else if readingOSC && osc.count < Self.maxOSC {
                    osc.append(byte)
                }
            case .stringEscape:
                // ESC \ ends the string; any other ESC sequence aborts it and is parsed as usual.
                if byte == 0x5C {
                    endString()
                } else {
                    readingOSC = false
                    state = .escape
                    escape(byte)
                }
            }
            index += 1
        }
    }

    private mutating func escape(_ byte: UInt8) {
        state = .ground
        switch byte {
        case UInt8(ascii: "["):
            state = .csi
            prefix = 0
            intermediate = 0
            parameters.removeAll(keepingCapacity: true)
            current = nil
        case UInt8(ascii: "]"):
            state = .string
            readingOSC = true
            osc.removeAll(keepingCapacity: true)
        case UInt8(ascii: "P"), UInt8(ascii: "X"), UInt8(ascii: "^"), UInt8(ascii: "_"):
            state = .string  // DCS, SOS, PM, APC: skipped up to BEL or ST
            readingOSC = false
        case UInt8(ascii: "="): keypadApplication = true
        case UInt8(ascii: ">"): keypadApplication = false
        case UInt8(ascii: "c"):  // RIS: everything but the title, as in xterm
            let title = title
            self = Self()
            self.title = title
        case 0x1B: state = .escape
        case 0x20...0x2F: state = .escapeIntermediate
        default: break
        }
    }

    /// OSC 0 (icon name and title) and OSC 2 (title) set the title.
    private mutating func endString() {
        state = .ground
        guard readingOSC else { return }
        readingOSC = false
        guard let separator = osc.firstIndex(of: UInt8(ascii: ";")) else { return }
        let code = osc[..<separator]
        if code.elementsEqual("0".utf8) || code.elementsEqual("2".utf8) {
            title = String(decoding: osc[(separator + 1)...], as: UTF8.self)
        }
    }

    /// One byte of a CSI; true when it completed a switch to the alternate screen.
    private mutating func csi(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"):
            current = min((current ?? 0) * 10 + Int(byte - 0x30), 99_999)
        case UInt8(ascii: ";"), UInt8(ascii: ":"):
            endParameter()
        case 0x3C...0x3F:
            prefix = byte  // < = > ?
        case 0x20...0x2F:
            intermediate = byte
        case 0x40...0x7E:
            endParameter()
            state = .ground
            return dispatch(final: byte)
        case 0x1B:
            state = .escape  // an ESC cancels the sequence and starts another
        case 0x18, 0x1A:
            state = .ground  // CAN, SUB
        default:
            break  // other C0 controls execute inside a CSI without ending it
        }
        return false
    }

    private mutating func endParameter() {
        if parameters.count < Self.maxParameters { parameters.append(current ?? 0) }
        current = nil
    }

    private mutating func dispatch(final: UInt8) -> Bool {
        switch (prefix, intermediate, final) {
        case (UInt8(ascii: "?"), 0, UInt8(ascii: "h")), (UInt8(ascii: "?"), 0, UInt8(ascii: "l")):
            let on = final == UInt8(ascii: "h")
            var switchesToAlternate = false
            for mode in parameters {
                setPrivateMode(mode, on)
                if on && (mode == 1047 || mode == 1049) { switchesToAlternate = true }
            }
            return switchesToAlternate
        case (0, 0, UInt8(ascii: "h")), (0, 0, UInt8(ascii: "l")):
            if parameters.contains(4) { insertMode = final == UInt8(ascii: "h") }
        case (0, 0, UInt8(ascii: "r")):
            let top = max(parameters.first ?? 0, 1)
            let bottom = parameters.count > 1 ? parameters[1] : 0
            if bottom == 0 {
                scrollRegion = top == 1 ? nil : ScrollRegion(top: top, bottom: .max)
            } else if top < bottom {
                scrollRegion = ScrollRegion(top: top, bottom: bottom)
            }
        case (0, UInt8(ascii: "!"), UInt8(ascii: "p")):
            softReset()
        default:
            break
        }
        return false
    }

    private mutating func setPrivateMode(_ mode: Int, _ on: Bool) {
        switch mode {
        case 1: cursorKeysApplication = on
        case 6: originMode = on
        case 7: autowrap = on
        case 1000, 1002, 1003:
            if on {
                mouseTracking = MouseTracking(rawValue: mode) ?? .none
            } else if mouseTracking.rawValue == mode {
                mouseTracking = .none
            }
        case 1004: focusEvents = on
        case 1006: mouseSGR = on
        case 2004: bracketedPaste = on
        default: break
        }
    }

    /// DECSTR, as xterm.js does it: the modes go back to their defaults, the scroll region to the whole screen.
    private mutating func softReset() {
        cursorKeysApplication = false
        keypadApplication = false
        autowrap = true
        originMode = false
        insertMode = false
        scrollRegion = nil
    }

    /// A resize makes the scroll region the whole screen again (xterm.js and libvterm both do).
    mutating func resized() {
        scrollRegion = nil
    }
}
