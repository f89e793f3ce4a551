import CVTerm

/// A PTY session's screen, kept by libvterm from the program's output, so a browser that (re)attaches gets a
/// repaint of what the user saw rather than a raw byte replay, which garbles full-screen programs.
///
/// Not Sendable: owned by one PTY session (an actor) and used only from it.
public final class TerminalScreen {
    public private(set) var rows: Int
    public private(set) var columns: Int

    private let vterm: OpaquePointer
    private let screen: OpaquePointer
    private let state: OpaquePointer
    /// libvterm keeps the pointer, not a copy: it must live as long as `vterm`.
    private let callbacks: UnsafeMutablePointer<VTermScreenCallbacks>

    private var modes = TerminalModeTracker()
    private var scrollback: TerminalScrollback
    private var cursorVisible = true
    private var cursorBlink = true
    private var cursorShape = VTERM_PROP_CURSORSHAPE_BLOCK
    private var reverseVideo = false
    private var alternateScreen = false
    /// The primary grid and cursor as they were when the program switched to the alternate screen: libvterm
    /// 0.1.4 can only read the active buffer, and the primary one does not change until the program switches back.
    private var primary: (grid: [[VTermScreenCell]], cursor: VTermPos)?
    /// The start of a UTF-8 character the last write cut off; see `input`.
    private var splitCharacter: [UInt8] = []
    /// Scratch for `write`: where the alternate-screen switches end in the bytes being written.
    private var switches: [Int] = []

    public init(rows: Int, columns: Int, scrollbackLines: Int = 1000) {
        self.rows = max(rows, 1)
        self.columns = max(columns, 1)
        vterm = vterm_new(Int32(self.rows), Int32(self.columns))
        vterm_set_utf8(vterm, 1)
        screen = vterm_obtain_screen(vterm)
        state = vterm_obtain_state(vterm)
        scrollback = TerminalScrollback(capacity: scrollbackLines)
        callbacks = .allocate(capacity: 1)
        callbacks.initialize(to: VTermScreenCallbacks())
        callbacks.pointee.settermprop = { property, value, user in
            guard let user, let value else { return 0 }
            Unmanaged<TerminalScreen>.fromOpaque(user).takeUnretainedValue().set(property, value.pointee)
            return 1
        }
        callbacks.pointee.sb_pushline = { columns, cells, user in
            guard let user, let cells else { return 0 }
            let screen = Unmanaged<TerminalScreen>.fromOpaque(user).takeUnretainedValue()
            screen.scrollback.push(UnsafeBufferPointer(start: cells, count: Int(columns)))
            return 1
        }
        callbacks.pointee.sb_popline = { columns, cells, user in
            guard let user, let cells else { return 0 }
            let screen = Unmanaged<TerminalScreen>.fromOpaque(user).takeUnretainedValue()
            guard let line = screen.scrollback.popNewest() else { return 0 }
            let blank = screen.blankCell()
            for column in 0..<Int(columns) { cells[column] = column < line.count ? line[column] : blank }
            return 1
        }
        vterm_screen_set_callbacks(screen, callbacks, Unmanaged.passUnretained(self).toOpaque())
        vterm_screen_enable_altscreen(screen, 1)
        vterm_screen_reset(screen, 1)
    }

    deinit {
        vterm_free(vterm)
        callbacks.deinitialize(count: 1)
        callbacks.deallocate()
    }

    /// PTY output, split anywhere: libvterm and the mode tracker both keep partial sequences for the next call.
    public func write(_ bytes: UnsafeRawBufferPointer) {
        guard !bytes.isEmpty else { return }
        switches.removeAll(keepingCapacity: true)
        modes.feed(bytes, alternateScreenSwitches: &switches)
        var start = 0
        for end in switches {
            // Everything up to the switch's final byte, so libvterm still shows the primary buffer.
            input(UnsafeRawBufferPointer(rebasing: bytes[start..<end]))
            start = end
            if !alternateScreen { primary = (grid(), cursor()) }
        }
        input(UnsafeRawBufferPointer(rebasing: bytes[start...]))
    }

