//! The authority life cycle as a pure function: given the authorities that exist and the time,
//! which transitions are due. No I/O, no keys, no clock: a driver (the server's `ca` module)
//! reads the records, calls [`plan`], applies the [`Action`]s (key generation, store writes) and
//! plans again until nothing is due.
//!
//! Per kind (root, intermediate, JWT key) the rules are:
//! - exactly one authority is active; with none (first start, or it expired, or its key is
//!   gone) a replacement is activated at once, prepared first if need be;
//! - at half of the active one's life its successor is **prepared** (created, published in the
//!   bundle, not signing);
//! - with a sixth of its life left the successor is **activated** and the active one becomes
//!   **old**, but never in the instant the successor was prepared, so that it was published
//!   before it signs;
//! - old and tainted authorities stay trusted until they expire; expired authorities that are
//!   not active are **dropped** (forgotten with their key), and nothing is dropped earlier.
//!
//! Tainting and revoking are operator decisions ([`crate::operator`]); the plan respects their
//! result: a revoked authority is never trusted, and an intermediate under a tainted or revoked
//! root neither keeps signing (it is replaced at once by one under the active root) nor is
//! activated.

use sigil_spiffe::{AuthorityKind, AuthorityState};

/// What the life cycle needs to know about one authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityStatus {
    /// Hex subject key identifier (X.509) or `kid` (JWT).
    pub id: String,
    pub kind: AuthorityKind,
    pub state: AuthorityState,
    /// The root that signed it (intermediates).
    pub issuer_id: Option<String>,
    /// Unix seconds when it was created; its life is measured from here.
    pub not_before: i64,
    /// Unix seconds when it expires.
    pub not_after: i64,
    /// Whether its private key is at hand. Only asked of prepared and active authorities: one
    /// without its key cannot sign and is replaced.
    pub key_available: bool,
}

/// One transition the driver applies, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create a new authority of `kind` in state prepared. An intermediate is signed by
    /// `issuer_id`, the active root; other kinds have none.
    Prepare {
        kind: AuthorityKind,
        issuer_id: Option<String>,
    },
    /// Prepared → active: it signs from now on.
    Activate { id: String },
    /// Active → old: it no longer signs and stays trusted until it expires.
    Retire { id: String },
    /// Forget an authority that has expired: delete its record and its private key.
    Drop { id: String },
    /// Old → tainted (operator command only): still trusted, but whatever it signed is to be
    /// replaced at once, and an intermediate under a tainted root is replaced.
    Taint { id: String },
    /// Tainted → revoked (operator command only): no longer trusted, out of the bundle.
    Revoke { id: String },
}

impl AuthorityStatus {
    /// Whether it goes into the trust bundle at `now`: roots and JWT keys (intermediates travel
    /// in SVID chains) that are not revoked and have not expired.
    pub fn is_published(&self, now: i64) -> bool {
        self.kind != AuthorityKind::X509Intermediate && self.is_trusted(now)
    }

    /// Whether relying parties trust it at `now`: not revoked and not expired.
    pub fn is_trusted(&self, now: i64) -> bool {
        self.state.is_trusted() && self.not_after > now
    }

    /// Whether half of its life has passed at `now`: its successor is prepared.
    pub fn successor_due(&self, now: i64) -> bool {
        let life = self.life();
        now.saturating_sub(self.not_before).saturating_mul(2) >= life
    }

    /// Whether at most a sixth of its life is left at `now`: its successor is activated.
    pub fn replacement_due(&self, now: i64) -> bool {
        let life = self.life();
        self.not_after.saturating_sub(now).saturating_mul(6) <= life
    }

    fn life(&self) -> i64 {
        self.not_after.saturating_sub(self.not_before).max(1)
    }

    /// Whether an active authority can still sign at `now`.
    pub(crate) fn can_sign(&self, now: i64) -> bool {
        self.key_available && self.not_after > now
    }

    /// Newest first: later `not_before`, then greater id (ids are random, so ties are rare and
    /// only need a stable answer).
    fn newer_than(&self, other: &Self) -> bool {
        (self.not_before, &self.id) > (other.not_before, &other.id)
    }
}

