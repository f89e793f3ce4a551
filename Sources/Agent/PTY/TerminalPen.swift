import CVTerm

/// The graphic rendition of a cell (or of libvterm's current pen), as SGR can set it.
///
/// libvterm 0.1.4 has no conceal attribute, so concealed text is kept and repainted visible.
struct TerminalPen: Equatable {
    enum Colour: Equatable {
        case `default`
        /// A palette index. libvterm 0.1.4 keeps SGR 30-37, 90-97 and 38;5;N all as indices (31 and 38;5;1 are
        /// both index 1), so 0-15 are written back the way terminfo's setaf writes them: 3x, 9x, then 38;5;N.
        case indexed(UInt8)
        case rgb(UInt8, UInt8, UInt8)

        /// `defaultFlag` is VTERM_COLOR_DEFAULT_FG or _BG: libvterm marks the default colours with it rather than
        /// a distinct type, and their RGB value is libvterm's own guess of the terminal's colours, not ours to send.
        init(_ colour: VTermColor, defaultFlag: VTermColorType) {
            if UInt32(colour.type) & defaultFlag.rawValue != 0 {
                self = .default
            } else if UInt32(colour.type) & VTERM_COLOR_TYPE_MASK.rawValue == VTERM_COLOR_INDEXED.rawValue {
                self = .indexed(colour.indexed.idx)
            } else {
                self = .rgb(colour.rgb.red, colour.rgb.green, colour.rgb.blue)
            }
        }
    }

    var bold = false
    var italic = false
    var blink = false
    var reverse = false
    var strike = false
    /// VTERM_UNDERLINE_*: 0 off, 1 single, 2 double, 3 curly.
    var underline: UInt8 = 0
    var foreground = Colour.default
    var background = Colour.default

    static let plain = TerminalPen()

    init() {}

    init(_ cell: VTermScreenCell) {
        bold = cell.attrs.bold != 0
        italic = cell.attrs.italic != 0
        blink = cell.attrs.blink != 0
        reverse = cell.attrs.reverse != 0
        strike = cell.attrs.strike != 0
        underline = UInt8(cell.attrs.underline)
        foreground = Colour(cell.fg, defaultFlag: VTERM_COLOR_DEFAULT_FG)
        background = Colour(cell.bg, defaultFlag: VTERM_COLOR_DEFAULT_BG)
    }

    /// libvterm's current pen: what the program's next text will be drawn with.
    init(state: OpaquePointer) {
        func value(_ attr: VTermAttr) -> VTermValue {
            var value = VTermValue()
            vterm_state_get_penattr(state, attr, &value)
            return value
        }
        bold = value(VTERM_ATTR_BOLD).boolean != 0
        italic = value(VTERM_ATTR_ITALIC).boolean != 0
        blink = value(VTERM_ATTR_BLINK).boolean != 0
        reverse = value(VTERM_ATTR_REVERSE).boolean != 0
        strike = value(VTERM_ATTR_STRIKE).boolean != 0
        underline = UInt8(clamping: value(VTERM_ATTR_UNDERLINE).number)
        foreground = Colour(value(VTERM_ATTR_FOREGROUND).color, defaultFlag: VTERM_COLOR_DEFAULT_FG)
        background = Colour(value(VTERM_ATTR_BACKGROUND).color, defaultFlag: VTERM_COLOR_DEFAULT_BG)
    }

    /// `ESC [ 0 ; … m`: always from a reset, so the result does not depend on the pen before it.
    func appendSGR(to out: inout [UInt8]) {
        out.append(contentsOf: [0x1B, UInt8(ascii: "["), UInt8(ascii: "0")])
        func parameter(_ value: Int) {
            out.append(UInt8(ascii: ";"))
            out.appendDecimal(value)
        }
        if bold { parameter(1) }
        if italic { parameter(3) }
        switch underline {
        case 0: break
        case 2: parameter(21)  // double, as libvterm itself reads it
        case 3: parameter(4)  // curly as single: "4:3" would confuse terminals that do not know colons
        default: parameter(4)
        }
        if blink { parameter(5) }
        if reverse { parameter(7) }
        if strike { parameter(9) }
        for (colour, base) in [(foreground, 30), (background, 40)] {
            switch colour {
            case .default: break
            case .indexed(let index) where index < 8: parameter(base + Int(index))
            case .indexed(let index) where index < 16: parameter(base + 60 + Int(index) - 8)
            case .indexed(let index):
                parameter(base + 8)
                parameter(5)
                parameter(Int(index))
            case .rgb(let red, let green, let blue):
                parameter(base + 8)
                parameter(2)
                parameter(Int(red))
                parameter(Int(green))
                parameter(Int(blue))
            }
        }
        out.append(UInt8(ascii: "m"))
    }
}

extension VTermScreenCell {
    /// The right half of a wide character: libvterm marks it with chars[0] == (uint32_t)-1.
    var isWideContinuation: Bool { chars.0 == UInt32.max }

    /// Empty (never written or erased) with the default pen: what a cleared terminal already shows there.
    /// Checked field by field rather than through `TerminalPen`: it runs for every cell of every scrolled line.
    var isDefaultBlank: Bool {
        (chars.0 == 0 || chars.0 == 0x20) && attrs.bold == 0 && attrs.underline == 0 && attrs.italic == 0
            && attrs.blink == 0 && attrs.reverse == 0 && attrs.strike == 0
            && UInt32(fg.type) & VTERM_COLOR_DEFAULT_FG.rawValue != 0
            && UInt32(bg.type) & VTERM_COLOR_DEFAULT_BG.rawValue != 0
    }

    /// The cell's characters as UTF-8: a base character and up to five combining ones; a space when empty.
    func appendUTF8(to out: inout [UInt8]) {
        guard chars.0 != 0 else {
            out.append(0x20)
            return
        }
        withUnsafeBytes(of: chars) { raw in
            for value in raw.bindMemory(to: UInt32.self) {
                guard value != 0, let scalar = Unicode.Scalar(value) else { break }
                UTF8.encode(scalar) { out.append($0) }
            }
        }
    }
}

extension [UInt8] {
    mutating func appendDecimal(_ value: Int) {
        if value >= 10 { appendDecimal(value / 10) }
        append(UInt8(ascii: "0") + UInt8(value % 10))
    }
}
