// Temporary stand-in until the libvterm screen model lands (replaced at merge).
public final class TerminalScreen {
    public private(set) var rows: Int
    public private(set) var columns: Int
    private var bytes: [UInt8] = []
    public init(rows: Int, columns: Int, scrollbackLines: Int = 1000) { (self.rows, self.columns) = (rows, columns) }
    public func write(_ bytes: UnsafeRawBufferPointer) { self.bytes += bytes; if self.bytes.count > 65536 { self.bytes.removeFirst(self.bytes.count - 65536) } }
    public func write(_ bytes: [UInt8]) { bytes.withUnsafeBytes { write($0) } }
    public func resize(rows: Int, columns: Int) { (self.rows, self.columns) = (rows, columns) }
    public func repaint() -> [UInt8] { bytes }
}