/// The transitions due at `now` for `authorities`, in the order to apply them. Empty when the
/// life cycle is settled. After applying them the driver plans again: one plan may enable the
/// next (a root activated in one round lets its intermediate be prepared in the next); from any
/// state the plans settle within [`MAX_ROUNDS`] rounds at one instant.
pub fn plan(authorities: &[AuthorityStatus], now: i64) -> Vec<Action> {
    let mut actions: Vec<Action> = authorities
        .iter()
        .filter(|a| a.state != AuthorityState::Active && a.not_after <= now)
        .map(|a| Action::Drop { id: a.id.clone() })
        .collect();
    let before_roots = actions.len();
    plan_kind(authorities, AuthorityKind::X509Root, now, &mut actions);
    let root_changes = actions
        .iter()
        .skip(before_roots)
        .any(|a| matches!(a, Action::Activate { .. } | Action::Retire { .. }));
    // An intermediate is planned against the root that will sign it: while the active root
    // changes, wait for the next round.
    if !root_changes {
        plan_kind(
            authorities,
            AuthorityKind::X509Intermediate,
            now,
            &mut actions,
        );
    }
    plan_kind(authorities, AuthorityKind::Jwt, now, &mut actions);
    actions
}

/// The next instant after `now` at which [`plan`] may have something new to do for
/// `authorities`: a successor due (half life), a replacement due (a sixth left), an expiry, or
/// the second after a successor was prepared (it activates once published). The driver sleeps
/// until then (bounded by its own periodic check), so short-lived authorities rotate on time.
pub fn next_transition(authorities: &[AuthorityStatus], now: i64) -> Option<i64> {
    authorities
        .iter()
        .filter(|a| a.state != AuthorityState::Revoked || a.not_after > now)
        .flat_map(|a| {
            let life = a.life();
            [
                a.not_before.saturating_add(life.saturating_add(1) / 2),
                a.not_after.saturating_sub(life / 6),
                a.not_after,
                a.not_before.saturating_add(1),
            ]
        })
        .filter(|at| *at > now)
        .min()
}

/// How many rounds of [`plan`] and apply at one instant settle any state: expired ones are
/// dropped, roots settle (prepare, activate), then intermediates under the active root (prepare,
/// activate).
pub const MAX_ROUNDS: usize = 6;

fn plan_kind(
    authorities: &[AuthorityStatus],
    kind: AuthorityKind,
    now: i64,
    actions: &mut Vec<Action>,
) {
    let of_kind = || authorities.iter().filter(move |a| a.kind == kind);
    let active = newest(of_kind().filter(|a| a.state == AuthorityState::Active));
    // Two active ones only after a crash between an activation and its retirement: the newer
    // one was meant to win.
    if let Some(current) = active {
        actions.extend(
            of_kind()
                .filter(|a| a.state == AuthorityState::Active && a.id != current.id)
                .map(|a| Action::Retire { id: a.id.clone() }),
        );
    }
    let issuer = match kind {
        AuthorityKind::X509Intermediate => match signing_root(authorities, now) {
            Some(root) => Some(root.id.clone()),
            // No root can sign yet: the roots settle first, then this kind in a later round.
            None => return,
        },
        AuthorityKind::X509Root | AuthorityKind::Jwt => None,
    };
    let successor = newest(
        of_kind()
            .filter(|a| a.state == AuthorityState::Prepared)
            .filter(|a| ready_to_activate(a, authorities, now)),
    );
    let prepare = Action::Prepare {
        kind,
        issuer_id: issuer,
    };
    match (active, successor) {
        (Some(current), _)
            if usable(current, authorities, now) && !current.replacement_due(now) =>
        {
            if successor.is_none() && current.successor_due(now) {
                actions.push(prepare);
            }
        }
        (Some(current), Some(next)) if usable(current, authorities, now) => {
            // Due for replacement, but a successor prepared this very instant has not been
            // published yet: it activates on the next tick.
            if next.not_before < now {
                actions.push(Action::Activate {
                    id: next.id.clone(),
                });
                actions.push(Action::Retire {
                    id: current.id.clone(),
                });
            }
        }
        (Some(current), Some(next)) => {
            // The active one can no longer sign: replace it at once.
            actions.push(Action::Activate {
                id: next.id.clone(),
            });
            actions.push(Action::Retire {
                id: current.id.clone(),
            });
        }
        (None, Some(next)) => actions.push(Action::Activate {
            id: next.id.clone(),
        }),
        (Some(_) | None, None) => actions.push(prepare),
    }
}

/// Whether active authority `a` may go on signing at `now`: its key is at hand, it has not
/// expired, and (an intermediate) its root is neither tainted nor revoked.
fn usable(a: &AuthorityStatus, authorities: &[AuthorityStatus], now: i64) -> bool {
    a.can_sign(now) && issuer_sound(a, authorities, now)
}

