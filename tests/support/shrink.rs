//! Delta debugging (ddmin): the smallest sub-list of a failing input that still fails.

/// Removes chunks, then single items, from `input` while `fails` keeps returning true. `fails`
/// must be true for `input` itself. At most `budget` calls of `fails` are made.
pub fn minimize<T: Clone>(
    input: &[T],
    budget: usize,
    mut fails: impl FnMut(&[T]) -> bool,
) -> Vec<T> {
    let mut current = input.to_vec();
    let mut calls = 0;
    let mut parts = 2;
    while current.len() >= 2 && calls < budget {
        let chunk = current.len().div_ceil(parts);
        let mut reduced = false;
        for start in (0..current.len()).step_by(chunk) {
            if calls >= budget {
                break;
            }
            let end = (start + chunk).min(current.len());
            let candidate: Vec<T> = current[..start]
                .iter()
                .chain(&current[end..])
                .cloned()
                .collect();
            calls += 1;
            if fails(&candidate) {
                current = candidate;
                parts = (parts - 1).max(2);
                reduced = true;
                break;
            }
        }
        if !reduced {
            if chunk == 1 {
                break;
            }
            parts = (parts * 2).min(current.len());
        }
    }
    current
}