    public func write(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { write($0) }
    }

    public func resize(rows: Int, columns: Int) {
        let rows = max(rows, 1)
        let columns = max(columns, 1)
        guard rows != self.rows || columns != self.columns else { return }
        (self.rows, self.columns) = (rows, columns)
        vterm_set_size(vterm, Int32(rows), Int32(columns))
        modes.resized()
        if var saved = primary {
            // libvterm resizes the inactive primary buffer by keeping its top-left corner; so does this copy.
            let blank = blankCell()
            saved.grid = (0..<rows).map { row in
                let line = row < saved.grid.count ? saved.grid[row] : []
                return (0..<columns).map { $0 < line.count ? line[$0] : blank }
            }
            saved.cursor.row = min(saved.cursor.row, Int32(rows - 1))
            saved.cursor.col = min(saved.cursor.col, Int32(columns - 1))
            primary = saved
        }
    }

    /// Bytes that, written to a fresh xterm-compatible terminal of this size, show what the user saw: the
    /// scrollback (into the terminal's own), the grid with its attributes, the alternate screen, the cursor, the
    /// title and the input modes the program set.
    public func repaint() -> [UInt8] {
        var out = TerminalRepaintWriter()
        out.resetPen()
        out.append("\u{1B}[H\u{1B}[2J")
        if let title = modes.title { out.title(String(title.prefix(1024))) }

        // Printed from the top and scrolled off with line feeds: after the last line, rows - 1 more push every
        // one of them into the terminal's scrollback and leave a blank screen for the grid.
        for index in 0..<scrollback.count {
            out.cells(scrollback[index], columns: columns)
            out.resetPen()
            out.append("\r\n")
        }
        if scrollback.count > 0 { out.append(String(repeating: "\n", count: rows - 1)) }

        if alternateScreen, let primary {
            paint(primary.grid, into: &out)
            out.resetPen()
            // 1049 saves this cursor; the program's switch back restores it. The explicit clear is for terminals
            // without an alternate screen: they then show the alternate grid, which is what the user sees.
            out.moveCursor(row: Int(primary.cursor.row), column: Int(primary.cursor.col))
            out.append("\u{1B}[?1049h\u{1B}[H\u{1B}[2J")
        }
        paint(grid(), into: &out)
        out.resetPen()
        appendModes(to: &out)
        return out.bytes
    }

    private func paint(_ grid: [[VTermScreenCell]], into out: inout TerminalRepaintWriter) {
        for (row, cells) in grid.enumerated() { out.row(cells, at: row, columns: columns) }
    }

    /// Modes, scroll region, cursor and pen last: DECSTBM homes the cursor, and the pen must outlive the grid.
    private func appendModes(to out: inout TerminalRepaintWriter) {
        out.privateMode(1, modes.cursorKeysApplication)
        out.append(modes.keypadApplication ? "\u{1B}=" : "\u{1B}>")
        // Only when set: some emulators (pyte) apply DECSCNM by flipping every cell, even to switch it off.
        if reverseVideo { out.privateMode(5, true) }
        out.privateMode(7, modes.autowrap)
        out.csi(4, final: modes.insertMode ? "h" : "l")
        out.privateMode(2004, modes.bracketedPaste)
        out.privateMode(1004, modes.focusEvents)
        for tracking in [1000, 1002, 1003] where tracking != modes.mouseTracking.rawValue { out.privateMode(tracking, false) }
        if modes.mouseTracking != .none { out.privateMode(modes.mouseTracking.rawValue, true) }
        out.privateMode(1006, modes.mouseSGR)
        if cursorShape != VTERM_PROP_CURSORSHAPE_BLOCK || !cursorBlink {
            out.csi(cursorShape * 2 - (cursorBlink ? 1 : 0), final: " ")
            out.append("q")  // DECSCUSR: CSI Ps SP q
        }

        var top = 0
        if let region = modes.scrollRegion {
            let bottom = min(region.bottom, rows)
            if region.top >= 1 && region.top < bottom && (region.top > 1 || bottom < rows) {
                out.csi(region.top, bottom, final: "r")
                top = region.top - 1
            }
        }
        let cursor = cursor()
        if modes.originMode {
            out.privateMode(6, true)
            out.moveCursor(row: max(Int(cursor.row) - top, 0), column: Int(cursor.col))
        } else {
            out.moveCursor(row: Int(cursor.row), column: Int(cursor.col))
        }
        out.setPen(TerminalPen(state: state))
        out.privateMode(25, cursorVisible)
    }

