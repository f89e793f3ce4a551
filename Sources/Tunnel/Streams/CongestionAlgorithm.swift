/// Which congestion controller a connection runs (placeholder until CUBIC lands).
public enum CongestionAlgorithm: String, Sendable, CaseIterable {
    case newReno = "newreno"

    public func makeController(limits: CongestionLimits) -> any CongestionController {
        switch self {
        case .newReno: NewReno(limits: limits)
        }
    }
}
