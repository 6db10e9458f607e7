//! A biased MNIST task for the debiasing experiment: "is this digit odd?", where a visual
//! attribute that is not part of the label, colour inversion (white background, black
//! strokes), is rare among the positive (odd) training digits.
//!
//! Mirrors the setting of Amini et al. 2019 (faces with rare skin tones): the bias concerns
//! the positive class. Training: a small fraction (`rare_fraction`, e.g. 1.5%) of the odd
//! digits are inverted; half of the even digits are, so that inversion alone does not give the
//! label away (it even points the wrong way). Test: half of every class inverted, so the rare
//! subgroup is measured on as many images as the common one.

use rand::SeedableRng;
use rand::seq::SliceRandom;

use crate::data::Dataset;

/// Images with the binary task label and the hidden attribute.
#[derive(Clone, Debug)]
pub struct BiasedSplit {
    /// The images, some inverted; `labels` hold the original digits 0..9.
    pub data: Dataset,
    /// 1 if the digit is odd (the positive class), else 0.
    pub target: Vec<f32>,
    /// Whether the image was colour-inverted (the rare attribute).
    pub inverted: Vec<bool>,
}

impl BiasedSplit {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.target.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.target.is_empty()
    }
}

/// The biased training split and the balanced test split.
#[derive(Clone, Debug)]
pub struct BiasedMnist {
    /// Training images: `rare_fraction` of the odd digits inverted, half of the even ones.
    pub train: BiasedSplit,
    /// Test images: half of each class inverted.
    pub test: BiasedSplit,
}

/// Inverts the images of `data` chosen by `inverted` (x -> 1 - x).
fn apply(data: &Dataset, inverted: &[bool]) -> Dataset {
    let mut out = data.clone();
    let p = data.pixels();
    for (i, &inv) in inverted.iter().enumerate() {
        if inv {
            for v in &mut out.images[i * p..(i + 1) * p] {
                *v = 1.0 - *v;
            }
        }
    }
    out
}

/// Chooses exactly `round(fraction * n)` of the images whose label satisfies `class`, seeded.
fn choose(
    labels: &[u8],
    class: impl Fn(u8) -> bool,
    fraction: f64,
    rng: &mut rand::rngs::StdRng,
) -> Vec<bool> {
    let mut members: Vec<usize> = (0..labels.len()).filter(|&i| class(labels[i])).collect();
    members.shuffle(rng);
    let take = (fraction * members.len() as f64).round() as usize;
    let mut chosen = vec![false; labels.len()];
    for &i in &members[..take] {
        chosen[i] = true;
    }
    chosen
}

fn split(
    data: &Dataset,
    odd_fraction: f64,
    even_fraction: f64,
    rng: &mut rand::rngs::StdRng,
) -> BiasedSplit {
    let odd = choose(&data.labels, |l| l % 2 == 1, odd_fraction, rng);
    let even = choose(&data.labels, |l| l % 2 == 0, even_fraction, rng);
    let inverted: Vec<bool> = odd.iter().zip(&even).map(|(a, b)| *a || *b).collect();
    BiasedSplit {
        data: apply(data, &inverted),
        target: data.labels.iter().map(|&l| (l % 2) as f32).collect(),
        inverted,
    }
}

impl BiasedMnist {
    /// Builds the task from MNIST splits: exactly `round(rare_fraction * #odd)` odd training
    /// digits and half of the even ones inverted; half of each class of the test set inverted.
    pub fn build(train: &Dataset, test: &Dataset, rare_fraction: f64, seed: u64) -> BiasedMnist {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        BiasedMnist {
            train: split(train, rare_fraction, 0.5, &mut rng),
            test: split(test, 0.5, 0.5, &mut rng),
        }
    }
}
