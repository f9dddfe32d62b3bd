//! The records the DNS door answers from: the registry's state as a [`Source`].

use super::split;
use crate::dns::{Endpoint, HostKind, Lookup, Source};
use crate::registry::state::Instance;
use crate::registry::Shared;

impl Source for Shared {
    /// The pickable instances of `service` (healthy, not draining, carrying `tag`), under the lock.
    fn lookup(&self, service: &str, tag: Option<&str>, out: &mut Vec<Endpoint>) -> Lookup {
        let state = self.state();
        let Some((slots, _)) = state.service_view_ignore_case(service) else {
            return Lookup::Unknown;
        };
        let tagged = |i: &&Instance| {
            tag.is_none_or(|t| i.spec.tags.iter().any(|x| x.eq_ignore_ascii_case(t)))
        };
        out.extend(
            slots
                .iter()
                .filter(|i| i.pickable())
                .filter(tagged)
                .map(|i| {
                    let (host, port) = split(&i.addr);
                    Endpoint {
                        host: HostKind::parse(host),
                        port,
                        weight: i.spec.weight,
                    }
                }),
        );
        Lookup::Found
    }
}