/// Whether the root that signed `a` (an intermediate) is trusted at `now` and not tainted;
/// always true for other kinds.
fn issuer_sound(a: &AuthorityStatus, authorities: &[AuthorityStatus], now: i64) -> bool {
    match a.kind {
        AuthorityKind::X509Intermediate => authorities.iter().any(|root| {
            root.kind == AuthorityKind::X509Root
                && Some(&root.id) == a.issuer_id.as_ref()
                && root.is_trusted(now)
                && root.state != AuthorityState::Tainted
        }),
        AuthorityKind::X509Root | AuthorityKind::Jwt => true,
    }
}

/// The active root that can sign intermediates at `now`, if any.
pub(crate) fn signing_root(authorities: &[AuthorityStatus], now: i64) -> Option<&AuthorityStatus> {
    newest(authorities.iter().filter(|a| {
        a.kind == AuthorityKind::X509Root && a.state == AuthorityState::Active && a.can_sign(now)
    }))
}

/// Whether prepared authority `a` may become active at `now`: its key is at hand, it has most of
/// its life ahead (a stale prepared one, say left over by another replica, is not picked), and
/// an intermediate's root is still trusted and not tainted.
pub(crate) fn ready_to_activate(
    a: &AuthorityStatus,
    authorities: &[AuthorityStatus],
    now: i64,
) -> bool {
    a.can_sign(now) && !a.successor_due(now) && issuer_sound(a, authorities, now)
}

