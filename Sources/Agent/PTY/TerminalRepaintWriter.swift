import CVTerm

/// Builds a repaint's bytes: cells with the fewest SGR changes, rows placed with CUP, mode sequences.
struct TerminalRepaintWriter {
    private(set) var bytes: [UInt8] = []
    /// The pen the terminal has now; nil until the first reset.
    private var pen: TerminalPen?

    init() {
        bytes.reserveCapacity(16 * 1024)
    }

    mutating func append(_ text: String) {
        bytes.append(contentsOf: text.utf8)
    }

    /// `ESC [ p1 ; p2 … final`, with an optional private prefix such as "?".
    mutating func csi(_ parameters: Int..., prefix: String = "", final: Character) {
        append("\u{1B}[" + prefix)
        for (index, parameter) in parameters.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ";")) }
            bytes.appendDecimal(parameter)
        }
        append(String(final))
    }

    /// DECSET / DECRST of one private mode.
    mutating func privateMode(_ mode: Int, _ on: Bool) {
        csi(mode, prefix: "?", final: on ? "h" : "l")
    }

    /// CUP to a 0-based row and column.
    mutating func moveCursor(row: Int, column: Int) {
        csi(row + 1, column + 1, final: "H")
    }

    mutating func resetPen() {
        append("\u{1B}[0m")
        pen = .plain
    }

    mutating func setPen(_ newPen: TerminalPen) {
        guard newPen != pen else { return }
        newPen.appendSGR(to: &bytes)
        pen = newPen
    }

    /// Writes `cells` from the cursor on, up to the last one a cleared terminal would not already show, never
    /// past `columns`. Returns false (and writes nothing) when there is nothing to show.
    @discardableResult
    mutating func cells(_ cells: [VTermScreenCell], columns: Int) -> Bool {
        var end = min(cells.count, columns)
        while end > 0 && cells[end - 1].isDefaultBlank { end -= 1 }
        guard end > 0 else { return false }
        for column in 0..<end {
            let cell = cells[column]
            if cell.isWideContinuation { continue }
            // A wide character cut by the right edge (a scrollback line from a wider screen) is left out.
            if cell.width > 1 && column + 1 >= columns { break }
            setPen(TerminalPen(cell))
            cell.appendUTF8(to: &bytes)
        }
        return true
    }

    /// One row of a grid at its place: CUP, then its cells. A blank row is skipped (the screen was cleared).
    mutating func row(_ cells: [VTermScreenCell], at row: Int, columns: Int) {
        guard cells.prefix(columns).contains(where: { !$0.isDefaultBlank }) else { return }
        moveCursor(row: row, column: 0)
        self.cells(cells, columns: columns)
    }

    /// OSC 2 with the title's control characters left out, so it cannot end the string early.
    mutating func title(_ title: String) {
        append("\u{1B}]2;")
        bytes.append(contentsOf: title.utf8.filter { $0 >= 0x20 && $0 != 0x7F })
        bytes.append(0x07)
    }
}
