//! A fixed-width bitset over a model's scope indices.
//!
//! Models of up to 128 scopes keep their sets inline, so resolving a key's grants
//! allocates nothing; larger models use one boxed slice per set.

/// Words kept inline. Every model uses at least this many, so two sets of one model
/// always have the same length.
const INLINE_WORDS: usize = 2;

/// The number of 64-bit words a model of `scopes` scopes uses per set.
pub(crate) fn words_for(scopes: usize) -> usize {
    scopes.div_ceil(64).max(INLINE_WORDS)
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Bits {
    Inline([u64; INLINE_WORDS]),
    Heap(Box<[u64]>),
}

impl Bits {
    /// The empty set, `words` words wide (see [`words_for`]).
    pub(crate) fn zero(words: usize) -> Self {
        if words <= INLINE_WORDS {
            Self::Inline([0; INLINE_WORDS])
        } else {
            Self::Heap(vec![0; words].into_boxed_slice())
        }
    }

    pub(crate) fn as_slice(&self) -> &[u64] {
        match self {
            Self::Inline(words) => words,
            Self::Heap(words) => words,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [u64] {
        match self {
            Self::Inline(words) => words,
            Self::Heap(words) => words,
        }
    }

    #[cfg(test)]
    pub(crate) fn insert(&mut self, index: usize) {
        if let Some(word) = self.as_mut_slice().get_mut(index / 64) {
            *word |= 1 << (index % 64);
        }
    }

    pub(crate) fn union_with(&mut self, other: &[u64]) {
        for (word, add) in self.as_mut_slice().iter_mut().zip(other) {
            *word |= add;
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.as_slice().iter().all(|&w| w == 0)
    }
}

/// Whether bit `index` is set in `set`. Out of range is `false`.
pub(crate) fn contains(set: &[u64], index: usize) -> bool {
    set.get(index / 64)
        .is_some_and(|word| word & (1 << (index % 64)) != 0)
}

/// Whether every bit of `wanted` is set in `held`.
pub(crate) fn is_subset(wanted: &[u64], held: &[u64]) -> bool {
    wanted.len() == held.len() && wanted.iter().zip(held).all(|(w, h)| w & !h == 0)
}

/// How many bits of `wanted` are not set in `held`.
pub(crate) fn count_missing(wanted: &[u64], held: &[u64]) -> u32 {
    wanted
        .iter()
        .zip(held)
        .map(|(w, h)| (w & !h).count_ones())
        .sum()
}

/// The indices of the set bits, in increasing order.
pub(crate) fn ones(set: &[u64]) -> impl Iterator<Item = usize> + '_ {
    set.iter().enumerate().flat_map(|(i, &word)| {
        let mut rest = word;
        std::iter::from_fn(move || {
            if rest == 0 {
                return None;
            }
            let bit = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            Some(i * 64 + bit)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_models_stay_inline() {
        assert_eq!(words_for(0), 2);
        assert_eq!(words_for(128), 2);
        assert_eq!(words_for(129), 3);
        assert!(matches!(Bits::zero(words_for(128)), Bits::Inline(_)));
        assert!(matches!(Bits::zero(words_for(129)), Bits::Heap(_)));
    }

    #[test]
    fn set_operations() {
        let words = words_for(200);
        let mut a = Bits::zero(words);
        assert!(a.is_empty());
        for i in [0, 63, 64, 199] {
            a.insert(i);
        }
        a.insert(10_000); // out of range: ignored, no panic
        assert_eq!(ones(a.as_slice()).collect::<Vec<_>>(), [0, 63, 64, 199]);
        assert!(contains(a.as_slice(), 199));
        assert!(!contains(a.as_slice(), 198));
        assert!(!contains(a.as_slice(), 10_000));

        let mut b = Bits::zero(words);
        b.insert(64);
        assert!(is_subset(b.as_slice(), a.as_slice()));
        assert!(!is_subset(a.as_slice(), b.as_slice()));
        assert_eq!(count_missing(a.as_slice(), b.as_slice()), 3);
        b.union_with(a.as_slice());
        assert_eq!(b, a);
        // Sets of different widths never compare as subsets.
        assert!(!is_subset(Bits::zero(2).as_slice(), a.as_slice()));
    }
}
