//! Where a VM belongs: its group (and so its policy), its image, and
//! whether it is its image's template. The operator says so in the
//! configuration (`[[inventory]]`); a guest's `Register` never does, so a
//! guest cannot pick a laxer policy or another image's shared verdicts.
//!
//! Verdicts by file identity are shared within an image only from its
//! template: the template's verdicts are written where its clones read,
//! and a clone's own verdicts stay its own. A guest that lies about a
//! file's identity so fools only itself.

use crate::config::InventoryEntry;

/// Where one VM belongs (all empty: the default policy, no image).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// The policy group.
    pub group: String,
    /// The image whose template's verdicts it may read.
    pub image: String,
    /// True for the image's template VM.
    pub template: bool,
}

/// The operator's inventory.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    entries: Vec<InventoryEntry>,
}

/// True when `name` matches `pattern`, where `*` stands for any run of
/// characters.
fn matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

impl Inventory {
    /// The inventory of the configuration's entries.
    pub fn new(entries: &[InventoryEntry]) -> Self {
        Inventory {
            entries: entries.to_vec(),
        }
    }

    /// The VM the hypervisor's vsock `cid` belongs to: `Ok(Some(vm))` when
    /// an entry names it, `Ok(None)` when no entry has a CID (vsock shims
    /// are then not authenticated), `Err(())` for a CID no entry has while
    /// others do.
    #[allow(clippy::result_unit_err)]
    pub fn vm_of_cid(&self, cid: u32) -> Result<Option<String>, ()> {
        if let Some(e) = self.entries.iter().find(|e| e.cid == Some(cid)) {
            return Ok(Some(e.vm.clone()));
        }
        if self.entries.iter().any(|e| e.cid.is_some()) {
            Err(())
        } else {
            Ok(None)
        }
    }

    /// The CID the inventory binds `vm_id` to, if any.
    pub fn cid_of(&self, vm_id: &str) -> Option<u32> {
        self.entries
            .iter()
            .find(|e| e.vm == vm_id && e.cid.is_some())
            .and_then(|e| e.cid)
    }

    /// True when any entry gives a CID (vsock shims are then known by it).
    pub fn knows_cids(&self) -> bool {
        self.entries.iter().any(|e| e.cid.is_some())
    }

    /// Where `vm_id` belongs: the first entry that names it (exactly, or by
    /// a `*` pattern). A template must be named exactly.
    pub fn place(&self, vm_id: &str) -> Placement {
        self.entries
            .iter()
            .find(|e| matches(&e.vm, vm_id))
            .map(|e| Placement {
                group: e.group.clone(),
                image: e.image.clone(),
                template: e.template && e.vm == vm_id,
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(vm: &str, group: &str, image: &str, template: bool) -> InventoryEntry {
        InventoryEntry {
            vm: vm.into(),
            group: group.into(),
            image: image.into(),
            template,
            cid: None,
        }
    }

    #[test]
    fn a_cid_names_its_vm_and_unknown_cids_are_refused_once_any_is_known() {
        let none = Inventory::new(&[entry("vm-1", "", "", false)]);
        assert_eq!(none.vm_of_cid(7), Ok(None), "no CIDs: claims stand");
        assert!(!none.knows_cids());
        let mut a = entry("vm-1", "", "", false);
        a.cid = Some(7);
        let inv = Inventory::new(&[a, entry("vm-*", "", "", false)]);
        assert_eq!(inv.vm_of_cid(7), Ok(Some("vm-1".into())));
        assert_eq!(inv.vm_of_cid(8), Err(()), "an unknown CID");
        assert!(inv.knows_cids());
        assert_eq!(inv.cid_of("vm-1"), Some(7));
        assert_eq!(inv.cid_of("vm-2"), None);
    }

    #[test]
    fn patterns_match_whole_names() {
        assert!(matches("web-*", "web-01"));
        assert!(matches("*-01", "web-01"));
        assert!(matches("w*b*1", "web-01"));
        assert!(matches("vm-1", "vm-1"));
        assert!(!matches("vm-1", "vm-10"));
        assert!(!matches("web-*", "db-01"));
        assert!(!matches("*-01x", "web-01"));
        assert!(matches("*", "anything"));
        assert!(!matches("a*a", "a"));
    }

    #[test]
    fn the_first_entry_places_a_vm_and_templates_are_named_exactly() {
        let inv = Inventory::new(&[
            entry("gold-1", "", "img", true),
            entry("clone-*", "desktops", "img", false),
            entry("db-*", "servers", "", true),
        ]);
        assert_eq!(
            inv.place("gold-1"),
            Placement {
                group: String::new(),
                image: "img".into(),
                template: true
            }
        );
        let clone = inv.place("clone-0042");
        assert_eq!(
            (clone.group.as_str(), clone.image.as_str(), clone.template),
            ("desktops", "img", false)
        );
        assert!(!inv.place("db-1").template, "a pattern makes no template");
        assert_eq!(inv.place("stranger"), Placement::default());
    }
}
