import Tunnel

/// Step two: may this requester open this app? A pure decision on the resolved app and who asks.
///
/// - `public`: anyone, signed in or not.
/// - `authenticated`: anyone signed in.
/// - `owner`: the workspace's owner, and site owners.
/// Path apps share the dashboard's origin, so an app there could read the user's dashboard session with
/// script: they are the workspace owner's alone unless the deployment explicitly allows sharing them
/// (`--dangerous-allow-path-app-sharing`), and then site owners are bound by the sharing level too.
public enum AppAccess {
    public enum Decision: Sendable, Equatable {
        case allowed
        /// Nobody is signed in and the app is not public: send the browser to sign in.
        case signInRequired
        /// Signed in, but not allowed; the reason is shown.
        case forbidden(String)
    }

    public static func decide(_ app: ResolvedApp, requester: AppRequester?, pathAppSharing: Bool) -> Decision {
        let isOwner = requester?.userID == app.ownerID
        if app.request.accessMethod == .path, !pathAppSharing {
            if isOwner { return .allowed }
            return requester == nil ? .signInRequired : .forbidden("Path apps can only be opened by the workspace's owner.")
        }
        switch app.sharingLevel {
        case .public:
            return .allowed
        case .authenticated:
            return requester == nil ? .signInRequired : .allowed
        case .owner:
            guard let requester else { return .signInRequired }
            if isOwner { return .allowed }
            // With path-app sharing on, a path app is just another origin-sharing page: no owner override there.
            if requester.isSiteOwner, app.request.accessMethod == .subdomain { return .allowed }
            return .forbidden("This app is shared with its workspace's owner only.")
        }
    }
}
