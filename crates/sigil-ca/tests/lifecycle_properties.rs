//! Property tests of the authority life cycle: a simulated driver applies [`plan`] on a fake clock
//! over several lifetimes of every kind, with random tick spacing, lost keys and crashes between
//! actions, and checks the life cycle's promises at every instant.

#![cfg(test)]

use std::collections::HashMap;

use proptest::prelude::*;
use sigil_ca::lifecycle::MAX_ROUNDS;
use sigil_ca::operator::{Command, command};
use sigil_ca::{Action, AuthorityStatus, plan};
use sigil_spiffe::{AuthorityKind, AuthorityState};

const T0: i64 = 1_700_000_000;

/// Lifetimes of the authorities the simulated driver creates.
#[derive(Debug, Clone, Copy)]
struct Lifetimes {
    root: i64,
    intermediate: i64,
    jwt: i64,
}

/// Disturbances the world may suffer between ticks.
#[derive(Debug, Clone, Copy)]
struct Faults {
    /// Per tick, chance in 1000 that the key of an active authority is lost.
    lose_key_per_mille: u64,
    /// Per tick, chance in 1000 that the driver crashes after applying part of a plan.
    crash_per_mille: u64,
}

const NO_FAULTS: Faults = Faults {
    lose_key_per_mille: 0,
    crash_per_mille: 0,
};

/// Operator commands the world may receive between ticks.
#[derive(Debug, Clone, Copy)]
struct Operator {
    /// Per tick, chance in 1000 of tainting an old authority of a random kind.
    taint_per_mille: u64,
    /// Per tick, chance in 1000 of revoking a tainted authority.
    revoke_per_mille: u64,
}

const NO_OPERATOR: Operator = Operator {
    taint_per_mille: 0,
    revoke_per_mille: 0,
};

/// A credential issued in the simulation: the authority a relying party must trust to verify it
/// (the root above the intermediate for X509-SVIDs, the key for JWT-SVIDs) and its expiry.
#[derive(Debug, Clone)]
struct Issued {
    anchor: String,
    not_after: i64,
}

/// A small deterministic generator so one proptest seed drives thousands of ticks.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// The store, key manager and bundle publisher of a driver, in memory.
struct World {
    lifetimes: Lifetimes,
    authorities: Vec<AuthorityStatus>,
    next_id: u64,
    /// Id → the first instant it was in a published bundle.
    published: HashMap<String, i64>,
    /// Activations made while no active authority of the kind could sign.
    forced_activations: u64,
    bootstrapped: bool,
    /// Every X509-SVID and JWT-SVID issued, one of each per settled tick.
    issued: Vec<Issued>,
}

impl World {
    fn new(lifetimes: Lifetimes) -> Self {
        Self {
            lifetimes,
            authorities: Vec::new(),
            next_id: 0,
            published: HashMap::new(),
            forced_activations: 0,
            bootstrapped: false,
            issued: Vec::new(),
        }
    }

    fn find(&self, id: &str) -> &AuthorityStatus {
        self.authorities
            .iter()
            .find(|a| a.id == id)
            .unwrap_or_else(|| panic!("plan names unknown authority `{id}`"))
    }

    fn set_state(&mut self, id: &str, from: AuthorityState, to: AuthorityState) {
        assert!(
            from.can_become(to),
            "{from} -> {to} is not a life-cycle step"
        );
        let a = self.authorities.iter_mut().find(|a| a.id == id).unwrap();
        assert_eq!(a.state, from, "`{id}` moved from {} not {from}", a.state);
        a.state = to;
    }

