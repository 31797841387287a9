//! Role name -> role class (speaker / listener / ignored): trimmed, case-insensitive, configurable.

/// How a peer's role counts in the room totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoleClass {
    /// Counted in `speaker_count`.
    Speaker,
    /// Counted in `listener_count` (also every role nobody configured).
    Listener,
    /// Never counted (recorders, bots).
    Ignored,
}

impl RoleClass {
    /// The value sent as `p_role_class`.
    pub fn as_str(self) -> &'static str {
        match self {
            RoleClass::Speaker => "speaker",
            RoleClass::Listener => "listener",
            RoleClass::Ignored => "ignored",
        }
    }
}

/// Default `HMS_SPEAKER_ROLES` (design §3).
pub const DEFAULT_SPEAKER_ROLES: &str = "host,speaker,moderator,co-host,broadcaster,co-broadcaster";
/// Default `HMS_IGNORED_ROLES` (design §3).
pub const DEFAULT_IGNORED_ROLES: &str = "__internal_recorder,beam";

/// The configured role lists, already normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roles {
    speakers: Vec<String>,
    ignored: Vec<String>,
}

impl Default for Roles {
    fn default() -> Self {
        Roles::from_lists(DEFAULT_SPEAKER_ROLES, DEFAULT_IGNORED_ROLES)
    }
}

/// Role names are compared trimmed and ASCII-lower-cased: 100ms docs show both `host` and
/// `Host`. Role names in 100ms templates are ASCII in practice; other characters compare
/// exactly (Unicode case tables would cost ~18 KB of Wasm for no real case).
fn normalise(role: &str) -> String {
    role.trim().to_ascii_lowercase()
}

/// Splits a comma list, dropping empty entries (a trailing comma is a common typo).
pub fn parse_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(normalise)
        .filter(|r| !r.is_empty())
        .collect()
}

impl Roles {
    /// Builds the lists from comma-separated text.
    pub fn from_lists(speakers: &str, ignored: &str) -> Self {
        Roles {
            speakers: parse_list(speakers),
            ignored: parse_list(ignored),
        }
    }

    /// Classifies a role name. Ignored wins over speaker when a name is in both lists, so a
    /// recorder can never inflate the counts; unknown roles are listeners.
    pub fn classify(&self, role: &str) -> RoleClass {
        let role = normalise(role);
        if self.ignored.contains(&role) {
            RoleClass::Ignored
        } else if self.speakers.contains(&role) {
            RoleClass::Speaker
        } else {
            RoleClass::Listener
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_design() {
        let roles = Roles::default();
        for speaker in [
            "host",
            "speaker",
            "moderator",
            "co-host",
            "broadcaster",
            "co-broadcaster",
        ] {
            assert_eq!(roles.classify(speaker), RoleClass::Speaker, "{speaker}");
        }
        for ignored in ["__internal_recorder", "beam"] {
            assert_eq!(roles.classify(ignored), RoleClass::Ignored, "{ignored}");
        }
        for listener in ["listener", "viewer-realtime", "hls-viewer", "guest", ""] {
            assert_eq!(roles.classify(listener), RoleClass::Listener, "{listener}");
        }
    }

    #[test]
    fn case_and_whitespace_do_not_matter() {
        let roles = Roles::default();
        assert_eq!(roles.classify("  Host "), RoleClass::Speaker);
        assert_eq!(roles.classify("SPEAKER"), RoleClass::Speaker);
        assert_eq!(roles.classify("Beam"), RoleClass::Ignored);
        let custom = Roles::from_lists(" Stage , ,Ünïcode-Host,", "BOT");
        assert_eq!(custom.classify("stage"), RoleClass::Speaker);
        assert_eq!(custom.classify("Ünïcode-HOST"), RoleClass::Speaker);
        assert_eq!(
            custom.classify("üNÏCODE-host"),
            RoleClass::Listener,
            "non-ASCII letters compare exactly"
        );
        assert_eq!(custom.classify("bot"), RoleClass::Ignored);
        assert_eq!(custom.classify("host"), RoleClass::Listener);
    }

    #[test]
    fn ignored_wins_over_speaker() {
        let roles = Roles::from_lists("host,beam", "beam");
        assert_eq!(roles.classify("beam"), RoleClass::Ignored);
    }

    #[test]
    fn empty_lists_make_everyone_a_listener() {
        let roles = Roles::from_lists("", "");
        assert_eq!(roles.classify("host"), RoleClass::Listener);
        assert_eq!(parse_list(" , ,"), Vec::<String>::new());
    }

    #[test]
    fn class_names_match_the_rpc_contract() {
        assert_eq!(RoleClass::Speaker.as_str(), "speaker");
        assert_eq!(RoleClass::Listener.as_str(), "listener");
        assert_eq!(RoleClass::Ignored.as_str(), "ignored");
    }
}
