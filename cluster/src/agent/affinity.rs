//! Core pinning and `--cores` lists.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use super::error::AgentError;

static AVAILABLE_CORES: OnceLock<Vec<usize>> = OnceLock::new();

/// The cores this process may run on, sorted, read once per process and cached.
///
/// `core_affinity::get_core_ids` answers for the *calling* thread, so after a thread has been
/// pinned it would answer with that one core. Call this early in `main`, before any pinning,
/// so that the cached list is the process's; [`pin_current_thread`] and
/// [`AgentRunner::start`](super::AgentRunner::start) call it too.
pub fn available_cores() -> Vec<usize> {
    AVAILABLE_CORES
        .get_or_init(|| {
            let mut cores: Vec<usize> = core_affinity::get_core_ids()
                .unwrap_or_default()
                .into_iter()
                .map(|core| core.id)
                .collect();
            cores.sort_unstable();
            cores.dedup();
            cores
        })
        .clone()
}

/// Checks that `core` is one of [`available_cores`].
///
/// # Errors
///
/// [`AgentError::UnknownCore`] naming the core and the cores that are available.
pub fn check_core(core: usize) -> Result<(), AgentError> {
    let available = available_cores();
    if available.binary_search(&core).is_ok() {
        Ok(())
    } else {
        Err(AgentError::UnknownCore { core, available })
    }
}

/// Pins the calling thread to `core`.
///
/// # Errors
///
/// [`AgentError::UnknownCore`] if `core` is not available to this process;
/// [`AgentError::PinFailed`] if the operating system refused.
pub fn pin_current_thread(core: usize) -> Result<(), AgentError> {
    check_core(core)?;
    if core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        tracing::debug!(core, thread = ?std::thread::current().name(), "pinned thread");
        Ok(())
    } else {
        Err(AgentError::PinFailed {
            thread: std::thread::current()
                .name()
                .unwrap_or("<unnamed>")
                .to_owned(),
            core,
        })
    }
}

/// A list of cores as given to `--cores`: comma-separated core numbers and inclusive ranges,
/// such as `0,1,4-7`. Order is kept (agents take cores in order) and a core may appear more
/// than once (two agents sharing a core). At most [`CoreList::MAX_LEN`] entries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CoreList(Vec<usize>);

impl CoreList {
    /// The most cores a list may name, ranges expanded.
    pub const MAX_LEN: usize = 1024;

    /// The cores, in the order given.
    #[must_use]
    pub fn as_slice(&self) -> &[usize] {
        &self.0
    }

    /// The number of cores in the list.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the list is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The core for the `index`-th agent, if the list is long enough.
    #[must_use]
    pub fn get(&self, index: usize) -> Option<usize> {
        self.0.get(index).copied()
    }

    /// Checks every core against [`available_cores`].
    ///
    /// # Errors
    ///
    /// [`AgentError::UnknownCore`] for the first core that is not available.
    pub fn check(&self) -> Result<(), AgentError> {
        self.0.iter().try_for_each(|&core| check_core(core))
    }
}

impl From<Vec<usize>> for CoreList {
    fn from(cores: Vec<usize>) -> Self {
        Self(cores)
    }
}

impl fmt::Display for CoreList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, core) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{core}")?;
        }
        Ok(())
    }
}

impl FromStr for CoreList {
    type Err = AgentError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| AgentError::InvalidCoreList {
            input: input.to_owned(),
            reason,
        };
        let core = |text: &str| {
            text.trim()
                .parse::<usize>()
                .map_err(|_| err(format!("'{}' is not a core number", text.trim())))
        };
        let mut cores = Vec::new();
        if input.trim().is_empty() {
            return Err(err("the list is empty".to_owned()));
        }
        for item in input.split(',') {
            let (first, last) = match item.split_once('-') {
                Some((first, last)) => (core(first)?, core(last)?),
                None => {
                    let single = core(item)?;
                    (single, single)
                }
            };
            if first > last {
                return Err(err(format!("range {first}-{last} runs backwards")));
            }
            if last - first >= Self::MAX_LEN - cores.len() {
                return Err(err(format!("more than {} cores", Self::MAX_LEN)));
            }
            cores.extend(first..=last);
        }
        Ok(Self(cores))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_ranges() {
        let list: CoreList = "0,1,2-3".parse().unwrap();
        assert_eq!(list.as_slice(), [0, 1, 2, 3]);
        assert_eq!(list.to_string(), "0,1,2,3");
        let list: CoreList = " 5 , 1-1,1 ".parse().unwrap();
        assert_eq!(list.as_slice(), [5, 1, 1]);
        assert_eq!(list.get(0), Some(5));
        assert_eq!(list.get(3), None);
    }

    #[test]
    fn rejects_bad_lists_with_a_reason() {
        for (input, reason) in [
            ("", "the list is empty"),
            ("0,,1", "'' is not a core number"),
            ("a", "'a' is not a core number"),
            ("-1", "'' is not a core number"),
            ("3-1", "range 3-1 runs backwards"),
            ("0-5000", "more than 1024 cores"),
            ("0-18446744073709551615", "more than 1024 cores"),
        ] {
            match input.parse::<CoreList>() {
                Err(AgentError::InvalidCoreList {
                    input: i,
                    reason: r,
                }) => {
                    assert_eq!((i.as_str(), r.as_str()), (input, reason));
                }
                other => panic!("{input:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn available_cores_are_cached_and_checkable() {
        let cores = available_cores();
        assert!(!cores.is_empty());
        assert_eq!(available_cores(), cores);
        assert!(check_core(cores[0]).is_ok());
        let CoreList(list) = CoreList::from(cores.clone());
        assert!(CoreList(list).check().is_ok());
        assert!(matches!(
            CoreList::from(vec![usize::MAX]).check(),
            Err(AgentError::UnknownCore {
                core: usize::MAX,
                ..
            })
        ));
    }

    #[test]
    fn pins_a_thread_to_an_available_core() {
        let core = *available_cores().last().unwrap();
        std::thread::spawn(move || {
            pin_current_thread(core).unwrap();
            let now: Vec<usize> = core_affinity::get_core_ids()
                .unwrap()
                .into_iter()
                .map(|c| c.id)
                .collect();
            assert_eq!(now, [core]);
        })
        .join()
        .unwrap();
        // The cached list is still the process's, not the pinned thread's.
        assert!(available_cores().contains(&core));
    }

    #[test]
    fn refuses_an_unknown_core() {
        let bad = available_cores().last().unwrap() + 1_000;
        let err = pin_current_thread(bad).unwrap_err();
        assert!(
            matches!(err, AgentError::UnknownCore { core, .. } if core == bad),
            "{err}"
        );
        assert!(err.to_string().contains("not available"), "{err}");
    }
}