    fn apply(&mut self, action: &Action, now: i64) {
        match action {
            Action::Prepare { kind, issuer_id } => {
                self.next_id += 1;
                let ttl = match kind {
                    AuthorityKind::X509Root => self.lifetimes.root,
                    AuthorityKind::X509Intermediate => self.lifetimes.intermediate,
                    AuthorityKind::Jwt => self.lifetimes.jwt,
                };
                let mut not_after = now + ttl;
                if *kind == AuthorityKind::X509Intermediate {
                    let issuer = self.find(issuer_id.as_deref().expect("intermediate issuer"));
                    assert_eq!(issuer.kind, AuthorityKind::X509Root);
                    assert_eq!(
                        issuer.state,
                        AuthorityState::Active,
                        "signed by the active root"
                    );
                    assert!(issuer.not_after > now && issuer.key_available);
                    not_after = not_after.min(issuer.not_after);
                } else {
                    assert_eq!(*issuer_id, None);
                }
                self.authorities.push(AuthorityStatus {
                    id: format!("{}-{}", kind.as_str(), self.next_id),
                    kind: *kind,
                    state: AuthorityState::Prepared,
                    issuer_id: issuer_id.clone(),
                    not_before: now,
                    not_after,
                    key_available: true,
                });
            }
            Action::Activate { id } => {
                let next = self.find(id).clone();
                // An intermediate under a tainted root must stop signing at once (it travels in
                // chains, so its replacement needs no time in the bundle).
                let under_tainted_root = |a: &AuthorityStatus| {
                    a.issuer_id.as_deref().is_some_and(|root| {
                        self.authorities
                            .iter()
                            .any(|r| r.id == root && r.state == AuthorityState::Tainted)
                    })
                };
                let current_can_sign = self.authorities.iter().any(|a| {
                    a.kind == next.kind
                        && a.state == AuthorityState::Active
                        && a.key_available
                        && a.not_after > now
                        && !under_tainted_root(a)
                });
                if current_can_sign {
                    // A planned replacement: the successor was prepared at an earlier instant.
                    assert!(
                        next.not_before < now,
                        "`{id}` activated the instant it was prepared"
                    );
                } else if self.bootstrapped {
                    self.forced_activations += 1;
                }
                self.set_state(id, AuthorityState::Prepared, AuthorityState::Active);
            }
            Action::Retire { id } => {
                let current = self.find(id).clone();
                let newer_active = self.authorities.iter().any(|a| {
                    a.kind == current.kind
                        && a.state == AuthorityState::Active
                        && a.id != current.id
                });
                assert!(newer_active, "`{id}` retired with no active successor");
                self.set_state(id, AuthorityState::Active, AuthorityState::Old);
            }
            Action::Drop { id } => {
                let gone = self.find(id).clone();
                assert_ne!(gone.state, AuthorityState::Active, "active `{id}` dropped");
                assert!(
                    gone.not_after <= now,
                    "`{id}` dropped at {now} before it expired at {}",
                    gone.not_after
                );
                self.authorities.retain(|a| a.id != *id);
            }
            // Operator commands: the plan itself never taints or revokes.
            Action::Taint { id } => {
                self.set_state(id, AuthorityState::Old, AuthorityState::Tainted)
            }
            Action::Revoke { id } => {
                self.set_state(id, AuthorityState::Tainted, AuthorityState::Revoked);
            }
        }
    }

    /// One tick of the driver at `now`: plan and apply until settled (or crash after
    /// `crash_after` actions), then publish the bundle.
    fn tick(&mut self, now: i64, crash_after: Option<usize>) {
        let mut applied = 0;
        for _ in 0..MAX_ROUNDS {
            let actions = plan(&self.authorities, now);
            if actions.is_empty() {
                break;
            }
            for action in &actions {
                if crash_after == Some(applied) {
                    return;
                }
                self.apply(action, now);
                applied += 1;
            }
        }
        assert_eq!(
            plan(&self.authorities, now),
            [],
            "not settled after {MAX_ROUNDS} rounds at {now}"
        );
        self.bootstrapped = true;
        for a in self.authorities.iter().filter(|a| a.is_published(now)) {
            self.published.entry(a.id.clone()).or_insert(now);
        }
        self.check_settled(now);
        self.issue(now);
        self.check_issued_verify(now);
    }

    /// Issues one X509-SVID from the active intermediate and one JWT-SVID from the active JWT
    /// key, each for a quarter of its issuer's life and never past the issuer's expiry (as the
    /// real authorities clamp).
    fn issue(&mut self, now: i64) {
        let active = |kind| {
            self.authorities
                .iter()
                .find(|a| a.kind == kind && a.state == AuthorityState::Active)
                .unwrap()
                .clone()
        };
        let inter = active(AuthorityKind::X509Intermediate);
        let root = inter.issuer_id.clone().unwrap();
        self.issued.push(Issued {
            anchor: root,
            not_after: (now + self.lifetimes.intermediate / 4).min(inter.not_after),
        });
        let jwt = active(AuthorityKind::Jwt);
        self.issued.push(Issued {
            anchor: jwt.id.clone(),
            not_after: (now + self.lifetimes.jwt / 4).min(jwt.not_after),
        });
        self.issued.retain(|c| c.not_after > now);
    }