pub(crate) fn newest<'a>(
    candidates: impl Iterator<Item = &'a AuthorityStatus>,
) -> Option<&'a AuthorityStatus> {
    candidates.fold(None, |best, a| match best {
        Some(b) if !a.newer_than(b) => Some(b),
        _ => Some(a),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const T0: i64 = 1_700_000_000;
    pub(crate) const LIFE: i64 = 600;

    /// An authority born at `born` living [`LIFE`]; intermediates are issued by `root`.
    pub(crate) fn status(
        id: &str,
        kind: AuthorityKind,
        state: AuthorityState,
        born: i64,
    ) -> AuthorityStatus {
        AuthorityStatus {
            id: id.to_owned(),
            kind,
            state,
            issuer_id: (kind == AuthorityKind::X509Intermediate).then(|| "root".to_owned()),
            not_before: born,
            not_after: born + LIFE,
            key_available: true,
        }
    }

    fn jwt(id: &str, state: AuthorityState, born: i64) -> AuthorityStatus {
        status(id, AuthorityKind::Jwt, state, born)
    }

    /// A settled world at `T0`: one long-lived active root, one intermediate and one JWT key.
    pub(crate) fn settled() -> Vec<AuthorityStatus> {
        let mut root = status("root", AuthorityKind::X509Root, AuthorityState::Active, T0);
        root.not_after = T0 + 100 * LIFE;
        vec![
            root,
            status(
                "int",
                AuthorityKind::X509Intermediate,
                AuthorityState::Active,
                T0,
            ),
            jwt("jwt", AuthorityState::Active, T0),
        ]
    }

    /// `jwts` beside a long-lived active root and intermediate, so only the JWT kind is due.
    fn jwt_world(jwts: Vec<AuthorityStatus>) -> Vec<AuthorityStatus> {
        let mut world = settled();
        for a in &mut world {
            a.not_after = T0 + 100 * LIFE;
        }
        world.retain(|a| a.kind != AuthorityKind::Jwt);
        world.extend(jwts);
        world
    }

    fn prepare(kind: AuthorityKind) -> Action {
        Action::Prepare {
            kind,
            issuer_id: (kind == AuthorityKind::X509Intermediate).then(|| "root".to_owned()),
        }
    }

    fn activate(id: &str) -> Action {
        Action::Activate { id: id.to_owned() }
    }

    fn retire(id: &str) -> Action {
        Action::Retire { id: id.to_owned() }
    }

    #[test]
    fn the_next_transition_is_the_earliest_half_life_sixth_left_or_expiry() {
        let world = settled();
        // JWT key and intermediate: born T0, life 600: half life at T0 + 300.
        assert_eq!(next_transition(&world, T0 + 1), Some(T0 + 300));
        // Then a sixth left: T0 + 500; then the expiry.
        assert_eq!(next_transition(&world, T0 + 300), Some(T0 + 500));
        assert_eq!(next_transition(&world, T0 + 500), Some(T0 + 600));
        // Nothing is due before the instant reported, something is at it.
        for now in [T0 + 1, T0 + 150, T0 + 299] {
            assert_eq!(plan(&world, now), [], "{now}");
        }
        assert_ne!(plan(&world, T0 + 300), []);
    }

    fn drop_(id: &str) -> Action {
        Action::Drop { id: id.to_owned() }
    }

    #[test]
    fn empty_store_prepares_a_root_and_a_jwt_key_but_no_intermediate_without_a_root() {
        assert_eq!(
            plan(&[], T0),
            [
                Action::Prepare {
                    kind: AuthorityKind::X509Root,
                    issuer_id: None
                },
                Action::Prepare {
                    kind: AuthorityKind::Jwt,
                    issuer_id: None
                },
            ]
        );
    }

    #[test]
    fn with_no_active_authority_a_prepared_one_activates_in_the_same_instant() {
        let world = [
            status(
                "root",
                AuthorityKind::X509Root,
                AuthorityState::Prepared,
                T0,
            ),
            jwt("jwt", AuthorityState::Prepared, T0),
        ];
        assert_eq!(plan(&world, T0), [activate("root"), activate("jwt")]);
    }

    #[test]
    fn intermediate_is_prepared_under_the_active_root() {
        let mut world = settled();
        world.retain(|a| a.kind != AuthorityKind::X509Intermediate);
        assert_eq!(plan(&world, T0), [prepare(AuthorityKind::X509Intermediate)]);
    }

    #[test]
    fn intermediates_wait_while_the_active_root_changes() {
        let mut world = settled();
        if let Some(root) = world.first_mut() {
            root.not_after = T0 + LIFE;
        }
        let mut next_root = status(
            "root2",
            AuthorityKind::X509Root,
            AuthorityState::Prepared,
            T0 + 300,
        );
        next_root.not_after = T0 + 300 + 100 * LIFE;
        world.push(next_root);
        // The intermediate is due too, but the root is being replaced in this round.
        let due = T0 + LIFE - LIFE / 6;
        assert_eq!(
            plan(&world, due),
            [
                activate("root2"),
                retire("root"),
                prepare(AuthorityKind::Jwt)
            ]
        );
    }

    #[test]
    fn nothing_is_due_before_half_life() {
        let world = settled();
        assert_eq!(plan(&world, T0), []);
        assert_eq!(plan(&world, T0 + LIFE / 2 - 1), []);
    }

    #[test]
    fn successors_are_prepared_at_half_life_and_only_once() {
        let mut world = settled();
        let half = T0 + LIFE / 2;
        assert_eq!(
            plan(&world, half),
            [
                prepare(AuthorityKind::X509Intermediate),
                prepare(AuthorityKind::Jwt)
            ]
        );
        world.push(status(
            "int2",
            AuthorityKind::X509Intermediate,
            AuthorityState::Prepared,
            half,
        ));
        world.push(jwt("jwt2", AuthorityState::Prepared, half));
        assert_eq!(plan(&world, half), []);
        assert_eq!(plan(&world, T0 + LIFE * 5 / 6 - 1), []);
    }

    #[test]
    fn successor_activates_with_a_sixth_of_life_left_and_the_active_one_retires() {
        let world = jwt_world(vec![
            jwt("jwt", AuthorityState::Active, T0),
            jwt("jwt2", AuthorityState::Prepared, T0 + LIFE / 2),
        ]);
        assert_eq!(plan(&world, T0 + LIFE - LIFE / 6 - 1), []);
        let due = T0 + LIFE - LIFE / 6;
        assert_eq!(plan(&world, due), [activate("jwt2"), retire("jwt")]);
    }

    #[test]
    fn successor_prepared_in_this_instant_activates_only_on_the_next_tick() {
        let due = T0 + LIFE - LIFE / 6;
        let mut world = jwt_world(vec![jwt("jwt", AuthorityState::Active, T0)]);
        // Nothing was prepared at half life (the server was down): prepare now...
        assert_eq!(plan(&world, due), [prepare(AuthorityKind::Jwt)]);
        world.push(jwt("jwt2", AuthorityState::Prepared, due));
        // ...publish it, and activate it one tick later.
        assert_eq!(plan(&world, due), []);
        assert_eq!(plan(&world, due + 1), [activate("jwt2"), retire("jwt")]);
    }

    #[test]
    fn expired_active_authority_is_replaced_at_once() {
        let end = T0 + LIFE;
        let mut world = jwt_world(vec![jwt("jwt", AuthorityState::Active, T0)]);
        assert_eq!(plan(&world, end), [prepare(AuthorityKind::Jwt)]);
        world.push(jwt("jwt2", AuthorityState::Prepared, end));
        assert_eq!(plan(&world, end), [activate("jwt2"), retire("jwt")]);
    }

    #[test]
    fn active_authority_whose_key_is_gone_is_replaced_at_once() {
        let mut world = jwt_world(vec![jwt("jwt", AuthorityState::Active, T0)]);
        if let Some(a) = world.iter_mut().find(|a| a.id == "jwt") {
            a.key_available = false;
        }
        assert_eq!(plan(&world, T0 + 1), [prepare(AuthorityKind::Jwt)]);
        world.push(jwt("jwt2", AuthorityState::Prepared, T0 + 1));
        assert_eq!(plan(&world, T0 + 1), [activate("jwt2"), retire("jwt")]);
    }

    #[test]
    fn prepared_authority_without_its_key_is_not_activated() {
        let mut lost = jwt("jwt2", AuthorityState::Prepared, T0 + LIFE / 2);
        lost.key_available = false;
        let world = jwt_world(vec![jwt("jwt", AuthorityState::Active, T0), lost]);
        assert_eq!(plan(&world, T0 + LIFE / 2), [prepare(AuthorityKind::Jwt)]);
    }

    #[test]
    fn of_two_active_authorities_the_newer_stays_active() {
        // A crash between activating jwt2 and retiring jwt.
        let world = jwt_world(vec![
            jwt("jwt2", AuthorityState::Active, T0 + 10),
            jwt("jwt", AuthorityState::Active, T0),
        ]);
        assert_eq!(plan(&world, T0 + 20), [retire("jwt")]);
    }

    #[test]
    fn old_authorities_stay_until_they_expire_then_are_dropped() {
        let mut world = settled();
        world.push(jwt("older", AuthorityState::Old, T0 - LIFE / 2));
        world.push(jwt("tainted", AuthorityState::Tainted, T0 - LIFE / 2));
        world.push(jwt("revoked", AuthorityState::Revoked, T0 - LIFE / 3));
        let expiry = T0 + LIFE / 2;
        assert_eq!(plan(&world, expiry - 1), []);
        let actions = plan(&world, expiry);
        assert!(actions.contains(&drop_("older")), "{actions:?}");
        assert!(actions.contains(&drop_("tainted")), "{actions:?}");
        assert!(
            !actions.contains(&drop_("revoked")),
            "revoked is kept until it expires"
        );
        assert!(plan(&world, T0 + LIFE * 2 / 3).contains(&drop_("revoked")));
    }

    #[test]
    fn prepared_intermediate_under_a_revoked_root_is_never_activated() {
        let mut world = settled();
        let mut revoked = status("gone", AuthorityKind::X509Root, AuthorityState::Revoked, T0);
        revoked.not_after = T0 + 100 * LIFE;
        world.push(revoked);
        let mut orphan = status(
            "orphan",
            AuthorityKind::X509Intermediate,
            AuthorityState::Prepared,
            T0 + LIFE / 2,
        );
        orphan.issuer_id = Some("gone".to_owned());
        world.push(orphan);
        let actions = plan(&world, T0 + LIFE / 2);
        assert!(
            actions.contains(&prepare(AuthorityKind::X509Intermediate)),
            "{actions:?}"
        );
        assert!(
            !plan(&world, T0 + LIFE - 1).contains(&activate("orphan")),
            "never activated"
        );
    }

    #[test]
    fn stale_prepared_authority_is_not_picked_and_a_fresh_one_is_prepared() {
        // Left over from another replica: prepared long ago, past its own half life.
        let world = jwt_world(vec![
            jwt("jwt", AuthorityState::Active, T0),
            jwt("stale", AuthorityState::Prepared, T0 - LIFE / 4),
        ]);
        assert_eq!(plan(&world, T0 + LIFE / 2), [prepare(AuthorityKind::Jwt)]);
    }

    #[test]
    fn publication_and_trust_follow_state_kind_and_expiry() {
        let root = status("r", AuthorityKind::X509Root, AuthorityState::Prepared, T0);
        let int = status(
            "i",
            AuthorityKind::X509Intermediate,
            AuthorityState::Active,
            T0,
        );
        let revoked = jwt("j", AuthorityState::Revoked, T0);
        let tainted = jwt("t", AuthorityState::Tainted, T0);
        assert!(root.is_published(T0));
        assert!(!root.is_published(T0 + LIFE), "expired");
        assert!(!int.is_published(T0), "intermediates travel in chains");
        assert!(int.is_trusted(T0));
        assert!(!revoked.is_published(T0));
        assert!(!revoked.is_trusted(T0));
        assert!(tainted.is_published(T0));
    }

    #[test]
    fn thresholds_are_half_life_and_a_sixth_left() {
        let a = jwt("j", AuthorityState::Active, T0);
        assert!(!a.successor_due(T0 + 299));
        assert!(a.successor_due(T0 + 300));
        assert!(!a.replacement_due(T0 + 499));
        assert!(a.replacement_due(T0 + 500));
    }
}
