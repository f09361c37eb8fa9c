//! Heapsort for the few places that sort at configure time or while parsing.
//!
//! Why not `sort_unstable`: core's pattern-defeating quicksort, with its
//! sorting networks, is about 4 KB of code in a module for each element type
//! sorted; this is a few hundred bytes, still O(n log n) for any input (a
//! hostile JSON object with thousands of members), and never recurses.

/// Sorts `v` in place (not stable).
pub fn heapsort<T: Ord>(v: &mut [T]) {
    let n = v.len();
    for root in (0..n / 2).rev() {
        sift_down(v, root, n);
    }
    for end in (1..n).rev() {
        v.swap(0, end);
        sift_down(v, 0, end);
    }
}

/// Moves `v[root]` down until the heap `v[..end]` is ordered below it.
fn sift_down<T: Ord>(v: &mut [T], mut root: usize, end: usize) {
    loop {
        let mut child = 2 * root + 1;
        if child >= end {
            return;
        }
        if child + 1 < end && less(v, child, child + 1) {
            child += 1;
        }
        if !less(v, root, child) {
            return;
        }
        v.swap(root, child);
        root = child;
    }
}

fn less<T: Ord>(v: &[T], a: usize, b: usize) -> bool {
    matches!((v.get(a), v.get(b)), (Some(x), Some(y)) if x < y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_like_std_for_every_small_length_and_duplicates() {
        let mut seed = 0x2545_f491_u64;
        for len in 0..200 {
            let mut v: Vec<(u8, u16)> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    ((seed % 7) as u8, (seed >> 8) as u16 % 50)
                })
                .collect();
            let mut expected = v.clone();
            expected.sort();
            heapsort(&mut v);
            assert_eq!(v, expected, "length {len}");
        }
    }
}