    /// At every settled instant, every unexpired credential verifies against the published
    /// bundle: its anchor is in it, unless an operator revoked that anchor on purpose.
    fn check_issued_verify(&self, now: i64) {
        for c in self.issued.iter().filter(|c| c.not_after > now) {
            match self.authorities.iter().find(|a| a.id == c.anchor) {
                Some(a) if a.state == AuthorityState::Revoked => {}
                Some(a) => assert!(
                    a.is_published(now),
                    "a credential valid until {} chains to `{}` ({}), unpublished at {now}",
                    c.not_after,
                    a.id,
                    a.state
                ),
                None => panic!(
                    "a credential valid until {} chains to `{}`, dropped by {now}",
                    c.not_after, c.anchor
                ),
            }
        }
    }

    /// An operator command on a random authority of the right state, carried out if accepted.
    fn operate(&mut self, rng: &mut XorShift, operator: Operator, now: i64) {
        let pick = |rng: &mut XorShift, state: AuthorityState, authorities: &[AuthorityStatus]| {
            let candidates: Vec<String> = authorities
                .iter()
                .filter(|a| a.state == state)
                .map(|a| a.id.clone())
                .collect();
            (!candidates.is_empty()).then(|| {
                candidates[usize::try_from(rng.below(candidates.len() as u64)).unwrap()].clone()
            })
        };
        let mut commands = Vec::new();
        if rng.below(1000) < operator.taint_per_mille
            && let Some(id) = pick(rng, AuthorityState::Old, &self.authorities)
        {
            commands.push(Command::Taint { id });
        }
        if rng.below(1000) < operator.revoke_per_mille
            && let Some(id) = pick(rng, AuthorityState::Tainted, &self.authorities)
        {
            commands.push(Command::Revoke { id });
        }
        for cmd in commands {
            let actions = command(&self.authorities, &cmd, now)
                .unwrap_or_else(|e| panic!("{cmd:?} refused at {now}: {e}"));
            for action in &actions {
                self.apply(action, now);
            }
        }
    }

    /// What holds after every settled tick.
    fn check_settled(&self, now: i64) {
        for kind in AuthorityKind::ALL {
            let active: Vec<&AuthorityStatus> = self
                .authorities
                .iter()
                .filter(|a| a.kind == kind && a.state == AuthorityState::Active)
                .collect();
            assert_eq!(active.len(), 1, "{kind} at {now}: {:?}", self.authorities);
            let active = active[0];
            assert!(active.not_after > now, "active {kind} expired at {now}");
            assert!(active.key_available, "active {kind} has no key at {now}");
            if kind == AuthorityKind::X509Intermediate {
                let issuer = self.find(active.issuer_id.as_deref().unwrap());
                assert!(
                    issuer.is_trusted(now),
                    "intermediate chains to a trusted root"
                );
                assert_ne!(
                    issuer.state,
                    AuthorityState::Tainted,
                    "the active intermediate chains to a tainted root at {now}"
                );
                assert!(
                    issuer.not_after >= active.not_after,
                    "root outlives intermediate"
                );
            } else {
                assert!(
                    self.published.get(&active.id).is_some_and(|at| *at <= now),
                    "active {kind} is in the bundle"
                );
            }
        }
    }
}

fn lifetimes() -> impl Strategy<Value = Lifetimes> {
    (600_i64..=6_000)
        .prop_flat_map(|root| (Just(root), 60_i64..=root, 60_i64..=6_000))
        .prop_map(|(root, intermediate, jwt)| Lifetimes {
            root,
            intermediate,
            jwt,
        })
}

/// Runs the world from an empty store for `span` seconds with ticks at most `max_step` apart;
/// returns it for the caller's checks.
fn run(lifetimes: Lifetimes, span: i64, seed: u64, max_step: i64, faults: Faults) -> World {
    run_with(lifetimes, span, seed, max_step, faults, NO_OPERATOR)
}