    /// To libvterm, keeping back a UTF-8 character cut by the end of `bytes`: libvterm 0.1.4 decodes each write on
    /// its own and would show the two halves as two U+FFFD.
    private func input(_ bytes: UnsafeRawBufferPointer) {
        var bytes = bytes[...]
        if !splitCharacter.isEmpty {
            let needed = Self.utf8Length(splitCharacter[0]) - splitCharacter.count
            let taken = bytes.prefix(needed).prefix { $0 & 0xC0 == 0x80 }.count
            splitCharacter += bytes.prefix(taken)
            bytes = bytes.dropFirst(taken)
            if taken < needed && bytes.isEmpty { return }  // still cut: wait for more
            _ = splitCharacter.withUnsafeBytes { vterm_input_write(vterm, $0.baseAddress, $0.count) }
            splitCharacter.removeAll(keepingCapacity: true)
        }
        var end = bytes.endIndex
        for index in stride(from: bytes.endIndex - 1, through: max(bytes.startIndex, bytes.endIndex - 3), by: -1) {
            let byte = bytes[index]
            if byte & 0xC0 == 0x80 { continue }  // a continuation byte: look further back for its lead
            if byte >= 0xC0 && Self.utf8Length(byte) > bytes.endIndex - index { end = index }
            break
        }
        splitCharacter += bytes[end...]
        let whole = UnsafeRawBufferPointer(rebasing: bytes[..<end])
        if let base = whole.baseAddress, !whole.isEmpty {
            vterm_input_write(vterm, base.assumingMemoryBound(to: CChar.self), whole.count)
        }
    }

    private static func utf8Length(_ lead: UInt8) -> Int {
        switch lead {
        case 0xF0...: 4
        case 0xE0...: 3
        case 0xC0...: 2
        default: 1
        }
    }

    private func set(_ property: VTermProp, _ value: VTermValue) {
        switch property {
        case VTERM_PROP_CURSORVISIBLE: cursorVisible = value.boolean != 0
        case VTERM_PROP_CURSORBLINK: cursorBlink = value.boolean != 0
        case VTERM_PROP_CURSORSHAPE: cursorShape = Int(value.number)
        case VTERM_PROP_REVERSE: reverseVideo = value.boolean != 0
        case VTERM_PROP_ALTSCREEN:
            alternateScreen = value.boolean != 0
            if !alternateScreen { primary = nil }
        default: break
        }
    }

    private func cursor() -> VTermPos {
        var position = VTermPos()
        vterm_state_get_cursorpos(state, &position)
        return position
    }

    /// The active buffer, row by row.
    private func grid() -> [[VTermScreenCell]] {
        (0..<rows).map { row in
            (0..<columns).map { column in
                var cell = VTermScreenCell()
                vterm_screen_get_cell(screen, VTermPos(row: Int32(row), col: Int32(column)), &cell)
                return cell
            }
        }
    }

    /// An empty cell with the default pen, as libvterm makes them.
    private func blankCell() -> VTermScreenCell {
        var cell = VTermScreenCell()
        cell.width = 1
        vterm_state_get_default_colors(state, &cell.fg, &cell.bg)
        cell.fg.type |= UInt8(VTERM_COLOR_DEFAULT_FG.rawValue)
        cell.bg.type |= UInt8(VTERM_COLOR_DEFAULT_BG.rawValue)
        return cell
    }
}
