/// Logger metadata keys of the agent, dotted snake_case (STYLE.md "Logging and metrics").
enum LogKeys {
    static let appSlug = "app.slug"
    static let appHealth = "app.health"
    static let appHealthDetail = "app.health.detail"
}