/// [`run`] with operator commands between ticks.
fn run_with(
    lifetimes: Lifetimes,
    span: i64,
    seed: u64,
    max_step: i64,
    faults: Faults,
    operator: Operator,
) -> World {
    let mut world = World::new(lifetimes);
    let mut rng = XorShift(seed | 1);
    let mut now = T0;
    let end = T0 + span;
    while now < end {
        if rng.below(1000) < faults.lose_key_per_mille {
            let victim = rng.below(3);
            let kind = AuthorityKind::ALL[usize::try_from(victim).unwrap()];
            // Roots are excluded: the server refuses to start without its root key rather than
            // replace the trust anchor silently.
            if kind != AuthorityKind::X509Root {
                for a in world.authorities.iter_mut() {
                    if a.kind == kind && a.state == AuthorityState::Active {
                        a.key_available = false;
                    }
                }
            }
        }
        if world.bootstrapped {
            world.operate(&mut rng, operator, now);
        }
        let crash = (rng.below(1000) < faults.crash_per_mille)
            .then(|| usize::try_from(rng.below(4)).unwrap());
        world.tick(now, crash);
        if crash.is_some() {
            // The restarted driver settles at the same instant.
            world.tick(now, None);
        }
        now += 1 + i64::try_from(rng.below(u64::try_from(max_step).unwrap())).unwrap();
    }
    world
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// With ticks much closer than the shortest life, after bootstrap nothing is ever replaced in
    /// a hurry: every successor is prepared, published on an earlier tick, then activated; there
    /// is always exactly one active, unexpired authority per kind; nothing trusted is dropped
    /// before it expires; and the retained history stays bounded.
    #[test]
    fn dense_ticks_rotate_every_kind_in_time_and_publish_before_activation(
        lifetimes in lifetimes(),
        seed in any::<u64>(),
    ) {
        let shortest = lifetimes.intermediate.min(lifetimes.root / 6).min(lifetimes.jwt);
        let max_step = (shortest / 12).max(1);
        let world = run(lifetimes, 3 * lifetimes.root, seed, max_step, NO_FAULTS);
        prop_assert_eq!(world.forced_activations, 0);
        for kind in AuthorityKind::ALL {
            let kept = world.authorities.iter().filter(|a| a.kind == kind).count();
            prop_assert!(kept <= 4, "{} {:?} kept", kept, kind);
        }
        // Every authority ever activated (roots and JWT keys) was published before.
        for a in &world.authorities {
            if a.state != AuthorityState::Prepared && a.kind != AuthorityKind::X509Intermediate {
                prop_assert!(world.published.contains_key(&a.id));
            }
        }
        // Several generations of intermediates and JWT keys happened.
        prop_assert!(world.next_id >= 6, "only {} authorities created", world.next_id);
    }

    /// With arbitrary gaps (the server down for longer than a life), lost keys and crashes
    /// between two actions of a plan, every settled instant still has exactly one usable active
    /// authority per kind, every transition is a life-cycle step, planned activations never use
    /// an authority prepared in the same instant, and nothing trusted is dropped before expiry.
    #[test]
    fn gaps_lost_keys_and_crashes_never_break_the_invariants(
        lifetimes in lifetimes(),
        seed in any::<u64>(),
        gap_factor in 1_i64..=3,
        lose_key_per_mille in 0_u64..=50,
        crash_per_mille in 0_u64..=100,
    ) {
        let max_step = lifetimes.intermediate.min(lifetimes.jwt) * gap_factor / 2;
        let world = run(
            lifetimes,
            3 * lifetimes.root,
            seed,
            max_step.max(1),
            Faults { lose_key_per_mille, crash_per_mille },
        );
        prop_assert!(world.authorities.len() <= 24, "{} kept", world.authorities.len());
    }

    /// Operators tainting old authorities and revoking tainted ones at random: the life cycle
    /// keeps one usable active authority per kind, never signs under a tainted root, and every
    /// unexpired credential not chained to a revoked authority still verifies.
    #[test]
    fn taints_and_revocations_keep_every_other_credential_verifiable(
        lifetimes in lifetimes(),
        seed in any::<u64>(),
        taint_per_mille in 0_u64..=200,
        revoke_per_mille in 0_u64..=200,
    ) {
        let shortest = lifetimes.intermediate.min(lifetimes.root / 6).min(lifetimes.jwt);
        let max_step = (shortest / 12).max(1);
        let world = run_with(
            lifetimes,
            3 * lifetimes.root,
            seed,
            max_step,
            NO_FAULTS,
            Operator { taint_per_mille, revoke_per_mille },
        );
        prop_assert!(world.next_id >= 6, "only {} authorities created", world.next_id);
    }
}

#[test]
fn bootstrap_settles_in_one_tick_with_every_kind_active_and_published() {
    let mut world = World::new(Lifetimes {
        root: 6_000,
        intermediate: 600,
        jwt: 600,
    });
    world.tick(T0, None);
    assert_eq!(world.authorities.len(), 3);
    assert_eq!(world.published.len(), 2, "root and JWT key");
}

#[test]
fn simulated_week_with_one_day_authorities_keeps_only_a_few_records() {
    // The defaults: root a year, intermediate and JWT key a day; the driver ticks every 10 s.
    let world = run(
        Lifetimes {
            root: 365 * 86_400,
            intermediate: 86_400,
            jwt: 86_400,
        },
        7 * 86_400,
        7,
        10,
        NO_FAULTS,
    );
    assert_eq!(world.forced_activations, 0);
    assert!(world.authorities.len() <= 8, "{:?}", world.authorities);
}
